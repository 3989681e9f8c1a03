build-cpu/obj/error.o: csrc/error.c csrc/error.h
csrc/error.h:
