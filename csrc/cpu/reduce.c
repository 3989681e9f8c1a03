/* CPU reductions over the middle dim of a contiguous [outer, n, inner] tensor.
 * Float sums accumulate in double, so float32 results do not drift with n. */
#include <math.h>
#include <stdlib.h>

#include "cpu.h"
#include "iter.h"

/* Reduce the n values x[0], x[st], ..., x[(n-1)st]; *arg gets the max/min position. */
static double reduce_run(reduce_op op, dtype_t dt, const char *base, int64_t st, int64_t n,
                         double p0, int64_t *arg)
{
    size_t es = dtype_size(dt);
#define AT(j) dtype_load(dt, base + (j) * st * (int64_t)es, 0)
    double acc;
    switch (op) {
    case RED_SUM:
        acc = 0;
        if (dt == DT_F32)
            for (int64_t j = 0; j < n; j++) acc += ((const float *)base)[j * st];
        else if (dt == DT_F64)
            for (int64_t j = 0; j < n; j++) acc += ((const double *)base)[j * st];
        else
            for (int64_t j = 0; j < n; j++) acc += AT(j);
        return acc;
    case RED_PROD:
        acc = 1;
        for (int64_t j = 0; j < n; j++) acc *= AT(j);
        return acc;
    case RED_MAX:
    case RED_MIN: {
        int64_t best = 0;
        acc = n ? AT(0) : NAN;
        for (int64_t j = 1; j < n && !isnan(acc); j++) {
            double v = AT(j);
            if (isnan(v) || (op == RED_MAX ? v > acc : v < acc)) {
                acc = v;
                best = j;
            }
        }
        *arg = best;
        return acc;
    }
    case RED_LOGSUMEXP: {
        double m = -INFINITY;
        for (int64_t j = 0; j < n; j++) m = fmax(m, AT(j));
        if (isinf(m))
            return m;
        acc = 0;
        for (int64_t j = 0; j < n; j++) acc += exp(AT(j) - m);
        return m + log(acc);
    }
    case RED_VAR: {
        double mean = 0;
        for (int64_t j = 0; j < n; j++) mean += AT(j);
        mean /= (double)n;
        acc = 0;
        for (int64_t j = 0; j < n; j++) {
            double d = AT(j) - mean;
            acc += d * d;
        }
        double dof = (double)n - p0;
        return dof > 0 ? acc / dof : NAN;
    }
    default: return 0;
    }
#undef AT
}

/* The exact integer version of sum, prod, max and min (sums wrap around on
 * overflow, as PyTorch's do). */
static int64_t reduce_run_int(reduce_op op, dtype_t dt, const char *base, int64_t st,
                              int64_t n, int64_t *arg)
{
    size_t es = dtype_size(dt);
#define ATI(j) (dt == DT_I64 ? *(const int64_t *)(base + (j) * st * (int64_t)es) \
                             : (int64_t) * (const uint8_t *)(base + (j) * st * (int64_t)es))
    uint64_t acc = op == RED_PROD ? 1 : 0;
    int64_t best = 0, v0 = n ? ATI(0) : 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t v = ATI(j);
        if (op == RED_SUM)
            acc += (uint64_t)v;
        else if (op == RED_PROD)
            acc *= (uint64_t)v;
        else if (op == RED_MAX ? v > v0 : v < v0) {
            v0 = v;
            best = j;
        }
    }
#undef ATI
    *arg = best;
    return op == RED_MAX || op == RED_MIN ? v0 : (int64_t)acc;
}

int cpu_reduce(reduce_op op, tensor *out, tensor *idx, const tensor *a, int64_t outer,
               int64_t n, int64_t inner, double p0)
{
    bool exact_int = !dtype_is_float(a->dtype) && op <= RED_MIN;
    const char *base = tensor_data(a);
    char *ob = tensor_data(out);
    int64_t *ib = idx ? tensor_data(idx) : NULL;
    size_t es = dtype_size(a->dtype);
    int64_t rows = outer * inner;
    int nt = rows * n >= 32768 && rows >= 2 ? cpu_num_threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t o = r / inner, i = r % inner, arg = 0;
        const char *start = base + (o * n * inner + i) * (int64_t)es;
        if (exact_int) {
            int64_t v = reduce_run_int(op, a->dtype, start, inner, n, &arg);
            if (out->dtype == DT_I64)
                ((int64_t *)ob)[r] = v;
            else
                dtype_store(out->dtype, ob, r, (double)v);
        } else {
            dtype_store(out->dtype, ob, r, reduce_run(op, a->dtype, start, inner, n, p0, &arg));
        }
        if (ib)
            ib[r] = arg;
    }
    return 0;
}
