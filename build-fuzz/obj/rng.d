build-fuzz/obj/rng.o: csrc/rng.c csrc/rng.h

csrc/rng.h:
