// What every kernel file shares: the core's headers, tensor geometry passed to
// kernels by value, grid-stride loops and the dtype switch.
#ifndef MILES_KERNELS_COMMON_CUH
#define MILES_KERNELS_COMMON_CUH

#include <cstdint>

#include <cuda_runtime.h>

extern "C" {
#include "../csrc/cuda/cuda_ctx.h"
#include "../csrc/cuda/kernels.h"
#include "../csrc/dispatch.h"
#include "../csrc/error.h"
}

#define KTHREADS 256

// A tensor's shape and strides (elements), for kernels that walk any layout.
// The storage offset is already in the data pointer (tensor_data).
struct kgeom {
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
};

static inline kgeom kgeom_of(const tensor *t)
{
    kgeom g;
    g.ndim = t->ndim;
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) {
        g.shape[i] = i < t->ndim ? t->shape[i] : 1;
        g.stride[i] = i < t->ndim ? t->stride[i] : 0;
    }
    return g;
}

// The element offset of the i-th element in row-major order of the shape.
__device__ __forceinline__ int64_t kgeom_offset(const kgeom &g, int64_t i)
{
    int64_t off = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t s = g.shape[d];
        off += (i % s) * g.stride[d];
        i /= s;
    }
    return off;
}

#define KLOOP(i, n)                                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)blockDim.x * gridDim.x)

// The stream of the GPU a tensor lives on (making that GPU current), or NULL
// with the error set.
static inline cudaStream_t kstream(const tensor *t)
{
    return cuda_ctx_stream(tensor_device(t).index);
}

static inline unsigned kblocks(int64_t n)
{
    return cuda_ctx_blocks((long long)n, KTHREADS);
}

#endif
