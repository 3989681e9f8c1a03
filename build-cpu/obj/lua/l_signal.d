build-cpu/obj/lua/l_signal.o: csrc/lua/l_signal.c csrc/lua/../error.h \
 csrc/lua/../signal/fft.h csrc/lua/../signal/../dtype.h \
 csrc/lua/../signal/mel.h csrc/lua/../signal/stft.h \
 csrc/lua/../signal/../tensor.h csrc/lua/../signal/../device.h \
 csrc/lua/../signal/../dtype.h csrc/lua/../signal/stft.h \
 csrc/lua/l_tensor.h /usr/include/lua5.4/lauxlib.h \
 /usr/include/lua5.4/luaconf.h /usr/include/lua5.4/lua.h \
 /usr/include/lua5.4/lua.h csrc/lua/../tensor.h
csrc/lua/../error.h:
csrc/lua/../signal/fft.h:
csrc/lua/../signal/../dtype.h:
csrc/lua/../signal/mel.h:
csrc/lua/../signal/stft.h:
csrc/lua/../signal/../tensor.h:
csrc/lua/../signal/../device.h:
csrc/lua/../signal/../dtype.h:
csrc/lua/../signal/stft.h:
csrc/lua/l_tensor.h:
/usr/include/lua5.4/lauxlib.h:
/usr/include/lua5.4/luaconf.h:
/usr/include/lua5.4/lua.h:
/usr/include/lua5.4/lua.h:
csrc/lua/../tensor.h:
