/* The bias of a 2-D convolution on the GPU (kernels/conv_bias.cu), for
 * cudnn_conv.c: adding it to the output when cuDNN cannot fuse the addition into
 * the convolution, and its gradient. Tensors are 4-D [N, C, H, W], contiguous,
 * channels-last or any strides; b and gb contiguous [C]; float32 or float64. */
#ifndef MILES_CUDA_CONV_BIAS_H
#define MILES_CUDA_CONV_BIAS_H

#include "../tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[n, c, h, w] += b[c] */
int cuda_conv_bias_add(tensor *y, const tensor *b);

/* gb[c] = the sum of gy[n, c, h, w] over n, h, w; deterministic (a fixed order of
 * additions for a given shape and layout), accumulated in double. */
int cuda_conv_bias_grad(tensor *gb, const tensor *gy);

#ifdef __cplusplus
}
#endif

#endif
