build-fuzz/obj/io/fuzz_idx.o: csrc/io/fuzz_idx.c csrc/io/idx.h \
  csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h

csrc/io/idx.h:

csrc/io/../tensor.h:

csrc/io/../device.h:

csrc/io/../dtype.h:
