/* Matrix products: matmul (with batch broadcasting), bmm and linear. */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

/* A [batch, rows, cols] operand as gemm wants it: a pointer offset, a batch
 * stride, a leading dimension and whether it is stored transposed. */
typedef struct {
    tensor *t; /* owns a reference */
    int64_t batch_stride, ld;
    bool trans;
} gemm_operand;

/* t has shape [batch..., r, c] broadcast to `batch` dims; view it as one batch dim
 * if the strides allow, else copy. */
static int gemm_prepare(tensor *t, int nb, const int64_t *bshape, gemm_operand *g)
{
    int64_t full[TENSOR_MAX_DIMS];
    for (int i = 0; i < nb; i++) /* bshape may be NULL when nb == 0 */
        full[i] = bshape[i];
    full[nb] = t->shape[t->ndim - 2];
    full[nb + 1] = t->shape[t->ndim - 1];
    tensor *e = tensor_broadcast_to(t, nb + 2, full, "matmul");
    if (!e)
        return -1;
    int64_t B = shape_numel(nb, bshape);
    int64_t r = full[nb], c = full[nb + 1];
    int64_t s3[3] = {B, r, c};
    /* The batch dims must collapse to one stride: each non-trivial dim nests
     * exactly around the next non-trivial one. */
    int64_t bs = 0;
    bool ok = true;
    for (int i = nb - 1, inner = -1; i >= 0; i--) {
        if (e->shape[i] == 1)
            continue;
        if (inner < 0)
            bs = e->stride[i];
        else if (e->stride[i] != e->stride[inner] * e->shape[inner])
            ok = false;
        inner = i;
    }
    int64_t rs = e->stride[nb], cs = e->stride[nb + 1];
    int64_t rmin = c > 1 ? c : 1, cmin = r > 1 ? r : 1;
    bool rowmajor = (cs == 1 || c == 1) && (r == 1 || rs >= rmin);
    bool colmajor = (rs == 1 || r == 1) && (c == 1 || cs >= cmin);
    if (ok && (rowmajor || colmajor)) {
        g->trans = !rowmajor;
        if (rowmajor)
            g->ld = r == 1 ? rmin : rs;
        else
            g->ld = c == 1 ? cmin : cs;
        g->batch_stride = bs;
        int64_t st3[3] = {bs, rs, cs};
        g->t = tensor_as_strided(e, 3, s3, st3, e->offset);
    } else {
        tensor *cc = tensor_copy_as(e, e->dtype);
        g->trans = false;
        g->ld = c;
        g->batch_stride = r * c;
        g->t = cc;
    }
    tensor_decref(e);
    return g->t ? 0 : -1;
}

static tensor *matmul_nd(tensor *a, tensor *b);

static int matmul_backward(ag_node *n, tensor *g, tensor **gin)
{
    tensor *a = ag_saved(n, 0), *b = ag_saved(n, 1);
    if (!a || !b)
        return -1;
    if (ag_wants(n, 0)) {
        tensor *bt = op_transpose(b, -1, -2);
        gin[0] = bt ? c_sum_to_input(n, 0, matmul_nd(g, bt)) : NULL;
        tensor_decref(bt);
    }
    if (ag_wants(n, 1)) {
        tensor *at = op_transpose(a, -1, -2);
        gin[1] = at ? c_sum_to_input(n, 1, matmul_nd(at, g)) : NULL;
        tensor_decref(at);
    }
    return ag_check(n, gin);
}

/* Both operands have at least 2 dims. */
static tensor *matmul_nd(tensor *a, tensor *b)
{
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t k2 = b->shape[b->ndim - 2], n = b->shape[b->ndim - 1];
    if (k != k2) {
        char b1[128], b2[128];
        err_set("matmul: shapes %s and %s cannot be multiplied (%" PRId64 " ~= %" PRId64 ")",
                tensor_shape_str(a, b1, sizeof b1), tensor_shape_str(b, b2, sizeof b2), k, k2);
        return NULL;
    }
    int64_t bshape[TENSOR_MAX_DIMS];
    int nb = shape_broadcast(a->ndim - 2, a->shape, b->ndim - 2, b->shape, bshape, "matmul");
    if (nb < 0)
        return NULL;
    if (nb + 2 > TENSOR_MAX_DIMS) {
        err_set("matmul: too many dims");
        return NULL;
    }
    int64_t oshape[TENSOR_MAX_DIMS];
    memcpy(oshape, bshape, sizeof(int64_t) * (size_t)nb);
    oshape[nb] = m;
    oshape[nb + 1] = n;
    const backend *be = ops_backend(a, "matmul");
    tensor *out = be ? tensor_empty(a->dtype, nb + 2, oshape, tensor_device(a)) : NULL;
    if (!out)
        return NULL;
    int64_t B = shape_numel(nb, bshape);
    int rc = 0;
    if (k == 0 || B * m * n == 0) {
        rc = tensor_fill(out, 0);
    } else if (b->ndim == 2 && a->ndim > 2 && tensor_is_contiguous(a) && B * m <= INT32_MAX) {
        /* [..., m, k] @ [k, n]: fold the batch into the rows, one gemm (whose
         * sizes the BLAS libraries take as 32-bit ints). */
        int64_t s2[2] = {B * m, k}, st2[2] = {k, 1};
        tensor *a2 = tensor_as_strided(a, 2, s2, st2, a->offset);
        gemm_operand gb = {0};
        rc = a2 && gemm_prepare(b, 0, NULL, &gb) == 0 ? 0 : -1;
        if (rc == 0)
            rc = be->gemm(a->dtype, 1, false, gb.trans, B * m, n, k, 1.0, a2, 0, k, gb.t, 0,
                          gb.ld, 0.0, out, 0, n);
        tensor_decref(a2);
        tensor_decref(gb.t);
    } else {
        gemm_operand ga = {0}, gb = {0};
        rc = gemm_prepare(a, nb, bshape, &ga);
        if (rc == 0)
            rc = gemm_prepare(b, nb, bshape, &gb);
        if (rc == 0)
            rc = be->gemm(a->dtype, B, ga.trans, gb.trans, m, n, k, 1.0, ga.t,
                          ga.batch_stride, ga.ld, gb.t, gb.batch_stride, gb.ld, 0.0, out,
                          m * n, n);
        tensor_decref(ga.t);
        tensor_decref(gb.t);
    }
    tensor *in[2] = {a, b};
    if (rc == 0 && ag_needs(2, in)) {
        ag_node *node = ag_node_new("matmul", matmul_backward, 2, in);
        rc = node ? ag_save(node, a) : -1;
        if (rc == 0)
            rc = ag_save(node, b);
        if (rc == 0)
            ag_attach(out, node);
        else
            ag_node_decref(node);
    }
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}

tensor *op_matmul(tensor *a, tensor *b)
{
    tensor *in[2] = {a, b}, *lo[2];
    if (autocast_casts(2, in, DT_F32)) { /* runs again on the bfloat16 casts */
        if (autocast_all(2, in, lo, DT_F32, DT_BF16, false) != 0)
            return NULL;
        tensor *y = op_matmul(lo[0], lo[1]);
        autocast_release(2, lo);
        return y;
    }
    if (ops_same_device("matmul", 2, in, (const char *const[]){"the first operand", "the second operand"}) != 0)
        return NULL;
    if (a->ndim == 0 || b->ndim == 0) {
        err_set("matmul: both operands need at least 1 dim, got %d and %d", a->ndim, b->ndim);
        return NULL;
    }
    if (ops_need_float("matmul", a, "the first operand") != 0 ||
        ops_need_float("matmul", b, "the second operand") != 0)
        return NULL;
    if (a->dtype != b->dtype) {
        err_set("matmul: operands have different dtypes (%s and %s)", dtype_name(a->dtype),
                dtype_name(b->dtype));
        return NULL;
    }
    /* 1-D operands become a row (left) or a column (right), removed afterwards. */
    tensor *a2 = a->ndim == 1 ? op_unsqueeze(a, 0) : keep(a);
    tensor *b2 = b->ndim == 1 ? op_unsqueeze(b, 1) : keep(b);
    tensor *r = a2 && b2 ? matmul_nd(a2, b2) : NULL;
    tensor_decref(a2);
    tensor_decref(b2);
    if (r && b->ndim == 1) {
        tensor *s = op_squeeze(r, -1);
        tensor_decref(r);
        r = s;
    }
    if (r && a->ndim == 1) {
        tensor *s = op_squeeze(r, -2 + (b->ndim == 1 ? 1 : 0));
        tensor_decref(r);
        r = s;
    }
    return r;
}

tensor *op_bmm(tensor *a, tensor *b)
{
    if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0]) {
        char b1[128], b2[128];
        err_set("bmm: expects two 3-D tensors with the same batch size, got %s and %s",
                tensor_shape_str(a, b1, sizeof b1), tensor_shape_str(b, b2, sizeof b2));
        return NULL;
    }
    return op_matmul(a, b);
}

tensor *op_linear(tensor *x, tensor *w, tensor *b)
{
    tensor *in[3] = {x, w, b}, *lo[3];
    if (autocast_casts(3, in, DT_F32)) { /* the bias too: the sum stays bfloat16 */
        if (autocast_all(3, in, lo, DT_F32, DT_BF16, false) != 0)
            return NULL;
        tensor *y = op_linear(lo[0], lo[1], lo[2]);
        autocast_release(3, lo);
        return y;
    }
    if (w->ndim != 2) {
        char b1[128];
        err_set("linear: weight must be 2-D [out, in], got %s", tensor_shape_str(w, b1, sizeof b1));
        return NULL;
    }
    if (x->ndim == 0 || x->shape[x->ndim - 1] != w->shape[1]) {
        char b1[128], b2[128];
        err_set("linear: input %s does not match weight %s (in features %" PRId64 ")",
                tensor_shape_str(x, b1, sizeof b1), tensor_shape_str(w, b2, sizeof b2), w->shape[1]);
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        char b1[128];
        err_set("linear: bias must have shape [%" PRId64 "], got %s", w->shape[0],
                tensor_shape_str(b, b1, sizeof b1));
        return NULL;
    }
    if (ops_same_device("linear", b ? 3 : 2, in, (const char *const[]){"input", "weight", "bias"}) != 0)
        return NULL;
    tensor *wt = op_transpose(w, 0, 1);
    tensor *y = wt ? op_matmul(x, wt) : NULL;
    tensor_decref(wt);
    if (y && b)
        return c_binary(BIN_ADD, y, keep(b));
    return y;
}
