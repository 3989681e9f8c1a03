/* The GPU side of the optimizer updates (kernels/optim.cu; its CPU twin is
 * csrc/optim.c): fused multi-tensor Adam/AdamW and SGD steps. One call updates
 * every tensor of a parameter group that lives on one GPU and has one dtype, in
 * one kernel launch (more than one only when the group has more tensors than a
 * launch's table holds, OPTIM_CUDA_TENSORS_PER_LAUNCH).
 *
 * csrc/optim.c checks everything (dtypes, shapes, devices, contiguity, disjoint
 * memory, hyper-parameters) and computes every scalar in double, exactly as for
 * its CPU loops; the kernels round the scalars to the dtype and do the CPU's
 * per-element arithmetic, operation by operation, without fused multiply-adds,
 * so a GPU step gives the CPU's bits. Plain C types only: optim.c includes this
 * header in every build, and calls it only in a CUDA build (MILES_CUDA). The
 * launches are asynchronous on the GPU's stream (cuda_ctx_stream). */
#ifndef MILES_OPTIM_CUDA_H
#define MILES_OPTIM_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "../dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tensors per kernel launch: the chunk table travels in the kernel's parameter
 * block, which stays under the 4 KB that every architecture accepts. */
#define OPTIM_CUDA_TENSORS_PER_LAUNCH 48

/* One tensor of an Adam update: device pointers to its contiguous operands (all
 * of the launch's dtype; vmax only with amsgrad), its element count, and its own
 * bias corrections (the step may differ between the tensors of a group). */
typedef struct {
    void *p, *m, *v, *vmax;
    const void *g;
    int64_t numel;
    double bc2_sqrt;      /* sqrt(1 - beta2^step) */
    double neg_step_size; /* -(lr / (1 - beta1^step)) */
} optim_cuda_adam_tensor;

/* The group's Adam scalars, as csrc/optim.c's adam_job holds them. */
typedef struct {
    double sgn;   /* -1 to maximize, else 1 */
    double wd;    /* L2 weight decay added to the gradient (Adam; 0 for AdamW) */
    double decay; /* 1 - lr * weight_decay (AdamW), or 1 */
    double b1, a1, b2, a2, eps; /* beta1, 1 - beta1, beta2, 1 - beta2, eps */
    bool l2;      /* add wd * p to the gradient */
    bool amsgrad; /* keep the running maximum in vmax and normalise by it */
} optim_cuda_adam_hp;

/* Adam (or AdamW, through hp) over n tensors of dtype dt (float32 or float64) on
 * GPU `device`. who names the optimizer in an error message. 0, or -1 with the
 * error set (the GPU cannot be used, the launch failed). */
int optim_cuda_adam(const char *who, int device, dtype_t dt, int n,
                    const optim_cuda_adam_tensor *ts, const optim_cuda_adam_hp *hp);

/* One tensor of an SGD update. With momentum, buf is the momentum buffer and
 * first says that it holds nothing yet: it is then not read, the kernel using 0
 * where the CPU zeroes the buffer first (buf_mom = 0 and a = 1 then, so that
 * buf = 0 * 0 + 1 * d, PyTorch's clone of d). */
typedef struct {
    void *p, *buf;
    const void *g;
    int64_t numel;
    double buf_mom; /* momentum, or 0 on the first step */
    double a;       /* 1 - dampening, or 1 on the first step */
    bool first;
} optim_cuda_sgd_tensor;

/* The group's SGD scalars, as csrc/optim.c's sgd_job holds them. */
typedef struct {
    double sgn, wd, mom, neg_lr;
    bool l2;       /* add wd * p to the gradient */
    bool with_buf; /* momentum != 0: use and update buf */
    bool nesterov;
} optim_cuda_sgd_hp;

/* SGD over n tensors of dtype dt on GPU `device`; as optim_cuda_adam. */
int optim_cuda_sgd(int device, dtype_t dt, int n, const optim_cuda_sgd_tensor *ts,
                   const optim_cuda_sgd_hp *hp);

#ifdef __cplusplus
}
#endif

#endif
