/* Bindings of conv2d and batch_norm (miles.conv2d, miles.batch_norm; with
 * PyTorch's argument order in miles.nn.functional). */
#include "../ops.h"
#include "l_tensor.h"

/* A pair argument: a number n means {n, n}; a table {h, w}. */
static void read_pair(lua_State *L, int idx, int64_t def, int64_t *out, const char *name)
{
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) {
        out[0] = out[1] = def;
    } else if (lua_istable(L, idx)) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, idx, i + 1);
            int ok;
            out[i] = lua_tointegerx(L, -1, &ok);
            if (!ok)
                luaL_error(L, "conv2d: %s must be a number or a pair {h, w}", name);
            lua_pop(L, 1);
        }
    } else {
        out[0] = out[1] = luaL_checkinteger(L, idx);
    }
}

/* conv2d(x, w, b, stride, padding, dilation, groups), or with the options in a
 * table: conv2d(x, w, b, {stride=, padding=, dilation=, groups=, relu=}); relu =
 * true gives relu(conv2d(...)), fused where cuDNN has an engine for it. */
static int l_conv2d(lua_State *L)
{
    tensor *x = lt_check(L, 1), *w = lt_check(L, 2);
    tensor *b = lua_isnoneornil(L, 3) ? NULL : lt_check(L, 3);
    conv2d_params p = {.relu = false};
    if (lua_istable(L, 4) && lua_rawlen(L, 4) == 0 && !lt_test(L, 4)) {
        static const char *const known[] = {"stride", "padding", "dilation", "groups", "relu", NULL};
        lt_check_keys(L, 4, "conv2d", known);
        lua_getfield(L, 4, "stride");
        lua_getfield(L, 4, "padding");
        lua_getfield(L, 4, "dilation");
        lua_getfield(L, 4, "groups");
        lua_getfield(L, 4, "relu");
        read_pair(L, -5, 1, p.stride, "stride");
        read_pair(L, -4, 0, p.padding, "padding");
        read_pair(L, -3, 1, p.dilation, "dilation");
        p.groups = luaL_optinteger(L, -2, 1);
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            return luaL_error(L, "conv2d: option 'relu' must be a boolean, got %s",
                              luaL_typename(L, -1));
        p.relu = lua_toboolean(L, -1);
    } else {
        read_pair(L, 4, 1, p.stride, "stride");
        read_pair(L, 5, 0, p.padding, "padding");
        read_pair(L, 6, 1, p.dilation, "dilation");
        p.groups = luaL_optinteger(L, 7, 1);
    }
    return lt_push(L, op_conv2d(x, w, b, &p));
}

static tensor *opt_tensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : lt_check(L, idx);
}

/* batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps
 * [, {residual = t, relu = true}]) */
static int l_batch_norm(lua_State *L)
{
    tensor *x = lt_check(L, 1);
    tensor *rm = opt_tensor(L, 2), *rv = opt_tensor(L, 3);
    tensor *w = opt_tensor(L, 4), *b = opt_tensor(L, 5);
    if (!lua_isnoneornil(L, 6) && !lua_isboolean(L, 6)) /* an options table here is a slip */
        return luaL_argerror(L, 6, "training must be a boolean (the options table is argument 9)");
    bool training = lua_toboolean(L, 6);
    double momentum = luaL_optnumber(L, 7, 0.1), eps = luaL_optnumber(L, 8, 1e-5);
    if (momentum < 0 || momentum > 1)
        return luaL_argerror(L, 7, "momentum must be in [0, 1]");
    if (eps <= 0)
        return luaL_argerror(L, 8, "eps must be positive");
    tensor *residual = NULL;
    bool relu = false;
    if (!lua_isnoneornil(L, 9)) {
        static const char *const known[] = {"residual", "relu", NULL};
        luaL_checktype(L, 9, LUA_TTABLE);
        lt_check_keys(L, 9, "batch_norm", known);
        lua_getfield(L, 9, "residual");
        if (!lua_isnil(L, -1) && !(residual = lt_test(L, -1)))
            return luaL_error(L, "batch_norm: option 'residual' must be a tensor, got %s",
                              luaL_typename(L, -1));
        lua_getfield(L, 9, "relu");
        relu = lua_toboolean(L, -1);
    }
    return lt_push(L, op_batch_norm(x, rm, rv, w, b, training, momentum, eps, residual, relu));
}

/* channels_last([on]) -> on: the layout of float32 and bfloat16 convolution outputs (NHWC in
 * memory when on, the default; contiguous NCHW when off), after setting it. */
static int l_channels_last(lua_State *L)
{
    return lt_switch(L, ops_set_channels_last, ops_get_channels_last);
}

static const luaL_Reg funcs[] = {
    {"conv2d", l_conv2d}, {"batch_norm", l_batch_norm}, {"channels_last", l_channels_last},
    {NULL, NULL},
};

void l_conv_open(lua_State *L)
{
    lt_register(L, funcs, NULL);
}
