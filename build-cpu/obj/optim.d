build-cpu/obj/optim.o: csrc/optim.c csrc/optim.h csrc/tensor.h \
 csrc/device.h csrc/dtype.h csrc/cpu/iter.h csrc/cpu/../tensor.h \
 csrc/cuda/optim_cuda.h csrc/cuda/../dtype.h csrc/error.h
csrc/optim.h:
csrc/tensor.h:
csrc/device.h:
csrc/dtype.h:
csrc/cpu/iter.h:
csrc/cpu/../tensor.h:
csrc/cuda/optim_cuda.h:
csrc/cuda/../dtype.h:
csrc/error.h:
