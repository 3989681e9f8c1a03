build-cpu/obj/signal/stft.o: csrc/signal/stft.c csrc/signal/stft.h \
 csrc/signal/../tensor.h csrc/signal/../device.h csrc/signal/../dtype.h \
 csrc/signal/../cpu/iter.h csrc/signal/../cpu/../tensor.h \
 csrc/signal/../error.h csrc/signal/fft.h csrc/signal/../dtype.h \
 csrc/signal/signal_util.h
csrc/signal/stft.h:
csrc/signal/../tensor.h:
csrc/signal/../device.h:
csrc/signal/../dtype.h:
csrc/signal/../cpu/iter.h:
csrc/signal/../cpu/../tensor.h:
csrc/signal/../error.h:
csrc/signal/fft.h:
csrc/signal/../dtype.h:
csrc/signal/signal_util.h:
