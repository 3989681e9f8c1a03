/* The ops: argument checks, output allocation, the kernel call through the
 * dispatch table, and the autograd record. Dims are 0-based here (the Lua binding
 * translates from Lua's 1-based numbering); a negative dim counts from the end.
 * Every op returns a new reference, or NULL with the error message set. */
#ifndef MILES_OPS_H
#define MILES_OPS_H

#include "dispatch.h"
#include "tensor.h"

/* --- elementwise (ops/elementwise.c) --- */
tensor *op_unary(unary_op op, tensor *a, double p0, double p1);
tensor *op_binary(binary_op op, tensor *a, tensor *b);
/* a op s, or s op a when scalar_first; the scalar does not promote a's float type. */
tensor *op_binary_scalar(binary_op op, tensor *a, double s, bool scalar_first);
/* t = t op b (or the number s) written into t itself, for add_, sub_, mul_ and
 * div_ (outside autograd: the caller checks t): 0; 1 when that cannot be done
 * without a temporary (the caller computes t op b and copies it in): t not
 * dense, b of another dtype or enlarging t, an op that computes in another
 * dtype, b overlapping t in another layout, b recording a gradient; -1 with the
 * error set. */
int op_binary_into(binary_op op, tensor *t, tensor *b);
int op_binary_scalar_into(binary_op op, tensor *t, double s);
tensor *op_where(tensor *cond, tensor *a, tensor *b);
/* A copy converted to dt (gradients flow between float types). */
tensor *op_to_dtype(tensor *a, dtype_t dt);
/* The same, a 4-D a cast into a channels-last result when channels_last (one pass
 * for the conversion and the layout); others contiguous. */
tensor *op_to_dtype_in(tensor *a, dtype_t dt, bool channels_last);
/* bf16 autocast (ops/autocast.c; off by default): conv2d, matmul and linear run
 * in bfloat16, softmax and the losses in float32. */
bool op_autocast(void);
void op_set_autocast(bool on);
/* a on another device (a itself, a new reference, when already there); its
 * gradient goes back to a's device. */
tensor *op_to_device(tensor *a, device dev);
/* A copy with its own storage (differentiable). */
tensor *op_clone(tensor *a);

/* --- views (ops/view.c): they share storage and are differentiable --- */
/* One entry of shape may be -1 (inferred). Copies only when a view is impossible. */
tensor *op_reshape(tensor *a, int ndim, const int64_t *shape);
/* Like reshape but fails instead of copying. */
tensor *op_view(tensor *a, int ndim, const int64_t *shape);
tensor *op_flatten(tensor *a, int start, int end);
tensor *op_permute(tensor *a, const int *perm);
tensor *op_transpose(tensor *a, int d0, int d1);
tensor *op_narrow(tensor *a, int dim, int64_t start, int64_t len);
tensor *op_select(tensor *a, int dim, int64_t index);
tensor *op_squeeze(tensor *a, int dim);
tensor *op_squeeze_all(tensor *a);
tensor *op_unsqueeze(tensor *a, int dim);
/* A size of -1 keeps that dim. */
tensor *op_expand(tensor *a, int ndim, const int64_t *shape);
tensor *op_contiguous(tensor *a);
/* Sum g over broadcast dims so it has the given shape (the adjoint of expand). */
tensor *op_sum_to_shape(tensor *g, int ndim, const int64_t *shape);

/* --- reductions (ops/reduce.c); ndims == 0 reduces over every dim --- */
tensor *op_reduce(reduce_op op, tensor *a, int ndims, const int *dims, bool keepdim,
                  double p0);
tensor *op_mean(tensor *a, int ndims, const int *dims, bool keepdim);
/* var/std with a correction (1: unbiased, Bessel). */
tensor *op_var(tensor *a, int ndims, const int *dims, bool keepdim, double correction);
tensor *op_std(tensor *a, int ndims, const int *dims, bool keepdim, double correction);
/* Max (or min) along one dim: values (differentiable) and int64 indices. */
int op_max_dim(tensor *a, int dim, bool keepdim, bool is_min, tensor **values,
               tensor **indices);
/* Index of the max (min) along dim, or over the flattened tensor when !has_dim. */
tensor *op_argmax(tensor *a, bool has_dim, int dim, bool keepdim, bool is_min);

/* --- linear algebra (ops/linalg.c) --- */
tensor *op_matmul(tensor *a, tensor *b);
tensor *op_bmm(tensor *a, tensor *b);
/* x @ w^T + b (b may be NULL). */
tensor *op_linear(tensor *x, tensor *w, tensor *b);

/* --- joining and indexing (ops/index.c) --- */
tensor *op_cat(int n, tensor *const *ts, int dim);
tensor *op_stack(int n, tensor *const *ts, int dim);
/* Pieces of `size` along dim (the last may be smaller); *count receives how many.
 * The caller frees the array and the references in it. */
tensor **op_split(tensor *a, int64_t size, int dim, int *count);
tensor **op_chunk(tensor *a, int chunks, int dim, int *count);
tensor *op_index_select(tensor *a, int dim, tensor *idx);
tensor *op_gather(tensor *a, int dim, tensor *idx);
/* The elements where mask (bool, broadcastable to a) is true, as a 1-D tensor. */
tensor *op_masked_select(tensor *a, tensor *mask);
/* int64 [n, ndim] positions of the non-zero elements. */
tensor *op_nonzero(tensor *a);

/* --- neural-network functions (ops/softmax.c, ops/loss.c) --- */
tensor *op_softmax(tensor *a, int dim, bool log);
typedef enum { REDUCE_NONE, REDUCE_MEAN, REDUCE_SUM } loss_reduction;
/* target: int64 class indices (0-based here) of shape [N] or [N, d...]; weight: [C]
 * or NULL; entries equal to ignore_index contribute nothing. */
tensor *op_nll_loss(tensor *logp, tensor *target, tensor *weight, loss_reduction r,
                    int64_t ignore_index);
tensor *op_cross_entropy(tensor *logits, tensor *target, tensor *weight, loss_reduction r,
                         double label_smoothing, int64_t ignore_index);
tensor *op_bce_with_logits(tensor *x, tensor *y, tensor *weight, tensor *pos_weight,
                           loss_reduction r);
tensor *op_mse_loss(tensor *a, tensor *b, loss_reduction r);

/* --- pooling, resizing and dropout (ops/pool.c, ops/resize.c, ops/dropout.c) ---
 * Inputs are float [N,C,H,W]; pairs are {height, width}; PyTorch's meanings. */
typedef struct {
    int64_t kernel[2], stride[2], padding[2], dilation[2];
    bool ceil_mode;
    bool count_include_pad; /* avg_pool2d only */
} pool2d_args;
tensor *op_max_pool2d(tensor *x, const pool2d_args *a);
/* a->dilation must be {1, 1}. */
tensor *op_avg_pool2d(tensor *x, const pool2d_args *a);
/* Windows [floor(i*H/oh), ceil((i+1)*H/oh)) along each axis. */
tensor *op_adaptive_avg_pool2d(tensor *x, int64_t oh, int64_t ow);
/* The output size is size when size[0] > 0, else floor(in * scale_factor); a given
 * scale factor also sets the source positions unless recompute_scale_factor. */
typedef struct {
    int64_t size[2];
    double scale_factor[2];
    resize_mode mode;
    bool align_corners; /* bilinear only */
    bool recompute_scale_factor;
} interpolate_args;
tensor *op_interpolate(tensor *x, const interpolate_args *a);
/* Zero each element with probability p and scale the rest by 1/(1-p), from the
 * seeded generator; x itself when !training or p == 0. p outside [0, 1] fails. */
tensor *op_dropout(tensor *x, double p, bool training);

/* --- creation (ops/create.c): no autograd --- */
tensor *op_arange(double start, double end, double step, dtype_t dt);
tensor *op_linspace(double start, double end, int64_t steps, dtype_t dt);
tensor *op_eye(int64_t n, int64_t m, dtype_t dt);
tensor *op_rand(int ndim, const int64_t *shape, dtype_t dt, device dev);
tensor *op_randn(int ndim, const int64_t *shape, dtype_t dt, device dev);
/* Integers uniform in [low, high). */
tensor *op_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, device dev);
/* A random permutation of 0..n-1 (int64). */
tensor *op_randperm(int64_t n);

/* --- convolution and normalisation (ops/conv.c, ops/norm.c) --- */
tensor *op_conv2d(tensor *x, tensor *w, tensor *b, const conv2d_params *p);
/* Are float32 convolution outputs (and their input gradients) channels-last? On
 * by default; the switch is global. */
void ops_set_channels_last(bool on);
bool ops_get_channels_last(void);
/* Batch statistics when training (running_mean/var, if given, are updated in
 * place with momentum); the running statistics otherwise. Then, in the same pass,
 * + residual (when given: x's shape) and relu (a ResNet block's end): the values
 * and gradients of the separate ops, with fewer passes over memory. */
tensor *op_batch_norm(tensor *x, tensor *running_mean, tensor *running_var, tensor *w,
                      tensor *b, bool training, double momentum, double eps,
                      tensor *residual, bool relu);

#endif
