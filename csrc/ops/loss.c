/* Loss functions, composed of differentiable ops (so their gradients come from
 * autograd), with PyTorch's definitions and reductions. */
#include <inttypes.h>
#include <math.h>

#include "internal.h"

static tensor *reduce_loss(tensor *l, loss_reduction r)
{
    if (!l || r == REDUCE_NONE)
        return l;
    tensor *out = r == REDUCE_SUM ? op_reduce(RED_SUM, l, 0, NULL, false, 0) : op_mean(l, 0, NULL, false);
    tensor_decref(l);
    return out;
}

/* Check class-index targets against logits/log-probabilities [N, C, d...]. */
static int check_class_target(const char *op, const tensor *x, const tensor *target,
                              int64_t ignore_index)
{
    char b1[128], b2[128];
    if (x->ndim < 1)
        return err_set("%s: input must have a class dim, got a 0-dim tensor", op);
    if (target->dtype != DT_I64)
        return err_set("%s: class-index targets must be int64, got %s", op,
                       dtype_name(target->dtype));
    /* [C] with a 0-dim target, [N, C] with [N], [N, C, d...] with [N, d...] */
    bool ok = x->ndim == 1 ? target->ndim == 0 : target->ndim == x->ndim - 1;
    for (int i = 0, j = 0; ok && i < x->ndim; i++) {
        if (i == (x->ndim == 1 ? 0 : 1))
            continue;
        ok = target->shape[j++] == x->shape[i];
    }
    if (!ok)
        return err_set("%s: target of shape %s does not fit input %s (expected the input's "
                       "shape without its class dim)", op,
                       tensor_shape_str(target, b1, sizeof b1), tensor_shape_str(x, b2, sizeof b2));
    if (tensor_device(target).type != DEV_CPU)
        return 0;
    int64_t C = x->shape[x->ndim == 1 ? 0 : 1];
    tensor *c = tensor_contiguous((tensor *)target);
    if (!c)
        return -1;
    const int64_t *p = tensor_data(c);
    int rc = 0;
    for (int64_t i = 0, n = tensor_numel(c); i < n && rc == 0; i++)
        if (p[i] != ignore_index && (p[i] < 0 || p[i] >= C))
            rc = err_set("%s: target %" PRId64 " is out of range for %" PRId64 " classes", op,
                         p[i] + 1, C);
    tensor_decref(c);
    return rc;
}

/* weight[idx] with idx's shape (idx holds valid class indices). */
static tensor *class_weights(tensor *weight, tensor *idx)
{
    int64_t n = tensor_numel(idx);
    tensor *flat = op_reshape(idx, 1, &n);
    tensor *wf = flat ? op_index_select(weight, 0, flat) : NULL;
    tensor *w = wf ? op_reshape(wf, idx->ndim, idx->shape) : NULL;
    tensor_decref(flat);
    tensor_decref(wf);
    return w;
}

/* The targets with ignored entries replaced by class 0, and the 0/1 float mask
 * of the kept entries. */
static int kept_targets(tensor *target, int64_t ignore_index, dtype_t dt, tensor **safe,
                        tensor **kept)
{
    tensor *m = op_binary_scalar(BIN_NE, target, (double)ignore_index, false);
    *safe = m ? c_where(keep(m), keep(target), tensor_scalar(DT_I64, 0, tensor_device(target)))
              : NULL;
    *kept = m ? op_to_dtype(m, dt) : NULL;
    tensor_decref(m);
    return *safe && *kept ? 0 : -1;
}

tensor *op_nll_loss(tensor *logp, tensor *target, tensor *weight, loss_reduction r,
                    int64_t ignore_index)
{
    tensor *up;
    if (autocast_casts(1, &logp, DT_BF16)) { /* runs again on the float32 cast */
        if (autocast_all(1, &logp, &up, DT_BF16, DT_F32, false) != 0)
            return NULL;
        tensor *l = op_nll_loss(up, target, weight, r, ignore_index);
        tensor_decref(up);
        return l;
    }
    if (ops_need_float("nll_loss", logp, "input") != 0 ||
        check_class_target("nll_loss", logp, target, ignore_index) != 0)
        return NULL;
    int cdim = logp->ndim == 1 ? 0 : 1;
    int64_t C = logp->shape[cdim];
    if (weight && (weight->ndim != 1 || weight->shape[0] != C)) {
        char b[128];
        err_set("nll_loss: weight must have shape [%" PRId64 "], got %s", C,
                tensor_shape_str(weight, b, sizeof b));
        return NULL;
    }
    tensor *safe, *kept;
    if (kept_targets(target, ignore_index, logp->dtype, &safe, &kept) != 0) {
        tensor_decref(safe);
        tensor_decref(kept);
        return NULL;
    }
    tensor *idx = op_unsqueeze(safe, cdim);
    tensor *g = idx ? op_gather(logp, cdim, idx) : NULL;
    tensor *picked = g ? op_squeeze(g, cdim) : NULL;
    tensor *w = weight ? c_binary(BIN_MUL, class_weights(weight, safe), keep(kept)) : keep(kept);
    tensor *losses = picked && w ? c_unary(UN_NEG, op_binary(BIN_MUL, picked, w), 0, 0) : NULL;
    tensor *out;
    if (r == REDUCE_MEAN) /* divided by the total weight of the kept targets, as PyTorch */
        out = losses ? c_binary(BIN_DIV, op_reduce(RED_SUM, losses, 0, NULL, false, 0),
                                op_reduce(RED_SUM, w, 0, NULL, false, 0))
                     : NULL;
    else
        out = reduce_loss(keep(losses), r);
    tensor *tmp[] = {safe, kept, idx, g, picked, w, losses};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++)
        tensor_decref(tmp[i]);
    return out;
}

/* Soft targets (class probabilities of the input's shape). */
static tensor *cross_entropy_probs(tensor *logp, tensor *target, tensor *weight,
                                   loss_reduction r, double eps)
{
    int cdim = logp->ndim == 1 ? 0 : 1;
    double C = (double)logp->shape[cdim];
    tensor *t = eps > 0 ? c_scalar(BIN_ADD, op_binary_scalar(BIN_MUL, target, 1 - eps, false), eps / C)
                        : keep(target);
    tensor *prod = t ? op_binary(BIN_MUL, logp, t) : NULL;
    if (weight && prod) {
        int64_t shape[TENSOR_MAX_DIMS];
        for (int i = 0; i < logp->ndim; i++)
            shape[i] = i == cdim ? logp->shape[cdim] : 1;
        prod = c_binary(BIN_MUL, prod, op_reshape(weight, logp->ndim, shape));
    }
    int dims[1] = {cdim};
    tensor *l = c_unary(UN_NEG, prod ? op_reduce(RED_SUM, prod, 1, dims, false, 0) : NULL, 0, 0);
    tensor_decref(prod);
    tensor_decref(t);
    return reduce_loss(l, r);
}

tensor *op_cross_entropy(tensor *logits, tensor *target, tensor *weight, loss_reduction r,
                         double eps, int64_t ignore_index)
{
    if (eps < 0 || eps > 1 || isnan(eps)) {
        err_set("cross_entropy: label_smoothing must be in [0, 1], got %g", eps);
        return NULL;
    }
    if (ops_need_float("cross_entropy", logits, "input") != 0)
        return NULL;
    int cdim = logits->ndim == 1 ? 0 : 1;
    tensor *logp = op_softmax(logits, cdim, true);
    if (!logp)
        return NULL;
    tensor *out = NULL;
    if (dtype_is_float(target->dtype)) {
        if (!tensor_same_shape(target, logits)) {
            char b1[128], b2[128];
            err_set("cross_entropy: probability targets must have the input's shape %s, got %s",
                    tensor_shape_str(logits, b1, sizeof b1), tensor_shape_str(target, b2, sizeof b2));
        } else {
            out = cross_entropy_probs(logp, target, weight, r, eps);
        }
    } else if (eps == 0) {
        out = op_nll_loss(logp, target, weight, r, ignore_index);
    } else if (check_class_target("cross_entropy", logits, target, ignore_index) == 0) {
        /* (1 - eps) nll + eps/C sum_c w_c (-logp_c), each over the kept targets */
        double C = (double)logits->shape[cdim];
        int64_t wshape[TENSOR_MAX_DIMS];
        for (int i = 0; i < logp->ndim; i++)
            wshape[i] = i == cdim ? logp->shape[cdim] : 1;
        tensor *wl = weight ? c_binary(BIN_MUL, keep(logp), op_reshape(weight, logp->ndim, wshape))
                            : keep(logp);
        int dims[1] = {cdim};
        tensor *safe, *kept;
        kept_targets(target, ignore_index, logits->dtype, &safe, &kept);
        tensor *smooth = c_binary(BIN_MUL, c_unary(UN_NEG, wl ? op_reduce(RED_SUM, wl, 1, dims, false, 0) : NULL, 0, 0),
                                  keep(kept));
        tensor *nll = op_nll_loss(logp, target, weight, REDUCE_NONE, ignore_index);
        tensor *per = c_binary(BIN_ADD, c_scalar(BIN_MUL, nll, 1 - eps), c_scalar(BIN_MUL, smooth, eps / C));
        if (r == REDUCE_MEAN) {
            tensor *den = weight && safe ? c_binary(BIN_MUL, class_weights(weight, safe), keep(kept))
                                         : keep(kept);
            out = per && den ? c_binary(BIN_DIV, op_reduce(RED_SUM, per, 0, NULL, false, 0),
                                        op_reduce(RED_SUM, den, 0, NULL, false, 0))
                             : NULL;
            tensor_decref(den);
            tensor_decref(per);
        } else {
            out = reduce_loss(per, r);
        }
        tensor_decref(wl);
        tensor_decref(safe);
        tensor_decref(kept);
    }
    tensor_decref(logp);
    return out;
}

tensor *op_bce_with_logits(tensor *x, tensor *y, tensor *weight, tensor *pos_weight,
                           loss_reduction r)
{
    tensor *in[2] = {x, y}, *up[2];
    if (autocast_casts(2, in, DT_BF16)) { /* runs again on the float32 casts */
        if (autocast_all(2, in, up, DT_BF16, DT_F32, false) != 0)
            return NULL;
        tensor *l = op_bce_with_logits(up[0], up[1], weight, pos_weight, r);
        autocast_release(2, up);
        return l;
    }
    if (ops_need_float("binary_cross_entropy_with_logits", x, "input") != 0 ||
        ops_need_float("binary_cross_entropy_with_logits", y, "target") != 0)
        return NULL;
    if (!tensor_same_shape(x, y)) {
        char b1[128], b2[128];
        err_set("binary_cross_entropy_with_logits: target %s must have the input's shape %s",
                tensor_shape_str(y, b1, sizeof b1), tensor_shape_str(x, b2, sizeof b2));
        return NULL;
    }
    /* (1 - y) x + (1 + (pw - 1) y) softplus(-x) */
    tensor *sp = c_unary(UN_LOG1P_EXP, op_unary(UN_NEG, x, 0, 0), 0, 0);
    tensor *lw = pos_weight ? c_scalar(BIN_ADD, c_binary(BIN_MUL, op_binary_scalar(BIN_SUB, pos_weight, 1, false), keep(y)), 1)
                            : NULL;
    tensor *a = c_binary(BIN_MUL, op_unary(UN_AFFINE, y, -1, 1), keep(x));
    tensor *l = c_binary(BIN_ADD, a, pos_weight ? c_binary(BIN_MUL, lw, sp) : sp);
    if (weight)
        l = c_binary(BIN_MUL, l, keep(weight));
    return reduce_loss(l, r);
}

tensor *op_mse_loss(tensor *a, tensor *b, loss_reduction r)
{
    tensor *in[2] = {a, b}, *up[2];
    if (autocast_casts(2, in, DT_BF16)) { /* runs again on the float32 casts */
        if (autocast_all(2, in, up, DT_BF16, DT_F32, false) != 0)
            return NULL;
        tensor *l = op_mse_loss(up[0], up[1], r);
        autocast_release(2, up);
        return l;
    }
    if (!tensor_same_shape(a, b)) {
        char b1[128], b2[128];
        err_set("mse_loss: input %s and target %s must have the same shape",
                tensor_shape_str(a, b1, sizeof b1), tensor_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    return reduce_loss(c_unary(UN_SQUARE, op_binary(BIN_SUB, a, b), 0, 0), r);
}
