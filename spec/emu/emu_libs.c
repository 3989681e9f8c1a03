/* The emulated GPU's stand-in for cuDNN (make EMU=1): convolutions run as the
 * CPU's (device memory is host memory in the fake runtime), so the ops built on
 * them work there and the specs can check everything around them; cuDNN itself is
 * checked on a GPU. (cuBLAS is faked closer to the library: spec/emu/fake_cublas.c.)
 * Inside a CUDA graph capture a call becomes a node of the graph (holding its
 * tensors) that each replay runs, as a library's kernels would be captured.
 *
 * bf16 autocast (miles.cuda.autocast) is emulated as the libraries do it, with our
 * conversion kernels (kernels/convert.cu): the float32 inputs rounded to bf16
 * (products of bf16 values are exact in float32; only the order of the sums
 * differs from tensor cores), a convolution's output rounded to bf16 too (cuDNN
 * writes it in bf16) and its bias added in float32 after. */
#include <stdlib.h>

#include "../../csrc/cpu/cpu.h"
#include "../../csrc/cuda/conv_bias.h"
#include "../../csrc/cuda/convert.h"
#include "../../csrc/cuda/cuda_ctx.h"
#include "../../csrc/cuda/kernels.h"
#include "../../csrc/error.h"
#include "../c/fake_cudart.h"

typedef enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHT } lib_op;

/* One call's arguments, kept for a graph node. */
typedef struct {
    lib_op op;
    tensor *t[4]; /* the call's tensors (new references; NULL where none) */
    conv2d_params p;
} lib_call;

static int run_call(const lib_call *c)
{
    switch (c->op) {
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

/* Round the n float32 values from t's first element on to bf16, in place. */
static int round_bf16(tensor *t, int64_t n)
{
    void *b = cuda_bf16_copy(t, n);
    int rc = b ? cuda_bf16_to_f32(tensor_device(t), tensor_data(t), b, n) : -1;
    cuda_bf16_free(tensor_device(t), b, n);
    return rc;
}

/* A float32 copy of t (its layout when dense) with its values rounded to bf16. */
static tensor *rounded(const tensor *t)
{
    tensor *c = tensor_empty_like(t, DT_F32);
    if (!c || tensor_copy_into(c, t) != 0 || round_bf16(c, tensor_numel(c)) != 0) {
        tensor_decref(c);
        return NULL;
    }
    return c;
}

static bool autocast(dtype_t dt, const tensor *on)
{
    return dt == DT_F32 && cuda_get_bf16() && !cuda_ctx_capturing(tensor_device(on).index);
}

/* A convolution under autocast: inputs in (their places in c.t) rounded, the
 * output c.t[0] rounded after. */
static int conv_autocast(lib_call c, int in0, int in1)
{
    tensor *r0 = rounded(c.t[in0]), *r1 = r0 ? rounded(c.t[in1]) : NULL;
    c.t[in0] = r0;
    c.t[in1] = r1;
    int rc = r1 ? run_call(&c) : -1;
    tensor_decref(r0);
    tensor_decref(r1);
    if (rc == 0 && c.t[0]) {
        tensor *out = c.t[0];
        tensor *o = tensor_is_dense(out) ? tensor_incref(out) : NULL;
        rc = o ? round_bf16(o, tensor_numel(o)) : err_set("emulated autocast: a non-dense output");
        tensor_decref(o);
    }
    return rc;
}

int cuda_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                const conv2d_params *p)
{
    lib_call c = {.op = CONV_FWD, .t = {y, (tensor *)x, (tensor *)w, (tensor *)b}, .p = *p};
    if (!autocast(y->dtype, y))
        return run_or_capture(c, y);
    c.t[3] = NULL; /* the bias goes to the float32 output */
    int rc = conv_autocast(c, 1, 2);
    return rc == 0 && b ? cuda_conv_bias_add(y, b) : rc;
}

int cuda_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                              const conv2d_params *p)
{
    lib_call c = {.op = CONV_BWD_DATA, .t = {gx, (tensor *)gy, (tensor *)w, NULL}, .p = *p};
    return autocast(gx->dtype, gx) ? conv_autocast(c, 1, 2) : run_or_capture(c, gx);
}

int cuda_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                                const conv2d_params *p)
{
    lib_call c = {.op = CONV_BWD_WEIGHT, .t = {gw, gb, (tensor *)x, (tensor *)gy}, .p = *p};
    if (!autocast(gw->dtype, gw))
        return run_or_capture(c, gw);
    c.t[1] = NULL; /* the bias gradient from the float32 gy */
    int rc = conv_autocast(c, 2, 3);
    return rc == 0 && gb ? cuda_conv_bias_grad(gb, gy) : rc;
}
