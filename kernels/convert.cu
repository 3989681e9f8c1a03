// float32 <-> bf16 on the GPU (see csrc/cuda/convert.h): the bf16 autocast's
// temporaries for cuBLAS and cuDNN.
// CPU twin: csrc/cpu/elementwise.c's float copy (cpu_copy's copy_cast, which
// converts between float types as C does). The CPU has no bf16 and no autocast:
// these kernels round only what the GPU's matmuls and convolutions read.
#include "common.cuh"

#include <cuda_bf16.h>

extern "C" {
#include "../csrc/alloc.h"
}
#include "../csrc/cuda/convert.h"

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    KLOOP(i, n) dst[i] = __float2bfloat16_rn(src[i]); // NaN stays NaN, +-inf stays
}

__global__ void bf16_to_f32_kernel(float *dst, const __nv_bfloat16 *src, int64_t n)
{
    KLOOP(i, n) dst[i] = __bfloat162float(src[i]);
}

extern "C" int cuda_f32_to_bf16(device dev, void *dst, const float *src, int64_t n)
{
    if (n <= 0)
        return 0;
    cudaStream_t s = cuda_ctx_stream(dev.index);
    if (!s)
        return -1;
    f32_to_bf16_kernel<<<kblocks(n), KTHREADS, 0, s>>>(static_cast<__nv_bfloat16 *>(dst), src,
                                                       n);
    return cuda_ctx_launched("bf16 autocast: float32 to bf16");
}

extern "C" int cuda_bf16_to_f32(device dev, float *dst, const void *src, int64_t n)
{
    if (n <= 0)
        return 0;
    cudaStream_t s = cuda_ctx_stream(dev.index);
    if (!s)
        return -1;
    bf16_to_f32_kernel<<<kblocks(n), KTHREADS, 0, s>>>(
        dst, static_cast<const __nv_bfloat16 *>(src), n);
    return cuda_ctx_launched("bf16 autocast: bf16 to float32");
}

static_assert(sizeof(__nv_bfloat16) == 2, "a bf16 value is 2 bytes");

extern "C" void *cuda_bf16_alloc(device dev, int64_t n)
{
    return alloc_bytes(dev, (size_t)n * sizeof(__nv_bfloat16));
}

extern "C" void *cuda_bf16_copy(const tensor *t, int64_t n)
{
    if (t->dtype != DT_F32) {
        err_set("bf16 autocast: wants a float32 tensor, got %s", dtype_name(t->dtype));
        return NULL;
    }
    device dev = tensor_device(t);
    void *p = cuda_bf16_alloc(dev, n);
    if (p && cuda_f32_to_bf16(dev, p, static_cast<const float *>(tensor_data(t)), n) != 0) {
        cuda_bf16_free(dev, p, n);
        p = NULL;
    }
    return p;
}

extern "C" void cuda_bf16_free(device dev, void *p, int64_t n)
{
    alloc_release(dev, p, (size_t)n * sizeof(__nv_bfloat16));
}
