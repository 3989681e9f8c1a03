build-fuzz/obj/io/fuzz_jpeg.o: csrc/io/fuzz_jpeg.c csrc/io/jpeg.h \
  csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h

csrc/io/jpeg.h:

csrc/io/../tensor.h:

csrc/io/../device.h:

csrc/io/../dtype.h:
