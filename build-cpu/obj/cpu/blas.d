build-cpu/obj/cpu/blas.o: csrc/cpu/blas.c \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h \
 csrc/cpu/cpu.h csrc/cpu/../dispatch.h csrc/cpu/../tensor.h \
 csrc/cpu/../device.h csrc/cpu/../dtype.h csrc/cpu/../error.h
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/../error.h:
