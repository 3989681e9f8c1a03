build-cpu/obj/lua/l_init.o: csrc/lua/l_init.c csrc/lua/../alloc.h \
 csrc/lua/../device.h csrc/lua/../version.h csrc/lua/l_repl.h \
 /usr/include/lua5.4/lua.h /usr/include/lua5.4/luaconf.h \
 csrc/lua/l_tensor.h /usr/include/lua5.4/lauxlib.h \
 /usr/include/lua5.4/lua.h csrc/lua/../tensor.h csrc/lua/../dtype.h
csrc/lua/../alloc.h:
csrc/lua/../device.h:
csrc/lua/../version.h:
csrc/lua/l_repl.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/luaconf.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
csrc/lua/../dtype.h:
