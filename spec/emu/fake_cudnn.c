/* A fake cuDNN for the emulated GPU (make EMU=1): the backend (graph) API calls
 * that csrc/cuda/cudnn_graph.c, cudnn_conv.c and cudnn_norm.c make, so that their
 * descriptors, layouts, engine choice and fusions are checked on any machine. It
 * follows cuDNN's documented conventions, not our code's:
 *  - tensors: dimensions in N, C, H, W order (filters K, C/groups, R, S) whatever
 *    the memory layout, which the strides give; groups = x's C / w's C;
 *  - convolution forward y = x (*) w, backward data dx = dy (*)^T w, backward
 *    filter dw = x (*) dy, cross-correlation with pre/post paddings, strides and
 *    dilations, alpha 1 and beta 0 only (what miles asks);
 *  - pointwise operations after a convolution or a batch norm whose output is
 *    virtual: an addition with broadcasting (a bias [1, C, 1, 1], a residual)
 *    and a relu (max(x, 0), lower clip 0), each reading the virtual output of
 *    the one before; a relu backward (dx = dy where x > 0) before a batch norm
 *    backward; a relu, sigmoid or tanh, or a relu backward, on its own;
 *  - batch norm (the norm operations in CUDNN_BATCH_NORM mode): per-channel
 *    tensors [1, C, 1, 1]; in training the batch's mean and 1/sqrt(var + eps)
 *    (the biased variance) are outputs, epsilon and the running average's
 *    factor are by-value scalars, and the running statistics, when given (all
 *    four), are next = (1 - factor) * previous + factor * batch, with the
 *    unbiased variance (as cuDNN's legacy batch norm and PyTorch's running
 *    variance); in inference the mean and 1/std are inputs; the backward gives
 *    dx, dscale and dbias from the saved mean and 1/std;
 *  - resampling as pooling (max, average with or without the padding counted),
 *    windows, strides and paddings as fractions n/1, padding with -inf or 0;
 *    max pooling's forward may write the index of each maximum (int8, its place
 *    r * window_w + s in the window, the first maximum or NaN), which its
 *    backward reads;
 *  - heuristics propose engine configs (three in mode A, with tensor-core and
 *    non-deterministic notes on two of them; one in fallback mode), plans have a
 *    workspace that execution must be given.
 * A descriptor set up against these rules fails to finalize with a message
 * (cudnnGetLastErrorString). MILES_FAKE_CUDNN_REFUSE lists what no engine takes,
 * as real engines sometimes do not, so that our fallbacks run: "fused" (a graph
 * of more than the convolution or batch norm), "nhwc" (channels-last
 * activations), "norm" (a graph with a batch norm), "pool" (a resample),
 * "pool_bwd" (a resample backward), "act" (a lone activation or relu backward),
 * "all" (every graph). MILES_FAKE_CUDNN_COST (default 1) is what an execution
 * costs on the fake runtime's clock, in queued operations: when it is large, our
 * kernels time faster. Execution computes in double, on the fake runtime's
 * host memory, at once or as a node of a CUDA graph being captured. */
#include <cudnn.h>

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../c/fake_cudart.h"

#define MAX_ATTRS 24
#define MAX_OPS 4
#define MAX_PACK 16
#define N_ENGINES 3
#define ENGINE_WORKSPACE 4096

struct cudnnContext {
    cudaStream_t stream;
};

typedef struct {
    cudnnBackendAttributeName_t name;
    cudnnBackendAttributeType_t type;
    int64_t count;
    void *values;
} attr;

typedef struct fdesc {
    cudnnBackendDescriptorType_t type;
    bool finalized;
    attr attrs[MAX_ATTRS];
    int nattr;
    /* engine configs and engines: filled by the heuristics */
    int engine;
    struct fdesc *graph;
} fdesc;

static char last_error[256];

static cudnnStatus_t fail(cudnnStatus_t s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

const char *cudnnGetErrorString(cudnnStatus_t status)
{
    return status == CUDNN_STATUS_SUCCESS ? "CUDNN_STATUS_SUCCESS" : "CUDNN_STATUS_FAKE_ERROR";
}

void cudnnGetLastErrorString(char *message, size_t max_size)
{
    if (max_size > 0) {
        snprintf(message, max_size, "%s", last_error);
        last_error[0] = '\0';
    }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    *handle = calloc(1, sizeof **handle);
    return *handle ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
{
    free(handle);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId)
{
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}

/* --- descriptors and attributes --- */

static size_t type_size(cudnnBackendAttributeType_t t)
{
    switch (t) {
    case CUDNN_TYPE_INT64: return sizeof(int64_t);
    case CUDNN_TYPE_FLOAT: return sizeof(float);
    case CUDNN_TYPE_DOUBLE: return sizeof(double);
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
    case CUDNN_TYPE_FRACTION: return sizeof(cudnnFraction_t);
    case CUDNN_TYPE_VOID_PTR:
    case CUDNN_TYPE_HANDLE:
    case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(void *);
    default: return sizeof(int); /* the enums */
    }
}

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t descriptorType,
                                           cudnnBackendDescriptor_t *descriptor)
{
    fdesc *d = calloc(1, sizeof *d);
    if (!d)
        return CUDNN_STATUS_ALLOC_FAILED;
    d->type = descriptorType;
    *descriptor = d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t descriptor)
{
    fdesc *d = descriptor;
    if (!d)
        return CUDNN_STATUS_BAD_PARAM;
    /* queued executions read their graph's descriptors when they run (a real
     * GPU needs none of them by then): let those run first */
    if (d->type == CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_TENSOR_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_NORM_BACKWARD_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_RESAMPLE_FWD_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_OPERATION_RESAMPLE_BWD_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_RESAMPLE_DESCRIPTOR ||
        d->type == CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR || d->type == CUDNN_BACKEND_POINTWISE_DESCRIPTOR)
        fake_gpu_catch_up();
    for (int i = 0; i < d->nattr; i++)
        free(d->attrs[i].values);
    free(d);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t descriptor,
                                       cudnnBackendAttributeName_t attributeName,
                                       cudnnBackendAttributeType_t attributeType,
                                       int64_t elementCount, const void *arrayOfElements)
{
    fdesc *d = descriptor;
    if (!d || elementCount < 0 || (elementCount > 0 && !arrayOfElements))
        return fail(CUDNN_STATUS_BAD_PARAM, "set attribute %d: bad arguments", attributeName);
    if (d->finalized)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "attribute %d set after finalization",
                    attributeName);
    attr *a = NULL;
    for (int i = 0; i < d->nattr && !a; i++)
        if (d->attrs[i].name == attributeName)
            a = &d->attrs[i];
    if (!a) {
        if (d->nattr == MAX_ATTRS)
            return fail(CUDNN_STATUS_NOT_SUPPORTED, "too many attributes");
        a = &d->attrs[d->nattr++];
    } else {
        free(a->values);
    }
    size_t n = (size_t)elementCount * type_size(attributeType);
    a->name = attributeName;
    a->type = attributeType;
    a->count = elementCount;
    a->values = malloc(n ? n : 1);
    memcpy(a->values, arrayOfElements, n);
    return CUDNN_STATUS_SUCCESS;
}

static const attr *get(const fdesc *d, cudnnBackendAttributeName_t name)
{
    for (int i = 0; i < d->nattr; i++)
        if (d->attrs[i].name == name)
            return &d->attrs[i];
    return NULL;
}

/* The attribute's values if it is there with this type and count (count < 0: any). */
static const void *want(const fdesc *d, cudnnBackendAttributeName_t name,
                        cudnnBackendAttributeType_t type, int64_t count)
{
    const attr *a = get(d, name);
    if (!a || a->type != type || (count >= 0 && a->count != count))
        return NULL;
    return a->values;
}

static const fdesc *child(const fdesc *d, cudnnBackendAttributeName_t name)
{
    const void *v = want(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1);
    return v ? *(fdesc *const *)v : NULL;
}

/* --- tensors --- */

typedef struct {
    int nd;
    const int64_t *dim, *stride;
    int64_t uid, align;
    cudnnDataType_t dt;
    bool is_virtual, by_value;
} ftensor;

static bool tensor_of(const fdesc *d, ftensor *t)
{
    if (!d || d->type != CUDNN_BACKEND_TENSOR_DESCRIPTOR || !d->finalized)
        return false;
    const attr *dims = get(d, CUDNN_ATTR_TENSOR_DIMENSIONS);
    t->nd = (int)dims->count;
    t->dim = dims->values;
    t->stride = want(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, -1);
    t->uid = *(const int64_t *)want(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1);
    t->align = *(const int64_t *)want(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1);
    t->dt = *(const cudnnDataType_t *)want(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1);
    const bool *v = want(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1);
    t->is_virtual = v && *v;
    const bool *bv = want(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1);
    t->by_value = bv && *bv;
    return true;
}

static cudnnStatus_t finalize_tensor(fdesc *d)
{
    const attr *dims = get(d, CUDNN_ATTR_TENSOR_DIMENSIONS), *st = get(d, CUDNN_ATTR_TENSOR_STRIDES);
    const cudnnDataType_t *dt = want(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1);
    if (!dims || !st || dims->type != CUDNN_TYPE_INT64 || st->type != CUDNN_TYPE_INT64 ||
        dims->count != st->count || dims->count < 1 || !dt ||
        !want(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1) ||
        !want(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1))
        return fail(CUDNN_STATUS_BAD_PARAM, "tensor: dims, strides, type, uid and alignment "
                                            "are required, dims and strides alike");
    if (*dt != CUDNN_DATA_FLOAT && *dt != CUDNN_DATA_DOUBLE && *dt != CUDNN_DATA_BFLOAT16 &&
        *dt != CUDNN_DATA_INT8)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "tensor: data type %d", *dt);
    const bool *v = want(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1),
               *bv = want(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1);
    if (v && *v && bv && *bv)
        return fail(CUDNN_STATUS_BAD_PARAM, "tensor: virtual and by value");
    const int64_t *dv = dims->values, *sv = st->values;
    for (int64_t i = 0; i < dims->count; i++)
        if (dv[i] < 1 || sv[i] < 1)
            return fail(CUDNN_STATUS_BAD_PARAM, "tensor: dim %lld is %lld, stride %lld",
                        (long long)i, (long long)dv[i], (long long)sv[i]);
    return CUDNN_STATUS_SUCCESS;
}

static double load(const void *p, cudnnDataType_t dt, int64_t i)
{
    switch (dt) {
    case CUDNN_DATA_FLOAT: return ((const float *)p)[i];
    case CUDNN_DATA_DOUBLE: return ((const double *)p)[i];
    default: {
        uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    }
}

static void store(void *p, cudnnDataType_t dt, int64_t i, double v)
{
    switch (dt) {
    case CUDNN_DATA_FLOAT: ((float *)p)[i] = (float)v; break;
    case CUDNN_DATA_DOUBLE: ((double *)p)[i] = v; break;
    default: { /* bf16: round to nearest even (a NaN stays a quiet NaN) */
        float f = (float)v;
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        if ((bits & 0x7fffffffu) > 0x7f800000u)
            bits |= 0x00400000u;
        else
            bits += 0x7fffu + ((bits >> 16) & 1u);
        ((uint16_t *)p)[i] = (uint16_t)(bits >> 16);
    }
    }
}

static int64_t offset4(const ftensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return a * t->stride[0] + b * t->stride[1] + c * t->stride[2] + d * t->stride[3];
}

/* --- operations --- */

typedef enum {
    OP_FWD, OP_BWD_DATA, OP_BWD_FILTER, OP_ADD, OP_RELU, OP_RELU_BWD, OP_NORM_FWD, OP_NORM_BWD,
    OP_POOL_FWD, OP_POOL_BWD, OP_SIGMOID, OP_TANH
} op_kind;

/* An operation's tensors by slot. Convolutions: x (or dx), w (or dw), y (or dy);
 * add: x, b, y; relu: x, -, y; relu backward: x, dy, dx; resample: x (or dx),
 * index, y (or dy); the norms: below. */
enum { CX, CW, CY };
enum {
    NF_X, NF_SCALE, NF_BIAS, NF_EPS, NF_FACTOR, NF_RMEAN_IN, NF_RVAR_IN, NF_RMEAN_OUT,
    NF_RVAR_OUT, NF_MEAN, NF_INVSTD, NF_Y, N_SLOTS
};
enum { NB_X, NB_DY, NB_SCALE, NB_MEAN, NB_INVSTD, NB_DSCALE, NB_DBIAS, NB_DX };

typedef struct {
    op_kind kind;
    ftensor t[N_SLOTS];
    bool has[N_SLOTS];
    bool training;                               /* the norm forward's phase */
    int64_t pre[2], post[2], stride[2], dil[2]; /* a convolution's geometry */
    int64_t window[2];                          /* and a resample's, with these */
    cudnnResampleMode_t resample;
    cudnnPaddingMode_t padding;
    double clip_lo, clip_hi; /* a relu's clips (cuDNN's defaults unless set) */
} fop;

/* A relu's clip attribute, given as a float or a double; dflt when absent. */
static double clip_attr(const fdesc *pw, cudnnBackendAttributeName_t name, double dflt)
{
    const float *f = want(pw, name, CUDNN_TYPE_FLOAT, 1);
    const double *d = want(pw, name, CUDNN_TYPE_DOUBLE, 1);
    return f ? *f : d ? *d : dflt;
}

/* A resample descriptor's fraction attribute (2 values, denominators 1) into v. */
static bool fractions(const fdesc *d, cudnnBackendAttributeName_t name, int64_t *v)
{
    const cudnnFraction_t *f = want(d, name, CUDNN_TYPE_FRACTION, 2);
    if (!f || f[0].denominator != 1 || f[1].denominator != 1)
        return false;
    v[0] = f[0].numerator;
    v[1] = f[1].numerator;
    return true;
}

/* A resample operation's geometry from its descriptor. */
static bool resample_of(const fdesc *r, fop *o)
{
    const cudnnResampleMode_t *mode = r ? want(r, CUDNN_ATTR_RESAMPLE_MODE, CUDNN_TYPE_RESAMPLE_MODE, 1) : NULL;
    const cudnnPaddingMode_t *pad = want(r, CUDNN_ATTR_RESAMPLE_PADDING_MODE, CUDNN_TYPE_PADDING_MODE, 1);
    if (!mode || !pad || !r->finalized)
        return false;
    o->resample = *mode;
    o->padding = *pad;
    return fractions(r, CUDNN_ATTR_RESAMPLE_WINDOW_DIMS, o->window) &&
           fractions(r, CUDNN_ATTR_RESAMPLE_STRIDES, o->stride) &&
           fractions(r, CUDNN_ATTR_RESAMPLE_PRE_PADDINGS, o->pre) &&
           fractions(r, CUDNN_ATTR_RESAMPLE_POST_PADDINGS, o->post);
}

/* The norm operations' tensor attributes by slot. */
static const cudnnBackendAttributeName_t norm_fwd_attrs[N_SLOTS] = {
    [NF_X] = CUDNN_ATTR_OPERATION_NORM_FWD_XDESC,
    [NF_SCALE] = CUDNN_ATTR_OPERATION_NORM_FWD_SCALE_DESC,
    [NF_BIAS] = CUDNN_ATTR_OPERATION_NORM_FWD_BIAS_DESC,
    [NF_EPS] = CUDNN_ATTR_OPERATION_NORM_FWD_EPSILON_DESC,
    [NF_FACTOR] = CUDNN_ATTR_OPERATION_NORM_FWD_EXP_AVG_FACTOR_DESC,
    [NF_RMEAN_IN] = CUDNN_ATTR_OPERATION_NORM_FWD_INPUT_RUNNING_MEAN_DESC,
    [NF_RVAR_IN] = CUDNN_ATTR_OPERATION_NORM_FWD_INPUT_RUNNING_VAR_DESC,
    [NF_RMEAN_OUT] = CUDNN_ATTR_OPERATION_NORM_FWD_OUTPUT_RUNNING_MEAN_DESC,
    [NF_RVAR_OUT] = CUDNN_ATTR_OPERATION_NORM_FWD_OUTPUT_RUNNING_VAR_DESC,
    [NF_MEAN] = CUDNN_ATTR_OPERATION_NORM_FWD_MEAN_DESC,
    [NF_INVSTD] = CUDNN_ATTR_OPERATION_NORM_FWD_INV_VARIANCE_DESC,
    [NF_Y] = CUDNN_ATTR_OPERATION_NORM_FWD_YDESC,
};
static const cudnnBackendAttributeName_t norm_bwd_attrs[NB_DX + 1] = {
    [NB_X] = CUDNN_ATTR_OPERATION_NORM_BWD_XDESC,
    [NB_DY] = CUDNN_ATTR_OPERATION_NORM_BWD_DYDESC,
    [NB_SCALE] = CUDNN_ATTR_OPERATION_NORM_BWD_SCALE_DESC,
    [NB_MEAN] = CUDNN_ATTR_OPERATION_NORM_BWD_MEAN_DESC,
    [NB_INVSTD] = CUDNN_ATTR_OPERATION_NORM_BWD_INV_VARIANCE_DESC,
    [NB_DSCALE] = CUDNN_ATTR_OPERATION_NORM_BWD_DSCALE_DESC,
    [NB_DBIAS] = CUDNN_ATTR_OPERATION_NORM_BWD_DBIAS_DESC,
    [NB_DX] = CUDNN_ATTR_OPERATION_NORM_BWD_DXDESC,
};

/* Slot i from attribute name when d has it: false when it is there but is not
 * a finalized tensor. */
static bool slot(const fdesc *d, fop *o, int i, cudnnBackendAttributeName_t name)
{
    if (!get(d, name))
        return true;
    o->has[i] = true;
    return tensor_of(child(d, name), &o->t[i]);
}

/* Slots 0, 1, 2 from these attributes (0: none). */
static bool slots3(const fdesc *d, fop *o, cudnnBackendAttributeName_t a0,
                   cudnnBackendAttributeName_t a1, cudnnBackendAttributeName_t a2)
{
    const cudnnBackendAttributeName_t a[3] = {a0, a1, a2};
    for (int i = 0; i < 3; i++)
        if (a[i] && (!get(d, a[i]) || !slot(d, o, i, a[i])))
            return false;
    return true;
}

static bool op_of(const fdesc *d, fop *o)
{
    memset(o, 0, sizeof *o);
    cudnnBackendAttributeName_t ax, aw, ay, ac;
    switch (d->type) {
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
        o->kind = OP_FWD;
        ax = CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X;
        aw = CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W;
        ay = CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y;
        ac = CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC;
        break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
        o->kind = OP_BWD_DATA;
        ax = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX;
        aw = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W;
        ay = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY;
        ac = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC;
        break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
        o->kind = OP_BWD_FILTER;
        ax = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X;
        aw = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW;
        ay = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY;
        ac = CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC;
        break;
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: {
        const fdesc *pw = child(d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR);
        const cudnnPointwiseMode_t *m =
            pw ? want(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1) : NULL;
        if (!m || !pw->finalized)
            return false;
        o->clip_lo = clip_attr(pw, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP, 0); /* (relu's) */
        o->clip_hi = clip_attr(pw, CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP, INFINITY);
        switch (*m) {
        case CUDNN_POINTWISE_ADD:
            o->kind = OP_ADD;
            return slots3(d, o, CUDNN_ATTR_OPERATION_POINTWISE_XDESC,
                          CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
        case CUDNN_POINTWISE_RELU_FWD:
        case CUDNN_POINTWISE_SIGMOID_FWD:
        case CUDNN_POINTWISE_TANH_FWD:
            o->kind = *m == CUDNN_POINTWISE_RELU_FWD      ? OP_RELU
                      : *m == CUDNN_POINTWISE_SIGMOID_FWD ? OP_SIGMOID
                                                          : OP_TANH;
            return slots3(d, o, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, 0,
                          CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
        case CUDNN_POINTWISE_RELU_BWD:
            o->kind = OP_RELU_BWD;
            return slots3(d, o, CUDNN_ATTR_OPERATION_POINTWISE_XDESC,
                          CUDNN_ATTR_OPERATION_POINTWISE_DYDESC,
                          CUDNN_ATTR_OPERATION_POINTWISE_DXDESC);
        default: return false;
        }
    }
    case CUDNN_BACKEND_OPERATION_RESAMPLE_FWD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_RESAMPLE_BWD_DESCRIPTOR: {
        bool fwd = d->type == CUDNN_BACKEND_OPERATION_RESAMPLE_FWD_DESCRIPTOR;
        o->kind = fwd ? OP_POOL_FWD : OP_POOL_BWD;
        return slots3(d, o,
                      fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_XDESC
                          : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_DXDESC,
                      0,
                      fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_YDESC
                          : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_DYDESC) &&
               slot(d, o, CW,
                    fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_IDXDESC
                        : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_IDXDESC) &&
               resample_of(child(d, fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_DESC
                                        : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_DESC),
                           o);
    }
    case CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_NORM_BACKWARD_DESCRIPTOR: {
        bool fwd = d->type == CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR;
        const cudnnBackendNormMode_t *mode =
            want(d, fwd ? CUDNN_ATTR_OPERATION_NORM_FWD_MODE : CUDNN_ATTR_OPERATION_NORM_BWD_MODE,
                 CUDNN_TYPE_NORM_MODE, 1);
        const cudnnBackendNormFwdPhase_t *phase =
            want(d, CUDNN_ATTR_OPERATION_NORM_FWD_PHASE, CUDNN_TYPE_NORM_FWD_PHASE, 1);
        if (!mode || *mode != CUDNN_BATCH_NORM || (fwd && !phase))
            return false;
        o->kind = fwd ? OP_NORM_FWD : OP_NORM_BWD;
        o->training = fwd && *phase == CUDNN_NORM_FWD_TRAINING;
        int n = fwd ? N_SLOTS : NB_DX + 1;
        for (int i = 0; i < n; i++)
            if (!slot(d, o, i, fwd ? norm_fwd_attrs[i] : norm_bwd_attrs[i]))
                return false;
        return true;
    }
    default: return false;
    }
    const fdesc *c = child(d, ac);
    if (!c || !c->finalized || !slots3(d, o, ax, aw, ay))
        return false;
    memcpy(o->pre, get(c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS)->values, sizeof o->pre);
    memcpy(o->post, get(c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS)->values, sizeof o->post);
    memcpy(o->stride, get(c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES)->values, sizeof o->stride);
    memcpy(o->dil, get(c, CUDNN_ATTR_CONVOLUTION_DILATIONS)->values, sizeof o->dil);
    return true;
}

static cudnnStatus_t finalize_conv_desc(const fdesc *d)
{
    const int64_t *sp = want(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1);
    const cudnnConvolutionMode_t *mode =
        want(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1);
    if (!sp || *sp != 2 || !mode || !want(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1))
        return fail(CUDNN_STATUS_BAD_PARAM, "convolution: 2 spatial dims, a mode and a compute "
                                            "type are required");
    if (*mode != CUDNN_CROSS_CORRELATION)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "convolution: only cross-correlation is faked");
    const cudnnBackendAttributeName_t arrays[4] = {
        CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS,
        CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_ATTR_CONVOLUTION_DILATIONS};
    for (int i = 0; i < 4; i++)
        if (!want(d, arrays[i], CUDNN_TYPE_INT64, 2))
            return fail(CUDNN_STATUS_BAD_PARAM, "convolution: attribute %d needs 2 values",
                        arrays[i]);
    return CUDNN_STATUS_SUCCESS;
}

/* The documented shape rules of a convolution operation. */
static cudnnStatus_t check_conv(const fop *o)
{
    const ftensor *x = &o->t[CX], *w = &o->t[CW], *y = &o->t[CY];
    if (x->nd != 4 || w->nd != 4 || y->nd != 4)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "convolution: 4-D tensors only (faked)");
    if (x->dt != w->dt || (!y->is_virtual && y->dt != x->dt))
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "convolution: x, w and y of one data type "
                                                "(faked: the engines miles asks for)");
    if (x->dim[1] % w->dim[1] != 0)
        return fail(CUDNN_STATUS_BAD_PARAM, "convolution: x's C %lld is not a multiple of w's C "
                    "%lld", (long long)x->dim[1], (long long)w->dim[1]);
    int64_t g = x->dim[1] / w->dim[1];
    if (w->dim[0] % g != 0 || y->dim[1] != w->dim[0] || y->dim[0] != x->dim[0])
        return fail(CUDNN_STATUS_BAD_PARAM, "convolution: y's N, C (%lld, %lld) do not fit x's N "
                    "%lld and w's K %lld (groups %lld)", (long long)y->dim[0],
                    (long long)y->dim[1], (long long)x->dim[0], (long long)w->dim[0], (long long)g);
    for (int i = 0; i < 2; i++) {
        int64_t in = x->dim[2 + i], k = w->dim[2 + i];
        int64_t out = (in + o->pre[i] + o->post[i] - o->dil[i] * (k - 1) - 1) / o->stride[i] + 1;
        if (y->dim[2 + i] != out)
            return fail(CUDNN_STATUS_BAD_PARAM, "convolution: y's spatial dim %d is %lld, the "
                        "geometry gives %lld", i, (long long)y->dim[2 + i], (long long)out);
    }
    return CUDNN_STATUS_SUCCESS;
}

static bool same_shape(const ftensor *a, const ftensor *b)
{
    if (a->nd != b->nd)
        return false;
    for (int i = 0; i < a->nd; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

/* A batch norm's per-channel tensor: [1, C, 1, 1] of float32 (the type miles
 * gives; faked as the only one). */
static bool channel_tensor(const ftensor *t, int64_t c)
{
    return t->nd == 4 && t->dim[0] == 1 && t->dim[1] == c && t->dim[2] == 1 && t->dim[3] == 1 &&
           t->dt == CUDNN_DATA_FLOAT && !t->is_virtual && !t->by_value;
}

/* A by-value float32 scalar [1, 1, 1, 1]. */
static bool scalar_tensor(const ftensor *t)
{
    return t->nd == 4 && t->dim[0] == 1 && t->dim[1] == 1 && t->dim[2] == 1 && t->dim[3] == 1 &&
           t->dt == CUDNN_DATA_FLOAT && t->by_value;
}

/* x and its like (y, dy, dx): 4-D activations of x's shape, bf16 or float32. */
static bool activation_pair(const ftensor *x, const ftensor *y)
{
    return x->nd == 4 && same_shape(x, y) && !x->by_value && !y->by_value &&
           (x->dt == CUDNN_DATA_FLOAT || x->dt == CUDNN_DATA_BFLOAT16);
}

static cudnnStatus_t check_norm_fwd(const fop *o)
{
    const char *need = o->training ? "x, scale, bias, epsilon, mean, inv_variance and y"
                                   : "x, scale, bias, mean, inv_variance and y";
    const int train[] = {NF_X, NF_SCALE, NF_BIAS, NF_EPS, NF_MEAN, NF_INVSTD, NF_Y};
    for (size_t i = 0; i < sizeof train / sizeof *train; i++)
        if (!o->has[train[i]] && (o->training || train[i] != NF_EPS))
            return fail(CUDNN_STATUS_BAD_PARAM, "batch norm forward: %s are required", need);
    int running = o->has[NF_FACTOR] + o->has[NF_RMEAN_IN] + o->has[NF_RVAR_IN] +
                  o->has[NF_RMEAN_OUT] + o->has[NF_RVAR_OUT];
    if (running != 0 && (running != 5 || !o->training))
        return fail(CUDNN_STATUS_BAD_PARAM, "batch norm forward: the running statistics take "
                    "the factor and all four tensors, in training");
    if (!activation_pair(&o->t[NF_X], &o->t[NF_Y]))
        return fail(CUDNN_STATUS_BAD_PARAM, "batch norm forward: x and y 4-D, of one shape");
    int64_t c = o->t[NF_X].dim[1];
    for (int i = NF_SCALE; i <= NF_INVSTD; i++)
        if (o->has[i] && (i == NF_EPS || i == NF_FACTOR ? !scalar_tensor(&o->t[i])
                                                        : !channel_tensor(&o->t[i], c)))
            return fail(CUDNN_STATUS_BAD_PARAM, "batch norm forward: tensor slot %d is not %s", i,
                        i == NF_EPS || i == NF_FACTOR ? "a by-value float scalar [1, 1, 1, 1]"
                                                      : "a float [1, C, 1, 1]");
    return CUDNN_STATUS_SUCCESS;
}

static bool is_max(const fop *o)
{
    return o->resample == CUDNN_RESAMPLE_MAXPOOL;
}

static cudnnStatus_t check_resample(const fop *o)
{
    const ftensor *x = &o->t[CX], *y = &o->t[CY];
    if (o->resample != CUDNN_RESAMPLE_MAXPOOL && o->resample != CUDNN_RESAMPLE_AVGPOOL_INCLUDE_PADDING &&
        o->resample != CUDNN_RESAMPLE_AVGPOOL_EXCLUDE_PADDING)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "resample: only pooling is faked");
    if (o->padding != (is_max(o) ? CUDNN_NEG_INF_PAD : CUDNN_ZERO_PAD))
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "resample: max pooling pads with -inf, average "
                    "pooling with zeros (faked)");
    if (x->nd != 4 || y->nd != 4 || x->dim[0] != y->dim[0] || x->dim[1] != y->dim[1] ||
        x->dt != y->dt || (x->dt != CUDNN_DATA_FLOAT && x->dt != CUDNN_DATA_BFLOAT16))
        return fail(CUDNN_STATUS_BAD_PARAM, "resample: x and y 4-D of one N, C and data type");
    for (int i = 0; i < 2; i++) {
        int64_t out = (x->dim[2 + i] + o->pre[i] + o->post[i] - o->window[i]) / o->stride[i] + 1;
        if (y->dim[2 + i] != out || o->window[i] < 1 || o->stride[i] < 1)
            return fail(CUDNN_STATUS_BAD_PARAM, "resample: y's spatial dim %d is %lld, the "
                        "geometry gives %lld", i, (long long)y->dim[2 + i], (long long)out);
    }
    const ftensor *idx = &o->t[CW];
    if (o->has[CW] && (!is_max(o) || idx->dt != CUDNN_DATA_INT8 || !same_shape(idx, y)))
        return fail(CUDNN_STATUS_BAD_PARAM, "resample: an index is max pooling's, int8, of y's "
                    "shape");
    if (o->kind == OP_POOL_BWD && is_max(o) && !o->has[CW])
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "resample backward: max pooling's needs the "
                    "index here (faked)");
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t check_norm_bwd(const fop *o)
{
    for (int i = NB_X; i <= NB_DX; i++)
        if (!o->has[i])
            return fail(CUDNN_STATUS_BAD_PARAM, "batch norm backward: x, dy, scale, mean, "
                        "inv_variance, dscale, dbias and dx are required");
    if (!activation_pair(&o->t[NB_X], &o->t[NB_DY]) || !activation_pair(&o->t[NB_X], &o->t[NB_DX]))
        return fail(CUDNN_STATUS_BAD_PARAM, "batch norm backward: x, dy and dx 4-D, of one shape");
    for (int i = NB_SCALE; i <= NB_DBIAS; i++)
        if (!channel_tensor(&o->t[i], o->t[NB_X].dim[1]))
            return fail(CUDNN_STATUS_BAD_PARAM, "batch norm backward: tensor slot %d is not a "
                        "float [1, C, 1, 1]", i);
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t finalize_op(const fdesc *d)
{
    fop o;
    if (!op_of(d, &o))
        return fail(CUDNN_STATUS_BAD_PARAM, "operation %d: an operand or descriptor is missing "
                    "or not finalized", d->type);
    if (o.kind == OP_RELU || o.kind == OP_RELU_BWD || o.kind == OP_SIGMOID || o.kind == OP_TANH) {
        const ftensor *x = &o.t[CX], *y = &o.t[CY];
        for (int i = 0; i < x->nd; i++)
            if (y->nd != x->nd || y->dim[i] != x->dim[i] ||
                (o.kind == OP_RELU_BWD && !same_shape(&o.t[CW], x)))
                return fail(CUDNN_STATUS_BAD_PARAM, "pointwise: y (dy, dx) is not x's shape");
        return CUDNN_STATUS_SUCCESS;
    }
    if (o.kind == OP_ADD) {
        const ftensor *x = &o.t[CX], *b = &o.t[CW], *y = &o.t[CY];
        for (int i = 0; i < x->nd; i++)
            if (b->nd != x->nd || y->nd != x->nd || y->dim[i] != x->dim[i] ||
                (b->dim[i] != 1 && b->dim[i] != x->dim[i]))
                return fail(CUDNN_STATUS_BAD_PARAM, "pointwise: b does not broadcast to x, or y "
                                                    "is not x's shape");
        return CUDNN_STATUS_SUCCESS;
    }
    if (o.kind == OP_POOL_FWD || o.kind == OP_POOL_BWD)
        return check_resample(&o);
    if (o.kind == OP_NORM_FWD)
        return check_norm_fwd(&o);
    if (o.kind == OP_NORM_BWD)
        return check_norm_bwd(&o);
    cudnnBackendAttributeName_t alpha = d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
        ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA
        : d->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
            ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA
            : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA;
    const attr *a = get(d, alpha);
    if (!a || a->count != 1 ||
        (a->type == CUDNN_TYPE_FLOAT ? *(const float *)a->values != 1.0f
                                     : *(const double *)a->values != 1.0))
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "convolution: alpha must be 1 here (faked)");
    return check_conv(&o);
}

/* --- execution --- */

typedef struct {
    int n;
    int64_t uid[MAX_PACK];
    void *ptr[MAX_PACK];
    void *ws;
} pack_t;

static void *find(const pack_t *p, int64_t uid)
{
    for (int i = 0; i < p->n; i++)
        if (p->uid[i] == uid)
            return p->ptr[i];
    return NULL;
}

/* The elements of a packed double buffer for a virtual tensor (stride-addressed). */
static int64_t span_of(const ftensor *t)
{
    int64_t s = 1;
    for (int i = 0; i < t->nd; i++)
        s += (t->dim[i] - 1) * t->stride[i];
    return s;
}

typedef struct {
    const fdesc *graph;
    int64_t workspace;
    pack_t pack;
    float byval[MAX_PACK]; /* the by-value scalars' values, read at execution */
} run_t;

/* Where tensor t is: a variant-pack buffer, or a virtual one in double. */
typedef struct {
    void *p;
    cudnnDataType_t dt;
} place;

static void run_conv(const fop *o, const place *pl)
{
    const ftensor *x = &o->t[CX], *w = &o->t[CW], *y = &o->t[CY];
    place X = pl[CX], W = pl[CW], Y = pl[CY];
    int64_t N = x->dim[0], C = x->dim[1], H = x->dim[2], Wd = x->dim[3];
    int64_t K = w->dim[0], Cg = w->dim[1], R = w->dim[2], S = w->dim[3];
    int64_t OH = y->dim[2], OW = y->dim[3], g = C / Cg, Kg = K / g;
    /* out = 0, then every product added where its kind puts it */
    const ftensor *out = o->kind == OP_FWD ? y : o->kind == OP_BWD_DATA ? x : w;
    place O = o->kind == OP_FWD ? Y : o->kind == OP_BWD_DATA ? X : W;
    double *acc = calloc((size_t)span_of(out), sizeof *acc);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++)
                    for (int64_t cg = 0; cg < Cg; cg++)
                        for (int64_t r = 0; r < R; r++)
                            for (int64_t s = 0; s < S; s++) {
                                int64_t c = (k / Kg) * Cg + cg;
                                int64_t ih = oh * o->stride[0] - o->pre[0] + r * o->dil[0];
                                int64_t iw = ow * o->stride[1] - o->pre[1] + s * o->dil[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= Wd)
                                    continue;
                                int64_t xi = offset4(x, n, c, ih, iw), wi = offset4(w, k, cg, r, s),
                                        yi = offset4(y, n, k, oh, ow);
                                if (o->kind == OP_FWD)
                                    acc[yi] += load(X.p, X.dt, xi) * load(W.p, W.dt, wi);
                                else if (o->kind == OP_BWD_DATA)
                                    acc[xi] += load(Y.p, Y.dt, yi) * load(W.p, W.dt, wi);
                                else
                                    acc[wi] += load(Y.p, Y.dt, yi) * load(X.p, X.dt, xi);
                            }
    for (int64_t a = 0; a < out->dim[0]; a++)
        for (int64_t b = 0; b < out->dim[1]; b++)
            for (int64_t c = 0; c < out->dim[2]; c++)
                for (int64_t d = 0; d < out->dim[3]; d++) {
                    int64_t i = offset4(out, a, b, c, d);
                    store(O.p, O.dt, i, acc[i]);
                }
    free(acc);
}

/* The pointwise operations, element by element of x's shape: add (x + b, b
 * broadcast), relu (x clipped to [lo, hi] into y; NaN kept), relu backward (dy
 * where lo < x < hi into dx; as cuDNN's kernels, which give 0 at the upper clip). */
static void run_pointwise(const fop *o, const place *pl)
{
    const ftensor *x = &o->t[CX], *b = &o->t[CW], *y = &o->t[CY];
    for (int64_t i0 = 0; i0 < x->dim[0]; i0++)
        for (int64_t i1 = 0; i1 < x->dim[1]; i1++)
            for (int64_t i2 = 0; i2 < x->dim[2]; i2++)
                for (int64_t i3 = 0; i3 < x->dim[3]; i3++) {
                    double v = load(pl[CX].p, pl[CX].dt, offset4(x, i0, i1, i2, i3));
                    if (o->kind == OP_ADD)
                        v += load(pl[CW].p, pl[CW].dt,
                                  offset4(b, b->dim[0] > 1 ? i0 : 0, b->dim[1] > 1 ? i1 : 0,
                                          b->dim[2] > 1 ? i2 : 0, b->dim[3] > 1 ? i3 : 0));
                    else if (o->kind == OP_RELU_BWD)
                        v = v > o->clip_lo && v < o->clip_hi
                                ? load(pl[CW].p, pl[CW].dt, offset4(b, i0, i1, i2, i3))
                                : 0;
                    else if (o->kind == OP_SIGMOID)
                        v = 1 / (1 + exp(-v));
                    else if (o->kind == OP_TANH)
                        v = tanh(v);
                    else if (v == v)
                        v = v < o->clip_lo ? o->clip_lo : v > o->clip_hi ? o->clip_hi : v;
                    store(pl[CY].p, pl[CY].dt, offset4(y, i0, i1, i2, i3), v);
                }
}

/* Channel c's value of per-channel tensor slot i. */
static double chan_load(const fop *o, const place *pl, int i, int64_t c)
{
    return load(pl[i].p, pl[i].dt, c * o->t[i].stride[1]);
}

static void chan_store(const fop *o, const place *pl, int i, int64_t c, double v)
{
    store(pl[i].p, pl[i].dt, c * o->t[i].stride[1], v);
}

/* The sum over channel c's elements of f(x, other) for x slot xs (and other slot
 * os, or -1). */
static double channel_sum(const fop *o, const place *pl, int xs, int os, int64_t c, double mean,
                          int what)
{
    const ftensor *x = &o->t[xs];
    double acc = 0;
    for (int64_t n = 0; n < x->dim[0]; n++)
        for (int64_t h = 0; h < x->dim[2]; h++)
            for (int64_t w = 0; w < x->dim[3]; w++) {
                double v = load(pl[xs].p, pl[xs].dt, offset4(x, n, c, h, w));
                double u = os < 0 ? 0 : load(pl[os].p, pl[os].dt, offset4(&o->t[os], n, c, h, w));
                acc += what == 0 ? v : what == 1 ? (v - mean) * (v - mean) : u * (v - mean);
            }
    return acc;
}

static void run_norm_fwd(const fop *o, const place *pl)
{
    const ftensor *x = &o->t[NF_X], *y = &o->t[NF_Y];
    double m = (double)x->dim[0] * (double)x->dim[2] * (double)x->dim[3];
    for (int64_t c = 0; c < x->dim[1]; c++) {
        double mean, invstd;
        if (o->training) {
            mean = channel_sum(o, pl, NF_X, -1, c, 0, 0) / m;
            double var = channel_sum(o, pl, NF_X, -1, c, mean, 1) / m;
            invstd = 1 / sqrt(var + load(pl[NF_EPS].p, CUDNN_DATA_FLOAT, 0));
            chan_store(o, pl, NF_MEAN, c, mean);
            chan_store(o, pl, NF_INVSTD, c, invstd);
            if (o->has[NF_FACTOR]) {
                double f = load(pl[NF_FACTOR].p, CUDNN_DATA_FLOAT, 0);
                double unbiased = m > 1 ? var * m / (m - 1) : var;
                chan_store(o, pl, NF_RMEAN_OUT, c,
                           (1 - f) * chan_load(o, pl, NF_RMEAN_IN, c) + f * mean);
                chan_store(o, pl, NF_RVAR_OUT, c,
                           (1 - f) * chan_load(o, pl, NF_RVAR_IN, c) + f * unbiased);
            }
        } else {
            mean = chan_load(o, pl, NF_MEAN, c);
            invstd = chan_load(o, pl, NF_INVSTD, c);
        }
        double k = chan_load(o, pl, NF_SCALE, c) * invstd, b = chan_load(o, pl, NF_BIAS, c);
        for (int64_t n = 0; n < x->dim[0]; n++)
            for (int64_t h = 0; h < x->dim[2]; h++)
                for (int64_t w = 0; w < x->dim[3]; w++) {
                    double v = load(pl[NF_X].p, pl[NF_X].dt, offset4(x, n, c, h, w));
                    store(pl[NF_Y].p, pl[NF_Y].dt, offset4(y, n, c, h, w), (v - mean) * k + b);
                }
    }
}

static void run_norm_bwd(const fop *o, const place *pl)
{
    const ftensor *x = &o->t[NB_X], *dy = &o->t[NB_DY], *dx = &o->t[NB_DX];
    double m = (double)x->dim[0] * (double)x->dim[2] * (double)x->dim[3];
    for (int64_t c = 0; c < x->dim[1]; c++) {
        double mean = chan_load(o, pl, NB_MEAN, c), invstd = chan_load(o, pl, NB_INVSTD, c);
        double db = channel_sum(o, pl, NB_DY, -1, c, 0, 0);
        double ds = channel_sum(o, pl, NB_X, NB_DY, c, mean, 2) * invstd;
        chan_store(o, pl, NB_DSCALE, c, ds);
        chan_store(o, pl, NB_DBIAS, c, db);
        double k = chan_load(o, pl, NB_SCALE, c) * invstd;
        for (int64_t n = 0; n < x->dim[0]; n++)
            for (int64_t h = 0; h < x->dim[2]; h++)
                for (int64_t w = 0; w < x->dim[3]; w++) {
                    double xhat = (load(pl[NB_X].p, pl[NB_X].dt, offset4(x, n, c, h, w)) - mean) *
                                  invstd;
                    double g = load(pl[NB_DY].p, pl[NB_DY].dt, offset4(dy, n, c, h, w));
                    store(pl[NB_DX].p, pl[NB_DX].dt, offset4(dx, n, c, h, w),
                          k * (g - db / m - xhat * ds / m));
                }
    }
}

/* Pooling, forward (y, and the index when asked) or backward (dx from dy, and
 * for max pooling the index), window by window of y. */
static void run_pool(const fop *o, const place *pl)
{
    const ftensor *x = &o->t[CX], *y = &o->t[CY], *ix = &o->t[CW];
    bool fwd = o->kind == OP_POOL_FWD, max = is_max(o);
    bool include = o->resample == CUDNN_RESAMPLE_AVGPOOL_INCLUDE_PADDING;
    int64_t H = x->dim[2], W = x->dim[3];
    double *dx = fwd ? NULL : calloc((size_t)span_of(x), sizeof *dx); /* each window's share */
    for (int64_t n = 0; n < y->dim[0]; n++)
        for (int64_t c = 0; c < y->dim[1]; c++)
            for (int64_t oh = 0; oh < y->dim[2]; oh++)
                for (int64_t ow = 0; ow < y->dim[3]; ow++) {
                    int64_t h0 = oh * o->stride[0] - o->pre[0], w0 = ow * o->stride[1] - o->pre[1];
                    int64_t yi = offset4(y, n, c, oh, ow), count = 0, best = -1;
                    double acc = 0, top = -INFINITY;
                    for (int64_t r = 0; r < o->window[0]; r++)
                        for (int64_t s = 0; s < o->window[1]; s++) {
                            int64_t h = h0 + r, w = w0 + s;
                            if (h < 0 || h >= H || w < 0 || w >= W)
                                continue;
                            count++;
                            double v = fwd ? load(pl[CX].p, pl[CX].dt, offset4(x, n, c, h, w)) : 0;
                            acc += v;
                            if (best < 0 || (!isnan(top) && (v > top || isnan(v)))) {
                                top = v;
                                best = r * o->window[1] + s;
                            }
                        }
                    double div = include ? (double)(o->window[0] * o->window[1]) : (double)count;
                    if (fwd) {
                        store(pl[CY].p, pl[CY].dt, yi, max ? top : acc / div);
                        if (o->has[CW])
                            ((int8_t *)pl[CW].p)[offset4(ix, n, c, oh, ow)] = (int8_t)best;
                        continue;
                    }
                    double g = load(pl[CY].p, pl[CY].dt, yi);
                    for (int64_t r = 0; r < o->window[0]; r++)
                        for (int64_t s = 0; s < o->window[1]; s++) {
                            int64_t h = h0 + r, w = w0 + s;
                            if (h < 0 || h >= H || w < 0 || w >= W)
                                continue;
                            if (max && ((int8_t *)pl[CW].p)[offset4(ix, n, c, oh, ow)] !=
                                           r * o->window[1] + s)
                                continue;
                            dx[offset4(x, n, c, h, w)] += max ? g : g / div;
                        }
                }
    for (int64_t n = 0; dx && n < x->dim[0]; n++)
        for (int64_t c = 0; c < x->dim[1]; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++) {
                    int64_t xi = offset4(x, n, c, h, w);
                    store(pl[CX].p, pl[CX].dt, xi, dx[xi]);
                }
    free(dx);
}

static void run_graph(void *p)
{
    const run_t *r = p;
    const attr *ops = get(r->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    /* the virtual tensors (intermediates between the ops), in double, by UID */
    int64_t vuid[2 * MAX_OPS];
    double *virt[2 * MAX_OPS];
    int nv = 0;
    for (int64_t i = 0; i < ops->count; i++) {
        fop o;
        op_of(((fdesc *const *)ops->values)[i], &o);
        place pl[N_SLOTS] = {{0}};
        for (int j = 0; j < N_SLOTS; j++) {
            const ftensor *t = &o.t[j];
            if (!o.has[j]) {
                continue;
            } else if (t->is_virtual) {
                int v = 0;
                while (v < nv && vuid[v] != t->uid)
                    v++;
                if (v == nv) {
                    vuid[nv] = t->uid;
                    virt[nv++] = calloc((size_t)span_of(t), sizeof(double));
                }
                pl[j] = (place){virt[v], CUDNN_DATA_DOUBLE};
            } else {
                pl[j] = (place){find(&r->pack, t->uid), t->dt};
            }
        }
        switch (o.kind) {
        case OP_ADD:
        case OP_RELU:
        case OP_RELU_BWD:
        case OP_SIGMOID:
        case OP_TANH: run_pointwise(&o, pl); break;
        case OP_POOL_FWD:
        case OP_POOL_BWD: run_pool(&o, pl); break;
        case OP_NORM_FWD: run_norm_fwd(&o, pl); break;
        case OP_NORM_BWD: run_norm_bwd(&o, pl); break;
        default: run_conv(&o, pl);
        }
    }
    for (int v = 0; v < nv; v++)
        free(virt[v]);
}

/* --- finalization, queries, execution --- */

/* The op graph an engine config or a plan stands for. */
static const fdesc *graph_of_plan(const fdesc *plan)
{
    const fdesc *cfg = child(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
    return cfg ? cfg->graph : NULL;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t descriptor)
{
    fdesc *d = descriptor;
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    switch (d->type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: s = finalize_tensor(d); break;
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: s = finalize_conv_desc(d); break;
    case CUDNN_BACKEND_POINTWISE_DESCRIPTOR:
        if (!want(d, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1))
            s = fail(CUDNN_STATUS_BAD_PARAM, "pointwise: no mode");
        break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_NORM_BACKWARD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_RESAMPLE_FWD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_RESAMPLE_BWD_DESCRIPTOR: s = finalize_op(d); break;
    case CUDNN_BACKEND_RESAMPLE_DESCRIPTOR: {
        fop o;
        const int64_t *sp = want(d, CUDNN_ATTR_RESAMPLE_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1);
        d->finalized = true; /* (for resample_of's check; undone on failure) */
        if (!sp || *sp != 2 || !want(d, CUDNN_ATTR_RESAMPLE_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1) ||
            !want(d, CUDNN_ATTR_RESAMPLE_PADDING_MODE, CUDNN_TYPE_PADDING_MODE, 1) ||
            !resample_of(d, &o))
            s = fail(CUDNN_STATUS_BAD_PARAM, "resample: a mode, a compute type, a padding "
                     "mode, 2 spatial dims and their window, strides and paddings (n/1)");
        d->finalized = false;
        break;
    }
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
        const attr *ops = get(d, CUDNN_ATTR_OPERATIONGRAPH_OPS);
        if (!ops || ops->count < 1 || ops->count > MAX_OPS)
            s = fail(CUDNN_STATUS_BAD_PARAM, "graph: 1 to %d operations", MAX_OPS);
        for (int64_t i = 0; s == CUDNN_STATUS_SUCCESS && i < ops->count; i++)
            if (!((fdesc *const *)ops->values)[i]->finalized)
                s = fail(CUDNN_STATUS_BAD_PARAM, "graph: operation %lld not finalized",
                         (long long)i);
        break;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
        const fdesc *g = child(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
        if (!g || !g->finalized || !want(d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1))
            s = fail(CUDNN_STATUS_BAD_PARAM, "heuristics: a finalized graph and a mode");
        break;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
        const fdesc *cfg = child(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
        if (!cfg || !cfg->finalized || !cfg->graph)
            s = fail(CUDNN_STATUS_BAD_PARAM, "plan: a finalized engine config");
        break;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
        const attr *u = get(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS),
                   *p = get(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
        if (!u || !p || u->count != p->count || u->count > MAX_PACK ||
            !want(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1))
            s = fail(CUDNN_STATUS_BAD_PARAM, "variant pack: as many ids as pointers, and a "
                                             "workspace");
        break;
    }
    default: s = fail(CUDNN_STATUS_NOT_SUPPORTED, "descriptor type %d is not faked", d->type);
    }
    if (s == CUDNN_STATUS_SUCCESS)
        d->finalized = true;
    return s;
}

/* Is word one of the comma-separated words of list? */
static bool listed(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

/* Does MILES_FAKE_CUDNN_REFUSE leave graph g without an engine? */
static bool refused(const fdesc *g)
{
    const char *r = getenv("MILES_FAKE_CUDNN_REFUSE");
    if (!r)
        return false;
    const attr *ops = get(g, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    bool norm = false;
    for (int64_t i = 0; i < ops->count; i++) {
        fop o;
        op_of(((fdesc *const *)ops->values)[i], &o);
        norm |= o.kind == OP_NORM_FWD || o.kind == OP_NORM_BWD;
    }
    fop o;
    op_of(((fdesc *const *)ops->values)[0], &o);
    bool nhwc = o.t[0].dim[1] > 1 && o.t[0].stride[1] == 1;
    bool pool = o.kind == OP_POOL_FWD || o.kind == OP_POOL_BWD;
    bool act = ops->count == 1 && (o.kind == OP_RELU || o.kind == OP_RELU_BWD ||
                                   o.kind == OP_SIGMOID || o.kind == OP_TANH);
    return listed(r, "all") || (listed(r, "fused") && ops->count > 1) || (listed(r, "norm") && norm) ||
           (listed(r, "pool") && pool) || (listed(r, "pool_bwd") && o.kind == OP_POOL_BWD) ||
           (listed(r, "act") && act) || (listed(r, "nhwc") && nhwc);
}

static const cudnnBackendNumericalNote_t engine_notes[N_ENGINES][2] = {
    {CUDNN_NUMERICAL_NOTE_TENSOR_CORE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT},
    {CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC, CUDNN_NUMERICAL_NOTE_TYPE_COUNT},
    {CUDNN_NUMERICAL_NOTE_TYPE_COUNT, CUDNN_NUMERICAL_NOTE_TYPE_COUNT},
};

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const descriptor,
                                       cudnnBackendAttributeName_t attributeName,
                                       cudnnBackendAttributeType_t attributeType,
                                       int64_t requestedElementCount, int64_t *elementCount,
                                       void *arrayOfElements)
{
    fdesc *d = descriptor;
    if (!d->finalized && d->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR)
        return fail(CUDNN_STATUS_NOT_INITIALIZED, "get attribute %d of a descriptor not "
                    "finalized", attributeName);
    switch (attributeName) {
    case CUDNN_ATTR_ENGINEHEUR_RESULTS: {
        const cudnnBackendHeurMode_t *mode = want(d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1);
        int64_t n = *mode == CUDNN_HEUR_MODE_FALLBACK ? 1 : N_ENGINES;
        if (refused(child(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH)))
            n = 0;
        if (attributeType != CUDNN_TYPE_BACKEND_DESCRIPTOR)
            return fail(CUDNN_STATUS_BAD_PARAM, "heuristics results are descriptors");
        *elementCount = requestedElementCount < n ? requestedElementCount : n;
        if (requestedElementCount == 0)
            *elementCount = n;
        for (int64_t i = 0; i < *elementCount && requestedElementCount > 0; i++) {
            fdesc *cfg = ((fdesc **)arrayOfElements)[i];
            if (cfg->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
                return fail(CUDNN_STATUS_BAD_PARAM, "results go into engine configs");
            cfg->engine = *mode == CUDNN_HEUR_MODE_FALLBACK ? N_ENGINES - 1 : (int)i;
            cfg->graph = (fdesc *)child(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
            cfg->finalized = true;
        }
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINECFG_ENGINE: {
        fdesc *e = *(fdesc **)arrayOfElements;
        if (e->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR)
            return fail(CUDNN_STATUS_BAD_PARAM, "an engine config's engine goes into an engine");
        e->engine = d->engine;
        e->graph = d->graph;
        e->finalized = true;
        *elementCount = 1;
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINE_NUMERICAL_NOTE: {
        int64_t n = 0;
        for (int i = 0; i < 2 && engine_notes[d->engine][i] != CUDNN_NUMERICAL_NOTE_TYPE_COUNT; i++)
            if (n < requestedElementCount)
                ((cudnnBackendNumericalNote_t *)arrayOfElements)[n++] = engine_notes[d->engine][i];
        *elementCount = n;
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE: *elementCount = 0; return CUDNN_STATUS_SUCCESS;
    case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
        *(int64_t *)arrayOfElements = d->engine;
        *elementCount = 1;
        return CUDNN_STATUS_SUCCESS;
    case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE: {
        const fdesc *cfg = child(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
        *(int64_t *)arrayOfElements = cfg->engine == 0 ? ENGINE_WORKSPACE : 0;
        *elementCount = 1;
        return CUDNN_STATUS_SUCCESS;
    }
    default: return fail(CUDNN_STATUS_NOT_SUPPORTED, "attribute %d is not faked", attributeName);
    }
}

/* The trace's line for a graph (fake_trace): its operations, and the first
 * one's first tensor (dims, data type). */
static void trace_graph(const attr *ops)
{
    static const char *const names[] = {"conv_fwd", "conv_bwd_data", "conv_bwd_filter", "add",
                                        "relu", "relu_bwd", "norm_fwd", "norm_bwd", "pool_fwd",
                                        "pool_bwd", "sigmoid", "tanh"};
    if (!fake_tracing() || ops->count < 1)
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "cudnn");
    fop first;
    op_of(((fdesc *const *)ops->values)[0], &first);
    for (int64_t i = 0; i < ops->count && n < 200; i++) { /* (room for the dims) */
        fop o;
        op_of(((fdesc *const *)ops->values)[i], &o);
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s", i ? "+" : " ", names[o.kind]);
    }
    const ftensor *t = &first.t[0];
    for (int d = 0; d < t->nd && n < 200; d++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%lld", d ? "x" : " ", (long long)t->dim[d]);
    fake_trace("%s %s", line, t->dt == CUDNN_DATA_BFLOAT16 ? "bf16" : "f32");
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan,
                                  cudnnBackendDescriptor_t variantPack)
{
    const fdesc *plan = executionPlan, *vp = variantPack;
    if (!plan->finalized || !vp->finalized)
        return fail(CUDNN_STATUS_BAD_PARAM, "execute: plan and variant pack must be finalized");
    run_t *r = calloc(1, sizeof *r);
    r->graph = graph_of_plan(plan);
    const attr *u = get(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS),
               *p = get(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
    r->pack.n = (int)u->count;
    memcpy(r->pack.uid, u->values, (size_t)u->count * sizeof(int64_t));
    memcpy(r->pack.ptr, p->values, (size_t)p->count * sizeof(void *));
    r->pack.ws = *(void *const *)want(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1);
    int64_t ws = child(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG)->engine == 0 ? ENGINE_WORKSPACE : 0;
    if (ws > 0 && !r->pack.ws) {
        free(r);
        return fail(CUDNN_STATUS_BAD_PARAM, "execute: the plan needs a workspace");
    }
    /* every non-virtual tensor of the graph must have a buffer, aligned as its
     * descriptor says */
    const attr *ops = get(r->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    for (int64_t i = 0; i < ops->count; i++) {
        fop o;
        op_of(((fdesc *const *)ops->values)[i], &o);
        for (int j = 0; j < N_SLOTS; j++) {
            const ftensor *t = &o.t[j];
            if (!o.has[j] || t->is_virtual)
                continue;
            void *buf = find(&r->pack, t->uid);
            if (!buf || (uintptr_t)buf % (uintptr_t)t->align != 0) {
                free(r);
                return fail(CUDNN_STATUS_BAD_PARAM, "execute: tensor uid %lld has %s",
                            (long long)t->uid, buf ? "a buffer less aligned than its "
                                                     "descriptor says" : "no buffer");
            }
            /* a by-value scalar is read now: the run (later) reads the copy */
            for (int k = 0; t->by_value && k < r->pack.n; k++)
                if (r->pack.uid[k] == t->uid) {
                    memcpy(&r->byval[k], buf, sizeof r->byval[k]);
                    r->pack.ptr[k] = &r->byval[k];
                }
        }
    }
    trace_graph(ops);
    const char *cost = getenv("MILES_FAKE_CUDNN_COST"); /* fake clock units, 1 by default */
    if (cost && atoi(cost) > 1)
        fake_charge((unsigned long long)atoi(cost) - 1);
    fake_device_work(handle->stream, (const void *)run_graph, 1, run_graph, r, free);
    return CUDNN_STATUS_SUCCESS;
}
