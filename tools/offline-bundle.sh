#!/bin/sh
# Collects the Debian packages miles needs to build and test (Lua, busted, the
# libraries it links, their headers) into a folder that can be carried to a
# machine without network access (a GPU node), and installed there without root
# by tools/offline-install.sh (copied into the folder).
#   tools/offline-bundle.sh [DIR]       (default: offline/; `make offline-bundle`)
# The C library, the compiler's runtime and other packages every Linux system has
# are left out: the node's own copies are used (the bundled libraries ask for
# glibc 2.34 and GLIBCXX_3.4.29 at most: Ubuntu 22.04, Debian 12 or newer).
set -eu

DIR="${1:-offline}"
PKGS="lua5.4 liblua5.4-dev lua-busted libopenblas-openmp-dev libdnnl-dev libpng-dev
      libjpeg62-turbo-dev libsndfile1-dev libkissfft-dev zlib1g-dev libedit-dev pkg-config
      make" # make: in case the node has none (it only runs, nothing links it)
# Base system packages (glibc, gcc runtime, terminal and crypto libraries, tools)
# and the other Lua versions busted's package would pull in.
SKIP='^(dpkg|tar|install-info|gcc-[0-9]+-base|libc6|libc6-dev|libc-dev-bin|libcrypt1|libcrypt-dev|libgcc-s1|libgomp1|libstdc\+\+6|libacl1|libbz2-1\.0|liblzma5|libzstd1|libselinux1|libpcre2-8-0|libssl3|libcom-err2|libgssapi-krb5-2|libk5crypto3|libkeyutils1|libkrb5-3|libkrb5support0|libnsl2|libnsl-dev|libtirpc3|libtirpc-common|libtirpc-dev|rpcsvc-proto|linux-libc-dev|readline-common|libreadline8|libreadline-dev|libncurses6|libncursesw6|libncurses-dev|libtinfo6|libtinfo-dev|ncurses-bin|lua5\.1|lua5\.2|lua5\.3)$'

list=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances $PKGS | grep '^[a-z0-9]' | sort -u | grep -Ev "$SKIP")
mkdir -p "$DIR/debs"
rm -f "$DIR"/debs/*.deb
(cd "$DIR/debs" && apt-get download $list)
cp "$(dirname "$0")/offline-install.sh" "$DIR/install.sh"
chmod +x "$DIR/install.sh"
echo "$list" > "$DIR/packages.txt"
echo "offline-bundle: $(ls "$DIR"/debs/*.deb | wc -l) packages, $(du -sh "$DIR" | cut -f1) in $DIR"
echo "offline-bundle: on the node: $DIR/install.sh [PREFIX] && . PREFIX/env.sh && make && make test"
