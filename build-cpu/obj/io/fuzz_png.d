build-cpu/obj/io/fuzz_png.o: csrc/io/fuzz_png.c
