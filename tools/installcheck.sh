#!/usr/bin/env bash
# Installs into a scratch prefix and builds examples/install_check.c against it
# with pkg-config alone, linked shared and static; also checks DESTDIR
# staging and uninstall, and uninstalled use (the build tree's
# lib/metaprompt-uninstalled.pc, never installed).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/lib/installcheck"
rm -rf "$root"
prefix="$root/prefix"
# ldconfig: a stand-in records its calls (the real one would rewrite the
# system's loader cache). A plain install by root runs it; a failing one
# only warns; a DESTDIR install or a non-root one prints the hint instead.
mkdir -p "$root"
fake="$root/fake-ldconfig"
printf '#!/bin/sh\necho called >> "%s.calls"\nexit "${FAKE_LDCONFIG_RC:-0}"\n' "$fake" > "$fake"
chmod +x "$fake"
hint="run 'ldconfig' as root (or set LD_LIBRARY_PATH=$prefix/lib)"
out=$(make -s install PREFIX="$prefix" LDCONFIG="$fake")
printf "%s\n" "$out"
if [ "$(id -u)" = 0 ]; then
    [ "$(cat "$fake.calls")" = called ] || { echo "installcheck: install as root did not run ldconfig" >&2; exit 1; }
    # A prefix off the loader's search path gets a hint even after ldconfig.
    grep -qF "$prefix/lib is not on the loader's search path" <<<"$out" || {
        echo "installcheck: no loader-path hint for a prefix off the search path: $out" >&2; exit 1; }
    out=$(FAKE_LDCONFIG_RC=1 make -s install PREFIX="$prefix" LDCONFIG="$fake")
    grep -qF "install: '$fake' failed; run it" <<<"$out" || { echo "installcheck: no message for a failing ldconfig: $out" >&2; exit 1; }
    out=$(make -s install PREFIX="$prefix" LDCONFIG=)
    grep -qF "$hint" <<<"$out" || { echo "installcheck: no hint with LDCONFIG empty: $out" >&2; exit 1; }
    rm "$fake.calls"
else
    grep -qF "$hint" <<<"$out" || { echo "installcheck: no ldconfig hint for a non-root install: $out" >&2; exit 1; }
    [ ! -e "$fake.calls" ] || { echo "installcheck: a non-root install ran ldconfig" >&2; exit 1; }
fi
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc=${CC:-cc}
pkg-config --exists metaprompt
ver=$(pkg-config --modversion metaprompt)
echo "installcheck: pkg-config finds metaprompt $ver"
# build_both NAME LIBDIR: examples/install_check.c built with what pkg-config
# says (PKG_CONFIG_PATH as set by the caller), shared (it must load
# libmetaprompt from LIBDIR) and static (it must not load it at all), and run.
# pkg-config's output is split into words on purpose, into arrays; ldd's
# output is captured first: `ldd | grep -q` under pipefail fails at random
# when grep exits early and ldd dies of SIGPIPE.
build_both() {
    local name=$1 dir=$2 flags cflags libs deps
    read -ra flags <<<"$(pkg-config --cflags --libs metaprompt)"
    $cc -std=c11 -Wall -Wextra -Werror examples/install_check.c "${flags[@]}" -o "$root/$name"
    LD_LIBRARY_PATH="$dir" "$root/$name"
    deps=$(LD_LIBRARY_PATH="$dir" ldd "$root/$name")
    grep -qF "libmetaprompt.so.${ver%%.*} => $dir/" <<<"$deps"
    read -ra cflags <<<"$(pkg-config --cflags metaprompt)"
    read -ra libs <<<"$(pkg-config --static --libs metaprompt | sed 's/-lmetaprompt/-l:libmetaprompt.a/')"
    $cc -std=c11 -Wall -Wextra -Werror examples/install_check.c "${cflags[@]}" "${libs[@]}" -o "$root/$name-static"
    "$root/$name-static"
    deps=$(ldd "$root/$name-static")
    if grep -q libmetaprompt <<<"$deps"; then
        echo "installcheck: static build ($name) still links libmetaprompt.so" >&2
        exit 1
    fi
}
build_both installed "$prefix/lib"
# DESTDIR staging and uninstall
out=$(make -s install DESTDIR="$root/stage" PREFIX=/usr LIBDIR=/usr/lib64 INCLUDEDIR=/usr/inc \
      PKGCONFIGDIR=/usr/share/pkgconfig LDCONFIG="$fake")
[ ! -e "$fake.calls" ] || { echo "installcheck: a DESTDIR install ran ldconfig" >&2; exit 1; }
grep -qF "run 'ldconfig' as root (or set LD_LIBRARY_PATH=/usr/lib64)" <<<"$out" || {
    echo "installcheck: no ldconfig hint for a DESTDIR install: $out" >&2; exit 1; }
for f in usr/lib64/libmetaprompt.a usr/lib64/libmetaprompt.so usr/lib64/libmetaprompt.so.${ver%%.*} \
         usr/lib64/libmetaprompt.so.$ver usr/inc/metaprompt.h usr/inc/metaprompt/core.h usr/share/pkgconfig/metaprompt.pc; do
    [ -e "$root/stage/$f" ] || { echo "installcheck: missing $f after DESTDIR install" >&2; exit 1; }
done
grep -q '^libdir=/usr/lib64$' "$root/stage/usr/share/pkgconfig/metaprompt.pc"
make -s uninstall DESTDIR="$root/stage" PREFIX=/usr LIBDIR=/usr/lib64 INCLUDEDIR=/usr/inc PKGCONFIGDIR=/usr/share/pkgconfig
left=$(find "$root/stage" -type f -o -type l)
[ -z "$left" ] || { echo "installcheck: uninstall left: $left" >&2; exit 1; }
# Uninstalled use: with PKG_CONFIG_PATH=lib, pkg-config takes the build tree's
# metaprompt-uninstalled.pc (include/ and lib/ of this tree) over
# metaprompt.pc (the install paths); install copies only the latter.
for f in "$prefix/lib/pkgconfig/metaprompt-uninstalled.pc" "$root/stage/usr/share/pkgconfig/metaprompt-uninstalled.pc"; do
    [ ! -e "$f" ] || { echo "installcheck: install wrote $f" >&2; exit 1; }
done
[ -f lib/metaprompt-uninstalled.pc ] || { echo "installcheck: no lib/metaprompt-uninstalled.pc after make" >&2; exit 1; }
unset PKG_CONFIG_PATH
inc=$(PKG_CONFIG_PATH=lib pkg-config --variable=includedir metaprompt)
libdir=$(PKG_CONFIG_PATH=lib pkg-config --variable=libdir metaprompt)
[ "$inc" = "$PWD/include" ] && [ "$libdir" = "$PWD/lib" ] || {
    echo "installcheck: PKG_CONFIG_PATH=lib gives includedir $inc and libdir $libdir, not the build tree's" >&2; exit 1; }
[ "$(PKG_CONFIG_PATH=lib pkg-config --modversion metaprompt)" = "$ver" ]
PKG_CONFIG_PATH=lib build_both uninstalled "$PWD/lib"
echo "installcheck: ldconfig, shared, static, DESTDIR, uninstall and uninstalled use OK"
