/* Uniform and normal numbers on the CPU: element i of a draw uses counter
 * offset + i, so the result does not depend on the thread count. */
#include <math.h>

#include "../rng.h"
#include "cpu.h"

int cpu_uniform(tensor *out, uint64_t seed, uint64_t offset, double lo, double hi)
{
    int64_t n = tensor_numel(out);
    bool f32 = out->dtype == DT_F32;
    float *of = tensor_data(out);
    double *od = tensor_data(out);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_philox(offset + (uint64_t)i, seed, w);
        if (f32)
            of[i] = (float)(lo + (hi - lo) * rng_u01f(w[0]));
        else
            od[i] = lo + (hi - lo) * rng_u01d(w[0], w[1]);
    }
    return 0;
}

/* Box-Muller on two uniforms of each counter. */
int cpu_normal(tensor *out, uint64_t seed, uint64_t offset, double mean, double std)
{
    int64_t n = tensor_numel(out);
    bool f32 = out->dtype == DT_F32;
    float *of = tensor_data(out);
    double *od = tensor_data(out);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_philox(offset + (uint64_t)i, seed, w);
        double u1 = 1.0 - rng_u01d(w[0], w[1]); /* in (0, 1]: log is finite */
        double u2 = rng_u01d(w[2], w[3]);
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        if (f32)
            of[i] = (float)(mean + std * z);
        else
            od[i] = mean + std * z;
    }
    return 0;
}
