// Uniform and normal numbers on the GPU. CPU twin: csrc/cpu/random.c, with the
// generator of csrc/rng.c reimplemented here: element i uses counter offset + i, so
// a draw gives the CPU's numbers. Uniform ones are bit for bit the same; normal ones
// use CUDA's double log and cos, which may differ from glibc's in the last bit.
#include "common.cuh"

#include <math.h>

#include <type_traits>

// Constants of Philox-4x32 (Salmon et al., SC 2011), as in csrc/rng.c.
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// rng_philox: four 32-bit words for one counter under a 64-bit key.
__host__ __device__ static inline void philox(uint64_t counter, uint64_t key, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// rng_u01f and rng_u01d: uniform in [0, 1) with 24 or 53 random bits (exact).
__host__ __device__ static inline float u01f(uint32_t w)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

__host__ __device__ static inline double u01d(uint32_t w0, uint32_t w1)
{
    uint64_t bits = ((uint64_t)w0 << 21) ^ (uint64_t)(w1 >> 11);
    return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

enum rand_dist { RAND_UNIFORM, RAND_NORMAL };

// The CPU's rand_draw, in double. a + b * x is rounded twice (__dmul_rn and
// __dadd_rn keep nvcc from fusing them into an FMA), as the CPU computes it.
// Box-Muller's log and cos are CUDA's (within 1-2 ulp), not glibc's (correctly
// rounded), so a normal number may differ from the CPU's in its last bit.
template <typename T>
__device__ static inline double rand_draw(rand_dist dist, const uint32_t w[4], double a, double b)
{
    if (dist == RAND_UNIFORM) {
        // float32 draws use one word, as on the CPU
        double u = std::is_same_v<T, float> ? (double)u01f(w[0]) : u01d(w[0], w[1]);
        return __dadd_rn(a, __dmul_rn(b - a, u));
    }
    double u1 = 1.0 - u01d(w[0], w[1]); // in (0, 1]: log is finite
    double u2 = u01d(w[2], w[3]);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return __dadd_rn(a, __dmul_rn(b, z));
}

template <typename T>
__global__ void rand_kernel(T *out, int64_t n, uint64_t seed, uint64_t offset, rand_dist dist,
                            double a, double b)
{
    KLOOP(i, n)
    {
        uint32_t w[4];
        philox(offset + (uint64_t)i, seed, w);
        out[i] = (T)rand_draw<T>(dist, w, a, b);
    }
}

// Fill contiguous float32 or float64 out, element i from counter offset + i.
static int rand_fill(tensor *out, uint64_t seed, uint64_t offset, rand_dist dist, double a,
                     double b, const char *what)
{
    int64_t n = tensor_numel(out);
    if (n == 0)
        return 0;
    cudaStream_t s = kstream(out);
    if (!s)
        return -1;
    switch (out->dtype) {
    case DT_F32:
        rand_kernel<float><<<kblocks(n), KTHREADS, 0, s>>>((float *)tensor_data(out), n, seed,
                                                           offset, dist, a, b);
        break;
    case DT_F64:
        rand_kernel<double><<<kblocks(n), KTHREADS, 0, s>>>((double *)tensor_data(out), n, seed,
                                                            offset, dist, a, b);
        break;
    default: return err_set("%s: expected a float tensor, got %s", what, dtype_name(out->dtype));
    }
    return cuda_ctx_launched(what);
}

extern "C" int cuda_uniform(tensor *out, uint64_t seed, uint64_t offset, double lo, double hi)
{
    return rand_fill(out, seed, offset, RAND_UNIFORM, lo, hi, "uniform");
}

extern "C" int cuda_normal(tensor *out, uint64_t seed, uint64_t offset, double mean, double std)
{
    return rand_fill(out, seed, offset, RAND_NORMAL, mean, std, "normal");
}
