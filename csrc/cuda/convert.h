/* float32 <-> bf16 on the GPU (kernels/convert.cu), for the bf16 autocast of
 * cublas_gemm.c and cudnn_conv.c: the float32 values cuBLAS or cuDNN read are
 * rounded to bf16 (to nearest, ties to even) into a temporary device buffer, and a
 * bf16 result is widened back into float32 (exactly). A bf16 buffer is raw device
 * memory of n 2-byte values, handled as void * (C has no bf16 type).
 *
 * Everything runs on the GPU's one stream, in order, and the caching allocator
 * hands memory out again in stream order: a buffer may be given back with
 * cuda_bf16_free as soon as its last use is enqueued. Only in a CUDA build. */
#ifndef MILES_CUDA_CONVERT_H
#define MILES_CUDA_CONVERT_H

#include <stdint.h>

#include "../device.h"
#include "../tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = src[i] rounded to bf16, for i < n: device buffers on GPU dev. */
int cuda_f32_to_bf16(device dev, void *dst, const float *src, int64_t n);
/* dst[i] = src[i] as float32 (exact), for i < n. */
int cuda_bf16_to_f32(device dev, float *dst, const void *src, int64_t n);

/* An uninitialised bf16 buffer of n values on dev, or NULL with the error set. */
void *cuda_bf16_alloc(device dev, int64_t n);
/* A bf16 copy of the n float32 values from t's first element on (a dense span of
 * t's storage, on t's device), or NULL with the error set. */
void *cuda_bf16_copy(const tensor *t, int64_t n);
/* Give back a buffer of n values from either (NULL is allowed). */
void cuda_bf16_free(device dev, void *p, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
