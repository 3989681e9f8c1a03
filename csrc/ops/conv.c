/* conv2d: checks, output shape, and its gradient. */
#include <inttypes.h>

#include "internal.h"

/* The layout policy: float32 activations are channels-last (oneDNN's fastest
 * kernels and cuDNN's tensor-core ones read and write it without reordering),
 * which the elementwise, normalisation and pooling ops preserve, so a network
 * stays channels-last from its first convolution on; float64 (the loops of the
 * gradient checks) stays contiguous. An input already in either layout is used
 * as it is. ops_set_channels_last(false) makes float32 outputs contiguous too. */
static _Atomic bool channels_last = true;

void ops_set_channels_last(bool on)
{
    channels_last = on;
}

bool ops_get_channels_last(void)
{
    return channels_last;
}

static bool wants_channels_last(const tensor *x)
{
    return (x->dtype == DT_F32 || x->dtype == DT_BF16) && channels_last;
}

/* t channels-last: itself, or a copy. */
static tensor *as_channels_last(tensor *t)
{
    return tensor_is_channels_last(t) ? tensor_incref(t) : tensor_copy_channels_last(t, t->dtype);
}

/* An activation as the convolution takes it: contiguous or channels-last as it
 * is; else (a broadcast gradient, a strided view) copied into the layout the
 * policy wants. */
static tensor *as_conv_layout(tensor *t)
{
    if (!wants_channels_last(t) || tensor_is_contiguous(t))
        return tensor_contiguous(t);
    return as_channels_last(t);
}

/* Channels-last and not also contiguous (a size-1 C or KH x KW makes it both). */
static bool strictly_channels_last(const tensor *t)
{
    return tensor_is_channels_last(t) && !tensor_is_contiguous(t);
}

/* Does x's device take channels-last weights, and run bfloat16 so (its
 * backend's conv_channels_last)? */
static bool device_channels_last(const tensor *x)
{
    const backend *dev = dispatch_device_table(tensor_device(x), "conv2d");
    return dev && dev->conv_channels_last;
}

/* The weights as x's device takes them: contiguous, or as they are when
 * channels-last and the device takes that too. */
static tensor *as_weight_layout(tensor *w, const tensor *x)
{
    if (strictly_channels_last(w) && device_channels_last(x))
        return tensor_incref(w);
    return tensor_contiguous(w);
}

/* Saved: x, w, and y when the forward applied a relu (its positive entries pass
 * the gradient, as the relu op's backward). */
static int conv_backward(ag_node *n, tensor *gy, tensor **gin)
{
    bool relu = n->iarg[7] != 0;
    tensor *x = ag_saved(n, 0), *w = ag_saved(n, 1), *y = relu ? ag_saved(n, 2) : NULL;
    if (!x || !w || (relu && !y))
        return -1;
    conv2d_params p = {{n->iarg[0], n->iarg[1]}, {n->iarg[2], n->iarg[3]},
                       {n->iarg[4], n->iarg[5]}, n->iarg[6], false};
    tensor *masked = relu ? c_binary(BIN_MUL, keep(gy), op_unary(UN_STEP, y, 0, 0)) : keep(gy);
    /* (in the forward's layout when that was channels-last: laid out once here,
     * not by each of the two passes) */
    tensor *g = !masked ? NULL
              : strictly_channels_last(x) && wants_channels_last(masked) ? as_channels_last(masked)
                                                                       : as_conv_layout(masked);
    tensor_decref(masked);
    const backend *be = g ? ops_backend(x, "conv2d") : NULL;
    if (!be) {
        tensor_decref(g);
        return -1;
    }
    int rc = 0;
    if (ag_wants(n, 0)) {
        gin[0] = wants_channels_last(x) ? tensor_empty_channels_last(x->dtype, x->shape, tensor_device(x))
                                        : tensor_empty(x->dtype, 4, x->shape, tensor_device(x));
        rc = gin[0] ? be->conv2d_backward_data(gin[0], g, w, &p) : -1;
    }
    bool wb = n->n_next > 2 && ag_wants(n, 2);
    if (rc == 0 && (ag_wants(n, 1) || wb)) {
        /* Both come out of one pass; keep the ones that were asked for. The
         * weights' in their layout (channels-last ones only where the backend
         * took them so). */
        tensor *gw = strictly_channels_last(w)
                         ? tensor_empty_channels_last(w->dtype, w->shape, tensor_device(w))
                         : tensor_empty(w->dtype, w->ndim, w->shape, tensor_device(w));
        tensor *gb = n->n_next > 2 ? tensor_empty(w->dtype, 1, w->shape, tensor_device(w)) : NULL;
        rc = gw && (gb || n->n_next == 2) ? be->conv2d_backward_weight(gw, gb, x, g, &p) : -1;
        if (rc == 0 && ag_wants(n, 1))
            gin[1] = tensor_incref(gw);
        if (rc == 0 && wb)
            gin[2] = tensor_incref(gb);
        tensor_decref(gw);
        tensor_decref(gb);
    }
    tensor_decref(g);
    return rc == 0 ? ag_check(n, gin) : -1;
}

static int conv_check(const tensor *x, const tensor *w, const tensor *b, const conv2d_params *p)
{
    char b1[128], b2[128];
    if (x->ndim != 4)
        return err_set("conv2d: expected a 4-D input [N,C,H,W], got %s",
                       tensor_shape_str(x, b1, sizeof b1));
    if (w->ndim != 4)
        return err_set("conv2d: expected a 4-D weight [OC,C/groups,KH,KW], got %s",
                       tensor_shape_str(w, b1, sizeof b1));
    if (ops_need_float("conv2d", x, "input") != 0)
        return -1;
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return err_set("conv2d: input is %s but weight is %s%s%s", dtype_name(x->dtype),
                       dtype_name(w->dtype), b ? " and bias is " : "", b ? dtype_name(b->dtype) : "");
    tensor *in[3] = {(tensor *)x, (tensor *)w, (tensor *)b};
    if (ops_same_device("conv2d", b ? 3 : 2, in, (const char *const[]){"input", "weight", "bias"}) != 0)
        return -1;
    if (p->groups < 1 || x->shape[1] % p->groups || w->shape[0] % p->groups)
        return err_set("conv2d: groups (%" PRId64 ") must divide the input channels (%" PRId64
                       ") and the output channels (%" PRId64 ")", p->groups, x->shape[1], w->shape[0]);
    if (w->shape[1] * p->groups != x->shape[1])
        return err_set("conv2d: weight %s expects %" PRId64 " input channels, the input %s has %" PRId64,
                       tensor_shape_str(w, b1, sizeof b1), w->shape[1] * p->groups,
                       tensor_shape_str(x, b2, sizeof b2), x->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return err_set("conv2d: bias must have shape [%" PRId64 "], got %s", w->shape[0],
                       tensor_shape_str(b, b1, sizeof b1));
    for (int i = 0; i < 2; i++)
        if (p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
            return err_set("conv2d: stride and dilation must be >= 1 and padding >= 0, got "
                           "stride %" PRId64 ", dilation %" PRId64 ", padding %" PRId64,
                           p->stride[i], p->dilation[i], p->padding[i]);
    return 0;
}

tensor *op_conv2d(tensor *x, tensor *w, tensor *b, const conv2d_params *p)
{
    tensor *in[3] = {x, w, b}, *lo[3];
    if (autocast_casts(3, in, DT_F32)) { /* runs again on the bfloat16 casts */
        /* (cast straight into the layout the device runs them in) */
        if (autocast_all(3, in, lo, DT_F32, DT_BF16, channels_last && device_channels_last(x)) != 0)
            return NULL;
        tensor *y = op_conv2d(lo[0], lo[1], lo[2], p);
        autocast_release(3, lo);
        return y;
    }
    if (conv_check(x, w, b, p) != 0)
        return NULL;
    int64_t out[2];
    for (int i = 0; i < 2; i++) {
        int64_t ext = (w->shape[2 + i] - 1) * p->dilation[i] + 1;
        int64_t span = x->shape[2 + i] + 2 * p->padding[i] - ext;
        out[i] = span < 0 ? 0 : span / p->stride[i] + 1;
        if (out[i] < 1) {
            char b1[128], b2[128];
            err_set("conv2d: input %s is smaller than the kernel %s (after padding)",
                    tensor_shape_str(x, b1, sizeof b1), tensor_shape_str(w, b2, sizeof b2));
            return NULL;
        }
    }
    int64_t shape[4] = {x->shape[0], w->shape[0], out[0], out[1]};
    tensor *xc = as_conv_layout(x), *wc = xc ? as_weight_layout(w, x) : NULL;
    tensor *bc = wc && b ? tensor_contiguous(b) : NULL;
    const backend *be = wc && (bc || !b) ? ops_backend(x, "conv2d") : NULL;
    tensor *y = !be ? NULL
              : wants_channels_last(x) ? tensor_empty_channels_last(x->dtype, shape, tensor_device(x))
                                       : tensor_empty(x->dtype, 4, shape, tensor_device(x));
    int rc = y && x->shape[0] > 0 ? be->conv2d(y, xc, wc, bc, p) : (y ? 0 : -1);
    if (rc == 0 && ag_needs(b ? 3 : 2, in)) {
        ag_node *n = ag_node_new("conv2d", conv_backward, b ? 3 : 2, in);
        rc = n ? ag_save(n, xc) : -1;
        if (rc == 0)
            rc = ag_save(n, wc);
        if (rc == 0 && p->relu)
            rc = ag_save(n, y);
        if (rc == 0) {
            int64_t a[8] = {p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                            p->dilation[0], p->dilation[1], p->groups, p->relu};
            for (int i = 0; i < 8; i++)
                n->iarg[i] = a[i];
            ag_attach(y, n);
        } else {
            ag_node_decref(n);
        }
    }
    tensor_decref(xc);
    tensor_decref(wc);
    tensor_decref(bc);
    if (rc != 0) {
        tensor_decref(y);
        return NULL;
    }
    return y;
}
