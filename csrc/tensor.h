/* Tensors: a typed, strided view of a refcounted storage on one device.
 *
 * Ownership: every function that returns a tensor * returns a new reference that
 * the caller must release with tensor_decref; tensor * arguments are borrowed.
 * On failure a function returns NULL (or -1) and sets the error message. */
#ifndef MILES_TENSOR_H
#define MILES_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "dtype.h"

#define TENSOR_MAX_DIMS 8

typedef struct storage {
    int refcount;
    device dev;
    void *data;
    size_t nbytes;
    uint64_t version; /* bumped by every in-place write; autograd checks it */
    /* How to give the memory back (NULL: the device allocator). Lets a storage
     * wrap memory it does not own, such as a memory-mapped file. */
    void (*release)(struct storage *st);
    void *release_ud;
} storage;

struct ag_node;

typedef struct tensor {
    int refcount;
    storage *st;
    int64_t offset; /* in elements */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS]; /* in elements; may be 0 (expanded) */
    dtype_t dtype;
    /* autograd */
    bool requires_grad;
    struct tensor *grad;     /* accumulated gradient of a leaf */
    struct ag_node *grad_fn; /* the op that made this tensor, or NULL for a leaf */
} tensor;

/* --- lifetime --- */
tensor *tensor_empty(dtype_t dt, int ndim, const int64_t *shape, device dev);
tensor *tensor_zeros(dtype_t dt, int ndim, const int64_t *shape, device dev);
tensor *tensor_full(dtype_t dt, int ndim, const int64_t *shape, double v, device dev);
tensor *tensor_scalar(dtype_t dt, double v, device dev); /* 0-dim */
/* A tensor over memory the caller keeps alive until release(st) is called. */
tensor *tensor_wrap(dtype_t dt, int ndim, const int64_t *shape, void *data, size_t nbytes,
                    void (*release)(storage *), void *release_ud);
tensor *tensor_incref(tensor *t);
void tensor_decref(tensor *t); /* (NULL: nothing to do) */

/* --- shape queries --- */
int64_t tensor_numel(const tensor *t);
bool tensor_is_contiguous(const tensor *t);
bool tensor_same_shape(const tensor *a, const tensor *b);
device tensor_device(const tensor *t);
/* Address of the first element. */
void *tensor_data(const tensor *t);
/* "[2,3,4]" into buf; returns buf. */
const char *tensor_shape_str(const tensor *t, char *buf, size_t n);
const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
/* Contiguous strides for a shape. */
void shape_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t shape_numel(int ndim, const int64_t *shape);
/* Normalise a 0-based dim that may be negative (-1 = last); -1 with error if out of
 * range. ndim_ok is the number of valid dims (ndim, or ndim+1 for unsqueeze). */
int dim_wrap(int dim, int ndim_ok, const char *op);
/* Broadcast two shapes NumPy-style into out (returns ndim, or -1 on mismatch). */
int shape_broadcast(int na, const int64_t *a, int nb, const int64_t *b, int64_t *out,
                    const char *op);

/* --- views (share storage; no autograd here: see ops/view.c) --- */
tensor *tensor_as_strided(const tensor *t, int ndim, const int64_t *shape,
                          const int64_t *stride, int64_t offset);
/* A view of t broadcast to shape (stride 0 on the new or size-1 dims). */
tensor *tensor_broadcast_to(const tensor *t, int ndim, const int64_t *shape, const char *op);
/* A view with dims reordered, or NULL if perm is not a permutation. */
tensor *tensor_permuted(const tensor *t, const int *perm);
/* A view with a new shape if the strides allow it, else NULL (no error set). */
tensor *tensor_view_try(const tensor *t, int ndim, const int64_t *shape);

/* --- layouts --- */
/* Is t dense: its elements fill its storage range without gaps or overlaps, in
 * some order of its dims (contiguous, or a permutation such as channels-last)? */
bool tensor_is_dense(const tensor *t);
/* May an elementwise write into dst that reads src at the same index read an
 * element it has already written? Only when both view one storage, their spans
 * meet, and the layouts differ (an identical layout reads each element before
 * writing it). */
bool tensor_copy_overlaps(const tensor *dst, const tensor *src);
/* Is t a dense 4-D tensor stored channels-last (NHWC in memory, NCHW in shape)? */
bool tensor_is_channels_last(const tensor *t);
/* An uninitialised tensor of t's shape on t's device, laid out in memory like t
 * when t is dense (so channels-last stays channels-last), else contiguous. */
tensor *tensor_empty_like(const tensor *t, dtype_t dt);
/* The same on another device. */
tensor *tensor_empty_like_on(const tensor *t, dtype_t dt, device dev);
/* An uninitialised channels-last tensor of a 4-D shape. */
tensor *tensor_empty_channels_last(dtype_t dt, const int64_t *shape, device dev);
/* t itself (a new reference) when it is channels-last, else a channels-last copy. */
tensor *tensor_channels_last(tensor *t);


/* --- data movement (plain kernels, no autograd) --- */
/* A copy of t on dev in t's dtype, laid out like t when t is dense. */
tensor *tensor_to_device(const tensor *t, device dev);
/* A contiguous tensor with t's values: t itself (new reference) when already so. */
tensor *tensor_contiguous(tensor *t);
/* A contiguous copy of t converted to dt (always a new storage). */
tensor *tensor_copy_as(const tensor *t, dtype_t dt);
/* The same, channels-last (t 4-D). */
tensor *tensor_copy_channels_last(const tensor *t, dtype_t dt);
/* dst[...] = src[...] with broadcasting of src and dtype conversion; the two may
 * be on different devices. */
int tensor_copy_into(tensor *dst, const tensor *src);
int tensor_fill(tensor *t, double v);
/* Read one element (index in elements of each dim, 0-based). */
double tensor_get(const tensor *t, const int64_t *idx);
/* Value of a tensor with one element. */
int tensor_item(const tensor *t, double *out);
/* Mark an in-place write, so saved copies for backward can detect it. */
void tensor_bump_version(tensor *t);

#endif
