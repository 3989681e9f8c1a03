build-cpu/obj/cuda/cuda_stub.o: csrc/cuda/cuda_stub.c \
 csrc/cuda/cuda_backend.h csrc/cuda/../error.h
csrc/cuda/cuda_backend.h:
csrc/cuda/../error.h:
