/* The kernel table: one entry point per kernel family, filled in by each backend
 * (cpu/ and cuda/). The ops in ops/ check arguments, allocate outputs and record
 * autograd; then they call the kernel of the device their tensors live on.
 *
 * Kernels assume the op layer has checked shapes, dtypes and devices. They return 0,
 * or -1 with the error message set (a failed CUDA launch, say). */
#ifndef MILES_DISPATCH_H
#define MILES_DISPATCH_H

#include "tensor.h"

typedef enum {
    UN_NEG, UN_ABS, UN_EXP, UN_LOG, UN_SQRT, UN_RSQRT, UN_RECIP, UN_SQUARE,
    UN_RELU, UN_SIGMOID, UN_TANH, UN_SIGN,
    UN_CLAMP,     /* p0 = min, p1 = max (NaN: no bound) */
    UN_POW,       /* x ^ p0 */
    UN_STEP,      /* 1 where x > 0, else 0: relu's derivative */
    UN_AFFINE,    /* p0 * x + p1 */
    UN_LOG1P_EXP, /* log(1 + exp(x)), computed stably: softplus */
    UN_COUNT
} unary_op;

typedef enum {
    BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_MAX, BIN_MIN,
    BIN_EQ, BIN_NE, BIN_LT, BIN_LE, BIN_GT, BIN_GE, /* results are DT_BOOL */
    BIN_AND, BIN_OR,                                /* logical, results DT_BOOL */
    BIN_COUNT
} binary_op;

typedef enum {
    RED_SUM, RED_PROD, RED_MAX, RED_MIN, RED_LOGSUMEXP,
    RED_VAR, /* p0 = correction (1: unbiased) */
    RED_COUNT
} reduce_op;

/* A 2-D pooling window over NCHW planes (max_pool2d, avg_pool2d). pad_t, pad_l are
 * the padding asked for (PyTorch's `padding`); pad_b, pad_r the bottom and right
 * padding that give out_h x out_w, larger than pad_t, pad_l when ceil_mode keeps a
 * partial last window. Dilations are 1 for none (PyTorch's convention). */
typedef struct {
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t in_h, in_w, out_h, out_w;
    bool count_include_pad; /* avg: divide by the window clipped to the padded input */
} pool2d_params;

/* Resizing NCHW planes (interpolate). scale_h, scale_w are the scale factors the
 * user gave, or 0 when the output size was given: PyTorch then maps positions with
 * 1/scale rather than in/out. */
typedef enum { RESIZE_NEAREST, RESIZE_BILINEAR } resize_mode;
typedef struct {
    resize_mode mode;
    bool align_corners;
    double scale_h, scale_w;
} resize_params;

/* Geometry of a 2-D convolution (index 0: height, 1: width); relu: the forward
 * gives max(conv + b, 0) (a fusion where the library has one; the backward
 * kernels ignore it: the op masks their gradient first). */
typedef struct {
    int64_t stride[2], padding[2], dilation[2];
    int64_t groups;
    bool relu;
} conv2d_params;

/* What batch_norm does to its result in the same pass (a ResNet block's end):
 * y = bn(x) + residual (when given: x's shape and layout), then max(y, 0) when
 * relu; each step rounded to the dtype, as the separate ops would. */
typedef struct {
    const tensor *residual;
    bool relu;
} bn_epilogue;

typedef struct backend {
    const char *name;
    /* The kernels of this backend that take bfloat16 tensors (a sparse table:
     * NULL where a kernel does not). The others get float32 copies of them
     * (widen.c). copy, fill, gather, index_select, uniform and normal must take
     * bfloat16 in every backend (the copies are made with copy). */
    const struct backend *bf16;
    /* conv2d and its backward take channels-last weights as well as contiguous
     * ones, and run bfloat16 channels-last: autocast casts a convolution's
     * float32 input and weights straight into that layout. (A device's table
     * says it: dispatch_device_table.) */
    bool conv_channels_last;
    /* dst = src elementwise with dtype conversion; both of the same shape, any
     * strides (src may have stride 0 from broadcasting). */
    int (*copy)(tensor *dst, const tensor *src);
    int (*fill)(tensor *t, double v);
    /* out = op(a); same shape and dtype, both dense with the same strides. */
    int (*unary)(unary_op op, tensor *out, const tensor *a, double p0, double p1);
    /* An activation's gradient from its output y = op(x): gin = gout * op'(x) for
     * UN_RELU (gout where y > 0, else 0), UN_SIGMOID (gout (1 - y) y) and UN_TANH
     * (gout (1 - y y)); float tensors of one dtype and shape, dense with the same
     * strides. */
    int (*activation_backward)(unary_op op, tensor *gin, const tensor *gout, const tensor *y);
    /* out dense (contiguous, or laid out like a dense operand); a, b views
     * broadcast to out's shape, both of the compute dtype; out has that dtype,
     * or DT_BOOL for comparisons and logic. */
    int (*binary)(binary_op op, tensor *out, const tensor *a, const tensor *b);
    /* out = cond ? a : b; cond, a, b broadcast views of out's shape. */
    int (*where)(tensor *out, const tensor *cond, const tensor *a, const tensor *b);
    /* a is contiguous [outer, n, inner]; out is [outer, inner] (and idx, int64,
     * the position of the max/min when not NULL). */
    int (*reduce)(reduce_op op, tensor *out, tensor *idx, const tensor *a, int64_t outer,
                  int64_t n, int64_t inner, double p0);
    /* C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], row-major, for b < batch;
     * pointers are element offsets into the tensors' storages. */
    int (*gemm)(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n,
                int64_t k, double alpha, const tensor *A, int64_t sa, int64_t lda,
                const tensor *B, int64_t sb, int64_t ldb, double beta, tensor *C,
                int64_t sc, int64_t ldc);
    /* Softmax (or log-softmax) over the middle dim of contiguous [outer, n, inner]. */
    int (*softmax)(tensor *out, const tensor *a, int64_t outer, int64_t n, int64_t inner,
                   bool log);
    /* Its backward: gin from gout and the forward output y. */
    int (*softmax_backward)(tensor *gin, const tensor *gout, const tensor *y, int64_t outer,
                            int64_t n, int64_t inner, bool log);
    /* out[o, j, i] = a[o, idx[o, j, i], i] over contiguous [outer, *, inner]; idx int64
     * of shape [outer, m, inner], out [outer, m, inner]; na is a's middle size. */
    int (*gather)(tensor *out, const tensor *a, const tensor *idx, int64_t outer, int64_t na,
                  int64_t m, int64_t inner);
    /* out[o, idx[o, j, i], i] += src[o, j, i]: gather's adjoint. */
    int (*scatter_add)(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                       int64_t na, int64_t m, int64_t inner);
    /* out[o, j, i] = a[o, idx[j], i] (idx int64 of length m). */
    int (*index_select)(tensor *out, const tensor *a, const tensor *idx, int64_t outer,
                        int64_t na, int64_t m, int64_t inner);
    /* out[o, idx[j], i] += src[o, j, i]: index_select's adjoint. */
    int (*index_add)(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                     int64_t na, int64_t m, int64_t inner);
    /* Fill with uniform [lo, hi) or normal(mean, std) numbers from the counter-based
     * generator at (seed, offset); out contiguous float. */
    int (*uniform)(tensor *out, uint64_t seed, uint64_t offset, double lo, double hi);
    int (*normal)(tensor *out, uint64_t seed, uint64_t offset, double mean, double std);
    /* Pooling of x [N,C,H,W] into out [N,C,OH,OW] (p gives both sizes). x, out,
     * gout and gin are contiguous, or (float32) all channels-last. max_pool2d
     * stores in *ws a new tensor, opaque to the ops, of what its backward needs
     * (where each maximum came from). The backward kernels write all of gin. */
    int (*max_pool2d)(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p);
    int (*max_pool2d_backward)(tensor *gin, const tensor *gout, const tensor *ws,
                               const pool2d_params *p);
    int (*avg_pool2d)(tensor *out, const tensor *x, const pool2d_params *p);
    int (*avg_pool2d_backward)(tensor *gin, const tensor *gout, const pool2d_params *p);
    /* Adaptive average pooling: out's [OH,OW] sets the windows (PyTorch's rule);
     * layouts as for pooling. */
    int (*adaptive_avg_pool2d)(tensor *out, const tensor *x);
    int (*adaptive_avg_pool2d_backward)(tensor *gin, const tensor *gout);
    /* Resize contiguous x [N,C,H,W] to out [N,C,OH,OW]; backward scatters into gin. */
    int (*interpolate2d)(tensor *out, const tensor *x, const resize_params *p);
    int (*interpolate2d_backward)(tensor *gin, const tensor *gout, const resize_params *p);
    /* Convolution of x [N, C, H, W] with weights [OC, C/groups, KH, KW] into
     * y [N, OC, OH, OW]; b ([OC]) may be NULL. The weights are contiguous, or
     * channels-last where conv_channels_last says so (their gradient gw in their
     * layout). Activations (x, y and their gradients) are each contiguous or
     * channels-last. The backward passes: the input's gradient, and the weights'
     * (and the bias's, when gb is not NULL). */
    int (*conv2d)(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                  const conv2d_params *p);
    int (*conv2d_backward_data)(tensor *gx, const tensor *gy, const tensor *w,
                                const conv2d_params *p);
    int (*conv2d_backward_weight)(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                  const conv2d_params *p);
    /* Batch norm over [N, C, ...], contiguous or channels-last (y, gx and gy in
     * x's layout): y, and the mean and 1/std used
     * (batch statistics when training, which also updates the running ones in
     * place when given; else the running ones). w, b may be NULL; so may ep (no
     * epilogue). */
    int (*batch_norm)(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                      const tensor *w, const tensor *b, tensor *running_mean,
                      tensor *running_var, bool training, double momentum, double eps,
                      const bn_epilogue *ep);
    /* Its backward; gx, gw, gb may each be NULL when not wanted. With relu_out
     * (the forward's output after its relu), gy first goes through the relu's
     * backward (gy * (relu_out > 0 ? 1 : 0), in the same passes), and that
     * gradient is written to g_residual when given (the residual's). */
    int (*batch_norm_backward)(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                               const tensor *x, const tensor *w, const tensor *mean,
                               const tensor *invstd, bool training, const tensor *relu_out,
                               tensor *g_residual);
} backend;

/* The table the ops call for a device (widen.c's, over the device's own), or
 * NULL with the error set (no GPU, CUDA=0 build). */
const backend *dispatch_backend(device dev, const char *op);
/* The device's own table, or NULL with the error set. */
const backend *dispatch_device_table(device dev, const char *op);

extern const backend cpu_backend;
extern const backend widening_backend;

#endif
