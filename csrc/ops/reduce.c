/* Reductions over all dims or a set of dims, and their gradients. */
#include <math.h>
#include <string.h>

#include "internal.h"

static const char *const reduce_names[RED_COUNT] = {
    [RED_SUM] = "sum", [RED_PROD] = "prod", [RED_MAX] = "max", [RED_MIN] = "min",
    [RED_LOGSUMEXP] = "logsumexp", [RED_VAR] = "var",
};

/* Which dims of a are reduced (all when ndims == 0). */
static int reduced_mask(const tensor *a, int ndims, const int *dims, bool *mask,
                        const char *op)
{
    for (int i = 0; i < a->ndim; i++)
        mask[i] = ndims == 0;
    for (int i = 0; i < ndims; i++) {
        int d = dim_wrap(dims[i], a->ndim, op);
        if (d < 0)
            return -1;
        if (mask[d])
            return err_set("%s: dim %d appears more than once", op, d + 1);
        mask[d] = true;
    }
    return 0;
}

/* The output's shape: reduced dims dropped, or kept as size 1. */
static int reduced_shape(const tensor *a, const bool *mask, bool keepdim, int64_t *shape)
{
    int nd = 0;
    for (int i = 0; i < a->ndim; i++)
        if (!mask[i])
            shape[nd++] = a->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    return nd;
}

/* Rearrange a so the reduced dims form the middle of [outer, n, inner]; returns a
 * contiguous tensor. A single block of adjacent dims needs no permutation. */
static tensor *arrange(tensor *a, const bool *mask, int64_t *outer, int64_t *n, int64_t *inner)
{
    int first = -1, last = -1, count = 0;
    for (int i = 0; i < a->ndim; i++)
        if (mask[i]) {
            if (first < 0) first = i;
            last = i;
            count++;
        }
    *outer = *n = *inner = 1;
    if (count == 0)
        return tensor_contiguous(a);
    if (last - first + 1 == count) {
        for (int i = 0; i < a->ndim; i++)
            *(i < first ? outer : i <= last ? n : inner) *= a->shape[i];
        return tensor_contiguous(a);
    }
    int perm[TENSOR_MAX_DIMS], k = 0;
    for (int i = 0; i < a->ndim; i++)
        if (!mask[i]) {
            perm[k++] = i;
            *outer *= a->shape[i];
        }
    for (int i = 0; i < a->ndim; i++)
        if (mask[i]) {
            perm[k++] = i;
            *n *= a->shape[i];
        }
    tensor *p = tensor_permuted(a, perm);
    tensor *c = p ? tensor_copy_as(p, p->dtype) : NULL;
    tensor_decref(p);
    return c;
}

/* g (of the reduced shape) viewed with keepdim and expanded to the input's shape. */
static tensor *expand_back(ag_node *n, tensor *g)
{
    const ag_edge *e = &n->next[0];
    int64_t kshape[TENSOR_MAX_DIMS];
    for (int i = 0; i < e->ndim; i++)
        kshape[i] = (n->iarg[1] >> i) & 1 ? 1 : e->shape[i];
    tensor *k = op_reshape(g, e->ndim, kshape);
    tensor *x = k ? op_expand(k, e->ndim, e->shape) : NULL;
    tensor_decref(k);
    return x;
}

/* The reduced dims of node n's input (bits of iarg[1]) as a list; returns how many. */
static int node_dims(const ag_node *n, int *dims)
{
    int nd = 0;
    for (int i = 0; i < n->next[0].ndim; i++)
        if ((n->iarg[1] >> i) & 1)
            dims[nd++] = i;
    return nd;
}

/* prod's gradient: each element gets the product of the others. Dividing the
 * result by the element fails at zeros, so the product is taken over the non-zero
 * elements (p) and the count of zeros decides: none, p / x; one, p at the zero and
 * 0 elsewhere; more, 0 everywhere. */
static tensor *prod_grad(ag_node *n, tensor *ge, tensor *x)
{
    int dims[TENSOR_MAX_DIMS], nd = node_dims(n, dims);
    tensor *is0 = op_binary_scalar(BIN_EQ, x, 0, false);
    tensor *cnt = is0 ? op_reduce(RED_SUM, is0, nd, dims, true, 0) : NULL;
    tensor *xs = c_where(keep(is0), tensor_scalar(x->dtype, 1, tensor_device(x)), keep(x));
    tensor *p = xs ? op_reduce(RED_PROD, xs, nd, dims, true, 0) : NULL;
    tensor *lone = c_binary(BIN_AND, keep(is0), c_scalar(BIN_EQ, keep(cnt), 1));
    tensor *pass = c_binary(BIN_OR, c_scalar(BIN_EQ, keep(cnt), 0), lone);
    tensor *d = c_binary(BIN_MUL, keep(ge), c_binary(BIN_DIV, p, keep(xs)));
    tensor *r = c_where(pass, d, op_binary_scalar(BIN_MUL, ge, 0, false));
    tensor_decref(is0);
    tensor_decref(cnt);
    tensor_decref(xs);
    return r;
}

static int reduce_backward(ag_node *n, tensor *g, tensor **gin)
{
    reduce_op op = (reduce_op)n->iarg[0];
    tensor *ge = expand_back(n, g);
    tensor *x = n->n_saved > 0 ? ag_saved(n, 0) : NULL;
    tensor *y = n->n_saved > 1 ? ag_saved(n, 1) : NULL;
    if (!ge || (n->n_saved > 0 && !x) || (n->n_saved > 1 && !y)) {
        tensor_decref(ge);
        return -1;
    }
    tensor *ye = y ? expand_back(n, y) : NULL;
    if (y && !ye) {
        tensor_decref(ge);
        return -1;
    }
    switch (op) {
    case RED_SUM:
        gin[0] = op_contiguous(ge);
        break;
    case RED_PROD:
        gin[0] = prod_grad(n, ge, x);
        break;
    case RED_MAX:
    case RED_MIN: { /* split among the elements equal to the result */
        tensor *eq = op_binary(BIN_EQ, x, ye);
        tensor *m = eq ? op_to_dtype(eq, x->dtype) : NULL;
        tensor_decref(eq);
        gin[0] = NULL;
        if (m) {
            int dims[TENSOR_MAX_DIMS], nd = node_dims(n, dims);
            tensor *cnt = op_reduce(RED_SUM, m, nd, dims, true, 0);
            gin[0] = c_binary(BIN_DIV, c_binary(BIN_MUL, keep(ge), keep(m)), cnt);
        }
        tensor_decref(m);
        break;
    }
    case RED_LOGSUMEXP:
        gin[0] = c_binary(BIN_MUL, keep(ge), c_unary(UN_EXP, op_binary(BIN_SUB, x, ye), 0, 0));
        break;
    case RED_VAR: { /* 2 (x - mean) / (n - correction) */
        int dims[TENSOR_MAX_DIMS], nd = node_dims(n, dims);
        tensor *mean = op_mean(x, nd, dims, true);
        double scale = 2.0 / ((double)n->iarg[2] - n->darg[0]);
        gin[0] = c_binary(BIN_MUL, keep(ge),
                          c_scalar(BIN_MUL, c_binary(BIN_SUB, keep(x), mean), scale));
        break;
    }
    default:
        gin[0] = NULL;
        break;
    }
    tensor_decref(ge);
    tensor_decref(ye);
    return ag_check(n, gin);
}

tensor *op_reduce(reduce_op op, tensor *a, int ndims, const int *dims, bool keepdim, double p0)
{
    const char *name = reduce_names[op];
    bool mask[TENSOR_MAX_DIMS];
    if (reduced_mask(a, ndims, dims, mask, name) != 0)
        return NULL;
    bool needs_float = op == RED_LOGSUMEXP || op == RED_VAR;
    tensor *x = needs_float && !dtype_is_float(a->dtype) ? op_to_dtype(a, DT_F32) : keep(a);
    if (!x)
        return NULL;
    int64_t shape[TENSOR_MAX_DIMS], outer, n, inner;
    int nd = reduced_shape(x, mask, keepdim, shape);
    tensor *c = arrange(x, mask, &outer, &n, &inner);
    dtype_t ot = (op == RED_SUM || op == RED_PROD) && !dtype_is_float(x->dtype) ? DT_I64 : x->dtype;
    const backend *be = c ? ops_backend(x, name) : NULL;
    tensor *out = NULL;
    if (be && n == 0 && (op == RED_MAX || op == RED_MIN)) {
        err_set("%s: cannot reduce over an empty dim", name);
    } else if (be) {
        out = tensor_empty(ot, nd, shape, tensor_device(x));
        tensor *idx = NULL;
        if (out && (op == RED_MAX || op == RED_MIN)) {
            idx = tensor_empty(DT_I64, nd, shape, tensor_device(x));
            if (!idx) {
                tensor_decref(out);
                out = NULL;
            }
        }
        if (out && be->reduce(op, out, idx, c, outer, n, inner, p0) != 0) {
            tensor_decref(out);
            out = NULL;
        }
        tensor_decref(idx);
    }
    tensor_decref(c);
    if (out && dtype_is_float(x->dtype) && ag_needs(1, &x)) {
        ag_node *node = ag_node_new(name, reduce_backward, 1, &x);
        int rc = node ? 0 : -1;
        if (node) {
            int64_t bits = 0;
            for (int i = 0; i < x->ndim; i++)
                bits |= (int64_t)mask[i] << i;
            node->iarg[0] = op;
            node->iarg[1] = bits;
            node->iarg[2] = n;
            node->darg[0] = p0;
            if (op != RED_SUM)
                rc = ag_save(node, x);
            if (rc == 0 && op != RED_SUM && op != RED_VAR)
                rc = ag_save(node, out);
            if (rc == 0)
                ag_attach(out, node);
            else
                ag_node_decref(node);
        }
        if (rc != 0) {
            tensor_decref(out);
            out = NULL;
        }
    }
    tensor_decref(x);
    return out;
}

/* Number of elements that a reduction over dims combines. */
static int64_t reduced_count(const tensor *a, int ndims, const int *dims)
{
    bool mask[TENSOR_MAX_DIMS];
    if (reduced_mask(a, ndims, dims, mask, "mean") != 0)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++)
        if (mask[i])
            n *= a->shape[i];
    return n;
}

tensor *op_mean(tensor *a, int ndims, const int *dims, bool keepdim)
{
    if (a->dtype == DT_BF16) { /* sum and division in float32, rounded once */
        tensor *af = op_to_dtype(a, DT_F32);
        tensor *m = af ? op_mean(af, ndims, dims, keepdim) : NULL;
        tensor_decref(af);
        return c_to_bf16(m);
    }
    if (ops_need_float("mean", a, "input") != 0)
        return NULL;
    int64_t n = reduced_count(a, ndims, dims);
    if (n < 0)
        return NULL;
    return c_scalar(BIN_DIV, op_reduce(RED_SUM, a, ndims, dims, keepdim, 0), (double)n);
}

tensor *op_var(tensor *a, int ndims, const int *dims, bool keepdim, double correction)
{
    return op_reduce(RED_VAR, a, ndims, dims, keepdim, correction);
}

tensor *op_std(tensor *a, int ndims, const int *dims, bool keepdim, double correction)
{
    return c_unary(UN_SQRT, op_var(a, ndims, dims, keepdim, correction), 0, 0);
}

/* --- max/min along one dim, with indices --- */

static int max_dim_backward(ag_node *n, tensor *g, tensor **gin)
{
    tensor *idx = ag_saved(n, 0);
    if (!idx)
        return -1;
    const ag_edge *e = &n->next[0];
    int dim = (int)n->iarg[0];
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= e->shape[i];
    for (int i = dim + 1; i < e->ndim; i++) inner *= e->shape[i];
    tensor *z = tensor_zeros(g->dtype, e->ndim, e->shape, tensor_device(g));
    tensor *gc = z ? tensor_contiguous(g) : NULL;
    const backend *be = gc ? ops_backend(g, "max") : NULL;
    if (!be || be->scatter_add(z, gc, idx, outer, e->shape[dim], 1, inner) != 0) {
        tensor_decref(z);
        tensor_decref(gc);
        return -1;
    }
    tensor_decref(gc);
    gin[0] = z;
    return 0;
}

int op_max_dim(tensor *a, int dim, bool keepdim, bool is_min, tensor **values, tensor **indices)
{
    const char *name = is_min ? "min" : "max";
    *values = *indices = NULL;
    if (a->ndim == 0) {
        tensor *v = op_reduce(is_min ? RED_MIN : RED_MAX, a, 0, NULL, false, 0);
        if (!v)
            return -1;
        *values = v;
        *indices = tensor_scalar(DT_I64, 0, tensor_device(a));
        return *indices ? 0 : -1;
    }
    int d = dim_wrap(dim, a->ndim, name);
    if (d < 0)
        return -1;
    if (a->shape[d] == 0)
        return err_set("%s: cannot reduce over an empty dim", name);
    bool mask[TENSOR_MAX_DIMS] = {false};
    mask[d] = true;
    int64_t shape[TENSOR_MAX_DIMS], outer, n, inner;
    int nd = reduced_shape(a, mask, keepdim, shape);
    tensor *c = arrange(a, mask, &outer, &n, &inner);
    const backend *be = c ? ops_backend(a, name) : NULL;
    tensor *v = be ? tensor_empty(a->dtype, nd, shape, tensor_device(a)) : NULL;
    tensor *ix = v ? tensor_empty(DT_I64, nd, shape, tensor_device(a)) : NULL;
    int rc = ix ? be->reduce(is_min ? RED_MIN : RED_MAX, v, ix, c, outer, n, inner, 0) : -1;
    tensor_decref(c);
    if (rc == 0 && dtype_is_float(a->dtype) && ag_needs(1, &a)) {
        ag_node *node = ag_node_new(name, max_dim_backward, 1, &a);
        rc = node ? 0 : -1;
        if (node) {
            node->iarg[0] = d;
            rc = ag_save(node, ix);
            if (rc == 0)
                ag_attach(v, node);
            else
                ag_node_decref(node);
        }
    }
    if (rc != 0) {
        tensor_decref(v);
        tensor_decref(ix);
        return -1;
    }
    *values = v;
    *indices = ix;
    return 0;
}

tensor *op_argmax(tensor *a, bool has_dim, int dim, bool keepdim, bool is_min)
{
    bool was = ag_set_enabled(false);
    tensor *v = NULL, *ix = NULL;
    if (has_dim) {
        op_max_dim(a, dim, keepdim, is_min, &v, &ix);
    } else {
        int64_t n = tensor_numel(a);
        tensor *flat = op_reshape(a, 1, &n);
        if (flat && op_max_dim(flat, 0, false, is_min, &v, &ix) == 0 && keepdim) {
            int64_t ones[TENSOR_MAX_DIMS];
            for (int i = 0; i < a->ndim; i++)
                ones[i] = 1;
            tensor *r = op_reshape(ix, a->ndim, ones);
            tensor_decref(ix);
            ix = r;
        }
        tensor_decref(flat);
    }
    ag_set_enabled(was);
    tensor_decref(v);
    return ix;
}
