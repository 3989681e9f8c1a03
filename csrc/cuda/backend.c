/* The CUDA backend's entry in the dispatch table. */
#include "kernels.h"

/* The arithmetic kernels that take bfloat16 (computing in float32, rounding
 * once): those of autocast's steps. The others get float32 copies (csrc/widen.c);
 * copy, fill, gather, index_select, uniform and normal take every dtype. */
static const backend cuda_bf16 = {
    .name = "cuda",
    .unary = cuda_unary,
    .binary = cuda_binary,
    .where = cuda_where,
    .reduce = cuda_reduce,
    .gemm = cuda_gemm,
    .max_pool2d = cuda_max_pool2d,
    .max_pool2d_backward = cuda_max_pool2d_backward,
    .avg_pool2d = cuda_avg_pool2d,
    .avg_pool2d_backward = cuda_avg_pool2d_backward,
    .adaptive_avg_pool2d = cuda_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = cuda_adaptive_avg_pool2d_backward,
    .conv2d = cuda_conv2d,
    .conv2d_backward_data = cuda_conv2d_backward_data,
    .conv2d_backward_weight = cuda_conv2d_backward_weight,
    .batch_norm = cuda_batch_norm,
    .batch_norm_backward = cuda_batch_norm_backward,
};

const backend cuda_backend = {
    .name = "cuda",
    .bf16 = &cuda_bf16,
    .copy = cuda_copy,
    .fill = cuda_fill,
    .unary = cuda_unary,
    .binary = cuda_binary,
    .where = cuda_where,
    .reduce = cuda_reduce,
    .gemm = cuda_gemm,
    .softmax = cuda_softmax,
    .softmax_backward = cuda_softmax_backward,
    .gather = cuda_gather,
    .scatter_add = cuda_scatter_add,
    .index_select = cuda_index_select,
    .index_add = cuda_index_add,
    .uniform = cuda_uniform,
    .normal = cuda_normal,
    .max_pool2d = cuda_max_pool2d,
    .max_pool2d_backward = cuda_max_pool2d_backward,
    .avg_pool2d = cuda_avg_pool2d,
    .avg_pool2d_backward = cuda_avg_pool2d_backward,
    .adaptive_avg_pool2d = cuda_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = cuda_adaptive_avg_pool2d_backward,
    .interpolate2d = cuda_interpolate2d,
    .interpolate2d_backward = cuda_interpolate2d_backward,
    .conv2d = cuda_conv2d,
    .conv2d_backward_data = cuda_conv2d_backward_data,
    .conv2d_backward_weight = cuda_conv2d_backward_weight,
    .batch_norm = cuda_batch_norm,
    .batch_norm_backward = cuda_batch_norm_backward,
};
