build-cpu/obj/lua/l_cache_alloc.o: csrc/lua/l_cache_alloc.c \
 /usr/include/lua5.4/lauxlib.h /usr/include/lua5.4/luaconf.h \
 /usr/include/lua5.4/lua.h csrc/lua/../cache_alloc.h csrc/lua/l_tensor.h \
 /usr/include/lua5.4/lua.h csrc/lua/../tensor.h csrc/lua/../device.h \
 csrc/lua/../dtype.h
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../cache_alloc.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
csrc/lua/../device.h:
csrc/lua/../dtype.h:
