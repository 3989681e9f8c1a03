/* 2-D pooling: max_pool2d, avg_pool2d and adaptive_avg_pool2d over [N,C,H,W], with
 * PyTorch's argument checks, output sizes (ceil_mode included) and gradients. */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

/* --- shared checks --- */

/* Fail unless x is a float [N,C,H,W] tensor with non-empty planes. */
static int check_input(const tensor *x, const char *op)
{
    char b[128];
    if (x->ndim != 4)
        return err_set("%s: expected a 4-D input [N,C,H,W], got %s", op,
                       tensor_shape_str(x, b, sizeof b));
    if (x->shape[1] == 0 || x->shape[2] == 0 || x->shape[3] == 0)
        return err_set("%s: expected non-empty channels and planes, got %s", op,
                       tensor_shape_str(x, b, sizeof b));
    return ops_need_float(op, x, "input");
}

/* The backend of t, if it has the kernel; else NULL with the error set. */
static const backend *backend_for(const tensor *t, bool (*has)(const backend *), const char *op)
{
    const backend *be = ops_backend(t, op);
    if (be && !has(be)) {
        char d[16];
        err_set("%s: not implemented on %s", op, device_str(tensor_device(t), d));
        return NULL;
    }
    return be;
}

/* Does a backend have the forward and backward kernels of each pooling? */
static bool has_max(const backend *be) { return be->max_pool2d && be->max_pool2d_backward; }
static bool has_avg(const backend *be) { return be->avg_pool2d && be->avg_pool2d_backward; }
static bool has_adaptive(const backend *be)
{
    return be->adaptive_avg_pool2d && be->adaptive_avg_pool2d_backward;
}

/* "3" for a square pair, "3x2" otherwise (for messages). */
static const char *pair_str(const int64_t *v, char *buf, size_t n)
{
    if (v[0] == v[1])
        snprintf(buf, n, "%" PRId64, v[0]);
    else
        snprintf(buf, n, "%" PRId64 "x%" PRId64, v[0], v[1]);
    return buf;
}

/* --- window geometry --- */

/* Floor division for a positive divisor (PyTorch's div_rtn). */
static int64_t div_floor(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* PyTorch's pooling output size along one axis; with ceil_mode the last window must
 * start inside the input or its left padding. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d,
                             bool ceil_mode)
{
    int64_t span = in + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
    int64_t out = div_floor(span, s) + 1;
    if (ceil_mode && (out - 1) * s >= in + pad)
        out--;
    return out;
}

/* The end (bottom/right) padding that makes `out` windows: pad itself unless
 * ceil_mode keeps a last window that overhangs it. */
static int64_t pool_pad_end(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d,
                            int64_t out)
{
    int64_t need = (out - 1) * s + d * (k - 1) + 1 - in - pad;
    return need > pad ? need : pad;
}

/* The kernel's view of a pooling from the user's arguments and the sizes. */
static pool2d_params params_of(const pool2d_args *a, int64_t in_h, int64_t in_w, int64_t out_h,
                               int64_t out_w)
{
    pool2d_params p = {
        .kh = a->kernel[0], .kw = a->kernel[1], .sh = a->stride[0], .sw = a->stride[1],
        .dh = a->dilation[0], .dw = a->dilation[1],
        .pad_t = a->padding[0], .pad_l = a->padding[1],
        .in_h = in_h, .in_w = in_w, .out_h = out_h, .out_w = out_w,
        .count_include_pad = a->count_include_pad,
    };
    p.pad_b = pool_pad_end(in_h, p.kh, p.sh, p.pad_t, p.dh, out_h);
    p.pad_r = pool_pad_end(in_w, p.kw, p.sw, p.pad_l, p.dw, out_w);
    return p;
}

/* Check the arguments as PyTorch does and compute the output size into p. */
static int make_params(pool2d_params *p, const pool2d_args *a, const tensor *x, const char *op)
{
    if (check_input(x, op) != 0)
        return -1;
    char k[48], s[48], pd[48], d[48];
    pair_str(a->kernel, k, sizeof k);
    if (a->kernel[0] <= 0 || a->kernel[1] <= 0)
        return err_set("%s: kernel_size must be positive, got %s", op, k);
    if (a->stride[0] <= 0 || a->stride[1] <= 0)
        return err_set("%s: stride must be positive, got %s", op,
                       pair_str(a->stride, s, sizeof s));
    if (a->dilation[0] <= 0 || a->dilation[1] <= 0)
        return err_set("%s: dilation must be positive, got %s", op,
                       pair_str(a->dilation, d, sizeof d));
    if (a->padding[0] < 0 || a->padding[1] < 0 || a->padding[0] > a->kernel[0] / 2 ||
        a->padding[1] > a->kernel[1] / 2)
        return err_set("%s: padding must be between 0 and half the kernel size, got padding "
                       "%s with kernel %s", op, pair_str(a->padding, pd, sizeof pd), k);
    int64_t h = x->shape[2], w = x->shape[3];
    int64_t oh = pool_out_size(h, a->kernel[0], a->stride[0], a->padding[0], a->dilation[0],
                               a->ceil_mode);
    int64_t ow = pool_out_size(w, a->kernel[1], a->stride[1], a->padding[1], a->dilation[1],
                               a->ceil_mode);
    if (oh <= 0 || ow <= 0) {
        int64_t o[2] = {oh > 0 ? oh : 0, ow > 0 ? ow : 0};
        return err_set("%s: output size would be %s for input %" PRId64 "x%" PRId64
                       " with kernel %s", op, pair_str(o, s, sizeof s), h, w, k);
    }
    *p = params_of(a, h, w, oh, ow);
    return 0;
}

/* --- layouts ---
 * Channels-last float32 inputs (convolutions' outputs) stay channels-last: their
 * output and input gradient too, which oneDNN's kernels read and write directly.
 * Anything else becomes contiguous. */

static bool keeps_channels_last(const tensor *x)
{
    return (x->dtype == DT_F32 || x->dtype == DT_BF16) && !tensor_is_contiguous(x) &&
           tensor_is_channels_last(x);
}

/* x itself when it keeps its layout, else a contiguous copy. */
static tensor *as_pool_layout(tensor *x)
{
    return keeps_channels_last(x) ? tensor_incref(x) : tensor_contiguous(x);
}

/* An uninitialised [N,C,H,W] tensor, channels-last or contiguous. */
static tensor *empty_in_layout(dtype_t dt, const int64_t *shape, device dev, bool channels_last)
{
    return channels_last ? tensor_empty_channels_last(dt, shape, dev) : tensor_empty(dt, 4, shape, dev);
}

/* --- the autograd record: the user's arguments in the node --- */

/* iarg[0..7] = kernel, stride, padding, dilation; iarg is full, so
 * count_include_pad (0 or 1) goes in darg[0] (and record puts the layout in
 * darg[1]). ceil_mode is not needed: backward knows the output size from its
 * gradient. */
static void save_args(ag_node *n, const pool2d_args *a)
{
    for (int i = 0; i < 2; i++) {
        n->iarg[i] = a->kernel[i];
        n->iarg[2 + i] = a->stride[i];
        n->iarg[4 + i] = a->padding[i];
        n->iarg[6 + i] = a->dilation[i];
    }
    n->darg[0] = a->count_include_pad;
}

/* The forward's params again, from the node and the gradient of its output. */
static pool2d_params load_params(const ag_node *n, const tensor *gout)
{
    pool2d_args a = {.count_include_pad = n->darg[0] != 0};
    for (int i = 0; i < 2; i++) {
        a.kernel[i] = n->iarg[i];
        a.stride[i] = n->iarg[2 + i];
        a.padding[i] = n->iarg[4 + i];
        a.dilation[i] = n->iarg[6 + i];
    }
    const int64_t *in = n->next[0].shape;
    return params_of(&a, in[2], in[3], gout->shape[2], gout->shape[3]);
}

/* The gradient of the input, in the forward's layout, written by run (gout put
 * in that layout first); an empty input needs no kernel. */
static tensor *backward_with(ag_node *n, tensor *g,
                             int (*run)(const backend *, tensor *, const tensor *, ag_node *),
                             const char *op)
{
    const ag_edge *e = &n->next[0];
    bool cl = n->darg[1] != 0;
    tensor *gc = cl ? tensor_channels_last(g) : tensor_contiguous(g);
    const backend *be = gc ? ops_backend(g, op) : NULL;
    tensor *gin = be ? empty_in_layout(g->dtype, e->shape, tensor_device(g), cl) : NULL;
    if (gin && tensor_numel(gin) > 0 && run(be, gin, gc, n) != 0) {
        tensor_decref(gin);
        gin = NULL;
    }
    tensor_decref(gc);
    return gin;
}

/* Record node `name` as the producer of out (saving ws when given); xc is the
 * input as the kernel saw it (its layout is the backward's). */
static int record(tensor *out, tensor *x, const tensor *xc, const char *name, ag_backward_fn fn,
                  const pool2d_args *a, tensor *ws)
{
    ag_node *node = ag_node_new(name, fn, 1, &x);
    int rc = node ? 0 : -1;
    if (rc == 0 && ws)
        rc = ag_save(node, ws);
    if (rc != 0) {
        ag_node_decref(node);
        return -1;
    }
    if (a)
        save_args(node, a);
    node->darg[1] = !tensor_is_contiguous(xc);
    ag_attach(out, node);
    return 0;
}

/* The output [N,C,oh,ow] in the layout of xc (the input as the kernel sees it). */
static tensor *pool_output(const tensor *xc, int64_t oh, int64_t ow)
{
    int64_t shape[4] = {xc->shape[0], xc->shape[1], oh, ow};
    return empty_in_layout(xc->dtype, shape, tensor_device(xc), !tensor_is_contiguous(xc));
}

/* --- max_pool2d --- */

/* The backward kernel calls, given the backend, gin, contiguous gout and node. */
static int max_run_backward(const backend *be, tensor *gin, const tensor *gc, ag_node *n)
{
    tensor *ws = ag_saved(n, 0);
    pool2d_params p = load_params(n, gc);
    return ws ? be->max_pool2d_backward(gin, gc, ws, &p) : -1;
}

/* Autograd: the gradient of the input, through the saved workspace. */
static int max_pool2d_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = backward_with(n, g, max_run_backward, "max_pool2d");
    return gin[0] ? 0 : -1;
}

tensor *op_max_pool2d(tensor *x, const pool2d_args *a)
{
    pool2d_params p;
    if (make_params(&p, a, x, "max_pool2d") != 0)
        return NULL;
    const backend *be = backend_for(x, has_max, "max_pool2d");
    tensor *xc = be ? as_pool_layout(x) : NULL;
    tensor *out = xc ? pool_output(xc, p.out_h, p.out_w) : NULL;
    tensor *ws = NULL;
    int rc = out ? 0 : -1;
    if (rc == 0 && tensor_numel(out) > 0)
        rc = be->max_pool2d(out, &ws, xc, &p);
    if (rc == 0 && ag_needs(1, &x))
        rc = record(out, x, xc, "max_pool2d", max_pool2d_backward, a, ws);
    tensor_decref(xc);
    tensor_decref(ws);
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}

/* --- avg_pool2d --- */

static int avg_run_backward(const backend *be, tensor *gin, const tensor *gc, ag_node *n)
{
    pool2d_params p = load_params(n, gc);
    return be->avg_pool2d_backward(gin, gc, &p);
}

/* Autograd: each output gradient spread over its window. */
static int avg_pool2d_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = backward_with(n, g, avg_run_backward, "avg_pool2d");
    return gin[0] ? 0 : -1;
}

tensor *op_avg_pool2d(tensor *x, const pool2d_args *a)
{
    if (a->dilation[0] != 1 || a->dilation[1] != 1) {
        err_set("avg_pool2d: dilation is not supported");
        return NULL;
    }
    pool2d_params p;
    if (make_params(&p, a, x, "avg_pool2d") != 0)
        return NULL;
    const backend *be = backend_for(x, has_avg, "avg_pool2d");
    tensor *xc = be ? as_pool_layout(x) : NULL;
    tensor *out = xc ? pool_output(xc, p.out_h, p.out_w) : NULL;
    int rc = out ? 0 : -1;
    if (rc == 0 && tensor_numel(out) > 0)
        rc = be->avg_pool2d(out, xc, &p);
    if (rc == 0 && ag_needs(1, &x))
        rc = record(out, x, xc, "avg_pool2d", avg_pool2d_backward, a, NULL);
    tensor_decref(xc);
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}

/* --- adaptive_avg_pool2d --- */

static int adaptive_run_backward(const backend *be, tensor *gin, const tensor *gc, ag_node *n)
{
    (void)n;
    return be->adaptive_avg_pool2d_backward(gin, gc);
}

/* Autograd: each output gradient spread over its adaptive window. */
static int adaptive_avg_pool2d_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = backward_with(n, g, adaptive_run_backward, "adaptive_avg_pool2d");
    return gin[0] ? 0 : -1;
}

tensor *op_adaptive_avg_pool2d(tensor *x, int64_t oh, int64_t ow)
{
    const char *op = "adaptive_avg_pool2d";
    if (check_input(x, op) != 0)
        return NULL;
    if (oh < 0 || ow < 0) {
        err_set("%s: output_size must be non-negative, got %" PRId64 "x%" PRId64, op, oh, ow);
        return NULL;
    }
    const backend *be = backend_for(x, has_adaptive, op);
    tensor *xc = be ? as_pool_layout(x) : NULL;
    tensor *out = xc ? pool_output(xc, oh, ow) : NULL;
    int rc = out ? 0 : -1;
    if (rc == 0 && tensor_numel(out) > 0)
        rc = be->adaptive_avg_pool2d(out, xc);
    if (rc == 0 && ag_needs(1, &x))
        rc = record(out, x, xc, op, adaptive_avg_pool2d_backward, NULL, NULL);
    tensor_decref(xc);
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}
