#include "iter.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many elements a kernel runs on one thread: waking threads costs more. */
#define ITER_PARALLEL_MIN 32768

typedef struct {
    int ndim, nops;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t step[ITER_MAX_OPS][TENSOR_MAX_DIMS]; /* bytes */
    char *base[ITER_MAX_OPS];
} iter_plan;

static void plan_make(iter_plan *p, int nops, const tensor *const *ops)
{
    const tensor *t0 = ops[0];
    p->nops = nops;
    p->ndim = 0;
    for (int k = 0; k < nops; k++)
        p->base[k] = tensor_data(ops[k]);
    /* Visit the dims in the memory order of the first operand (the output), so a
     * channels-last or transposed output is walked as the run of memory it is:
     * a stable sort by decreasing stride, which keeps a contiguous tensor's order. */
    int order[TENSOR_MAX_DIMS];
    for (int i = 0; i < t0->ndim; i++) {
        int d = i, j = i;
        for (; j > 0 && t0->stride[order[j - 1]] < t0->stride[d]; j--)
            order[j] = order[j - 1];
        order[j] = d;
    }
    /* Drop size-1 dims, then merge dim d into the previous one where every
     * operand has stride[prev] == stride[d] * shape[d]. */
    for (int i = 0; i < t0->ndim; i++) {
        int d = order[i];
        if (t0->shape[d] == 1)
            continue;
        int n = p->ndim;
        bool merge = n > 0;
        for (int k = 0; k < nops && merge; k++) {
            int64_t es = (int64_t)dtype_size(ops[k]->dtype);
            merge = p->step[k][n - 1] == ops[k]->stride[d] * es * t0->shape[d];
        }
        if (merge) {
            p->shape[n - 1] *= t0->shape[d];
            for (int k = 0; k < nops; k++)
                p->step[k][n - 1] = ops[k]->stride[d] * (int64_t)dtype_size(ops[k]->dtype);
        } else {
            p->shape[n] = t0->shape[d];
            for (int k = 0; k < nops; k++)
                p->step[k][n] = ops[k]->stride[d] * (int64_t)dtype_size(ops[k]->dtype);
            p->ndim++;
        }
    }
    if (p->ndim == 0) { /* a scalar, or all dims of size 1 */
        p->ndim = 1;
        p->shape[0] = 1;
        for (int k = 0; k < nops; k++)
            p->step[k][0] = 0;
    }
}

/* Run elements [begin, end) of the flattened iteration space. */
static void plan_run_range(const iter_plan *p, int64_t begin, int64_t end, iter_fn fn,
                           void *ctx)
{
    int last = p->ndim - 1;
    int64_t idx[TENSOR_MAX_DIMS];
    int64_t rem = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % p->shape[d];
        rem /= p->shape[d];
    }
    int64_t inner_step[ITER_MAX_OPS];
    for (int k = 0; k < p->nops; k++)
        inner_step[k] = p->step[k][last];
    int64_t pos = begin;
    while (pos < end) {
        char *ptr[ITER_MAX_OPS];
        for (int k = 0; k < p->nops; k++) {
            int64_t off = 0;
            for (int d = 0; d <= last; d++)
                off += idx[d] * p->step[k][d];
            ptr[k] = p->base[k] + off;
        }
        int64_t n = p->shape[last] - idx[last];
        if (n > end - pos)
            n = end - pos;
        fn(ptr, inner_step, n, ctx);
        pos += n;
        idx[last] += n;
        for (int d = last; d > 0 && idx[d] >= p->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

void iter_run(int nops, const tensor *const *ops, iter_fn fn, void *ctx)
{
    int64_t total = tensor_numel(ops[0]);
    if (total == 0)
        return;
    iter_plan p;
    plan_make(&p, nops, ops);
    int nt = cpu_num_threads();
    if (total < ITER_PARALLEL_MIN || nt <= 1) {
        plan_run_range(&p, 0, total, fn, ctx);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t b = total * t / nt, e = total * (t + 1) / nt;
        plan_run_range(&p, b, e, fn, ctx);
    }
}

static int g_threads = 0;

int cpu_num_threads(void)
{
#ifdef _OPENMP
    if (g_threads <= 0)
        g_threads = omp_get_num_procs();
    return g_threads;
#else
    return 1;
#endif
}

void cpu_set_num_threads(int n)
{
    g_threads = n > 0 ? n : 1;
}
