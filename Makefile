# miles: `make` builds the host (build/bin/miles) and the Lua module
# (build/lib/miles/core.so); `make test` runs the specs; `make demo` the demo.
#   CUDA=0   build without the CUDA backend (default: 1 when nvcc is found)
#   SAN=1    build with AddressSanitizer + UndefinedBehaviorSanitizer into build-san/
#   EMU=1    build with an emulated GPU into build-emu/ (spec/emu/: our kernels as
#            host C++ on a fake CUDA runtime), so the GPU specs run on any machine

CC        ?= gcc
CUDA_HOME ?= /usr/local/cuda
# cuDNN's headers and libraries: the toolkit's folders by default (set it to the
# folder of a pip-installed nvidia-cudnn, say, on a machine that has it there)
CUDNN_HOME ?= $(CUDA_HOME)
NVCC      := $(CUDA_HOME)/bin/nvcc
CUDA      ?= $(shell test -x $(NVCC) && echo 1 || echo 0)
SAN       ?= 0
EMU       ?= 0
BUILD     ?= build$(if $(filter 1,$(SAN)),-san)$(if $(filter 1,$(EMU)),-emu)
LUA       ?= lua5.4

# SYSROOT: where the packages are, when not in / (a bundle unpacked by
# tools/offline-install.sh; its env.sh sets pkg-config's and the compiler's paths).
SYSROOT   ?=
comma     := ,
# OpenBLAS built on OpenMP, so its threads and ours (and oneDNN's) are one pool
# instead of two sets of threads fighting over the cores.
OPENBLAS  ?= $(SYSROOT)/usr/lib/x86_64-linux-gnu/openblas-openmp
PKGS      := lua5.4 libedit libpng libjpeg sndfile zlib kissfft-float
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
              -I$(SYSROOT)/usr/include/x86_64-linux-gnu/$(notdir $(OPENBLAS))
# (A bundle's libraries first: pkg-config names no -L for /usr/lib, and a node's own
# libjpeg 8 was linked over the bundle's 6.2 headers.)
PKG_LIBS   := $(if $(SYSROOT),-L$(SYSROOT)/usr/lib/x86_64-linux-gnu -Wl$(comma)-rpath$(comma)$(SYSROOT)/usr/lib/x86_64-linux-gnu) \
              -L$(OPENBLAS) -Wl,-rpath,$(OPENBLAS) -lopenblas \
              $(shell pkg-config --libs $(filter-out lua5.4,$(PKGS)) 2>/dev/null) -ldnnl -lm -lpthread

CPU_LIBS := $(PKG_LIBS)
CFLAGS  := -std=c11 -D_GNU_SOURCE -O2 -fvect-cost-model=dynamic -g -fno-math-errno -fno-trapping-math -Wall -Wextra -Werror -fPIC -fopenmp $(PKG_CFLAGS)
LDFLAGS := -fopenmp
SAN_FLAGS := -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ifeq ($(SAN),1)
  CFLAGS  += -O1 $(SAN_FLAGS)
  LDFLAGS += -fsanitize=address,undefined
endif

CORE_SRC := $(wildcard csrc/*.c csrc/cpu/*.c csrc/ops/*.c csrc/io/*.c csrc/signal/*.c csrc/data/*.c)
LUA_SRC  := $(wildcard csrc/lua/*.c)
CUDA_OBJ :=
EMU_OBJ  :=
ifeq ($(EMU),1)
  # The emulated GPU: CUDA's headers only; the runtime is spec/c/fake_cudart.c, the
  # kernels run as host C++ (spec/emu/emu.h), cuBLAS and cuDNN are fakes
  # (spec/emu/fake_cublas.c, fake_cudnn.c) under the real csrc/cuda/ files.
  CORE_SRC += $(filter-out csrc/cuda/cuda_stub.c,$(wildcard csrc/cuda/*.c))
  CFLAGS   += -DMILES_CUDA -DMILES_EMU -I$(CUDA_HOME)/include -I$(CUDNN_HOME)/include
  # cublas_gemm.c loads the fake cuBLAS (spec/emu/fake_cublas.c) from build-emu/lib
  EMU_CUBLAS := $(BUILD)/lib/libcublas.so.$(shell sed -n 's/^\#define CUBLAS_VER_MAJOR //p' $(CUDA_HOME)/include/cublas_api.h)
  PKG_LIBS += -lstdc++ -ldl -Wl,-rpath,$(abspath $(BUILD)/lib)
  EMU_OBJ  := $(BUILD)/obj/spec_c/fake_cudart.o $(BUILD)/obj/spec_emu/fake_cudnn.o \
              $(BUILD)/obj/spec_emu/emu.o
  CUDA_OBJ := $(patsubst kernels/%.cu,$(BUILD)/kernels/%.o,$(wildcard kernels/*.cu)) $(EMU_OBJ)
else ifeq ($(CUDA),1)
  CORE_SRC += $(filter-out csrc/cuda/cuda_stub.c,$(wildcard csrc/cuda/*.c))
  CFLAGS   += -DMILES_CUDA -I$(CUDA_HOME)/include -I$(CUDNN_HOME)/include
  PKG_LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 \
              $(foreach d,lib64 lib,-L$(CUDNN_HOME)/$(d) -Wl,-rpath,$(CUDNN_HOME)/$(d)) \
              -lcudnn -lcudart -lstdc++ -ldl # cuBLAS: dlopen on first use (cublas_gemm.c)
  # sm_90 (H100/H200) machine code plus PTX, so newer GPUs can JIT it.
  NVFLAGS  := -O2 -std=c++17 -DMILES_CUDA -I$(CUDNN_HOME)/include -Xcompiler -fPIC,-Wall,-Wextra,-Werror \
              -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
  CUDA_OBJ := $(patsubst kernels/%.cu,$(BUILD)/kernels/%.o,$(wildcard kernels/*.cu))
else
  CORE_SRC += csrc/cuda/cuda_stub.c
endif

CORE_OBJ := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(CORE_SRC))
LUA_OBJ  := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(LUA_SRC))
MAIN_OBJ := $(BUILD)/obj/main.o
CORE_OBJ := $(filter-out $(MAIN_OBJ),$(CORE_OBJ))

BIN    := $(BUILD)/bin/miles
MODULE := $(BUILD)/lib/miles/core.so

.PHONY: all test test-san bench demo deps offline-bundle clean
all: $(BIN) $(MODULE)

# The CUDA backend's host side (csrc/cuda's runtime files) linked with a fake CUDA
# runtime instead of libcudart, so a machine without a GPU checks its logic:
# spec/cuda_host_spec.lua runs it. The rest of the core comes from a static
# library, so that only what those files need is linked.
ifeq ($(CUDA)$(EMU),10)
HOSTCHECK     := $(BUILD)/bin/cuda_host_check
HOSTCHECK_OBJ := $(patsubst spec/c/%.c,$(BUILD)/obj/spec_c/%.o,$(wildcard spec/c/*.c)) \
                 $(patsubst %,$(BUILD)/obj/cuda/%.o,cuda_runtime cuda_graph cuda_pinned)
HOSTCHECK_LIB := $(BUILD)/lib/libmiles-host.a
all: $(HOSTCHECK)

$(BUILD)/obj/spec_c/%.o: spec/c/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(HOSTCHECK_LIB): $(filter-out $(BUILD)/obj/cuda/%,$(CORE_OBJ))
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(HOSTCHECK): $(HOSTCHECK_OBJ) $(HOSTCHECK_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CPU_LIBS)
endif

# Objects depend on the Makefile too, so a change of flags rebuilds them.
$(BUILD)/obj/%.o: csrc/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

ifeq ($(EMU),1)
EMU_CXXFLAGS := -std=c++17 -O1 -g -ffp-contract=off -Wall -Wextra -Werror -fPIC -DMILES_CUDA \
                -DMILES_EMU -I$(CUDA_HOME)/include -Ikernels $(PKG_CFLAGS) \
                $(if $(filter 1,$(SAN)),$(SAN_FLAGS))
# (the rewritten common.cuh sits beside the rewritten kernels, which find it first)
$(BUILD)/kernels/common.cuh: kernels/common.cuh spec/emu/cu2cpp.pl
	@mkdir -p $(dir $@)
	perl spec/emu/cu2cpp.pl < $< > $@
$(BUILD)/kernels/%.o: kernels/%.cu $(BUILD)/kernels/common.cuh spec/emu/emu.h spec/emu/cu2cpp.pl Makefile
	@mkdir -p $(dir $@)
	perl spec/emu/cu2cpp.pl < $< > $(@:.o=.cpp)
	$(CXX) $(EMU_CXXFLAGS) -include spec/emu/emu.h -c $(@:.o=.cpp) -o $@

all: $(EMU_CUBLAS)
$(EMU_CUBLAS): spec/emu/fake_cublas.c spec/c/fake_cudart.h Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -o $@ $<

$(BUILD)/obj/spec_emu/emu.o: spec/emu/emu.cpp spec/emu/emu.h Makefile
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(BUILD)/obj/spec_emu/%.o: spec/emu/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/spec_c/%.o: spec/c/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@
else
$(BUILD)/kernels/%.o: kernels/%.cu Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
endif

# The module leaves Lua's symbols to the interpreter that loads it.
$(MODULE): $(CORE_OBJ) $(LUA_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BIN): $(MAIN_OBJ) $(CORE_OBJ) $(LUA_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(shell pkg-config --libs lua5.4) $(PKG_LIBS)

# The specs run in the miles host (so a SAN=1 build checks them under the
# sanitizers); spec/run.lua prints the closing "N passed, N failed" line.
# (the emulated GPU's fake cuBLAS by path: a sanitizer build's dlopen does not see
# the binary's run path)
EMU_ENV := $(if $(filter 1,$(EMU)),MILES_CUBLAS=$(abspath $(EMU_CUBLAS)))
test: all
	$(EMU_ENV) $(BIN) spec/run.lua

# (SPECS: spec files to run, default all)
test-san:
	$(MAKE) SAN=1 CUDA=$(CUDA) EMU=$(EMU) all
	ASAN_OPTIONS=detect_leaks=1 $(if $(filter 1,$(EMU)),MILES_CUBLAS=$(abspath build-san-emu/lib)/$(notdir $(EMU_CUBLAS))) \
	  build-san$(if $(filter 1,$(EMU)),-emu)/bin/miles spec/run.lua $(SPECS)

demo: all
	$(BIN) experiments/demo.lua

bench: all
	$(BIN) experiments/bench.lua

deps:
	sh tools/install-deps.sh

# The packages for a machine without network (a GPU node): see README.
offline-bundle:
	sh tools/offline-bundle.sh offline

clean:
	rm -rf build build-san build-emu build-san-emu build-cpu build-fuzz

-include $(CORE_OBJ:.o=.d) $(LUA_OBJ:.o=.d) $(MAIN_OBJ:.o=.d) $(HOSTCHECK_OBJ:.o=.d)

# --- fuzzing: `make fuzz` builds one libFuzzer binary per csrc/io/fuzz_<reader>.c
# into build-fuzz/ (clang, ASan + UBSan, -DMILES_FUZZ, the core in a static
# library so each harness pulls in what it needs); `make fuzz-run` runs each for
# FUZZ_SECONDS (default 60) from a corpus seeded with spec/fixtures/io.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -fopenmp -Wall -Wextra -Wno-pass-failed \
                -DMILES_FUZZ $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(PKG_CFLAGS)
FUZZ_SRC     := $(wildcard csrc/io/fuzz_*.c)
FUZZ_CORE    := $(filter-out $(FUZZ_SRC) csrc/main.c $(wildcard csrc/cuda/*.c),$(CORE_SRC)) \
                csrc/cuda/cuda_stub.c
FUZZ_LIB     := $(FUZZ_DIR)/libmiles-fuzz.a
FUZZ_BINS    := $(patsubst csrc/io/fuzz_%.c,$(FUZZ_DIR)/fuzz_%,$(FUZZ_SRC))

.PHONY: fuzz fuzz-run
fuzz: $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: csrc/%.c Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(patsubst csrc/%.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_CORE))
	rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/io/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp -o $@ $^ $(PKG_LIBS)

fuzz-run: fuzz
	@for b in $(FUZZ_BINS); do \
	  name=$${b#$(FUZZ_DIR)/fuzz_}; corpus=$(FUZZ_DIR)/corpus/$$name; mkdir -p $$corpus; \
	  cp spec/fixtures/io/* $$corpus/ 2>/dev/null; cp spec/fixtures/$$name/* $$corpus/ 2>/dev/null; \
	  echo "fuzz_$$name: $(FUZZ_SECONDS) s"; \
	  $$b -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/crash-$$name- $$corpus > $(FUZZ_DIR)/$$name.log 2>&1; \
	  rc=$$?; grep -E 'DONE|ERROR|SUMMARY' $(FUZZ_DIR)/$$name.log | tail -3; \
	  [ $$rc -eq 0 ] || { echo "fuzz_$$name failed: see $(FUZZ_DIR)/$$name.log"; exit 1; }; \
	done

-include $(wildcard $(FUZZ_DIR)/obj/*.d $(FUZZ_DIR)/obj/*/*.d)
