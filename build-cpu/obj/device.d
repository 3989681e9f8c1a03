build-cpu/obj/device.o: csrc/device.c csrc/device.h
csrc/device.h:
