/* 2-D pooling on the GPU through cuDNN's graph API (twin: csrc/cpu/pool.c): its
 * resample operations, max pooling and average pooling, forward and backward.
 *
 * Max pooling's forward writes cuDNN's index of each maximum (int8, its place in
 * the window), which becomes the op's saved tensor for the backward (`ws`, a
 * uint8 tensor here; our kernels' is int64 positions). So a max-pooling problem
 * goes to cuDNN only when engines take both its forward and its backward: both
 * plans are made at the forward's first call, the backward's tuned on the index
 * the forward just wrote. Average pooling's forward and backward are each
 * decided alone. Adaptive average pooling whose windows tile the input (input
 * sizes multiples of the output's) is average pooling with window and stride
 * input/output.
 *
 * Activations bfloat16 or float32, NCHW or channels-last as the caller's tensors
 * are (16-byte aligned: our allocator's blocks are); computed in float32; NaNs
 * propagate, as in PyTorch. Max pooling, and average pooling's backward, only
 * channels-last: cuDNN's NCHW pooling engine writes no index, and its NCHW
 * backward reads x and y, which the backward here does not have (its
 * channels-last engines need neither). Plans are cached per problem
 * (cg_plan_for). Our kernels (kernels/pool.cu) run the rest: float64, NCHW max
 * pooling and average pooling's NCHW backward, dilated windows, windows of more
 * than 127 elements (the index is int8), average pooling that counts the padding
 * when ceil_mode adds a partial window (PyTorch's divisor leaves the extra part
 * out), problems no engine takes, and everything with
 * MILES_CUDNN_POOL=0. */
#include <stdbool.h>
#include <stdint.h>

#include "../error.h"
#include "cuda_backend.h"
#include "cudnn_graph.h"
#include "kernels.h"

typedef enum { POOL_MAX, POOL_MAX_BACKWARD, POOL_AVG, POOL_AVG_BACKWARD } pool_kind;

enum { UID_X = 1, UID_Y, UID_INDEX };

/* One resample operation: x is the input side (x, or the gradient dx), y the
 * output side (y or dy); index the max pooling's. */
typedef struct {
    pool_kind kind;
    device dev;
    dtype_t dt;
    bool nhwc;
    bool adaptive; /* average pooling standing for adaptive average pooling */
    const pool2d_params *p;
    const tensor *x, *y, *index;
} pool_problem;

static int pool_off = -1; /* MILES_CUDNN_POOL=0 (cg_switched_off) */

static bool aligned16(const tensor *t)
{
    return cg_alignment(tensor_data(t)) == 16;
}

/* Set pr up for x and y (and index) when cuDNN may take the problem. */
static bool problem_init(pool_problem *pr, pool_kind kind, const tensor *x, const tensor *y,
                         const tensor *index, const pool2d_params *p)
{
    bool max = kind == POOL_MAX || kind == POOL_MAX_BACKWARD;
    *pr = (pool_problem){kind, tensor_device(x), x->dtype, !tensor_is_contiguous(x), false, p, x,
                         y, index};
    if (cg_switched_off("MILES_CUDNN_POOL", &pool_off) ||
        (x->dtype != DT_F32 && x->dtype != DT_BF16) || x->ndim != 4 ||
        tensor_numel(x) == 0 || tensor_numel(y) == 0 || p->dh != 1 || p->dw != 1 ||
        p->kh * p->kw > 127 || !aligned16(x) || !aligned16(y) || (index && !aligned16(index)))
        return false;
    if (!max && p->count_include_pad && (p->pad_b != p->pad_t || p->pad_r != p->pad_l))
        return false;
    if ((max || kind == POOL_AVG_BACKWARD) && !pr->nhwc)
        return false;
    /* (the op layer gives both in one layout: contiguous, or channels-last) */
    return pr->nhwc ? tensor_is_channels_last(x) && tensor_is_channels_last(y)
                    : tensor_is_contiguous(y);
}

/* --- the graphs --- */

static cg_desc act_desc(cg_owner *o, cg_status *s, int64_t uid, const pool_problem *pr,
                        const tensor *t, cudnnDataType_t dt)
{
    int64_t st[4];
    cg_layout_strides(t->shape, pr->nhwc, st);
    return cg_tensor(o, s, uid, dt, 4, t->shape, st, 16, 0);
}

/* The resample descriptor: the mode, the window, strides and paddings (cuDNN
 * takes them as fractions), padding with -inf (max) or 0 (average). */
static cg_desc resample_desc(cg_owner *o, cg_status *s, const pool_problem *pr)
{
    const pool2d_params *p = pr->p;
    bool max = pr->kind == POOL_MAX || pr->kind == POOL_MAX_BACKWARD;
    cudnnResampleMode_t mode = max                    ? CUDNN_RESAMPLE_MAXPOOL
                               : p->count_include_pad ? CUDNN_RESAMPLE_AVGPOOL_INCLUDE_PADDING
                                                      : CUDNN_RESAMPLE_AVGPOOL_EXCLUDE_PADDING;
    cudnnPaddingMode_t pad = max ? CUDNN_NEG_INF_PAD : CUDNN_ZERO_PAD;
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnNanPropagation_t nan = CUDNN_PROPAGATE_NAN;
    int64_t spatial = 2;
    cudnnFraction_t window[2] = {{p->kh, 1}, {p->kw, 1}}, stride[2] = {{p->sh, 1}, {p->sw, 1}};
    cudnnFraction_t pre[2] = {{p->pad_t, 1}, {p->pad_l, 1}};
    cudnnFraction_t post[2] = {{p->pad_b, 1}, {p->pad_r, 1}};
    const char *what = "resample descriptor";
    cg_desc d = cg_new(o, s, CUDNN_BACKEND_RESAMPLE_DESCRIPTOR, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_MODE, CUDNN_TYPE_RESAMPLE_MODE, 1, &mode, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_NAN_PROPAGATION, CUDNN_TYPE_NAN_PROPOGATION, 1, &nan, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_PADDING_MODE, CUDNN_TYPE_PADDING_MODE, 1, &pad, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_WINDOW_DIMS, CUDNN_TYPE_FRACTION, 2, window, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_STRIDES, CUDNN_TYPE_FRACTION, 2, stride, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_PRE_PADDINGS, CUDNN_TYPE_FRACTION, 2, pre, what);
    cg_set(s, d, CUDNN_ATTR_RESAMPLE_POST_PADDINGS, CUDNN_TYPE_FRACTION, 2, post, what);
    cg_finalize(s, d, "resample descriptor finalization");
    return d;
}

/* The graph of one resample operation (cg_build_fn). */
static cg_desc pool_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, const void *ctx)
{
    const pool_problem *pr = ctx;
    bool fwd = pr->kind == POOL_MAX || pr->kind == POOL_AVG;
    cudnnDataType_t dt = pr->dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const char *what = fwd ? "resample forward operation" : "resample backward operation";
    cg_desc tx = act_desc(o, s, UID_X, pr, pr->x, dt), ty = act_desc(o, s, UID_Y, pr, pr->y, dt);
    cg_desc rd = resample_desc(o, s, pr);
    cg_desc op = cg_new(o, s, fwd ? CUDNN_BACKEND_OPERATION_RESAMPLE_FWD_DESCRIPTOR
                                  : CUDNN_BACKEND_OPERATION_RESAMPLE_BWD_DESCRIPTOR, what);
    cudnnBackendAttributeName_t ax = fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_XDESC
                                         : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_DXDESC;
    cudnnBackendAttributeName_t ay = fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_YDESC
                                         : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_DYDESC;
    cudnnBackendAttributeName_t ad = fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_DESC
                                         : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_DESC;
    cg_set(s, op, ax, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx, what);
    cg_set(s, op, ay, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ty, what);
    cg_set(s, op, ad, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd, what);
    if (pr->index) {
        cg_desc ti = act_desc(o, s, UID_INDEX, pr, pr->index, CUDNN_DATA_INT8);
        cg_set(s, op, fwd ? CUDNN_ATTR_OPERATION_RESAMPLE_FWD_IDXDESC
                          : CUDNN_ATTR_OPERATION_RESAMPLE_BWD_IDXDESC,
               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ti, what);
    }
    cg_finalize(s, op, "resample operation finalization");
    return cg_graph(o, s, h, 1, &op);
}

static void problem_args(const pool_problem *pr, cg_args *a)
{
    a->n = 0;
    a->uid[a->n] = UID_X;
    a->ptr[a->n++] = tensor_data(pr->x);
    a->uid[a->n] = UID_Y;
    a->ptr[a->n++] = tensor_data(pr->y);
    if (pr->index) {
        a->uid[a->n] = UID_INDEX;
        a->ptr[a->n++] = tensor_data(pr->index);
    }
}

/* The cache key: the kind, the shapes, the layout and the window. */
static int problem_key(const pool_problem *pr, int64_t *k)
{
    const pool2d_params *p = pr->p;
    int n = 0;
    k[n++] = 'P' << 8 | pr->kind; /* (apart from the other cuDNN paths' keys) */
    k[n++] = pr->dev.index;
    k[n++] = pr->dt;
    k[n++] = cuda_get_deterministic();
    k[n++] = pr->nhwc;
    k[n++] = pr->adaptive;
    k[n++] = p->count_include_pad;
    for (int i = 0; i < 4; i++) {
        k[n++] = pr->x->shape[i];
        k[n++] = pr->y->shape[i];
    }
    const int64_t geo[] = {p->kh, p->kw, p->sh, p->sw, p->pad_t, p->pad_l, p->pad_b, p->pad_r};
    for (size_t i = 0; i < sizeof geo / sizeof *geo; i++)
        k[n++] = geo[i];
    return n;
}

/* pr on our kernels, writing only what the graph writes (cg_run_fn); max
 * pooling's forward makes our own record of the maxima, dropped. (Max
 * pooling's backward has none: it reads cuDNN's index.) */
static int pool_ours(const void *ctx)
{
    const pool_problem *p = ctx;
    tensor *x = (tensor *)p->x, *y = (tensor *)p->y, *ws = NULL;
    int rc;
    switch (p->kind) {
    case POOL_MAX: rc = cuda_max_pool2d_kernel(y, &ws, x, p->p); break;
    case POOL_AVG:
        rc = p->adaptive ? cuda_adaptive_avg_pool2d_kernel(y, x) : cuda_avg_pool2d_kernel(y, x, p->p);
        break;
    default:
        rc = p->adaptive ? cuda_adaptive_avg_pool2d_backward_kernel(x, y)
                         : cuda_avg_pool2d_backward_kernel(x, y, p->p);
        break;
    }
    tensor_decref(ws);
    return rc;
}

/* pr's plan (cg_plan_for), or NULL with *why. */
static cg_plan *pool_plan(const pool_problem *pr, cudnnHandle_t h, const cg_args *a,
                          const char *op, int *why)
{
    int64_t key[CG_MAX_KEY];
    int nk = problem_key(pr, key);
    cg_run_fn ours = pr->kind == POOL_MAX_BACKWARD ? NULL : pool_ours;
    return cg_plan_for(key, nk, pr->dev.index, h, pool_graph, ours, NULL, pr, a, true, op, why);
}

/* What the plan cache holds for the backward of max-pooling problem fwd
 * (cg_cache_known). */
static int max_backward_known(const pool_problem *fwd)
{
    pool_problem bwd = *fwd; /* (the gradients have the shapes of x and y) */
    bwd.kind = POOL_MAX_BACKWARD;
    int64_t key[CG_MAX_KEY];
    int nk = problem_key(&bwd, key);
    return cg_cache_known(key, nk, fwd->dev.index);
}

/* Run pr through cuDNN. 0; 1 when cuDNN does not run it; -1 with the error set. */
static int pool_run(const pool_problem *pr, const char *op)
{
    cudnnHandle_t h = cg_handle(pr->dev.index, op);
    if (!h)
        return -1;
    cg_args a;
    problem_args(pr, &a);
    int why;
    cg_plan *plan = pool_plan(pr, h, &a, op, &why);
    if (!plan)
        return why;
    int rc = cg_execute(h, plan, &a, pr->dev, op);
    cg_cache_release(plan);
    return rc;
}

/* Make the plan of the backward of max-pooling problem fwd (index written; no
 * plan or note cached yet), tuned on scratch gradients (dy zero), and pin it in
 * the cache: a backward whose index is cuDNN's cannot do without it. 0 when
 * cuDNN runs that backward, 1 when not, -1 with the error set. */
static int max_backward_plan(const pool_problem *fwd, const char *op)
{
    cudnnHandle_t h = cg_handle(fwd->dev.index, op);
    if (!h)
        return -1;
    tensor *gx = tensor_empty_like(fwd->x, fwd->dt);
    tensor *gy = gx ? tensor_empty_like(fwd->y, fwd->dt) : NULL;
    int rc = gy && cuda_fill(gy, 0.0) == 0 ? 0 : -1;
    if (rc == 0) {
        pool_problem bwd = *fwd;
        bwd.kind = POOL_MAX_BACKWARD;
        bwd.x = gx;
        bwd.y = gy;
        cg_args a;
        problem_args(&bwd, &a);
        cg_plan *plan = pool_plan(&bwd, h, &a, op, &rc);
        if (plan) {
            cg_cache_pin(plan);
            cg_cache_release(plan);
            rc = 0;
        }
    }
    tensor_decref(gx);
    tensor_decref(gy);
    return rc;
}

/* --- the backend's entries --- */

int cuda_max_pool2d(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p)
{
    const char *op = "max_pool2d";
    pool_problem pr;
    int rc = 1;
    tensor *index = NULL;
    int known = -1; /* the backward's plan: cached (1), refused (-1), not yet made (0) */
    if (problem_init(&pr, POOL_MAX, x, out, NULL, p) && (known = max_backward_known(&pr)) >= 0) {
        index = tensor_empty_like(out, DT_U8); /* (laid out like out) */
        pr.index = index;
        rc = !index ? -1 : !aligned16(index) ? 1 : pool_run(&pr, op);
        if (rc == 0 && known == 0)
            rc = max_backward_plan(&pr, "max_pool2d backward");
    }
    if (rc == 0) {
        *ws = index;
        return 0;
    }
    tensor_decref(index);
    return rc < 0 ? -1 : cuda_max_pool2d_kernel(out, ws, x, p);
}

int cuda_max_pool2d_backward(tensor *gin, const tensor *gout, const tensor *ws,
                             const pool2d_params *p)
{
    const char *op = "max_pool2d backward";
    if (ws->dtype != DT_U8) /* our kernels' positions */
        return cuda_max_pool2d_backward_kernel(gin, gout, ws, p);
    /* cuDNN's index: its backward took this problem at the forward (gout in an
     * aligned copy when it is a view that is not) */
    tensor *g = aligned16(gout) ? tensor_incref((tensor *)gout)
                                : tensor_empty_like(gout, gout->dtype);
    int rc = g && (g == gout || cuda_copy(g, gout) == 0) ? 1 : -1;
    pool_problem pr;
    if (rc == 1 && problem_init(&pr, POOL_MAX_BACKWARD, gin, g, ws, p))
        rc = pool_run(&pr, op);
    tensor_decref(g);
    return rc == 1 ? err_set("%s: cuDNN does not run the backward it took at the forward (the "
                             "gradients' layout, or a plan evicted and refused since?)", op)
                   : rc;
}

/* Average pooling of kind (forward or backward) of x and y through cuDNN (for
 * adaptive average pooling when adaptive): 0; 1 when cuDNN does not run it; -1
 * with the error set. */
static int avg_try(pool_kind kind, const tensor *x, const tensor *y, const pool2d_params *p,
                   bool adaptive, const char *op)
{
    pool_problem pr;
    if (!problem_init(&pr, kind, x, y, NULL, p))
        return 1;
    pr.adaptive = adaptive;
    return pool_run(&pr, op);
}

int cuda_avg_pool2d(tensor *out, const tensor *x, const pool2d_params *p)
{
    int rc = avg_try(POOL_AVG, x, out, p, false, "avg_pool2d");
    return rc != 1 ? rc : cuda_avg_pool2d_kernel(out, x, p);
}

int cuda_avg_pool2d_backward(tensor *gin, const tensor *gout, const pool2d_params *p)
{
    int rc = avg_try(POOL_AVG_BACKWARD, gin, gout, p, false, "avg_pool2d backward");
    return rc != 1 ? rc : cuda_avg_pool2d_backward_kernel(gin, gout, p);
}

/* Adaptive average pooling as average pooling, when its windows tile the input:
 * false when they do not. */
static bool tiling_window(const tensor *in, const tensor *out, pool2d_params *p)
{
    int64_t h = in->shape[2], w = in->shape[3], oh = out->shape[2], ow = out->shape[3];
    if (in->ndim != 4 || oh == 0 || ow == 0 || h % oh != 0 || w % ow != 0)
        return false;
    *p = (pool2d_params){.kh = h / oh, .kw = w / ow, .sh = h / oh, .sw = w / ow, .dh = 1, .dw = 1,
                         .in_h = h, .in_w = w, .out_h = oh, .out_w = ow};
    return true;
}

int cuda_adaptive_avg_pool2d(tensor *out, const tensor *x)
{
    pool2d_params p;
    int rc = tiling_window(x, out, &p) ? avg_try(POOL_AVG, x, out, &p, true, "adaptive_avg_pool2d")
                                       : 1;
    return rc != 1 ? rc : cuda_adaptive_avg_pool2d_kernel(out, x);
}

int cuda_adaptive_avg_pool2d_backward(tensor *gin, const tensor *gout)
{
    pool2d_params p;
    int rc = tiling_window(gin, gout, &p)
                 ? avg_try(POOL_AVG_BACKWARD, gin, gout, &p, true, "adaptive_avg_pool2d backward")
                 : 1;
    return rc != 1 ? rc : cuda_adaptive_avg_pool2d_backward_kernel(gin, gout);
}
