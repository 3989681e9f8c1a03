/* Tensors made from ranges and random numbers (no autograd). */
#include <inttypes.h>
#include <math.h>

#include "../rng.h"
#include "internal.h"

tensor *op_arange(double start, double end, double step, dtype_t dt)
{
    if (step == 0 || isnan(step) || isnan(start) || isnan(end) || isinf(start) || isinf(end)) {
        err_set("arange: invalid range (start %g, end %g, step %g)", start, end, step);
        return NULL;
    }
    double count = ceil((end - start) / step);
    if (count > 1e12) {
        err_set("arange: %g elements is too many", count);
        return NULL;
    }
    int64_t n = count > 0 ? (int64_t)count : 0;
    tensor *t = tensor_empty(dt, 1, &n, DEVICE_CPU);
    for (int64_t i = 0; t && i < n; i++)
        dtype_store(dt, tensor_data(t), i, start + (double)i * step);
    return t;
}

tensor *op_linspace(double start, double end, int64_t steps, dtype_t dt)
{
    if (steps < 0) {
        err_set("linspace: the number of steps must be non-negative, got %" PRId64, steps);
        return NULL;
    }
    tensor *t = tensor_empty(dt, 1, &steps, DEVICE_CPU);
    double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
    /* Fill from both ends, as PyTorch does, so the last value is exactly `end`;
     * a single step is `start`. */
    for (int64_t i = 0; t && i < steps; i++)
        dtype_store(dt, tensor_data(t), i,
                    steps == 1 || i < steps / 2 ? start + step * (double)i
                                                : end - step * (double)(steps - 1 - i));
    return t;
}

tensor *op_eye(int64_t n, int64_t m, dtype_t dt)
{
    if (n < 0 || m < 0) {
        err_set("eye: sizes must be non-negative, got %" PRId64 " and %" PRId64, n, m);
        return NULL;
    }
    int64_t shape[2] = {n, m};
    tensor *t = tensor_zeros(dt, 2, shape, DEVICE_CPU);
    for (int64_t i = 0; t && i < n && i < m; i++)
        dtype_store(dt, tensor_data(t), i * m + i, 1);
    return t;
}

static tensor *random_float(int ndim, const int64_t *shape, dtype_t dt, device dev, bool normal,
                            const char *op)
{
    if (!dtype_is_float(dt)) {
        err_set("%s: dtype must be float32, float64 or bfloat16, got %s", op, dtype_name(dt));
        return NULL;
    }
    tensor *t = tensor_empty(dt, ndim, shape, dev);
    const backend *be = t ? dispatch_backend(dev, op) : NULL;
    if (!be) {
        tensor_decref(t);
        return NULL;
    }
    uint64_t off = rng_reserve((uint64_t)tensor_numel(t));
    int rc = normal ? be->normal(t, rng_get_seed(), off, 0, 1) : be->uniform(t, rng_get_seed(), off, 0, 1);
    if (rc != 0) {
        tensor_decref(t);
        return NULL;
    }
    return t;
}

tensor *op_rand(int ndim, const int64_t *shape, dtype_t dt, device dev)
{
    return random_float(ndim, shape, dt, dev, false, "rand");
}

tensor *op_randn(int ndim, const int64_t *shape, dtype_t dt, device dev)
{
    return random_float(ndim, shape, dt, dev, true, "randn");
}

tensor *op_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, device dev)
{
    if (high <= low) {
        err_set("randint: high (%" PRId64 ") must be greater than low (%" PRId64 ")", high, low);
        return NULL;
    }
    tensor *u = random_float(ndim, shape, DT_F64, DEVICE_CPU, false, "randint");
    tensor *t = u ? tensor_empty(DT_I64, ndim, shape, DEVICE_CPU) : NULL;
    /* The span in unsigned arithmetic: high - low may not fit in an int64
     * (randint(math.mininteger, math.maxinteger)). */
    uint64_t span = (uint64_t)high - (uint64_t)low;
    for (int64_t i = 0, n = t ? tensor_numel(t) : 0; i < n; i++) {
        uint64_t k = (uint64_t)floor(((double *)tensor_data(u))[i] * (double)span);
        if (k >= span)
            k = span - 1;
        ((int64_t *)tensor_data(t))[i] = (int64_t)((uint64_t)low + k);
    }
    tensor_decref(u);
    if (t && dev.type != DEV_CPU) {
        err_set("randint: only the cpu device is supported so far");
        tensor_decref(t);
        return NULL;
    }
    return t;
}

/* Fisher-Yates with one counter of the generator per swap. */
tensor *op_randperm(int64_t n)
{
    if (n < 0) {
        err_set("randperm: n must be non-negative, got %" PRId64, n);
        return NULL;
    }
    tensor *t = tensor_empty(DT_I64, 1, &n, DEVICE_CPU);
    if (!t)
        return NULL;
    int64_t *p = tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    uint64_t off = rng_reserve((uint64_t)n), seed = rng_get_seed();
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t w[4];
        rng_philox(off + (uint64_t)i, seed, w);
        uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    return t;
}
