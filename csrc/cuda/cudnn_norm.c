/* Batch norm on the GPU through cuDNN's graph API (twin: csrc/cpu/batchnorm.c).
 *
 * Training: one graph, cuDNN's batch norm (training phase: the batch statistics,
 * the mean and 1/std it used, the updated running statistics), then the
 * epilogue fused after it (bn_epilogue: + residual, relu), each step's output a
 * virtual tensor but the last. The updated running statistics go to scratch
 * tensors and are copied into the caller's after the run: the graph's input and
 * output running statistics are distinct tensors, and the engine choice runs the
 * graph several times, which must not update them several times.
 * Evaluation: our kernel writes the mean and 1/std used (the running ones), then
 * cuDNN's batch norm (inference phase) normalises with them, the epilogue fused.
 * Backward (training mode): cuDNN's batch norm backward (gx, and the weight's
 * and bias's gradients, into scratch tensors when the caller wants none). When
 * the forward had a relu, gy is masked by relu_out > 0 first, into g_residual
 * when asked for, else into a temporary (cuda_activation_backward): cuDNN fuses
 * a relu's backward into the norm's only when the graph recomputes the relu's
 * input from x (an inference-phase norm before it, no residual) or reads a
 * boolean mask the forward saved, with the masked gradient virtual and in x's
 * type; our kernel, which masks in its own pass, runs it when it times faster
 * than the masking pass and cuDNN's backward together (the temporary is made
 * only when cuDNN may run the problem).
 * Activations bfloat16 or float32; parameters and statistics float32; computed
 * in float32. Training and backward channels-last only: cuDNN's engines for
 * those (its NHWC batch-norm kernels) refuse NCHW, so NCHW problems go straight
 * to our kernels rather than through a heuristics query each; evaluation in
 * either layout.
 *
 * Plans: one per problem (kind, device, dtype, shape, layout, epilogue,
 * alignments, the deterministic setting), chosen by timing (cg_autotune) and
 * cached. Our kernels (kernels/batchnorm.cu) run what cuDNN is not given:
 * float64, other than 4-D, no weight or bias, per-channel tensors with gaps, NCHW
 * training and backward, an evaluation-mode backward, a backward without gx,
 * and a problem first met inside a CUDA graph capture (an engine is chosen by
 * timing, which a capture cannot do). A problem no engine takes runs on our kernels too, which the plan
 * cache remembers; MILES_CUDNN_NORM=0 sends every problem there. */
#include <stdbool.h>

#include "../error.h"
#include "cuda_backend.h"
#include "cudnn_graph.h"
#include "kernels.h"

typedef enum { BN_TRAIN, BN_EVAL, BN_BACKWARD } bn_kind;

/* Tensor UIDs. */
enum {
    UID_X = 1, UID_Y, UID_SCALE, UID_BIAS, UID_EPS, UID_MOMENTUM, UID_MEAN, UID_INVSTD,
    UID_RMEAN_IN, UID_RVAR_IN, UID_RMEAN_OUT, UID_RVAR_OUT, UID_RESIDUAL, UID_NORM_OUT,
    UID_SUM_OUT, UID_DY, UID_DX, UID_DSCALE, UID_DBIAS
};

/* One batch norm call as cuDNN gets it: the caller's tensors, and the scratch
 * tensors that stand in for the ones it does not give. */
typedef struct {
    bn_kind kind;
    device dev;
    dtype_t dt;
    bool nhwc;
    const tensor *x, *w, *b, *mean, *invstd;
    /* forward */
    tensor *y;
    const tensor *residual, *running_mean, *running_var;
    bool relu;
    float eps, momentum; /* (the by-value scalars: their addresses go to cuDNN) */
    tensor *rmean_out, *rvar_out; /* scratch */
    /* backward */
    tensor *gx, *gw, *gb;
    const tensor *gy;
    /* when the forward had a relu (relu set): gy is `masked`, written first with
     * relu_gy masked by relu_out > 0 (the caller's g_residual, else a temporary
     * that norm_run makes; NULL until then) */
    tensor *masked;
    const tensor *relu_gy, *relu_out;
    tensor *gw_tmp, *gb_tmp; /* scratch */
} bn_problem;

/* --- which problems go to cuDNN --- */

static int norm_off = -1; /* MILES_CUDNN_NORM=0 (cg_switched_off) */

/* A per-channel [C] tensor cuDNN can read as [1, C, 1, 1]: float32, packed. */
static bool channel_ok(const tensor *t)
{
    return t && t->dtype == DT_F32 && t->ndim == 1 && (t->shape[0] == 1 || t->stride[0] == 1);
}

/* An activation in x's layout (NULL is fine: absent). */
static bool like_x(const tensor *t, const tensor *x, bool nhwc)
{
    if (!t)
        return true;
    if (t->dtype != x->dtype || t->ndim != 4)
        return false;
    for (int i = 0; i < 4; i++)
        if (t->shape[i] != x->shape[i])
            return false;
    return nhwc ? tensor_is_channels_last(t) : tensor_is_contiguous(t);
}

/* The parts every kind shares: x and its layout, the weight, the statistics. */
static bool common_ok(bn_problem *pr)
{
    const tensor *x = pr->x;
    if (cg_switched_off("MILES_CUDNN_NORM", &norm_off) ||
        (x->dtype != DT_F32 && x->dtype != DT_BF16) || x->ndim != 4 ||
        tensor_numel(x) == 0)
        return false;
    pr->dev = tensor_device(x);
    pr->dt = x->dtype;
    pr->nhwc = !tensor_is_contiguous(x); /* (the op layer passes contiguous or channels-last) */
    if (pr->nhwc && !tensor_is_channels_last(x))
        return false;
    return channel_ok(pr->w) && channel_ok(pr->mean) && channel_ok(pr->invstd);
}

/* --- the graphs --- */

static cudnnDataType_t act_type(dtype_t dt)
{
    return dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* An activation-shaped tensor: t's buffer, or (t NULL) a virtual float32 one. */
static cg_desc act_desc(cg_owner *o, cg_status *s, int64_t uid, const bn_problem *pr,
                        const tensor *t)
{
    int64_t st[4];
    cg_layout_strides(pr->x->shape, pr->nhwc, st);
    if (!t)
        return cg_tensor(o, s, uid, CUDNN_DATA_FLOAT, 4, pr->x->shape, st, 16, CG_VIRTUAL);
    return cg_tensor(o, s, uid, act_type(pr->dt), 4, pr->x->shape, st,
                     cg_alignment(tensor_data(t)), 0);
}

/* A per-channel tensor [1, C, 1, 1] of float32, declared `align`-byte aligned. */
static cg_desc chan_desc(cg_owner *o, cg_status *s, int64_t uid, const bn_problem *pr,
                         int64_t align)
{
    int64_t c = pr->x->shape[1];
    int64_t dims[4] = {1, c, 1, 1}, st[4] = {c, 1, c, c};
    return cg_tensor(o, s, uid, CUDNN_DATA_FLOAT, 4, dims, st, align, 0);
}

/* A float32 scalar passed by value. */
static cg_desc scalar_desc(cg_owner *o, cg_status *s, int64_t uid)
{
    int64_t one[4] = {1, 1, 1, 1};
    return cg_tensor(o, s, uid, CUDNN_DATA_FLOAT, 4, one, one, 4, CG_BY_VALUE);
}

static void set_desc(cg_status *s, cg_desc op, cudnnBackendAttributeName_t name, cg_desc d,
                     const char *what)
{
    cg_set(s, op, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d, what);
}

/* A per-channel operand of a norm operation: its attribute, UID and tensor. */
typedef struct {
    cudnnBackendAttributeName_t attr;
    int64_t uid;
    const tensor *t; /* NULL: not an operand of this graph */
} chan_operand;

/* The per-channel operands, all declared with the smallest alignment among them:
 * cuDNN wants the statistics' descriptors alike ("similar"). */
static void set_chans(cg_owner *o, cg_status *s, cg_desc op, const bn_problem *pr,
                      const chan_operand *c, int n, const char *what)
{
    int64_t align = 16;
    for (int i = 0; i < n; i++)
        if (c[i].t && cg_alignment(tensor_data(c[i].t)) < align)
            align = cg_alignment(tensor_data(c[i].t));
    for (int i = 0; i < n; i++)
        if (c[i].t)
            set_desc(s, op, c[i].attr, chan_desc(o, s, c[i].uid, pr, align), what);
}

/* The forward's graph: the batch norm, then the epilogue (+ residual, relu). */
static cg_desc forward_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, const bn_problem *pr)
{
    const char *what = "batch norm forward operation";
    bool training = pr->kind == BN_TRAIN, epilogue = pr->residual || pr->relu;
    cudnnBackendNormMode_t mode = CUDNN_BATCH_NORM;
    cudnnBackendNormFwdPhase_t phase = training ? CUDNN_NORM_FWD_TRAINING : CUDNN_NORM_FWD_INFERENCE;
    cg_desc ty = act_desc(o, s, UID_Y, pr, pr->y);
    cg_desc tnorm = epilogue ? act_desc(o, s, UID_NORM_OUT, pr, NULL) : ty;
    cg_desc ops[3];
    int nops = 0;
    cg_desc op = ops[nops++] = cg_new(o, s, CUDNN_BACKEND_OPERATION_NORM_FORWARD_DESCRIPTOR, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_NORM_FWD_MODE, CUDNN_TYPE_NORM_MODE, 1, &mode, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_NORM_FWD_PHASE, CUDNN_TYPE_NORM_FWD_PHASE, 1, &phase, what);
    set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_FWD_XDESC, act_desc(o, s, UID_X, pr, pr->x), what);
    bool running = training && pr->running_mean;
    const chan_operand chans[] = {
        {CUDNN_ATTR_OPERATION_NORM_FWD_MEAN_DESC, UID_MEAN, pr->mean},
        {CUDNN_ATTR_OPERATION_NORM_FWD_INV_VARIANCE_DESC, UID_INVSTD, pr->invstd},
        {CUDNN_ATTR_OPERATION_NORM_FWD_SCALE_DESC, UID_SCALE, pr->w},
        {CUDNN_ATTR_OPERATION_NORM_FWD_BIAS_DESC, UID_BIAS, pr->b},
        {CUDNN_ATTR_OPERATION_NORM_FWD_INPUT_RUNNING_MEAN_DESC, UID_RMEAN_IN,
         running ? pr->running_mean : NULL},
        {CUDNN_ATTR_OPERATION_NORM_FWD_INPUT_RUNNING_VAR_DESC, UID_RVAR_IN,
         running ? pr->running_var : NULL},
        {CUDNN_ATTR_OPERATION_NORM_FWD_OUTPUT_RUNNING_MEAN_DESC, UID_RMEAN_OUT,
         running ? pr->rmean_out : NULL},
        {CUDNN_ATTR_OPERATION_NORM_FWD_OUTPUT_RUNNING_VAR_DESC, UID_RVAR_OUT,
         running ? pr->rvar_out : NULL},
    };
    set_chans(o, s, op, pr, chans, (int)(sizeof chans / sizeof *chans), what);
    if (training)
        set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_FWD_EPSILON_DESC, scalar_desc(o, s, UID_EPS),
                 what);
    if (running)
        set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_FWD_EXP_AVG_FACTOR_DESC,
                 scalar_desc(o, s, UID_MOMENTUM), what);
    set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_FWD_YDESC, tnorm, what);
    cg_finalize(s, op, "batch norm forward operation finalization");
    if (pr->residual) {
        cg_desc tres = act_desc(o, s, UID_RESIDUAL, pr, pr->residual);
        cg_desc tsum = pr->relu ? act_desc(o, s, UID_SUM_OUT, pr, NULL) : ty;
        ops[nops++] = cg_pointwise(o, s, CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, tnorm, &tres, tsum,
                                   "residual addition");
        tnorm = tsum;
    }
    if (pr->relu)
        ops[nops++] = cg_pointwise(o, s, CUDNN_POINTWISE_RELU_FWD, CUDNN_DATA_FLOAT, tnorm, NULL,
                                   ty, "relu");
    return cg_graph(o, s, h, nops, ops);
}

/* The backward's graph: the batch norm's backward. */
static cg_desc backward_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, const bn_problem *pr)
{
    const char *what = "batch norm backward operation";
    cudnnBackendNormMode_t mode = CUDNN_BATCH_NORM;
    cg_desc op = cg_new(o, s, CUDNN_BACKEND_OPERATION_NORM_BACKWARD_DESCRIPTOR, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_NORM_BWD_MODE, CUDNN_TYPE_NORM_MODE, 1, &mode, what);
    set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_BWD_XDESC, act_desc(o, s, UID_X, pr, pr->x), what);
    set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_BWD_DYDESC, act_desc(o, s, UID_DY, pr, pr->gy),
             what);
    const chan_operand chans[] = {
        {CUDNN_ATTR_OPERATION_NORM_BWD_SCALE_DESC, UID_SCALE, pr->w},
        {CUDNN_ATTR_OPERATION_NORM_BWD_MEAN_DESC, UID_MEAN, pr->mean},
        {CUDNN_ATTR_OPERATION_NORM_BWD_INV_VARIANCE_DESC, UID_INVSTD, pr->invstd},
        {CUDNN_ATTR_OPERATION_NORM_BWD_DSCALE_DESC, UID_DSCALE, pr->gw ? pr->gw : pr->gw_tmp},
        {CUDNN_ATTR_OPERATION_NORM_BWD_DBIAS_DESC, UID_DBIAS, pr->gb ? pr->gb : pr->gb_tmp},
    };
    set_chans(o, s, op, pr, chans, (int)(sizeof chans / sizeof *chans), what);
    set_desc(s, op, CUDNN_ATTR_OPERATION_NORM_BWD_DXDESC, act_desc(o, s, UID_DX, pr, pr->gx),
             what);
    cg_finalize(s, op, "batch norm backward operation finalization");
    return cg_graph(o, s, h, 1, &op);
}

static void arg(cg_args *a, int64_t uid, const void *p)
{
    a->uid[a->n] = uid;
    a->ptr[a->n++] = (void *)p;
}

/* The buffers of pr by UID (the scalars by their host addresses). */
static void problem_args(const bn_problem *pr, cg_args *a)
{
    a->n = 0;
    arg(a, UID_X, tensor_data(pr->x));
    arg(a, UID_SCALE, tensor_data(pr->w));
    arg(a, UID_MEAN, tensor_data(pr->mean));
    arg(a, UID_INVSTD, tensor_data(pr->invstd));
    if (pr->kind == BN_BACKWARD) {
        /* (no gy yet: the temporary to come, 16-byte aligned as every block of our
         * allocator is, which cg_alignment(NULL) says too) */
        arg(a, UID_DY, pr->gy ? tensor_data(pr->gy) : NULL);
        arg(a, UID_DSCALE, tensor_data(pr->gw ? pr->gw : pr->gw_tmp));
        arg(a, UID_DBIAS, tensor_data(pr->gb ? pr->gb : pr->gb_tmp));
        arg(a, UID_DX, tensor_data(pr->gx));
        return;
    }
    arg(a, UID_BIAS, tensor_data(pr->b));
    arg(a, UID_Y, tensor_data(pr->y));
    if (pr->residual)
        arg(a, UID_RESIDUAL, tensor_data(pr->residual));
    if (pr->kind == BN_TRAIN) {
        arg(a, UID_EPS, &pr->eps);
        if (pr->running_mean) {
            arg(a, UID_MOMENTUM, &pr->momentum);
            arg(a, UID_RMEAN_IN, tensor_data(pr->running_mean));
            arg(a, UID_RVAR_IN, tensor_data(pr->running_var));
            arg(a, UID_RMEAN_OUT, tensor_data(pr->rmean_out));
            arg(a, UID_RVAR_OUT, tensor_data(pr->rvar_out));
        }
    }
}

/* --- plans --- */

/* The cache key: the problem's kind and shape, and every buffer's alignment
 * (the UIDs in order, so that which tensors are present is in it too). */
static int problem_key(const bn_problem *pr, const cg_args *a, int64_t *k)
{
    int n = 0;
    k[n++] = 'B' << 8 | pr->kind; /* (apart from the convolutions' keys) */
    k[n++] = pr->dev.index;
    k[n++] = pr->dt;
    k[n++] = cuda_get_deterministic();
    k[n++] = pr->nhwc;
    k[n++] = pr->relu;
    for (int i = 0; i < 4; i++)
        k[n++] = pr->x->shape[i];
    for (int i = 0; i < a->n; i++) { /* (a by-value scalar's host address says nothing) */
        bool by_value = a->uid[i] == UID_EPS || a->uid[i] == UID_MOMENTUM;
        k[n++] = a->uid[i];
        k[n++] = by_value ? 0 : cg_alignment(a->ptr[i]);
    }
    return n;
}

/* The graph of the problem pr points to (cg_build_fn). */
static cg_desc problem_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, const void *pr)
{
    const bn_problem *p = pr;
    return p->kind == BN_BACKWARD ? backward_graph(o, s, h, p) : forward_graph(o, s, h, p);
}

/* pr on our kernels, writing only what the graph writes (cg_run_fn): without
 * running statistics to update (the graph writes the scratch ones). A backward
 * after a relu runs as our kernel runs it, masking relu_gy in its pass. */
static int problem_ours(const void *ctx)
{
    const bn_problem *p = ctx;
    if (p->kind == BN_BACKWARD)
        return cuda_batch_norm_backward_kernel(p->gx, p->gw ? p->gw : p->gw_tmp,
                                               p->gb ? p->gb : p->gb_tmp,
                                               p->relu ? p->relu_gy : p->gy, p->x, p->w, p->mean,
                                               p->invstd, true, p->relu ? p->relu_out : NULL,
                                               NULL);
    bn_epilogue ep = {p->residual, p->relu};
    bool training = p->kind == BN_TRAIN;
    return cuda_batch_norm_kernel(p->y, (tensor *)p->mean, (tensor *)p->invstd, p->x, p->w, p->b,
                                  training ? NULL : (tensor *)p->running_mean,
                                  training ? NULL : (tensor *)p->running_var, training,
                                  p->momentum, p->eps, &ep);
}

/* The masking pass before cuDNN's backward after a relu (cg_run_fn): gy from
 * relu_gy and relu_out. */
static int relu_mask(const void *ctx)
{
    const bn_problem *p = ctx;
    return cuda_activation_backward(UN_RELU, p->masked, p->relu_gy, p->relu_out);
}

/* Run pr through cuDNN. 0; 1 when cuDNN does not run it (cg_plan_for); -1 with
 * the error set. */
static int norm_run(bn_problem *pr, const char *op)
{
    cudnnHandle_t h = cg_handle(pr->dev.index, op);
    if (!h)
        return -1;
    cg_args a;
    problem_args(pr, &a);
    int64_t key[CG_MAX_KEY];
    int nk = problem_key(pr, &a, key);
    bool mask = pr->kind == BN_BACKWARD && pr->relu; /* (a forward's relu is its epilogue) */
    tensor *temp = NULL; /* the masked gradient's, made only when cuDNN may run pr */
    if (mask && !pr->masked) {
        if (cg_cache_known(key, nk, pr->dev.index) < 0)
            return 1;
        if (!(temp = tensor_empty_channels_last(pr->x->dtype, pr->x->shape, pr->dev)))
            return err_prefix(op);
        pr->gy = pr->masked = temp;
        problem_args(pr, &a);
    }
    int why;
    cg_plan *plan = cg_plan_for(key, nk, pr->dev.index, h, problem_graph, problem_ours,
                                mask ? relu_mask : NULL, pr, &a, true, op, &why);
    int rc = !plan ? why : mask ? relu_mask(pr) : 0;
    if (plan && rc == 0)
        rc = cg_execute(h, plan, &a, pr->dev, op);
    if (plan)
        cg_cache_release(plan);
    tensor_decref(temp);
    return rc;
}

/* A float32 [C] scratch tensor on x's GPU. */
static tensor *channel_scratch(const tensor *x)
{
    return tensor_empty(DT_F32, 1, &x->shape[1], tensor_device(x));
}

/* --- the backend's entries --- */

int cuda_batch_norm(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                    const tensor *w, const tensor *b, tensor *running_mean, tensor *running_var,
                    bool training, double momentum, double eps, const bn_epilogue *ep)
{
    const char *op = "batch_norm";
    bn_problem pr = {.kind = training ? BN_TRAIN : BN_EVAL, .x = x, .w = w, .b = b,
                     .mean = save_mean, .invstd = save_invstd, .y = y,
                     .residual = ep ? ep->residual : NULL, .relu = ep && ep->relu,
                     .running_mean = running_mean, .running_var = running_var,
                     .eps = (float)eps, .momentum = (float)momentum};
    bool stats = channel_ok(running_mean) && channel_ok(running_var);
    bool no_stats = !running_mean && !running_var; /* (training without running statistics) */
    int rc = 1;
    if (common_ok(&pr) && (pr.nhwc || !training) && channel_ok(b) && like_x(y, x, pr.nhwc) &&
        like_x(pr.residual, x, pr.nhwc) && (stats || (training && no_stats))) {
        if (training && stats) {
            pr.rmean_out = channel_scratch(x);
            pr.rvar_out = pr.rmean_out ? channel_scratch(x) : NULL;
            rc = pr.rvar_out ? 0 : err_prefix(op);
        } else if (!training) { /* the statistics cuDNN normalises with */
            rc = cuda_batch_norm_kernel(NULL, save_mean, save_invstd, x, NULL, NULL, running_mean,
                                        running_var, false, momentum, eps, NULL);
        } else {
            rc = 0;
        }
        if (rc == 0)
            rc = norm_run(&pr, op);
        if (rc == 0 && pr.rmean_out &&
            (cuda_copy(running_mean, pr.rmean_out) != 0 || cuda_copy(running_var, pr.rvar_out) != 0))
            rc = err_prefix(op);
        tensor_decref(pr.rmean_out);
        tensor_decref(pr.rvar_out);
    }
    if (rc != 1)
        return rc;
    return cuda_batch_norm_kernel(y, save_mean, save_invstd, x, w, b, running_mean, running_var,
                                  training, momentum, eps, ep);
}

int cuda_batch_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                             const tensor *x, const tensor *w, const tensor *mean,
                             const tensor *invstd, bool training, const tensor *relu_out,
                             tensor *g_residual)
{
    const char *op = "batch_norm_backward";
    bn_problem pr = {.kind = BN_BACKWARD, .x = x, .w = w, .mean = mean, .invstd = invstd,
                     .gx = gx, .gw = gw, .gb = gb, .gy = gy, .relu_out = relu_out};
    int rc = 1;
    if (training && gx && common_ok(&pr) && pr.nhwc && like_x(gx, x, true) &&
        like_x(gy, x, true) && like_x(relu_out, x, true) && like_x(g_residual, x, true) &&
        (!gw || channel_ok(gw)) && (!gb || channel_ok(gb)) && (relu_out || !g_residual)) {
        /* after a relu, cuDNN reads gy masked: in g_residual, else a temporary */
        if (relu_out) {
            pr.relu = true;
            pr.relu_gy = gy;
            pr.gy = pr.masked = g_residual;
        }
        pr.gw_tmp = gw ? NULL : channel_scratch(x);
        pr.gb_tmp = gb ? NULL : channel_scratch(x);
        rc = (gw || pr.gw_tmp) && (gb || pr.gb_tmp) ? norm_run(&pr, op) : err_prefix(op);
        tensor_decref(pr.gw_tmp);
        tensor_decref(pr.gb_tmp);
    }
    if (rc != 1)
        return rc;
    return cuda_batch_norm_backward_kernel(gx, gw, gb, gy, x, w, mean, invstd, training, relu_out,
                                           g_residual);
}
