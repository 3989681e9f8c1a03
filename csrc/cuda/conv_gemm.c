/* 2-D convolution on the GPU as im2col + cuBLAS (see conv_gemm.h; twin:
 * csrc/cpu/conv.c). Image by image: its columns (kernels/im2col.cu) times the
 * weights, one strided-batched product over the groups. Row-major views:
 * w is [G, O/G, K] with K = C/G * kh * kw, an image's columns [G, K, L] with
 * L = oh * ow, an image of y (or gy) [G, O/G, L]. */
#include "conv_gemm.h"

#include "../error.h"
#include "conv_bias.h"
#include "kernels.h"

typedef struct {
    im2col_geom g;
    int64_t groups, og, k, l; /* O/G, K, L as above */
} gemm_shape;

/* The geometry of a convolution of x ([N, C, H, W]) with w into an output of
 * oh x ow. */
static gemm_shape shape_of(const tensor *x, const tensor *w, int64_t oh, int64_t ow,
                           const conv2d_params *p)
{
    gemm_shape s = {.groups = p->groups};
    im2col_geom *g = &s.g;
    g->c = x->shape[1], g->h = x->shape[2], g->w = x->shape[3];
    g->sc = x->stride[1], g->sh = x->stride[2], g->sw = x->stride[3];
    g->kh = w->shape[2], g->kw = w->shape[3], g->oh = oh, g->ow = ow;
    for (int i = 0; i < 2; i++) {
        g->stride[i] = p->stride[i];
        g->padding[i] = p->padding[i];
        g->dilation[i] = p->dilation[i];
    }
    s.og = w->shape[0] / p->groups;
    s.k = g->c / p->groups * g->kh * g->kw;
    s.l = oh * ow;
    return s;
}

/* Image n of the contiguous 4-D t, as a [rows, cols] view. */
static tensor *image(const tensor *t, int64_t n, int64_t rows, int64_t cols)
{
    int64_t shape[2] = {rows, cols}, stride[2] = {cols, 1};
    return tensor_as_strided(t, 2, shape, stride, t->offset + n * t->stride[0]);
}

/* t itself when contiguous (a new reference), else an uninitialised contiguous
 * tensor of its shape, which the caller copies into t at the end. */
static tensor *contiguous_out(tensor *t)
{
    return tensor_is_contiguous(t) ? tensor_incref(t)
                                   : tensor_empty(t->dtype, t->ndim, t->shape, tensor_device(t));
}

/* The columns buffer of one image. */
static tensor *columns(const gemm_shape *s, const tensor *like)
{
    int64_t shape[2] = {s->groups * s->k, s->l};
    return tensor_empty(like->dtype, 2, shape, tensor_device(like));
}

int cuda_conv2d_gemm(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                     const conv2d_params *p)
{
    gemm_shape s = shape_of(x, w, y->shape[2], y->shape[3], p);
    tensor *wc = tensor_contiguous((tensor *)w), *yc = contiguous_out(y);
    tensor *col = wc && yc ? columns(&s, x) : NULL;
    int rc = col ? 0 : -1;
    for (int64_t n = 0; rc == 0 && n < x->shape[0]; n++) {
        tensor *yn = image(yc, n, s.groups * s.og, s.l);
        rc = yn ? cuda_im2col(col, x, n, &s.g) : -1;
        if (rc == 0) /* y[g] = w[g] col[g] */
            rc = cuda_gemm(x->dtype, s.groups, false, false, s.og, s.l, s.k, 1.0, wc, s.og * s.k,
                           s.k, col, s.k * s.l, s.l, 0.0, yn, s.og * s.l, s.l);
        tensor_decref(yn);
    }
    if (rc == 0 && yc != y)
        rc = tensor_copy_into(y, yc);
    if (rc == 0 && b)
        rc = cuda_conv_bias_add(y, b);
    tensor_decref(col);
    tensor_decref(yc);
    tensor_decref(wc);
    return rc == 0 ? 0 : err_prefix("conv2d (im2col + cuBLAS)");
}

int cuda_conv2d_backward_data_gemm(tensor *gx, const tensor *gy, const tensor *w,
                                   const conv2d_params *p)
{
    gemm_shape s = shape_of(gx, w, gy->shape[2], gy->shape[3], p);
    tensor *wc = tensor_contiguous((tensor *)w), *gyc = tensor_contiguous((tensor *)gy);
    tensor *col = wc && gyc ? columns(&s, gx) : NULL;
    int rc = col ? 0 : -1;
    for (int64_t n = 0; rc == 0 && n < gx->shape[0]; n++) {
        tensor *gyn = image(gyc, n, s.groups * s.og, s.l);
        rc = gyn ? 0 : -1;
        if (rc == 0) /* col[g] = w[g]^T gy[g] */
            rc = cuda_gemm(gx->dtype, s.groups, true, false, s.k, s.l, s.og, 1.0, wc, s.og * s.k,
                           s.k, gyn, s.og * s.l, s.l, 0.0, col, s.k * s.l, s.l);
        if (rc == 0)
            rc = cuda_col2im(gx, n, col, &s.g);
        tensor_decref(gyn);
    }
    tensor_decref(col);
    tensor_decref(gyc);
    tensor_decref(wc);
    return rc == 0 ? 0 : err_prefix("conv2d backward (input gradient, im2col + cuBLAS)");
}

int cuda_conv2d_backward_weight_gemm(tensor *gw, const tensor *x, const tensor *gy,
                                     const conv2d_params *p)
{
    gemm_shape s = shape_of(x, gw, gy->shape[2], gy->shape[3], p);
    tensor *gyc = tensor_contiguous((tensor *)gy), *gwc = contiguous_out(gw);
    tensor *col = gyc && gwc ? columns(&s, x) : NULL;
    int rc = col ? 0 : -1;
    for (int64_t n = 0; rc == 0 && n < x->shape[0]; n++) {
        tensor *gyn = image(gyc, n, s.groups * s.og, s.l);
        rc = gyn ? cuda_im2col(col, x, n, &s.g) : -1;
        if (rc == 0) /* gw[g] (+)= gy[g] col[g]^T */
            rc = cuda_gemm(x->dtype, s.groups, false, true, s.og, s.k, s.l, 1.0, gyn, s.og * s.l,
                           s.l, col, s.k * s.l, s.l, n == 0 ? 0.0 : 1.0, gwc, s.og * s.k, s.k);
        tensor_decref(gyn);
    }
    if (rc == 0 && gwc != gw)
        rc = tensor_copy_into(gw, gwc);
    tensor_decref(col);
    tensor_decref(gwc);
    tensor_decref(gyc);
    return rc == 0 ? 0 : err_prefix("conv2d backward (weight gradient, im2col + cuBLAS)");
}
