/* softmax and log_softmax along a dim. */
#include "internal.h"

static int softmax_backward(ag_node *n, tensor *g, tensor **gin)
{
    tensor *y = ag_saved(n, 0);
    if (!y)
        return -1;
    tensor *gc = tensor_contiguous(g);
    const backend *be = gc ? ops_backend(y, "softmax") : NULL;
    tensor *out = be ? tensor_empty(y->dtype, y->ndim, y->shape, tensor_device(y)) : NULL;
    if (out && be->softmax_backward(out, gc, y, n->iarg[0], n->iarg[1], n->iarg[2],
                                    n->iarg[3]) != 0) {
        tensor_decref(out);
        out = NULL;
    }
    tensor_decref(gc);
    gin[0] = out;
    return ag_check(n, gin);
}

tensor *op_softmax(tensor *a, int dim, bool log)
{
    tensor *up;
    if (autocast_casts(1, &a, DT_BF16)) { /* runs again on the float32 cast */
        if (autocast_all(1, &a, &up, DT_BF16, DT_F32, false) != 0)
            return NULL;
        tensor *y = op_softmax(up, dim, log);
        tensor_decref(up);
        return y;
    }
    const char *name = log ? "log_softmax" : "softmax";
    int d = dim_wrap(dim, a->ndim > 0 ? a->ndim : 1, name);
    if (d < 0 || ops_need_float(name, a, "input") != 0)
        return NULL;
    int64_t outer = 1, n = a->ndim > 0 ? a->shape[d] : 1, inner = 1;
    for (int i = 0; i < d; i++) outer *= a->shape[i];
    for (int i = d + 1; i < a->ndim; i++) inner *= a->shape[i];
    tensor *c = tensor_contiguous(a);
    const backend *be = c ? ops_backend(a, name) : NULL;
    tensor *out = be ? tensor_empty(a->dtype, a->ndim, a->shape, tensor_device(a)) : NULL;
    int rc = out ? be->softmax(out, c, outer, n, inner, log) : -1;
    tensor_decref(c);
    if (rc == 0 && ag_needs(1, &a)) {
        ag_node *node = ag_node_new(name, softmax_backward, 1, &a);
        rc = node ? ag_save(node, out) : -1;
        if (rc == 0) {
            node->iarg[0] = outer;
            node->iarg[1] = n;
            node->iarg[2] = inner;
            node->iarg[3] = log;
            ag_attach(out, node);
        } else {
            ag_node_decref(node);
        }
    }
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}
