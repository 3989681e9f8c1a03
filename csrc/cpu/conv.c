/* 2-D convolution on the CPU: float32 through oneDNN, float64 (used by gradient
 * checks) through direct loops. Weights are contiguous [OC, C/groups, KH, KW];
 * float32 activations are NCHW or channels-last, float64 ones contiguous NCHW. */
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "cpu.h"
#include "dnnl_ctx.h"

/* --- the float32 path: oneDNN --- */

typedef enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHTS } conv_kind;

/* The descriptors of one convolution. `user` holds the tensors' own layouts
 * (activations NCHW or channels-last, weights [O,I,H,W], grouped [G,O/G,I/G,H,W]);
 * the `want` ones are what the primitive is built for: channels-last activations,
 * which oneDNN's fastest kernels read and write directly, and weights in the
 * layout it chooses. The geometry is in oneDNN's terms: dilation counts the gaps,
 * and the right/bottom padding is whatever yields the op's output size. */
typedef struct {
    dnnl_memory_desc_t src, wei, dst, bias;
    dnnl_memory_desc_t want_src, want_wei, want_dst;
    dnnl_dims_t strides, dil, pl, pr;
} conv_desc;

/* A float32 activation as it is laid out (its strides). */
static int md_strided(dnnl_memory_desc_t *md, const tensor *t)
{
    dnnl_dims_t dims, strides;
    for (int i = 0; i < 4; i++) {
        dims[i] = t->shape[i];
        strides[i] = t->stride[i];
    }
    return dnnl_ctx_check(dnnl_memory_desc_init_by_strides(md, 4, dims, dnnl_f32, strides),
                          "conv2d", "memory descriptor");
}

static int md_tag(dnnl_memory_desc_t *md, const dnnl_memory_desc_t *like, dnnl_format_tag_t tag)
{
    return dnnl_ctx_check(dnnl_memory_desc_init_by_tag(md, like->ndims, like->dims, dnnl_f32, tag),
                          "conv2d", "memory descriptor");
}

static int conv_describe(conv_desc *d, const tensor *x, const tensor *w, const tensor *y,
                         const conv2d_params *p)
{
    int64_t g = p->groups;
    int64_t wshape[5] = {g, w->shape[0] / g, w->shape[1], w->shape[2], w->shape[3]};
    if (md_strided(&d->src, x) != 0 || md_strided(&d->dst, y) != 0 ||
        (g == 1 ? dnnl_ctx_md(&d->wei, DT_F32, 4, w->shape, "conv2d")
                : dnnl_ctx_md(&d->wei, DT_F32, 5, wshape, "conv2d")) != 0 ||
        dnnl_ctx_md(&d->bias, DT_F32, 1, w->shape, "conv2d") != 0 ||
        md_tag(&d->want_src, &d->src, dnnl_nhwc) != 0 ||
        md_tag(&d->want_wei, &d->wei, dnnl_format_tag_any) != 0 ||
        md_tag(&d->want_dst, &d->dst, dnnl_nhwc) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        int64_t ext = (w->shape[2 + i] - 1) * p->dilation[i] + 1;
        d->strides[i] = p->stride[i];
        d->dil[i] = p->dilation[i] - 1;
        d->pl[i] = p->padding[i];
        d->pr[i] = (y->shape[2 + i] - 1) * p->stride[i] + ext - x->shape[2 + i] - p->padding[i];
    }
    return 0;
}

/* The forward primitive descriptor (also the hint the backward ones need). */
static dnnl_primitive_desc_t conv_fwd_pd(const conv_desc *d, bool bias)
{
    dnnl_engine_t eng = dnnl_ctx_engine("conv2d");
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    if (!eng)
        return NULL;
    dnnl_status_t s = dnnl_dilated_convolution_forward_desc_init(
        &cd, dnnl_forward_training, dnnl_convolution_direct, &d->want_src, &d->want_wei,
        bias ? &d->bias : NULL, &d->want_dst, d->strides, d->dil, d->pl, d->pr);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL);
    return dnnl_ctx_check(s, "conv2d", "forward descriptor") == 0 ? pd : NULL;
}

/* The primitive descriptor of `kind`, made with the forward one as its hint. */
static dnnl_primitive_desc_t conv_pd(conv_kind kind, const conv_desc *d, bool bias,
                                     const_dnnl_primitive_desc_t fwd)
{
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s;
    if (kind == CONV_BWD_DATA)
        s = dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct,
                                                             &d->want_src, &d->want_wei,
                                                             &d->want_dst, d->strides, d->dil,
                                                             d->pl, d->pr);
    else
        s = dnnl_dilated_convolution_backward_weights_desc_init(
            &cd, dnnl_convolution_direct, &d->want_src, &d->want_wei, bias ? &d->bias : NULL,
            &d->want_dst, d->strides, d->dil, d->pl, d->pr);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&pd, &cd, NULL, dnnl_ctx_engine("conv2d"), fwd);
    return dnnl_ctx_check(s, "conv2d", "backward descriptor") == 0 ? pd : NULL;
}

/* One argument of the convolution in our layout; `out` marks the ones it writes. */
typedef struct {
    int arg;
    const dnnl_memory_desc_t *user;
    void *data;
    bool out;
} conv_arg;

/* Copy between layouts with a oneDNN reorder. */
static int reorder(const dnnl_memory_desc_t *from, void *src, const dnnl_memory_desc_t *to,
                   void *dst)
{
    dnnl_engine_t eng = dnnl_ctx_engine("conv2d");
    dnnl_primitive_desc_t pd = NULL;
    if (!eng || dnnl_ctx_check(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL),
                               "conv2d", "reorder descriptor") != 0)
        return -1;
    dnnl_ctx_arg args[2] = {{DNNL_ARG_FROM, from, src}, {DNNL_ARG_TO, to, dst}};
    int rc = dnnl_ctx_execute(pd, 2, args, "conv2d");
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Run pd on our buffers: arguments whose layout differs from the one pd chose go
 * through a temporary buffer in that layout (inputs reordered in, outputs out). */
static int conv_execute(const_dnnl_primitive_desc_t pd, int nargs, const conv_arg *args)
{
    dnnl_ctx_arg exec[4];
    void *tmp[4] = {NULL};
    int rc = 0;
    for (int i = 0; i < nargs && rc == 0; i++) {
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md,
                                                                      args[i].arg);
        exec[i] = (dnnl_ctx_arg){args[i].arg, args[i].user, args[i].data};
        if (!want || dnnl_memory_desc_equal(want, args[i].user))
            continue;
        size_t bytes = dnnl_memory_desc_get_size(want);
        tmp[i] = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!tmp[i]) {
            rc = err_set("conv2d: out of memory for a %zu-byte layout buffer", bytes);
            break;
        }
        exec[i] = (dnnl_ctx_arg){args[i].arg, want, tmp[i]};
        if (!args[i].out)
            rc = reorder(args[i].user, args[i].data, want, tmp[i]);
    }
    if (rc == 0)
        rc = dnnl_ctx_execute(pd, nargs, exec, "conv2d");
    for (int i = 0; i < nargs; i++) {
        if (rc == 0 && tmp[i] && args[i].out)
            rc = reorder(exec[i].md, tmp[i], args[i].user, args[i].data);
        free(tmp[i]);
    }
    return rc;
}

/* The rows and columns at the bottom and right of x that no output reads (a
 * stride that does not fit the input exactly: 1x1 stride 2 on an even size),
 * which oneDNN would see as negative padding. Its 1x1 weight-gradient kernel
 * writes out of bounds with negative padding (oneDNN 2.6, found under
 * AddressSanitizer), so those rows and columns are cut off instead. */
static void unread_edges(const tensor *x, const tensor *w, const tensor *y,
                         const conv2d_params *p, int64_t cut[2])
{
    for (int i = 0; i < 2; i++) {
        int64_t ext = (w->shape[2 + i] - 1) * p->dilation[i] + 1;
        int64_t pr = (y->shape[2 + i] - 1) * p->stride[i] + ext - x->shape[2 + i] - p->padding[i];
        cut[i] = pr < 0 ? -pr : 0;
    }
}

/* x without its last cut[0] rows and cut[1] columns (a view). */
static tensor *cut_edges(const tensor *x, const int64_t cut[2])
{
    int64_t shape[4] = {x->shape[0], x->shape[1], x->shape[2] - cut[0], x->shape[3] - cut[1]};
    return tensor_as_strided(x, 4, shape, x->stride, x->offset);
}

static int conv_onednn_run(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                           const tensor *b, const conv2d_params *p);

/* Describe, make the primitive descriptor of `kind`, and run it. For the forward
 * pass (x, w, y, b) are (input, weights, output, bias); for the backward passes
 * the gradients stand in their places. */
static int conv_onednn(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                       const tensor *b, const conv2d_params *p)
{
    int64_t cut[2];
    unread_edges(x, w, y, p, cut);
    if (cut[0] == 0 && cut[1] == 0)
        return conv_onednn_run(kind, x, w, y, b, p);
    /* the input gradient of the cut rows and columns is 0 */
    if (kind == CONV_BWD_DATA && cpu_fill((tensor *)x, 0.0) != 0)
        return -1;
    tensor *xc = cut_edges(x, cut);
    int rc = xc ? conv_onednn_run(kind, xc, w, y, b, p) : -1;
    tensor_decref(xc);
    return rc;
}

static int conv_onednn_run(conv_kind kind, const tensor *x, const tensor *w, const tensor *y,
                           const tensor *b, const conv2d_params *p)
{
    conv_desc d;
    if (conv_describe(&d, x, w, y, p) != 0)
        return -1;
    dnnl_primitive_desc_t fwd = conv_fwd_pd(&d, kind != CONV_BWD_DATA && b != NULL);
    if (!fwd)
        return -1;
    dnnl_primitive_desc_t pd = kind == CONV_FWD ? fwd : conv_pd(kind, &d, b != NULL, fwd);
    int rc = -1;
    if (pd) {
        conv_arg args[4] = {
            {kind == CONV_BWD_DATA ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC, &d.src, tensor_data(x),
             kind == CONV_BWD_DATA},
            {kind == CONV_BWD_WEIGHTS ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS, &d.wei,
             tensor_data(w), kind == CONV_BWD_WEIGHTS},
            {kind == CONV_FWD ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST, &d.dst, tensor_data(y),
             kind == CONV_FWD},
            {kind == CONV_FWD ? DNNL_ARG_BIAS : DNNL_ARG_DIFF_BIAS, &d.bias,
             b ? tensor_data(b) : NULL, kind != CONV_FWD},
        };
        rc = conv_execute(pd, b ? 4 : 3, args);
    }
    if (pd && pd != fwd)
        dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(fwd);
    return rc;
}

/* --- the float64 path: direct loops --- */

/* Visit every (input pixel, weight, output pixel) triple of the convolution and
 * let `op` combine them: one loop nest serves the three directions. */
typedef enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_WEIGHTS } conv_dir;

static void conv_f64(conv_dir dir, double *x, double *wt, double *y, int64_t n, int64_t c,
                     int64_t h, int64_t w, int64_t oc, int64_t oh, int64_t ow, int64_t kh,
                     int64_t kw, const conv2d_params *p)
{
    int64_t g = p->groups, cg = c / g, og = oc / g;
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < oc; o++) {
            int64_t grp = o / og;
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double *yp = &y[((b * oc + o) * oh + i) * ow + j];
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t u = 0; u < kh; u++) {
                            int64_t hi = i * p->stride[0] - p->padding[0] + u * p->dilation[0];
                            if (hi < 0 || hi >= h)
                                continue;
                            for (int64_t v = 0; v < kw; v++) {
                                int64_t wi = j * p->stride[1] - p->padding[1] + v * p->dilation[1];
                                if (wi < 0 || wi >= w)
                                    continue;
                                double *xp = &x[((b * c + grp * cg + ci) * h + hi) * w + wi];
                                double *wp = &wt[((o * cg + ci) * kh + u) * kw + v];
                                if (dir == DIR_FWD)
                                    *yp += *xp * *wp;
                                else if (dir == DIR_BWD_DATA)
                                    *xp += *yp * *wp;
                                else
                                    *wp += *yp * *xp;
                            }
                        }
                }
        }
}

/* --- kernels --- */

static int conv_forward(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                        const conv2d_params *p)
{
    if (conv_point_applies(x, w, y, p))
        return conv_point_forward(y, x, w, b, p);
    if (x->dtype == DT_F32)
        return conv_onednn(CONV_FWD, x, w, y, b, p);
    int64_t oc = w->shape[0], plane = y->shape[2] * y->shape[3];
    double *yd = tensor_data(y);
    for (int64_t i = 0; i < tensor_numel(y); i++)
        yd[i] = b ? ((const double *)tensor_data(b))[(i / plane) % oc] : 0.0;
    conv_f64(DIR_FWD, tensor_data(x), tensor_data(w), yd, x->shape[0], x->shape[1],
             x->shape[2], x->shape[3], oc, y->shape[2], y->shape[3], w->shape[2], w->shape[3], p);
    return 0;
}

/* (p->relu: the relu in place after, as the separate op computes it) */
int cpu_conv2d(tensor *y, const tensor *x, const tensor *w, const tensor *b,
               const conv2d_params *p)
{
    int rc = conv_forward(y, x, w, b, p);
    return rc == 0 && p->relu ? cpu_unary(UN_RELU, y, y, 0, 0) : rc;
}

int cpu_conv2d_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                             const conv2d_params *p)
{
    if (conv_point_applies(gx, w, gy, p))
        return conv_point_backward_data(gx, gy, w, p);
    if (gx->dtype == DT_F32)
        return conv_onednn(CONV_BWD_DATA, gx, w, gy, NULL, p);
    memset(tensor_data(gx), 0, sizeof(double) * (size_t)tensor_numel(gx));
    conv_f64(DIR_BWD_DATA, tensor_data(gx), tensor_data(w), tensor_data(gy), gx->shape[0],
             gx->shape[1], gx->shape[2], gx->shape[3], w->shape[0], gy->shape[2], gy->shape[3],
             w->shape[2], w->shape[3], p);
    return 0;
}

int cpu_conv2d_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                               const conv2d_params *p)
{
    if (conv_point_applies(x, gw, gy, p))
        return conv_point_backward_weight(gw, gb, x, gy, p);
    if (x->dtype == DT_F32)
        return conv_onednn(CONV_BWD_WEIGHTS, x, gw, gy, gb, p);
    memset(tensor_data(gw), 0, sizeof(double) * (size_t)tensor_numel(gw));
    conv_f64(DIR_BWD_WEIGHTS, tensor_data(x), tensor_data(gw), tensor_data(gy), x->shape[0],
             x->shape[1], x->shape[2], x->shape[3], gw->shape[0], gy->shape[2], gy->shape[3],
             gw->shape[2], gw->shape[3], p);
    if (gb) {
        int64_t oc = gy->shape[1], plane = gy->shape[2] * gy->shape[3];
        double *gbd = tensor_data(gb);
        const double *g = tensor_data(gy);
        memset(gbd, 0, sizeof(double) * (size_t)oc);
        for (int64_t i = 0; i < tensor_numel(gy); i++)
            gbd[(i / plane) % oc] += g[i];
    }
    return 0;
}
