#!/usr/bin/env bash
# Installs into a scratch prefix and builds examples/install_check.c against it
# with pkg-config alone, linked shared and static; also checks DESTDIR
# staging and uninstall.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/lib/installcheck"
rm -rf "$root"
prefix="$root/prefix"
make -s install PREFIX="$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc=${CC:-cc}
pkg-config --exists metaprompt
ver=$(pkg-config --modversion metaprompt)
echo "installcheck: pkg-config finds metaprompt $ver"
# shared (pkg-config's output is split into words on purpose, into arrays)
read -ra flags <<<"$(pkg-config --cflags --libs metaprompt)"
$cc -std=c11 -Wall -Wextra -Werror examples/install_check.c "${flags[@]}" -o "$root/shared"
LD_LIBRARY_PATH="$prefix/lib" "$root/shared"
# ldd's output is captured first: `ldd | grep -q` under pipefail fails at
# random when grep exits early and ldd dies of SIGPIPE.
deps=$(LD_LIBRARY_PATH="$prefix/lib" ldd "$root/shared")
grep -qF "libmetaprompt.so.${ver%%.*} => $prefix/lib/" <<<"$deps"
# static: the same flags with --static, the archive chosen over the .so
read -ra cflags <<<"$(pkg-config --cflags metaprompt)"
read -ra libs <<<"$(pkg-config --static --libs metaprompt | sed 's/-lmetaprompt/-l:libmetaprompt.a/')"
$cc -std=c11 -Wall -Wextra -Werror examples/install_check.c "${cflags[@]}" "${libs[@]}" -o "$root/static"
"$root/static"
deps=$(ldd "$root/static")
if grep -q libmetaprompt <<<"$deps"; then
    echo "installcheck: static build still links libmetaprompt.so" >&2
    exit 1
fi
# DESTDIR staging and uninstall
make -s install DESTDIR="$root/stage" PREFIX=/usr LIBDIR=/usr/lib64 INCLUDEDIR=/usr/inc PKGCONFIGDIR=/usr/share/pkgconfig
for f in usr/lib64/libmetaprompt.a usr/lib64/libmetaprompt.so usr/lib64/libmetaprompt.so.${ver%%.*} \
         usr/lib64/libmetaprompt.so.$ver usr/inc/metaprompt.h usr/inc/metaprompt/core.h usr/share/pkgconfig/metaprompt.pc; do
    [ -e "$root/stage/$f" ] || { echo "installcheck: missing $f after DESTDIR install" >&2; exit 1; }
done
grep -q '^libdir=/usr/lib64$' "$root/stage/usr/share/pkgconfig/metaprompt.pc"
make -s uninstall DESTDIR="$root/stage" PREFIX=/usr LIBDIR=/usr/lib64 INCLUDEDIR=/usr/inc PKGCONFIGDIR=/usr/share/pkgconfig
left=$(find "$root/stage" -type f -o -type l)
[ -z "$left" ] || { echo "installcheck: uninstall left: $left" >&2; exit 1; }
echo "installcheck: shared, static, DESTDIR and uninstall OK"
