build-cpu/obj/rng.o: csrc/rng.c csrc/rng.h csrc/philox.h
csrc/rng.h:
csrc/philox.h:
