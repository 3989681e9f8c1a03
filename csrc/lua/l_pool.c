/* Bindings of pooling, resizing and dropout (miles.max_pool2d, avg_pool2d,
 * adaptive_avg_pool2d, interpolate, dropout; miles.nn.functional exposes them).
 * Arguments follow torch.nn.functional: positional in PyTorch's order, or by name
 * in a trailing options table (a plain table without array items), e.g.
 *   max_pool2d(x, 3, 2, 1)  ==  max_pool2d(x, 3, {stride = 2, padding = 1})
 * A size or window may be a number or a {height, width} pair. */
#include <math.h>
#include <string.h>

#include "../ops.h"
#include "l_tensor.h"

/* --- argument reading --- */

/* Is the value at idx an options table rather than a value such as {3, 3}? */
static bool is_options(lua_State *L, int idx)
{
    if (!lua_istable(L, idx) || lt_test(L, idx) || lua_rawlen(L, idx) != 0)
        return false;
    bool plain = !lua_getmetatable(L, idx);
    if (!plain)
        lua_pop(L, 1);
    return plain;
}

/* The optional arguments of a call: `names` in PyTorch's positional order
 * (NULL-terminated), given from stack index `first` on, or in the options table
 * at `opts` (0: none). */
typedef struct {
    const char *op;
    const char *const *names;
    int first, opts, npos;
} arg_reader;

/* The position of key in names, or -1. */
static int name_index(const char *const *names, const char *key)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], key) == 0)
            return i;
    return -1;
}

/* Raise on an option that is not one of the names, or given twice. */
static void check_options(lua_State *L, const arg_reader *r)
{
    lua_pushnil(L);
    while (lua_next(L, r->opts)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int i = key ? name_index(r->names, key) : -1;
        if (i < 0)
            luaL_error(L, "%s: unknown option '%s'", r->op, key ? key : luaL_typename(L, -1));
        if (i < r->npos && !lua_isnil(L, r->first + i))
            luaL_error(L, "%s: %s is given twice (as argument %d and as an option)", r->op,
                       key, r->first + i);
    }
}

/* Find the options table and the positional arguments of a call starting at
 * `first`; raise on too many arguments or a bad option. */
static arg_reader args_open(lua_State *L, const char *op, const char *const *names, int first)
{
    arg_reader r = {op, names, first, 0, 0};
    int top = lua_gettop(L), n = 0;
    if (top >= first && is_options(L, top))
        r.opts = top--;
    while (names[n])
        n++;
    r.npos = top >= first ? top - first + 1 : 0;
    if (r.npos > n)
        luaL_error(L, "%s: too many arguments (%d at most after the input)", op, n);
    if (r.opts)
        check_options(L, &r);
    return r;
}

/* Push argument i (nil when it was not given). */
static void args_push(lua_State *L, const arg_reader *r, int i)
{
    if (i < r->npos && !lua_isnil(L, r->first + i))
        lua_pushvalue(L, r->first + i);
    else if (r->opts)
        lua_getfield(L, r->opts, r->names[i]);
    else
        lua_pushnil(L);
}

/* An integer value at idx, or an error naming the argument. */
static int64_t check_int(lua_State *L, int idx, const arg_reader *r, int i)
{
    int ok = 0;
    lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &ok) : 0;
    if (!ok)
        luaL_error(L, "%s: %s must be an integer or a pair of integers, got %s", r->op,
                   r->names[i], luaL_typename(L, idx));
    return v;
}

/* Argument i as a {height, width} pair of integers: a number n means {n, n}. */
static bool arg_pair(lua_State *L, const arg_reader *r, int i, int64_t out[2])
{
    args_push(L, r, i);
    bool given = !lua_isnil(L, -1);
    if (lua_istable(L, -1) && !lt_test(L, -1)) {
        lua_Unsigned n = lua_rawlen(L, -1);
        if (n != 1 && n != 2)
            luaL_error(L, "%s: %s must be a number or a pair {height, width}", r->op,
                       r->names[i]);
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1, n == 1 ? 1 : k + 1);
            out[k] = check_int(L, -1, r, i);
            lua_pop(L, 1);
        }
    } else if (given) {
        out[0] = out[1] = check_int(L, -1, r, i);
    }
    lua_pop(L, 1);
    return given;
}

/* Argument i as a pair of numbers (scale factors). */
static bool arg_number_pair(lua_State *L, const arg_reader *r, int i, double out[2])
{
    args_push(L, r, i);
    bool given = !lua_isnil(L, -1);
    if (lua_istable(L, -1) && !lt_test(L, -1)) {
        if (lua_rawlen(L, -1) != 2)
            luaL_error(L, "%s: %s must be a number or a pair {height, width}", r->op,
                       r->names[i]);
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1, k + 1);
            if (!lua_isnumber(L, -1))
                luaL_error(L, "%s: %s must hold numbers", r->op, r->names[i]);
            out[k] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else if (given) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "%s: %s must be a number or a pair of numbers", r->op, r->names[i]);
        out[0] = out[1] = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return given;
}

/* Argument i as a boolean; *given tells whether it was there (may be NULL). */
static bool arg_bool(lua_State *L, const arg_reader *r, int i, bool def, bool *given)
{
    args_push(L, r, i);
    bool has = !lua_isnil(L, -1);
    if (has && !lua_isboolean(L, -1))
        luaL_error(L, "%s: %s must be a boolean, got %s", r->op, r->names[i],
                   luaL_typename(L, -1));
    bool v = has ? lua_toboolean(L, -1) : def;
    lua_pop(L, 1);
    if (given)
        *given = has;
    return v;
}

/* Argument i as a number (def when not given). */
static double arg_number(lua_State *L, const arg_reader *r, int i, double def)
{
    args_push(L, r, i);
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
        luaL_error(L, "%s: %s must be a number, got %s", r->op, r->names[i],
                   luaL_typename(L, -1));
    double v = lua_isnil(L, -1) ? def : lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* --- pooling --- */

/* max_pool2d(x, kernel_size, stride = kernel_size, padding = 0, dilation = 1,
 *            ceil_mode = false) */
static int l_max_pool2d(lua_State *L)
{
    static const char *const names[] = {"kernel_size", "stride", "padding", "dilation",
                                        "ceil_mode", NULL};
    tensor *x = lt_check(L, 1);
    arg_reader r = args_open(L, "max_pool2d", names, 2);
    pool2d_args a = {.padding = {0, 0}, .dilation = {1, 1}};
    if (!arg_pair(L, &r, 0, a.kernel))
        return luaL_error(L, "max_pool2d: give the kernel_size");
    if (!arg_pair(L, &r, 1, a.stride))
        memcpy(a.stride, a.kernel, sizeof a.stride);
    arg_pair(L, &r, 2, a.padding);
    arg_pair(L, &r, 3, a.dilation);
    a.ceil_mode = arg_bool(L, &r, 4, false, NULL);
    return lt_push(L, op_max_pool2d(x, &a));
}

/* avg_pool2d(x, kernel_size, stride = kernel_size, padding = 0, ceil_mode = false,
 *            count_include_pad = true) */
static int l_avg_pool2d(lua_State *L)
{
    static const char *const names[] = {"kernel_size", "stride", "padding", "ceil_mode",
                                        "count_include_pad", NULL};
    tensor *x = lt_check(L, 1);
    arg_reader r = args_open(L, "avg_pool2d", names, 2);
    pool2d_args a = {.padding = {0, 0}, .dilation = {1, 1}};
    if (!arg_pair(L, &r, 0, a.kernel))
        return luaL_error(L, "avg_pool2d: give the kernel_size");
    if (!arg_pair(L, &r, 1, a.stride))
        memcpy(a.stride, a.kernel, sizeof a.stride);
    arg_pair(L, &r, 2, a.padding);
    a.ceil_mode = arg_bool(L, &r, 3, false, NULL);
    a.count_include_pad = arg_bool(L, &r, 4, true, NULL);
    return lt_push(L, op_avg_pool2d(x, &a));
}

/* adaptive_avg_pool2d(x, output_size) */
static int l_adaptive_avg_pool2d(lua_State *L)
{
    static const char *const names[] = {"output_size", NULL};
    tensor *x = lt_check(L, 1);
    arg_reader r = args_open(L, "adaptive_avg_pool2d", names, 2);
    int64_t size[2];
    if (!arg_pair(L, &r, 0, size))
        return luaL_error(L, "adaptive_avg_pool2d: give the output_size");
    return lt_push(L, op_adaptive_avg_pool2d(x, size[0], size[1]));
}

/* --- interpolate --- */

static resize_mode check_mode(lua_State *L, const arg_reader *r, int i)
{
    args_push(L, r, i);
    const char *m = lua_isnil(L, -1) ? "nearest" : lua_tostring(L, -1);
    if (!m)
        luaL_error(L, "interpolate: mode must be a string, got %s", luaL_typename(L, -1));
    resize_mode mode = RESIZE_NEAREST;
    if (strcmp(m, "bilinear") == 0)
        mode = RESIZE_BILINEAR;
    else if (strcmp(m, "nearest") != 0)
        luaL_error(L, "interpolate: mode '%s' is not supported (nearest or bilinear)", m);
    lua_pop(L, 1);
    return mode;
}

/* interpolate(x, size, scale_factor, mode = "nearest", align_corners = false,
 *             recompute_scale_factor = false) */
static int l_interpolate(lua_State *L)
{
    static const char *const names[] = {"size", "scale_factor", "mode", "align_corners",
                                        "recompute_scale_factor", NULL};
    tensor *x = lt_check(L, 1);
    arg_reader r = args_open(L, "interpolate", names, 2);
    interpolate_args a = {.size = {0, 0}, .scale_factor = {0, 0}};
    bool has_size = arg_pair(L, &r, 0, a.size);
    bool has_scale = arg_number_pair(L, &r, 1, a.scale_factor);
    if (has_size == has_scale)
        return luaL_error(L, "interpolate: give exactly one of size and scale_factor");
    if (has_size && (a.size[0] <= 0 || a.size[1] <= 0))
        return luaL_error(L, "interpolate: size must be positive");
    a.mode = check_mode(L, &r, 2);
    bool given;
    a.align_corners = arg_bool(L, &r, 3, false, &given);
    if (given && a.mode == RESIZE_NEAREST)
        return luaL_error(L, "interpolate: align_corners can only be set with mode 'bilinear'");
    a.recompute_scale_factor = arg_bool(L, &r, 4, false, NULL);
    return lt_push(L, op_interpolate(x, &a));
}

/* --- dropout --- */

/* dropout(x, p = 0.5, training = true) */
static int l_dropout(lua_State *L)
{
    static const char *const names[] = {"p", "training", "inplace", NULL};
    tensor *x = lt_check(L, 1);
    arg_reader r = args_open(L, "dropout", names, 2);
    double p = arg_number(L, &r, 0, 0.5);
    bool training = arg_bool(L, &r, 1, true, NULL);
    if (arg_bool(L, &r, 2, false, NULL))
        return luaL_error(L, "dropout: inplace is not supported");
    return lt_push(L, op_dropout(x, p, training));
}

static const luaL_Reg funcs[] = {
    {"max_pool2d", l_max_pool2d},
    {"avg_pool2d", l_avg_pool2d},
    {"adaptive_avg_pool2d", l_adaptive_avg_pool2d},
    {"interpolate", l_interpolate},
    {"dropout", l_dropout},
    {NULL, NULL},
};

/* Register the functions in the miles.core table at the top of the stack. */
void l_pool_open(lua_State *L)
{
    lt_register(L, funcs, NULL);
}
