build-cpu/obj/signal/fft.o: csrc/signal/fft.c csrc/signal/fft.h \
 csrc/signal/../dtype.h /usr/include/kissfft/kiss_fft.h \
 /usr/include/kissfft/kiss_fftr.h /usr/include/kissfft/kiss_fft.h \
 csrc/signal/../error.h
csrc/signal/fft.h:
csrc/signal/../dtype.h:
/usr/include/kissfft/kiss_fft.h:
/usr/include/kissfft/kiss_fftr.h:
/usr/include/kissfft/kiss_fft.h:
csrc/signal/../error.h:
