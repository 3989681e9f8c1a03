/* Activations on the GPU through cuDNN's graph API (twin: csrc/cpu/elementwise.c):
 * relu, sigmoid and tanh as one pointwise operation each (x -> y), and relu's
 * gradient as cuDNN's relu backward given y for x (y > 0 exactly where x > 0).
 * Sigmoid's and tanh's gradients come from their outputs (gout (1 - y) y,
 * gout (1 - y^2)); cuDNN's backward modes read the input, which the op does not
 * keep, so our kernel computes those.
 *
 * The tensors are dense with the same strides (the dispatch contract): each is a
 * run of n elements in the same order, which cuDNN gets as [1, n, 1, 1].
 * Float32 or bfloat16 (computed in float32), 16-byte aligned, at least
 * ACT_MIN_ELEMENTS: below that a library call costs more host time than the
 * kernel takes on the GPU. Plans are cached per (op, dtype, n) (cg_plan_for).
 * cuDNN's relu clips at the largest float (pointwise_desc in cudnn_graph.c), so
 * there an infinite input gives FLT_MAX and no gradient, where ours give inf and
 * pass it; finite values are the same.
 * Our kernels (kernels/elementwise.cu) run every other unary op and what cuDNN is
 * not given or no engine takes, and everything with MILES_CUDNN_ACT=0. */
#include <stdbool.h>

#include "cuda_backend.h"
#include "cudnn_graph.h"
#include "kernels.h"

#define ACT_MIN_ELEMENTS ((int64_t)1 << 16)

enum { UID_X = 1, UID_Y, UID_DY, UID_DX };

/* One pointwise problem: y = mode(x), or (relu backward) dx from dy and y. */
typedef struct {
    unary_op op;
    cudnnPointwiseMode_t mode;
    const tensor *x, *y, *dy, *dx; /* (x, y forward; y, dy, dx backward) */
    int64_t n;
    dtype_t dt;
    int dev;
} act_problem;

static int act_off = -1; /* MILES_CUDNN_ACT=0 (cg_switched_off) */

/* May cuDNN take these tensors (NULL ones left out)? */
static bool eligible(const tensor *const *ts, int nts)
{
    if (cg_switched_off("MILES_CUDNN_ACT", &act_off) ||
        (ts[0]->dtype != DT_F32 && ts[0]->dtype != DT_BF16) ||
        tensor_numel(ts[0]) < ACT_MIN_ELEMENTS)
        return false;
    for (int i = 0; i < nts; i++)
        if (cg_alignment(tensor_data(ts[i])) != 16)
            return false;
    return true;
}

static cg_desc flat_desc(cg_owner *o, cg_status *s, int64_t uid, const act_problem *pr)
{
    int64_t dims[4] = {1, pr->n, 1, 1}, st[4] = {pr->n, 1, pr->n, pr->n};
    cudnnDataType_t dt = pr->dt == DT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    return cg_tensor(o, s, uid, dt, 4, dims, st, 16, 0);
}

/* The graph of one pointwise operation (cg_build_fn). */
static cg_desc act_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, const void *ctx)
{
    const act_problem *pr = ctx;
    cg_desc op;
    if (pr->mode == CUDNN_POINTWISE_RELU_BWD)
        op = cg_relu_backward(o, s, CUDNN_DATA_FLOAT, flat_desc(o, s, UID_Y, pr),
                              flat_desc(o, s, UID_DY, pr), flat_desc(o, s, UID_DX, pr),
                              "relu backward");
    else
        op = cg_pointwise(o, s, pr->mode, CUDNN_DATA_FLOAT, flat_desc(o, s, UID_X, pr), NULL,
                          flat_desc(o, s, UID_Y, pr), "activation");
    return cg_graph(o, s, h, 1, &op);
}

/* pr on our kernels (cg_run_fn). */
static int act_ours(const void *ctx)
{
    const act_problem *p = ctx;
    if (p->mode == CUDNN_POINTWISE_RELU_BWD)
        return cuda_activation_backward_kernel(UN_RELU, (tensor *)p->dx, p->dy, p->y);
    return cuda_unary_kernel(p->op, (tensor *)p->y, p->x, 0, 0);
}

/* Run pr through cuDNN: 0; 1 when cuDNN does not run it; -1 with the error set. */
static int act_run(const act_problem *pr, const char *op)
{
    cudnnHandle_t h = cg_handle(pr->dev, op);
    if (!h)
        return -1;
    bool bwd = pr->mode == CUDNN_POINTWISE_RELU_BWD;
    cg_args a = {.n = 0};
    const int64_t uids[3] = {bwd ? UID_Y : UID_X, bwd ? UID_DY : UID_Y, UID_DX};
    const tensor *ts[3] = {bwd ? pr->y : pr->x, bwd ? pr->dy : pr->y, pr->dx};
    for (int i = 0; i < (bwd ? 3 : 2); i++) {
        a.uid[a.n] = uids[i];
        a.ptr[a.n++] = tensor_data(ts[i]);
    }
    int64_t key[] = {'A' << 8, pr->mode, pr->dev, pr->dt, pr->n, cuda_get_deterministic()};
    int why;
    cg_plan *plan = cg_plan_for(key, (int)(sizeof key / sizeof *key), pr->dev, h, act_graph,
                                act_ours, NULL, pr, &a, true, op, &why);
    if (!plan)
        return why;
    int rc = cg_execute(h, plan, &a, tensor_device(ts[0]), op);
    cg_cache_release(plan);
    return rc;
}

int cuda_unary(unary_op op, tensor *out, const tensor *a, double p0, double p1)
{
    cudnnPointwiseMode_t mode = op == UN_RELU      ? CUDNN_POINTWISE_RELU_FWD
                                : op == UN_SIGMOID ? CUDNN_POINTWISE_SIGMOID_FWD
                                                   : CUDNN_POINTWISE_TANH_FWD;
    const tensor *ts[2] = {a, out};
    int rc = 1;
    if ((op == UN_RELU || op == UN_SIGMOID || op == UN_TANH) && eligible(ts, 2)) {
        act_problem pr = {op, mode, a, out, NULL, NULL, tensor_numel(a), a->dtype,
                          tensor_device(a).index};
        rc = act_run(&pr, "activation");
    }
    return rc != 1 ? rc : cuda_unary_kernel(op, out, a, p0, p1);
}

int cuda_activation_backward(unary_op op, tensor *gin, const tensor *gout, const tensor *y)
{
    const tensor *ts[3] = {y, gout, gin};
    int rc = 1;
    if (op == UN_RELU && eligible(ts, 3)) {
        act_problem pr = {UN_RELU, CUDNN_POINTWISE_RELU_BWD, NULL, y, gout, gin, tensor_numel(y),
                          y->dtype, tensor_device(y).index};
        rc = act_run(&pr, "relu backward");
    }
    return rc != 1 ? rc : cuda_activation_backward_kernel(op, gin, gout, y);
}
