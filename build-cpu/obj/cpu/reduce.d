build-cpu/obj/cpu/reduce.o: csrc/cpu/reduce.c csrc/cpu/cpu.h \
 csrc/cpu/../dispatch.h csrc/cpu/../tensor.h csrc/cpu/../device.h \
 csrc/cpu/../dtype.h csrc/cpu/iter.h csrc/cpu/../tensor.h
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/iter.h:
csrc/cpu/../tensor.h:
