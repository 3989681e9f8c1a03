build-cpu/obj/io/io_file.o: csrc/io/io_file.c csrc/io/io_file.h \
 csrc/io/../error.h
csrc/io/io_file.h:
csrc/io/../error.h:
