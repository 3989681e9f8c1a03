build-fuzz/obj/io/fuzz_cifar.o: csrc/io/fuzz_cifar.c csrc/io/cifar.h \
  csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h

csrc/io/cifar.h:

csrc/io/../tensor.h:

csrc/io/../device.h:

csrc/io/../dtype.h:
