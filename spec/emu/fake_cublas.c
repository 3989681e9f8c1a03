/* A fake cuBLAS for the emulated GPU (make EMU=1): built as build-emu/lib/
 * libcublas.so.<major>, which csrc/cuda/cublas_gemm.c loads (dlopen) as it would
 * the real one, so its calls are checked on any machine. The one product it uses,
 * cublasGemmStridedBatchedEx, is computed from cuBLAS's documented semantics, not
 * from our code's: column-major matrices, C = alpha op(A) op(B) + beta C, op(X) =
 * X or X^T by its flag, each of `batch` products `stride` elements apart; A and B
 * float32, float64 or bf16, C float32, float64 or bf16, in the type combinations
 * of the cublasGemmEx table; TF32 compute rounds float32 inputs to TF32; sums in
 * double, a float32 or bf16 C rounded from float32 (bf16 to nearest even).
 * The checks on the leading dimensions are made as the real library makes them. */
#include <cublas_v2.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../c/fake_cudart.h"

struct cublasContext {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    *handle = calloc(1, sizeof **handle);
    return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    free(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId)
{
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    return status == CUBLAS_STATUS_SUCCESS ? "success" : "fake cuBLAS: invalid value";
}

/* x rounded to TF32 (float32 with 10 mantissa bits, to nearest). */
static double tf32(double x)
{
    float f = (float)x;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7f800000u) != 0x7f800000u) /* not Inf or NaN */
        bits = (bits + 0x1000u) & ~0x1fffu;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double load(const void *p, cudaDataType t, long long i)
{
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_64F: return ((const double *)p)[i];
    case CUDA_R_16BF: { /* bf16: the top half of a float32 */
        uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    default: return 0;
    }
}

/* x rounded to float32, then to bf16 (to nearest, ties to even), as bits. */
static uint16_t to_bf16(double x)
{
    float f = (float)x;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet */
        return (uint16_t)((bits >> 16) | 0x40);
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16);
}

/* One call's arguments, kept for a graph node while the stream is captured. */
typedef struct {
    bool ta, tb, tf32;
    int m, n, k, lda, ldb, ldc, batch;
    double alpha, beta;
    const void *A, *B;
    void *C;
    cudaDataType at, ct;
    long long sa, sb, sc;
} gemm_call;

static void gemm_run(void *p)
{
    const gemm_call *g = p;
    for (int b = 0; b < g->batch; b++)
        for (int j = 0; j < g->n; j++)
            for (int i = 0; i < g->m; i++) {
                double sum = 0;
                for (int l = 0; l < g->k; l++) {
                    long long ai = g->ta ? l + (long long)i * g->lda : i + (long long)l * g->lda;
                    long long bi = g->tb ? j + (long long)l * g->ldb : l + (long long)j * g->ldb;
                    double x = load(g->A, g->at, b * g->sa + ai), y = load(g->B, g->at, b * g->sb + bi);
                    if (g->tf32) /* tensor cores read float32 as TF32: 10 mantissa bits */
                        x = tf32(x), y = tf32(y);
                    sum += x * y;
                }
                long long ci = b * g->sc + i + (long long)j * g->ldc;
                double c = g->beta == 0 ? 0 : g->beta * load(g->C, g->ct, ci);
                if (g->ct == CUDA_R_32F)
                    ((float *)g->C)[ci] = (float)(g->alpha * sum + c);
                else if (g->ct == CUDA_R_16BF)
                    ((uint16_t *)g->C)[ci] = to_bf16(g->alpha * sum + c);
                else
                    ((double *)g->C)[ci] = g->alpha * sum + c;
            }
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long int strideA, const void *B,
                                          cudaDataType Btype, int ldb, long long int strideB,
                                          const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount,
                                          cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo)
{
    (void)algo;
    bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
    /* the documented checks: op(A) is m x k, stored (ta ? k x m : m x k) */
    int min_a = ta ? k : m, min_b = tb ? n : k;
    if (m < 0 || n < 0 || k < 0 || batchCount < 0 || lda < (min_a > 1 ? min_a : 1) ||
        ldb < (min_b > 1 ? min_b : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    /* the combinations of cublasGemmEx's table that miles can ask for */
    bool ok = Atype == Btype &&
              ((computeType == CUBLAS_COMPUTE_64F && Atype == CUDA_R_64F && Ctype == CUDA_R_64F) ||
               ((computeType == CUBLAS_COMPUTE_32F || computeType == CUBLAS_COMPUTE_32F_FAST_TF32) &&
                Atype == CUDA_R_32F && Ctype == CUDA_R_32F) ||
               (computeType == CUBLAS_COMPUTE_32F && Atype == CUDA_R_16BF &&
                (Ctype == CUDA_R_32F || Ctype == CUDA_R_16BF)));
    if (!ok)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    bool dcompute = computeType == CUBLAS_COMPUTE_64F;
    gemm_call g = {ta, tb, computeType == CUBLAS_COMPUTE_32F_FAST_TF32, m, n, k, lda, ldb, ldc, batchCount,
                   dcompute ? *(const double *)alpha : *(const float *)alpha,
                   dcompute ? *(const double *)beta : *(const float *)beta,
                   A, B, C, Atype, Ctype, strideA, strideB, strideC};
    gemm_call *kept = malloc(sizeof *kept);
    if (!kept)
        return CUBLAS_STATUS_ALLOC_FAILED;
    *kept = g;
    fake_trace("gemm %dx%dx%d batch %d %s", m, n, k, batchCount,
               Atype == CUDA_R_16BF ? "bf16" : Atype == CUDA_R_64F ? "f64" : "f32");
    fake_device_work(handle->stream, (const void *)gemm_run, 1, gemm_run, kept, free);
    return CUBLAS_STATUS_SUCCESS;
}
