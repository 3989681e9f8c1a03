build-cpu/obj/io/fuzz_audio.o: csrc/io/fuzz_audio.c
