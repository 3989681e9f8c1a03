build-cpu/obj/lua/l_readers.o: csrc/lua/l_readers.c csrc/lua/../error.h \
 csrc/lua/../io/audio.h csrc/lua/../io/../tensor.h \
 csrc/lua/../io/../device.h csrc/lua/../io/../dtype.h \
 csrc/lua/../io/cifar.h csrc/lua/../io/idx.h csrc/lua/../io/jpeg.h \
 csrc/lua/../io/png.h csrc/lua/l_tensor.h /usr/include/lua5.4/lauxlib.h \
 /usr/include/lua5.4/luaconf.h /usr/include/lua5.4/lua.h \
 /usr/include/lua5.4/lua.h csrc/lua/../tensor.h
csrc/lua/../error.h:
csrc/lua/../io/audio.h:
csrc/lua/../io/../tensor.h:
csrc/lua/../io/../device.h:
csrc/lua/../io/../dtype.h:
csrc/lua/../io/cifar.h:
csrc/lua/../io/idx.h:
csrc/lua/../io/jpeg.h:
csrc/lua/../io/png.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
