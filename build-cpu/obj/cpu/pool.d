build-cpu/obj/cpu/pool.o: csrc/cpu/pool.c csrc/cpu/../error.h \
 csrc/cpu/cpu.h csrc/cpu/../dispatch.h csrc/cpu/../tensor.h \
 csrc/cpu/../device.h csrc/cpu/../dtype.h csrc/cpu/dnnl_ctx.h \
 csrc/cpu/../tensor.h csrc/cpu/iter.h
csrc/cpu/../error.h:
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/dnnl_ctx.h:
csrc/cpu/../tensor.h:
csrc/cpu/iter.h:
