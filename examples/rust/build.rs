//! Finds libmetaprompt to link against, in order:
//! 1. $MP_LIB_DIR (a directory holding libmetaprompt.so),
//! 2. the repository's lib/ (../../lib from this crate), when built,
//! 3. `pkg-config --variable=libdir metaprompt`,
//! 4. the linker's default search path (an installed copy in /usr/lib,
//!    /usr/local/lib or $LIBRARY_PATH).
//!
//! For 1-3 an rpath to the directory is added to test and example binaries so
//! they run without LD_LIBRARY_PATH, and the directory is exported to
//! dependent crates' build scripts as DEP_METAPROMPT_LIBDIR.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_lib(dir: &Path) -> bool {
    dir.join("libmetaprompt.so").exists()
}

fn pkg_config_libdir() -> Option<PathBuf> {
    let pc = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = Command::new(pc)
        .args(["--variable=libdir", "metaprompt"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        None
    } else {
        Some(PathBuf::from(dir))
    }
}

fn find() -> Option<(PathBuf, &'static str)> {
    if let Ok(d) = env::var("MP_LIB_DIR") {
        if !d.is_empty() {
            let p = PathBuf::from(d);
            if !has_lib(&p) {
                panic!("MP_LIB_DIR={} holds no libmetaprompt.so", p.display());
            }
            return Some((p, "MP_LIB_DIR"));
        }
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let repo = manifest.join("..").join("..").join("lib");
    if has_lib(&repo) {
        return Some((repo, "repository lib/"));
    }
    pkg_config_libdir().map(|d| (d, "pkg-config"))
}

fn main() {
    println!("cargo:rerun-if-env-changed=MP_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=LIBRARY_PATH");
    println!("cargo:rerun-if-changed=build.rs");
    match find() {
        Some((dir, how)) => {
            let dir = dir.canonicalize().unwrap_or(dir);
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            println!("cargo:rustc-env=MP_LINKED_FROM={} ({})", dir.display(), how);
            // For dependent crates (the package says links = "metaprompt"):
            // their build script reads it as DEP_METAPROMPT_LIBDIR, e.g. to
            // give their own binaries an rpath (link args do not propagate).
            println!("cargo:libdir={}", dir.display());
        }
        None => {
            println!("cargo:rustc-env=MP_LINKED_FROM=linker default path");
        }
    }
    println!("cargo:rustc-link-lib=dylib=metaprompt");
}
