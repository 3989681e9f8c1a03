build-cpu/obj/io/text_cursor.o: csrc/io/text_cursor.c \
 csrc/io/text_cursor.h csrc/io/io_file.h
csrc/io/text_cursor.h:
csrc/io/io_file.h:
