/* Lua bindings of the checkpoint files: miles.save_safetensors,
 * miles.load_safetensors and miles.write_file_atomic. They only check arguments,
 * move values between Lua tables and the core, and pass the core's errors on. */
#include <string.h>

#include "../io/safetensors.h"
#include "l_tensor.h"

#define LST_FILE_MT "miles.safetensors_file"

/* __gc of the box that holds a file being loaded: frees what was not yet handed
 * to Lua, so a Lua error while building the result leaks nothing. */
static int file_gc(lua_State *L)
{
    io_st_free(luaL_checkudata(L, 1, LST_FILE_MT));
    return 0;
}

/* Push a table of f's tensors (name -> tensor), taking each out of f. */
static void push_tensors(lua_State *L, io_st_file *f)
{
    lua_createtable(L, 0, f->n > 1000000 ? 0 : (int)f->n);
    for (size_t i = 0; i < f->n; i++) {
        lua_pushstring(L, f->entries[i].name);
        lt_push(L, f->entries[i].t); /* if this raises, f still owns the tensor */
        f->entries[i].t = NULL;
        lua_rawset(L, -3);
    }
}

/* Push a table of f's metadata (key -> string). */
static void push_metadata(lua_State *L, const io_st_file *f)
{
    lua_createtable(L, 0, f->n_meta > 1000000 ? 0 : (int)f->n_meta);
    for (size_t i = 0; i < f->n_meta; i++) {
        lua_pushstring(L, f->meta_keys[i]);
        lua_pushstring(L, f->meta_vals[i]);
        lua_rawset(L, -3);
    }
}

/* miles.load_safetensors(path) -> {name = tensor, ...}, {key = value, ...}:
 * read a safetensors file into new CPU tensors, with its metadata (an empty
 * table when the file has none). */
static int l_load_safetensors(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    io_st_file *f = lua_newuserdatauv(L, sizeof *f, 0);
    memset(f, 0, sizeof *f);
    luaL_setmetatable(L, LST_FILE_MT);
    if (io_st_load(path, f) != 0)
        return lt_error(L);
    push_tensors(L, f);
    push_metadata(L, f);
    io_st_free(f);
    return 2;
}

/* The number of entries of the table at idx (any keys). */
static size_t table_count(lua_State *L, int idx)
{
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* Collect the name -> tensor table at idx into names/ts (pointers into Lua
 * strings and tensors that the table keeps alive during the call). */
static void collect_tensors(lua_State *L, int idx, const char **names, tensor **ts)
{
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "save_safetensors: tensor names must be strings, got a %s key",
                       luaL_typename(L, -2));
        const char *name = lua_tostring(L, -2);
        tensor *t = lt_test(L, -1);
        if (!t)
            luaL_error(L, "save_safetensors: '%s' is a %s, not a tensor (or a released one)",
                       name, luaL_typename(L, -1));
        names[i] = name;
        ts[i++] = t;
        lua_pop(L, 1);
    }
}

/* Collect the metadata table at idx into keys/vals. Numbers and booleans are
 * converted to strings, kept alive in the table at anchor. */
static void collect_metadata(lua_State *L, int idx, int anchor, const char **keys,
                             const char **vals)
{
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int vt = lua_type(L, -1);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "save_safetensors: metadata keys must be strings, got a %s key",
                       luaL_typename(L, -2));
        keys[i] = lua_tostring(L, -2);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)
            luaL_error(L, "save_safetensors: metadata '%s' must be a string, got a %s", keys[i],
                       luaL_typename(L, -1));
        vals[i] = luaL_tolstring(L, -1, NULL); /* a new string on the stack */
        lua_rawseti(L, anchor, (lua_Integer)i + 1);
        i++;
        lua_pop(L, 1);
    }
}

/* miles.save_safetensors(path, {name = tensor, ...} [, {key = string, ...}]):
 * write CPU tensors (and string metadata) as a safetensors file, atomically. */
static int l_save_safetensors(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    size_t n = table_count(L, 2), nm = lua_isnil(L, 3) ? 0 : table_count(L, 3);
    /* One userdata holds the arrays, so a Lua error below frees them. */
    void **arr = lua_newuserdatauv(L, (2 * n + 2 * nm + 1) * sizeof(void *), 0);
    const char **names = (const char **)arr, **keys = (const char **)arr + 2 * n;
    tensor **ts = (tensor **)arr + n;
    lua_newtable(L); /* the anchor of converted metadata strings */
    collect_tensors(L, 2, names, ts);
    if (nm)
        collect_metadata(L, 3, lua_gettop(L), keys, keys + nm);
    if (io_st_save(path, n, names, (tensor *const *)ts, nm, keys, keys + nm) != 0)
        return lt_error(L);
    return 0;
}

/* miles.write_file_atomic(path, bytes): write a string to a file through a
 * temporary file, fsync and rename, so path holds the old or the new bytes. */
static int l_write_file_atomic(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    if (io_st_write_atomic(path, data, n) != 0)
        return lt_error(L);
    return 0;
}

void l_checkpoint_open(lua_State *L)
{
    static const luaL_Reg file_meta[] = {{"__gc", file_gc}, {NULL, NULL}};
    luaL_newmetatable(L, LST_FILE_MT);
    luaL_setfuncs(L, file_meta, 0);
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {
        {"save_safetensors", l_save_safetensors},
        {"load_safetensors", l_load_safetensors},
        {"write_file_atomic", l_write_file_atomic},
        {NULL, NULL},
    };
    lt_register(L, funcs, NULL);
}
