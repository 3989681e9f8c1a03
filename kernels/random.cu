// Uniform and normal numbers on the GPU. CPU twin: csrc/cpu/random.c; the
// generator is csrc/philox.h, compiled for both: element i uses counter offset + i,
// so a draw gives the CPU's numbers. Uniform ones are bit for bit the same; normal ones
// use CUDA's double log and cos, which may differ from glibc's in the last bit.
// Inside a CUDA graph capture the seed and the first counter come from the
// graph's random state on the device, which each replay sets (cuda_graph.c).
#include "common.cuh"

#include <math.h>

#include <type_traits>

extern "C" {
#include "../csrc/philox.h"
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
        // float32 and bfloat16 draws use one word, as on the CPU
        double u = std::is_same_v<T, __nv_bfloat16> ? (double)philox_u01h(w[0])
                   : std::is_same_v<T, float>       ? (double)philox_u01f(w[0])
                                                    : philox_u01d(w[0], w[1]);
        return __dadd_rn(a, __dmul_rn(b - a, u));
    }
    double u1 = 1.0 - philox_u01d(w[0], w[1]); // in (0, 1]: log is finite
    double u2 = philox_u01d(w[2], w[3]);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return __dadd_rn(a, __dmul_rn(b, z));
}

// Element i from counter offset + i under seed; with state (a graph's), from
// counter state[1] + offset + i under seed state[0].
template <typename T>
__global__ void rand_kernel(T *out, int64_t n, uint64_t seed, uint64_t offset,
                            const uint64_t *state, rand_dist dist, double a, double b)
{
    if (state) {
        seed = state[0];
        offset += state[1];
    }
    KLOOP(i, n)
    {
        uint32_t w[4];
        philox_4x32(offset + (uint64_t)i, seed, w);
        out[i] = knarrow<T>((compute_t<T>)rand_draw<T>(dist, w, a, b));
    }
}

// Fill contiguous float32, float64 or bfloat16 out, element i from counter offset + i.
static int rand_fill(tensor *out, uint64_t seed, uint64_t offset, rand_dist dist, double a,
                     double b, const char *what)
{
    int64_t n = tensor_numel(out);
    if (n == 0)
        return 0;
    cudaStream_t s = kstream(out);
    if (!s)
        return -1;
    int gpu = tensor_device(out).index;
    const uint64_t *state = nullptr;
    if (cuda_ctx_capturing(gpu) && !(state = cuda_graph_rng_state(gpu, &offset, (uint64_t)n)))
        return -1;
    switch (out->dtype) {
    case DT_F32:
        rand_kernel<float><<<kblocks(n), KTHREADS, 0, s>>>((float *)tensor_data(out), n, seed,
                                                           offset, state, dist, a, b);
        break;
    case DT_F64:
        rand_kernel<double><<<kblocks(n), KTHREADS, 0, s>>>((double *)tensor_data(out), n, seed,
                                                            offset, state, dist, a, b);
        break;
    case DT_BF16:
        rand_kernel<__nv_bfloat16><<<kblocks(n), KTHREADS, 0, s>>>(
            (__nv_bfloat16 *)tensor_data(out), n, seed, offset, state, dist, a, b);
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
