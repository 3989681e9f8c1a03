/* The emulated GPU's stand-ins for the libraries (make EMU=1): cuBLAS's matrix
 * products and cuDNN's convolutions run as the CPU's (device memory is host memory
 * in the fake runtime), so the ops built on them work there and the specs can
 * check everything around them; the libraries themselves are checked on a GPU. */
#include "../../csrc/cpu/cpu.h"
#include "../../csrc/cuda/kernels.h"

int cuda_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
              double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
              int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc)
{
    return cpu_gemm(dt, batch, ta, tb, m, n, k, alpha, A, sa, lda, B, sb, ldb, beta, C, sc, ldc);
}

int cuda_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                const conv2d_params *p)
{
    return cpu_conv2d(y, x, w, b, p);
}

int cuda_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                              const conv2d_params *p)
{
    return cpu_conv2d_backward_data(gx, gy, w, p);
}

int cuda_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                const conv2d_params *p)
{
    return cpu_conv2d_backward_weight(gw, gb, x, gy, p);
}
