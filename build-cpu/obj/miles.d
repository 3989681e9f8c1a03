build-cpu/obj/miles.o: csrc/miles.c csrc/miles.h csrc/error.h
csrc/miles.h:
csrc/error.h:
