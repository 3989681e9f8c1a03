build-cpu/obj/cache_alloc.o: csrc/cache_alloc.c csrc/cache_alloc.h
csrc/cache_alloc.h:
