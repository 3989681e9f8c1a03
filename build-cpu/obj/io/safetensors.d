build-cpu/obj/io/safetensors.o: csrc/io/safetensors.c \
 csrc/io/safetensors.h csrc/io/../tensor.h csrc/io/../device.h \
 csrc/io/../dtype.h csrc/io/../error.h csrc/io/io_file.h \
 csrc/io/text_cursor.h
csrc/io/safetensors.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
csrc/io/../error.h:
csrc/io/io_file.h:
csrc/io/text_cursor.h:
