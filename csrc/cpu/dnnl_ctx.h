/* oneDNN on the CPU: the one engine and stream the process uses, and the small
 * helpers every kernel that calls oneDNN needs (pooling here; convolution and batch
 * norm too). The kernels describe their tensors with dnnl_ctx_md, build an op
 * descriptor and a primitive descriptor, and hand the buffers to dnnl_ctx_execute.
 *
 * Every function returns 0 (or a valid pointer), or -1 (NULL) with the error
 * message set to "<op>: oneDNN <what> failed (<status>)". */
#ifndef MILES_CPU_DNNL_CTX_H
#define MILES_CPU_DNNL_CTX_H

#include <oneapi/dnnl/dnnl.h>

#include "../tensor.h"

/* The CPU engine, created on first use (thread-safe). */
dnnl_engine_t dnnl_ctx_engine(const char *op);

/* Turn a oneDNN status into our error convention: 0 for success, else -1 with the
 * message naming the op and the call that failed. */
int dnnl_ctx_check(dnnl_status_t st, const char *op, const char *what);

/* A descriptor of a plain row-major tensor of this shape (NCHW for 4 dims) and
 * dtype. oneDNN knows float32 and uint8 of our types; float64 is an error. */
int dnnl_ctx_md(dnnl_memory_desc_t *md, dtype_t dt, int ndim, const int64_t *shape,
                const char *op);
/* A descriptor of t as it is laid out in memory (its shape and strides, so a
 * channels-last tensor is described as NHWC). */
int dnnl_ctx_tensor_md(dnnl_memory_desc_t *md, const tensor *t, const char *op);

/* One argument of a primitive: its DNNL_ARG_* slot, its descriptor (as the
 * primitive descriptor expects it) and the memory it lives in (not copied). */
typedef struct {
    int arg;
    const dnnl_memory_desc_t *md;
    void *data;
} dnnl_ctx_arg;

/* Make the primitive of pd, run it on the stream with these arguments using
 * cpu_num_threads() threads, wait for it, and free what was made for the call.
 * oneDNN's primitive cache makes the repeated creation cheap. */
int dnnl_ctx_execute(const_dnnl_primitive_desc_t pd, int nargs, const dnnl_ctx_arg *args,
                     const char *op);

#endif
