/* Elementwise ops with broadcasting and type promotion, and their gradients. */
#include <math.h>
#include <string.h>

#include "internal.h"

static const char *const unary_names[UN_COUNT] = {
    [UN_NEG] = "neg", [UN_ABS] = "abs", [UN_EXP] = "exp", [UN_LOG] = "log",
    [UN_SQRT] = "sqrt", [UN_RSQRT] = "rsqrt", [UN_RECIP] = "reciprocal",
    [UN_SQUARE] = "square", [UN_RELU] = "relu", [UN_SIGMOID] = "sigmoid",
    [UN_TANH] = "tanh", [UN_SIGN] = "sign", [UN_CLAMP] = "clamp", [UN_POW] = "pow",
    [UN_STEP] = "step", [UN_AFFINE] = "affine", [UN_LOG1P_EXP] = "softplus",
};

static const char *const binary_names[BIN_COUNT] = {
    [BIN_ADD] = "add", [BIN_SUB] = "sub", [BIN_MUL] = "mul", [BIN_DIV] = "div",
    [BIN_POW] = "pow", [BIN_MAX] = "maximum", [BIN_MIN] = "minimum", [BIN_EQ] = "eq",
    [BIN_NE] = "ne", [BIN_LT] = "lt", [BIN_LE] = "le", [BIN_GT] = "gt", [BIN_GE] = "ge",
    [BIN_AND] = "logical_and", [BIN_OR] = "logical_or",
};

/* --- conversion --- */

static int to_dtype_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = op_to_dtype(g, n->next[0].dtype);
    return ag_check(n, gin);
}

tensor *op_to_dtype(tensor *a, dtype_t dt)
{
    return op_to_dtype_in(a, dt, false);
}

tensor *op_to_dtype_in(tensor *a, dtype_t dt, bool channels_last)
{
    tensor *out = channels_last && a->ndim == 4 ? tensor_copy_channels_last(a, dt)
                                                : tensor_copy_as(a, dt);
    if (!out)
        return NULL;
    if (dtype_is_float(dt) && dtype_is_float(a->dtype) && ag_needs(1, &a)) {
        ag_node *n = ag_node_new("to", to_dtype_backward, 1, &a);
        if (!n) {
            tensor_decref(out);
            return NULL;
        }
        ag_attach(out, n);
    }
    return out;
}

static int to_device_backward(ag_node *n, tensor *g, tensor **gin)
{
    device src = {(device_type)n->iarg[0], (int)n->iarg[1]};
    gin[0] = tensor_to_device(g, src);
    return ag_check(n, gin);
}

tensor *op_to_device(tensor *a, device dev)
{
    if (device_eq(dev, tensor_device(a)))
        return tensor_incref(a);
    tensor *out = tensor_to_device(a, dev);
    if (out && ag_needs(1, &a)) {
        ag_node *n = ag_node_new("to_device", to_device_backward, 1, &a);
        if (!n) {
            tensor_decref(out);
            return NULL;
        }
        n->iarg[0] = tensor_device(a).type;
        n->iarg[1] = tensor_device(a).index;
        ag_attach(out, n);
    }
    return out;
}

static int clone_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = keep(g);
    return ag_check(n, gin);
}

/* Like PyTorch's clone: a dense layout (channels-last, say) is kept. */
tensor *op_clone(tensor *a)
{
    tensor *out = tensor_empty_like(a, a->dtype);
    if (out && tensor_copy_into(out, a) != 0) {
        tensor_decref(out);
        out = NULL;
    }
    if (out && ag_needs(1, &a)) {
        ag_node *n = ag_node_new("clone", clone_backward, 1, &a);
        if (!n) {
            tensor_decref(out);
            return NULL;
        }
        ag_attach(out, n);
    }
    return out;
}

/* --- unary --- */

static bool unary_needs_float(unary_op op, double p0)
{
    switch (op) {
    case UN_NEG: case UN_ABS: case UN_SQUARE: case UN_RELU: case UN_SIGN: case UN_CLAMP:
    case UN_STEP:
        return false;
    case UN_POW:
        return p0 < 0 || p0 != floor(p0);
    case UN_AFFINE:
        return false;
    default:
        return true;
    }
}

/* Which of (input, output) the gradient formula of op reads. */
static void unary_saves(unary_op op, bool *in, bool *out)
{
    *in = *out = false;
    switch (op) {
    case UN_ABS: case UN_LOG: case UN_SQUARE: case UN_CLAMP: case UN_POW:
    case UN_LOG1P_EXP:
        *in = true;
        break;
    case UN_EXP: case UN_SQRT: case UN_RSQRT: case UN_RECIP: case UN_RELU:
    case UN_SIGMOID: case UN_TANH:
        *out = true;
        break;
    default: break;
    }
}

/* Does t have y's shape and strides (and dtype), densely? */
static bool laid_out_like(const tensor *t, const tensor *y)
{
    if (t->dtype != y->dtype || t->ndim != y->ndim || !tensor_is_dense(t))
        return false;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != y->shape[i] || (t->shape[i] > 1 && t->stride[i] != y->stride[i]))
            return false;
    return true;
}

/* relu's, sigmoid's and tanh's gradient from their output y, in one kernel (g
 * copied into y's layout first when it is not in it). */
static tensor *activation_grad(unary_op op, tensor *g, tensor *y)
{
    const char *name = unary_names[op];
    const backend *be = ops_backend(y, name);
    tensor *gd = !be ? NULL : laid_out_like(g, y) ? keep(g) : tensor_empty_like(y, y->dtype);
    if (gd && gd != g && be->copy(gd, g) != 0) {
        tensor_decref(gd);
        gd = NULL;
    }
    tensor *gin = gd ? tensor_empty_like(y, y->dtype) : NULL;
    if (gin && be->activation_backward(op, gin, gd, y) != 0) {
        tensor_decref(gin);
        gin = NULL;
    }
    tensor_decref(gd);
    return gin;
}

static int unary_backward(ag_node *n, tensor *g, tensor **gin)
{
    unary_op op = (unary_op)n->iarg[0];
    double p0 = n->darg[0], p1 = n->darg[1];
    bool save_in, save_out;
    unary_saves(op, &save_in, &save_out);
    tensor *x = NULL, *y = NULL;
    if (save_in && !(x = ag_saved(n, 0)))
        return -1;
    if (save_out && !(y = ag_saved(n, save_in ? 1 : 0)))
        return -1;
    tensor *r;
    switch (op) {
    case UN_NEG: r = op_unary(UN_NEG, g, 0, 0); break;
    case UN_ABS: r = c_binary(BIN_MUL, keep(g), op_unary(UN_SIGN, x, 0, 0)); break;
    case UN_EXP: r = op_binary(BIN_MUL, g, y); break;
    case UN_LOG: r = op_binary(BIN_DIV, g, x); break;
    case UN_SQRT: r = c_binary(BIN_DIV, keep(g), op_binary_scalar(BIN_MUL, y, 2, false)); break;
    case UN_RSQRT: /* d/dx x^-1/2 = -1/2 y^3 */
        r = c_binary(BIN_MUL, keep(g), c_scalar(BIN_MUL, op_unary(UN_POW, y, 3, 0), -0.5));
        break;
    case UN_RECIP: r = c_binary(BIN_MUL, keep(g), c_unary(UN_NEG, op_unary(UN_SQUARE, y, 0, 0), 0, 0)); break;
    case UN_SQUARE: r = c_binary(BIN_MUL, keep(g), op_binary_scalar(BIN_MUL, x, 2, false)); break;
    case UN_RELU: case UN_SIGMOID: case UN_TANH: r = activation_grad(op, g, y); break;
    case UN_CLAMP: { /* pass where min <= x <= max (bounds included, as PyTorch) */
        tensor *lo = isinf(p0) ? NULL : op_binary_scalar(BIN_GE, x, p0, false);
        tensor *hi = isinf(p1) ? NULL : op_binary_scalar(BIN_LE, x, p1, false);
        tensor *m = lo && hi ? c_binary(BIN_AND, lo, hi) : lo ? lo : hi;
        tensor *zero = op_binary_scalar(BIN_MUL, g, 0, false);
        r = m ? c_where(m, keep(g), zero) : (tensor_decref(zero), keep(g));
        break;
    }
    case UN_POW: /* p x^(p-1); x^0 is constant (no 0 * inf at x = 0) */
        r = p0 == 0 ? op_binary_scalar(BIN_MUL, g, 0, false)
                    : c_binary(BIN_MUL, keep(g), c_scalar(BIN_MUL, op_unary(UN_POW, x, p0 - 1, 0), p0));
        break;
    case UN_AFFINE: r = op_binary_scalar(BIN_MUL, g, p0, false); break;
    case UN_LOG1P_EXP: r = c_binary(BIN_MUL, keep(g), op_unary(UN_SIGMOID, x, 0, 0)); break;
    default: /* sign, step: zero almost everywhere */
        r = op_binary_scalar(BIN_MUL, g, 0, false);
        break;
    }
    gin[0] = r;
    return ag_check(n, gin);
}

/* clamp's missing bound (NaN) as an infinite one, which every kernel and the
 * gradient handle without a special case. */
static void clamp_bounds(unary_op op, double *p0, double *p1)
{
    if (op != UN_CLAMP)
        return;
    if (isnan(*p0))
        *p0 = -INFINITY;
    if (isnan(*p1))
        *p1 = INFINITY;
}

tensor *op_unary(unary_op op, tensor *a, double p0, double p1)
{
    const char *name = unary_names[op];
    clamp_bounds(op, &p0, &p1);
    tensor *x = unary_needs_float(op, p0) && !dtype_is_float(a->dtype)
                    ? op_to_dtype(a, DT_F32)
                    : tensor_is_dense(a) ? keep(a) : op_contiguous(a);
    if (!x)
        return NULL;
    if (a->dtype == DT_BOOL && op != UN_STEP) {
        tensor_decref(x);
        err_set("%s: not defined for bool tensors", name);
        return NULL;
    }
    const backend *be = ops_backend(x, name);
    tensor *out = be ? tensor_empty_like(x, x->dtype) : NULL;
    if (out && be->unary(op, out, x, p0, p1) != 0) {
        tensor_decref(out);
        out = NULL;
    }
    if (out && dtype_is_float(x->dtype) && ag_needs(1, &x)) {
        ag_node *n = ag_node_new(name, unary_backward, 1, &x);
        bool save_in, save_out;
        unary_saves(op, &save_in, &save_out);
        int rc = n ? 0 : -1;
        if (n) {
            n->iarg[0] = op;
            n->darg[0] = p0;
            n->darg[1] = p1;
            if (save_in)
                rc = ag_save(n, x);
            if (rc == 0 && save_out)
                rc = ag_save(n, out);
            if (rc == 0) {
                ag_attach(out, n);
            } else {
                ag_node_decref(n);
            }
        }
        if (rc != 0) {
            tensor_decref(out);
            out = NULL;
        }
    }
    tensor_decref(x);
    return out;
}

/* --- binary --- */

/* d/da a^b = b a^(b-1), and 0 where b == 0 (a^0 is constant, even at a = 0). */
static tensor *pow_grad_base(tensor *g, tensor *a, tensor *b)
{
    tensor *d = c_binary(BIN_MUL, keep(b),
                         c_binary(BIN_POW, keep(a), op_binary_scalar(BIN_SUB, b, 1, false)));
    tensor *zero = op_binary_scalar(BIN_MUL, g, 0, false);
    return c_where(op_binary_scalar(BIN_EQ, b, 0, false), zero,
                   c_binary(BIN_MUL, keep(g), d));
}

/* d/db a^b = a^b log a, taken as 0 where a == 0 and b >= 0 (PyTorch's limit). */
static tensor *pow_grad_exponent(tensor *g, tensor *a, tensor *b, tensor *y)
{
    tensor *t = c_binary(BIN_MUL, op_binary(BIN_MUL, g, y), op_unary(UN_LOG, a, 0, 0));
    tensor *zero = op_binary_scalar(BIN_MUL, g, 0, false);
    tensor *limit = c_binary(BIN_AND, op_binary_scalar(BIN_EQ, a, 0, false),
                             op_binary_scalar(BIN_GE, b, 0, false));
    return c_where(limit, zero, t);
}

static int binary_backward(ag_node *n, tensor *g, tensor **gin)
{
    binary_op op = (binary_op)n->iarg[0];
    tensor *a = NULL, *b = NULL, *y = NULL;
    if (n->n_saved > 0 && !(a = ag_saved(n, 0)))
        return -1;
    if (n->n_saved > 1 && !(b = ag_saved(n, 1)))
        return -1;
    if (n->n_saved > 2 && !(y = ag_saved(n, 2)))
        return -1;
    bool wa = ag_wants(n, 0), wb = ag_wants(n, 1);
    tensor *ga = NULL, *gb = NULL;
    switch (op) {
    case BIN_ADD:
        ga = wa ? keep(g) : NULL;
        gb = wb ? keep(g) : NULL;
        break;
    case BIN_SUB:
        ga = wa ? keep(g) : NULL;
        gb = wb ? op_unary(UN_NEG, g, 0, 0) : NULL;
        break;
    case BIN_MUL:
        ga = wa ? op_binary(BIN_MUL, g, b) : NULL;
        gb = wb ? op_binary(BIN_MUL, g, a) : NULL;
        break;
    case BIN_DIV: /* d/db a/b = -y/b */
        ga = wa ? op_binary(BIN_DIV, g, b) : NULL;
        gb = wb ? c_unary(UN_NEG, c_binary(BIN_DIV, op_binary(BIN_MUL, g, y), keep(b)), 0, 0)
                : NULL;
        break;
    case BIN_POW:
        ga = wa ? pow_grad_base(g, a, b) : NULL;
        gb = wb ? pow_grad_exponent(g, a, b, y) : NULL;
        break;
    case BIN_MAX:
    case BIN_MIN: { /* to the winner; ties split evenly, as PyTorch */
        binary_op win = op == BIN_MAX ? BIN_GT : BIN_LT;
        tensor *half = op_binary_scalar(BIN_MUL, g, 0.5, false);
        tensor *zero = op_binary_scalar(BIN_MUL, g, 0, false);
        tensor *tie = op_binary(BIN_EQ, a, b);
        if (wa)
            ga = c_where(op_binary(win, a, b), keep(g), c_where(keep(tie), keep(half), keep(zero)));
        if (wb)
            gb = c_where(op_binary(win, b, a), keep(g), c_where(keep(tie), keep(half), keep(zero)));
        tensor_decref(half);
        tensor_decref(zero);
        tensor_decref(tie);
        break;
    }
    default: break;
    }
    gin[0] = wa ? c_sum_to_input(n, 0, ga) : NULL;
    gin[1] = wb ? c_sum_to_input(n, 1, gb) : NULL;
    if (!wa) tensor_decref(ga);
    if (!wb) tensor_decref(gb);
    return ag_check(n, gin);
}

/* The output of a binary op: laid out like an operand that has the output's
 * shape and a dense layout (channels-last stays channels-last), else contiguous. */
static tensor *binary_output(dtype_t dt, int nd, const int64_t *shape, const tensor *a,
                             const tensor *b)
{
    const tensor *like = a->ndim == nd && !memcmp(a->shape, shape, sizeof(int64_t) * (size_t)nd) ? a
                       : b->ndim == nd && !memcmp(b->shape, shape, sizeof(int64_t) * (size_t)nd) ? b
                                                                                              : NULL;
    if (like && tensor_is_dense(like))
        return tensor_empty_like(like, dt);
    return tensor_empty(dt, nd, shape, tensor_device(a));
}

/* The dtype an op computes in, from its inputs' promoted dtype. */
static dtype_t compute_dtype(binary_op op, dtype_t t)
{
    if (op == BIN_DIV && !dtype_is_float(t))
        return DT_F32; /* true division, as PyTorch */
    if (t == DT_BOOL && op <= BIN_MIN)
        return DT_I64;
    return t;
}

static int binary_record(binary_op op, tensor *out, tensor *a, tensor *b)
{
    tensor *in[2] = {a, b};
    if (op > BIN_MIN || !dtype_is_float(out->dtype) || !ag_needs(2, in))
        return 0;
    ag_node *n = ag_node_new(binary_names[op], binary_backward, 2, in);
    if (!n)
        return -1;
    n->iarg[0] = op;
    int rc = 0;
    switch (op) {
    case BIN_DIV:
    case BIN_POW:
        rc = ag_save(n, a);
        if (rc == 0) rc = ag_save(n, b);
        if (rc == 0) rc = ag_save(n, out);
        break;
    case BIN_MUL:
    case BIN_MAX:
    case BIN_MIN:
        rc = ag_save(n, a);
        if (rc == 0) rc = ag_save(n, b);
        break;
    default: break;
    }
    if (rc != 0) {
        ag_node_decref(n);
        return -1;
    }
    ag_attach(out, n);
    return 0;
}

tensor *op_binary(binary_op op, tensor *a, tensor *b)
{
    const char *name = binary_names[op];
    tensor *in[2] = {a, b};
    if (ops_same_device(name, 2, in, (const char *const[]){"the first operand", "the second operand"}) != 0)
        return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = shape_broadcast(a->ndim, a->shape, b->ndim, b->shape, shape, name);
    if (nd < 0)
        return NULL;
    dtype_t ct = compute_dtype(op, dtype_promote(a->dtype, b->dtype));
    tensor *ac = a->dtype == ct ? keep(a) : op_to_dtype(a, ct);
    tensor *bc = b->dtype == ct ? keep(b) : op_to_dtype(b, ct);
    tensor *av = ac ? tensor_broadcast_to(ac, nd, shape, name) : NULL;
    tensor *bv = bc ? tensor_broadcast_to(bc, nd, shape, name) : NULL;
    const backend *be = av && bv ? ops_backend(a, name) : NULL;
    dtype_t ot = op >= BIN_EQ ? DT_BOOL : ct;
    tensor *out = be ? binary_output(ot, nd, shape, ac, bc) : NULL;
    if (out && (be->binary(op, out, av, bv) != 0 || binary_record(op, out, ac, bc) != 0)) {
        tensor_decref(out);
        out = NULL;
    }
    tensor_decref(av);
    tensor_decref(bv);
    tensor_decref(ac);
    tensor_decref(bc);
    return out;
}

int op_binary_into(binary_op op, tensor *t, tensor *b)
{
    const char *name = binary_names[op];
    if (op > BIN_MIN || !tensor_is_dense(t) || (b->requires_grad && ag_enabled()) ||
        !device_eq(tensor_device(t), tensor_device(b)) ||
        b->dtype != t->dtype || compute_dtype(op, t->dtype) != t->dtype ||
        tensor_copy_overlaps(t, b))
        return 1;
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = shape_broadcast(t->ndim, t->shape, b->ndim, b->shape, shape, name);
    if (nd != t->ndim || memcmp(shape, t->shape, sizeof(int64_t) * (size_t)nd) != 0)
        return 1; /* (the op out of place says why) */
    tensor *bv = tensor_broadcast_to(b, nd, shape, name);
    const backend *be = bv ? ops_backend(t, name) : NULL;
    int rc = be ? be->binary(op, t, t, bv) : -1;
    tensor_decref(bv);
    tensor_bump_version(t);
    return rc;
}

/* A scalar that bfloat16 cannot hold (0.1, 1/257) meets a bf16 tensor in
 * float32, the result rounded once, as PyTorch computes it. */
static bool scalar_widens(const tensor *a, double s)
{
    float sf = (float)s;
    return a->dtype == DT_BF16 && !isnan(s) && bf16_to_f32(bf16_from_f32(sf)) != sf;
}

/* The dtype of a Lua number s meeting a in op. It does not widen a tensor of the
 * same kind: float32 + 0.5 stays float32 and int64 + 2 stays int64, but int64 +
 * 0.5 is float32. */
static dtype_t scalar_dtype(binary_op op, const tensor *a, double s)
{
    if (dtype_is_float(a->dtype))
        return a->dtype;
    if (s != floor(s) || isinf(s) || isnan(s))
        return DT_F32;
    if (a->dtype == DT_BOOL && (op >= BIN_EQ || s == 0 || s == 1))
        return DT_BOOL;
    return a->dtype == DT_U8 && s >= 0 && s <= 255 ? DT_U8 : DT_I64;
}

int op_binary_scalar_into(binary_op op, tensor *t, double s)
{
    if (scalar_widens(t, s))
        return 1;
    tensor *sc = tensor_scalar(scalar_dtype(op, t, s), s, tensor_device(t));
    int rc = sc ? op_binary_into(op, t, sc) : -1;
    tensor_decref(sc);
    return rc;
}

tensor *op_binary_scalar(binary_op op, tensor *a, double s, bool scalar_first)
{
    if (scalar_widens(a, s)) {
        tensor *af = op_to_dtype(a, DT_F32);
        tensor *r = af ? op_binary_scalar(op, af, s, scalar_first) : NULL;
        tensor_decref(af);
        return c_to_bf16(r);
    }
    tensor *sc = tensor_scalar(scalar_dtype(op, a, s), s, tensor_device(a));
    if (!sc)
        return NULL;
    tensor *out = scalar_first ? op_binary(op, sc, a) : op_binary(op, a, sc);
    tensor_decref(sc);
    return out;
}

/* --- where --- */

static int where_backward(ag_node *n, tensor *g, tensor **gin)
{
    tensor *cond = ag_saved(n, 0);
    if (!cond)
        return -1;
    tensor *zero = op_binary_scalar(BIN_MUL, g, 0, false);
    gin[0] = NULL;
    gin[1] = ag_wants(n, 1) ? c_sum_to_input(n, 1, c_where(keep(cond), keep(g), keep(zero))) : NULL;
    gin[2] = ag_wants(n, 2) ? c_sum_to_input(n, 2, c_where(keep(cond), keep(zero), keep(g))) : NULL;
    tensor_decref(zero);
    return ag_check(n, gin);
}

tensor *op_where(tensor *cond, tensor *a, tensor *b)
{
    tensor *in[3] = {cond, a, b};
    if (ops_same_device("where", 3, in, (const char *const[]){"the condition", "the first value", "the second value"}) != 0)
        return NULL;
    if (cond->dtype != DT_BOOL) {
        err_set("where: the condition must be a bool tensor, got %s", dtype_name(cond->dtype));
        return NULL;
    }
    int64_t s1[TENSOR_MAX_DIMS], shape[TENSOR_MAX_DIMS];
    int n1 = shape_broadcast(cond->ndim, cond->shape, a->ndim, a->shape, s1, "where");
    int nd = n1 < 0 ? -1 : shape_broadcast(n1, s1, b->ndim, b->shape, shape, "where");
    if (nd < 0)
        return NULL;
    dtype_t ct = dtype_promote(a->dtype, b->dtype);
    tensor *ac = a->dtype == ct ? keep(a) : op_to_dtype(a, ct);
    tensor *bc = b->dtype == ct ? keep(b) : op_to_dtype(b, ct);
    tensor *cv = tensor_broadcast_to(cond, nd, shape, "where");
    tensor *av = ac ? tensor_broadcast_to(ac, nd, shape, "where") : NULL;
    tensor *bv = bc ? tensor_broadcast_to(bc, nd, shape, "where") : NULL;
    const backend *be = cv && av && bv ? ops_backend(a, "where") : NULL;
    tensor *out = be ? tensor_empty(ct, nd, shape, tensor_device(a)) : NULL;
    if (out && be->where(out, cv, av, bv) != 0) {
        tensor_decref(out);
        out = NULL;
    }
    tensor *rec[3] = {cond, ac, bc};
    if (out && dtype_is_float(ct) && ag_needs(3, rec)) {
        ag_node *n = ag_node_new("where", where_backward, 3, rec);
        if (!n || ag_save(n, cond) != 0) {
            ag_node_decref(n);
            tensor_decref(out);
            out = NULL;
        } else {
            ag_attach(out, n);
        }
    }
    tensor_decref(cv);
    tensor_decref(av);
    tensor_decref(bv);
    tensor_decref(ac);
    tensor_decref(bc);
    return out;
}
