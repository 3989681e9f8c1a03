build-cpu/obj/ops/dropout.o: csrc/ops/dropout.c csrc/ops/internal.h \
 csrc/ops/../autograd.h csrc/ops/../tensor.h csrc/ops/../device.h \
 csrc/ops/../dtype.h csrc/ops/../error.h csrc/ops/../ops.h \
 csrc/ops/../dispatch.h
csrc/ops/internal.h:
csrc/ops/../autograd.h:
csrc/ops/../tensor.h:
csrc/ops/../device.h:
csrc/ops/../dtype.h:
csrc/ops/../error.h:
csrc/ops/../ops.h:
csrc/ops/../dispatch.h:
