build-cpu/obj/cpu/softmax.o: csrc/cpu/softmax.c csrc/cpu/cpu.h \
 csrc/cpu/../dispatch.h csrc/cpu/../tensor.h csrc/cpu/../device.h \
 csrc/cpu/../dtype.h csrc/cpu/iter.h csrc/cpu/../tensor.h
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/iter.h:
csrc/cpu/../tensor.h:
