build-cpu/obj/cpu/backend.o: csrc/cpu/backend.c csrc/cpu/cpu.h \
 csrc/cpu/../dispatch.h csrc/cpu/../tensor.h csrc/cpu/../device.h \
 csrc/cpu/../dtype.h
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
