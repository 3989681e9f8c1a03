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

tensor *c_to_bf16(tensor *r)
{
    if (!r || r->dtype != DT_F32)
        return r;
    tensor *out = op_to_dtype(r, DT_BF16);
    tensor_decref(r);
    return out;
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
    return err_set("%s: %s must be float32, float64 or bfloat16, got %s", op, name,
                   dtype_name(t->dtype));
}

const backend *ops_backend(const tensor *t, const char *op)
{
    return dispatch_backend(tensor_device(t), op);
}
