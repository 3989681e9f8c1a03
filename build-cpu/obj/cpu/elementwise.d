build-cpu/obj/cpu/elementwise.o: csrc/cpu/elementwise.c \
 csrc/cpu/../dispatch.h csrc/cpu/../tensor.h csrc/cpu/../device.h \
 csrc/cpu/../dtype.h csrc/cpu/cpu.h csrc/cpu/iter.h csrc/cpu/../tensor.h
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/cpu.h:
csrc/cpu/iter.h:
csrc/cpu/../tensor.h:
