build-cpu/obj/dtype.o: csrc/dtype.c csrc/dtype.h
csrc/dtype.h:
