/* CPU kernels for copy, fill, unary and binary elementwise ops, and where.
 * Float types have typed loops (the compiler vectorises the contiguous case);
 * integer and bool tensors go through a common int64 path. */
#include <math.h>
#include <string.h>
#include <tgmath.h>

#include "../dispatch.h"
#include "../error.h"
#include "cpu.h"
#include "iter.h"

/* --- copy and fill --- */

static void copy_same(char **p, const int64_t *s, int64_t n, void *ctx)
{
    size_t es = *(size_t *)ctx;
    if (s[0] == (int64_t)es && s[1] == (int64_t)es) {
        memcpy(p[0], p[1], (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy(p[0] + i * s[0], p[1] + i * s[1], es);
}

typedef struct {
    dtype_t dst, src;
} cast_ctx;

static void copy_cast(char **p, const int64_t *s, int64_t n, void *vctx)
{
    const cast_ctx *c = vctx;
    if (c->dst == DT_F32 && c->src == DT_F64) {
        for (int64_t i = 0; i < n; i++)
            *(float *)(p[0] + i * s[0]) = (float)*(double *)(p[1] + i * s[1]);
    } else if (c->dst == DT_F64 && c->src == DT_F32) {
        for (int64_t i = 0; i < n; i++)
            *(double *)(p[0] + i * s[0]) = *(float *)(p[1] + i * s[1]);
    } else if (c->dst == DT_I64 && (c->src == DT_BOOL || c->src == DT_U8)) {
        for (int64_t i = 0; i < n; i++) /* exact for every byte source */
            *(int64_t *)(p[0] + i * s[0]) = c->src == DT_BOOL ? *(uint8_t *)(p[1] + i * s[1]) != 0
                                                             : *(uint8_t *)(p[1] + i * s[1]);
    } else {
        for (int64_t i = 0; i < n; i++)
            dtype_store(c->dst, p[0] + i * s[0], 0, dtype_load(c->src, p[1] + i * s[1], 0));
    }
}

int cpu_copy(tensor *dst, const tensor *src)
{
    const tensor *ops[2] = {dst, src};
    if (dst->dtype == src->dtype) {
        size_t es = dtype_size(dst->dtype);
        iter_run(2, ops, copy_same, &es);
    } else {
        cast_ctx c = {dst->dtype, src->dtype};
        iter_run(2, ops, copy_cast, &c);
    }
    return 0;
}

typedef struct {
    dtype_t dt;
    union {
        float f;
        double d;
        int64_t i;
        uint16_t h;
        uint8_t b;
    } v;
} fill_ctx;

static void fill_run(char **p, const int64_t *s, int64_t n, void *vctx)
{
    const fill_ctx *c = vctx;
    switch (c->dt) {
    case DT_F32: for (int64_t i = 0; i < n; i++) *(float *)(p[0] + i * s[0]) = c->v.f; break;
    case DT_F64: for (int64_t i = 0; i < n; i++) *(double *)(p[0] + i * s[0]) = c->v.d; break;
    case DT_I64: for (int64_t i = 0; i < n; i++) *(int64_t *)(p[0] + i * s[0]) = c->v.i; break;
    case DT_BF16: for (int64_t i = 0; i < n; i++) *(uint16_t *)(p[0] + i * s[0]) = c->v.h; break;
    default: for (int64_t i = 0; i < n; i++) *(uint8_t *)(p[0] + i * s[0]) = c->v.b; break;
    }
}

int cpu_fill(tensor *t, double v)
{
    fill_ctx c = {.dt = t->dtype};
    switch (t->dtype) {
    case DT_F32: c.v.f = (float)v; break;
    case DT_F64: c.v.d = v; break;
    case DT_I64: c.v.i = (int64_t)v; break;
    case DT_BF16: c.v.h = bf16_from_f32((float)v); break;
    case DT_BOOL: c.v.b = v != 0; break;
    default: c.v.b = (uint8_t)(int64_t)v; break;
    }
    const tensor *ops[1] = {t};
    iter_run(1, ops, fill_run, &c);
    return 0;
}

/* --- unary --- */

typedef struct {
    unary_op op;
    dtype_t dt;
    double p0, p1;
} unary_ctx;

/* One loop per op for element type T; x is the input element. tgmath.h picks the
 * float or double version of each math function from T. */
/* Two loops per case: the contiguous one (the common case, which the compiler
 * vectorises) and the strided one. */
#define UNARY_CASE(T, OP, EXPR)                                              \
    case OP:                                                                 \
        if (s[0] == sizeof(T) && s[1] == sizeof(T)) {                        \
            T *restrict o_ = (T *)p[0];                                      \
            const T *restrict i_ = (const T *)p[1];                          \
            for (int64_t i = 0; i < n; i++) {                                \
                T x = i_[i];                                                 \
                o_[i] = (EXPR);                                              \
            }                                                                \
        } else {                                                             \
            for (int64_t i = 0; i < n; i++) {                                \
                T x = *(const T *)(p[1] + i * s[1]);                         \
                *(T *)(p[0] + i * s[0]) = (EXPR);                            \
            }                                                                \
        }                                                                    \
        break;

#define DEFINE_UNARY_FLOAT(NAME, T)                                                   \
    static void NAME(char **p, const int64_t *s, int64_t n, void *vctx)              \
    {                                                                                 \
        const unary_ctx *c = vctx;                                                    \
        const T p0 = (T)c->p0, p1 = (T)c->p1, one = 1, zero = 0;                      \
        switch (c->op) {                                                              \
            UNARY_CASE(T, UN_NEG, -x)                                                 \
            UNARY_CASE(T, UN_ABS, fabs(x))                                            \
            UNARY_CASE(T, UN_EXP, exp(x))                                             \
            UNARY_CASE(T, UN_LOG, log(x))                                             \
            UNARY_CASE(T, UN_SQRT, sqrt(x))                                           \
            UNARY_CASE(T, UN_RSQRT, one / sqrt(x))                                    \
            UNARY_CASE(T, UN_RECIP, one / x)                                          \
            UNARY_CASE(T, UN_SQUARE, x * x)                                           \
            UNARY_CASE(T, UN_RELU, x > zero ? x : zero)                               \
            UNARY_CASE(T, UN_SIGMOID, one / (one + exp(-x)))                          \
            UNARY_CASE(T, UN_TANH, tanh(x))                                           \
            UNARY_CASE(T, UN_SIGN, (T)((x > zero) - (x < zero)))                      \
            UNARY_CASE(T, UN_CLAMP, isnan(x) ? x : fmin(fmax(x, isnan(p0) ? x : p0),  \
                                                       isnan(p1) ? x : p1))           \
            UNARY_CASE(T, UN_POW, pow(x, p0))                                         \
            UNARY_CASE(T, UN_STEP, x > zero ? one : zero)                             \
            UNARY_CASE(T, UN_AFFINE, p0 * x + p1)                                     \
            UNARY_CASE(T, UN_LOG1P_EXP, fmax(x, zero) + log1p(exp(-fabs(x))))         \
        default: break;                                                               \
        }                                                                             \
    }

DEFINE_UNARY_FLOAT(unary_f32, float)
DEFINE_UNARY_FLOAT(unary_f64, double)

/* Integer arithmetic wraps around on overflow, as in PyTorch (and two's
 * complement hardware), instead of being undefined as signed overflow is in C. */
static int64_t wrap_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
static int64_t wrap_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
static int64_t wrap_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }

/* b^e in wrapping integer arithmetic (exact where it fits); a negative e gives 0
 * unless |b| == 1, as integer pow does in PyTorch. */
static int64_t ipow(int64_t b, int64_t e)
{
    if (e < 0)
        return b == 1 ? 1 : b == -1 ? (e % 2 ? -1 : 1) : 0;
    int64_t r = 1;
    while (e) {
        if (e & 1) r = wrap_mul(r, b);
        b = wrap_mul(b, b);
        e >>= 1;
    }
    return r;
}

/* One unary op on an integer value (overflow wraps, as in the binary ops). */
static int64_t unary_int(unary_op op, int64_t x, double p0, double p1)
{
    switch (op) {
    case UN_NEG: return wrap_sub(0, x);
    case UN_ABS: return x < 0 ? wrap_sub(0, x) : x;
    case UN_SQUARE: return wrap_mul(x, x);
    case UN_RELU: return x > 0 ? x : 0;
    case UN_SIGN: return (x > 0) - (x < 0);
    case UN_STEP: return x > 0;
    case UN_CLAMP:
        if (!isnan(p0) && x < p0) x = (int64_t)ceil(p0);
        if (!isnan(p1) && x > p1) x = (int64_t)floor(p1);
        return x;
    case UN_AFFINE: return (int64_t)(p0 * (double)x + p1);
    case UN_POW: return ipow(x, (int64_t)p0); /* p0 is a whole number >= 0 here */
    default: return x;
    }
}

/* Integer and bool tensors. int64 values are read and written as integers, since
 * a double keeps them exact only up to 2^53. */
static void unary_generic(char **p, const int64_t *s, int64_t n, void *vctx)
{
    const unary_ctx *c = vctx;
    if (c->dt == DT_I64) {
        for (int64_t i = 0; i < n; i++) {
            int64_t x = *(const int64_t *)(p[1] + i * s[1]);
            *(int64_t *)(p[0] + i * s[0]) = unary_int(c->op, x, c->p0, c->p1);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t x = (int64_t)dtype_load(c->dt, p[1] + i * s[1], 0);
        dtype_store(c->dt, p[0] + i * s[0], 0, (double)unary_int(c->op, x, c->p0, c->p1));
    }
}

int cpu_unary(unary_op op, tensor *out, const tensor *a, double p0, double p1)
{
    unary_ctx c = {op, a->dtype, p0, p1};
    const tensor *ops[2] = {out, a};
    iter_fn fn = a->dtype == DT_F32 ? unary_f32 : a->dtype == DT_F64 ? unary_f64 : unary_generic;
    iter_run(2, ops, fn, &c);
    return 0;
}

/* --- activations' gradients --- */

/* gin = f(g, y) over flat runs, for element type T (PyTorch's formulas and
 * order of operations). */
#define ACT_GRAD_CASE(T, OP, EXPR)                                           \
    case OP:                                                                 \
        for (int64_t i = 0; i < n; i++) {                                    \
            T g = *(const T *)(p[1] + i * s[1]), y = *(const T *)(p[2] + i * s[2]); \
            *(T *)(p[0] + i * s[0]) = (EXPR);                                \
        }                                                                    \
        break;

#define DEFINE_ACT_GRAD(NAME, T)                                                      \
    static void NAME(char **p, const int64_t *s, int64_t n, void *vctx)              \
    {                                                                                 \
        const T one = 1, zero = 0;                                                    \
        switch (*(const unary_op *)vctx) {                                            \
            ACT_GRAD_CASE(T, UN_RELU, y > zero ? g : zero)                            \
            ACT_GRAD_CASE(T, UN_SIGMOID, g * (one - y) * y)                           \
            ACT_GRAD_CASE(T, UN_TANH, g * (one - y * y))                              \
        default: break;                                                               \
        }                                                                             \
    }

DEFINE_ACT_GRAD(act_grad_f32, float)
DEFINE_ACT_GRAD(act_grad_f64, double)

int cpu_activation_backward(unary_op op, tensor *gin, const tensor *gout, const tensor *y)
{
    if (op != UN_RELU && op != UN_SIGMOID && op != UN_TANH)
        return err_set("activation_backward: %d is not an activation", (int)op);
    if (y->dtype != DT_F32 && y->dtype != DT_F64)
        return err_set("activation_backward: expected float32 or float64, got %s",
                       dtype_name(y->dtype));
    const tensor *ops[3] = {gin, gout, y};
    iter_run(3, ops, y->dtype == DT_F32 ? act_grad_f32 : act_grad_f64, &op);
    return 0;
}

/* --- binary --- */

/* Contiguous operands, a scalar second operand (stride 0), or any strides. */
#define BINARY_CASE(T, R, OP, EXPR)                                          \
    case OP:                                                                 \
        if (s[0] == sizeof(R) && s[1] == sizeof(T) && s[2] == sizeof(T)) {   \
            R *restrict o_ = (R *)p[0];                                      \
            const T *restrict a_ = (const T *)p[1], *restrict b_ = (const T *)p[2]; \
            for (int64_t i = 0; i < n; i++) {                                \
                T x = a_[i], y = b_[i];                                      \
                o_[i] = (EXPR);                                              \
            }                                                                \
        } else if (s[0] == sizeof(R) && s[1] == sizeof(T) && s[2] == 0) {    \
            R *restrict o_ = (R *)p[0];                                      \
            const T *restrict a_ = (const T *)p[1];                          \
            const T y = *(const T *)p[2];                                    \
            for (int64_t i = 0; i < n; i++) {                                \
                T x = a_[i];                                                 \
                o_[i] = (EXPR);                                              \
            }                                                                \
        } else {                                                             \
            for (int64_t i = 0; i < n; i++) {                                \
                T x = *(const T *)(p[1] + i * s[1]);                         \
                T y = *(const T *)(p[2] + i * s[2]);                         \
                *(R *)(p[0] + i * s[0]) = (EXPR);                            \
            }                                                                \
        }                                                                    \
        break;

#define DEFINE_BINARY_FLOAT(NAME, T)                                                  \
    static void NAME(char **p, const int64_t *s, int64_t n, void *vctx)              \
    {                                                                                 \
        binary_op op = *(const binary_op *)vctx;                                      \
        switch (op) {                                                                 \
            BINARY_CASE(T, T, BIN_ADD, x + y)                                         \
            BINARY_CASE(T, T, BIN_SUB, x - y)                                         \
            BINARY_CASE(T, T, BIN_MUL, x * y)                                         \
            BINARY_CASE(T, T, BIN_DIV, x / y)                                         \
            BINARY_CASE(T, T, BIN_POW, pow(x, y))                                     \
            BINARY_CASE(T, T, BIN_MAX, isnan(x) || x > y ? x : y)                     \
            BINARY_CASE(T, T, BIN_MIN, isnan(x) || x < y ? x : y)                     \
            BINARY_CASE(T, uint8_t, BIN_EQ, x == y)                                   \
            BINARY_CASE(T, uint8_t, BIN_NE, x != y)                                   \
            BINARY_CASE(T, uint8_t, BIN_LT, x < y)                                    \
            BINARY_CASE(T, uint8_t, BIN_LE, x <= y)                                   \
            BINARY_CASE(T, uint8_t, BIN_GT, x > y)                                    \
            BINARY_CASE(T, uint8_t, BIN_GE, x >= y)                                   \
            BINARY_CASE(T, uint8_t, BIN_AND, x != 0 && y != 0)                        \
            BINARY_CASE(T, uint8_t, BIN_OR, x != 0 || y != 0)                         \
        default: break;                                                               \
        }                                                                             \
    }

DEFINE_BINARY_FLOAT(binary_f32, float)
DEFINE_BINARY_FLOAT(binary_f64, double)

typedef struct {
    binary_op op;
    dtype_t dt;
} binary_int_ctx;

static void binary_generic(char **p, const int64_t *s, int64_t n, void *vctx)
{
    const binary_int_ctx *c = vctx;
    for (int64_t i = 0; i < n; i++) {
        int64_t x, y;
        if (c->dt == DT_I64) {
            x = *(const int64_t *)(p[1] + i * s[1]);
            y = *(const int64_t *)(p[2] + i * s[2]);
        } else {
            x = *(const uint8_t *)(p[1] + i * s[1]);
            y = *(const uint8_t *)(p[2] + i * s[2]);
        }
        int64_t r;
        switch (c->op) {
        case BIN_ADD: r = wrap_add(x, y); break;
        case BIN_SUB: r = wrap_sub(x, y); break;
        case BIN_MUL: r = wrap_mul(x, y); break;
        case BIN_DIV: /* the op layer divides in float; kept defined all the same */
            r = y == 0 ? 0 : y == -1 ? wrap_sub(0, x) : x / y;
            break;
        case BIN_POW: r = ipow(x, y); break;
        case BIN_MAX: r = x > y ? x : y; break;
        case BIN_MIN: r = x < y ? x : y; break;
        case BIN_EQ: r = x == y; break;
        case BIN_NE: r = x != y; break;
        case BIN_LT: r = x < y; break;
        case BIN_LE: r = x <= y; break;
        case BIN_GT: r = x > y; break;
        case BIN_GE: r = x >= y; break;
        case BIN_AND: r = x && y; break;
        case BIN_OR: r = x || y; break;
        default: r = 0; break;
        }
        bool to_bool = c->op >= BIN_EQ;
        if (to_bool || c->dt != DT_I64)
            *(uint8_t *)(p[0] + i * s[0]) = to_bool || c->dt == DT_BOOL ? r != 0 : (uint8_t)r;
        else
            *(int64_t *)(p[0] + i * s[0]) = r;
    }
}

int cpu_binary(binary_op op, tensor *out, const tensor *a, const tensor *b)
{
    const tensor *ops[3] = {out, a, b};
    if (a->dtype == DT_F32 || a->dtype == DT_F64) {
        iter_run(3, ops, a->dtype == DT_F32 ? binary_f32 : binary_f64, &op);
    } else {
        binary_int_ctx c = {op, a->dtype};
        iter_run(3, ops, binary_generic, &c);
    }
    return 0;
}

/* --- where --- */

static void where_run(char **p, const int64_t *s, int64_t n, void *ctx)
{
    size_t es = *(size_t *)ctx;
    for (int64_t i = 0; i < n; i++) {
        const char *src = *(const uint8_t *)(p[1] + i * s[1]) ? p[2] + i * s[2] : p[3] + i * s[3];
        memcpy(p[0] + i * s[0], src, es);
    }
}

int cpu_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b)
{
    size_t es = dtype_size(out->dtype);
    const tensor *ops[4] = {out, cond, a, b};
    iter_run(4, ops, where_run, &es);
    return 0;
}
