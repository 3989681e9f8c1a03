/* Joining (cat, stack), splitting (split, chunk) and indexing (index_select,
 * gather, masked_select, nonzero), with their gradients. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- cat and stack --- */

static int cat_backward(ag_node *n, tensor *g, tensor **gin)
{
    int dim = (int)n->iarg[0];
    int64_t start = 0;
    for (int i = 0; i < n->n_next; i++) {
        int64_t len = n->next[i].shape[dim];
        if (ag_wants(n, i)) {
            tensor *v = op_narrow(g, dim, start, len);
            gin[i] = v ? op_contiguous(v) : NULL;
            tensor_decref(v);
        }
        start += len;
    }
    return ag_check(n, gin);
}

tensor *op_cat(int n, tensor *const *ts, int dim)
{
    if (n < 1) {
        err_set("cat: expects at least one tensor");
        return NULL;
    }
    const tensor *t0 = ts[0];
    int d = dim_wrap(dim, t0->ndim, "cat");
    if (d < 0)
        return NULL;
    dtype_t dt = t0->dtype;
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t0->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const tensor *t = ts[i];
        char b1[128], b2[128], d0[16], di[16];
        if (!device_eq(tensor_device(t), tensor_device(t0))) {
            err_set("cat: tensor %d is on %s but tensor 1 is on %s", i + 1,
                    device_str(tensor_device(t), di), device_str(tensor_device(t0), d0));
            return NULL;
        }
        bool ok = t->ndim == t0->ndim;
        for (int k = 0; ok && k < t->ndim; k++)
            ok = k == d || t->shape[k] == t0->shape[k];
        if (!ok) {
            err_set("cat: tensor %d has shape %s, which does not match %s outside dim %d",
                    i + 1, tensor_shape_str(t, b1, sizeof b1),
                    tensor_shape_str(t0, b2, sizeof b2), d + 1);
            return NULL;
        }
        shape[d] += t->shape[d];
        dt = dtype_promote(dt, t->dtype);
    }
    tensor *out = tensor_empty(dt, t0->ndim, shape, tensor_device(t0));
    int64_t start = 0;
    for (int i = 0; out && i < n; i++) {
        int64_t s[TENSOR_MAX_DIMS];
        memcpy(s, shape, sizeof s);
        s[d] = ts[i]->shape[d];
        tensor *region = tensor_as_strided(out, out->ndim, s, out->stride,
                                           out->offset + start * out->stride[d]);
        if (!region || tensor_copy_into(region, ts[i]) != 0) {
            tensor_decref(out);
            out = NULL;
        }
        tensor_decref(region);
        start += s[d];
    }
    if (out && dtype_is_float(dt) && ag_needs(n, ts)) {
        ag_node *node = ag_node_new("cat", cat_backward, n, ts);
        if (!node) {
            tensor_decref(out);
            return NULL;
        }
        node->iarg[0] = d;
        ag_attach(out, node);
    }
    return out;
}

tensor *op_stack(int n, tensor *const *ts, int dim)
{
    if (n < 1) {
        err_set("stack: expects at least one tensor");
        return NULL;
    }
    int d = dim_wrap(dim, ts[0]->ndim + 1, "stack");
    if (d < 0)
        return NULL;
    tensor **u = calloc((size_t)n, sizeof *u);
    if (!u) {
        err_set("stack: out of memory");
        return NULL;
    }
    tensor *out = NULL;
    int i;
    for (i = 0; i < n; i++) {
        if (!tensor_same_shape(ts[i], ts[0])) {
            char b1[128], b2[128];
            err_set("stack: tensor %d has shape %s but tensor 1 has %s", i + 1,
                    tensor_shape_str(ts[i], b1, sizeof b1), tensor_shape_str(ts[0], b2, sizeof b2));
            break;
        }
        if (!(u[i] = op_unsqueeze(ts[i], d)))
            break;
    }
    if (i == n)
        out = op_cat(n, u, d);
    for (int k = 0; k < n; k++)
        tensor_decref(u[k]);
    free(u);
    return out;
}

/* --- split and chunk --- */

tensor **op_split(tensor *a, int64_t size, int dim, int *count)
{
    *count = 0;
    int d = dim_wrap(dim, a->ndim, "split");
    if (d < 0)
        return NULL;
    if (size <= 0) {
        err_set("split: the piece size must be positive, got %" PRId64, size);
        return NULL;
    }
    int64_t len = a->shape[d];
    int64_t n = len == 0 ? 1 : (len - 1) / size + 1; /* no overflow for huge sizes */
    tensor **out = calloc((size_t)n, sizeof *out);
    if (!out) {
        err_set("split: out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t start = i * size, l = len - start < size ? len - start : size;
        if (!(out[i] = op_narrow(a, d, start, l))) {
            for (int64_t k = 0; k < i; k++)
                tensor_decref(out[k]);
            free(out);
            return NULL;
        }
    }
    *count = (int)n;
    return out;
}

tensor **op_chunk(tensor *a, int chunks, int dim, int *count)
{
    *count = 0;
    if (chunks <= 0) {
        err_set("chunk: the number of chunks must be positive, got %d", chunks);
        return NULL;
    }
    int d = dim_wrap(dim, a->ndim, "chunk");
    if (d < 0)
        return NULL;
    int64_t size = (a->shape[d] + chunks - 1) / chunks;
    return op_split(a, size > 0 ? size : 1, d, count);
}

/* --- index_select and gather --- */

/* Check that idx holds int64 values in [0, n). */
static int check_indices(const tensor *idx, int64_t n, const char *op)
{
    if (idx->dtype != DT_I64)
        return err_set("%s: indices must be int64, got %s", op, dtype_name(idx->dtype));
    if (tensor_device(idx).type != DEV_CPU)
        return 0; /* the CUDA kernels check bounds themselves */
    tensor *c = tensor_contiguous((tensor *)idx);
    if (!c)
        return -1;
    const int64_t *p = tensor_data(c);
    int64_t m = tensor_numel(c);
    int rc = 0;
    for (int64_t i = 0; i < m && rc == 0; i++)
        if (p[i] < 0 || p[i] >= n)
            /* 1-based as the user wrote it; wrapping, so no overflow at the extremes */
            rc = err_set("%s: index %" PRId64 " is out of range for a dim of size %" PRId64,
                         op, (int64_t)((uint64_t)p[i] + 1), n);
    tensor_decref(c);
    return rc;
}

static void split_dims(const int64_t *shape, int ndim, int d, int64_t *outer, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < d; i++) *outer *= shape[i];
    for (int i = d + 1; i < ndim; i++) *inner *= shape[i];
}

/* index_select and gather differ only in their kernels and in how many indices
 * run along dim (index_select: all of its 1-D index; gather: idx's size at dim). */

/* The gradient of index_select (gather when gather is set): the output gradient
 * added back at the indexed positions of a zero tensor shaped like the input. */
static int index_backward(ag_node *n, tensor *g, tensor **gin, bool gather)
{
    tensor *idx = ag_saved(n, 0);
    if (!idx)
        return -1;
    const ag_edge *e = &n->next[0];
    int d = (int)n->iarg[0];
    int64_t outer, inner, m = gather ? idx->shape[d] : tensor_numel(idx);
    split_dims(e->shape, e->ndim, d, &outer, &inner);
    tensor *z = tensor_zeros(g->dtype, e->ndim, e->shape, tensor_device(g));
    tensor *gc = z ? tensor_contiguous(g) : NULL;
    const backend *be = gc ? ops_backend(g, gather ? "gather" : "index_select") : NULL;
    int rc = !be ? -1
           : gather ? be->scatter_add(z, gc, idx, outer, e->shape[d], m, inner)
                    : be->index_add(z, gc, idx, outer, e->shape[d], m, inner);
    tensor_decref(gc);
    if (rc != 0) {
        tensor_decref(z);
        return -1;
    }
    gin[0] = z;
    return 0;
}

/* The autograd callbacks of index_select and gather. */
static int index_select_backward(ag_node *n, tensor *g, tensor **gin)
{
    return index_backward(n, g, gin, false);
}

static int gather_backward(ag_node *n, tensor *g, tensor **gin)
{
    return index_backward(n, g, gin, true);
}

/* The shared part of index_select and gather (gather when gather is set), once
 * the index's shape was checked: the device and range checks, the kernel into a
 * new tensor of the given shape, and the autograd node. */
static tensor *index_forward(tensor *a, int d, tensor *idx, int ndim, const int64_t *shape,
                             bool gather)
{
    const char *op = gather ? "gather" : "index_select";
    tensor *in[2] = {a, idx};
    if (ops_same_device(op, 2, in, (const char *const[]){"input", "index"}) != 0 ||
        check_indices(idx, a->shape[d], op) != 0)
        return NULL;
    int64_t outer, inner, m = shape[d];
    split_dims(a->shape, a->ndim, d, &outer, &inner);
    tensor *ac = tensor_contiguous(a);
    tensor *ic = ac ? tensor_contiguous(idx) : NULL;
    const backend *be = ic ? ops_backend(a, op) : NULL;
    tensor *out = be ? tensor_empty(a->dtype, ndim, shape, tensor_device(a)) : NULL;
    int rc = !out ? -1
           : gather ? be->gather(out, ac, ic, outer, a->shape[d], m, inner)
                    : be->index_select(out, ac, ic, outer, a->shape[d], m, inner);
    if (rc == 0 && dtype_is_float(a->dtype) && ag_needs(1, &a)) {
        ag_node *n = ag_node_new(op, gather ? gather_backward : index_select_backward, 1, &a);
        rc = n ? ag_save(n, ic) : -1;
        if (rc == 0) {
            n->iarg[0] = d;
            ag_attach(out, n);
        } else {
            ag_node_decref(n);
        }
    }
    tensor_decref(ac);
    tensor_decref(ic);
    if (rc != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}

tensor *op_index_select(tensor *a, int dim, tensor *idx)
{
    int d = dim_wrap(dim, a->ndim, "index_select");
    if (d < 0)
        return NULL;
    if (idx->ndim > 1) {
        err_set("index_select: indices must be 1-D, got %d dims", idx->ndim);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = tensor_numel(idx);
    return index_forward(a, d, idx, a->ndim, shape, false);
}

tensor *op_gather(tensor *a, int dim, tensor *idx)
{
    int d = dim_wrap(dim, a->ndim, "gather");
    if (d < 0)
        return NULL;
    bool ok = idx->ndim == a->ndim;
    for (int i = 0; ok && i < a->ndim; i++)
        ok = i == d || idx->shape[i] == a->shape[i];
    if (!ok) {
        char b1[128], b2[128];
        err_set("gather: index of shape %s must match input %s outside dim %d",
                tensor_shape_str(idx, b1, sizeof b1), tensor_shape_str(a, b2, sizeof b2), d + 1);
        return NULL;
    }
    return index_forward(a, d, idx, idx->ndim, idx->shape, true);
}

/* --- masks --- */

static tensor *nonzero_host(tensor *a);

/* On a GPU: counted on the host (the output's size depends on the values, so the
 * host must wait for them anyway), the positions moved back. */
tensor *op_nonzero(tensor *a)
{
    if (tensor_device(a).type == DEV_CPU)
        return nonzero_host(a);
    tensor *h = tensor_to_device(a, DEVICE_CPU);
    tensor *pos = h ? nonzero_host(h) : NULL;
    tensor *out = pos ? tensor_to_device(pos, tensor_device(a)) : NULL;
    tensor_decref(h);
    tensor_decref(pos);
    return out;
}

static tensor *nonzero_host(tensor *a)
{
    tensor *c = tensor_contiguous(a);
    if (!c)
        return NULL;
    int64_t n = tensor_numel(c), count = 0;
    for (int64_t i = 0; i < n; i++)
        count += dtype_load(c->dtype, tensor_data(c), i) != 0;
    int64_t shape[2] = {count, c->ndim};
    tensor *out = tensor_empty(DT_I64, 2, shape, DEVICE_CPU);
    if (out) {
        int64_t *o = tensor_data(out), row = 0;
        for (int64_t i = 0; i < n; i++) {
            if (dtype_load(c->dtype, tensor_data(c), i) == 0)
                continue;
            int64_t rem = i;
            for (int k = c->ndim - 1; k >= 0; k--) {
                o[row * c->ndim + k] = rem % c->shape[k];
                rem /= c->shape[k];
            }
            row++;
        }
    }
    tensor_decref(c);
    return out;
}

tensor *op_masked_select(tensor *a, tensor *mask)
{
    if (mask->dtype != DT_BOOL) {
        err_set("masked_select: the mask must be a bool tensor, got %s", dtype_name(mask->dtype));
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = shape_broadcast(a->ndim, a->shape, mask->ndim, mask->shape, shape, "masked_select");
    if (nd < 0)
        return NULL;
    /* Flatten both to the common shape; pick the positions the mask marks. */
    tensor *ae = op_expand(a, nd, shape);
    tensor *me = ae ? tensor_broadcast_to(mask, nd, shape, "masked_select") : NULL;
    int64_t n = shape_numel(nd, shape);
    tensor *af = me ? op_reshape(ae, 1, &n) : NULL;
    tensor *mc = af ? tensor_copy_as(me, DT_BOOL) : NULL;
    tensor *mf = mc ? op_reshape(mc, 1, &n) : NULL;
    tensor *pos = mf ? op_nonzero(mf) : NULL;
    int64_t m = pos ? pos->shape[0] : 0;
    tensor *idx = pos ? op_reshape(pos, 1, &m) : NULL;
    tensor *out = idx ? op_index_select(af, 0, idx) : NULL;
    tensor_decref(ae);
    tensor_decref(me);
    tensor_decref(af);
    tensor_decref(mc);
    tensor_decref(mf);
    tensor_decref(pos);
    tensor_decref(idx);
    return out;
}
