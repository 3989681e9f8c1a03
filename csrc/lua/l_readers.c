/* Lua bindings of the data readers and writers, in the sub-table miles.io:
 * read_idx, read_cifar, read_png, write_png, read_jpeg, read_audio, write_wav and
 * resample. They only check arguments and options and pass the core's errors on,
 * led by the function's name ("read_png: <path>: not a PNG file (bad signature)"). */
#include <string.h>

#include "../error.h"
#include "../io/audio.h"
#include "../io/cifar.h"
#include "../io/idx.h"
#include "../io/jpeg.h"
#include "../io/png.h"
#include "l_tensor.h"

/* Raise the core's error, led by the binding's name (the functions live in a
 * sub-table, where the generic name lookup of lt_error does not look). */
static int lr_fail(lua_State *L, const char *fname)
{
    return luaL_error(L, "%s: %s", fname, err_msg());
}

/* Push t (taking the reference) or raise the core's error. */
static int lr_push(lua_State *L, const char *fname, tensor *t)
{
    if (!t)
        return lr_fail(L, fname);
    return lt_push(L, t);
}

/* The options table at idx (nil or absent is no options): raise on a key that is
 * not in known, so a misspelt option does not pass silently. Returns whether a
 * table is there. */
static bool lr_opts(lua_State *L, int idx, const char *fname, const char *const *known)
{
    if (lua_isnoneornil(L, idx))
        return false;
    luaL_checktype(L, idx, LUA_TTABLE);
    lt_check_keys(L, idx, fname, known);
    return true;
}

/* The integer field name of the options at idx, or def when absent. */
static lua_Integer lr_int_opt(lua_State *L, int idx, const char *name, lua_Integer def,
                              const char *fname)
{
    lua_getfield(L, idx, name);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok = 0;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok)
            return luaL_error(L, "%s: option '%s' must be an integer, got %s", fname, name,
                              luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* The string field name of the options at idx, or def when absent. */
static const char *lr_str_opt(lua_State *L, int idx, const char *name, const char *def,
                              const char *fname)
{
    lua_getfield(L, idx, name);
    const char *v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "%s: option '%s' must be a string, got %s", fname, name,
                       luaL_typename(L, -1));
            return NULL;
        }
        v = lua_tostring(L, -1); /* kept alive by the options table */
    }
    lua_pop(L, 1);
    return v;
}

/* An int in [lo, hi] at idx, or a Lua error naming the argument. */
static int lr_check_range(lua_State *L, int idx, lua_Integer lo, lua_Integer hi)
{
    lua_Integer v = luaL_checkinteger(L, idx);
    if (v < lo || v > hi)
        return luaL_argerror(L, idx, lua_pushfstring(L, "expected %I..%I, got %I", lo, hi, v));
    return (int)v;
}

/* miles.io.read_idx(path) -> tensor: an IDX file (plain or gzip). */
static int l_read_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    return lr_push(L, "read_idx", io_idx_load(path));
}

/* miles.io.read_cifar(path, {variant = 10|100}) -> images, labels [, coarse]. */
static int l_read_cifar(lua_State *L)
{
    static const char *const known[] = {"variant", NULL};
    const char *path = luaL_checkstring(L, 1);
    lua_Integer variant = 10;
    if (lr_opts(L, 2, "read_cifar", known))
        variant = lr_int_opt(L, 2, "variant", 10, "read_cifar");
    if (variant != 10 && variant != 100)
        return luaL_error(L, "read_cifar: option 'variant' must be 10 or 100, got %I", variant);
    tensor *images = NULL, *labels = NULL, *coarse = NULL;
    if (io_cifar_load(path, (int)variant, &images, &labels, &coarse) != 0)
        return lr_fail(L, "read_cifar");
    /* Each push hands its tensor to Lua; none can fail before the next is owned. */
    lt_push(L, images);
    lt_push(L, labels);
    if (!coarse)
        return 2;
    lt_push(L, coarse);
    return 3;
}

/* miles.io.read_png(path, {dtype = "uint8"|"float32"}) -> [C,H,W] tensor. */
static int l_read_png(lua_State *L)
{
    static const char *const known[] = {"dtype", NULL};
    const char *path = luaL_checkstring(L, 1);
    const char *dt = "uint8";
    if (lr_opts(L, 2, "read_png", known))
        dt = lr_str_opt(L, 2, "dtype", "uint8", "read_png");
    int d = dtype_parse(dt);
    if (d != DT_U8 && d != DT_F32)
        return luaL_error(L, "read_png: option 'dtype' must be \"uint8\" or \"float32\", "
                          "got \"%s\"", dt);
    return lr_push(L, "read_png", io_png_load(path, (dtype_t)d));
}

/* miles.io.write_png(path, t): a uint8 [H,W] or [C,H,W] tensor, atomically. */
static int l_write_png(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    tensor *t = lt_check(L, 2);
    if (io_png_save(path, t) != 0)
        return lr_fail(L, "write_png");
    return 0;
}

/* miles.io.read_jpeg(path) -> uint8 [C,H,W] tensor. */
static int l_read_jpeg(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    return lr_push(L, "read_jpeg", io_jpeg_load(path));
}

/* miles.io.read_audio(path, {mono = false, rate = nil}) -> tensor, rate. */
static int l_read_audio(lua_State *L)
{
    static const char *const known[] = {"mono", "rate", NULL};
    const char *path = luaL_checkstring(L, 1);
    bool mono = false;
    lua_Integer rate = 0;
    if (lr_opts(L, 2, "read_audio", known)) {
        lua_getfield(L, 2, "mono");
        mono = lua_toboolean(L, -1);
        lua_pop(L, 1);
        rate = lr_int_opt(L, 2, "rate", 0, "read_audio"); /* absent: the file's rate */
        lua_getfield(L, 2, "rate");
        bool given = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (given && (rate < 1 || rate > 10000000))
            return luaL_error(L, "read_audio: option 'rate' must be 1..10000000 Hz, got %I",
                              rate);
    }
    int out_rate = 0;
    lr_push(L, "read_audio", io_audio_load(path, mono, (int)rate, &out_rate));
    lua_pushinteger(L, out_rate);
    return 2;
}

/* miles.io.write_wav(path, t, rate, {format = "float"|"pcm16"}): atomically. */
static int l_write_wav(lua_State *L)
{
    static const char *const known[] = {"format", NULL};
    const char *path = luaL_checkstring(L, 1);
    tensor *t = lt_check(L, 2);
    int rate = lr_check_range(L, 3, 1, 10000000);
    const char *fmt = "float";
    if (lr_opts(L, 4, "write_wav", known))
        fmt = lr_str_opt(L, 4, "format", "float", "write_wav");
    bool pcm = strcmp(fmt, "pcm16") == 0;
    if (!pcm && strcmp(fmt, "float") != 0)
        return luaL_error(L, "write_wav: option 'format' must be \"float\" or \"pcm16\", "
                          "got \"%s\"", fmt);
    if (io_audio_save_wav(path, t, rate, pcm ? IO_WAV_PCM16 : IO_WAV_FLOAT) != 0)
        return lr_fail(L, "write_wav");
    return 0;
}

/* miles.io.resample(t, from, to) -> float32 tensor resampled along its last dim. */
static int l_resample(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    int from = lr_check_range(L, 2, 1, 10000000);
    int to = lr_check_range(L, 3, 1, 10000000);
    tensor *y = io_audio_resample(t, from, to);
    if (!y)
        return luaL_error(L, "%s", err_msg()); /* the core's message names "resample" */
    return lt_push(L, y);
}

void l_readers_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"read_idx", l_read_idx},     {"read_cifar", l_read_cifar}, {"read_png", l_read_png},
        {"write_png", l_write_png},   {"read_jpeg", l_read_jpeg},   {"read_audio", l_read_audio},
        {"write_wav", l_write_wav},   {"resample", l_resample},     {NULL, NULL},
    };
    /* The module table is on top; share its io table with other binding files. */
    lua_getfield(L, -1, "io");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "io");
    }
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
