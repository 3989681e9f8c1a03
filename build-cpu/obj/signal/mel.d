build-cpu/obj/signal/mel.o: csrc/signal/mel.c csrc/signal/mel.h \
 csrc/signal/stft.h csrc/signal/../tensor.h csrc/signal/../device.h \
 csrc/signal/../dtype.h csrc/signal/../cpu/iter.h \
 csrc/signal/../cpu/../tensor.h csrc/signal/../error.h \
 csrc/signal/signal_util.h
csrc/signal/mel.h:
csrc/signal/stft.h:
csrc/signal/../tensor.h:
csrc/signal/../device.h:
csrc/signal/../dtype.h:
csrc/signal/../cpu/iter.h:
csrc/signal/../cpu/../tensor.h:
csrc/signal/../error.h:
csrc/signal/signal_util.h:
