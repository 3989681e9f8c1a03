/* The CUDA backend's kernels: one entry per slot of the dispatch table (see
 * dispatch.h for each contract), defined in the .cu files of kernels/ (our own
 * kernels) and in csrc/cuda/ (the ones built on cuBLAS and cuDNN). Each .cu file names its CPU
 * twin in csrc/cpu/, and spec/cuda_spec.lua checks the pair against each other. */
#ifndef MILES_CUDA_KERNELS_H
#define MILES_CUDA_KERNELS_H

#include "../dispatch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* kernels/elementwise.cu (twin: csrc/cpu/elementwise.c) */
int cuda_copy(tensor *dst, const tensor *src);
int cuda_fill(tensor *t, double v);
/* our kernels for unary and activation_backward (csrc/cuda/cudnn_act.c's entries
 * below give cuDNN the activations first) */
int cuda_unary_kernel(unary_op op, tensor *out, const tensor *a, double p0, double p1);
int cuda_activation_backward_kernel(unary_op op, tensor *gin, const tensor *gout,
                                    const tensor *y);
int cuda_binary(binary_op op, tensor *out, const tensor *a, const tensor *b);
int cuda_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b);
/* kernels/reduce.cu (twin: csrc/cpu/reduce.c) */
int cuda_reduce(reduce_op op, tensor *out, tensor *idx, const tensor *a, int64_t outer,
                int64_t n, int64_t inner, double p0);
/* kernels/softmax.cu (twin: csrc/cpu/softmax.c) */
int cuda_softmax(tensor *out, const tensor *a, int64_t outer, int64_t n, int64_t inner,
                 bool log);
int cuda_softmax_backward(tensor *gin, const tensor *gout, const tensor *y, int64_t outer,
                          int64_t n, int64_t inner, bool log);
/* kernels/index.cu (twin: csrc/cpu/index.c); indices out of range raise the
 * device error flag, reported at the next synchronisation */
int cuda_gather(tensor *out, const tensor *a, const tensor *idx, int64_t outer, int64_t na,
                int64_t m, int64_t inner);
int cuda_scatter_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                     int64_t na, int64_t m, int64_t inner);
int cuda_index_select(tensor *out, const tensor *a, const tensor *idx, int64_t outer,
                      int64_t na, int64_t m, int64_t inner);
int cuda_index_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                   int64_t na, int64_t m, int64_t inner);
/* kernels/random.cu (twin: csrc/cpu/random.c): the same numbers as the CPU */
int cuda_uniform(tensor *out, uint64_t seed, uint64_t offset, double lo, double hi);
int cuda_normal(tensor *out, uint64_t seed, uint64_t offset, double mean, double std);
/* csrc/cuda/cudnn_pool.c (twin: csrc/cpu/pool.c): cuDNN's graph API, or our
 * kernels where cuDNN does not take the problem */
int cuda_max_pool2d(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p);
int cuda_max_pool2d_backward(tensor *gin, const tensor *gout, const tensor *ws,
                             const pool2d_params *p);
int cuda_avg_pool2d(tensor *out, const tensor *x, const pool2d_params *p);
int cuda_avg_pool2d_backward(tensor *gin, const tensor *gout, const pool2d_params *p);
int cuda_adaptive_avg_pool2d(tensor *out, const tensor *x);
int cuda_adaptive_avg_pool2d_backward(tensor *gin, const tensor *gout);
/* kernels/pool.cu (twin: csrc/cpu/pool.c): our kernels, with the contracts above */
int cuda_max_pool2d_kernel(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p);
int cuda_max_pool2d_backward_kernel(tensor *gin, const tensor *gout, const tensor *ws,
                                    const pool2d_params *p);
int cuda_avg_pool2d_kernel(tensor *out, const tensor *x, const pool2d_params *p);
int cuda_avg_pool2d_backward_kernel(tensor *gin, const tensor *gout, const pool2d_params *p);
int cuda_adaptive_avg_pool2d_kernel(tensor *out, const tensor *x);
int cuda_adaptive_avg_pool2d_backward_kernel(tensor *gin, const tensor *gout);
/* kernels/resize.cu (twin: csrc/cpu/resize.c) */
int cuda_interpolate2d(tensor *out, const tensor *x, const resize_params *p);
int cuda_interpolate2d_backward(tensor *gin, const tensor *gout, const resize_params *p);
/* csrc/cuda/cudnn_act.c (twin: csrc/cpu/elementwise.c): relu, sigmoid and tanh
 * through cuDNN's graph API, the other ops and what cuDNN does not take on our
 * kernels */
int cuda_unary(unary_op op, tensor *out, const tensor *a, double p0, double p1);
int cuda_activation_backward(unary_op op, tensor *gin, const tensor *gout, const tensor *y);
/* csrc/cuda/cudnn_norm.c (twin: csrc/cpu/batchnorm.c): cuDNN's graph API, or
 * our kernels where cuDNN does not take the problem */
int cuda_batch_norm(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                    const tensor *w, const tensor *b, tensor *running_mean,
                    tensor *running_var, bool training, double momentum, double eps,
                    const bn_epilogue *ep);
int cuda_batch_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                             const tensor *x, const tensor *w, const tensor *mean,
                             const tensor *invstd, bool training,
                             const tensor *relu_out, tensor *g_residual);
/* kernels/batchnorm.cu (twin: csrc/cpu/batchnorm.c): our kernels, with the
 * contracts above, and y NULL: only the mean and 1/std used (for cuDNN) */
int cuda_batch_norm_kernel(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                           const tensor *w, const tensor *b, tensor *running_mean,
                           tensor *running_var, bool training, double momentum, double eps,
                           const bn_epilogue *ep);
int cuda_batch_norm_backward_kernel(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                                    const tensor *x, const tensor *w, const tensor *mean,
                                    const tensor *invstd, bool training,
                                    const tensor *relu_out, tensor *g_residual);
/* csrc/cuda/cublas_gemm.c (twin: csrc/cpu/blas.c) */
int cuda_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
              double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
              int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc);
/* csrc/cuda/cudnn_conv.c (twin: csrc/cpu/conv.c): cuDNN's graph API */
int cuda_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                const conv2d_params *p);
int cuda_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                              const conv2d_params *p);
int cuda_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                const conv2d_params *p);

#ifdef __cplusplus
}
#endif

#endif
