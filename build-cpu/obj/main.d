build-cpu/obj/main.o: csrc/main.c /usr/include/lua5.4/lauxlib.h \
 /usr/include/lua5.4/luaconf.h /usr/include/lua5.4/lua.h \
 /usr/include/lua5.4/lua.h /usr/include/lua5.4/lualib.h csrc/lua/l_repl.h \
 csrc/version.h
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lualib.h:
csrc/lua/l_repl.h:
csrc/version.h:
