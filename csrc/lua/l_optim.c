/* Bindings of the optimizer updates (csrc/optim.h) as miles.core._optim, the
 * kernels under lua/miles/optim.lua. They read the arguments and a group's
 * hyper-parameter table, and pass the core's errors on; no maths here.
 *
 *   adam_step(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, step, group)
 *   adamw_step(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, step, group)
 *       group: {lr=, betas={beta1, beta2}, eps=, weight_decay=, amsgrad=, maximize=}
 *   sgd_step(p, grad, momentum_buffer|nil, first, group)
 *       group: {lr=, momentum=, dampening=, weight_decay=, nesterov=, maximize=}
 *   adam_group_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs|nil, steps, group)
 *   adamw_group_step(...): the same arguments
 *   sgd_group_step(params, grads, momentum_buffers|nil, firsts|nil, group)
 *       one update of a group's parameters (lists of the same length; steps: the
 *       update's number for each parameter; firsts: booleans, true where the
 *       buffer is new): on a GPU, one fused kernel launch for the lot
 *   check(kind, group) -> true | nil, message     kind: "adam", "adamw" or "sgd"
 *   id(t) -> a light userdata naming the tensor (the same for every Lua value
 *            that holds it), to find duplicates and to key state */
#include <limits.h>

#include "../error.h"
#include "../optim.h"
#include "l_tensor.h"

/* Field k of the table at idx as a number, or an error naming the field. */
static double field_number(lua_State *L, int idx, const char *who, const char *k)
{
    lua_getfield(L, idx, k);
    int ok;
    lua_Number v = lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: '%s' must be a number, got %s", who, k, luaL_typename(L, -1));
    lua_pop(L, 1);
    return (double)v;
}

/* Field k of the table at idx as a boolean (nil is false). */
static bool field_bool(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Adam's hyper-parameters from the group table at idx. */
static optim_adam_opts read_adam(lua_State *L, int idx, const char *who)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    optim_adam_opts o;
    o.lr = field_number(L, idx, who, "lr");
    o.eps = field_number(L, idx, who, "eps");
    o.weight_decay = field_number(L, idx, who, "weight_decay");
    o.amsgrad = field_bool(L, idx, "amsgrad");
    o.maximize = field_bool(L, idx, "maximize");
    lua_getfield(L, idx, "betas");
    if (!lua_istable(L, -1) || lua_rawgeti(L, -1, 1) != LUA_TNUMBER ||
        lua_rawgeti(L, -2, 2) != LUA_TNUMBER)
        luaL_error(L, "%s: 'betas' must be a table of two numbers {beta1, beta2}", who);
    o.beta1 = (double)lua_tonumber(L, -2);
    o.beta2 = (double)lua_tonumber(L, -1);
    lua_pop(L, 3);
    return o;
}

/* SGD's hyper-parameters from the group table at idx. */
static optim_sgd_opts read_sgd(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    optim_sgd_opts o;
    o.lr = field_number(L, idx, "sgd", "lr");
    o.momentum = field_number(L, idx, "sgd", "momentum");
    o.dampening = field_number(L, idx, "sgd", "dampening");
    o.weight_decay = field_number(L, idx, "sgd", "weight_decay");
    o.nesterov = field_bool(L, idx, "nesterov");
    o.maximize = field_bool(L, idx, "maximize");
    return o;
}

/* The Adam and AdamW updates share their arguments; decoupled picks AdamW. */
static int adam_like(lua_State *L, bool decoupled)
{
    const char *who = decoupled ? "adamw" : "adam";
    tensor *p = lt_check(L, 1), *g = lt_check(L, 2), *m = lt_check(L, 3),
           *v = lt_check(L, 4);
    tensor *vmax = lua_isnoneornil(L, 5) ? NULL : lt_check(L, 5);
    lua_Integer step = luaL_checkinteger(L, 6);
    optim_adam_opts o = read_adam(L, 7, who);
    int rc = decoupled ? optim_adamw_step(p, g, m, v, vmax, (int64_t)step, &o)
                       : optim_adam_step(p, g, m, v, vmax, (int64_t)step, &o);
    return rc == 0 ? 0 : lt_error(L);
}

/* adam_step(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, step, group) */
static int l_adam_step(lua_State *L)
{
    return adam_like(L, false);
}

/* adamw_step(...): the same arguments as adam_step. */
static int l_adamw_step(lua_State *L)
{
    return adam_like(L, true);
}

/* sgd_step(p, grad, momentum_buffer|nil, first, group) */
static int l_sgd_step(lua_State *L)
{
    tensor *p = lt_check(L, 1), *g = lt_check(L, 2);
    tensor *buf = lua_isnoneornil(L, 3) ? NULL : lt_check(L, 3);
    bool first = lua_toboolean(L, 4);
    optim_sgd_opts o = read_sgd(L, 5);
    return optim_sgd_step(p, g, buf, first, &o) == 0 ? 0 : lt_error(L);
}

/* The length of the list argument at idx (raises unless it is a table), checked
 * to fit the core's int count. */
static int list_len(lua_State *L, int idx, const char *fname)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Unsigned n = lua_rawlen(L, idx);
    if (n > INT_MAX / 64)
        luaL_error(L, "%s: too many tensors (%llu)", fname, (unsigned long long)n);
    return (int)n;
}

/* Element i (1-based) of the list at idx as a tensor (kept alive by the list),
 * or an error naming the list and the element. */
static tensor *list_tensor(lua_State *L, int idx, int i, const char *fname, const char *what)
{
    lua_rawgeti(L, idx, i);
    tensor *t = lt_test(L, -1);
    if (!t)
        luaL_error(L, "%s: %s[%d] is not a tensor (got %s)", fname, what, i,
                   luaL_typename(L, -1));
    lua_pop(L, 1);
    return t;
}

/* Scratch memory for one call, freed by the GC: left on the stack. */
static void *scratch(lua_State *L, size_t nbytes)
{
    return lua_newuserdatauv(L, nbytes > 0 ? nbytes : 1, 0);
}

/* The group updates of Adam and AdamW share their arguments. */
static int adam_group_like(lua_State *L, bool decoupled)
{
    const char *who = decoupled ? "adamw" : "adam";
    const char *fn = decoupled ? "adamw_group_step" : "adam_group_step";
    int n = list_len(L, 1, fn);
    for (int a = 2; a <= 4; a++)
        luaL_checktype(L, a, LUA_TTABLE);
    bool has_vmax = !lua_isnoneornil(L, 5);
    if (has_vmax)
        luaL_checktype(L, 5, LUA_TTABLE);
    luaL_checktype(L, 6, LUA_TTABLE);
    optim_adam_opts o = read_adam(L, 7, who);
    int64_t *steps = scratch(L, (size_t)n * (sizeof(int64_t) + 5 * sizeof(tensor *)));
    tensor **ps = (tensor **)(steps + n), **gs = ps + n, **ms = gs + n, **vs = ms + n,
           **vmaxs = vs + n;
    for (int i = 0; i < n; i++) {
        ps[i] = list_tensor(L, 1, i + 1, fn, "params");
        gs[i] = list_tensor(L, 2, i + 1, fn, "grads");
        ms[i] = list_tensor(L, 3, i + 1, fn, "exp_avgs");
        vs[i] = list_tensor(L, 4, i + 1, fn, "exp_avg_sqs");
        vmaxs[i] = has_vmax ? list_tensor(L, 5, i + 1, fn, "max_exp_avg_sqs") : NULL;
        lua_rawgeti(L, 6, i + 1);
        int ok;
        lua_Integer s = lua_tointegerx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "%s: steps[%d] must be an integer, got %s", fn, i + 1,
                       luaL_typename(L, -1));
        lua_pop(L, 1);
        steps[i] = (int64_t)s;
    }
    const tensor *const *cgs = (const tensor *const *)gs;
    tensor *const *vm = has_vmax ? vmaxs : NULL;
    int rc = decoupled ? optim_adamw_group_step(n, ps, cgs, ms, vs, vm, steps, &o)
                       : optim_adam_group_step(n, ps, cgs, ms, vs, vm, steps, &o);
    return rc == 0 ? 0 : lt_error(L);
}

/* adam_group_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs|nil, steps, group) */
static int l_adam_group_step(lua_State *L)
{
    return adam_group_like(L, false);
}

/* adamw_group_step(...): the same arguments as adam_group_step. */
static int l_adamw_group_step(lua_State *L)
{
    return adam_group_like(L, true);
}

/* sgd_group_step(params, grads, momentum_buffers|nil, firsts|nil, group) */
static int l_sgd_group_step(lua_State *L)
{
    const char *fn = "sgd_group_step";
    int n = list_len(L, 1, fn);
    luaL_checktype(L, 2, LUA_TTABLE);
    bool has_buf = !lua_isnoneornil(L, 3), has_first = !lua_isnoneornil(L, 4);
    if (has_buf)
        luaL_checktype(L, 3, LUA_TTABLE);
    if (has_first)
        luaL_checktype(L, 4, LUA_TTABLE);
    optim_sgd_opts o = read_sgd(L, 5);
    tensor **ps = scratch(L, (size_t)n * (3 * sizeof(tensor *) + sizeof(bool)));
    tensor **gs = ps + n, **bufs = gs + n;
    bool *firsts = (bool *)(bufs + n);
    for (int i = 0; i < n; i++) {
        ps[i] = list_tensor(L, 1, i + 1, fn, "params");
        gs[i] = list_tensor(L, 2, i + 1, fn, "grads");
        bufs[i] = has_buf ? list_tensor(L, 3, i + 1, fn, "momentum_buffers") : NULL;
        firsts[i] = false;
        if (has_first) {
            lua_rawgeti(L, 4, i + 1);
            firsts[i] = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    }
    int rc = optim_sgd_group_step(n, ps, (const tensor *const *)gs, has_buf ? bufs : NULL,
                                  firsts, &o);
    return rc == 0 ? 0 : lt_error(L);
}

/* check(kind, group): validate a group's values without updating anything, so
 * the Lua side can refuse a bad group before any parameter moves. */
static int l_check(lua_State *L)
{
    static const char *const kinds[] = {"adam", "adamw", "sgd", NULL};
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    int rc;
    if (kind == 2) {
        optim_sgd_opts o = read_sgd(L, 2);
        rc = optim_sgd_check(&o);
    } else {
        optim_adam_opts o = read_adam(L, 2, kinds[kind]);
        rc = optim_adam_check(&o, kinds[kind]);
    }
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err_msg());
    return 2;
}

/* id(t): the tensor's identity, the same whichever userdata holds it. */
static int l_id(lua_State *L)
{
    lua_pushlightuserdata(L, lt_check(L, 1));
    return 1;
}

/* Register the functions as the table `_optim` of the module table on the stack. */
void l_optim_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"adam_step", l_adam_step},
        {"adamw_step", l_adamw_step},
        {"sgd_step", l_sgd_step},
        {"adam_group_step", l_adam_group_step},
        {"adamw_group_step", l_adamw_group_step},
        {"sgd_group_step", l_sgd_group_step},
        {"check", l_check},
        {"id", l_id},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "_optim");
}
