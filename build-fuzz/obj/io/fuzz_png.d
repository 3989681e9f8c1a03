build-fuzz/obj/io/fuzz_png.o: csrc/io/fuzz_png.c csrc/io/png.h \
  csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h

csrc/io/png.h:

csrc/io/../tensor.h:

csrc/io/../device.h:

csrc/io/../dtype.h:
