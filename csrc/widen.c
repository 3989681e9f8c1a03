/* bfloat16 for every kernel: the table that dispatch_backend hands to the ops.
 *
 * Each entry calls the device's own kernel. When a bfloat16 tensor is among its
 * arguments and the device has no bfloat16 kernel for it (backend.bf16 lists
 * those it has), the kernel runs on float32 copies instead: each bfloat16 tensor
 * it reads is widened (exactly), each it writes is rounded back afterwards (to
 * nearest, ties to even). That is what a bfloat16 kernel computing in float32
 * does, one rounding per result, so a native kernel added later changes speed,
 * not values (reduction orders aside).
 *
 * A copy covers the tensor's whole span of storage, from its first element to
 * its last, with the same strides: kernels that address a storage through
 * strides of their own (gemm's leading dimensions) read the same elements. An
 * input with gaps (a column of a matrix) is copied densely instead, but for gemm:
 * its span can be far larger than its elements. (Such an input reaches only the
 * kernels that walk each operand by its own strides; those that want the inputs
 * laid out like the output get dense ones, which keep their layout.) */
#include "dispatch.h"

#include "error.h"

/* How a kernel uses a tensor argument. */
typedef enum {
    USE_IN,    /* reads it */
    USE_OUT,   /* writes all of it, reads none */
    USE_INOUT, /* reads it and writes (some of) it */
} use;

#define WIDEN_MAX 10

/* The float32 copies made for one kernel call. */
typedef struct {
    const backend *be; /* the device's own table */
    int n;
    tensor *orig[WIDEN_MAX];
    tensor *wide[WIDEN_MAX];
    use how[WIDEN_MAX];
    bool keep_layout; /* the kernel addresses its inputs by strides of its own */
    bool failed;
} widening;

static bool is_bf16(const tensor *t)
{
    return t && t->dtype == DT_BF16;
}

static const backend *own_table(const tensor *t)
{
    return dispatch_device_table(tensor_device(t), "bfloat16");
}

/* The elements from t's storage offset to its last element, as a 1-D view
 * (strides are never negative). */
static int64_t span_of(const tensor *t)
{
    int64_t last = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0)
            return 0;
        last += (t->shape[i] - 1) * t->stride[i];
    }
    return last + 1;
}

static tensor *flat_span(const tensor *t, int64_t n)
{
    const int64_t one = 1;
    return tensor_as_strided(t, 1, &n, &one, t->offset);
}

/* t as the kernel should get it: t itself, or its float32 copy (laid out alike). */
static tensor *widen(widening *w, const tensor *t, use how)
{
    if (!is_bf16(t) || w->failed)
        return (tensor *)t;
    if (w->n == WIDEN_MAX) {
        err_set("bfloat16: too many tensor arguments to widen");
        w->failed = true;
        return NULL;
    }
    int64_t n = span_of(t);
    tensor *store, *wide;
    int rc;
    if (how == USE_IN && !w->keep_layout && n > tensor_numel(t) && !tensor_is_dense(t)) {
        store = NULL; /* (gaps: a dense copy of the elements alone) */
        wide = tensor_empty(DT_F32, t->ndim, t->shape, tensor_device(t));
        rc = wide ? w->be->copy(wide, t) : -1;
    } else {
        store = tensor_empty(DT_F32, 1, &n, tensor_device(t));
        wide = store ? tensor_as_strided(store, t->ndim, t->shape, t->stride, 0) : NULL;
        rc = wide ? 0 : -1;
    }
    if (rc == 0 && store && how != USE_OUT) {
        tensor *src = flat_span(t, n);
        rc = src ? w->be->copy(store, src) : -1;
        tensor_decref(src);
    }
    tensor_decref(store);
    if (rc != 0) {
        tensor_decref(wide);
        w->failed = true;
        return NULL;
    }
    w->orig[w->n] = (tensor *)t;
    w->wide[w->n] = wide;
    w->how[w->n++] = how;
    return wide;
}

/* After the kernel (rc its result): round what it wrote back into the bfloat16
 * tensors, and free the copies. A written span goes back whole (the elements
 * the kernel left round-trip exactly); a USE_OUT tensor only its elements. */
static int narrow(widening *w, int rc)
{
    if (w->failed)
        rc = -1;
    for (int i = 0; i < w->n; i++) {
        if (rc == 0 && w->how[i] == USE_OUT) {
            rc = w->be->copy(w->orig[i], w->wide[i]);
        } else if (rc == 0 && w->how[i] == USE_INOUT) {
            int64_t n = span_of(w->orig[i]);
            tensor *dst = flat_span(w->orig[i], n), *src = flat_span(w->wide[i], n);
            rc = dst && src ? w->be->copy(dst, src) : -1;
            tensor_decref(dst);
            tensor_decref(src);
        }
        tensor_decref(w->wide[i]);
    }
    return rc;
}

static bool any_bf16(int n, const tensor *const *ts)
{
    for (int i = 0; i < n; i++)
        if (is_bf16(ts[i]))
            return true;
    return false;
}

/* The kernels every backend runs on bfloat16 itself (dispatch.h): straight to the
 * device's own. */
#define PASS(entry, first, params, args)                                                   \
    static int w_##entry params                                                            \
    {                                                                                      \
        const backend *be = own_table(first);                                              \
        return be ? be->entry args : -1;                                                   \
    }
PASS(copy, dst, (tensor *dst, const tensor *src), (dst, src))
PASS(fill, t, (tensor *t, double v), (t, v))
PASS(gather, out, (tensor *out, const tensor *a, const tensor *idx, int64_t outer, int64_t na,
                   int64_t m, int64_t inner), (out, a, idx, outer, na, m, inner))
PASS(index_select, out, (tensor *out, const tensor *a, const tensor *idx, int64_t outer,
                         int64_t na, int64_t m, int64_t inner), (out, a, idx, outer, na, m, inner))
PASS(uniform, out, (tensor *out, uint64_t seed, uint64_t offset, double lo, double hi),
     (out, seed, offset, lo, hi))
PASS(normal, out, (tensor *out, uint64_t seed, uint64_t offset, double mean, double std),
     (out, seed, offset, mean, std))

/* The body shared by the entries: `first` picks the device; when no listed tensor
 * is bfloat16, or the device has a bfloat16 kernel for entry, that kernel runs on
 * the tensors as given; else the entry widens its tensors with W(...), calls the
 * kernel on the copies and narrows the results back. */
#define DEVICE_TABLE(first)                                                                \
    widening w = {.be = own_table(first)};                                                 \
    if (!w.be)                                                                             \
        return -1
#define DIRECT(entry, list, args)                                                          \
    do {                                                                                   \
        const tensor *ts_[] = {UNPAREN list};                                              \
        if (!any_bf16((int)(sizeof ts_ / sizeof ts_[0]), ts_))                             \
            return w.be->entry args;                                                       \
        if (w.be->bf16 && w.be->bf16->entry)                                               \
            return w.be->bf16->entry args;                                                 \
    } while (0)
#define UNPAREN(...) __VA_ARGS__
#define W(t, how) widen(&w, (t), (how))

static int w_unary(unary_op op, tensor *out, const tensor *a, double p0, double p1)
{
    DEVICE_TABLE(out);
    DIRECT(unary, (out, a), (op, out, a, p0, p1));
    tensor *o = W(out, USE_OUT), *x = W(a, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->unary(op, o, x, p0, p1));
}

static int w_activation_backward(unary_op op, tensor *gin, const tensor *gout, const tensor *y)
{
    DEVICE_TABLE(gin);
    DIRECT(activation_backward, (gin, gout, y), (op, gin, gout, y));
    tensor *gi = W(gin, USE_OUT), *go = W(gout, USE_IN), *yy = W(y, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->activation_backward(op, gi, go, yy));
}

static int w_binary(binary_op op, tensor *out, const tensor *a, const tensor *b)
{
    DEVICE_TABLE(out);
    DIRECT(binary, (out, a, b), (op, out, a, b));
    tensor *o = W(out, USE_OUT), *x = W(a, USE_IN), *y = W(b, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->binary(op, o, x, y));
}

static int w_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b)
{
    DEVICE_TABLE(out);
    DIRECT(where, (out, a, b), (out, cond, a, b));
    tensor *o = W(out, USE_OUT), *x = W(a, USE_IN), *y = W(b, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->where(o, cond, x, y));
}

static int w_reduce(reduce_op op, tensor *out, tensor *idx, const tensor *a, int64_t outer,
                    int64_t n, int64_t inner, double p0)
{
    DEVICE_TABLE(a);
    DIRECT(reduce, (out, a), (op, out, idx, a, outer, n, inner, p0));
    tensor *o = W(out, USE_OUT), *x = W(a, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->reduce(op, o, idx, x, outer, n, inner, p0));
}

static int w_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                  double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
                  int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc)
{
    DEVICE_TABLE(C);
    DIRECT(gemm, (A, B, C),
           (dt, batch, ta, tb, m, n, k, alpha, A, sa, lda, B, sb, ldb, beta, C, sc, ldc));
    w.keep_layout = true;
    tensor *a = W(A, USE_IN), *b = W(B, USE_IN), *c = W(C, USE_INOUT);
    return narrow(&w, w.failed ? -1
                               : w.be->gemm(DT_F32, batch, ta, tb, m, n, k, alpha, a, sa, lda,
                                            b, sb, ldb, beta, c, sc, ldc));
}

static int w_softmax(tensor *out, const tensor *a, int64_t outer, int64_t n, int64_t inner,
                     bool log)
{
    DEVICE_TABLE(out);
    DIRECT(softmax, (out, a), (out, a, outer, n, inner, log));
    tensor *o = W(out, USE_OUT), *x = W(a, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->softmax(o, x, outer, n, inner, log));
}

static int w_softmax_backward(tensor *gin, const tensor *gout, const tensor *y, int64_t outer,
                              int64_t n, int64_t inner, bool log)
{
    DEVICE_TABLE(gin);
    DIRECT(softmax_backward, (gin, gout, y), (gin, gout, y, outer, n, inner, log));
    tensor *gi = W(gin, USE_OUT), *go = W(gout, USE_IN), *yy = W(y, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->softmax_backward(gi, go, yy, outer, n, inner, log));
}

static int w_scatter_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                         int64_t na, int64_t m, int64_t inner)
{
    DEVICE_TABLE(out);
    DIRECT(scatter_add, (out, src), (out, src, idx, outer, na, m, inner));
    tensor *o = W(out, USE_INOUT), *s = W(src, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->scatter_add(o, s, idx, outer, na, m, inner));
}

static int w_index_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                       int64_t na, int64_t m, int64_t inner)
{
    DEVICE_TABLE(out);
    DIRECT(index_add, (out, src), (out, src, idx, outer, na, m, inner));
    tensor *o = W(out, USE_INOUT), *s = W(src, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->index_add(o, s, idx, outer, na, m, inner));
}

/* The workspace is the widened kernel's, and its backward runs widened too. */
static int w_max_pool2d(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p)
{
    DEVICE_TABLE(x);
    DIRECT(max_pool2d, (out, x), (out, ws, x, p));
    tensor *o = W(out, USE_OUT), *xx = W(x, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->max_pool2d(o, ws, xx, p));
}

static int w_max_pool2d_backward(tensor *gin, const tensor *gout, const tensor *ws,
                                 const pool2d_params *p)
{
    DEVICE_TABLE(gin);
    DIRECT(max_pool2d_backward, (gin, gout), (gin, gout, ws, p));
    tensor *gi = W(gin, USE_OUT), *go = W(gout, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->max_pool2d_backward(gi, go, ws, p));
}

static int w_avg_pool2d(tensor *out, const tensor *x, const pool2d_params *p)
{
    DEVICE_TABLE(x);
    DIRECT(avg_pool2d, (out, x), (out, x, p));
    tensor *o = W(out, USE_OUT), *xx = W(x, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->avg_pool2d(o, xx, p));
}

static int w_avg_pool2d_backward(tensor *gin, const tensor *gout, const pool2d_params *p)
{
    DEVICE_TABLE(gin);
    DIRECT(avg_pool2d_backward, (gin, gout), (gin, gout, p));
    tensor *gi = W(gin, USE_OUT), *go = W(gout, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->avg_pool2d_backward(gi, go, p));
}

static int w_adaptive_avg_pool2d(tensor *out, const tensor *x)
{
    DEVICE_TABLE(x);
    DIRECT(adaptive_avg_pool2d, (out, x), (out, x));
    tensor *o = W(out, USE_OUT), *xx = W(x, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->adaptive_avg_pool2d(o, xx));
}

static int w_adaptive_avg_pool2d_backward(tensor *gin, const tensor *gout)
{
    DEVICE_TABLE(gin);
    DIRECT(adaptive_avg_pool2d_backward, (gin, gout), (gin, gout));
    tensor *gi = W(gin, USE_OUT), *go = W(gout, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->adaptive_avg_pool2d_backward(gi, go));
}

static int w_interpolate2d(tensor *out, const tensor *x, const resize_params *p)
{
    DEVICE_TABLE(x);
    DIRECT(interpolate2d, (out, x), (out, x, p));
    tensor *o = W(out, USE_OUT), *xx = W(x, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->interpolate2d(o, xx, p));
}

static int w_interpolate2d_backward(tensor *gin, const tensor *gout, const resize_params *p)
{
    DEVICE_TABLE(gin);
    DIRECT(interpolate2d_backward, (gin, gout), (gin, gout, p));
    tensor *gi = W(gin, USE_OUT), *go = W(gout, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->interpolate2d_backward(gi, go, p));
}

static int w_conv2d(tensor *y, const tensor *x, const tensor *wt, const tensor *b,
                    const conv2d_params *p)
{
    DEVICE_TABLE(x);
    DIRECT(conv2d, (y, x, wt, b), (y, x, wt, b, p));
    tensor *yy = W(y, USE_OUT), *xx = W(x, USE_IN), *ww = W(wt, USE_IN), *bb = W(b, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->conv2d(yy, xx, ww, bb, p));
}

static int w_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *wt,
                                  const conv2d_params *p)
{
    DEVICE_TABLE(gy);
    DIRECT(conv2d_backward_data, (gx, gy, wt), (gx, gy, wt, p));
    tensor *gxx = W(gx, USE_OUT), *gyy = W(gy, USE_IN), *ww = W(wt, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->conv2d_backward_data(gxx, gyy, ww, p));
}

static int w_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                    const conv2d_params *p)
{
    DEVICE_TABLE(gy);
    DIRECT(conv2d_backward_weight, (gw, gb, x, gy), (gw, gb, x, gy, p));
    tensor *gww = W(gw, USE_OUT), *gbb = W(gb, USE_OUT), *xx = W(x, USE_IN),
           *gyy = W(gy, USE_IN);
    return narrow(&w, w.failed ? -1 : w.be->conv2d_backward_weight(gww, gbb, xx, gyy, p));
}

static int w_batch_norm(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                        const tensor *wt, const tensor *b, tensor *running_mean,
                        tensor *running_var, bool training, double momentum, double eps,
                        const bn_epilogue *ep)
{
    DEVICE_TABLE(x);
    const tensor *res = ep ? ep->residual : NULL;
    DIRECT(batch_norm, (y, save_mean, save_invstd, x, wt, b, running_mean, running_var, res),
           (y, save_mean, save_invstd, x, wt, b, running_mean, running_var, training, momentum,
            eps, ep));
    tensor *yy = W(y, USE_OUT), *sm = W(save_mean, USE_OUT), *si = W(save_invstd, USE_OUT),
           *xx = W(x, USE_IN), *ww = W(wt, USE_IN), *bb = W(b, USE_IN),
           *rm = W(running_mean, USE_INOUT), *rv = W(running_var, USE_INOUT);
    bn_epilogue e = {res ? W(res, USE_IN) : NULL, ep && ep->relu};
    return narrow(&w, w.failed ? -1
                               : w.be->batch_norm(yy, sm, si, xx, ww, bb, rm, rv, training,
                                                  momentum, eps, ep ? &e : NULL));
}

static int w_batch_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                                 const tensor *x, const tensor *wt, const tensor *mean,
                                 const tensor *invstd, bool training, const tensor *relu_out,
                                 tensor *g_residual)
{
    DEVICE_TABLE(gy);
    DIRECT(batch_norm_backward, (gx, gw, gb, gy, x, wt, mean, invstd, relu_out, g_residual),
           (gx, gw, gb, gy, x, wt, mean, invstd, training, relu_out, g_residual));
    tensor *gxx = W(gx, USE_OUT), *gww = W(gw, USE_OUT), *gbb = W(gb, USE_OUT),
           *gyy = W(gy, USE_IN), *xx = W(x, USE_IN), *ww = W(wt, USE_IN),
           *mm = W(mean, USE_IN), *is = W(invstd, USE_IN), *ro = W(relu_out, USE_IN),
           *gr = W(g_residual, USE_OUT);
    return narrow(&w, w.failed ? -1
                               : w.be->batch_norm_backward(gxx, gww, gbb, gyy, xx, ww, mm, is,
                                                           training, ro, gr));
}

const backend widening_backend = {
    .name = "widening",
    .copy = w_copy,
    .fill = w_fill,
    .unary = w_unary,
    .activation_backward = w_activation_backward,
    .binary = w_binary,
    .where = w_where,
    .reduce = w_reduce,
    .gemm = w_gemm,
    .softmax = w_softmax,
    .softmax_backward = w_softmax_backward,
    .gather = w_gather,
    .scatter_add = w_scatter_add,
    .index_select = w_index_select,
    .index_add = w_index_add,
    .uniform = w_uniform,
    .normal = w_normal,
    .max_pool2d = w_max_pool2d,
    .max_pool2d_backward = w_max_pool2d_backward,
    .avg_pool2d = w_avg_pool2d,
    .avg_pool2d_backward = w_avg_pool2d_backward,
    .adaptive_avg_pool2d = w_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = w_adaptive_avg_pool2d_backward,
    .interpolate2d = w_interpolate2d,
    .interpolate2d_backward = w_interpolate2d_backward,
    .conv2d = w_conv2d,
    .conv2d_backward_data = w_conv2d_backward_data,
    .conv2d_backward_weight = w_conv2d_backward_weight,
    .batch_norm = w_batch_norm,
    .batch_norm_backward = w_batch_norm_backward,
};
