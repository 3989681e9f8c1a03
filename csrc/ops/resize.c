/* interpolate: resizing [N,C,H,W] by bilinear or nearest sampling, with PyTorch's
 * output sizes and its gradient (a scatter into the input grid). */
#include <inttypes.h>
#include <math.h>

#include "internal.h"

/* The output size and the kernel's parameters from the user's arguments. */
static int resize_plan(const tensor *x, const interpolate_args *a, int64_t *out,
                       resize_params *p)
{
    const char *op = "interpolate";
    *p = (resize_params){.mode = a->mode, .align_corners = a->align_corners};
    if (a->mode != RESIZE_NEAREST && a->mode != RESIZE_BILINEAR)
        return err_set("%s: unknown mode %d", op, (int)a->mode);
    if (a->mode == RESIZE_NEAREST && a->align_corners)
        return err_set("%s: align_corners applies to bilinear mode only", op);
    bool by_size = a->size[0] > 0 || a->size[1] > 0;
    for (int i = 0; i < 2; i++) {
        int64_t in = x->shape[2 + i];
        double sf = a->scale_factor[i];
        if (by_size) {
            out[i] = a->size[i];
        } else if (sf > 0 && isfinite(sf)) {
            out[i] = (int64_t)floor((double)in * sf);
        } else {
            return err_set("%s: give a size or a positive scale_factor", op);
        }
    }
    if (out[0] <= 0 || out[1] <= 0)
        return err_set("%s: output size would be %" PRId64 "x%" PRId64 " for input %" PRId64
                       "x%" PRId64, op, out[0] > 0 ? out[0] : 0, out[1] > 0 ? out[1] : 0,
                       x->shape[2], x->shape[3]);
    if (!by_size && !a->recompute_scale_factor) {
        p->scale_h = a->scale_factor[0];
        p->scale_w = a->scale_factor[1];
    }
    return 0;
}

/* Fail unless x is a float [N,C,H,W] tensor with non-empty planes. */
static int check_input(const tensor *x)
{
    char b[128];
    if (x->ndim != 4)
        return err_set("interpolate: expected a 4-D input [N,C,H,W], got %s",
                       tensor_shape_str(x, b, sizeof b));
    if (x->shape[2] == 0 || x->shape[3] == 0)
        return err_set("interpolate: expected non-empty planes, got %s",
                       tensor_shape_str(x, b, sizeof b));
    return ops_need_float("interpolate", x, "input");
}

/* The backend of t if it can resize; else NULL with the error set. */
static const backend *resize_backend(const tensor *t)
{
    const backend *be = ops_backend(t, "interpolate");
    if (be && !(be->interpolate2d && be->interpolate2d_backward)) {
        char d[16];
        err_set("interpolate: not implemented on %s", device_str(tensor_device(t), d));
        return NULL;
    }
    return be;
}

/* The node keeps the params: iarg[0] mode, iarg[1] align_corners, darg[0..1] the
 * scale factors (0: none). */
static resize_params load_params(const ag_node *n)
{
    return (resize_params){.mode = (resize_mode)n->iarg[0], .align_corners = n->iarg[1] != 0,
                           .scale_h = n->darg[0], .scale_w = n->darg[1]};
}

/* Autograd: scatter the output gradient back into the input grid. */
static int interpolate_backward(ag_node *n, tensor *g, tensor **gin)
{
    const ag_edge *e = &n->next[0];
    resize_params p = load_params(n);
    tensor *gc = tensor_contiguous(g);
    const backend *be = gc ? ops_backend(g, "interpolate") : NULL;
    tensor *out = be ? tensor_empty(g->dtype, e->ndim, e->shape, tensor_device(g)) : NULL;
    if (out && tensor_numel(out) > 0 && be->interpolate2d_backward(out, gc, &p) != 0) {
        tensor_decref(out);
        out = NULL;
    }
    tensor_decref(gc);
    gin[0] = out;
    return out ? 0 : -1;
}

/* Make node "interpolate" the producer of out. */
static int record(tensor *out, tensor *x, const resize_params *p)
{
    ag_node *n = ag_node_new("interpolate", interpolate_backward, 1, &x);
    if (!n)
        return -1;
    n->iarg[0] = p->mode;
    n->iarg[1] = p->align_corners;
    n->darg[0] = p->scale_h;
    n->darg[1] = p->scale_w;
    ag_attach(out, n);
    return 0;
}

tensor *op_interpolate(tensor *x, const interpolate_args *a)
{
    int64_t size[2] = {0, 0};
    resize_params p;
    if (check_input(x) != 0 || resize_plan(x, a, size, &p) != 0)
        return NULL;
    const backend *be = resize_backend(x);
    tensor *xc = be ? tensor_contiguous(x) : NULL;
    int64_t shape[4] = {x->shape[0], x->shape[1], size[0], size[1]};
    tensor *out = xc ? tensor_empty(x->dtype, 4, shape, tensor_device(x)) : NULL;
    int rc = out ? 0 : -1;
    if (rc == 0 && tensor_numel(out) > 0)
        rc = be->interpolate2d(out, xc, &p);
    tensor_decref(xc);
    if (rc == 0 && ag_needs(1, &x))
        rc = record(out, x, &p);
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}
