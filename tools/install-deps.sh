#!/bin/sh
# Installs the Debian 12 packages miles needs to build, test and run (idempotent).
#   tools/install-deps.sh          build + run + test
#   tools/install-deps.sh --dev    also PyTorch (reference numbers, benchmarks) and valgrind
# Every library linked is MIT-compatible: OpenBLAS, oneDNN, libpng, libjpeg-turbo,
# zlib, KISS FFT, libedit (not GNU readline), libsndfile (LGPL, linked dynamically).
# ffmpeg (CREMA-D frames) and espeak-ng (the embedded data set) run as programs, never linked.
set -eu

PKGS="build-essential pkg-config lua5.4 liblua5.4-dev lua-busted libopenblas-openmp-dev
      libdnnl-dev libpng-dev libjpeg62-turbo-dev libsndfile1-dev libkissfft-dev
      zlib1g-dev libedit-dev gnuplot-nox espeak-ng dataset-fashion-mnist ffmpeg"
[ "${1:-}" = "--dev" ] && PKGS="$PKGS python3-torch python3-numpy valgrind"
# --dev: clang for `make fuzz`; cjpeg/djpeg and PIL for spec/fixtures/make_io_fixtures.py
[ "${1:-}" = "--dev" ] && PKGS="$PKGS clang libjpeg-turbo-progs python3-pil"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
