/* Helpers shared by the op files.
 *
 * The c_* functions *consume* their tensor arguments (release them) and pass a NULL
 * argument through as a NULL result, so a backward formula can be written as one
 * nested expression without leaking on an error path; wrap a borrowed tensor in
 * keep() to hand it to them. */
#ifndef MILES_OPS_INTERNAL_H
#define MILES_OPS_INTERNAL_H

#include "../autograd.h"
#include "../error.h"
#include "../ops.h"

static inline tensor *keep(tensor *t)
{
    return tensor_incref(t);
}

/* bf16 autocast (autocast.c): is it on, and is one of the n tensors (NULLs
 * skipped) of dtype `from`? */
bool autocast_casts(int n, tensor *const *ts, dtype_t from);
/* out[i] = ts[i] cast to `to` when of dtype `from`, else ts[i] (new references;
 * NULL stays NULL); a 4-D cast comes out channels-last when channels_last (the
 * layout a backend runs its convolutions in), else contiguous. -1 with nothing
 * held when a cast fails. */
int autocast_all(int n, tensor *const *ts, tensor **out, dtype_t from, dtype_t to,
                 bool channels_last);
void autocast_release(int n, tensor **ts);

/* r rounded to bfloat16 when it is float32, else r itself (r consumed): the end of
 * an op that runs a bfloat16 input in float32. */
tensor *c_to_bf16(tensor *r);

tensor *c_unary(unary_op op, tensor *a, double p0, double p1);
tensor *c_binary(binary_op op, tensor *a, tensor *b);
tensor *c_scalar(binary_op op, tensor *a, double s);
tensor *c_where(tensor *cond, tensor *a, tensor *b);
/* Sum g to the shape of n's input i (undoes broadcasting). */
tensor *c_sum_to_input(ag_node *n, int i, tensor *g);

/* 0 when every input of n that needs a gradient got one in gin, else -1. */
int ag_check(ag_node *n, tensor **gin);
/* Does input i of n need a gradient? */
static inline bool ag_wants(const ag_node *n, int i)
{
    return n->next[i].node || n->next[i].leaf;
}

/* Fail with "op: x is on cpu but y is on cuda:0" unless all are on one device. */
int ops_same_device(const char *op, int n, tensor *const *ts, const char *const *names);
/* Fail unless t has a float dtype. */
int ops_need_float(const char *op, const tensor *t, const char *name);
/* The backend for t's device. */
const backend *ops_backend(const tensor *t, const char *op);

#endif
