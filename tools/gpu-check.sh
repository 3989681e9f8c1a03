#!/bin/bash
# Every check a GPU session makes, on a GPU machine without packages or network:
# installs the offline bundle (`make offline-bundle` here, carried as offline/),
# builds with CUDA, runs the GPU parity specs, the benchmark beside PyTorch on
# the same GPU, then the whole suite. Logs go to $OUT (default gpu-check-out/);
# a summary is printed.
#   tools/gpu-check.sh [STAGE ...]     STAGE: build specs bench suite (default: these)
#                                      or bench-own-kernels: the benchmark again with
#                                      batch norm, pooling and activations on our
#                                      kernels (MILES_CUDNN_NORM=0 MILES_CUDNN_POOL=0
#                                      MILES_CUDNN_ACT=0)
# A device session is short: the whole run ends within $GPU_CHECK_SECONDS
# (default 570); each stage gets its own share of what is left, so a slow one
# cannot starve the rest. A second call on the same machine reuses the build.
set -u
START=$(date +%s)
BUDGET="${GPU_CHECK_SECONDS:-570}"
STAGES="${*:-build specs bench suite}"
# the spec files of the specs stage (all are in the suite stage)
GPU_SPECS="${GPU_SPECS:-spec/cuda_spec.lua spec/cuda_graph_spec.lua spec/bf16_spec.lua}"
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
JOBS=$(nproc)
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }
# seconds for a stage: at most $1, and never past the deadline (less $2 kept back)
box() {
  local left=$((BUDGET - ($(date +%s) - START) - ${2:-0}))
  [ "$left" -lt "$1" ] && echo $((left > 10 ? left : 10)) || echo "$1"
}
stamp() { echo "== $1 (at $(($(date +%s) - START)) s)"; }

stamp machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
ldd --version | head -1 # the bundle's libraries need glibc >= 2.34, GLIBCXX_3.4.29
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
if [ ! -x "$CUDA_HOME/bin/nvcc" ] && command -v nvcc >/dev/null; then
  CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")")
fi
"$CUDA_HOME/bin/nvcc" --version | tail -1

if ! command -v lua5.4 >/dev/null || ! command -v make >/dev/null; then
  [ -x offline/install.sh ] || { echo "no offline/ bundle: run make offline-bundle and carry offline/"; exit 1; }
  [ -e /tmp/miles-deps/env.sh ] ||
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
  export LD_LIBRARY_PATH="$CUDNN_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "cuDNN from $CUDNN_HOME: $(grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$CUDNN_HOME"/include/cudnn_version.h | awk '{printf "%s ", $3}')"
# cuBLAS is loaded when first used (dlopen, csrc/cuda/cublas_gemm.c): the
# toolkit's, else pip's nvidia-cublas beside PyTorch, through LD_LIBRARY_PATH.
if ! ls "$CUDA_HOME"/lib64/libcublas.so.* >/dev/null 2>&1; then
  blas_dir=$(python3 -c 'import nvidia.cublas as m; print(list(m.__path__)[0])' 2>/dev/null)
  [ -n "$blas_dir" ] && export LD_LIBRARY_PATH="$blas_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "cuBLAS from ${blas_dir:-nowhere: matmuls on the GPU will fail}"
fi

if has build; then
  stamp build
  if ! timeout -k 5 "$(box 300)" make -j"$JOBS" CUDA=1 CUDA_HOME="$CUDA_HOME" CUDNN_HOME="$CUDNN_HOME" \
       SYSROOT="${MILES_SYSROOT:-}" >"$OUT/build.log" 2>&1; then
    grep -E "error|Error" "$OUT/build.log" | head -40
    tail -5 "$OUT/build.log"
    exit 1
  fi
fi
build/bin/miles -e 'local m = require "miles"; print("GPUs seen by miles: " .. m.cuda.device_count())'

# Settings that keep a cuDNN path out when the specs fail with it and pass
# without it (its troubles then are cuDNN's, or our use of it): the later stages
# run with them.
FALLBACK=""
OWN_KERNELS="MILES_CUDNN_NORM=0 MILES_CUDNN_POOL=0 MILES_CUDNN_ACT=0"
# retry_specs SETTINGS: the GPU specs again with SETTINGS; true when they pass.
retry_specs() {
  local log="$OUT/cuda_spec_${2}.log"
  stamp "GPU specs again with $1"
  env $1 timeout -k 5 "$(box 100 200)" build/bin/miles spec/run.lua $GPU_SPECS >"$log" 2>&1
  grep -E "^(Failure|Error) ->" -A4 "$log" | cut -c1-300 | head -30
  tail -1 "$log"
  ! grep -qE "^(Failure|Error) ->" "$log"
}
if has specs; then
  stamp "GPU specs"
  MILES_CUDNN_VERBOSE=1 timeout -k 5 "$(box 150 200)" build/bin/miles spec/run.lua \
    $GPU_SPECS >"$OUT/cuda_spec.log" 2>&1 # + cuDNN engine choices
  echo "exit $?"
  grep -E "^(Failure|Error) ->" -A4 "$OUT/cuda_spec.log" | cut -c1-300 | head -60
  tail -1 "$OUT/cuda_spec.log"
  if grep -qE "^(Failure|Error) ->" "$OUT/cuda_spec.log"; then
    # batch norm, pooling and activations on our kernels, then convolutions as
    # im2col + cuBLAS too: tells cuDNN trouble from ours
    if retry_specs "$OWN_KERNELS" own_kernels; then
      FALLBACK="$OWN_KERNELS"
    elif retry_specs "$OWN_KERNELS MILES_CONV_GEMM=1" nocudnn; then
      FALLBACK="$OWN_KERNELS MILES_CONV_GEMM=1"
    fi
  fi
fi
[ -n "$FALLBACK" ] && echo "(the later stages run with $FALLBACK: cuDNN failed the specs without it)"

# bench LOG [SETTINGS]: the benchmark beside PyTorch, its log's tail printed,
# then how many problems of each op went to a cuDNN engine or to our kernels.
bench() {
  env $FALLBACK ${2:-} MILES_CUDNN_VERBOSE=1 MILES_PYTHON="${MILES_PYTHON:-python3}" \
    timeout -k 5 "$(box 300 60)" build/bin/miles experiments/bench.lua smnist cremad --cuda \
    --threads "$JOBS" --seconds "${BENCH_SECONDS:-3}" --rounds "${BENCH_ROUNDS:-1}" \
    >"$OUT/$1" 2>&1
  echo "exit $?"
  local choice="^miles: [^:]+: (cuDNN engine|our kernels chosen|no cuDNN engine)"
  grep -vE "$choice" "$OUT/$1" | cut -c1-200 | tail -60
  grep -oE "$choice" "$OUT/$1" | sort | uniq -c
}

if has bench; then
  stamp "benchmark (ours on the GPU beside PyTorch on the same GPU)"
  bench bench.log
fi
if has bench-own-kernels; then
  stamp "benchmark with batch norm, pooling and activations on our kernels"
  bench bench_own_kernels.log "$OWN_KERNELS"
fi

if has suite; then
  stamp "whole suite"
  env $FALLBACK MILES_SPECS_SKIP_MISSING=1 timeout -k 5 "$(box 400)" build/bin/miles spec/run.lua \
    >"$OUT/suite.log" 2>&1
  echo "exit $?"
  grep -E "^(Failure|Error) ->" -A3 "$OUT/suite.log" | cut -c1-300 | head -60
  tail -1 "$OUT/suite.log"
fi
stamp done
