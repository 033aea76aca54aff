#!/usr/bin/env bash
# Extra CI steps run by .ci/run after the core checks. Each step is one make
# target or script; add yours with `step "<title>" <command...>`. Each step
# prints its elapsed seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# step <title> <command...>: runs the command, then prints how long it took.
step() {
    local title=$1 start rc=0
    shift
    echo "== extra: $title"
    start=$SECONDS
    "$@" || rc=$?
    echo "== extra: $title: $((SECONDS - start)) s$([ "$rc" -eq 0 ] || echo ", FAILED (exit $rc)")"
    return "$rc"
}

# The Rust binding is built with Debian's toolchain (cargo 0.66 / rustc 1.63
# on bookworm, installed by .ci/run) even when rustup's is first on PATH, so
# that the crate's rust-version = "1.63" is what CI builds.
step "bindings (Python ctypes/cffi, Rust with Debian's cargo/rustc)" \
    make bindings-check CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
step "API reference up to date (docs/API.md from the header comments)" make docs-check
step "examples, short settings (sinusoid, fashion_demo, omniglot)" make examples-check
step "fuzz (every tests/fuzz/fuzz_*.c, 30 s each)" make fuzz FUZZ_SECONDS=30
