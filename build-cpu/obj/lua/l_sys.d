build-cpu/obj/lua/l_sys.o: csrc/lua/l_sys.c csrc/lua/../alloc.h \
 csrc/lua/../device.h csrc/lua/../cpu/iter.h csrc/lua/../cpu/../tensor.h \
 csrc/lua/../cpu/../device.h csrc/lua/../cpu/../dtype.h \
 csrc/lua/../cuda/cuda_backend.h csrc/lua/../rng.h csrc/lua/l_tensor.h \
 /usr/include/lua5.4/lauxlib.h /usr/include/lua5.4/luaconf.h \
 /usr/include/lua5.4/lua.h /usr/include/lua5.4/lua.h csrc/lua/../tensor.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h
csrc/lua/../alloc.h:
csrc/lua/../device.h:
csrc/lua/../cpu/iter.h:
csrc/lua/../cpu/../tensor.h:
csrc/lua/../cpu/../device.h:
csrc/lua/../cpu/../dtype.h:
csrc/lua/../cuda/cuda_backend.h:
csrc/lua/../rng.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-openmp/openblas_config.h:
