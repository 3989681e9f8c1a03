build-cpu/obj/cpu/resize.o: csrc/cpu/resize.c csrc/cpu/../error.h \
 csrc/cpu/cpu.h csrc/cpu/../dispatch.h csrc/cpu/../tensor.h \
 csrc/cpu/../device.h csrc/cpu/../dtype.h csrc/cpu/iter.h \
 csrc/cpu/../tensor.h
csrc/cpu/../error.h:
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/iter.h:
csrc/cpu/../tensor.h:
