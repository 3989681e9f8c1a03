build-cpu/obj/lua/l_pool.o: csrc/lua/l_pool.c csrc/lua/../ops.h \
 csrc/lua/../dispatch.h csrc/lua/../tensor.h csrc/lua/../device.h \
 csrc/lua/../dtype.h csrc/lua/l_tensor.h /usr/include/lua5.4/lauxlib.h \
 /usr/include/lua5.4/luaconf.h /usr/include/lua5.4/lua.h \
 /usr/include/lua5.4/lua.h csrc/lua/../tensor.h
csrc/lua/../ops.h:
csrc/lua/../dispatch.h:
csrc/lua/../tensor.h:
csrc/lua/../device.h:
csrc/lua/../dtype.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
