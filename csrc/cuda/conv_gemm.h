/* 2-D convolution on the GPU without cuDNN: each image unfolded (im2col, kernels/
 * im2col.cu) and multiplied with cuBLAS (csrc/cuda/conv_gemm.c). cudnn_conv.c runs
 * a problem this way when no cuDNN engine takes it, or always when
 * MILES_CONV_GEMM=1 (to tell a cuDNN problem from ours on a GPU). Slower than
 * cuDNN (an image at a time, through a column buffer), the same maths.
 * Tensors as in cuda_conv2d and its backward (kernels.h): any layouts; float32
 * or float64. */
#ifndef MILES_CUDA_CONV_GEMM_H
#define MILES_CUDA_CONV_GEMM_H

#include "../dispatch.h"
#include "../tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The geometry of one image's unfolding: the input's [C, H, W] and strides, the
 * kernel's kh x kw and the output's oh x ow. */
typedef struct {
    int64_t c, h, w, sc, sh, sw;
    int64_t kh, kw, oh, ow;
    int64_t stride[2], padding[2], dilation[2];
} im2col_geom;

/* col (contiguous [c * kh * kw, oh * ow]) = image n of x unfolded:
 * col[(ci * kh + i) * kw + j, y * ow + x] = x[n, ci, y*s0 - p0 + i*d0, x*s1 - p1 + j*d1],
 * 0 where that falls outside the image. */
int cuda_im2col(tensor *col, const tensor *x, int64_t n, const im2col_geom *g);
/* Its adjoint: image n of gx = each input position's sum of the col entries that
 * came from it (overwritten; a fixed order of additions: deterministic). */
int cuda_col2im(tensor *gx, int64_t n, const tensor *col, const im2col_geom *g);

int cuda_conv2d_gemm(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                     const conv2d_params *p);
int cuda_conv2d_backward_data_gemm(tensor *gx, const tensor *gy, const tensor *w,
                                   const conv2d_params *p);
/* gw only (the bias gradient is cuda_conv_bias_grad's). */
int cuda_conv2d_backward_weight_gemm(tensor *gw, const tensor *x, const tensor *gy,
                                     const conv2d_params *p);

#ifdef __cplusplus
}
#endif

#endif
