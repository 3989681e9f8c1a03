build-cpu/obj/lua/l_io.o: csrc/lua/l_io.c csrc/lua/../io/npy.h \
 csrc/lua/../io/../tensor.h csrc/lua/../io/../device.h \
 csrc/lua/../io/../dtype.h csrc/lua/l_tensor.h \
 /usr/include/lua5.4/lauxlib.h /usr/include/lua5.4/luaconf.h \
 /usr/include/lua5.4/lua.h /usr/include/lua5.4/lua.h csrc/lua/../tensor.h
csrc/lua/../io/npy.h:
csrc/lua/../io/../tensor.h:
csrc/lua/../io/../device.h:
csrc/lua/../io/../dtype.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
