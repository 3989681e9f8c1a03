build-cpu/obj/data/loader.o: csrc/data/loader.c csrc/data/loader.h \
 csrc/data/../tensor.h csrc/data/../device.h csrc/data/../dtype.h \
 csrc/data/../error.h csrc/data/../rng.h
csrc/data/loader.h:
csrc/data/../tensor.h:
csrc/data/../device.h:
csrc/data/../dtype.h:
csrc/data/../error.h:
csrc/data/../rng.h:
