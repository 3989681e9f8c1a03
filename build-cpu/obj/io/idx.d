build-cpu/obj/io/idx.o: csrc/io/idx.c csrc/io/idx.h csrc/io/../tensor.h \
 csrc/io/../device.h csrc/io/../dtype.h csrc/io/../error.h \
 csrc/io/io_file.h
csrc/io/idx.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
csrc/io/../error.h:
csrc/io/io_file.h:
