/* batch_norm: normalisation by batch statistics (training, which also updates
 * the running statistics in place) or by the running statistics (evaluation),
 * with an optional epilogue: + residual, relu (see op_batch_norm). */
#include <inttypes.h>

#include "internal.h"

/* The node's integer arguments. */
enum { BN_TRAINING, BN_HAS_W, BN_RELU };

/* The dtype of the statistics: x's, or float32 for a bfloat16 x (as cuDNN and
 * PyTorch keep them). */
static dtype_t stat_dtype(const tensor *x)
{
    return x->dtype == DT_BF16 ? DT_F32 : x->dtype;
}

/* Inputs x, w, b, residual; saved x, mean, invstd, then w if any, then y if relu
 * (its positive entries pass the gradient, as the relu op's backward, in the
 * kernel's passes). The residual's gradient is gy through the relu, which the
 * kernel writes too. */
static int bn_backward(ag_node *n, tensor *gy, tensor **gin)
{
    tensor *x = ag_saved(n, 0), *mean = ag_saved(n, 1), *invstd = ag_saved(n, 2);
    int next = 3;
    tensor *w = n->iarg[BN_HAS_W] ? ag_saved(n, next++) : NULL;
    tensor *y = n->iarg[BN_RELU] ? ag_saved(n, next++) : NULL;
    if (!x || !mean || !invstd || (n->iarg[BN_HAS_W] && !w) || (n->iarg[BN_RELU] && !y))
        return -1;
    /* the kernel walks gy, x, y, gx and the residual's gradient in x's layout */
    tensor *g = tensor_is_channels_last(x) ? tensor_channels_last(gy) : tensor_contiguous(gy);
    const backend *be = g ? ops_backend(x, "batch_norm") : NULL;
    int64_t C = x->shape[1];
    bool wx = ag_wants(n, 0), ww = n->n_next > 1 && ag_wants(n, 1), wb = n->n_next > 2 && ag_wants(n, 2);
    bool wr = n->n_next > 3 && ag_wants(n, 3);
    tensor *gx = be && wx ? tensor_empty_like(x, x->dtype) : NULL;
    tensor *gw = be && ww ? tensor_empty(stat_dtype(x), 1, &C, tensor_device(x)) : NULL;
    tensor *gb = be && wb ? tensor_empty(stat_dtype(x), 1, &C, tensor_device(x)) : NULL;
    tensor *gr = be && wr ? tensor_empty_like(x, x->dtype) : NULL;
    int rc = be && (gx || !wx) && (gw || !ww) && (gb || !wb) && (gr || !wr)
                 ? be->batch_norm_backward(gx, gw, gb, g, x, w, mean, invstd,
                                           n->iarg[BN_TRAINING] != 0, y, gr)
                 : -1;
    tensor_decref(g);
    if (rc != 0) {
        tensor_decref(gx);
        tensor_decref(gw);
        tensor_decref(gb);
        tensor_decref(gr);
        return -1;
    }
    gin[0] = gx;
    if (n->n_next > 1)
        gin[1] = gw;
    if (n->n_next > 2)
        gin[2] = gb;
    if (n->n_next > 3)
        gin[3] = gr;
    return ag_check(n, gin);
}

/* A per-channel tensor argument must be [C] of the statistics' dtype (or absent). */
static int check_channel(const tensor *t, const tensor *x, const char *name)
{
    if (!t)
        return 0;
    char b1[128];
    if (t->ndim != 1 || t->shape[0] != x->shape[1])
        return err_set("batch_norm: %s must have shape [%" PRId64 "], got %s", name, x->shape[1],
                       tensor_shape_str(t, b1, sizeof b1));
    if (t->dtype != stat_dtype(x))
        return err_set("batch_norm: %s is %s but the input is %s%s", name, dtype_name(t->dtype),
                       dtype_name(x->dtype),
                       x->dtype == DT_BF16 ? " (whose parameters and statistics are float32)" : "");
    if (!device_eq(tensor_device(t), tensor_device(x))) {
        char d1[16], d2[16];
        return err_set("batch_norm: %s is on %s but the input is on %s", name,
                       device_str(tensor_device(t), d1), device_str(tensor_device(x), d2));
    }
    return 0;
}

/* The residual: x's shape, dtype and device. */
static int check_residual(const tensor *r, const tensor *x)
{
    char b1[128], b2[128];
    if (!tensor_same_shape(r, x))
        return err_set("batch_norm: the residual %s is not the input's shape %s",
                       tensor_shape_str(r, b1, sizeof b1), tensor_shape_str(x, b2, sizeof b2));
    if (r->dtype != x->dtype)
        return err_set("batch_norm: the residual is %s but the input is %s",
                       dtype_name(r->dtype), dtype_name(x->dtype));
    if (!device_eq(tensor_device(r), tensor_device(x))) {
        char d1[16], d2[16];
        return err_set("batch_norm: the residual is on %s but the input is on %s",
                       device_str(tensor_device(r), d1), device_str(tensor_device(x), d2));
    }
    return 0;
}

static int bn_check(const tensor *x, const tensor *rm, const tensor *rv, const tensor *w,
                    const tensor *b, bool training, const tensor *res)
{
    char b1[128];
    if (x->ndim < 2)
        return err_set("batch_norm: expected an input [N,C,...] of at least 2 dims, got %s",
                       tensor_shape_str(x, b1, sizeof b1));
    if (ops_need_float("batch_norm", x, "input") != 0 || check_channel(rm, x, "running_mean") != 0 ||
        check_channel(rv, x, "running_var") != 0 || check_channel(w, x, "weight") != 0 ||
        check_channel(b, x, "bias") != 0)
        return -1;
    if (!training && (!rm || !rv))
        return err_set("batch_norm: evaluation mode needs running_mean and running_var");
    if (training && tensor_numel(x) / (x->shape[1] ? x->shape[1] : 1) <= 1)
        return err_set("batch_norm: expected more than 1 value per channel when training, got "
                       "input %s", tensor_shape_str(x, b1, sizeof b1));
    if ((rm && rm->requires_grad) || (rv && rv->requires_grad))
        return err_set("batch_norm: running statistics must not require grad");
    return res ? check_residual(res, x) : 0;
}

/* t in the layout of xc (channels-last or contiguous): t itself when it is. */
static tensor *in_layout_of(tensor *t, const tensor *xc)
{
    return tensor_is_channels_last(xc) && !tensor_is_contiguous(xc) ? tensor_channels_last(t)
                                                                    : tensor_contiguous(t);
}

tensor *op_batch_norm(tensor *x, tensor *rm, tensor *rv, tensor *w, tensor *b, bool training,
                      double momentum, double eps, tensor *residual, bool relu)
{
    if (bn_check(x, rm, rv, w, b, training, residual) != 0)
        return NULL;
    int64_t C = x->shape[1];
    /* channels-last inputs (from convolutions) stay so; others become contiguous */
    tensor *xc = tensor_is_channels_last(x) ? tensor_incref(x) : tensor_contiguous(x);
    tensor *rc_ = xc && residual ? in_layout_of(residual, xc) : NULL;
    const backend *be = xc && (rc_ || !residual) ? ops_backend(x, "batch_norm") : NULL;
    tensor *y = be ? tensor_empty_like(xc, x->dtype) : NULL;
    tensor *mean = y ? tensor_empty(stat_dtype(x), 1, &C, tensor_device(x)) : NULL;
    tensor *invstd = mean ? tensor_empty(stat_dtype(x), 1, &C, tensor_device(x)) : NULL;
    bn_epilogue ep = {rc_, relu};
    int rc = invstd ? be->batch_norm(y, mean, invstd, xc, w, b, rm, rv, training, momentum, eps,
                                     &ep)
                    : -1;
    if (rc == 0 && training) { /* the running statistics were updated in place */
        if (rm) tensor_bump_version(rm);
        if (rv) tensor_bump_version(rv);
    }
    tensor *in[4] = {x, w, b, residual};
    int nin = residual ? 4 : b ? 3 : w ? 2 : 1;
    if (rc == 0 && ag_needs(nin, in)) {
        ag_node *n = ag_node_new("batch_norm", bn_backward, nin, in);
        rc = n ? ag_save(n, xc) : -1;
        if (rc == 0) rc = ag_save(n, mean);
        if (rc == 0) rc = ag_save(n, invstd);
        if (rc == 0 && w) rc = ag_save(n, w);
        if (rc == 0 && relu) rc = ag_save(n, y);
        if (rc == 0) {
            n->iarg[BN_TRAINING] = training;
            n->iarg[BN_HAS_W] = w != NULL;
            n->iarg[BN_RELU] = relu;
            ag_attach(y, n);
        } else {
            ag_node_decref(n);
        }
    }
    tensor_decref(rc_);
    tensor_decref(xc);
    tensor_decref(mean);
    tensor_decref(invstd);
    if (rc != 0) {
        tensor_decref(y);
        return NULL;
    }
    return y;
}
