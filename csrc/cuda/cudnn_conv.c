/* 2-D convolution on the GPU through cuDNN's graph API (twin: csrc/cpu/conv.c).
 *
 * Layout: cuDNN's fastest (tensor-core) engines want every tensor in one layout,
 * the weights included (NHWC activations with KRSC weights). A bfloat16 problem,
 * and a float32 one whose activations are channels-last, is run channels-last,
 * with the weights given in that layout too; otherwise (float64, or float32 with
 * all activations contiguous) it runs NCHW. A tensor not already in the chosen
 * layout goes through a copy in it.
 * cuDNN gets each tensor's real strides: the packed ones of the layout (a size-1
 * dim's stride, which addresses nothing, is given its packed value).
 *
 * bfloat16 (autocast's convolutions): x, w, y and the bias in bfloat16, the
 * compute type float32.
 *
 * Plans: a finalized plan per problem (kind, device, dtype, shapes, layout,
 * geometry, pointer alignments, TF32 and deterministic settings), chosen once by timing
 * the engine configs the heuristics propose (cg_autotune) and cached for the
 * process's life. The forward's bias and relu (conv2d_params.relu) are fused into
 * the convolution's graph as pointwise operations when an engine accepts that;
 * else a kernel adds the bias and one applies the relu (after the output is in the
 * caller's tensor). The bias gradient is a kernel of
 * its own (kernels/conv_bias.cu).
 *
 * A problem no engine takes even in NCHW runs as im2col + cuBLAS (conv_gemm.c;
 * remembered by a note on the caller's tensors, so later calls go there before
 * any layout copy), and every problem does when
 * MILES_CONV_GEMM=1. A failure that may pass (memory for an engine's
 * workspace while tuning) is an error, and nothing is remembered. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "conv_bias.h"
#include "conv_gemm.h"
#include "cuda_ctx.h"
#include "cudnn_graph.h"
#include "kernels.h"

typedef enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_FILTER } conv_kind;

/* Tensor UIDs: x is the input side (x or gx), y the output side (y or gy). */
enum { UID_X = 1, UID_W = 2, UID_Y = 3, UID_B = 4, UID_CONV_OUT = 5, UID_BIAS_OUT = 6 };

/* A tensor as cuDNN sees it: the caller's, or a copy in the problem's layout. */
typedef struct {
    const tensor *t;   /* the tensor cuDNN reads or writes */
    tensor *tmp;       /* the copy (owned), or NULL */
    int64_t stride[4]; /* t's strides */
} conv_operand;

typedef struct {
    conv_kind kind;
    dtype_t dt;
    device dev;
    bool nhwc; /* the layout of all of x, w and y */
    bool relu; /* the forward's output goes through a relu */
    const conv2d_params *p;
    conv_operand x, w, y;
    const tensor *b; /* the forward's bias, or NULL */
} conv_problem;

/* --- layouts --- */

static bool in_layout(const tensor *t, bool nhwc)
{
    return nhwc ? tensor_is_channels_last(t) : tensor_is_contiguous(t);
}

/* Channels-last and not also contiguous (a size-1 C or H x W makes it both). */
static bool strictly_channels_last(const tensor *t)
{
    return tensor_is_channels_last(t) && !tensor_is_contiguous(t);
}

/* Give cuDNN t in the layout: t itself, or a new tensor in it, which holds t's
 * values when t is an input. */
static int operand_init(conv_operand *o, const tensor *t, bool nhwc, bool input)
{
    o->t = t;
    cg_layout_strides(t->shape, nhwc, o->stride);
    if (!in_layout(t, nhwc)) {
        o->tmp = nhwc ? tensor_empty_channels_last(t->dtype, t->shape, tensor_device(t))
                      : tensor_empty(t->dtype, 4, t->shape, tensor_device(t));
        if (!o->tmp)
            return -1;
        o->t = o->tmp;
        if (input && cuda_copy(o->tmp, t) != 0)
            return -1;
    }
    return 0;
}

/* An output computed in a copy goes back into the caller's tensor. */
static int operand_finish(conv_operand *o, tensor *dst)
{
    return o->tmp ? cuda_copy(dst, o->tmp) : 0;
}

static void problem_release(conv_problem *pr)
{
    tensor_decref(pr->x.tmp);
    tensor_decref(pr->w.tmp);
    tensor_decref(pr->y.tmp);
}

/* Set up pr for x (input side), w and y (output side); the kind says which of
 * them is written, the others are read. The layout is channels-last in bfloat16
 * (tensor cores want it) and, in float32, when either activation is. */
static int problem_init(conv_problem *pr, conv_kind kind, const tensor *x, const tensor *w,
                        const tensor *y, const tensor *b, const conv2d_params *p, bool allow_nhwc)
{
    memset(pr, 0, sizeof *pr);
    pr->kind = kind;
    pr->dt = x->dtype;
    pr->dev = tensor_device(x);
    pr->p = p;
    pr->b = b;
    pr->relu = kind == CONV_FWD && p->relu;
    pr->nhwc = allow_nhwc && (pr->dt == DT_BF16 || (pr->dt == DT_F32 && (strictly_channels_last(x) ||
                                                                       strictly_channels_last(y))));
    if (operand_init(&pr->x, x, pr->nhwc, kind != CONV_BWD_DATA) != 0 ||
        operand_init(&pr->w, w, pr->nhwc, kind != CONV_BWD_FILTER) != 0 ||
        operand_init(&pr->y, y, pr->nhwc, kind != CONV_FWD) != 0)
        return -1;
    return 0;
}

/* --- the graph --- */

/* The attributes of the three convolution operations, in the order x, w, y. */
static const struct {
    cudnnBackendDescriptorType_t type;
    cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
} conv_ops[3] = {
    [CONV_FWD] = {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
                  CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
                  CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
                  CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
                  CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
                  CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
                  CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
    [CONV_BWD_DATA] = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
    [CONV_BWD_FILTER] = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA},
};

/* The type of the tensors, and the one computed in (and of the intermediate). */
static cudnnDataType_t cudnn_type(dtype_t dt)
{
    return dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 : dt == DT_F32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
}

static cudnnDataType_t compute_type(dtype_t dt)
{
    return dt == DT_F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
}

static cg_desc operand_desc(cg_owner *o, cg_status *s, int64_t uid, const conv_problem *pr,
                            const conv_operand *op)
{
    return cg_tensor(o, s, uid, cudnn_type(pr->dt), 4, op->t->shape, op->stride,
                     cg_alignment(tensor_data(op->t)), 0);
}

/* The convolution's geometry: cross-correlation (PyTorch's convolution), the
 * same padding after as before (the output size is then PyTorch's). */
static cg_desc conv_desc(cg_owner *o, cg_status *s, const conv_problem *pr)
{
    cudnnDataType_t comp = compute_type(pr->dt);
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    int64_t spatial = 2;
    cg_desc c = cg_new(o, s, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR,
                       "convolution descriptor creation");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp,
           "convolution compute type");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode,
           "convolution mode");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial,
           "convolution spatial dims");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pr->p->padding,
           "convolution pre-paddings");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pr->p->padding,
           "convolution post-paddings");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, pr->p->stride,
           "convolution strides");
    cg_set(s, c, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, pr->p->dilation,
           "convolution dilations");
    cg_finalize(s, c, "convolution descriptor finalization");
    return c;
}

/* The operation graph of pr into o: the convolution (alpha 1, beta 0: outputs
 * are overwritten), and with fuse the forward's epilogue after it, each step's
 * output a virtual tensor (of the compute type) but the last: the addition of
 * the bias [1, OC, 1, 1] when there is one, then the relu when asked. */
static cg_desc conv_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, const conv_problem *pr,
                          bool fuse)
{
    cudnnDataType_t comp = compute_type(pr->dt);
    bool bias = fuse && pr->b, relu = fuse && pr->relu;
    cg_desc tx = operand_desc(o, s, UID_X, pr, &pr->x);
    cg_desc tw = operand_desc(o, s, UID_W, pr, &pr->w);
    cg_desc ty = operand_desc(o, s, UID_Y, pr, &pr->y);
    cg_desc tout = ty;
    if (fuse)
        tout = cg_tensor(o, s, UID_CONV_OUT, comp, 4, pr->y.t->shape, pr->y.stride, 16, CG_VIRTUAL);
    cg_desc cd = conv_desc(o, s, pr);

    float alpha_f = 1.0f, beta_f = 0.0f;
    double alpha_d = 1.0, beta_d = 0.0;
    bool f32 = comp == CUDNN_DATA_FLOAT;
    cudnnBackendAttributeType_t ab = f32 ? CUDNN_TYPE_FLOAT : CUDNN_TYPE_DOUBLE;
    const void *alpha = f32 ? (const void *)&alpha_f : (const void *)&alpha_d;
    const void *beta = f32 ? (const void *)&beta_f : (const void *)&beta_d;
    const char *what = "convolution operation";
    cg_desc ops[3];
    int nops = 1;
    ops[0] = cg_new(o, s, conv_ops[pr->kind].type, what);
    cg_set(s, ops[0], conv_ops[pr->kind].x, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx, what);
    cg_set(s, ops[0], conv_ops[pr->kind].w, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tw, what);
    cg_set(s, ops[0], conv_ops[pr->kind].y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tout, what);
    cg_set(s, ops[0], conv_ops[pr->kind].conv, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd, what);
    cg_set(s, ops[0], conv_ops[pr->kind].alpha, ab, 1, alpha, "convolution alpha");
    cg_set(s, ops[0], conv_ops[pr->kind].beta, ab, 1, beta, "convolution beta");
    cg_finalize(s, ops[0], "convolution operation finalization");
    if (bias) {
        int64_t bshape[4] = {1, pr->y.t->shape[1], 1, 1}, bstride[4];
        cg_layout_strides(bshape, pr->nhwc, bstride);
        cg_desc tb = cg_tensor(o, s, UID_B, cudnn_type(pr->dt), 4, bshape, bstride,
                               cg_alignment(tensor_data(pr->b)), 0);
        cg_desc tsum = relu ? cg_tensor(o, s, UID_BIAS_OUT, comp, 4, pr->y.t->shape,
                                        pr->y.stride, 16, CG_VIRTUAL)
                            : ty;
        ops[nops++] = cg_pointwise(o, s, CUDNN_POINTWISE_ADD, comp, tout, &tb, tsum,
                                   "bias addition");
        tout = tsum;
    }
    if (relu)
        ops[nops++] = cg_pointwise(o, s, CUDNN_POINTWISE_RELU_FWD, comp, tout, NULL, ty, "relu");
    return cg_graph(o, s, h, nops, ops);
}

/* The buffers of pr by UID (the bias only when the plan adds it). */
static void conv_args(const conv_problem *pr, bool fused, cg_args *a)
{
    bool with_bias = fused && pr->b;
    a->n = 0;
    a->uid[a->n] = UID_X;
    a->ptr[a->n++] = tensor_data(pr->x.t);
    a->uid[a->n] = UID_W;
    a->ptr[a->n++] = tensor_data(pr->w.t);
    a->uid[a->n] = UID_Y;
    a->ptr[a->n++] = tensor_data(pr->y.t);
    if (with_bias) {
        a->uid[a->n] = UID_B;
        a->ptr[a->n++] = tensor_data(pr->b);
    }
}

/* --- plans --- */

/* A cache key's geometry part, after its n first values: the shapes of x, w and
 * y and the convolution's parameters. Returns the new length. */
static int key_geometry(int64_t *k, int n, const tensor *x, const tensor *w, const tensor *y,
                        const conv2d_params *p)
{
    for (int i = 0; i < 4; i++) {
        k[n++] = x->shape[i];
        k[n++] = w->shape[i];
        k[n++] = y->shape[i];
    }
    for (int i = 0; i < 2; i++) {
        k[n++] = p->stride[i];
        k[n++] = p->padding[i];
        k[n++] = p->dilation[i];
    }
    k[n++] = p->groups;
    return n;
}

/* The cache key: everything the plan depends on (the strides follow from the
 * shapes and the layout). */
static int conv_key(const conv_problem *pr, bool tf32, int64_t *k)
{
    int n = 0;
    k[n++] = pr->kind;
    k[n++] = pr->dev.index;
    k[n++] = pr->dt;
    k[n++] = tf32;
    k[n++] = cuda_get_deterministic();
    k[n++] = pr->nhwc;
    k[n++] = pr->b != NULL;
    k[n++] = pr->relu;
    n = key_geometry(k, n, pr->x.t, pr->w.t, pr->y.t, pr->p);
    k[n++] = cg_alignment(tensor_data(pr->x.t));
    k[n++] = cg_alignment(tensor_data(pr->w.t));
    k[n++] = cg_alignment(tensor_data(pr->y.t));
    k[n++] = pr->b ? cg_alignment(tensor_data(pr->b)) : 0;
    return n;
}

/* Build pr's graph and choose its engine by timing; the plan's tag records
 * whether it fuses the epilogue (bias, relu). NULL with the error set when that fails: *why is 1
 * when cuDNN does not take the problem (a descriptor it refuses, no engine), -1
 * for a failure that may pass (memory, a CUDA call). */
static cg_plan *conv_plan(const conv_problem *pr, cudnnHandle_t h, bool fuse, bool tf32,
                          const char *op, int *why)
{
    *why = -1;
    cg_plan *plan = cg_plan_new(op);
    if (!plan)
        return NULL;
    cg_status s = {0};
    cg_desc graph = conv_graph(&plan->own, &s, h, pr, fuse);
    cg_args a;
    conv_args(pr, fuse, &a);
    bool tensor_cores = pr->dt != DT_F32 || tf32;
    int rc = s.status != CUDNN_STATUS_SUCCESS
                 ? cg_build_failure(&s, op)
                 : cg_autotune(plan, h, graph, tensor_cores, &a, pr->dev, op);
    if (rc != 0) {
        *why = rc;
        cg_plan_free(plan);
        return NULL;
    }
    plan->tag = fuse;
    return plan;
}

/* The tags of cached entries that hold no plan: no engine took the channels-last
 * problem (float32 with TF32 off can leave none), solve it in NCHW; no engine
 * took the NCHW one either, run it as im2col + cuBLAS. */
#define USE_NCHW (-1)
#define USE_GEMM (-2)

/* Run pr's convolution, with the forward's bias and relu when the plan fuses
 * them (else *epilogue_left says the caller applies them). 0; 1 when no engine
 * takes pr in channels-last, 2 when none takes it at all (both remembered: later
 * calls answer at once); or -1 with the error set. */
static int conv_run(const conv_problem *pr, bool *epilogue_left, const char *op)
{
    cudnnHandle_t h = cg_handle(pr->dev.index, op);
    if (!h)
        return -1;
    bool tf32 = cuda_get_tf32();
    int64_t key[CG_MAX_KEY];
    int nk = conv_key(pr, tf32, key);
    cg_plan *plan = cg_cache_find(key, nk, pr->dev.index);
    bool retry_fused = false; /* the fused try failed in a way that may pass: keep nothing */
    if (!plan && cuda_capturing_any()) /* (its timing would break a capture on any GPU) */
        return err_set("%s: a convolution problem first came inside a CUDA graph capture (its "
                       "engine is chosen by timing, which a capture cannot do): run the "
                       "captured function once before capturing it", op);
    if (!plan) {
        /* An engine for the fused graph if there is one; else the plain convolution.
         * No engine fuses float64. */
        int why = 0;
        if ((pr->b || pr->relu) && pr->dt != DT_F64) {
            plan = conv_plan(pr, h, true, tf32, "conv2d (bias and relu fused)", &why);
            retry_fused = !plan && why < 0;
            if (!plan && cg_verbose())
                fprintf(stderr, "miles: %s\n", err_msg());
        }
        if (!plan)
            plan = conv_plan(pr, h, false, tf32, op, &why);
        if (!plan && why < 0)
            return -1; /* nothing remembered: the next call tries again */
        if (!plan) {
            if (cg_verbose())
                fprintf(stderr, "miles: %s; %s\n", err_msg(),
                        pr->nhwc ? "solving it in NCHW" : "running it as im2col + cuBLAS");
            plan = cg_plan_new(op);
            if (plan)
                plan->tag = pr->nhwc ? USE_NCHW : USE_GEMM;
        }
        if (plan && !retry_fused)
            plan = cg_cache_insert(key, nk, pr->dev.index, plan, op);
        if (!plan)
            return -1;
    }
    int rc = plan->tag == USE_NCHW ? 1 : 2;
    if (plan->tag >= 0) {
        cg_args a;
        conv_args(pr, plan->tag, &a);
        rc = cg_execute(h, plan, &a, pr->dev, op);
        *epilogue_left = rc == 0 && (pr->b || pr->relu) && !plan->tag;
    }
    if (retry_fused) /* (used once: the next call tries the fused graph again) */
        cg_plan_free_when_done(plan);
    else
        cg_cache_release(plan);
    return rc;
}

/* --- kernels --- */

/* The forward's bias (when b is given) and relu (p->relu) applied to y by kernels. */
static int conv_epilogue(tensor *y, const tensor *b, const conv2d_params *p)
{
    int rc = b ? cuda_conv_bias_add(y, b) : 0;
    return rc == 0 && p->relu ? cuda_unary_kernel(UN_RELU, y, y, 0, 0) : rc;
}

static int conv_gemm_widened(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                             const tensor *b, const conv2d_params *p);

/* The convolution as im2col + cuBLAS (a bfloat16 one on float32 copies). */
static int conv_gemm(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                     const tensor *b, const conv2d_params *p)
{
    if (x->dtype == DT_BF16)
        return conv_gemm_widened(kind, x, w, y, b, p);
    switch (kind) {
    case CONV_FWD: { /* (its bias added, the relu after) */
        int rc = cuda_conv2d_gemm((tensor *)y, x, w, b, p);
        return rc == 0 && p->relu ? cuda_unary_kernel(UN_RELU, (tensor *)y, y, 0, 0) : rc;
    }
    case CONV_BWD_DATA: return cuda_conv2d_backward_data_gemm((tensor *)x, y, w, p);
    case CONV_BWD_FILTER: return cuda_conv2d_backward_weight_gemm((tensor *)w, x, y, p);
    }
    return -1;
}

/* A float32 copy of t in its layout, holding t's values when read. */
static tensor *f32_copy(const tensor *t, bool read)
{
    tensor *c = tensor_empty_like(t, DT_F32);
    if (c && read && cuda_copy(c, t) != 0) {
        tensor_decref(c);
        return NULL;
    }
    return c;
}

/* A bfloat16 convolution as im2col + cuBLAS: that path's kernels are float32's,
 * and its weight gradient sums the images one by one into the output (which in
 * bf16 would round at each), so it runs on float32 copies and the written
 * tensor is rounded once, as csrc/widen.c does for the kernels without bf16. */
static int conv_gemm_widened(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                             const tensor *b, const conv2d_params *p)
{
    tensor *xf = f32_copy(x, kind != CONV_BWD_DATA);
    tensor *wf = xf ? f32_copy(w, kind != CONV_BWD_FILTER) : NULL;
    tensor *yf = wf ? f32_copy(y, kind != CONV_FWD) : NULL;
    tensor *bf = yf && b ? f32_copy(b, true) : NULL;
    int rc = yf && (bf || !b) ? conv_gemm(kind, xf, wf, yf, bf, p) : -1;
    if (rc == 0)
        rc = kind == CONV_FWD ? cuda_copy((tensor *)y, yf)
             : kind == CONV_BWD_DATA ? cuda_copy((tensor *)x, xf)
                                     : cuda_copy((tensor *)w, wf);
    tensor_decref(xf);
    tensor_decref(wf);
    tensor_decref(yf);
    tensor_decref(bf);
    return rc;
}

/* Is MILES_CONV_GEMM set (not "0")? */
static bool gemm_forced(void)
{
    static int forced = -1;
    if (forced < 0) {
        const char *v = getenv("MILES_CONV_GEMM");
        forced = v && *v && strcmp(v, "0") != 0;
    }
    return forced;
}

/* The plan cache's note that a problem (as the caller's tensors are, before any
 * layout copy) runs as im2col + cuBLAS: its key, marked apart from the plans'. */
#define GEMM_NOTE (-3)
static int gemm_note_key(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                         const tensor *b, const conv2d_params *p, int64_t *k)
{
    int n = 0;
    k[n++] = GEMM_NOTE;
    k[n++] = kind;
    k[n++] = tensor_device(x).index;
    k[n++] = x->dtype;
    k[n++] = cuda_get_tf32();
    k[n++] = cuda_get_deterministic();
    k[n++] = b != NULL;
    k[n++] = strictly_channels_last(x);
    k[n++] = strictly_channels_last(y);
    return key_geometry(k, n, x, w, y, p);
}

/* Is there such a note? With remember, make one. */
static bool gemm_noted(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                       const tensor *b, const conv2d_params *p, bool remember, const char *op)
{
    int64_t key[CG_MAX_KEY];
    int nk = gemm_note_key(kind, x, w, y, b, p, key);
    int dev = tensor_device(x).index;
    cg_plan *note = cg_cache_find(key, nk, dev);
    if (!note && remember && (note = cg_plan_new(op)) != NULL) {
        note->tag = USE_GEMM;
        note = cg_cache_insert(key, nk, dev, note, op);
    }
    if (note)
        cg_cache_release(note);
    return note != NULL;
}

/* Solve one convolution kind: x, w, y as the kind reads and writes them (the
 * written one is finished from its temporary when it had one), in
 * channels-last in bfloat16 or when the activations are, else (or when no
 * engine takes that) in NCHW, else (or when forced) as im2col + cuBLAS; then the
 * forward's bias if the plan left it. */
static int conv_solve(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                      const tensor *b, const conv2d_params *p, const char *op)
{
    if (gemm_forced() || gemm_noted(kind, x, w, y, b, p, false, op))
        return conv_gemm(kind, x, w, y, b, p);
    int rc = 1;
    for (int attempt = 0; rc == 1 && attempt < 2; attempt++) {
        conv_problem pr;
        rc = problem_init(&pr, kind, x, w, y, b, p, attempt == 0) == 0 ? 0 : err_prefix(op);
        conv_operand *out = kind == CONV_FWD ? &pr.y : kind == CONV_BWD_DATA ? &pr.x : &pr.w;
        tensor *dst = (tensor *)(kind == CONV_FWD ? y : kind == CONV_BWD_DATA ? x : w);
        bool epilogue_left = false;
        if (rc == 0)
            rc = conv_run(&pr, &epilogue_left, op); /* its messages name the op */
        if (rc == 0 && operand_finish(out, dst) != 0)
            rc = err_prefix(op);
        if (rc == 0 && epilogue_left)
            rc = conv_epilogue(dst, b, p); /* so do these */
        problem_release(&pr);
    }
    if (rc == 2)
        gemm_noted(kind, x, w, y, b, p, true, op); /* later calls go there at once */
    return rc == 2 ? conv_gemm(kind, x, w, y, b, p) : rc;
}

int cuda_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                const conv2d_params *p)
{
    const char *op = "conv2d";
    if (tensor_numel(y) == 0)
        return 0;
    if (tensor_numel(x) == 0 || tensor_numel(w) == 0) { /* no input channels: y = b */
        if (cuda_fill(y, 0.0) != 0)
            return err_prefix(op);
        return conv_epilogue(y, b, p);
    }
    return conv_solve(CONV_FWD, x, w, y, b, p, op);
}

int cuda_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                              const conv2d_params *p)
{
    const char *op = "conv2d backward (input gradient)";
    if (tensor_numel(gx) == 0)
        return 0;
    if (tensor_numel(gy) == 0 || tensor_numel(w) == 0)
        return cuda_fill(gx, 0.0) == 0 ? 0 : err_prefix(op);
    return conv_solve(CONV_BWD_DATA, gx, w, gy, NULL, p, op);
}

int cuda_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                const conv2d_params *p)
{
    const char *op = "conv2d backward (weight gradient)";
    int rc = 0;
    if (tensor_numel(gw) > 0 && (tensor_numel(x) == 0 || tensor_numel(gy) == 0))
        rc = cuda_fill(gw, 0.0) == 0 ? 0 : err_prefix(op);
    else if (tensor_numel(gw) > 0)
        rc = conv_solve(CONV_BWD_FILTER, x, gw, gy, NULL, p, op);
    if (rc == 0 && gb)
        rc = cuda_conv_bias_grad(gb, gy); /* its messages name the op */
    return rc;
}
