//! Every MP_API function of the headers is declared in src/sys.rs (and only
//! those), so the raw layer cannot fall behind the headers.
use std::collections::BTreeSet;

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/{}", env!("CARGO_MANIFEST_DIR"), rel)).unwrap()
}

fn names_after(text: &str, marker: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start();
        if !l.starts_with(marker) {
            continue;
        }
        if let Some(p) = l.find('(') {
            let before = &l[..p];
            let name = before.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap();
            if name.starts_with("mp_") {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn sys_declares_every_header_function() {
    let dir = format!("{}/../../include/metaprompt", env!("CARGO_MANIFEST_DIR"));
    let mut declared = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map_or(false, |x| x == "h") {
            declared.extend(names_after(&std::fs::read_to_string(&p).unwrap(), "MP_API"));
        }
    }
    assert!(declared.len() > 20);
    let bound = names_after(&read("src/sys.rs"), "pub fn");
    let missing: Vec<_> = declared.difference(&bound).collect();
    let stale: Vec<_> = bound.difference(&declared).collect();
    assert!(missing.is_empty(), "not declared in src/sys.rs: {:?}", missing);
    assert!(stale.is_empty(), "declared in src/sys.rs but not in the headers: {:?}", stale);
}

/// name -> parameter count, from declarations that may span lines.
fn arities(text: &str, marker: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let open = match rest.find('(') {
            Some(o) => o,
            None => break,
        };
        let name = rest[..open].trim().rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap();
        let close = open + rest[open..].find(')').unwrap();
        let params = rest[open + 1..close].trim();
        if name.starts_with("mp_") {
            let n = if params.is_empty() || params == "void" { 0 } else { params.split(',').count() };
            out.push((name.to_string(), n));
        }
        rest = &rest[close..];
    }
    out
}

#[test]
fn sys_parameter_counts_match_headers() {
    let dir = format!("{}/../../include/metaprompt", env!("CARGO_MANIFEST_DIR"));
    let mut header = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map_or(false, |x| x == "h") {
            // Function-pointer typedefs have no MP_API, so they are not counted.
            for (n, a) in arities(&std::fs::read_to_string(&p).unwrap(), "MP_API") {
                header.insert(n, a);
            }
        }
    }
    // Callback parameters in sys.rs are `Option<unsafe extern "C" fn(..)>` type
    // aliases, so a plain comma count is right there too.
    let sys = read("src/sys.rs");
    let mut checked = 0;
    for (name, n) in arities(&sys, "pub fn ") {
        if let Some(&want) = header.get(&name) {
            assert_eq!(n, want, "{}: {} parameters in sys.rs, {} in the header", name, n, want);
            checked += 1;
        }
    }
    assert_eq!(checked, header.len());
}

/// Every integer MP_* constant of the headers is a `pub const` of the crate
/// (name without "MP_", the status codes under `status::`), same value.
#[test]
fn every_integer_constant_is_exported_with_its_value() {
    let skip = ["MP_API", "MP_VERSION_MAJOR", "MP_VERSION_MINOR", "MP_VERSION_PATCH",
                "MP_VERSION_STRING", "MP_VERSION_NUMBER", "MP_STATUS_COUNT_"];
    let mut src = String::new();
    for f in ["src/lib.rs", "src/tape.rs", "src/model.rs", "src/data.rs", "src/meta.rs"] {
        src.push_str(&read(f));
    }
    let consts: std::collections::BTreeMap<String, String> = src
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub const ")?;
            let (name, rhs) = rest.split_once(':')?;
            let value = rhs.split_once('=')?.1.trim().trim_end_matches(';').trim();
            Some((name.trim().to_string(), value.to_string()))
        })
        .collect();
    let dir = format!("{}/../../include/metaprompt", env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map_or(true, |x| x != "h") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let l = line.trim_start();
            let rest = match l.strip_prefix("#define MP_") {
                Some(r) => r,
                None => continue,
            };
            let mut it = rest.split_whitespace();
            let name = it.next().unwrap();
            let value = match it.next() {
                Some(v) => v.trim_matches(|c| c == '(' || c == ')'),
                None => continue, // a guard
            };
            if skip.contains(&format!("MP_{}", name).as_str()) || value.parse::<i64>().is_err() {
                continue;
            }
            // Status codes are in `status::`; MP_VAR_NONE is the typed Var(-1).
            match consts.get(name) {
                Some(v) if v == value || *v == format!("Var({})", value) => {}
                other => bad.push(format!("MP_{} = {}: crate has {:?}", name, value, other)),
            }
        }
    }
    assert!(bad.is_empty(), "constants missing or different:\n{}", bad.join("\n"));
}
