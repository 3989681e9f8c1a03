/* The consuming helpers of internal.h and the common argument checks. */
#include "internal.h"

tensor *c_unary(unary_op op, tensor *a, double p0, double p1)
{
    tensor *r = a ? op_unary(op, a, p0, p1) : NULL;
    tensor_decref(a);
    return r;
}

tensor *c_binary(binary_op op, tensor *a, tensor *b)
{
    tensor *r = a && b ? op_binary(op, a, b) : NULL;
    tensor_decref(a);
    tensor_decref(b);
    return r;
}

tensor *c_scalar(binary_op op, tensor *a, double s)
{
    tensor *r = a ? op_binary_scalar(op, a, s, false) : NULL;
    tensor_decref(a);
    return r;
}

tensor *c_where(tensor *cond, tensor *a, tensor *b)
{
    tensor *r = cond && a && b ? op_where(cond, a, b) : NULL;
    tensor_decref(cond);
    tensor_decref(a);
    tensor_decref(b);
    return r;
}

tensor *c_sum_to_input(ag_node *n, int i, tensor *g)
{
    tensor *r = g ? ag_reduce_to_input(n, i, g) : NULL;
    tensor_decref(g);
    return r;
}

int ag_check(ag_node *n, tensor **gin)
{
    for (int i = 0; i < n->n_next; i++)
        if (ag_wants(n, i) && !gin[i])
            return -1;
    return 0;
}

int ops_same_device(const char *op, int n, tensor *const *ts, const char *const *names)
{
    for (int i = 1; i < n; i++) {
        if (!ts[i] || !ts[0])
            continue;
        device d0 = tensor_device(ts[0]), di = tensor_device(ts[i]);
        if (!device_eq(d0, di)) {
            char b0[16], b1[16];
            return err_set("%s: %s is on %s but %s is on %s", op, names[i], device_str(di, b1),
                           names[0], device_str(d0, b0));
        }
    }
    return 0;
}

int ops_need_float(const char *op, const tensor *t, const char *name)
{
    if (dtype_is_float(t->dtype))
        return 0;
    return err_set("%s: %s must be float32 or float64, got %s", op, name, dtype_name(t->dtype));
}

const backend *ops_backend(const tensor *t, const char *op)
{
    return dispatch_backend(tensor_device(t), op);
}

/* The dims of t ordered from the largest stride to the smallest (size-1 dims
 * first, so that they never break the order). */
static void stride_order(const tensor *t, int *order)
{
    for (int i = 0; i < t->ndim; i++)
        order[i] = i;
    for (int i = 1; i < t->ndim; i++) /* insertion sort: at most 8 dims */
        for (int j = i; j > 0; j--) {
            int a = order[j - 1], b = order[j];
            bool swap = t->shape[a] != 1 &&
                        (t->shape[b] == 1 || t->stride[b] > t->stride[a]);
            if (!swap)
                break;
            order[j - 1] = b;
            order[j] = a;
        }
}

bool ops_is_dense(const tensor *t)
{
    int order[TENSOR_MAX_DIMS];
    stride_order(t, order);
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        int d = order[i];
        if (t->shape[d] == 1)
            continue;
        if (t->stride[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

bool ops_is_channels_last(const tensor *t)
{
    if (t->ndim != 4)
        return false;
    const int64_t *s = t->shape, *st = t->stride;
    return (s[1] == 1 || st[1] == 1) && (s[3] == 1 || st[3] == s[1]) &&
           (s[2] == 1 || st[2] == s[1] * s[3]) && (s[0] == 1 || st[0] == s[1] * s[2] * s[3]);
}

tensor *ops_empty_like(const tensor *t, dtype_t dt)
{
    tensor *out = tensor_empty(dt, t->ndim, t->shape, tensor_device(t));
    if (!out || tensor_is_contiguous(t) || !ops_is_dense(t))
        return out;
    int order[TENSOR_MAX_DIMS];
    stride_order(t, order);
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        out->stride[order[i]] = s;
        s *= t->shape[order[i]];
    }
    return out;
}

tensor *ops_empty_channels_last(dtype_t dt, const int64_t *shape, device dev)
{
    tensor *out = tensor_empty(dt, 4, shape, dev);
    if (out) {
        int64_t c = shape[1], h = shape[2], w = shape[3];
        int64_t st[4] = {h * w * c, 1, w * c, c};
        for (int i = 0; i < 4; i++)
            out->stride[i] = st[i];
    }
    return out;
}

tensor *ops_channels_last(tensor *t)
{
    if (ops_is_channels_last(t))
        return tensor_incref(t);
    tensor *out = ops_empty_channels_last(t->dtype, t->shape, tensor_device(t));
    if (out && tensor_copy_into(out, t) != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}
