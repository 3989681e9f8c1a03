build-cpu/obj/dispatch.o: csrc/dispatch.c csrc/dispatch.h csrc/tensor.h \
 csrc/device.h csrc/dtype.h csrc/cuda/cuda_backend.h csrc/error.h
csrc/dispatch.h:
csrc/tensor.h:
csrc/device.h:
csrc/dtype.h:
csrc/cuda/cuda_backend.h:
csrc/error.h:
