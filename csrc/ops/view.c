/* View ops: new shapes and strides over the same storage, and their gradients. */
#include <inttypes.h>
#include <string.h>

#include "internal.h"

/* Attach a node to view out of a; consumes nothing, returns out or NULL. */
static tensor *record(tensor *out, tensor *a, const char *name, ag_backward_fn fn,
                      const int64_t *iargs, int niargs)
{
    if (!out || !ag_needs(1, &a))
        return out;
    ag_node *n = ag_node_new(name, fn, 1, &a);
    if (!n) {
        tensor_decref(out);
        return NULL;
    }
    for (int i = 0; i < niargs; i++)
        n->iarg[i] = iargs[i];
    ag_attach(out, n);
    return out;
}

/* The gradient of every shape-only view: reshape g back to the input's shape. */
static int reshape_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = op_reshape(g, n->next[0].ndim, n->next[0].shape);
    return ag_check(n, gin);
}

/* Resolve a -1 entry and check the element count. */
static int infer_shape(const tensor *a, int ndim, const int64_t *in, int64_t *out,
                       const char *op)
{
    if (ndim > TENSOR_MAX_DIMS)
        return err_set("%s: at most %d dims, got %d", op, TENSOR_MAX_DIMS, ndim);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        out[i] = in[i];
        if (in[i] == -1) {
            if (infer >= 0)
                return err_set("%s: only one dim can be -1", op);
            infer = i;
        } else if (in[i] < 0) {
            return err_set("%s: invalid size %" PRId64 " in dim %d", op, in[i], i + 1);
        } else if (__builtin_mul_overflow(known, in[i], &known)) {
            return err_set("%s: too many elements in the new shape", op);
        }
    }
    int64_t numel = tensor_numel(a);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0) {
            char b1[128], b2[128];
            return err_set("%s: cannot reshape %s into %s", op, tensor_shape_str(a, b1, sizeof b1),
                           shape_str(ndim, in, b2, sizeof b2));
        }
        out[infer] = numel / known;
    } else if (known != numel) {
        char b1[128], b2[128];
        return err_set("%s: cannot reshape %s (%" PRId64 " elements) into %s (%" PRId64
                       " elements)", op, tensor_shape_str(a, b1, sizeof b1), numel,
                       shape_str(ndim, in, b2, sizeof b2), known);
    }
    return 0;
}

tensor *op_reshape(tensor *a, int ndim, const int64_t *shape)
{
    int64_t s[TENSOR_MAX_DIMS];
    if (infer_shape(a, ndim, shape, s, "reshape") != 0)
        return NULL;
    tensor *v = tensor_view_try(a, ndim, s);
    if (!v) { /* not expressible as a view: copy, then view the copy */
        tensor *c = op_contiguous(a);
        if (!c)
            return NULL;
        tensor *out = op_reshape(c, ndim, s);
        tensor_decref(c);
        return out;
    }
    return record(v, a, "reshape", reshape_backward, NULL, 0);
}

tensor *op_view(tensor *a, int ndim, const int64_t *shape)
{
    int64_t s[TENSOR_MAX_DIMS];
    if (infer_shape(a, ndim, shape, s, "view") != 0)
        return NULL;
    tensor *v = tensor_view_try(a, ndim, s);
    if (!v) {
        char b1[128], b2[128];
        err_set("view: a tensor of shape %s with these strides cannot be viewed as %s; use "
                "reshape (which copies)", tensor_shape_str(a, b1, sizeof b1),
                shape_str(ndim, s, b2, sizeof b2));
        return NULL;
    }
    return record(v, a, "view", reshape_backward, NULL, 0);
}

tensor *op_flatten(tensor *a, int start, int end)
{
    if (a->ndim == 0) {
        int64_t one = 1;
        return op_reshape(a, 1, &one);
    }
    int s = dim_wrap(start, a->ndim, "flatten"), e = dim_wrap(end, a->ndim, "flatten");
    if (s < 0 || e < 0)
        return NULL;
    if (s > e) {
        err_set("flatten: start dim %d comes after end dim %d", s + 1, e + 1);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s; i++)
        shape[nd++] = a->shape[i];
    int64_t m = 1;
    for (int i = s; i <= e; i++)
        m *= a->shape[i];
    shape[nd++] = m;
    for (int i = e + 1; i < a->ndim; i++)
        shape[nd++] = a->shape[i];
    return op_reshape(a, nd, shape);
}

static int permute_backward(ag_node *n, tensor *g, tensor **gin)
{
    int inv[TENSOR_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++)
        inv[n->iarg[i]] = i;
    gin[0] = op_permute(g, inv);
    return ag_check(n, gin);
}

tensor *op_permute(tensor *a, const int *perm)
{
    int p[TENSOR_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++)
        if ((p[i] = dim_wrap(perm[i], a->ndim, "permute")) < 0)
            return NULL;
    tensor *v = tensor_permuted(a, p);
    if (!v) {
        err_set("permute: the dims given are not a permutation of the %d dims", a->ndim);
        return NULL;
    }
    int64_t args[TENSOR_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++)
        args[i] = p[i];
    return record(v, a, "permute", permute_backward, args, a->ndim);
}

tensor *op_transpose(tensor *a, int d0, int d1)
{
    int x = dim_wrap(d0, a->ndim, "transpose"), y = dim_wrap(d1, a->ndim, "transpose");
    if (x < 0 || y < 0)
        return NULL;
    int perm[TENSOR_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++)
        perm[i] = i;
    perm[x] = y;
    perm[y] = x;
    return op_permute(a, perm);
}

/* narrow and select: scatter g into zeros of the input's shape. iarg holds the
 * dim, the start, the length and whether the dim was removed (select). */
static int narrow_backward(ag_node *n, tensor *g, tensor **gin)
{
    const ag_edge *e = &n->next[0];
    tensor *z = tensor_zeros(g->dtype, e->ndim, e->shape, tensor_device(g));
    if (!z)
        return -1;
    int dim = (int)n->iarg[0];
    int64_t start = n->iarg[1], len = n->iarg[2];
    int64_t off = z->offset + start * z->stride[dim];
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, z->shape, sizeof shape);
    shape[dim] = len;
    tensor *region = tensor_as_strided(z, z->ndim, shape, z->stride, off);
    /* select removed the dim: put it back (size 1) where it was, since
     * broadcasting would only add it in front. */
    tensor *src = n->iarg[3] ? op_unsqueeze(g, dim) : keep(g);
    int rc = region && src ? tensor_copy_into(region, src) : -1;
    tensor_decref(region);
    tensor_decref(src);
    if (rc != 0) {
        tensor_decref(z);
        return -1;
    }
    gin[0] = z;
    return 0;
}

tensor *op_narrow(tensor *a, int dim, int64_t start, int64_t len)
{
    int d = dim_wrap(dim, a->ndim, "narrow");
    if (d < 0)
        return NULL;
    /* Compared without start + len, which may overflow for huge lengths. */
    if (start < 0 || len < 0 || start > a->shape[d] || len > a->shape[d] - start) {
        int64_t last;
        if (__builtin_add_overflow(start, len, &last))
            last = INT64_MAX;
        err_set("narrow: elements %" PRId64 " to %" PRId64 " are out of range for dim %d of "
                "size %" PRId64, start + 1, last, d + 1, a->shape[d]);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = len;
    tensor *v = tensor_as_strided(a, a->ndim, shape, a->stride, a->offset + start * a->stride[d]);
    int64_t args[4] = {d, start, len, 0};
    return record(v, a, "narrow", narrow_backward, args, 4);
}

tensor *op_select(tensor *a, int dim, int64_t index)
{
    int d = dim_wrap(dim, a->ndim, "select");
    if (d < 0)
        return NULL;
    int64_t i = index < 0 ? index + a->shape[d] : index;
    if (i < 0 || i >= a->shape[d]) {
        err_set("select: index %" PRId64 " is out of range for dim %d of size %" PRId64,
                index >= 0 ? index + 1 : index, d + 1, a->shape[d]);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < a->ndim; k++)
        if (k != d) {
            shape[nd] = a->shape[k];
            stride[nd++] = a->stride[k];
        }
    tensor *v = tensor_as_strided(a, nd, shape, stride, a->offset + i * a->stride[d]);
    int64_t args[4] = {d, i, 1, 1};
    return record(v, a, "select", narrow_backward, args, 4);
}

static tensor *drop_dims(tensor *a, const bool *drop, const char *name)
{
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < a->ndim; k++)
        if (!drop[k]) {
            shape[nd] = a->shape[k];
            stride[nd++] = a->stride[k];
        }
    tensor *v = tensor_as_strided(a, nd, shape, stride, a->offset);
    return record(v, a, name, reshape_backward, NULL, 0);
}

tensor *op_squeeze(tensor *a, int dim)
{
    int d = dim_wrap(dim, a->ndim, "squeeze");
    if (d < 0)
        return NULL;
    bool drop[TENSOR_MAX_DIMS] = {false};
    drop[d] = a->shape[d] == 1;
    return drop_dims(a, drop, "squeeze");
}

tensor *op_squeeze_all(tensor *a)
{
    bool drop[TENSOR_MAX_DIMS];
    for (int k = 0; k < a->ndim; k++)
        drop[k] = a->shape[k] == 1;
    return drop_dims(a, drop, "squeeze");
}

tensor *op_unsqueeze(tensor *a, int dim)
{
    if (a->ndim >= TENSOR_MAX_DIMS) {
        err_set("unsqueeze: tensors have at most %d dims", TENSOR_MAX_DIMS);
        return NULL;
    }
    int d = dim_wrap(dim, a->ndim + 1, "unsqueeze");
    if (d < 0)
        return NULL;
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    for (int k = 0, j = 0; k <= a->ndim; k++) {
        if (k == d) {
            shape[k] = 1;
            stride[k] = j < a->ndim ? a->stride[j] * a->shape[j] : 1;
        } else {
            shape[k] = a->shape[j];
            stride[k] = a->stride[j++];
        }
    }
    tensor *v = tensor_as_strided(a, a->ndim + 1, shape, stride, a->offset);
    return record(v, a, "unsqueeze", reshape_backward, NULL, 0);
}

static int expand_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = ag_reduce_to_input(n, 0, g);
    return ag_check(n, gin);
}

tensor *op_expand(tensor *a, int ndim, const int64_t *shape)
{
    if (ndim > TENSOR_MAX_DIMS) {
        err_set("expand: at most %d dims", TENSOR_MAX_DIMS);
        return NULL;
    }
    int64_t s[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int j = i - (ndim - a->ndim);
        s[i] = shape[i] == -1 && j >= 0 ? a->shape[j] : shape[i];
        if (s[i] < 0) {
            err_set(shape[i] == -1 ? "expand: -1 (keep the size) in dim %d, which is a new dim"
                                   : "expand: invalid size in dim %d", i + 1);
            return NULL;
        }
    }
    tensor *v = tensor_broadcast_to(a, ndim, s, "expand");
    return record(v, a, "expand", expand_backward, NULL, 0);
}

static int contiguous_backward(ag_node *n, tensor *g, tensor **gin)
{
    gin[0] = keep(g);
    return ag_check(n, gin);
}

tensor *op_contiguous(tensor *a)
{
    if (tensor_is_contiguous(a))
        return keep(a);
    tensor *c = tensor_copy_as(a, a->dtype);
    return record(c, a, "contiguous", contiguous_backward, NULL, 0);
}

tensor *op_sum_to_shape(tensor *g, int ndim, const int64_t *shape)
{
    int dims[TENSOR_MAX_DIMS], nd = 0, lead = g->ndim - ndim;
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1))
            dims[nd++] = i;
    if (nd == 0)
        return keep(g);
    tensor *s = op_reduce(RED_SUM, g, nd, dims, true, 0);
    tensor *r = s ? op_reshape(s, ndim, shape) : NULL;
    tensor_decref(s);
    return r;
}
