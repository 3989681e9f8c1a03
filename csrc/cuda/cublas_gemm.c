/* Matrix products on the GPU through cuBLAS (twin: csrc/cpu/blas.c).
 *
 * cuBLAS is column-major and our matrices are row-major. A row-major m x n
 * matrix with leading dimension ld is, read column-major, its transpose (n x m,
 * same ld), so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the operands
 * swap places, the sizes m and n swap, and the transpose flags stay as they are. */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include <cublas_v2.h>

#include "../error.h"
#include "cuda_ctx.h"
#include "kernels.h"

/* One handle per GPU, made on first use and bound to that GPU's stream. */
#define GEMM_MAX_GPUS 64

static cublasHandle_t handles[GEMM_MAX_GPUS];
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;

static int blas_check(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return 0;
    return err_set("gemm: %s failed: %s", what, cublasGetStatusString(s));
}

/* The handle of GPU `index` (made current), or NULL with the error set. */
static cublasHandle_t gemm_handle(int index)
{
    if (index < 0 || index >= GEMM_MAX_GPUS) {
        err_set("gemm: cuda:%d is beyond the %d GPUs cuBLAS handles are kept for", index,
                GEMM_MAX_GPUS);
        return NULL;
    }
    cudaStream_t stream = cuda_ctx_stream(index); /* also makes the GPU current */
    if (!stream)
        return NULL;
    pthread_mutex_lock(&handles_lock);
    cublasHandle_t h = handles[index];
    if (!h) {
        if (blas_check(cublasCreate(&h), "cublasCreate") != 0) {
            h = NULL;
        } else if (blas_check(cublasSetStream(h, stream), "cublasSetStream") != 0) {
            cublasDestroy(h);
            h = NULL;
        } else {
            handles[index] = h;
        }
    }
    pthread_mutex_unlock(&handles_lock);
    return h;
}

/* Does v fit cuBLAS's int arguments? Else the error names the argument. */
static int fits_int(int64_t v, const char *name)
{
    if (v >= 0 && v <= INT_MAX)
        return 0;
    return err_set("gemm: %s = %" PRId64 " does not fit cuBLAS's 32-bit int arguments", name, v);
}

int cuda_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
              double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
              int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc)
{
    if (dt != DT_F32 && dt != DT_F64)
        return err_set("gemm: cuBLAS kernel wants float32 or float64, got %s", dtype_name(dt));
    if (batch <= 0 || m <= 0 || n <= 0)
        return 0;
    /* With k = 0 nothing of A or B is read (C = beta * C): cuBLAS still checks
     * that each leading dimension covers its rows, so give it the least it takes. */
    if (k == 0) {
        int64_t need_a = ta ? m : 0, need_b = tb ? 0 : n;
        lda = lda < need_a ? need_a : lda;
        ldb = ldb < need_b ? need_b : ldb;
        lda = lda < 1 ? 1 : lda;
        ldb = ldb < 1 ? 1 : ldb;
    }
    if (fits_int(batch, "batch") != 0 || fits_int(m, "m") != 0 || fits_int(n, "n") != 0 ||
        fits_int(k, "k") != 0 || fits_int(lda, "lda") != 0 || fits_int(ldb, "ldb") != 0 ||
        fits_int(ldc, "ldc") != 0)
        return -1;
    cublasHandle_t h = gemm_handle(tensor_device(C).index);
    if (!h)
        return -1;

    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    float alpha_f = (float)alpha, beta_f = (float)beta;
    const void *palpha = &alpha, *pbeta = &beta;
    cudaDataType type = CUDA_R_64F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_64F;
    if (dt == DT_F32) {
        palpha = &alpha_f;
        pbeta = &beta_f;
        type = CUDA_R_32F;
        compute = cuda_ctx_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    }
    /* Column-major C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m). */
    cublasStatus_t s = cublasGemmStridedBatchedEx(
        h, opb, opa, (int)n, (int)m, (int)k, palpha, tensor_data(B), type, (int)ldb,
        (long long)sb, tensor_data(A), type, (int)lda, (long long)sa, pbeta, tensor_data(C),
        type, (int)ldc, (long long)sc, (int)batch, compute, CUBLAS_GEMM_DEFAULT);
    return blas_check(s, dt == DT_F32 ? "cublasGemmStridedBatchedEx (float32)"
                                      : "cublasGemmStridedBatchedEx (float64)");
}
