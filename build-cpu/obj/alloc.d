build-cpu/obj/alloc.o: csrc/alloc.c csrc/alloc.h csrc/device.h \
 csrc/cuda/cuda_backend.h csrc/error.h
csrc/alloc.h:
csrc/device.h:
csrc/cuda/cuda_backend.h:
csrc/error.h:
