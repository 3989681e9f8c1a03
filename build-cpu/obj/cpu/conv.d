build-cpu/obj/cpu/conv.o: csrc/cpu/conv.c csrc/cpu/../error.h \
 csrc/cpu/cpu.h csrc/cpu/../dispatch.h csrc/cpu/../tensor.h \
 csrc/cpu/../device.h csrc/cpu/../dtype.h csrc/cpu/dnnl_ctx.h \
 csrc/cpu/../tensor.h
csrc/cpu/../error.h:
csrc/cpu/cpu.h:
csrc/cpu/../dispatch.h:
csrc/cpu/../tensor.h:
csrc/cpu/../device.h:
csrc/cpu/../dtype.h:
csrc/cpu/dnnl_ctx.h:
csrc/cpu/../tensor.h:
