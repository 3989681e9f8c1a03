build-cpu/obj/cpu/batchnorm.o: csrc/cpu/batchnorm.c csrc/cpu/../error.h \
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
