/* The CPU backend's kernels (see dispatch.h for their contracts). */
#ifndef MILES_CPU_H
#define MILES_CPU_H

#include "../dispatch.h"

int cpu_copy(tensor *dst, const tensor *src);
int cpu_fill(tensor *t, double v);
int cpu_unary(unary_op op, tensor *out, const tensor *a, double p0, double p1);
int cpu_activation_backward(unary_op op, tensor *gin, const tensor *gout, const tensor *y);
int cpu_binary(binary_op op, tensor *out, const tensor *a, const tensor *b);
int cpu_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b);
int cpu_reduce(reduce_op op, tensor *out, tensor *idx, const tensor *a, int64_t outer,
               int64_t n, int64_t inner, double p0);
int cpu_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
             double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
             int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc);
int cpu_softmax(tensor *out, const tensor *a, int64_t outer, int64_t n, int64_t inner,
                bool log);
int cpu_softmax_backward(tensor *gin, const tensor *gout, const tensor *y, int64_t outer,
                         int64_t n, int64_t inner, bool log);
int cpu_gather(tensor *out, const tensor *a, const tensor *idx, int64_t outer, int64_t na,
               int64_t m, int64_t inner);
int cpu_scatter_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                    int64_t na, int64_t m, int64_t inner);
int cpu_index_select(tensor *out, const tensor *a, const tensor *idx, int64_t outer,
                     int64_t na, int64_t m, int64_t inner);
int cpu_index_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                  int64_t na, int64_t m, int64_t inner);
int cpu_uniform(tensor *out, uint64_t seed, uint64_t offset, double lo, double hi);
int cpu_normal(tensor *out, uint64_t seed, uint64_t offset, double mean, double std);
/* pool.c: oneDNN for float32, plain loops for float64 */
int cpu_max_pool2d(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p);
int cpu_max_pool2d_backward(tensor *gin, const tensor *gout, const tensor *ws,
                            const pool2d_params *p);
int cpu_avg_pool2d(tensor *out, const tensor *x, const pool2d_params *p);
int cpu_avg_pool2d_backward(tensor *gin, const tensor *gout, const pool2d_params *p);
int cpu_adaptive_avg_pool2d(tensor *out, const tensor *x);
int cpu_adaptive_avg_pool2d_backward(tensor *gin, const tensor *gout);
/* resize.c; the scales are shared with the GPU's kernels (computed on the host):
 * PyTorch's area_pixel_compute_scale, and nearest's step (1/scale_factor when
 * the user gave one, else in/out), in float for float32 data. */
double resize_linear_scale(int64_t in, int64_t out, double user_scale, bool align, bool f32);
double resize_nearest_scale(int64_t in, int64_t out, double user_scale, bool f32);
int cpu_interpolate2d(tensor *out, const tensor *x, const resize_params *p);
int cpu_interpolate2d_backward(tensor *gin, const tensor *gout, const resize_params *p);

int cpu_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
               const conv2d_params *p);
int cpu_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                             const conv2d_params *p);
int cpu_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                               const conv2d_params *p);
/* conv_point.c: convolutions with one output position, as matrix products */
bool conv_point_applies(const tensor *x, const tensor *w, const tensor *y,
                        const conv2d_params *p);
int conv_point_forward(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                       const conv2d_params *p);
int conv_point_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                             const conv2d_params *p);
int conv_point_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                               const conv2d_params *p);
int cpu_batch_norm(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                   const tensor *w, const tensor *b, tensor *running_mean, tensor *running_var,
                   bool training, double momentum, double eps, const bn_epilogue *ep);
int cpu_batch_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                            const tensor *x, const tensor *w, const tensor *mean,
                            const tensor *invstd, bool training,
                            const tensor *relu_out, tensor *g_residual);

#endif
