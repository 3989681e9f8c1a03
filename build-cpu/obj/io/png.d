build-cpu/obj/io/png.o: csrc/io/png.c csrc/io/png.h csrc/io/../tensor.h \
 csrc/io/../device.h csrc/io/../dtype.h /usr/include/libpng16/png.h \
 /usr/include/libpng16/pnglibconf.h /usr/include/libpng16/pngconf.h \
 csrc/io/../error.h csrc/io/io_file.h
csrc/io/png.h:
csrc/io/../tensor.h:
csrc/io/../device.h:
csrc/io/../dtype.h:
/usr/include/libpng16/png.h:
/usr/include/libpng16/pnglibconf.h:
/usr/include/libpng16/pngconf.h:
csrc/io/../error.h:
csrc/io/io_file.h:
