build-cpu/obj/cpu/iter.o: csrc/cpu/iter.c csrc/cpu/iter.h \
 csrc/cpu/../tensor.h csrc/cpu/../device.h csrc/cpu/../dtype.h
csrc/cpu/iter.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
