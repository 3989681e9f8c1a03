#!/bin/sh
# Installs a bundle made by tools/offline-bundle.sh without network and without
# root: unpacks every package into PREFIX (default: /tmp/miles-deps) and writes
# PREFIX/env.sh, which sets the paths the compiler, pkg-config, the linker and
# Lua need. Then, in the repository:  . PREFIX/env.sh && make && make test
#   offline/install.sh [PREFIX]
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX="${1:-/tmp/miles-deps}"
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
for deb in "$HERE"/debs/*.deb; do
  dpkg-deb -x "$deb" "$PREFIX"
done
# Debian's -dev packages may link into the base system by absolute path
# (libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13), which on the node is another
# version or nothing (the linker then took libz.a): point such links into PREFIX.
find "$PREFIX" -type l | while read -r link; do
  target=$(readlink "$link")
  case "$target" in
    /*) [ -e "$PREFIX$target" ] && ln -sfn "$PREFIX$target" "$link" ;;
  esac
done
LIB="$PREFIX/usr/lib/x86_64-linux-gnu"
# Debian installs these through update-alternatives, which an unpack does not run.
ln -sf openblas-openmp/libblas.so.3 "$LIB/libblas.so.3" 2>/dev/null || true
[ -e "$PREFIX/usr/bin/busted" ] || ln -sf busted "$PREFIX/usr/bin/busted"
cat > "$PREFIX/env.sh" <<ENV
# Paths for a miles build and run against the packages unpacked in $PREFIX.
export PATH="$PREFIX/usr/bin:\$PATH"
export LD_LIBRARY_PATH="$LIB:$LIB/openblas-openmp\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LIBRARY_PATH="$LIB\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CPATH="$PREFIX/usr/include:$PREFIX/usr/include/x86_64-linux-gnu\${CPATH:+:\$CPATH}"
export PKG_CONFIG_PATH="$LIB/pkgconfig:$PREFIX/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$PREFIX"
export LUA_PATH_5_4="$PREFIX/usr/share/lua/5.4/?.lua;$PREFIX/usr/share/lua/5.4/?/init.lua;;"
export LUA_CPATH_5_4="$LIB/lua/5.4/?.so;;"
export MILES_SYSROOT="$PREFIX"
ENV
echo "offline-install: unpacked $(ls "$HERE"/debs/*.deb | wc -l) packages into $PREFIX"
echo "offline-install: now  . $PREFIX/env.sh && make SYSROOT=\$MILES_SYSROOT && make test"
