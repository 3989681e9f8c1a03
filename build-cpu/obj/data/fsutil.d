build-cpu/obj/data/fsutil.o: csrc/data/fsutil.c csrc/data/fsutil.h \
 csrc/data/../error.h
csrc/data/fsutil.h:
csrc/data/../error.h:
