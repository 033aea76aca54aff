// The build script a crate depending on `metaprompt` needs for its binaries
// to find libmetaprompt without LD_LIBRARY_PATH (examples/rust/README.md).
fn main() {
    if let Ok(dir) = std::env::var("DEP_METAPROMPT_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
}
