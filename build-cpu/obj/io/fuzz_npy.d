build-cpu/obj/io/fuzz_npy.o: csrc/io/fuzz_npy.c
