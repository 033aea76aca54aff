use metaprompt::*;

fn header(name: &str) -> String {
    let p = format!("{}/../../include/metaprompt/{}", env!("CARGO_MANIFEST_DIR"), name);
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn version_matches_header() {
    let h = header("core.h");
    let line = h.lines().find(|l| l.starts_with("#define MP_VERSION_STRING")).unwrap();
    let want = line.split('"').nth(1).unwrap();
    assert_eq!(version_string(), want);
    let parts: Vec<i32> = want.split('.').map(|x| x.parse().unwrap()).collect();
    assert_eq!(version_number(), parts[0] * 10000 + parts[1] * 100 + parts[2]);
}

#[test]
fn blas_and_status_strings() {
    assert!(!blas_corename().is_empty());
    assert!(!blas_config().is_empty());
    assert!(blas_num_threads() >= 1);
    assert_eq!(status_string(9999), "unknown status");
    assert_ne!(status_string(status::ERR_IO), status_string(status::ERR_RANGE));
    assert!(!linked_from().is_empty());
}

#[test]
fn config_roundtrip_and_errors() {
    let mut cfg = Config::new().unwrap();
    cfg.set_int(CFG_SEED, 7).unwrap().set_int(CFG_THREADS, 2).unwrap();
    assert_eq!(cfg.get_int(CFG_SEED).unwrap(), 7);
    assert!(cfg.is_set(CFG_SEED));
    let copy = cfg.try_clone().unwrap();
    cfg.set_int(CFG_SEED, 8).unwrap();
    assert_eq!(copy.get_int(CFG_SEED).unwrap(), 7);

    let e = cfg.set_int(CFG_THREADS, 0).unwrap_err();
    assert_eq!(e.status, status::ERR_RANGE);
    assert_eq!(e.status_name(), "MP_ERR_RANGE");
    assert!(e.message.contains("mp_config_set_int"), "{}", e);
    assert_eq!(cfg.error(), e.message);
    assert_eq!(cfg.get_int(CFG_THREADS).unwrap(), 2, "unchanged after a failed set");
    let e = cfg.set_float(CFG_SEED, 1.5).unwrap_err();
    assert_eq!(e.status, status::ERR_INVALID_ARGUMENT);
    assert!(format!("{}", e).starts_with("MP_ERR_INVALID_ARGUMENT: "));
}

#[test]
fn key_lookup() {
    let name = key_name(CFG_THREADS).unwrap();
    assert_eq!(key_by_name(&name).unwrap(), CFG_THREADS);
    assert_eq!(key_type(CFG_THREADS), CFG_TYPE_INT);
    assert_eq!(key_name(98), None);
    let e = key_by_name("no.such.key").unwrap_err();
    assert_eq!(e.status, status::ERR_NOT_FOUND);
    assert_eq!(key_by_name("a\0b").unwrap_err().status, status::ERR_INVALID_ARGUMENT);
}

#[test]
fn log_callback_install() {
    set_log_callback(Some(Box::new(|_lvl, _msg| {})), LOG_DEBUG).unwrap();
    set_log_callback(None, LOG_WARN).unwrap();
    let e = set_log_callback(Some(Box::new(|_, _| {})), 9).unwrap_err();
    assert_eq!(e.status, status::ERR_INVALID_ARGUMENT);
}
