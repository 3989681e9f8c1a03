/* Bindings of autograd: backward, detach, gradient recording on and off. */
#include "../autograd.h"
#include "../error.h"
#include "l_tensor.h"

/* t:backward([grad] [, {retain_graph = bool}]); the options may also follow a
 * nil gradient: t:backward(nil, {retain_graph = true}). */
static int l_backward(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    tensor *g = lt_test(L, 2);
    int oi = g || lua_isnil(L, 2) ? 3 : 2;
    bool retain = false;
    if (!g && !lua_isnoneornil(L, 2) && !lua_istable(L, 2))
        return luaL_argerror(L, 2, "expected a gradient tensor or an options table");
    if (lua_istable(L, oi)) {
        lua_getfield(L, oi, "retain_graph");
        retain = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, oi)) {
        return luaL_argerror(L, oi, "expected an options table {retain_graph = bool}");
    }
    if (ag_backward(t, g, retain) != 0)
        return lt_error(L);
    return 0;
}

/* A view of the same data that is cut from the graph. */
static int l_detach(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    tensor *d = tensor_as_strided(t, t->ndim, t->shape, t->stride, t->offset);
    return lt_push(L, d);
}

static int l_requires_grad_(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    bool on = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    if (on && !dtype_is_float(t->dtype))
        return luaL_error(L, "requires_grad_: only float tensors can require gradients, not %s",
                          dtype_name(t->dtype));
    if (t->grad_fn && !on)
        return luaL_error(L, "requires_grad_: only leaves can stop requiring grad; use :detach()");
    t->requires_grad = on;
    lua_settop(L, 1);
    return 1;
}

/* Calls f(...) with recording set to `on`, restoring the previous setting even
 * when f raises; returns f's results. */
static int with_grad_mode(lua_State *L, bool on)
{
    if (lua_type(L, 1) != LUA_TFUNCTION) { /* a callable table (a module) is fine too */
        if (luaL_getmetafield(L, 1, "__call") == LUA_TNIL)
            return luaL_typeerror(L, 1, "function or callable");
        lua_pop(L, 1);
    }
    bool was = ag_set_enabled(on);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    ag_set_enabled(was);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* autograd_profile(true [, wait]): start timing backward nodes (clearing the
 * sums), each waited for on its GPU unless wait is false;
 * autograd_profile(false) -> {name = {seconds =, calls =}}: stop, and the sums;
 * autograd_profile() -> the seconds summed so far (all nodes). */
static int l_autograd_profile(lua_State *L)
{
    const ag_profile_entry *e;
    int n = ag_profile_results(&e);
    if (lua_isnone(L, 1)) {
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += e[i].seconds;
        lua_pushnumber(L, sum);
        return 1;
    }
    bool on = lua_toboolean(L, 1);
    ag_profile(on, lua_isnoneornil(L, 2) || lua_toboolean(L, 2));
    if (on)
        return 0;
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushnumber(L, e[i].seconds);
        lua_setfield(L, -2, "seconds");
        lua_pushinteger(L, e[i].calls);
        lua_setfield(L, -2, "calls");
        lua_setfield(L, -2, e[i].name);
    }
    return 1;
}

static int l_no_grad(lua_State *L) { return with_grad_mode(L, false); }
static int l_enable_grad(lua_State *L) { return with_grad_mode(L, true); }

static int l_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, ag_enabled());
    return 1;
}

/* Returns the previous setting. */
static int l_set_grad_enabled(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    lua_pushboolean(L, ag_set_enabled(lua_toboolean(L, 1)));
    return 1;
}

static const luaL_Reg funcs[] = {
    {"no_grad", l_no_grad}, {"enable_grad", l_enable_grad},
    {"is_grad_enabled", l_is_grad_enabled}, {"set_grad_enabled", l_set_grad_enabled},
    {"detach", l_detach}, {"autograd_profile", l_autograd_profile}, {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"backward", l_backward}, {"detach", l_detach}, {"requires_grad_", l_requires_grad_},
    {NULL, NULL},
};

void l_autograd_open(lua_State *L)
{
    lt_register(L, funcs, methods);
}
