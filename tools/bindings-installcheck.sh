#!/usr/bin/env bash
# The Rust crate against an INSTALLED library, found as a user's build would
# find it: by pkg-config, then by the linker's default path (LIBRARY_PATH /
# LD_LIBRARY_PATH standing in for /usr/local/lib). The crate is copied away
# from the repository so build.rs cannot see lib/. (The Python package's
# installed case is examples/python/tests/test_install.py.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
root="$PWD/${BUILD:-lib}/bindings-install"
rm -rf "$root"
prefix="$root/prefix"
make -s install PREFIX="$prefix" LDCONFIG= >/dev/null   # a scratch prefix: no loader cache refresh
tree="$root/tree"
mkdir -p "$tree/examples"
cp -r examples/rust "$tree/examples/rust"
rm -rf "$tree/examples/rust/target"
ln -s "$prefix/include" "$tree/include"   # tests read the headers via ../../include
run() {   # run <label> <env...> -- cargo args
    local label=$1; shift
    echo "bindings-installcheck: rust, $label" >&2
    env -u MP_LIB_DIR -u LD_LIBRARY_PATH -u LIBRARY_PATH -u PKG_CONFIG_PATH "$@"
}
manifest="$tree/examples/rust/Cargo.toml"
out=$(run "pkg-config" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" CARGO_TARGET_DIR="$root/target-pc" \
      "$cargo" run -q --offline --manifest-path "$manifest" --example tape)
printf "%s\n" "${out%%$'\n'*}"   # first line, no pipe (pipefail)
grep -qF "linked from $prefix/lib (pkg-config)" <<<"$out"
run "pkg-config" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" CARGO_TARGET_DIR="$root/target-pc" \
    "$cargo" test -q --offline --manifest-path "$manifest" >/dev/null
if pkg-config --exists metaprompt 2>/dev/null; then
    echo "bindings-installcheck: a metaprompt.pc is installed system-wide; skipping the linker-path case"
else
    out=$(run "linker default path" LIBRARY_PATH="$prefix/lib" LD_LIBRARY_PATH="$prefix/lib" \
          CARGO_TARGET_DIR="$root/target-sys" \
          "$cargo" run -q --offline --manifest-path "$manifest" --example tape)
    printf "%s\n" "${out%%$'\n'*}"   # first line, no pipe (pipefail)
    grep -qF "linked from linker default path" <<<"$out"
fi
echo "bindings-installcheck: OK"
