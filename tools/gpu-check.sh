#!/bin/bash
# Every check a GPU session makes, in one run on a GPU machine without packages
# or network: installs the offline bundle (`make offline-bundle` here, carried as
# offline/), builds with CUDA, runs the GPU parity specs, then the whole suite
# and the benchmark beside PyTorch on the same GPU. Logs go to $OUT (default
# gpu-check-out/); a summary is printed.
#   tools/gpu-check.sh [--quick]     (--quick: build + GPU specs only)
set -u
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
JOBS=$(nproc)

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
ldd --version | head -1 # the bundle's libraries need glibc >= 2.34, GLIBCXX_3.4.29
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
"$CUDA_HOME/bin/nvcc" --version | tail -1

echo "== packages (offline bundle)"
if ! command -v lua5.4 >/dev/null; then
  [ -x offline/install.sh ] || { echo "no offline/ bundle: run make offline-bundle and carry offline/"; exit 1; }
  offline/install.sh /tmp/miles-deps >"$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
  . /tmp/miles-deps/env.sh
fi

# cuDNN: the toolkit's, else the one pip installed beside PyTorch (nvidia-cudnn),
# which ships no unversioned libcudnn.so for the linker: make one.
CUDNN_HOME="${CUDNN_HOME:-$CUDA_HOME}"
if [ ! -e "$CUDNN_HOME/include/cudnn.h" ]; then
  pip_dir=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)
  [ -n "$pip_dir" ] || { echo "cuDNN not found (no $CUDA_HOME/include/cudnn.h, no nvidia.cudnn)"; exit 1; }
  CUDNN_HOME=/tmp/miles-cudnn
  mkdir -p "$CUDNN_HOME/lib"
  ln -sfn "$pip_dir/include" "$CUDNN_HOME/include"
  for f in "$pip_dir"/lib/libcudnn*.so.*; do ln -sf "$f" "$CUDNN_HOME/lib/"; done
  ln -sf "$CUDNN_HOME/lib/libcudnn.so.9" "$CUDNN_HOME/lib/libcudnn.so"
fi
echo "cuDNN from $CUDNN_HOME"
# cuBLAS is loaded when first used (dlopen, csrc/cuda/cublas_gemm.c): the
# toolkit's, else pip's nvidia-cublas beside PyTorch, through LD_LIBRARY_PATH.
if ! ls "$CUDA_HOME"/lib64/libcublas.so.* >/dev/null 2>&1; then
  blas_dir=$(python3 -c 'import nvidia.cublas as m; print(list(m.__path__)[0])' 2>/dev/null)
  [ -n "$blas_dir" ] && export LD_LIBRARY_PATH="$blas_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "cuBLAS from ${blas_dir:-nowhere: matmuls on the GPU will fail}"
fi

echo "== build"
t0=$(date +%s)
if ! make -j"$JOBS" CUDA=1 CUDA_HOME="$CUDA_HOME" CUDNN_HOME="$CUDNN_HOME" \
     SYSROOT="${MILES_SYSROOT:-}" >"$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -40
  exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s"
build/bin/miles -e 'local m = require "miles"; print("GPUs seen by miles: " .. m.cuda.device_count())'

echo "== GPU specs"
MILES_CUDNN_VERBOSE=1 build/bin/miles spec/run.lua spec/cuda_spec.lua spec/cuda_graph_spec.lua \
  >"$OUT/cuda_spec.log" 2>&1 # + cuDNN engine choices
grep -E "^(Failure|Error) ->" -A4 "$OUT/cuda_spec.log" | head -80
tail -1 "$OUT/cuda_spec.log"
if grep -qE "^(Failure|Error) ->" "$OUT/cuda_spec.log"; then
  # the same with every convolution as im2col + cuBLAS: tells cuDNN trouble from ours
  echo "== GPU specs again without cuDNN (MILES_CONV_GEMM=1)"
  MILES_CONV_GEMM=1 build/bin/miles spec/run.lua spec/cuda_spec.lua spec/cuda_graph_spec.lua \
    >"$OUT/cuda_spec_gemm.log" 2>&1
  grep -E "^(Failure|Error) ->" -A4 "$OUT/cuda_spec_gemm.log" | head -40
  tail -1 "$OUT/cuda_spec_gemm.log"
fi
[ "$QUICK" = 1 ] && exit 0

echo "== whole suite"
build/bin/miles spec/run.lua >"$OUT/suite.log" 2>&1
grep -E "^(Failure|Error) ->" -A2 "$OUT/suite.log" | head -40
tail -1 "$OUT/suite.log"

echo "== benchmark (ours on the GPU beside PyTorch on the same GPU)"
MILES_PYTHON="${MILES_PYTHON:-python3}" build/bin/miles experiments/bench.lua smnist cremad \
  --cuda --threads "$JOBS" --seconds 5 --rounds 2 2>&1 | tee "$OUT/bench.log"
