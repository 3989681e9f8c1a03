/* Optimizer updates: one call updates ONE parameter tensor in place from its
 * gradient and its state tensors, with the arithmetic of PyTorch 1.13's
 * single-tensor (foreach=False) Adam, AdamW and SGD. The bookkeeping (parameter
 * groups, lazily created state, step counters, frozen groups) lives in Lua
 * (lua/miles/optim.lua), where the user can see and change it.
 *
 * Every tensor must be contiguous, of the parameter's float dtype (float32 or
 * float64), shape and device; the tensors written must not share memory. All
 * checks happen before anything is written, so a failed call changes nothing.
 * Functions return 0, or -1 with the error message set ("adam: ..."). */
#ifndef MILES_OPTIM_H
#define MILES_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

/* Hyper-parameters of Adam and AdamW (one parameter group's values). */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad;  /* keep max_exp_avg_sq and normalise by it */
    bool maximize; /* ascend: use -grad */
} optim_adam_opts;

/* Hyper-parameters of SGD. */
typedef struct {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
} optim_sgd_opts;

/* Check the values (lr >= 0, 0 <= beta < 1, eps >= 0, weight_decay >= 0; for SGD
 * momentum >= 0 and nesterov only with momentum > 0 and dampening 0). `who` names
 * the optimizer in the message ("adam", "adamw", "sgd"). */
int optim_adam_check(const optim_adam_opts *o, const char *who);
int optim_sgd_check(const optim_sgd_opts *o);

/* Adam (L2 weight decay added to the gradient). step is this update's number,
 * counting from 1 (the state's step after the increment). max_exp_avg_sq is
 * used only with amsgrad (then required), may be NULL otherwise. */
int optim_adam_step(tensor *p, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                    tensor *max_exp_avg_sq, int64_t step, const optim_adam_opts *o);

/* AdamW: as Adam, but the weight decay is decoupled: p *= 1 - lr * weight_decay. */
int optim_adamw_step(tensor *p, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                     tensor *max_exp_avg_sq, int64_t step, const optim_adam_opts *o);

/* SGD with momentum, dampening, Nesterov and L2 weight decay. buf (the momentum
 * buffer) is required when momentum != 0 and ignored otherwise; first says that
 * it holds nothing yet: it is then set to the gradient (PyTorch clones it). */
int optim_sgd_step(tensor *p, const tensor *grad, tensor *buf, bool first,
                   const optim_sgd_opts *o);

#endif
