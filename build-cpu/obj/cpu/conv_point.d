build-cpu/obj/cpu/conv_point.o: csrc/cpu/conv_point.c \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 csrc/cpu/../error.h csrc/cpu/cpu.h csrc/cpu/../dispatch.h \
 csrc/cpu/../tensor.h csrc/cpu/../device.h csrc/cpu/../dtype.h
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
csrc/cpu/../error.h:
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
