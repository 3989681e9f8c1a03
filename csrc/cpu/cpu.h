/* The CPU backend's kernels (see dispatch.h for their contracts). */
#ifndef MILES_CPU_H
#define MILES_CPU_H

#include "../dispatch.h"

int cpu_copy(tensor *dst, const tensor *src);
int cpu_fill(tensor *t, double v);
int cpu_unary(unary_op op, tensor *out, const tensor *a, double p0, double p1);
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

#endif
