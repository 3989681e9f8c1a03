/* Uniform and normal numbers on the CPU: element i of a draw uses counter
 * offset + i, so the result does not depend on the thread count. */
#include <math.h>

#include "../rng.h"
#include "cpu.h"

/* The distributions a fill draws from. */
typedef enum { RAND_UNIFORM, RAND_NORMAL } rand_dist;

/* One number from the counter's words w: uniform in [a, b) (from the float32
 * generator when f32, so float32 draws need one word), or normal with mean a and
 * standard deviation b by Box-Muller on two uniforms. */
static inline double rand_draw(rand_dist dist, bool f32, const uint32_t w[4], double a, double b)
{
    if (dist == RAND_UNIFORM)
        return a + (b - a) * (f32 ? rng_u01f(w[0]) : rng_u01d(w[0], w[1]));
    double u1 = 1.0 - rng_u01d(w[0], w[1]); /* in (0, 1]: log is finite */
    double u2 = rng_u01d(w[2], w[3]);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return a + b * z;
}

/* Fill a float32 or float64 tensor, element i from counter offset + i. */
static int rand_fill(tensor *out, uint64_t seed, uint64_t offset, rand_dist dist, double a,
                     double b)
{
    int64_t n = tensor_numel(out);
    bool f32 = out->dtype == DT_F32;
    float *of = tensor_data(out);
    double *od = tensor_data(out);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_philox(offset + (uint64_t)i, seed, w);
        double v = rand_draw(dist, f32, w, a, b);
        if (f32)
            of[i] = (float)v;
        else
            od[i] = v;
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
