/* Matrix products on the CPU through OpenBLAS. */
#include <cblas.h>

#include "cpu.h"
#include "../error.h"

int cpu_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
             double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
             int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc)
{
    const int64_t dims[] = {m, n, k, lda, ldb, ldc};
    for (int i = 0; i < 6; i++)
        if (dims[i] > INT32_MAX)
            return err_set("matmul: a size of %lld is beyond OpenBLAS's 32-bit int arguments",
                           (long long)dims[i]);
    enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE opb = tb ? CblasTrans : CblasNoTrans;
    for (int64_t b = 0; b < batch; b++) {
        if (dt == DT_F32) {
            const float *a = (const float *)tensor_data(A) + b * sa;
            const float *bb = (const float *)tensor_data(B) + b * sb;
            float *c = (float *)tensor_data(C) + b * sc;
            cblas_sgemm(CblasRowMajor, opa, opb, (blasint)m, (blasint)n, (blasint)k,
                        (float)alpha, a, (blasint)lda, bb, (blasint)ldb, (float)beta, c,
                        (blasint)ldc);
        } else {
            const double *a = (const double *)tensor_data(A) + b * sa;
            const double *bb = (const double *)tensor_data(B) + b * sb;
            double *c = (double *)tensor_data(C) + b * sc;
            cblas_dgemm(CblasRowMajor, opa, opb, (blasint)m, (blasint)n, (blasint)k, alpha,
                        a, (blasint)lda, bb, (blasint)ldb, beta, c, (blasint)ldc);
        }
    }
    return 0;
}
