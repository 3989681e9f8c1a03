build-cpu/obj/data/checksum.o: csrc/data/checksum.c csrc/data/checksum.h \
 csrc/data/../error.h
csrc/data/checksum.h:
csrc/data/../error.h:
