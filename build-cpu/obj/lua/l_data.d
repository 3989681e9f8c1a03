build-cpu/obj/lua/l_data.o: csrc/lua/l_data.c csrc/lua/../data/checksum.h \
 csrc/lua/../data/fsutil.h csrc/lua/../data/loader.h \
 csrc/lua/../data/../tensor.h csrc/lua/../data/../device.h \
 csrc/lua/../data/../dtype.h csrc/lua/l_tensor.h \
 /usr/include/lua5.4/lauxlib.h /usr/include/lua5.4/luaconf.h \
 /usr/include/lua5.4/lua.h /usr/include/lua5.4/lua.h csrc/lua/../tensor.h
csrc/lua/../data/checksum.h:
csrc/lua/../data/fsutil.h:
csrc/lua/../data/loader.h:
csrc/lua/../data/../tensor.h:
csrc/lua/../data/../device.h:
csrc/lua/../data/../dtype.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
