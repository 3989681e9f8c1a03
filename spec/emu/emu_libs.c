/* The emulated GPU's stand-ins for the libraries (make EMU=1): cuBLAS's matrix
 * products and cuDNN's convolutions run as the CPU's (device memory is host memory
 * in the fake runtime), so the ops built on them work there and the specs can
 * check everything around them; the libraries themselves are checked on a GPU.
 * Inside a CUDA graph capture a call becomes a node of the graph (holding its
 * tensors) that each replay runs, as a library's kernels would be captured. */
#include <stdlib.h>

#include "../../csrc/cpu/cpu.h"
#include "../../csrc/cuda/cuda_ctx.h"
#include "../../csrc/cuda/kernels.h"
#include "../c/fake_cudart.h"

typedef enum { GEMM, CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHT } lib_op;

/* One call's arguments, kept for a graph node. */
typedef struct {
    lib_op op;
    tensor *t[4]; /* the call's tensors (new references; NULL where none) */
    dtype_t dt;
    int64_t batch, m, n, k, sa, lda, sb, ldb, sc, ldc;
    bool ta, tb;
    double alpha, beta;
    conv2d_params p;
} lib_call;

static int run_call(const lib_call *c)
{
    switch (c->op) {
    case GEMM:
        return cpu_gemm(c->dt, c->batch, c->ta, c->tb, c->m, c->n, c->k, c->alpha, c->t[0],
                        c->sa, c->lda, c->t[1], c->sb, c->ldb, c->beta, c->t[2], c->sc, c->ldc);
    case CONV_FWD: return cpu_conv2d(c->t[0], c->t[1], c->t[2], c->t[3], &c->p);
    case CONV_BWD_DATA: return cpu_conv2d_backward_data(c->t[0], c->t[1], c->t[2], &c->p);
    case CONV_BWD_WEIGHT:
        return cpu_conv2d_backward_weight(c->t[0], c->t[1], c->t[2], c->t[3], &c->p);
    }
    return -1;
}

static void replay(void *ctx)
{
    run_call(ctx);
}

static void drop(void *ctx)
{
    lib_call *c = ctx;
    for (int i = 0; i < 4; i++)
        tensor_decref(c->t[i]);
    free(c);
}

/* Run the call now, or, while its GPU is captured, make it a graph node. */
static int run_or_capture(lib_call c, const tensor *on)
{
    cudaStream_t s = cuda_ctx_stream(tensor_device(on).index);
    if (!s)
        return -1;
    if (!cuda_ctx_capturing(tensor_device(on).index))
        return run_call(&c);
    lib_call *kept = malloc(sizeof *kept);
    if (!kept)
        return -1;
    *kept = c;
    for (int i = 0; i < 4; i++)
        tensor_incref(kept->t[i]);
    return fake_capture_closure(s, (const void *)run_call, 1, replay, kept, drop) == 0 ? 0 : -1;
}

int cuda_gemm(dtype_t dt, int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
              double alpha, const tensor *A, int64_t sa, int64_t lda, const tensor *B,
              int64_t sb, int64_t ldb, double beta, tensor *C, int64_t sc, int64_t ldc)
{
    return run_or_capture((lib_call){.op = GEMM, .t = {(tensor *)A, (tensor *)B, C, NULL},
                                     .dt = dt, .batch = batch, .ta = ta, .tb = tb, .m = m,
                                     .n = n, .k = k, .alpha = alpha, .sa = sa, .lda = lda,
                                     .sb = sb, .ldb = ldb, .beta = beta, .sc = sc, .ldc = ldc},
                          C);
}

int cuda_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                const conv2d_params *p)
{
    return run_or_capture(
        (lib_call){.op = CONV_FWD, .t = {y, (tensor *)x, (tensor *)w, (tensor *)b}, .p = *p}, y);
}

int cuda_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                              const conv2d_params *p)
{
    return run_or_capture(
        (lib_call){.op = CONV_BWD_DATA, .t = {gx, (tensor *)gy, (tensor *)w, NULL}, .p = *p},
        gx);
}

int cuda_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                const conv2d_params *p)
{
    return run_or_capture(
        (lib_call){.op = CONV_BWD_WEIGHT, .t = {gw, gb, (tensor *)x, (tensor *)gy}, .p = *p},
        gw);
}
