/* Uniform and normal numbers on the CPU: element i of a draw uses counter
 * offset + i, so the result does not depend on the thread count. */
#include <math.h>

#include "../rng.h"
#include "cpu.h"

/* The distributions a fill draws from. */
typedef enum { RAND_UNIFORM, RAND_NORMAL } rand_dist;

/* One number from the counter's words w: uniform in [a, b) (from the float32 or
 * bfloat16 generator for those dtypes, so their draws need one word), or normal
 * with mean a and standard deviation b by Box-Muller on two uniforms. */
static inline double rand_draw(rand_dist dist, dtype_t dt, const uint32_t w[4], double a,
                               double b)
{
    if (dist == RAND_UNIFORM)
        return a + (b - a) * (dt == DT_BF16  ? rng_u01h(w[0])
                              : dt == DT_F32 ? rng_u01f(w[0])
                                             : rng_u01d(w[0], w[1]));
    double u1 = 1.0 - rng_u01d(w[0], w[1]); /* in (0, 1]: log is finite */
    double u2 = rng_u01d(w[2], w[3]);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return a + b * z;
}

/* Fill a contiguous float tensor, element i from counter offset + i (a bfloat16
 * one through float32, as its other kernels). */
static int rand_fill(tensor *out, uint64_t seed, uint64_t offset, rand_dist dist, double a,
                     double b)
{
    int64_t n = tensor_numel(out);
    dtype_t dt = out->dtype;
    void *o = tensor_data(out);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_philox(offset + (uint64_t)i, seed, w);
        double v = rand_draw(dist, dt, w, a, b);
        if (dt == DT_F32)
            ((float *)o)[i] = (float)v;
        else if (dt == DT_BF16)
            ((uint16_t *)o)[i] = bf16_from_f32((float)v);
        else
            ((double *)o)[i] = v;
    }
    return 0;
}

int cpu_uniform(tensor *out, uint64_t seed, uint64_t offset, double lo, double hi)
{
    return rand_fill(out, seed, offset, RAND_UNIFORM, lo, hi);
}

int cpu_normal(tensor *out, uint64_t seed, uint64_t offset, double mean, double std)
{
    return rand_fill(out, seed, offset, RAND_NORMAL, mean, std);
}
