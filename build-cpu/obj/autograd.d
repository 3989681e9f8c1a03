build-cpu/obj/autograd.o: csrc/autograd.c csrc/autograd.h csrc/tensor.h \
 csrc/device.h csrc/dtype.h csrc/error.h csrc/ops.h csrc/dispatch.h
csrc/autograd.h:
csrc/tensor.h:
csrc/device.h:
csrc/dtype.h:
csrc/error.h:
csrc/ops.h:
csrc/dispatch.h:
