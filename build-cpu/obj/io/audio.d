build-cpu/obj/io/audio.o: csrc/io/audio.c csrc/io/audio.h \
 csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h \
 csrc/io/../error.h csrc/io/io_file.h
csrc/io/audio.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
csrc/io/../error.h:
csrc/io/io_file.h:
