/* The CPU backend's entry in the dispatch table. */
#include "cpu.h"

const backend cpu_backend = {
    .name = "cpu",
    .copy = cpu_copy,
    .fill = cpu_fill,
    .unary = cpu_unary,
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
};
