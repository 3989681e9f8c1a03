/* A fake cuDNN for the emulated GPU (make EMU=1): the backend (graph) API calls
 * that csrc/cuda/cudnn_graph.c and cudnn_conv.c make, so that their descriptors,
 * layouts, engine choice, bias fusion and bf16 temporaries are checked on any
 * machine. It follows cuDNN's documented conventions, not our code's:
 *  - tensors: dimensions in N, C, H, W order (filters K, C/groups, R, S) whatever
 *    the memory layout, which the strides give; groups = x's C / w's C;
 *  - convolution forward y = x (*) w, backward data dx = dy (*)^T w, backward
 *    filter dw = x (*) dy, cross-correlation with pre/post paddings, strides and
 *    dilations, alpha 1 and beta 0 only (what miles asks);
 *  - pointwise operations after a convolution whose output is virtual: an
 *    addition with broadcasting (a bias [1, C, 1, 1]) and a relu (max(x, 0),
 *    lower clip 0), each reading the virtual output of the one before;
 *  - heuristics propose engine configs (three in mode A, with tensor-core and
 *    non-deterministic notes on two of them; one in fallback mode), plans have a
 *    workspace that execution must be given.
 * A descriptor set up against these rules fails to finalize with a message
 * (cudnnGetLastErrorString). MILES_FAKE_CUDNN_REFUSE lists what no engine takes,
 * as real engines sometimes do not, so that our fallbacks run: "fused" (a graph
 * of more than the convolution), "nhwc" (channels-last activations), "all" (every
 * graph). Execution computes in double, on the fake runtime's
 * host memory, at once or as a node of a CUDA graph being captured. */
#include <cudnn.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../c/fake_cudart.h"

#define MAX_ATTRS 24
#define MAX_OPS 4
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
    bool is_virtual;
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
    if (*dt != CUDNN_DATA_FLOAT && *dt != CUDNN_DATA_DOUBLE && *dt != CUDNN_DATA_BFLOAT16)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "tensor: data type %d", *dt);
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

typedef enum { OP_FWD, OP_BWD_DATA, OP_BWD_FILTER, OP_ADD, OP_RELU } op_kind;

typedef struct {
    op_kind kind;
    ftensor x, w, y; /* conv: x (or dx), w (or dw), y (or dy); add: x + w -> y; relu: x -> y */
    int64_t pre[2], post[2], stride[2], dil[2];
} fop;

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
        if (!m || !pw->finalized || (*m != CUDNN_POINTWISE_ADD && *m != CUDNN_POINTWISE_RELU_FWD))
            return false;
        o->kind = *m == CUDNN_POINTWISE_ADD ? OP_ADD : OP_RELU;
        return tensor_of(child(d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC), &o->x) &&
               (o->kind == OP_RELU ||
                tensor_of(child(d, CUDNN_ATTR_OPERATION_POINTWISE_BDESC), &o->w)) &&
               tensor_of(child(d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC), &o->y);
    }
    default: return false;
    }
    const fdesc *c = child(d, ac);
    if (!c || !c->finalized || !tensor_of(child(d, ax), &o->x) || !tensor_of(child(d, aw), &o->w) ||
        !tensor_of(child(d, ay), &o->y))
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
    const ftensor *x = &o->x, *w = &o->w, *y = &o->y;
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

static cudnnStatus_t finalize_op(const fdesc *d)
{
    fop o;
    if (!op_of(d, &o))
        return fail(CUDNN_STATUS_BAD_PARAM, "operation %d: an operand or descriptor is missing "
                    "or not finalized", d->type);
    if (o.kind == OP_RELU) {
        for (int i = 0; i < o.x.nd; i++)
            if (o.y.nd != o.x.nd || o.y.dim[i] != o.x.dim[i])
                return fail(CUDNN_STATUS_BAD_PARAM, "pointwise: y is not x's shape");
        return CUDNN_STATUS_SUCCESS;
    }
    if (o.kind == OP_ADD) {
        for (int i = 0; i < o.x.nd; i++)
            if (o.w.nd != o.x.nd || o.y.nd != o.x.nd || o.y.dim[i] != o.x.dim[i] ||
                (o.w.dim[i] != 1 && o.w.dim[i] != o.x.dim[i]))
                return fail(CUDNN_STATUS_BAD_PARAM, "pointwise: b does not broadcast to x, or y "
                                                    "is not x's shape");
        return CUDNN_STATUS_SUCCESS;
    }
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
    int64_t uid[8];
    void *ptr[8];
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
} run_t;

/* Where tensor t is: a variant-pack buffer, or a virtual one in double. */
typedef struct {
    void *p;
    cudnnDataType_t dt;
} place;

static void run_conv(const fop *o, place X, place W, place Y)
{
    const ftensor *x = &o->x, *w = &o->w, *y = &o->y;
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

static void run_add(const fop *o, place X, place B, place Y)
{
    const ftensor *x = &o->x, *b = &o->w, *y = &o->y;
    for (int64_t i0 = 0; i0 < x->dim[0]; i0++)
        for (int64_t i1 = 0; i1 < x->dim[1]; i1++)
            for (int64_t i2 = 0; i2 < x->dim[2]; i2++)
                for (int64_t i3 = 0; i3 < x->dim[3]; i3++) {
                    int64_t bi = offset4(b, b->dim[0] > 1 ? i0 : 0, b->dim[1] > 1 ? i1 : 0,
                                         b->dim[2] > 1 ? i2 : 0, b->dim[3] > 1 ? i3 : 0);
                    store(Y.p, Y.dt, offset4(y, i0, i1, i2, i3),
                          load(X.p, X.dt, offset4(x, i0, i1, i2, i3)) + load(B.p, B.dt, bi));
                }
}

static void run_relu(const fop *o, place X, place Y)
{
    const ftensor *x = &o->x, *y = &o->y;
    for (int64_t i0 = 0; i0 < x->dim[0]; i0++)
        for (int64_t i1 = 0; i1 < x->dim[1]; i1++)
            for (int64_t i2 = 0; i2 < x->dim[2]; i2++)
                for (int64_t i3 = 0; i3 < x->dim[3]; i3++) {
                    double v = load(X.p, X.dt, offset4(x, i0, i1, i2, i3));
                    store(Y.p, Y.dt, offset4(y, i0, i1, i2, i3), v > 0 ? v : 0);
                }
}

static void run_graph(void *p)
{
    const run_t *r = p;
    const attr *ops = get(r->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    /* the virtual tensors (the outputs of all but the last op), in double, by UID */
    int64_t vuid[MAX_OPS];
    double *virt[MAX_OPS];
    int nv = 0;
    for (int64_t i = 0; i < ops->count; i++) {
        fop o;
        op_of(((fdesc *const *)ops->values)[i], &o);
        place pl[3];
        const ftensor *ts[3] = {&o.x, &o.w, &o.y};
        for (int j = 0; j < 3; j++) {
            if (ts[j]->is_virtual) {
                int v = 0;
                while (v < nv && vuid[v] != ts[j]->uid)
                    v++;
                if (v == nv) {
                    vuid[nv] = ts[j]->uid;
                    virt[nv++] = calloc((size_t)span_of(ts[j]), sizeof(double));
                }
                pl[j] = (place){virt[v], CUDNN_DATA_DOUBLE};
            } else {
                pl[j] = (place){find(&r->pack, ts[j]->uid), ts[j]->dt};
            }
        }
        if (o.kind == OP_ADD)
            run_add(&o, pl[0], pl[1], pl[2]);
        else if (o.kind == OP_RELU)
            run_relu(&o, pl[0], pl[2]);
        else
            run_conv(&o, pl[0], pl[1], pl[2]);
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
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: s = finalize_op(d); break;
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
        if (!u || !p || u->count != p->count || u->count > 8 ||
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

/* Does MILES_FAKE_CUDNN_REFUSE leave graph g without an engine? */
static bool refused(const fdesc *g)
{
    const char *r = getenv("MILES_FAKE_CUDNN_REFUSE");
    if (!r)
        return false;
    if (strstr(r, "all"))
        return true;
    const attr *ops = get(g, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    if (strstr(r, "fused") && ops->count > 1)
        return true;
    fop o;
    op_of(((fdesc *const *)ops->values)[0], &o);
    bool nhwc = o.x.dim[1] > 1 && o.x.stride[1] == 1;
    return strstr(r, "nhwc") && nhwc;
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
        const ftensor *ts[3] = {&o.x, &o.w, &o.y};
        for (int j = 0; j < 3; j++) {
            if (ts[j]->is_virtual || (o.kind == OP_RELU && j == 1)) /* (a relu has no b) */
                continue;
            void *buf = find(&r->pack, ts[j]->uid);
            if (!buf || (uintptr_t)buf % (uintptr_t)ts[j]->align != 0) {
                free(r);
                return fail(CUDNN_STATUS_BAD_PARAM, "execute: tensor uid %lld has %s",
                            (long long)ts[j]->uid, buf ? "a buffer less aligned than its "
                                                         "descriptor says" : "no buffer");
            }
        }
    }
    fake_device_work(handle->stream, (const void *)run_graph, 1, run_graph, r, free);
    return CUDNN_STATUS_SUCCESS;
}
