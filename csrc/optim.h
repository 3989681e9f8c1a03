/* Optimizer updates: one call updates the parameter tensors of a group (or ONE
 * tensor) in place from their gradients and state tensors, with the arithmetic
 * of PyTorch 1.13's single-tensor (foreach=False) Adam, AdamW and SGD. The
 * bookkeeping (parameter groups, lazily created state, step counters, frozen
 * groups) lives in Lua (lua/miles/optim.lua), where the user can see and change it.
 *
 * Every tensor must be contiguous, of its parameter's float dtype (float32 or
 * float64), shape and device; the tensors written must not share memory. On the
 * CPU a group's tensors are updated one after the other; on a GPU (a build with
 * the CUDA backend) one fused kernel launch updates all of a group's tensors that
 * share a GPU and a dtype (kernels/optim.cu), with the CPU's arithmetic element by
 * element, so the results are the same bits; there, no tensor written may share
 * memory with another tensor of the group either. All checks happen before
 * anything is written, so a failed call changes nothing. Functions return 0, or
 * -1 with the error message set ("adam: ..."). */
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

/* The group updates: n parameters with their tensors (arrays of n; a NULL
 * array, or entry, for an operand that is not used: max_exp_avg_sqs without
 * amsgrad, bufs without momentum). Each parameter has its own step (steps[i]),
 * hence its own bias corrections; for SGD firsts[i] says that bufs[i] holds
 * nothing yet (firsts may be NULL: none is new). Each parameter may be on any
 * device (the GPU ones are updated by one launch per GPU and dtype). A failed
 * check of parameter i ends the message with " (tensor i+1 of n)". */
int optim_adam_group_step(int n, tensor *const *params, const tensor *const *grads,
                          tensor *const *exp_avgs, tensor *const *exp_avg_sqs,
                          tensor *const *max_exp_avg_sqs, const int64_t *steps,
                          const optim_adam_opts *o);
int optim_adamw_group_step(int n, tensor *const *params, const tensor *const *grads,
                           tensor *const *exp_avgs, tensor *const *exp_avg_sqs,
                           tensor *const *max_exp_avg_sqs, const int64_t *steps,
                           const optim_adam_opts *o);
int optim_sgd_group_step(int n, tensor *const *params, const tensor *const *grads,
                         tensor *const *bufs, const bool *firsts, const optim_sgd_opts *o);

#endif
