build-fuzz/obj/io/fuzz_npy.o: csrc/io/fuzz_npy.c csrc/io/npy.h \
  csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h

csrc/io/npy.h:

csrc/io/../tensor.h:

csrc/io/../device.h:

csrc/io/../dtype.h:
