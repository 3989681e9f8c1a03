build-cpu/obj/tensor.o: csrc/tensor.c csrc/tensor.h csrc/device.h \
 csrc/dtype.h csrc/alloc.h csrc/autograd.h csrc/cuda/cuda_backend.h \
 csrc/dispatch.h csrc/error.h
csrc/tensor.h:
csrc/device.h:
csrc/dtype.h:
csrc/alloc.h:
csrc/autograd.h:
csrc/cuda/cuda_backend.h:
csrc/dispatch.h:
csrc/error.h:
