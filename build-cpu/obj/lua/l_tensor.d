build-cpu/obj/lua/l_tensor.o: csrc/lua/l_tensor.c csrc/lua/../autograd.h \
 csrc/lua/../tensor.h csrc/lua/../device.h csrc/lua/../dtype.h \
 csrc/lua/../dispatch.h csrc/lua/../error.h csrc/lua/../ops.h \
 csrc/lua/../dispatch.h csrc/lua/l_tensor.h /usr/include/lua5.4/lauxlib.h \
 /usr/include/lua5.4/luaconf.h /usr/include/lua5.4/lua.h \
 /usr/include/lua5.4/lua.h csrc/lua/../tensor.h
csrc/lua/../autograd.h:
csrc/lua/../tensor.h:
csrc/lua/../device.h:
csrc/lua/../dtype.h:
csrc/lua/../dispatch.h:
csrc/lua/../error.h:
csrc/lua/../ops.h:
csrc/lua/../dispatch.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
