#include "tensor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "autograd.h"
#include "cuda/cuda_backend.h"
#include "dispatch.h"
#include "error.h"

/* --- storage --- */

static storage *storage_new(device dev, size_t nbytes)
{
    storage *st = calloc(1, sizeof *st);
    if (!st) {
        err_set("out of memory allocating a storage header");
        return NULL;
    }
    st->data = alloc_bytes(dev, nbytes);
    if (!st->data) {
        free(st);
        return NULL;
    }
    st->refcount = 1;
    st->dev = dev;
    st->nbytes = nbytes;
    return st;
}

static void storage_decref(storage *st)
{
    if (!st || --st->refcount > 0)
        return;
    if (st->release)
        st->release(st);
    else
        alloc_release(st->dev, st->data, st->nbytes);
    free(st);
}

/* --- shapes --- */

int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

void shape_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? "," : "", shape[i]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
    return buf;
}

const char *tensor_shape_str(const tensor *t, char *buf, size_t n)
{
    return shape_str(t->ndim, t->shape, buf, n);
}

int dim_wrap(int dim, int ndim_ok, const char *op)
{
    int d = dim < 0 ? dim + ndim_ok : dim;
    if (d < 0 || d >= ndim_ok || ndim_ok == 0) {
        /* Report it in Lua's 1-based numbering, which is what users type. */
        err_set("%s: dim %d out of range for a tensor of %d dims", op,
                dim >= 0 ? dim + 1 : dim, ndim_ok);
        return -1;
    }
    return d;
}

int shape_broadcast(int na, const int64_t *a, int nb, const int64_t *b, int64_t *out,
                    const char *op)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char ba[128], bb[128];
            err_set("%s: shapes %s and %s cannot be broadcast (dim %d: %" PRId64
                    " ~= %" PRId64 ")", op, shape_str(na, a, ba, sizeof ba),
                    shape_str(nb, b, bb, sizeof bb), i + 1, sa, sb);
            return -1;
        }
        out[i] = sa == 1 ? sb : sa;
    }
    return n;
}

/* --- lifetime --- */

static tensor *tensor_header(dtype_t dt, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) {
        err_set("tensors have at most %d dims, got %d", TENSOR_MAX_DIMS, ndim);
        return NULL;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            err_set("negative size %" PRId64 " in dim %d", shape[i], i + 1);
            return NULL;
        }
        /* Every later numel computation relies on this product fitting. */
        if (__builtin_mul_overflow(numel, shape[i], &numel)) {
            char b[160];
            err_set("a tensor of shape %s has too many elements",
                    shape_str(ndim, shape, b, sizeof b));
            return NULL;
        }
    }
    tensor *t = calloc(1, sizeof *t);
    if (!t) {
        err_set("out of memory allocating a tensor header");
        return NULL;
    }
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim > 0)
        memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    shape_strides(ndim, shape, t->stride);
    return t;
}

tensor *tensor_empty(dtype_t dt, int ndim, const int64_t *shape, device dev)
{
    tensor *t = tensor_header(dt, ndim, shape);
    if (!t)
        return NULL;
    int64_t n = shape_numel(ndim, shape);
    if (n > (int64_t)(SIZE_MAX / 16)) {
        free(t);
        err_set("tensor of %" PRId64 " elements is too large", n);
        return NULL;
    }
    t->st = storage_new(dev, (size_t)n * dtype_size(dt));
    if (!t->st) {
        free(t);
        return NULL;
    }
    return t;
}

tensor *tensor_full(dtype_t dt, int ndim, const int64_t *shape, double v, device dev)
{
    tensor *t = tensor_empty(dt, ndim, shape, dev);
    if (t && tensor_fill(t, v) != 0) {
        tensor_decref(t);
        return NULL;
    }
    return t;
}

tensor *tensor_zeros(dtype_t dt, int ndim, const int64_t *shape, device dev)
{
    return tensor_full(dt, ndim, shape, 0.0, dev);
}

tensor *tensor_scalar(dtype_t dt, double v, device dev)
{
    return tensor_full(dt, 0, NULL, v, dev);
}

tensor *tensor_wrap(dtype_t dt, int ndim, const int64_t *shape, void *data, size_t nbytes,
                    void (*release)(storage *), void *release_ud)
{
    tensor *t = tensor_header(dt, ndim, shape);
    if (!t)
        return NULL;
    t->st = calloc(1, sizeof *t->st);
    if (!t->st) {
        free(t);
        err_set("out of memory allocating a storage header");
        return NULL;
    }
    *t->st = (storage){.refcount = 1, .dev = DEVICE_CPU, .data = data, .nbytes = nbytes,
                       .release = release, .release_ud = release_ud};
    return t;
}

tensor *tensor_incref(tensor *t)
{
    if (t)
        t->refcount++;
    return t;
}

void tensor_decref(tensor *t)
{
    if (!t || --t->refcount > 0)
        return;
    tensor_decref(t->grad);
    ag_node_decref(t->grad_fn);
    storage_decref(t->st);
    free(t);
}

/* --- queries --- */

int64_t tensor_numel(const tensor *t)
{
    return shape_numel(t->ndim, t->shape);
}

/* Row-major without gaps. A tensor with no elements is contiguous whatever its
 * strides, as in PyTorch. */
bool tensor_is_contiguous(const tensor *t)
{
    if (tensor_numel(t) == 0)
        return true;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

bool tensor_same_shape(const tensor *a, const tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

device tensor_device(const tensor *t)
{
    return t->st->dev;
}

void *tensor_data(const tensor *t)
{
    return (char *)t->st->data + t->offset * (int64_t)dtype_size(t->dtype);
}

/* --- views --- */

tensor *tensor_as_strided(const tensor *t, int ndim, const int64_t *shape,
                          const int64_t *stride, int64_t offset)
{
    tensor *v = tensor_header(t->dtype, ndim, shape);
    if (!v)
        return NULL;
    if (ndim > 0)
        memcpy(v->stride, stride, sizeof(int64_t) * (size_t)ndim);
    v->offset = offset;
    v->st = t->st;
    t->st->refcount++;
    return v;
}

tensor *tensor_broadcast_to(const tensor *t, int ndim, const int64_t *shape, const char *op)
{
    if (ndim < t->ndim) {
        char b1[128], b2[128];
        err_set("%s: cannot expand %s to %s", op, tensor_shape_str(t, b1, sizeof b1),
                shape_str(ndim, shape, b2, sizeof b2));
        return NULL;
    }
    int64_t stride[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int j = i - (ndim - t->ndim);
        if (j < 0) {
            stride[i] = 0;
        } else if (t->shape[j] == shape[i]) {
            stride[i] = t->stride[j];
        } else if (t->shape[j] == 1) {
            stride[i] = 0;
        } else {
            char b1[128], b2[128];
            err_set("%s: cannot expand %s to %s (dim %d: %" PRId64 " ~= %" PRId64 ")", op,
                    tensor_shape_str(t, b1, sizeof b1), shape_str(ndim, shape, b2, sizeof b2),
                    i + 1, t->shape[j], shape[i]);
            return NULL;
        }
    }
    return tensor_as_strided(t, ndim, shape, stride, t->offset);
}

tensor *tensor_permuted(const tensor *t, const int *perm)
{
    int64_t shape[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= t->ndim || seen[p])
            return NULL;
        seen[p] = true;
        shape[i] = t->shape[p];
        stride[i] = t->stride[p];
    }
    return tensor_as_strided(t, t->ndim, shape, stride, t->offset);
}

/* Compute strides for viewing t as `shape` without copying, if possible: each run
 * of dims of the new shape must map onto a run of old dims that is itself
 * contiguous in memory (the rule PyTorch's view follows). */
tensor *tensor_view_try(const tensor *t, int ndim, const int64_t *shape)
{
    int64_t stride[TENSOR_MAX_DIMS];
    if (tensor_numel(t) == 0 || tensor_is_contiguous(t)) {
        shape_strides(ndim, shape, stride);
        return tensor_as_strided(t, ndim, shape, stride, t->offset);
    }
    int oi = 0, ni = 0;
    while (oi < t->ndim || ni < ndim) {
        /* Skip size-1 dims on both sides: they constrain nothing. */
        if (ni < ndim && shape[ni] == 1) {
            stride[ni] = 1;
            ni++;
            continue;
        }
        if (oi < t->ndim && t->shape[oi] == 1) {
            oi++;
            continue;
        }
        if (oi >= t->ndim || ni >= ndim)
            return NULL;
        /* Take a chunk of old dims and a chunk of new dims with the same numel. */
        int o0 = oi, n0 = ni;
        int64_t po = t->shape[oi++], pn = shape[ni++];
        while (po != pn) {
            if (po < pn) {
                if (oi >= t->ndim)
                    return NULL;
                if (t->shape[oi] == 1) { oi++; continue; }
                po *= t->shape[oi++];
            } else {
                if (ni >= ndim)
                    return NULL;
                pn *= shape[ni++];
            }
        }
        /* The old chunk must be contiguous within itself. */
        int last = -1;
        for (int k = o0; k < oi; k++) {
            if (t->shape[k] == 1)
                continue;
            if (last >= 0 && t->stride[last] != t->stride[k] * t->shape[k])
                return NULL;
            last = k;
        }
        int64_t s = last >= 0 ? t->stride[last] : 1;
        for (int k = ni - 1; k >= n0; k--) {
            stride[k] = s;
            s *= shape[k];
        }
    }
    return tensor_as_strided(t, ndim, shape, stride, t->offset);
}

/* --- data movement --- */

tensor *tensor_to_device(const tensor *t, device dev)
{
    tensor *out = tensor_empty_like_on(t, t->dtype, dev);
    if (out && tensor_copy_into(out, t) != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}

tensor *tensor_contiguous(tensor *t)
{
    if (tensor_is_contiguous(t))
        return tensor_incref(t);
    return tensor_copy_as(t, t->dtype);
}

/* out (new, uninitialised; NULL: none) holding t's values, or NULL. */
static tensor *filled_from(tensor *out, const tensor *t)
{
    if (out && tensor_copy_into(out, t) != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}

tensor *tensor_copy_as(const tensor *t, dtype_t dt)
{
    return filled_from(tensor_empty(dt, t->ndim, t->shape, tensor_device(t)), t);
}

tensor *tensor_copy_channels_last(const tensor *t, dtype_t dt)
{
    return filled_from(tensor_empty_channels_last(dt, t->shape, tensor_device(t)), t);
}

/* Do a and b view the same elements in the same layout (so an elementwise copy
 * from one to the other reads each element before it is written)? */
static bool same_layout(const tensor *a, const tensor *b)
{
    if (a->st != b->st || a->offset != b->offset || a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || (a->shape[i] > 1 && a->stride[i] != b->stride[i]))
            return false;
    return true;
}

/* The span of storage elements [*lo, *hi] that t can touch (strides are >= 0). */
static void element_span(const tensor *t, int64_t *lo, int64_t *hi)
{
    *lo = *hi = t->offset;
    for (int i = 0; i < t->ndim; i++)
        *hi += (t->shape[i] - 1) * t->stride[i];
}

bool tensor_copy_overlaps(const tensor *dst, const tensor *src)
{
    if (dst->st != src->st || tensor_numel(dst) == 0)
        return false;
    int64_t dlo, dhi, slo, shi;
    element_span(dst, &dlo, &dhi);
    element_span(src, &slo, &shi);
    /* compared in bytes: the two may have different dtypes over one storage */
    int64_t ds = (int64_t)dtype_size(dst->dtype), ss = (int64_t)dtype_size(src->dtype);
    if ((dhi + 1) * ds <= slo * ss || (shi + 1) * ss <= dlo * ds)
        return false;
    return !same_layout(dst, src);
}

int tensor_copy_into(tensor *dst, const tensor *src)
{
    tensor *s = tensor_broadcast_to(src, dst->ndim, dst->shape, "copy");
    if (!s)
        return -1;
    if (!device_eq(tensor_device(dst), tensor_device(s))) {
        int rc;
        if (tensor_numel(src) < tensor_numel(dst)) {
            /* a broadcast source (a scalar, a row): move it as it is, then
             * broadcast there, rather than moving every repeated element */
            tensor *moved = tensor_to_device(src, tensor_device(dst));
            rc = moved ? tensor_copy_into(dst, moved) : -1;
            tensor_decref(moved);
        } else {
            rc = cuda_copy_across(dst, s);
            tensor_bump_version(dst);
        }
        tensor_decref(s);
        return rc;
    }
    /* A source that overlaps the destination in another layout (x:copy_(x:t()))
     * would be read after being overwritten: copy it out first. */
    if (tensor_copy_overlaps(dst, s)) {
        tensor *tmp = tensor_copy_as(s, s->dtype);
        tensor_decref(s);
        if (!tmp)
            return -1;
        s = tmp;
    }
    const backend *be = dispatch_backend(tensor_device(dst), "copy");
    int rc = be ? be->copy(dst, s) : -1;
    tensor_decref(s);
    tensor_bump_version(dst);
    return rc;
}

int tensor_fill(tensor *t, double v)
{
    const backend *be = dispatch_backend(tensor_device(t), "fill");
    if (!be)
        return -1;
    tensor_bump_version(t);
    return be->fill(t, v);
}

double tensor_get(const tensor *t, const int64_t *idx)
{
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++)
        off += idx[i] * t->stride[i];
    return dtype_load(t->dtype, tensor_data(t), off);
}

int tensor_item(const tensor *t, double *out)
{
    if (tensor_numel(t) != 1) {
        char b[128];
        return err_set("item: a tensor of shape %s has %" PRId64 " elements, not 1",
                       tensor_shape_str(t, b, sizeof b), tensor_numel(t));
    }
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    if (tensor_device(t).type == DEV_CPU) {
        *out = tensor_get(t, idx);
        return 0;
    }
    tensor *h = tensor_to_device(t, DEVICE_CPU); /* waits for the GPU */
    if (!h)
        return -1;
    *out = tensor_get(h, idx);
    tensor_decref(h);
    return 0;
}

void tensor_bump_version(tensor *t)
{
    t->st->version++;
}

/* --- layouts --- */

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

bool tensor_is_dense(const tensor *t)
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

bool tensor_is_channels_last(const tensor *t)
{
    if (t->ndim != 4)
        return false;
    const int64_t *s = t->shape, *st = t->stride;
    return (s[1] == 1 || st[1] == 1) && (s[3] == 1 || st[3] == s[1]) &&
           (s[2] == 1 || st[2] == s[1] * s[3]) && (s[0] == 1 || st[0] == s[1] * s[2] * s[3]);
}

tensor *tensor_empty_like(const tensor *t, dtype_t dt)
{
    return tensor_empty_like_on(t, dt, tensor_device(t));
}

tensor *tensor_empty_like_on(const tensor *t, dtype_t dt, device dev)
{
    tensor *out = tensor_empty(dt, t->ndim, t->shape, dev);
    if (!out || tensor_is_contiguous(t) || !tensor_is_dense(t))
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

tensor *tensor_empty_channels_last(dtype_t dt, const int64_t *shape, device dev)
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

tensor *tensor_channels_last(tensor *t)
{
    if (tensor_is_channels_last(t))
        return tensor_incref(t);
    tensor *out = tensor_empty_channels_last(t->dtype, t->shape, tensor_device(t));
    if (out && tensor_copy_into(out, t) != 0) {
        tensor_decref(out);
        return NULL;
    }
    return out;
}
