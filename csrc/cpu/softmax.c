/* Softmax and log-softmax over the middle dim of a contiguous [outer, n, inner]
 * tensor, and their backward passes. Computed in double per row for accuracy. */
#include <math.h>

#include "cpu.h"
#include "iter.h"

/* Threads for rows of n elements: one, unless the work pays for waking more. */
static int row_threads(int64_t rows, int64_t n)
{
    return rows * n >= 32768 && rows >= 2 ? cpu_num_threads() : 1;
}

/* The offset of row r's first element in a contiguous [outer, n, inner] tensor,
 * whose outer * inner rows each hold n elements lying inner apart. */
static inline int64_t row_base(int64_t r, int64_t n, int64_t inner)
{
    return (r / inner) * n * inner + r % inner;
}

int cpu_softmax(tensor *out, const tensor *a, int64_t outer, int64_t n, int64_t inner,
                bool log_)
{
    const char *x = tensor_data(a);
    char *y = tensor_data(out);
    dtype_t dt = a->dtype;
    int64_t rows = outer * inner;
    int nt = row_threads(rows, n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = row_base(r, n, inner);
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++)
            m = fmax(m, dtype_load(dt, x, base + j * inner));
        for (int64_t j = 0; j < n; j++)
            sum += exp(dtype_load(dt, x, base + j * inner) - m);
        double lse = m + log(sum);
        for (int64_t j = 0; j < n; j++) {
            double v = dtype_load(dt, x, base + j * inner) - lse;
            dtype_store(dt, y, base + j * inner, log_ ? v : exp(v));
        }
    }
    return 0;
}

/* softmax:     gin = y * (gout - sum(gout * y))
 * log-softmax: gin = gout - exp(y) * sum(gout) */
int cpu_softmax_backward(tensor *gin, const tensor *gout, const tensor *y, int64_t outer,
                         int64_t n, int64_t inner, bool log_)
{
    const char *g = tensor_data(gout), *yy = tensor_data(y);
    char *gi = tensor_data(gin);
    dtype_t dt = y->dtype;
    int64_t rows = outer * inner;
    int nt = row_threads(rows, n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = row_base(r, n, inner);
        double dot = 0;
        for (int64_t j = 0; j < n; j++) {
            int64_t p = base + j * inner;
            dot += log_ ? dtype_load(dt, g, p) : dtype_load(dt, g, p) * dtype_load(dt, yy, p);
        }
        for (int64_t j = 0; j < n; j++) {
            int64_t p = base + j * inner;
            double gv = dtype_load(dt, g, p), yv = dtype_load(dt, yy, p);
            dtype_store(dt, gi, p, log_ ? gv - exp(yv) * dot : yv * (gv - dot));
        }
    }
    return 0;
}
