/* The tensor userdata: lifetime, properties, creation from Lua values, views and
 * indexing. Dims and indices are 1-based here and converted for the core. */
#include <math.h>
#include <string.h>

#include "../autograd.h"
#include "../cuda/cuda_backend.h"
#include "../dispatch.h"
#include "../error.h"
#include "../ops.h"
#include "l_tensor.h"

#define LT_METHODS "miles.Tensor.methods"

/* --- helpers shared by every binding file --- */

/* Does msg start with an op name ("matmul: ...")? */
static bool names_op(const char *msg)
{
    const char *p = msg;
    while (*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
           (p > msg && *p >= '0' && *p <= '9'))
        p++;
    return p > msg && p[0] == ':' && p[1] == ' ';
}

static const char *lt_fname(lua_State *L);

/* The core's message, led by the name of the function the user called when the
 * core did not name an op ("zeros: a tensor of shape ... has too many elements"). */
int lt_error(lua_State *L)
{
    const char *msg = err_msg();
    if (names_op(msg))
        return luaL_error(L, "%s", msg);
    return luaL_error(L, "%s: %s", lt_fname(L), msg);
}

int lt_push(lua_State *L, tensor *t)
{
    if (!t)
        return lt_error(L);
    /* The box exists before the tensor is stored in it: if the allocation of
     * the userdata fails (a Lua error), release the tensor first. */
    tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = t;
    luaL_setmetatable(L, LT_TENSOR_MT);
    return 1;
}

/* The name of the running C function as Lua called it ("zeros", "reshape",
 * "add" for __add), so that errors name the op the user wrote. */
/* The key under which table t holds the value at the top, or NULL. */
static const char *key_of(lua_State *L, int t)
{
    int f = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_rawequal(L, -1, f) && lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2); /* kept alive by the table */
            lua_pop(L, 2);
            return k;
        }
        lua_pop(L, 1);
    }
    return NULL;
}

static const char *lt_fname(lua_State *L)
{
    lua_Debug ar;
    if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "nf", &ar))
        return "?";
    const char *name = ar.name;
    /* Called without a name (pcall(miles.zeros, ...)): look the function up in
     * the module and method tables. Error paths only, so the search is cheap. */
    if (!name) {
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_getfield(L, -1, "miles.core");
        luaL_getmetatable(L, LT_METHODS);
        lua_rotate(L, -4, -1); /* the function back on top */
        if (lua_istable(L, -3))
            name = key_of(L, lua_absindex(L, -3));
        if (!name && lua_istable(L, -2))
            name = key_of(L, lua_absindex(L, -2));
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
    return name ? name : "?";
}

/* Raise the error for a tensor used after t:free() or the end of its <close> scope. */
static int released_error(lua_State *L)
{
    return luaL_error(L, "%s: the tensor was released (by :free() or a <close> variable) "
                         "and cannot be used any more", lt_fname(L));
}

/* A released tensor is still a tensor: using it is an error, never "not a tensor". */
tensor *lt_test(lua_State *L, int idx)
{
    tensor **box = luaL_testudata(L, idx, LT_TENSOR_MT);
    if (box && !*box)
        released_error(L);
    return box ? *box : NULL;
}

tensor *lt_check(lua_State *L, int idx)
{
    tensor **box = luaL_checkudata(L, idx, LT_TENSOR_MT);
    if (!*box)
        released_error(L);
    return *box;
}

int lt_dim(lua_State *L, int idx)
{
    lua_Integer d = luaL_checkinteger(L, idx);
    if (d == 0)
        luaL_argerror(L, idx, "dims are numbered from 1 (or from -1 at the end)");
    return d > 0 ? (int)(d - 1) : (int)d;
}

int lt_optdim(lua_State *L, int idx, int def0)
{
    return lua_isnoneornil(L, idx) ? def0 : lt_dim(L, idx);
}

/* idx may be relative (an options field pushed on the stack), so the error names
 * the function instead of an argument number. */
dtype_t lt_optdtype(lua_State *L, int idx, dtype_t def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: dtype must be a string such as \"float32\", got %s", lt_fname(L),
                   luaL_typename(L, idx));
    const char *name = lua_tostring(L, idx);
    int dt = dtype_parse(name);
    if (dt < 0)
        luaL_error(L, "%s: unknown dtype '%s' (float32, float64, int64, uint8 or bool)",
                   lt_fname(L), name);
    return (dtype_t)dt;
}

int lt_shape(lua_State *L, int idx, int64_t *shape)
{
    int n = 0;
    if (lua_istable(L, idx) && !lt_test(L, idx) && lua_rawlen(L, idx) > 0) {
        n = (int)lua_rawlen(L, idx);
        if (n > TENSOR_MAX_DIMS)
            luaL_argerror(L, idx, "too many dims (at most 8)");
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, idx, i + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok || v < 0)
                luaL_argerror(L, idx, "sizes must be non-negative integers");
            shape[i] = v;
            lua_pop(L, 1);
        }
        return n;
    }
    while (lua_type(L, idx + n) == LUA_TNUMBER) {
        if (n == TENSOR_MAX_DIMS)
            luaL_argerror(L, idx + n, "too many dims (at most 8)");
        lua_Integer v = luaL_checkinteger(L, idx + n);
        if (v < 0)
            luaL_argerror(L, idx + n, "sizes must be non-negative");
        shape[n++] = v;
    }
    return n;
}

void lt_check_keys(lua_State *L, int idx, const char *fname, const char *const *known)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int i = 0;
        while (k && known[i] && strcmp(k, known[i]) != 0)
            i++;
        if (!k || !known[i])
            luaL_error(L, "%s: unknown option '%s'", fname, k ? k : luaL_typename(L, -1));
    }
}

void lt_register(lua_State *L, const luaL_Reg *funcs, const luaL_Reg *methods)
{
    if (funcs)
        luaL_setfuncs(L, funcs, 0);
    if (methods) {
        luaL_getmetatable(L, LT_METHODS);
        luaL_setfuncs(L, methods, 0);
        lua_pop(L, 1);
    }
}

/* --- creation options: {dtype=, device=, requires_grad=} --- */

typedef struct {
    dtype_t dtype;
    device dev;
    bool requires_grad;
    bool dev_given; /* a device was named (else cpu) */
} create_opts;

static create_opts opts_read(lua_State *L, int idx, dtype_t def)
{
    create_opts o = {def, DEVICE_CPU, false, false};
    if (idx == 0 || lua_isnoneornil(L, idx))
        return o;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "dtype");
    o.dtype = lt_optdtype(L, -1, def);
    lua_getfield(L, idx, "device");
    if (!lua_isnil(L, -1)) {
        const char *d = luaL_checkstring(L, -1);
        if (device_parse(d, &o.dev) != 0)
            luaL_error(L, "%s: unknown device '%s' (cpu, cuda or cuda:N)", lt_fname(L), d);
        o.dev_given = true;
    }
    lua_getfield(L, idx, "requires_grad");
    o.requires_grad = lua_toboolean(L, -1);
    lua_pop(L, 3);
    return o;
}

/* Push t (moving it to the asked device when made elsewhere) with requires_grad set
 * as asked. */
static int push_created(lua_State *L, tensor *t, const create_opts *o)
{
    if (t && !device_eq(tensor_device(t), o->dev)) {
        /* made on the cpu, then moved (creation is never the hot path) */
        tensor *d = dispatch_backend(o->dev, lt_fname(L)) ? tensor_to_device(t, o->dev) : NULL;
        tensor_decref(t);
        t = d;
    }
    if (t && o->requires_grad) {
        if (!dtype_is_float(t->dtype)) {
            tensor_decref(t);
            return luaL_error(L, "%s: only float tensors can require gradients, not %s",
                              lt_fname(L), dtype_name(o->dtype));
        }
        t->requires_grad = true;
    }
    return lt_push(L, t);
}

/* The argument after a shape read by lt_shape at idx (nd sizes, or one table). */
static int after_shape(lua_State *L, int idx, int nd)
{
    return lua_istable(L, idx) ? idx + 1 : idx + nd;
}

/* Where the options table of a creation function sits: argument i (the one
 * after the shape and value), or 0 when there is none. Anything else there is
 * an error, not silently ignored (zeros(2, "float64")). */
static int opts_index(lua_State *L, int i)
{
    int top = lua_gettop(L);
    while (top >= i && lua_isnil(L, top))
        top--;
    if (top < i)
        return 0;
    bool is_opts = lua_istable(L, i) && !luaL_testudata(L, i, LT_TENSOR_MT);
    if (top == i && is_opts)
        return i;
    int bad = is_opts ? i + 1 : i;
    return luaL_error(L, "%s: unexpected argument #%d (%s); sizes are integers and the "
                         "options a table such as {dtype = \"float64\"}", lt_fname(L),
                      bad, luaL_typename(L, bad));
}

/* zeros / ones: (sizes..., opts) or ({sizes}, opts) */
static int l_constant(lua_State *L, double v)
{
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = lt_shape(L, 1, shape);
    create_opts o = opts_read(L, opts_index(L, after_shape(L, 1, nd)), DT_F32);
    /* made where asked: a GPU tensor is filled there, and running out of its
     * memory is reported as such */
    return push_created(L, tensor_full(o.dtype, nd, shape, v, o.dev), &o);
}

static int l_zeros(lua_State *L) { return l_constant(L, 0); }
static int l_ones(lua_State *L) { return l_constant(L, 1); }

/* --- values written into tensors: x:fill_(v), x[i] = v, full(..., v) --- */

/* A tensor, or a Lua number or boolean kept exactly (an integer stays one). */
typedef struct {
    tensor *t; /* borrowed from the Lua stack */
    double d;
    lua_Integer i;
    bool is_int;
} lua_value;

/* Read the value at idx before anything is allocated, so a bad one raises an
 * error that names the op and leaks nothing. */
static lua_value read_value(lua_State *L, int idx, const char *op)
{
    lua_value v = {lt_test(L, idx), 0, 0, false};
    if (v.t)
        return v;
    if (lua_isboolean(L, idx)) {
        v.d = lua_toboolean(L, idx);
    } else if (lua_isinteger(L, idx)) {
        v.i = lua_tointeger(L, idx);
        v.d = (double)v.i;
        v.is_int = true;
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
        v.d = lua_tonumber(L, idx);
    } else {
        luaL_error(L, "%s: the value must be a number, a boolean or a tensor, not %s", op,
                   luaL_typename(L, idx));
    }
    return v;
}

/* Does v need an exact int64 path (a Lua integer into an int64 tensor)? A
 * double carries integers exactly only up to 2^53. */
static bool value_exact_int(const lua_value *v, const tensor *like)
{
    return !v->t && v->is_int && like->dtype == DT_I64;
}

int lt_switch(lua_State *L, void (*set)(bool), bool (*get)(void))
{
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TBOOLEAN);
        set(lua_toboolean(L, 1));
    }
    lua_pushboolean(L, get());
    return 1;
}

tensor *lt_int64_scalar(int64_t v, device dev)
{
    tensor *s = tensor_empty(DT_I64, 0, NULL, DEVICE_CPU);
    if (s)
        *(int64_t *)tensor_data(s) = v;
    if (!s || dev.type == DEV_CPU)
        return s;
    tensor *d = tensor_to_device(s, dev);
    tensor_decref(s);
    return d;
}

/* A 0-dim tensor of like's dtype and device that holds v (or v itself). */
static tensor *value_scalar(const lua_value *v, const tensor *like)
{
    if (v->t)
        return tensor_incref(v->t);
    if (value_exact_int(v, like))
        return lt_int64_scalar(v->i, tensor_device(like));
    return tensor_scalar(like->dtype, v->d, tensor_device(like));
}

/* dst[...] = v, broadcasting a tensor value and converting its dtype. */
static int value_store(tensor *dst, const lua_value *v)
{
    if (!v->t && !value_exact_int(v, dst))
        return tensor_fill(dst, v->d);
    tensor *s = value_scalar(v, dst);
    int rc = s ? tensor_copy_into(dst, s) : -1;
    tensor_decref(s);
    return rc;
}

/* full(shape..., value, opts) */
static int l_full(lua_State *L)
{
    int64_t shape[TENSOR_MAX_DIMS];
    int nd, vi;
    if (lua_istable(L, 1)) {
        nd = lt_shape(L, 1, shape);
        vi = 2;
    } else { /* sizes then the value: all numbers, so the last number is the value */
        int top = lua_gettop(L), last = 0;
        for (int i = 1; i <= top && (lua_type(L, i) == LUA_TNUMBER || lua_isboolean(L, i)); i++)
            last = i;
        if (last < 1)
            return luaL_error(L, "full: expects sizes and a value");
        nd = 0;
        for (int i = 1; i < last; i++)
            shape[nd++] = luaL_checkinteger(L, i);
        vi = last;
    }
    if (lua_type(L, vi) != LUA_TNUMBER && !lua_isboolean(L, vi))
        return luaL_error(L, "full: the value must be a number or a boolean, not %s",
                          luaL_typename(L, vi));
    lua_value v = read_value(L, vi, "full");
    dtype_t def = lua_isinteger(L, vi) ? DT_I64 : lua_isboolean(L, vi) ? DT_BOOL : DT_F32;
    create_opts o = opts_read(L, opts_index(L, vi + 1), def);
    /* a number that a double holds exactly is filled on the device itself */
    bool exact = !v.is_int || (v.i <= ((lua_Integer)1 << 53) && v.i >= -((lua_Integer)1 << 53));
    if (o.dev.type != DEV_CPU && exact)
        return push_created(L, tensor_full(o.dtype, nd, shape, v.d, o.dev), &o);
    tensor *t = tensor_empty(o.dtype, nd, shape, DEVICE_CPU);
    if (t && value_store(t, &v) != 0) {
        tensor_decref(t);
        t = NULL;
    }
    return push_created(L, t, &o);
}

static int l_rand_common(lua_State *L, bool normal)
{
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = lt_shape(L, 1, shape);
    create_opts o = opts_read(L, opts_index(L, after_shape(L, 1, nd)), DT_F32);
    /* drawn on the device asked, from the same Philox stream on every device: the
     * same uniform numbers; normal ones up to the last bits of the device's log
     * and cos */
    tensor *t = normal ? op_randn(nd, shape, o.dtype, o.dev) : op_rand(nd, shape, o.dtype, o.dev);
    return push_created(L, t, &o);
}

static int l_rand(lua_State *L) { return l_rand_common(L, false); }
static int l_randn(lua_State *L) { return l_rand_common(L, true); }

/* randint(low, high, shape, opts): integers in [low, high) */
static int l_randint(lua_State *L)
{
    lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = lt_shape(L, 3, shape);
    create_opts o = opts_read(L, opts_index(L, after_shape(L, 3, nd)), DT_I64);
    tensor *t = op_randint(lo, hi, nd, shape, DEVICE_CPU);
    if (t && o.dtype != DT_I64) {
        tensor *c = tensor_copy_as(t, o.dtype);
        tensor_decref(t);
        t = c;
    }
    return push_created(L, t, &o);
}

/* randperm(n): a random permutation of 1..n */
static int l_randperm(lua_State *L)
{
    tensor *p = op_randperm(luaL_checkinteger(L, 1));
    tensor *one = p ? op_binary_scalar(BIN_ADD, p, 1, false) : NULL;
    tensor_decref(p);
    return lt_push(L, one);
}

/* arange(end) or arange(start, end [, step]), end excluded, as PyTorch. */
static int l_arange(lua_State *L)
{
    int nnum = 0;
    while (lua_type(L, nnum + 1) == LUA_TNUMBER)
        nnum++;
    if (nnum < 1 || nnum > 3)
        return luaL_error(L, "arange: expects (end), (start, end) or (start, end, step)");
    double start = nnum >= 2 ? lua_tonumber(L, 1) : 0;
    double end = nnum >= 2 ? lua_tonumber(L, 2) : lua_tonumber(L, 1);
    double step = nnum == 3 ? lua_tonumber(L, 3) : 1;
    bool ints = true;
    for (int i = 1; i <= nnum; i++)
        ints = ints && lua_isinteger(L, i);
    create_opts o = opts_read(L, nnum + 1, ints ? DT_I64 : DT_F32);
    return push_created(L, op_arange(start, end, step, o.dtype), &o);
}

static int l_linspace(lua_State *L)
{
    double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
    lua_Integer n = luaL_checkinteger(L, 3);
    create_opts o = opts_read(L, 4, DT_F32);
    return push_created(L, op_linspace(a, b, n, o.dtype), &o);
}

static int l_eye(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = lua_type(L, 2) == LUA_TNUMBER ? luaL_checkinteger(L, 2) : n;
    create_opts o = opts_read(L, lua_type(L, 2) == LUA_TNUMBER ? 3 : 2, DT_F32);
    return push_created(L, op_eye(n, m, o.dtype), &o);
}

/* --- miles.tensor(nested table | number | boolean | tensor, opts) --- */

/* The shape of a nested table, found by following first elements. */
static int infer_nested(lua_State *L, int idx, int64_t *shape)
{
    int nd = 0;
    lua_pushvalue(L, idx);
    while (lua_istable(L, -1)) {
        if (nd == TENSOR_MAX_DIMS)
            luaL_error(L, "tensor: too many nested levels (at most 8 dims)");
        shape[nd++] = (int64_t)lua_rawlen(L, -1);
        if (shape[nd - 1] == 0)
            break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return nd;
}

typedef struct {
    int64_t pos;
    int rank; /* 0 bool, 1 int, 2 float */
} fill_state;

/* Store the Lua number or boolean at the top as element pos of t. Lua integers go
 * into int64 tensors unchanged (through a double, those above 2^53 would be
 * rounded and math.maxinteger would overflow). */
static void store_lua_value(lua_State *L, tensor *t, int64_t pos)
{
    if (t->dtype == DT_I64 && lua_isinteger(L, -1))
        ((int64_t *)tensor_data(t))[pos] = lua_tointeger(L, -1);
    else if (lua_isboolean(L, -1))
        dtype_store(t->dtype, tensor_data(t), pos, lua_toboolean(L, -1));
    else
        dtype_store(t->dtype, tensor_data(t), pos, lua_tonumber(L, -1));
}

/* Check that the nested table at the top matches shape[d..] and store its leaves. */
static void fill_nested(lua_State *L, tensor *t, int d, fill_state *st, bool store)
{
    if (d == t->ndim) {
        int ty = lua_type(L, -1);
        if (ty == LUA_TNUMBER) {
            int r = lua_isinteger(L, -1) ? 1 : 2;
            if (r > st->rank) st->rank = r;
        } else if (ty != LUA_TBOOLEAN) {
            luaL_error(L, "tensor: expected a number or boolean at element %d, got %s",
                       (int)st->pos + 1, luaL_typename(L, -1));
            return;
        }
        if (store)
            store_lua_value(L, t, st->pos);
        st->pos++;
        return;
    }
    if (!lua_istable(L, -1) || (int64_t)lua_rawlen(L, -1) != t->shape[d])
        luaL_error(L, "tensor: the nested tables are not rectangular (level %d should have "
                      "%d elements)", d + 1, (int)t->shape[d]);
    for (int64_t i = 1; i <= t->shape[d]; i++) {
        lua_rawgeti(L, -1, i);
        fill_nested(L, t, d + 1, st, store);
        lua_pop(L, 1);
    }
}

static int l_tensor_new(lua_State *L)
{
    tensor *src = lt_test(L, 1);
    if (src) { /* a copy, on src's device unless another is named */
        create_opts o = opts_read(L, 2, src->dtype);
        if (!o.dev_given)
            o.dev = tensor_device(src);
        return push_created(L, tensor_copy_as(src, o.dtype), &o);
    }
    int ty = lua_type(L, 1);
    if (ty == LUA_TNUMBER || ty == LUA_TBOOLEAN) {
        dtype_t def = ty == LUA_TBOOLEAN ? DT_BOOL : lua_isinteger(L, 1) ? DT_I64 : DT_F32;
        create_opts o = opts_read(L, 2, def);
        tensor *t = tensor_empty(o.dtype, 0, NULL, DEVICE_CPU);
        if (t) {
            lua_pushvalue(L, 1);
            store_lua_value(L, t, 0);
            lua_pop(L, 1);
        }
        return push_created(L, t, &o);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = infer_nested(L, 1, shape);
    /* First pass: validate the shape and find the dtype the values call for. */
    tensor probe = {.ndim = nd, .dtype = DT_F64};
    memcpy(probe.shape, shape, sizeof shape);
    fill_state st = {0, 0};
    lua_pushvalue(L, 1);
    fill_nested(L, &probe, 0, &st, false);
    lua_pop(L, 1);
    dtype_t def = st.rank == 2 ? DT_F32 : st.rank == 1 ? DT_I64 : (st.pos ? DT_BOOL : DT_F32);
    create_opts o = opts_read(L, 2, def);
    tensor *t = tensor_empty(o.dtype, nd, shape, DEVICE_CPU);
    if (!t)
        return lt_error(L);
    lt_push(L, t); /* owned by Lua from here, so an error below frees it */
    st.pos = 0;
    lua_pushvalue(L, 1);
    fill_nested(L, t, 0, &st, true);
    lua_pop(L, 2); /* the table copy and the box (t is kept by the reference below) */
    return push_created(L, tensor_incref(t), &o);
}

/* --- conversion to Lua values --- */

static void push_element(lua_State *L, const tensor *t, int64_t off)
{
    double v = dtype_load(t->dtype, tensor_data(t), off);
    if (t->dtype == DT_BOOL)
        lua_pushboolean(L, v != 0);
    else if (t->dtype == DT_I64)
        lua_pushinteger(L, ((const int64_t *)tensor_data(t))[off]);
    else if (t->dtype == DT_U8)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

static void push_nested(lua_State *L, const tensor *t, int d, int64_t off)
{
    if (d == t->ndim) {
        push_element(L, t, off);
        return;
    }
    luaL_checkstack(L, 4, "tensor too deep");
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        push_nested(L, t, d + 1, off + i * t->stride[d]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* t itself when it is on the cpu, else a copy there (left on the Lua stack, so
 * that the collector frees it). */
static tensor *cpu_readable(lua_State *L, tensor *t)
{
    if (tensor_device(t).type == DEV_CPU)
        return t;
    tensor *h = tensor_to_device(t, DEVICE_CPU);
    lt_push(L, h);
    return h;
}

static int l_totable(lua_State *L)
{
    tensor *t = cpu_readable(L, lt_check(L, 1));
    push_nested(L, t, 0, 0);
    return 1;
}

static int l_item(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    if (tensor_numel(t) != 1) {
        char b[128];
        return luaL_error(L, "item: a tensor of shape %s has %d elements, not 1",
                          tensor_shape_str(t, b, sizeof b), (int)tensor_numel(t));
    }
    t = cpu_readable(L, t);
    int64_t off = 0;
    push_element(L, t, off);
    return 1;
}

/* --- properties --- */

static int l_shape(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* size() is shape(); size(d) one dim's size. */
static int l_size(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    if (lua_isnoneornil(L, 2))
        return l_shape(L);
    int d = dim_wrap(lt_dim(L, 2), t->ndim, "size");
    if (d < 0)
        return lt_error(L);
    lua_pushinteger(L, t->shape[d]);
    return 1;
}

static int l_stride(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->stride[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_dim(lua_State *L)
{
    lua_pushinteger(L, lt_check(L, 1)->ndim);
    return 1;
}

static int l_numel(lua_State *L)
{
    lua_pushinteger(L, tensor_numel(lt_check(L, 1)));
    return 1;
}

static int l_dtype(lua_State *L)
{
    lua_pushstring(L, dtype_name(lt_check(L, 1)->dtype));
    return 1;
}

static int l_device(lua_State *L)
{
    char b[16];
    lua_pushstring(L, device_str(tensor_device(lt_check(L, 1)), b));
    return 1;
}

static int l_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, tensor_is_contiguous(lt_check(L, 1)));
    return 1;
}

/* Is the tensor in pinned host memory (see cuda_pinned_empty)? */
static int l_is_pinned(lua_State *L)
{
    lua_pushboolean(L, cuda_is_pinned(lt_check(L, 1)));
    return 1;
}

/* Do two tensors share storage (views of each other)? */
static int l_shares_storage(lua_State *L)
{
    lua_pushboolean(L, lt_check(L, 1)->st == lt_check(L, 2)->st);
    return 1;
}

/* --- conversion and copies --- */

/* t on device d: t itself when already there, else a differentiable copy. */
static int push_on(lua_State *L, tensor *t, device d)
{
    if (device_eq(d, tensor_device(t))) {
        lua_settop(L, 1);
        return 1;
    }
    if (!dispatch_backend(d, lt_fname(L)))
        return lt_error(L);
    return lt_push(L, op_to_device(t, d));
}

/* t:cuda([index]) */
static int l_cuda(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    lua_Integer i = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, i >= 0 && i < 1024, 2, "a GPU index (0 for the first)");
    return push_on(L, t, (device){DEV_CUDA, (int)i});
}

static int l_cpu(lua_State *L) { return push_on(L, lt_check(L, 1), DEVICE_CPU); }

static int l_to(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *s = lua_tostring(L, 2);
        device d;
        if (dtype_parse(s) < 0 && device_parse(s, &d) == 0)
            return push_on(L, t, d);
    }
    dtype_t dt = lt_optdtype(L, 2, t->dtype);
    if (dt == t->dtype) {
        lua_settop(L, 1);
        return 1;
    }
    return lt_push(L, op_to_dtype(t, dt));
}

static int l_clone(lua_State *L) { return lt_push(L, op_clone(lt_check(L, 1))); }
static int l_contiguous(lua_State *L) { return lt_push(L, op_contiguous(lt_check(L, 1))); }

/* --- views --- */

static int l_reshape_common(lua_State *L, bool view)
{
    tensor *t = lt_check(L, 1);
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = 0;
    const char *name = view ? "view" : "reshape";
    if (lua_istable(L, 2) && !lt_test(L, 2)) { /* ({sizes}): -1 allowed, inferred */
        nd = (int)lua_rawlen(L, 2);
        if (nd > TENSOR_MAX_DIMS)
            return luaL_error(L, "%s: at most %d dims, got %d", name, TENSOR_MAX_DIMS, nd);
        for (int i = 0; i < nd; i++) {
            lua_rawgeti(L, 2, i + 1);
            int ok;
            shape[i] = lua_tointegerx(L, -1, &ok);
            if (!ok)
                return luaL_error(L, "%s: size %d must be an integer, got %s", name, i + 1,
                                  luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    } else {
        for (int i = 2; i <= lua_gettop(L); i++) {
            if (nd == TENSOR_MAX_DIMS)
                return luaL_error(L, "%s: at most %d dims", name, TENSOR_MAX_DIMS);
            shape[nd++] = luaL_checkinteger(L, i); /* -1 allowed: inferred */
        }
    }
    return lt_push(L, view ? op_view(t, nd, shape) : op_reshape(t, nd, shape));
}

static int l_reshape(lua_State *L) { return l_reshape_common(L, false); }
static int l_view(lua_State *L) { return l_reshape_common(L, true); }

static int l_flatten(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    return lt_push(L, op_flatten(t, lt_optdim(L, 2, 0), lt_optdim(L, 3, -1)));
}

static int l_permute(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    int perm[TENSOR_MAX_DIMS];
    bool tbl = lua_istable(L, 2);
    int n = tbl ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1;
    if (n != t->ndim)
        return luaL_error(L, "permute: expects %d dims, got %d", t->ndim, n);
    for (int i = 0; i < n; i++) {
        if (tbl) {
            lua_rawgeti(L, 2, i + 1);
            perm[i] = lt_dim(L, -1);
            lua_pop(L, 1);
        } else {
            perm[i] = lt_dim(L, i + 2);
        }
    }
    return lt_push(L, op_permute(t, perm));
}

static int l_transpose(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    return lt_push(L, op_transpose(t, lt_dim(L, 2), lt_dim(L, 3)));
}

/* t(): transpose of a matrix (a 1-D tensor stays as it is). */
static int l_t(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    if (t->ndim > 2)
        return luaL_error(L, "t: expects a tensor of at most 2 dims, got %d; use transpose", t->ndim);
    if (t->ndim < 2) {
        lua_settop(L, 1);
        return 1;
    }
    return lt_push(L, op_transpose(t, 0, 1));
}

/* narrow(dim, start, length), start 1-based (negative: from the end, as select) */
static int l_narrow(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    int d = lt_dim(L, 2);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    if (start == 0)
        return luaL_argerror(L, 3, "start is 1-based (or negative from the end)");
    if (start < 0) {
        int dd = dim_wrap(d, t->ndim, "narrow");
        if (dd < 0)
            return lt_error(L);
        if (start + t->shape[dd] < 0)
            return luaL_error(L, "narrow: start %I is out of range for dim %d of size %I",
                              start, dd + 1, (lua_Integer)t->shape[dd]);
        start += t->shape[dd] + 1;
    }
    return lt_push(L, op_narrow(t, d, start - 1, len));
}

/* select(dim, index), index 1-based (negative from the end) */
static int l_select(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    int d = lt_dim(L, 2);
    lua_Integer i = luaL_checkinteger(L, 3);
    if (i == 0)
        return luaL_argerror(L, 3, "indices are 1-based (or negative from the end)");
    return lt_push(L, op_select(t, d, i > 0 ? i - 1 : i));
}

static int l_squeeze(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    return lt_push(L, lua_isnoneornil(L, 2) ? op_squeeze_all(t) : op_squeeze(t, lt_dim(L, 2)));
}

static int l_unsqueeze(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    return lt_push(L, op_unsqueeze(t, lt_dim(L, 2)));
}

static int l_expand(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = 0;
    if (lua_istable(L, 2) && !lt_test(L, 2)) {
        nd = (int)lua_rawlen(L, 2);
        for (int i = 0; i < nd && i < TENSOR_MAX_DIMS; i++) {
            lua_rawgeti(L, 2, i + 1);
            shape[i] = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        }
    } else if (lt_test(L, 2)) { /* expand_as */
        tensor *o = lt_test(L, 2);
        nd = o->ndim;
        memcpy(shape, o->shape, sizeof shape);
    } else {
        for (int i = 2; i <= lua_gettop(L) && nd < TENSOR_MAX_DIMS; i++)
            shape[nd++] = luaL_checkinteger(L, i);
    }
    if (nd > TENSOR_MAX_DIMS)
        return luaL_error(L, "expand: at most 8 dims");
    return lt_push(L, op_expand(t, nd, shape));
}

/* --- indexing: t[i], t[mask], t[idx]; t[i] = v, t[mask] = v --- */

/* An int64 tensor of 1-based indices as 0-based, after checking its dtype. */
tensor *lt_zero_based(lua_State *L, tensor *idx)
{
    if (idx->dtype != DT_I64)
        luaL_error(L, "indices must be an int64 tensor, got %s", dtype_name(idx->dtype));
    tensor *r = op_binary_scalar(BIN_SUB, idx, 1, false);
    if (!r)
        lt_error(L);
    return r;
}

/* A number key with an integral value (x[2] or x[2.0]) into *i. */
static bool integer_key(lua_State *L, int idx, lua_Integer *i)
{
    int ok = 0;
    if (lua_type(L, idx) == LUA_TNUMBER)
        *i = lua_tointegerx(L, idx, &ok);
    return ok;
}

static int l_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING) {
        /* Methods are found without touching the tensor, so t:f() on a released
         * tensor fails inside f, with an error that names f. */
        luaL_getmetatable(L, LT_METHODS);
        if (lua_getfield(L, -1, lua_tostring(L, 2)) != LUA_TNIL)
            return 1;
        lua_pop(L, 2);
    }
    tensor *t = lt_check(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "grad") == 0) {
            if (t->grad)
                return lt_push(L, tensor_incref(t->grad));
            lua_pushnil(L);
            return 1;
        }
        if (strcmp(k, "requires_grad") == 0) {
            lua_pushboolean(L, t->requires_grad);
            return 1;
        }
        if (strcmp(k, "is_leaf") == 0) {
            lua_pushboolean(L, t->grad_fn == NULL);
            return 1;
        }
        if (strcmp(k, "grad_fn") == 0) {
            if (t->grad_fn)
                lua_pushstring(L, t->grad_fn->name);
            else
                lua_pushnil(L);
            return 1;
        }
        lua_pushnil(L);
        return 1;
    }
    lua_Integer i = 0;
    if (integer_key(L, 2, &i)) {
        if (t->ndim == 0)
            return luaL_error(L, "index: cannot index a 0-dim tensor; use :item()");
        if (i == 0)
            return luaL_error(L, "index: indices are 1-based (or negative from the end)");
        return lt_push(L, op_select(t, 0, i > 0 ? i - 1 : i));
    }
    tensor *ix = lt_test(L, 2);
    if (ix && ix->dtype == DT_BOOL)
        return lt_push(L, op_masked_select(t, ix));
    if (ix) {
        tensor *z = lt_zero_based(L, ix);
        tensor *r = op_index_select(t, 0, z);
        tensor_decref(z);
        return lt_push(L, r);
    }
    if (lua_type(L, 2) == LUA_TNUMBER)
        return luaL_error(L, "index: %f is not an integer", lua_tonumber(L, 2));
    return luaL_error(L, "index: tensors are indexed by an integer, a bool mask or an int64 "
                         "tensor, not a %s", luaL_typename(L, 2));
}

/* In-place writes need care with autograd: a leaf that requires grad, or a tensor
 * recorded in a graph, may not be written while gradients are being recorded. */
int lt_check_inplace(lua_State *L, tensor *t, const char *op)
{
    if (!ag_enabled())
        return 0;
    if (t->requires_grad && !t->grad_fn)
        return luaL_error(L, "%s: a leaf tensor that requires grad cannot be changed in place "
                             "while gradients are recorded (use miles.no_grad)", op);
    if (t->grad_fn)
        return luaL_error(L, "%s: in-place changes to a tensor computed with gradients are not "
                             "supported; use the out-of-place op", op);
    return 0;
}

/* t[mask] = v: where(mask, v, t) written back into t. The mask must fit t's
 * shape (broadcasting may not make t bigger). */
static int assign_masked(lua_State *L, tensor *t, tensor *mask, const lua_value *v)
{
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = shape_broadcast(mask->ndim, mask->shape, t->ndim, t->shape, shape, "assignment");
    if (nd != t->ndim || shape_numel(nd, shape) != tensor_numel(t)) {
        char b1[128], b2[128];
        return luaL_error(L, "assignment: a mask of shape %s does not fit a tensor of shape %s",
                          tensor_shape_str(mask, b1, sizeof b1),
                          tensor_shape_str(t, b2, sizeof b2));
    }
    tensor *val = value_scalar(v, t);
    tensor *w = val ? op_where(mask, val, t) : NULL;
    int rc = w ? tensor_copy_into(t, w) : -1;
    tensor_decref(val);
    tensor_decref(w);
    return rc == 0 ? 0 : lt_error(L);
}

static int l_newindex(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "requires_grad") == 0) {
            bool on = lua_toboolean(L, 3);
            if (on && !dtype_is_float(t->dtype))
                return luaL_error(L, "requires_grad: only float tensors can require gradients, "
                                     "not %s", dtype_name(t->dtype));
            if (!on && t->grad_fn)
                return luaL_error(L, "requires_grad: can only be turned off on leaves; use "
                                     ":detach()");
            t->requires_grad = on;
            return 0;
        }
        if (strcmp(k, "grad") == 0) {
            tensor *g = lua_isnil(L, 3) ? NULL : lt_check(L, 3);
            if (g && (!tensor_same_shape(g, t) || g->dtype != t->dtype))
                return luaL_error(L, "grad: must match the tensor's shape and dtype");
            if (g && !device_eq(tensor_device(g), tensor_device(t))) {
                char b1[16], b2[16];
                return luaL_error(L, "grad: the gradient is on %s but the tensor is on %s",
                                  device_str(tensor_device(g), b1), device_str(tensor_device(t), b2));
            }
            if (g == t)
                return luaL_error(L, "grad: a tensor cannot be its own gradient");
            tensor_decref(t->grad);
            t->grad = tensor_incref(g);
            return 0;
        }
        return luaL_error(L, "cannot set field '%s' of a tensor", k);
    }
    lt_check_inplace(L, t, "assignment");
    tensor *dst = NULL;
    tensor *ix = lt_test(L, 2);
    lua_value v = read_value(L, 3, "assignment");
    lua_Integer i = 0;
    if (integer_key(L, 2, &i)) {
        if (t->ndim == 0)
            return luaL_error(L, "assignment: cannot index a 0-dim tensor; use :fill_()");
        if (i == 0)
            return luaL_error(L, "assignment: indices are 1-based (or negative from the end)");
        dst = op_select(t, 0, i > 0 ? i - 1 : i);
    } else if (ix && ix->dtype == DT_BOOL) {
        return assign_masked(L, t, ix, &v);
    } else {
        return luaL_error(L, "assignment: index by an integer or a bool mask");
    }
    if (!dst)
        return lt_error(L);
    int rc = value_store(dst, &v);
    tensor_decref(dst);
    return rc == 0 ? 0 : lt_error(L);
}

/* Number of elements along dim 1 (#t). */
static int l_len(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    if (t->ndim == 0)
        return luaL_error(L, "len: a 0-dim tensor has no length");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

/* --- in-place fills and copies --- */

static int l_fill_(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    lt_check_inplace(L, t, "fill_");
    if (lua_type(L, 2) != LUA_TNUMBER && !lua_isboolean(L, 2))
        return luaL_error(L, "fill_: the value must be a number or a boolean, not %s",
                          luaL_typename(L, 2));
    lua_value v = read_value(L, 2, "fill_");
    if (value_store(t, &v) != 0)
        return lt_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_zero_(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushinteger(L, 0);
    return l_fill_(L);
}

static int l_copy_(lua_State *L)
{
    tensor *t = lt_check(L, 1), *src = lt_check(L, 2);
    lt_check_inplace(L, t, "copy_");
    if (tensor_copy_into(t, src) != 0)
        return lt_error(L);
    lua_settop(L, 1);
    return 1;
}

/* --- lifetime --- */

static int l_gc(lua_State *L)
{
    tensor **box = luaL_checkudata(L, 1, LT_TENSOR_MT);
    tensor_decref(*box);
    *box = NULL;
    return 0;
}

/* Is the value a tensor? (A released one still is.) */
static int l_is_tensor(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, LT_TENSOR_MT) != NULL);
    return 1;
}

static const luaL_Reg tensor_funcs[] = {
    {"tensor", l_tensor_new}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
    {"rand", l_rand}, {"randn", l_randn}, {"randint", l_randint}, {"randperm", l_randperm}, {"arange", l_arange},
    {"linspace", l_linspace}, {"eye", l_eye}, {"is_tensor", l_is_tensor},
    {"reshape", l_reshape}, {"flatten", l_flatten}, {"permute", l_permute},
    {"transpose", l_transpose}, {"narrow", l_narrow}, {"select", l_select},
    {"squeeze", l_squeeze}, {"unsqueeze", l_unsqueeze}, {"clone", l_clone},
    {NULL, NULL},
};

static const luaL_Reg tensor_methods[] = {
    {"totable", l_totable}, {"item", l_item}, {"shape", l_shape}, {"size", l_size},
    {"stride", l_stride}, {"dim", l_dim}, {"numel", l_numel}, {"dtype", l_dtype},
    {"device", l_device}, {"cuda", l_cuda}, {"cpu", l_cpu}, {"is_contiguous", l_is_contiguous},
    {"is_pinned", l_is_pinned},
    {"shares_storage", l_shares_storage}, {"to", l_to}, {"clone", l_clone},
    {"contiguous", l_contiguous}, {"reshape", l_reshape}, {"view", l_view},
    {"flatten", l_flatten}, {"permute", l_permute}, {"transpose", l_transpose}, {"t", l_t},
    {"narrow", l_narrow}, {"select", l_select}, {"squeeze", l_squeeze},
    {"unsqueeze", l_unsqueeze}, {"expand", l_expand}, {"expand_as", l_expand},
    {"fill_", l_fill_}, {"zero_", l_zero_}, {"copy_", l_copy_}, {"free", l_gc},
    {NULL, NULL},
};

void l_tensor_open(lua_State *L)
{
    luaL_newmetatable(L, LT_METHODS);
    lua_pop(L, 1);
    luaL_newmetatable(L, LT_TENSOR_MT); /* sets __name, so errors say "miles.Tensor expected" */
    static const luaL_Reg meta[] = {
        {"__index", l_index}, {"__newindex", l_newindex}, {"__len", l_len},
        {"__gc", l_gc}, {"__close", l_gc}, {NULL, NULL},
    };
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
    lt_register(L, tensor_funcs, tensor_methods);
    /* Expose the method table, so the Lua library can add methods written in Lua. */
    luaL_getmetatable(L, LT_METHODS);
    lua_setfield(L, -2, "Tensor");
    luaL_getmetatable(L, LT_TENSOR_MT);
    lua_setfield(L, -2, "_tensor_mt");
}
