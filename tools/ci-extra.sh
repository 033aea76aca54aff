#!/usr/bin/env bash
# Extra CI steps run by .ci/run after the core checks. Each step is one make
# target or script; add yours with `step "<title>" <command...>`.
set -euo pipefail
cd "$(dirname "$0")/.."
step() {
    local title=$1
    shift
    echo "== extra: $title"
    "$@"
}

step "bindings (Python ctypes/cffi, Rust)" make bindings-check
step "API reference up to date (docs/API.md from the header comments)" make docs-check
step "examples, short settings (sinusoid, fashion_demo, omniglot)" make examples-check
step "fuzz (every tests/fuzz/fuzz_*.c, 30 s each)" make fuzz FUZZ_SECONDS=30
