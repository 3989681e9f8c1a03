/* Bindings of the ops: elementwise math (also as metamethods), reductions,
 * matrix products, joining and indexing, and the neural-network functions. Each
 * works as miles.f(t, ...) and as t:f(...). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "l_tensor.h"

/* --- elementwise --- */

/* a op b where either side may be a Lua number (or boolean). */
static int binary(lua_State *L, binary_op op)
{
    tensor *a = lt_test(L, 1), *b = lt_test(L, 2);
    if (a && b)
        return lt_push(L, op_binary(op, a, b));
    if (a || b) {
        int si = a ? 2 : 1;
        tensor *t = a ? a : b;
        if (lua_isinteger(L, si) && !dtype_is_float(t->dtype)) {
            /* an integer beyond 2^53 would round as a double: keep it exact */
            lua_Integer v = lua_tointeger(L, si);
            if (v > (1LL << 53) || v < -(1LL << 53)) {
                tensor *sc = lt_int64_scalar(v, tensor_device(t));
                if (!sc)
                    return lt_error(L);
                tensor *r = a ? op_binary(op, a, sc) : op_binary(op, sc, b);
                tensor_decref(sc);
                return lt_push(L, r);
            }
        }
        double s = lua_isboolean(L, si) ? lua_toboolean(L, si) : luaL_checknumber(L, si);
        return lt_push(L, op_binary_scalar(op, t, s, !a));
    }
    return luaL_error(L, "expected a tensor operand, got %s and %s", luaL_typename(L, 1),
                      luaL_typename(L, 2));
}

static int l_add(lua_State *L)
{
    /* add(a, b, alpha): a + alpha * b, as PyTorch */
    if (lua_type(L, 3) == LUA_TNUMBER) {
        double alpha = lua_tonumber(L, 3);
        lua_settop(L, 2);
        tensor *b = lt_test(L, 2);
        if (b) {
            tensor *sb = op_binary_scalar(BIN_MUL, b, alpha, false);
            if (!sb)
                return lt_error(L);
            lt_push(L, sb);
        } else {
            lua_pushnumber(L, alpha * luaL_checknumber(L, 2));
        }
        lua_replace(L, 2);
    }
    return binary(L, BIN_ADD);
}
static int l_sub(lua_State *L) { return binary(L, BIN_SUB); }
static int l_mul(lua_State *L) { return binary(L, BIN_MUL); }
static int l_div(lua_State *L) { return binary(L, BIN_DIV); }
static int l_maximum(lua_State *L) { return binary(L, BIN_MAX); }
static int l_minimum(lua_State *L) { return binary(L, BIN_MIN); }
static int l_eq(lua_State *L) { return binary(L, BIN_EQ); }
static int l_ne(lua_State *L) { return binary(L, BIN_NE); }
static int l_lt(lua_State *L) { return binary(L, BIN_LT); }
static int l_le(lua_State *L) { return binary(L, BIN_LE); }
static int l_gt(lua_State *L) { return binary(L, BIN_GT); }
static int l_ge(lua_State *L) { return binary(L, BIN_GE); }
static int l_logical_and(lua_State *L) { return binary(L, BIN_AND); }
static int l_logical_or(lua_State *L) { return binary(L, BIN_OR); }

static int l_pow(lua_State *L)
{
    tensor *a = lt_test(L, 1);
    if (a && lua_type(L, 2) == LUA_TNUMBER)
        return lt_push(L, op_unary(UN_POW, a, lua_tonumber(L, 2), 0));
    return binary(L, BIN_POW);
}

static int unary(lua_State *L, unary_op op)
{
    return lt_push(L, op_unary(op, lt_check(L, 1), 0, 0));
}

static int l_neg(lua_State *L) { return unary(L, UN_NEG); }
static int l_abs(lua_State *L) { return unary(L, UN_ABS); }
static int l_exp(lua_State *L) { return unary(L, UN_EXP); }
static int l_log(lua_State *L) { return unary(L, UN_LOG); }
static int l_sqrt(lua_State *L) { return unary(L, UN_SQRT); }
static int l_rsqrt(lua_State *L) { return unary(L, UN_RSQRT); }
static int l_reciprocal(lua_State *L) { return unary(L, UN_RECIP); }
static int l_square(lua_State *L) { return unary(L, UN_SQUARE); }
static int l_relu(lua_State *L) { return unary(L, UN_RELU); }
static int l_sigmoid(lua_State *L) { return unary(L, UN_SIGMOID); }
static int l_tanh(lua_State *L) { return unary(L, UN_TANH); }
static int l_sign(lua_State *L) { return unary(L, UN_SIGN); }
static int l_softplus(lua_State *L) { return unary(L, UN_LOG1P_EXP); }

/* clamp(t, min, max): either bound may be nil */
static int l_clamp(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    double lo = lua_isnoneornil(L, 2) ? NAN : luaL_checknumber(L, 2);
    double hi = lua_isnoneornil(L, 3) ? NAN : luaL_checknumber(L, 3);
    if (isnan(lo) && isnan(hi))
        return luaL_error(L, "clamp: give at least one of min and max");
    return lt_push(L, op_unary(UN_CLAMP, t, lo, hi));
}

static int l_where(lua_State *L)
{
    tensor *c = lt_check(L, 1);
    tensor *a = lt_test(L, 2), *b = lt_test(L, 3);
    if (!a && !b)
        return luaL_error(L, "where: at least one of the values must be a tensor");
    /* Read the plain numbers before taking any reference: a bad argument raises. */
    double va = a ? 0 : luaL_checknumber(L, 2), vb = b ? 0 : luaL_checknumber(L, 3);
    tensor *ref = a ? a : b;
    tensor *sa = a ? tensor_incref(a) : tensor_scalar(ref->dtype, va, tensor_device(ref));
    tensor *sb = b ? tensor_incref(b) : tensor_scalar(ref->dtype, vb, tensor_device(ref));
    tensor *r = sa && sb ? op_where(c, sa, sb) : NULL;
    tensor_decref(sa);
    tensor_decref(sb);
    return lt_push(L, r);
}

/* --- reductions: f(t), f(t, dim), f(t, {dims}), f(t, dims, keepdim) --- */

typedef struct {
    int ndims;
    int dims[TENSOR_MAX_DIMS];
    bool keepdim;
} dim_args;

/* Reads dims at idx (nil, a number or a table) and keepdim at idx+1 (a boolean,
 * or an options table {keepdim=}). */
static dim_args read_dims(lua_State *L, int idx)
{
    dim_args d = {0, {0}, false};
    if (lua_type(L, idx) == LUA_TNUMBER) {
        d.ndims = 1;
        d.dims[0] = lt_dim(L, idx);
    } else if (lua_istable(L, idx)) {
        int n = (int)lua_rawlen(L, idx);
        if (n > TENSOR_MAX_DIMS)
            luaL_argerror(L, idx, "too many dims");
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, idx, i + 1);
            d.dims[d.ndims++] = lt_dim(L, -1);
            lua_pop(L, 1);
        }
        if (n == 0)
            luaL_argerror(L, idx, "an empty list of dims");
    } else if (!lua_isnoneornil(L, idx)) {
        luaL_argerror(L, idx, "dims must be a number or a table of numbers");
    }
    if (lua_isboolean(L, idx + 1)) {
        d.keepdim = lua_toboolean(L, idx + 1);
    } else if (lua_istable(L, idx + 1)) {
        lua_getfield(L, idx + 1, "keepdim");
        d.keepdim = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return d;
}

static int reduce(lua_State *L, reduce_op op)
{
    tensor *t = lt_check(L, 1);
    dim_args d = read_dims(L, 2);
    return lt_push(L, op_reduce(op, t, d.ndims, d.dims, d.keepdim, 0));
}

static int l_sum(lua_State *L) { return reduce(L, RED_SUM); }
static int l_prod(lua_State *L) { return reduce(L, RED_PROD); }
static int l_logsumexp(lua_State *L) { return reduce(L, RED_LOGSUMEXP); }

static int l_mean(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    dim_args d = read_dims(L, 2);
    return lt_push(L, op_mean(t, d.ndims, d.dims, d.keepdim));
}

/* var/std(t, dims, keepdim | {keepdim=, correction=, unbiased=}) */
static int var_std(lua_State *L, bool std)
{
    tensor *t = lt_check(L, 1);
    dim_args d = read_dims(L, 2);
    double correction = 1;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "correction");
        if (!lua_isnil(L, -1))
            correction = luaL_checknumber(L, -1);
        lua_getfield(L, 3, "unbiased");
        if (lua_isboolean(L, -1))
            correction = lua_toboolean(L, -1) ? 1 : 0;
        lua_pop(L, 2);
    }
    tensor *r = std ? op_std(t, d.ndims, d.dims, d.keepdim, correction)
                    : op_var(t, d.ndims, d.dims, d.keepdim, correction);
    return lt_push(L, r);
}

static int l_var(lua_State *L) { return var_std(L, false); }
static int l_std(lua_State *L) { return var_std(L, true); }

/* Push 0-based int64 indices as 1-based. */
static int push_one_based(lua_State *L, tensor *idx)
{
    if (!idx)
        return lt_error(L);
    tensor *r = op_binary_scalar(BIN_ADD, idx, 1, false);
    tensor_decref(idx);
    return lt_push(L, r);
}

/* max(t) -> value; max(t, dim [, keepdim]) -> values, indices; max(a, b) -> maximum */
static int max_min(lua_State *L, bool is_min)
{
    tensor *t = lt_check(L, 1);
    if (lt_test(L, 2))
        return binary(L, is_min ? BIN_MIN : BIN_MAX);
    if (lua_isnoneornil(L, 2))
        return lt_push(L, op_reduce(is_min ? RED_MIN : RED_MAX, t, 0, NULL, false, 0));
    dim_args d = read_dims(L, 2);
    if (d.ndims != 1)
        return luaL_argerror(L, 2, "max/min along dims take one dim; use amax/amin for several");
    tensor *v, *ix;
    if (op_max_dim(t, d.dims[0], d.keepdim, is_min, &v, &ix) != 0)
        return lt_error(L);
    lt_push(L, v);
    push_one_based(L, ix);
    return 2;
}

static int l_max(lua_State *L) { return max_min(L, false); }
static int l_min(lua_State *L) { return max_min(L, true); }

static int l_amax(lua_State *L) { return reduce(L, RED_MAX); }
static int l_amin(lua_State *L) { return reduce(L, RED_MIN); }

static int arg_max_min(lua_State *L, bool is_min)
{
    tensor *t = lt_check(L, 1);
    bool has = !lua_isnoneornil(L, 2);
    int dim = has ? lt_dim(L, 2) : 0;
    bool keepdim = lua_toboolean(L, 3);
    return push_one_based(L, op_argmax(t, has, dim, keepdim, is_min));
}

static int l_argmax(lua_State *L) { return arg_max_min(L, false); }
static int l_argmin(lua_State *L) { return arg_max_min(L, true); }

/* --- matrix products --- */

static int l_matmul(lua_State *L) { return lt_push(L, op_matmul(lt_check(L, 1), lt_check(L, 2))); }
static int l_bmm(lua_State *L) { return lt_push(L, op_bmm(lt_check(L, 1), lt_check(L, 2))); }

static int l_mm(lua_State *L)
{
    tensor *a = lt_check(L, 1), *b = lt_check(L, 2);
    if (a->ndim != 2 || b->ndim != 2)
        return luaL_error(L, "mm: expects two 2-D tensors, got %d and %d dims", a->ndim, b->ndim);
    return lt_push(L, op_matmul(a, b));
}

static int l_linear(lua_State *L)
{
    tensor *b = lua_isnoneornil(L, 3) ? NULL : lt_check(L, 3);
    return lt_push(L, op_linear(lt_check(L, 1), lt_check(L, 2), b));
}

/* --- joining and splitting --- */

/* The tensors of the list at idx, in a C array owned by a userdata on the stack. */
static tensor **tensor_list(lua_State *L, int idx, int *n)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)lua_rawlen(L, idx);
    if (*n == 0)
        luaL_argerror(L, idx, "an empty list of tensors");
    tensor **ts = lua_newuserdatauv(L, sizeof(tensor *) * (size_t)*n, 0);
    for (int i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, i + 1);
        ts[i] = lt_test(L, -1);
        if (!ts[i])
            luaL_argerror(L, idx, lua_pushfstring(L, "element %d is not a tensor", i + 1));
        lua_pop(L, 1);
    }
    return ts;
}

static int l_cat(lua_State *L)
{
    int n;
    int dim = lt_optdim(L, 2, 0);
    tensor **ts = tensor_list(L, 1, &n);
    return lt_push(L, op_cat(n, ts, dim));
}

static int l_stack(lua_State *L)
{
    int n;
    int dim = lt_optdim(L, 2, 0);
    tensor **ts = tensor_list(L, 1, &n);
    return lt_push(L, op_stack(n, ts, dim));
}

/* Push the pieces as a Lua list. */
static int push_pieces(lua_State *L, tensor **ps, int n)
{
    if (!ps)
        return lt_error(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
        *box = ps[i];
        ps[i] = NULL;
        luaL_setmetatable(L, LT_TENSOR_MT);
        lua_rawseti(L, -2, i + 1);
    }
    free(ps);
    return 1;
}

static int l_split(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    int dim = lt_optdim(L, 3, 0), n;
    tensor **ps = op_split(t, size, dim, &n);
    return push_pieces(L, ps, n);
}

static int l_chunk(lua_State *L)
{
    tensor *t = lt_check(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    if (k > INT32_MAX)
        k = INT32_MAX; /* more chunks than elements gives the same pieces */
    int dim = lt_optdim(L, 3, 0), n;
    tensor **ps = op_chunk(t, (int)k, dim, &n);
    return push_pieces(L, ps, n);
}

/* --- indexing with 1-based index tensors --- */

/* f(t, dim, index) for an op that takes 0-based indices: index_select, gather. */
static int index_op(lua_State *L, tensor *(*op)(tensor *, int, tensor *))
{
    tensor *t = lt_check(L, 1);
    int dim = lt_dim(L, 2);
    tensor *z = lt_zero_based(L, lt_check(L, 3));
    tensor *r = op(t, dim, z);
    tensor_decref(z);
    return lt_push(L, r);
}

/* index_select(t, dim, index) and gather(t, dim, index), with 1-based indices. */
static int l_index_select(lua_State *L) { return index_op(L, op_index_select); }
static int l_gather(lua_State *L) { return index_op(L, op_gather); }

static int l_masked_select(lua_State *L)
{
    return lt_push(L, op_masked_select(lt_check(L, 1), lt_check(L, 2)));
}

static int l_nonzero(lua_State *L)
{
    tensor *nz = op_nonzero(lt_check(L, 1));
    return push_one_based(L, nz);
}

/* --- neural-network functions --- */

static int l_softmax(lua_State *L) { return lt_push(L, op_softmax(lt_check(L, 1), lt_dim(L, 2), false)); }
static int l_log_softmax(lua_State *L) { return lt_push(L, op_softmax(lt_check(L, 1), lt_dim(L, 2), true)); }

/* Push options[key] from the options table at idx ({reduction=, weight=, ...}),
 * or nil when there is no table, for the readers below to take with a default. */
static void opt_push(lua_State *L, int idx, const char *key)
{
    if (lua_istable(L, idx))
        lua_getfield(L, idx, key);
    else
        lua_pushnil(L);
}

/* The reduction option ("mean" by default). */
static loss_reduction opt_reduction(lua_State *L, int idx)
{
    opt_push(L, idx, "reduction");
    const char *r = luaL_optstring(L, -1, "mean");
    loss_reduction out = strcmp(r, "mean") == 0 ? REDUCE_MEAN
                       : strcmp(r, "sum") == 0  ? REDUCE_SUM
                       : strcmp(r, "none") == 0 ? REDUCE_NONE
                                                : (loss_reduction)-1;
    if ((int)out < 0)
        luaL_error(L, "reduction must be 'mean', 'sum' or 'none', not '%s'", r);
    lua_pop(L, 1);
    return out;
}

/* A tensor option, or NULL. Read raw: the options table itself keeps it alive
 * while the op runs (one that __index made up could be collected by a collection
 * that the op's allocations start). */
static tensor *opt_tensor(lua_State *L, int idx, const char *key)
{
    if (!lua_istable(L, idx))
        return NULL;
    idx = lua_absindex(L, idx);
    lua_pushstring(L, key);
    lua_rawget(L, idx);
    tensor *t = lua_isnil(L, -1) ? NULL : lt_check(L, -1);
    lua_pop(L, 1);
    return t;
}

/* A number option, or def. */
static double opt_number(lua_State *L, int idx, const char *key, double def)
{
    opt_push(L, idx, key);
    double v = luaL_optnumber(L, -1, def);
    lua_pop(L, 1);
    return v;
}

/* Class targets are 1-based on the Lua side; ignore_index too (default: none). */
static int class_loss(lua_State *L, bool from_logits)
{
    tensor *x = lt_check(L, 1), *y = lt_check(L, 2);
    loss_reduction r = opt_reduction(L, 3);
    tensor *w = opt_tensor(L, 3, "weight");
    double eps = opt_number(L, 3, "label_smoothing", 0);
    double ignore = opt_number(L, 3, "ignore_index", -1e18);
    int64_t ig = ignore > -1e17 ? (int64_t)ignore - 1 : INT64_MIN;
    if (dtype_is_float(y->dtype)) { /* class probabilities */
        if (!from_logits)
            return luaL_error(L, "nll_loss: targets must be int64 class indices");
        return lt_push(L, op_cross_entropy(x, y, w, r, eps, ig));
    }
    tensor *z = lt_zero_based(L, y);
    tensor *l = from_logits ? op_cross_entropy(x, z, w, r, eps, ig) : op_nll_loss(x, z, w, r, ig);
    tensor_decref(z);
    return lt_push(L, l);
}

static int l_cross_entropy(lua_State *L) { return class_loss(L, true); }
static int l_nll_loss(lua_State *L) { return class_loss(L, false); }

static int l_bce_with_logits(lua_State *L)
{
    tensor *x = lt_check(L, 1), *y = lt_check(L, 2);
    return lt_push(L, op_bce_with_logits(x, y, opt_tensor(L, 3, "weight"),
                                         opt_tensor(L, 3, "pos_weight"), opt_reduction(L, 3)));
}

static int l_mse_loss(lua_State *L)
{
    return lt_push(L, op_mse_loss(lt_check(L, 1), lt_check(L, 2), opt_reduction(L, 3)));
}

/* --- in-place arithmetic: t:add_(x), t:mul_(x), ... (no autograd) --- */

static int inplace(lua_State *L, int (*f)(lua_State *), const char *name)
{
    tensor *t = lt_check(L, 1);
    lt_check_inplace(L, t, name);
    int top = lua_gettop(L);
    lua_pushcfunction(L, f);
    for (int i = 1; i <= top; i++)
        lua_pushvalue(L, i);
    lua_call(L, top, 1);
    tensor *r = lt_check(L, -1);
    /* t is outside the graph (lt_check_inplace made sure); writing a value that
     * depends on a tensor requiring grad into it would drop that gradient. */
    if (r->requires_grad)
        return luaL_error(L, "%s: an operand requires grad but the tensor written in "
                             "place does not, so the gradient would be lost; use the "
                             "out-of-place op", name);
    if (!tensor_same_shape(r, t)) {
        char b1[128], b2[128];
        return luaL_error(L, "%s: the result has shape %s but the tensor written in place has %s",
                          name, tensor_shape_str(r, b1, sizeof b1), tensor_shape_str(t, b2, sizeof b2));
    }
    if (dtype_is_float(r->dtype) && !dtype_is_float(t->dtype))
        return luaL_error(L, "%s: the result is %s and cannot be stored in place in the %s tensor",
                          name, dtype_name(r->dtype), dtype_name(t->dtype));
    if (tensor_copy_into(t, r) != 0)
        return lt_error(L);
    lua_settop(L, 1);
    return 1;
}

/* t:op_(x) for a tensor or a number x: written into t itself where
 * op_binary_into can, else as inplace does. */
static int inplace_binary(lua_State *L, binary_op op, int (*f)(lua_State *), const char *name)
{
    tensor *t = lt_check(L, 1), *b = lt_test(L, 2);
    lt_check_inplace(L, t, name);
    int rc = 1;
    if (lua_gettop(L) == 2 && b) {
        rc = op_binary_into(op, t, b);
    } else if (lua_gettop(L) == 2 && lua_type(L, 2) == LUA_TNUMBER) {
        /* (an integer beyond 2^53, which a double would round: binary's way) */
        lua_Integer v = lua_tointeger(L, 2);
        if (!lua_isinteger(L, 2) || (v <= (1LL << 53) && v >= -(1LL << 53)))
            rc = op_binary_scalar_into(op, t, lua_tonumber(L, 2));
    }
    if (rc < 0)
        return lt_error(L);
    if (rc > 0)
        return inplace(L, f, name);
    lua_settop(L, 1);
    return 1;
}

static int l_add_(lua_State *L) { return inplace_binary(L, BIN_ADD, l_add, "add_"); }
static int l_sub_(lua_State *L) { return inplace_binary(L, BIN_SUB, l_sub, "sub_"); }
static int l_mul_(lua_State *L) { return inplace_binary(L, BIN_MUL, l_mul, "mul_"); }
static int l_div_(lua_State *L) { return inplace_binary(L, BIN_DIV, l_div, "div_"); }
static int l_clamp_(lua_State *L) { return inplace(L, l_clamp, "clamp_"); }

/* --- metamethods --- */

static int m_unm(lua_State *L) { return l_neg(L); }

static int m_eq(lua_State *L)
{
    /* == compares identity; use :eq() for elementwise equality */
    lua_pushboolean(L, lt_test(L, 1) == lt_test(L, 2));
    return 1;
}

static const luaL_Reg funcs[] = {
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"pow", l_pow},
    {"maximum", l_maximum}, {"minimum", l_minimum}, {"eq", l_eq}, {"ne", l_ne}, {"lt", l_lt},
    {"le", l_le}, {"gt", l_gt}, {"ge", l_ge}, {"logical_and", l_logical_and},
    {"logical_or", l_logical_or}, {"neg", l_neg}, {"abs", l_abs}, {"exp", l_exp},
    {"log", l_log}, {"sqrt", l_sqrt}, {"rsqrt", l_rsqrt}, {"reciprocal", l_reciprocal},
    {"square", l_square}, {"relu", l_relu}, {"sigmoid", l_sigmoid}, {"tanh", l_tanh},
    {"sign", l_sign}, {"softplus", l_softplus}, {"clamp", l_clamp}, {"where", l_where},
    {"sum", l_sum}, {"prod", l_prod}, {"mean", l_mean}, {"var", l_var}, {"std", l_std},
    {"logsumexp", l_logsumexp}, {"max", l_max}, {"min", l_min}, {"amax", l_amax},
    {"amin", l_amin}, {"argmax", l_argmax}, {"argmin", l_argmin}, {"matmul", l_matmul},
    {"mm", l_mm}, {"bmm", l_bmm}, {"linear", l_linear}, {"cat", l_cat}, {"stack", l_stack},
    {"split", l_split}, {"chunk", l_chunk}, {"index_select", l_index_select},
    {"gather", l_gather}, {"masked_select", l_masked_select}, {"nonzero", l_nonzero},
    {"softmax", l_softmax}, {"log_softmax", l_log_softmax},
    {"cross_entropy", l_cross_entropy}, {"nll_loss", l_nll_loss},
    {"binary_cross_entropy_with_logits", l_bce_with_logits}, {"mse_loss", l_mse_loss},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"pow", l_pow},
    {"maximum", l_maximum}, {"minimum", l_minimum}, {"eq", l_eq}, {"ne", l_ne}, {"lt", l_lt},
    {"le", l_le}, {"gt", l_gt}, {"ge", l_ge}, {"logical_and", l_logical_and},
    {"logical_or", l_logical_or}, {"neg", l_neg}, {"abs", l_abs}, {"exp", l_exp},
    {"log", l_log}, {"sqrt", l_sqrt}, {"rsqrt", l_rsqrt}, {"reciprocal", l_reciprocal},
    {"square", l_square}, {"relu", l_relu}, {"sigmoid", l_sigmoid}, {"tanh", l_tanh},
    {"sign", l_sign}, {"softplus", l_softplus}, {"clamp", l_clamp}, {"sum", l_sum},
    {"prod", l_prod}, {"mean", l_mean}, {"var", l_var}, {"std", l_std},
    {"logsumexp", l_logsumexp}, {"max", l_max}, {"min", l_min}, {"amax", l_amax},
    {"amin", l_amin}, {"argmax", l_argmax}, {"argmin", l_argmin}, {"matmul", l_matmul},
    {"mm", l_mm}, {"bmm", l_bmm}, {"split", l_split}, {"chunk", l_chunk},
    {"index_select", l_index_select}, {"gather", l_gather},
    {"masked_select", l_masked_select}, {"nonzero", l_nonzero}, {"softmax", l_softmax},
    {"log_softmax", l_log_softmax}, {"add_", l_add_}, {"sub_", l_sub_}, {"mul_", l_mul_},
    {"div_", l_div_}, {"clamp_", l_clamp_},
    {NULL, NULL},
};

void l_ops_open(lua_State *L)
{
    lt_register(L, funcs, methods);
    luaL_getmetatable(L, LT_TENSOR_MT);
    static const luaL_Reg meta[] = {
        {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div},
        {"__pow", l_pow}, {"__unm", m_unm}, {"__eq", m_eq}, {NULL, NULL},
    };
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}
