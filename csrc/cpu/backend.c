/* The CPU backend's entry in the dispatch table. */
#include "cpu.h"

/* No arithmetic kernel here takes bfloat16 (.bf16 is NULL): widen.c gives them
 * float32 copies, scatter_add and index_add included (they would round at each
 * addition). copy, fill, gather, index_select, uniform and normal take it. */
const backend cpu_backend = {
    .name = "cpu",
    .copy = cpu_copy,
    .fill = cpu_fill,
    .unary = cpu_unary,
    .activation_backward = cpu_activation_backward,
    .binary = cpu_binary,
    .where = cpu_where,
    .reduce = cpu_reduce,
    .gemm = cpu_gemm,
    .softmax = cpu_softmax,
    .softmax_backward = cpu_softmax_backward,
    .gather = cpu_gather,
    .scatter_add = cpu_scatter_add,
    .index_select = cpu_index_select,
    .index_add = cpu_index_add,
    .uniform = cpu_uniform,
    .normal = cpu_normal,
    .max_pool2d = cpu_max_pool2d,
    .max_pool2d_backward = cpu_max_pool2d_backward,
    .avg_pool2d = cpu_avg_pool2d,
    .avg_pool2d_backward = cpu_avg_pool2d_backward,
    .adaptive_avg_pool2d = cpu_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = cpu_adaptive_avg_pool2d_backward,
    .interpolate2d = cpu_interpolate2d,
    .interpolate2d_backward = cpu_interpolate2d_backward,
    .conv2d = cpu_conv2d,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_weight = cpu_conv2d_backward_weight,
    .batch_norm = cpu_batch_norm,
    .batch_norm_backward = cpu_batch_norm_backward,
};
