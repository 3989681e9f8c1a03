/* Walking several same-shaped strided tensors together, in parallel chunks.
 * Dims are coalesced first (adjacent dims that are contiguous in every operand
 * become one), so a contiguous tensor is a single flat run. */
#ifndef MILES_CPU_ITER_H
#define MILES_CPU_ITER_H

#include "../tensor.h"

#define ITER_MAX_OPS 4

/* Process n elements: ptr[k] points at operand k's first element, step[k] is its
 * stride in bytes along the run. */
typedef void (*iter_fn)(char **ptr, const int64_t *step, int64_t n, void *ctx);

/* Calls fn over all elements of the operands (all of ops[0]'s shape). */
void iter_run(int nops, const tensor *const *ops, iter_fn fn, void *ctx);

/* Number of threads the CPU kernels use. */
int cpu_num_threads(void);
void cpu_set_num_threads(int n);

#endif
