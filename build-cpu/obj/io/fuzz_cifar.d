build-cpu/obj/io/fuzz_cifar.o: csrc/io/fuzz_cifar.c
