build-fuzz/obj/io/fuzz_audio.o: csrc/io/fuzz_audio.c csrc/io/audio.h \
  csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h

csrc/io/audio.h:

csrc/io/../tensor.h:

csrc/io/../device.h:

csrc/io/../dtype.h:
