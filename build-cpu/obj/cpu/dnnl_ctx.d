build-cpu/obj/cpu/dnnl_ctx.o: csrc/cpu/dnnl_ctx.c csrc/cpu/dnnl_ctx.h \
 csrc/cpu/../tensor.h csrc/cpu/../device.h csrc/cpu/../dtype.h \
 csrc/cpu/../error.h csrc/cpu/iter.h
csrc/cpu/dnnl_ctx.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/../error.h:
csrc/cpu/iter.h:
