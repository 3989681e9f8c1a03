build-cpu/obj/io/npy.o: csrc/io/npy.c csrc/io/npy.h csrc/io/../tensor.h \
 csrc/io/../device.h csrc/io/../dtype.h csrc/io/../error.h \
 csrc/io/io_file.h csrc/io/text_cursor.h
csrc/io/npy.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
csrc/io/../error.h:
csrc/io/io_file.h:
csrc/io/text_cursor.h:
