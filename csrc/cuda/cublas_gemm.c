/* Matrix products on the GPU through cuBLAS (twin: csrc/cpu/blas.c).
 *
 * cuBLAS is column-major and our matrices are row-major. A row-major m x n
 * matrix with leading dimension ld is, read column-major, its transpose (n x m,
 * same ld), so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the operands
 * swap places, the sizes m and n swap, and the transpose flags stay as they are.
 *
 * bfloat16 (autocast's matmuls): A, B and C in bfloat16, float32 accumulation and
 * alpha, beta; C rounded once. */
#include <dlfcn.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>

#include "../error.h"
#include "cuda_ctx.h"
#include "kernels.h"

/* cuBLAS is loaded on first use instead of at startup: with cuBLASLt it is more
 * than half a gigabyte of libraries, whose loading cost every miles process 80 ms
 * and 200 MiB of memory, GPU or not (measured on a 2-core CI machine). */
#define STR_(x) #x
#define STR(x) STR_(x)
#define CUBLAS_SONAME "libcublas.so." STR(CUBLAS_VER_MAJOR)

static struct {
    __typeof__(cublasCreate_v2) *create;
    __typeof__(cublasDestroy_v2) *destroy;
    __typeof__(cublasSetStream_v2) *set_stream;
    __typeof__(cublasGemmStridedBatchedEx) *gemm;
    __typeof__(cublasGetStatusString) *status_string;
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static char blas_error[512];

/* $MILES_CUBLAS, when set, is the library's path (a cuBLAS elsewhere than the
 * system's, or the emulated GPU's fake). */
static const char *blas_path(void)
{
    const char *p = getenv("MILES_CUBLAS");
    return p && *p ? p : CUBLAS_SONAME;
}

static void blas_load(void)
{
    void *lib = dlopen(blas_path(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(blas_error, sizeof blas_error, "%s", dlerror());
        return;
    }
    static const char *const names[5] = {"cublasCreate_v2", "cublasDestroy_v2",
                                          "cublasSetStream_v2", "cublasGetStatusString",
                                          "cublasGemmStridedBatchedEx"};
    void *f[5];
    for (int i = 0; i < 5; i++)
        if (!(f[i] = dlsym(lib, names[i]))) {
            snprintf(blas_error, sizeof blas_error, "it has no %s", names[i]);
            return;
        }
    blas.create = (__typeof__(blas.create))f[0];
    blas.destroy = (__typeof__(blas.destroy))f[1];
    blas.set_stream = (__typeof__(blas.set_stream))f[2];
    blas.status_string = (__typeof__(blas.status_string))f[3];
    blas.gemm = (__typeof__(blas.gemm))f[4];
}

/* 0 once cuBLAS is loaded; else -1 with the error set. */
static int blas_ready(void)
{
    pthread_once(&blas_once, blas_load);
    if (blas.gemm)
        return 0;
    return err_set("gemm: cannot load cuBLAS (%s): %s", blas_path(), blas_error);
}

static int blas_check(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return 0;
    return err_set("gemm: %s failed: %s", what, blas.status_string(s));
}

/* A cuBLAS handle bound to stream s (cuBLAS loaded first). */
static int blas_make(void **out, cudaStream_t s, const char *op)
{
    (void)op;
    cublasHandle_t h = NULL;
    if (blas_ready() != 0 || blas_check(blas.create(&h), "cublasCreate") != 0)
        return -1;
    if (blas_check(blas.set_stream(h, s), "cublasSetStream") != 0) {
        blas.destroy(h);
        return -1;
    }
    *out = h;
    return 0;
}

/* One handle per GPU, made on first use and bound to that GPU's stream. */
static cuda_lib_handles blas_handles = {"cuBLAS", "matmul", blas_make, {0}};

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
    if (dt != DT_F32 && dt != DT_F64 && dt != DT_BF16)
        return err_set("gemm: cuBLAS kernel wants float32, float64 or bfloat16, got %s",
                       dtype_name(dt));
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
    cublasHandle_t h = cuda_ctx_handle(&blas_handles, tensor_device(C).index, "gemm");
    if (!h)
        return -1;

    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    float alpha_f = (float)alpha, beta_f = (float)beta;
    const void *palpha = &alpha, *pbeta = &beta;
    cudaDataType type = CUDA_R_64F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_64F;
    const char *what = "cublasGemmStridedBatchedEx (float64)";
    if (dt == DT_F32) {
        palpha = &alpha_f;
        pbeta = &beta_f;
        type = CUDA_R_32F;
        compute = cuda_get_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        what = "cublasGemmStridedBatchedEx (float32)";
    } else if (dt == DT_BF16) {
        palpha = &alpha_f;
        pbeta = &beta_f;
        type = CUDA_R_16BF;
        compute = CUBLAS_COMPUTE_32F;
        what = "cublasGemmStridedBatchedEx (bfloat16)";
    }
    /* Column-major C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m). */
    cublasStatus_t s = blas.gemm(
        h, opb, opa, (int)n, (int)m, (int)k, palpha, tensor_data(B), type, (int)ldb,
        (long long)sb, tensor_data(A), type, (int)lda, (long long)sa, pbeta, tensor_data(C), type,
        (int)ldc, (long long)sc, (int)batch, compute, CUBLAS_GEMM_DEFAULT);
    return blas_check(s, what);
}
