build-cpu/obj/io/fuzz_jpeg.o: csrc/io/fuzz_jpeg.c
