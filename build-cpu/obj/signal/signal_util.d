build-cpu/obj/signal/signal_util.o: csrc/signal/signal_util.c \
 csrc/signal/signal_util.h csrc/signal/stft.h csrc/signal/../tensor.h \
 csrc/signal/../device.h csrc/signal/../dtype.h csrc/signal/../error.h
csrc/signal/signal_util.h:
csrc/signal/stft.h:
csrc/signal/../tensor.h:
csrc/signal/../device.h:
csrc/signal/../dtype.h:
csrc/signal/../error.h:
