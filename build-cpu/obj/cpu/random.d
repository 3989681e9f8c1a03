build-cpu/obj/cpu/random.o: csrc/cpu/random.c csrc/cpu/../rng.h \
 csrc/cpu/cpu.h csrc/cpu/../dispatch.h csrc/cpu/../tensor.h \
 csrc/cpu/../device.h csrc/cpu/../dtype.h
csrc/cpu/../rng.h:
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
