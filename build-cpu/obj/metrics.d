build-cpu/obj/metrics.o: csrc/metrics.c csrc/metrics.h csrc/tensor.h \
 csrc/device.h csrc/dtype.h csrc/error.h
csrc/metrics.h:
csrc/tensor.h:
csrc/device.h:
csrc/dtype.h:
csrc/error.h:
