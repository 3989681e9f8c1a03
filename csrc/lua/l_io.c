/* Lua bindings of the file formats: miles.load, miles.save and miles.load_mmap for
 * NPY files. They only check arguments and pass the core's errors on. */
#include "../io/npy.h"
#include "l_tensor.h"

/* miles.load(path) -> tensor: read an NPY file into a new CPU tensor. */
static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    return lt_push(L, io_npy_load(path));
}

/* miles.load_mmap(path) -> tensor: an NPY file mapped copy-on-write into memory. */
static int l_load_mmap(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    return lt_push(L, io_npy_mmap(path));
}

/* miles.save(path, tensor): write a CPU tensor as an NPY file, atomically. */
static int l_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    tensor *t = lt_check(L, 2);
    if (io_npy_save(path, t) != 0)
        return lt_error(L);
    return 0;
}

void l_io_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"load", l_load},
        {"save", l_save},
        {"load_mmap", l_load_mmap},
        {NULL, NULL},
    };
    lt_register(L, funcs, NULL);
}
