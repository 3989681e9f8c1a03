/* dropout: a composite of existing ops, so its gradient comes from theirs. The mask
 * is drawn from miles's counter-based generator (op_rand), so miles.manual_seed
 * makes it reproducible on any thread count. */
#include <math.h>

#include "internal.h"

tensor *op_dropout(tensor *x, double p, bool training)
{
    if (!(p >= 0 && p <= 1)) {
        err_set("dropout: probability has to be between 0 and 1, but got %g", p);
        return NULL;
    }
    if (ops_need_float("dropout", x, "input") != 0)
        return NULL;
    if (!training || p == 0)
        return tensor_incref(x);
    if (p == 1) /* x * 0 keeps NaNs and the graph, as PyTorch */
        return op_binary_scalar(BIN_MUL, x, 0, false);
    if (x->dtype == DT_BF16) { /* masked and scaled in float32, rounded once */
        tensor *xf = op_to_dtype(x, DT_F32);
        tensor *y = xf ? op_dropout(xf, p, training) : NULL;
        tensor_decref(xf);
        return c_to_bf16(y);
    }
    /* keep where u >= p, for u uniform in [0, 1): probability 1 - p */
    tensor *u = op_rand(x->ndim, x->shape, x->dtype, tensor_device(x));
    tensor *kept = u ? op_binary_scalar(BIN_GE, u, p, false) : NULL;
    tensor_decref(u);
    tensor *mask = kept ? op_to_dtype(kept, x->dtype) : NULL;
    tensor_decref(kept);
    mask = c_scalar(BIN_MUL, mask, 1.0 / (1.0 - p));
    return c_binary(BIN_MUL, keep(x), mask);
}
