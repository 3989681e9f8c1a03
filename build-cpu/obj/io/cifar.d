build-cpu/obj/io/cifar.o: csrc/io/cifar.c csrc/io/cifar.h \
 csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h \
 csrc/io/../error.h csrc/io/io_file.h
csrc/io/cifar.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
csrc/io/../error.h:
csrc/io/io_file.h:
