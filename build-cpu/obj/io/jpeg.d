build-cpu/obj/io/jpeg.o: csrc/io/jpeg.c csrc/io/jpeg.h \
 csrc/io/../tensor.h csrc/io/../device.h csrc/io/../dtype.h \
 csrc/io/../error.h csrc/io/io_file.h
csrc/io/jpeg.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
csrc/io/../error.h:
csrc/io/io_file.h:
