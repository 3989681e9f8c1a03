/* batch_norm: normalisation by batch statistics (training, which also updates
 * the running statistics in place) or by the running statistics (evaluation). */
#include <inttypes.h>

#include "internal.h"

static int bn_backward(ag_node *n, tensor *gy, tensor **gin)
{
    tensor *x = ag_saved(n, 0), *mean = ag_saved(n, 1), *invstd = ag_saved(n, 2);
    tensor *w = n->n_saved > 3 ? ag_saved(n, 3) : NULL;
    if (!x || !mean || !invstd || (n->n_saved > 3 && !w))
        return -1;
    /* the kernel walks gy, x and gx in the same layout: x's */
    tensor *g = tensor_is_channels_last(x) ? tensor_channels_last(gy) : tensor_contiguous(gy);
    const backend *be = g ? ops_backend(x, "batch_norm") : NULL;
    int64_t C = x->shape[1];
    bool wx = ag_wants(n, 0), ww = n->n_next > 1 && ag_wants(n, 1), wb = n->n_next > 2 && ag_wants(n, 2);
    tensor *gx = be && wx ? tensor_empty_like(x, x->dtype) : NULL;
    tensor *gw = be && ww ? tensor_empty(x->dtype, 1, &C, tensor_device(x)) : NULL;
    tensor *gb = be && wb ? tensor_empty(x->dtype, 1, &C, tensor_device(x)) : NULL;
    int rc = be && (gx || !wx) && (gw || !ww) && (gb || !wb)
                 ? be->batch_norm_backward(gx, gw, gb, g, x, w, mean, invstd, n->iarg[0] != 0)
                 : -1;
    tensor_decref(g);
    if (rc != 0) {
        tensor_decref(gx);
        tensor_decref(gw);
        tensor_decref(gb);
        return -1;
    }
    gin[0] = gx;
    if (n->n_next > 1)
        gin[1] = gw;
    if (n->n_next > 2)
        gin[2] = gb;
    return ag_check(n, gin);
}

/* A per-channel tensor argument must be [C] of x's dtype (or absent). */
static int check_channel(const tensor *t, const tensor *x, const char *name)
{
    if (!t)
        return 0;
    char b1[128];
    if (t->ndim != 1 || t->shape[0] != x->shape[1])
        return err_set("batch_norm: %s must have shape [%" PRId64 "], got %s", name, x->shape[1],
                       tensor_shape_str(t, b1, sizeof b1));
    if (t->dtype != x->dtype)
        return err_set("batch_norm: %s is %s but the input is %s", name, dtype_name(t->dtype),
                       dtype_name(x->dtype));
    if (!device_eq(tensor_device(t), tensor_device(x))) {
        char d1[16], d2[16];
        return err_set("batch_norm: %s is on %s but the input is on %s", name,
                       device_str(tensor_device(t), d1), device_str(tensor_device(x), d2));
    }
    return 0;
}

static int bn_check(const tensor *x, const tensor *rm, const tensor *rv, const tensor *w,
                    const tensor *b, bool training)
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
    return 0;
}

tensor *op_batch_norm(tensor *x, tensor *rm, tensor *rv, tensor *w, tensor *b, bool training,
                      double momentum, double eps)
{
    if (bn_check(x, rm, rv, w, b, training) != 0)
        return NULL;
    int64_t C = x->shape[1];
    /* channels-last inputs (from convolutions) stay so; others become contiguous */
    tensor *xc = tensor_is_channels_last(x) ? tensor_incref(x) : tensor_contiguous(x);
    const backend *be = xc ? ops_backend(x, "batch_norm") : NULL;
    tensor *y = be ? tensor_empty_like(xc, x->dtype) : NULL;
    tensor *mean = y ? tensor_empty(x->dtype, 1, &C, tensor_device(x)) : NULL;
    tensor *invstd = mean ? tensor_empty(x->dtype, 1, &C, tensor_device(x)) : NULL;
    int rc = invstd ? be->batch_norm(y, mean, invstd, xc, w, b, rm, rv, training, momentum, eps)
                    : -1;
    if (rc == 0 && training) { /* the running statistics were updated in place */
        if (rm) tensor_bump_version(rm);
        if (rv) tensor_bump_version(rv);
    }
    tensor *in[3] = {x, w, b};
    int nin = b ? 3 : w ? 2 : 1;
    if (rc == 0 && ag_needs(nin, in)) {
        ag_node *n = ag_node_new("batch_norm", bn_backward, nin, in);
        rc = n ? ag_save(n, xc) : -1;
        if (rc == 0) rc = ag_save(n, mean);
        if (rc == 0) rc = ag_save(n, invstd);
        if (rc == 0 && w) rc = ag_save(n, w);
        if (rc == 0) {
            n->iarg[0] = training;
            ag_attach(y, n);
        } else {
            ag_node_decref(n);
        }
    }
    tensor_decref(xc);
    tensor_decref(mean);
    tensor_decref(invstd);
    if (rc != 0) {
        tensor_decref(y);
        return NULL;
    }
    return y;
}
