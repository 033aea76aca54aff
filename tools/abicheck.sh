#!/usr/bin/env bash
# Compares the built library's ABI with the committed baseline. Fails on an
# incompatible change (abidiff exit bit 8) or a tool error (bits 1, 2);
# compatible additions (bit 4) are reported and pass.
set -uo pipefail
baseline=$1
lib=$2
if [ ! -f "$baseline" ]; then
    echo "abicheck: no baseline at $baseline (make abi-baseline)" >&2
    exit 1
fi
abidiff --headers-dir2 include "$baseline" "$lib" > lib/abidiff.txt 2>&1
rc=$?
cat lib/abidiff.txt
if [ $((rc & 3)) -ne 0 ]; then echo "abicheck: abidiff failed (exit $rc)" >&2; exit 1; fi
if [ $((rc & 8)) -ne 0 ]; then echo "abicheck: INCOMPATIBLE ABI change against $baseline" >&2; exit 1; fi
if [ $((rc & 4)) -ne 0 ]; then echo "abicheck: compatible ABI additions (see above)"; fi
echo "abicheck: OK"
