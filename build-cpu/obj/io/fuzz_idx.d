build-cpu/obj/io/fuzz_idx.o: csrc/io/fuzz_idx.c
