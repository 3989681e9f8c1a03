/* 2-D pooling on the CPU: max, average and adaptive average over NCHW planes.
 *
 * One path per dtype. float32 goes through oneDNN's pooling_v2 primitives (max
 * pooling keeps oneDNN's forward workspace for its backward). float64, which oneDNN
 * does not support on the CPU and which the gradient checks use, goes through the
 * plain loops below, written for clarity rather than speed; their max pooling
 * workspace is an int64 tensor of the position of each maximum in its plane.
 * One exception: average pooling with count_include_pad whose last window
 * overhangs the padding (ceil_mode) divides by the window clipped to the padded
 * input in PyTorch, but by the whole kernel in oneDNN, so it takes the loops in
 * float32 too. Adaptive average pooling is plain loops for both dtypes.
 *
 * Layouts: float32 tensors may come channels-last (a convolution's output); oneDNN
 * reads and writes that layout directly, and so does the 1x1 adaptive case; the
 * other loops see contiguous copies (on_contiguous). */
#include <math.h>
#include <string.h>

#include "../error.h"
#include "cpu.h"
#include "dnnl_ctx.h"
#include "iter.h"

/* Work below this many input elements runs on one thread. */
#define POOL_PARALLEL_MIN 32768

/* Threads for a loop over `planes` planes of `per_plane` elements each. */
static int pool_threads(int64_t planes, int64_t per_plane)
{
    return planes >= 2 && planes * per_plane >= POOL_PARALLEL_MIN ? cpu_num_threads() : 1;
}

/* --- oneDNN (float32) --- */

/* oneDNN's pooling arrays; oneDNN counts dilation as the elements skipped. */
typedef struct {
    dnnl_dims_t strides, kernel, dilation, pad_l, pad_r;
} dnnl_window;

/* p's window in oneDNN's terms. */
static dnnl_window window_of(const pool2d_params *p)
{
    dnnl_window w = {
        .strides = {p->sh, p->sw},
        .kernel = {p->kh, p->kw},
        .dilation = {p->dh - 1, p->dw - 1},
        .pad_l = {p->pad_t, p->pad_l},
        .pad_r = {p->pad_b, p->pad_r},
    };
    return w;
}

/* Descriptors of the input side (x or gin) and output side (out or gout) as they
 * are laid out: NCHW or channels-last, which oneDNN's kernels read directly. */
static int side_mds(dnnl_memory_desc_t *src, dnnl_memory_desc_t *dst, const tensor *in,
                    const tensor *out, const char *op)
{
    if (dnnl_ctx_tensor_md(src, in, op) != 0)
        return -1;
    return dnnl_ctx_tensor_md(dst, out, op);
}

/* The forward primitive descriptor of a pooling (also the hint of its backward);
 * in and out give the layouts. */
static int forward_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg, dnnl_prop_kind_t prop,
                      const tensor *in, const tensor *out, const pool2d_params *p,
                      const char *op)
{
    dnnl_memory_desc_t src, dst;
    dnnl_engine_t eng = dnnl_ctx_engine(op);
    if (!eng || side_mds(&src, &dst, in, out, op) != 0)
        return -1;
    dnnl_window w = window_of(p);
    dnnl_pooling_v2_desc_t d;
    dnnl_status_t st = dnnl_pooling_v2_forward_desc_init(&d, prop, alg, &src, &dst, w.strides,
                                                         w.kernel, w.dilation, w.pad_l, w.pad_r);
    if (dnnl_ctx_check(st, op, "pooling descriptor") != 0)
        return -1;
    return dnnl_ctx_check(dnnl_primitive_desc_create(pd, &d, NULL, eng, NULL), op,
                          "pooling primitive descriptor");
}

/* The backward primitive descriptor, made with the forward one as its hint. */
static int backward_pd(dnnl_primitive_desc_t *pd, const_dnnl_primitive_desc_t fwd,
                       dnnl_alg_kind_t alg, const tensor *gin, const tensor *gout,
                       const pool2d_params *p, const char *op)
{
    dnnl_memory_desc_t src, dst;
    dnnl_engine_t eng = dnnl_ctx_engine(op);
    if (!eng || side_mds(&src, &dst, gin, gout, op) != 0)
        return -1;
    dnnl_window w = window_of(p);
    dnnl_pooling_v2_desc_t d;
    dnnl_status_t st = dnnl_pooling_v2_backward_desc_init(&d, alg, &src, &dst, w.strides,
                                                          w.kernel, w.dilation, w.pad_l, w.pad_r);
    if (dnnl_ctx_check(st, op, "pooling backward descriptor") != 0)
        return -1;
    return dnnl_ctx_check(dnnl_primitive_desc_create(pd, &d, NULL, eng, fwd), op,
                          "pooling backward primitive descriptor");
}

/* The descriptor pd expects for one of its arguments. */
static const dnnl_memory_desc_t *query_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* Forward pooling in oneDNN; for max pooling *ws receives the workspace (bytes). */
static int dnnl_pool_forward(dnnl_alg_kind_t alg, tensor *out, tensor **ws, const tensor *x,
                             const pool2d_params *p, const char *op)
{
    dnnl_primitive_desc_t pd;
    dnnl_prop_kind_t prop = ws ? dnnl_forward_training : dnnl_forward_inference;
    if (forward_pd(&pd, alg, prop, x, out, p, op) != 0)
        return -1;
    dnnl_ctx_arg args[3] = {
        {DNNL_ARG_SRC, query_md(pd, dnnl_query_src_md), tensor_data(x)},
        {DNNL_ARG_DST, query_md(pd, dnnl_query_dst_md), tensor_data(out)},
    };
    int nargs = 2, rc = 0;
    if (ws) {
        const dnnl_memory_desc_t *wmd = query_md(pd, dnnl_query_workspace_md);
        int64_t nbytes = (int64_t)dnnl_memory_desc_get_size(wmd);
        *ws = tensor_empty(DT_U8, 1, &nbytes, DEVICE_CPU);
        rc = *ws ? 0 : -1;
        args[nargs++] = (dnnl_ctx_arg){DNNL_ARG_WORKSPACE, wmd, *ws ? tensor_data(*ws) : NULL};
    }
    if (rc == 0)
        rc = dnnl_ctx_execute(pd, nargs, args, op);
    dnnl_primitive_desc_destroy(pd);
    if (rc != 0 && ws) {
        tensor_decref(*ws);
        *ws = NULL;
    }
    return rc;
}

/* Backward pooling in oneDNN: gin from gout (and max pooling's workspace). gin and
 * gout have the layouts of the forward's x and out, so the forward primitive
 * descriptor made again here picks the same kernel and workspace format. */
static int dnnl_pool_backward(dnnl_alg_kind_t alg, tensor *gin, const tensor *gout,
                              const tensor *ws, const pool2d_params *p, const char *op)
{
    dnnl_primitive_desc_t fwd, bwd;
    if (forward_pd(&fwd, alg, dnnl_forward_training, gin, gout, p, op) != 0)
        return -1;
    int rc = backward_pd(&bwd, fwd, alg, gin, gout, p, op);
    dnnl_primitive_desc_destroy(fwd);
    if (rc != 0)
        return -1;
    dnnl_ctx_arg args[3] = {
        {DNNL_ARG_DIFF_DST, query_md(bwd, dnnl_query_diff_dst_md), tensor_data(gout)},
        {DNNL_ARG_DIFF_SRC, query_md(bwd, dnnl_query_diff_src_md), tensor_data(gin)},
    };
    int nargs = 2;
    if (ws) {
        const dnnl_memory_desc_t *wmd = query_md(bwd, dnnl_query_workspace_md);
        if ((size_t)tensor_numel(ws) < dnnl_memory_desc_get_size(wmd))
            rc = err_set("%s: the saved workspace does not fit the backward pass", op);
        args[nargs++] = (dnnl_ctx_arg){DNNL_ARG_WORKSPACE, wmd, tensor_data(ws)};
    }
    if (rc == 0)
        rc = dnnl_ctx_execute(bwd, nargs, args, op);
    dnnl_primitive_desc_destroy(bwd);
    return rc;
}

/* --- plain loops (float64, and the one float32 case above) --- */

/* Max of one plane: out[o] and the plane position of each maximum into idx[o]. A
 * NaN wins, and the first of equal maxima, as in PyTorch. */
static void max_plane(dtype_t dt, const char *x, char *out, int64_t *idx,
                      const pool2d_params *p)
{
    for (int64_t oh = 0; oh < p->out_h; oh++) {
        for (int64_t ow = 0; ow < p->out_w; ow++) {
            double best = -INFINITY;
            int64_t at = -1;
            for (int64_t i = 0; i < p->kh; i++) {
                int64_t ih = oh * p->sh - p->pad_t + i * p->dh;
                for (int64_t j = 0; ih >= 0 && ih < p->in_h && j < p->kw; j++) {
                    int64_t iw = ow * p->sw - p->pad_l + j * p->dw;
                    if (iw < 0 || iw >= p->in_w)
                        continue;
                    double v = dtype_load(dt, x, ih * p->in_w + iw);
                    if (at < 0 || v > best || isnan(v)) {
                        best = v;
                        at = ih * p->in_w + iw;
                    }
                }
            }
            dtype_store(dt, out, oh * p->out_w + ow, best);
            idx[oh * p->out_w + ow] = at;
        }
    }
}

/* Max pooling by the loops, plane by plane; *ws gets the int64 positions. */
static int loop_max_forward(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p)
{
    *ws = tensor_empty(DT_I64, out->ndim, out->shape, DEVICE_CPU);
    if (!*ws)
        return -1;
    dtype_t dt = x->dtype;
    size_t es = dtype_size(dt);
    int64_t planes = x->shape[0] * x->shape[1], isz = p->in_h * p->in_w,
            osz = p->out_h * p->out_w;
    const char *xs = tensor_data(x);
    char *os = tensor_data(out);
    int64_t *idx = tensor_data(*ws);
    int nt = pool_threads(planes, isz);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < planes; k++)
        max_plane(dt, xs + (size_t)(k * isz) * es, os + (size_t)(k * osz) * es, idx + k * osz, p);
    return 0;
}

/* gin = 0, then each gout element added at the position of its maximum. */
static int loop_max_backward(tensor *gin, const tensor *gout, const tensor *ws,
                             const pool2d_params *p)
{
    dtype_t dt = gin->dtype;
    size_t es = dtype_size(dt);
    int64_t planes = gin->shape[0] * gin->shape[1], isz = p->in_h * p->in_w,
            osz = p->out_h * p->out_w;
    const char *g = tensor_data(gout);
    char *gi = tensor_data(gin);
    const int64_t *idx = tensor_data(ws);
    memset(gi, 0, (size_t)(planes * isz) * es);
    int nt = pool_threads(planes, isz);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < planes; k++) {
        char *plane = gi + (size_t)(k * isz) * es;
        for (int64_t o = 0; o < osz; o++) {
            int64_t at = idx[k * osz + o];
            if (at >= 0)
                dtype_store(dt, plane, at, dtype_load(dt, plane, at) + dtype_load(dt, g, k * osz + o));
        }
    }
    return 0;
}

/* One average window in PyTorch's terms: the input rows [h0, h1) and columns
 * [w0, w1) it covers and the divisor of its sum. */
typedef struct {
    int64_t h0, h1, w0, w1;
    double div;
} avg_window;

/* The window of output (oh, ow), as PyTorch's CPU kernel computes it. */
static avg_window avg_window_at(int64_t oh, int64_t ow, const pool2d_params *p)
{
    avg_window w;
    w.h0 = oh * p->sh - p->pad_t;
    w.w0 = ow * p->sw - p->pad_l;
    w.h1 = w.h0 + p->kh < p->in_h + p->pad_t ? w.h0 + p->kh : p->in_h + p->pad_t;
    w.w1 = w.w0 + p->kw < p->in_w + p->pad_l ? w.w0 + p->kw : p->in_w + p->pad_l;
    int64_t padded = (w.h1 - w.h0) * (w.w1 - w.w0);
    w.h0 = w.h0 > 0 ? w.h0 : 0;
    w.w0 = w.w0 > 0 ? w.w0 : 0;
    w.h1 = w.h1 < p->in_h ? w.h1 : p->in_h;
    w.w1 = w.w1 < p->in_w ? w.w1 : p->in_w;
    int64_t inside = (w.h1 - w.h0) * (w.w1 - w.w0);
    w.div = (double)(p->count_include_pad ? padded : inside);
    return w;
}

/* Average pooling of one plane: out from x. */
static void avg_plane(dtype_t dt, const char *x, char *out, const pool2d_params *p)
{
    for (int64_t oh = 0; oh < p->out_h; oh++) {
        for (int64_t ow = 0; ow < p->out_w; ow++) {
            avg_window w = avg_window_at(oh, ow, p);
            double s = 0;
            for (int64_t ih = w.h0; ih < w.h1; ih++)
                for (int64_t iw = w.w0; iw < w.w1; iw++)
                    s += dtype_load(dt, x, ih * p->in_w + iw);
            dtype_store(dt, out, oh * p->out_w + ow, w.h0 < w.h1 && w.w0 < w.w1 ? s / w.div : 0);
        }
    }
}

/* The adjoint of avg_plane: each gout element spread over its window. */
static void avg_plane_backward(dtype_t dt, char *gin, const char *g, const pool2d_params *p)
{
    for (int64_t oh = 0; oh < p->out_h; oh++) {
        for (int64_t ow = 0; ow < p->out_w; ow++) {
            avg_window w = avg_window_at(oh, ow, p);
            double v = dtype_load(dt, g, oh * p->out_w + ow) / w.div;
            for (int64_t ih = w.h0; ih < w.h1; ih++)
                for (int64_t iw = w.w0; iw < w.w1; iw++)
                    dtype_store(dt, gin, ih * p->in_w + iw,
                                dtype_load(dt, gin, ih * p->in_w + iw) + v);
        }
    }
}

/* Average pooling by the loops, forward (dst = out, src = x) or backward
 * (dst = gin, src = gout), one plane per iteration. */
static int loop_avg(tensor *dst, const tensor *src, const pool2d_params *p, bool backward)
{
    dtype_t dt = dst->dtype;
    size_t es = dtype_size(dt);
    int64_t planes = dst->shape[0] * dst->shape[1], isz = p->in_h * p->in_w,
            osz = p->out_h * p->out_w;
    const char *s = tensor_data(src);
    char *d = tensor_data(dst);
    if (backward)
        memset(d, 0, (size_t)(planes * isz) * es);
    int nt = pool_threads(planes, isz);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < planes; k++) {
        if (backward)
            avg_plane_backward(dt, d + (size_t)(k * isz) * es, s + (size_t)(k * osz) * es, p);
        else
            avg_plane(dt, s + (size_t)(k * isz) * es, d + (size_t)(k * osz) * es, p);
    }
    return 0;
}

/* A loop kernel: dst from src (forward, or backward when asked), both contiguous. */
typedef int (*loop_fn)(tensor *dst, const tensor *src, const pool2d_params *p, bool backward);

/* Run a loop kernel on tensors of any dense layout (channels-last float32 reaches
 * the loops in the cases oneDNN cannot serve): through contiguous copies. */
static int on_contiguous(loop_fn fn, tensor *dst, const tensor *src, const pool2d_params *p,
                         bool backward)
{
    if (tensor_is_contiguous(dst) && tensor_is_contiguous(src))
        return fn(dst, src, p, backward);
    tensor *s = tensor_contiguous((tensor *)src);
    tensor *d = s ? tensor_empty(dst->dtype, dst->ndim, dst->shape, DEVICE_CPU) : NULL;
    int rc = d ? fn(d, s, p, backward) : -1;
    if (rc == 0)
        rc = tensor_copy_into(dst, d);
    tensor_decref(s);
    tensor_decref(d);
    return rc;
}

/* --- the kernels of the dispatch table --- */

/* Does this average pooling need the loops in float32 (see the top of the file)? */
static bool avg_needs_loops(const pool2d_params *p)
{
    return p->count_include_pad && (p->pad_b > p->pad_t || p->pad_r > p->pad_l);
}

/* oneDNN's name for the divisor PyTorch uses. */
static dnnl_alg_kind_t avg_alg(const pool2d_params *p)
{
    return p->count_include_pad ? dnnl_pooling_avg_include_padding
                                : dnnl_pooling_avg_exclude_padding;
}

int cpu_max_pool2d(tensor *out, tensor **ws, const tensor *x, const pool2d_params *p)
{
    if (x->dtype == DT_F32)
        return dnnl_pool_forward(dnnl_pooling_max, out, ws, x, p, "max_pool2d");
    return loop_max_forward(out, ws, x, p);
}

int cpu_max_pool2d_backward(tensor *gin, const tensor *gout, const tensor *ws,
                            const pool2d_params *p)
{
    if (gin->dtype == DT_F32)
        return dnnl_pool_backward(dnnl_pooling_max, gin, gout, ws, p, "max_pool2d");
    return loop_max_backward(gin, gout, ws, p);
}

int cpu_avg_pool2d(tensor *out, const tensor *x, const pool2d_params *p)
{
    if (x->dtype == DT_F32 && !avg_needs_loops(p))
        return dnnl_pool_forward(avg_alg(p), out, NULL, x, p, "avg_pool2d");
    return on_contiguous(loop_avg, out, x, p, false);
}

int cpu_avg_pool2d_backward(tensor *gin, const tensor *gout, const pool2d_params *p)
{
    if (gin->dtype == DT_F32 && !avg_needs_loops(p))
        return dnnl_pool_backward(avg_alg(p), gin, gout, NULL, p, "avg_pool2d");
    return on_contiguous(loop_avg, gin, gout, p, true);
}

/* --- adaptive average pooling (loops for both dtypes) --- */

/* PyTorch's adaptive window of output index i: [floor(i*n/m), ceil((i+1)*n/m)). */
static int64_t adaptive_start(int64_t i, int64_t n, int64_t m)
{
    return i * n / m;
}

/* ... and the end of that window (exclusive). */
static int64_t adaptive_end(int64_t i, int64_t n, int64_t m)
{
    return ((i + 1) * n + m - 1) / m;
}

/* The mean of each of `planes` contiguous planes of n elements: the 1x1 output
 * case (global average pooling), typed so that it vectorises. */
static void plane_means(dtype_t dt, const void *x, void *out, int64_t planes, int64_t n)
{
    int nt = pool_threads(planes, n);
    if (dt == DT_F32) {
        const float *xf = x;
        float *of = out;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t k = 0; k < planes; k++) {
            const float *p = xf + k * n;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < n; i++)
                s += p[i];
            of[k] = (float)(s / (double)n);
        }
        return;
    }
    const double *xd = x;
    double *od = out;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < planes; k++) {
        const double *p = xd + k * n;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++)
            s += p[i];
        od[k] = s / (double)n;
    }
}

/* Its adjoint: every element of plane k receives g[k] / n. */
static void plane_means_backward(dtype_t dt, void *gin, const void *g, int64_t planes, int64_t n)
{
    int nt = pool_threads(planes, n);
    if (dt == DT_F32) {
        float *gf = gin;
        const float *of = g;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t k = 0; k < planes; k++) {
            float v = of[k] / (float)n;
            for (int64_t i = 0; i < n; i++)
                gf[k * n + i] = v;
        }
        return;
    }
    double *gd = gin;
    const double *od = g;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < planes; k++) {
        double v = od[k] / (double)n;
        for (int64_t i = 0; i < n; i++)
            gd[k * n + i] = v;
    }
}

/* One plane of adaptive average pooling, forward (out from x) or backward (gin,
 * zeroed by the caller, from g). */
static void adaptive_plane(dtype_t dt, const char *src, char *dst, int64_t h, int64_t w,
                           int64_t oh, int64_t ow, bool backward)
{
    for (int64_t i = 0; i < oh; i++) {
        int64_t h0 = adaptive_start(i, h, oh), h1 = adaptive_end(i, h, oh);
        for (int64_t j = 0; j < ow; j++) {
            int64_t w0 = adaptive_start(j, w, ow), w1 = adaptive_end(j, w, ow);
            double count = (double)((h1 - h0) * (w1 - w0)), s = 0;
            double gv = backward ? dtype_load(dt, src, i * ow + j) / count : 0;
            for (int64_t y = h0; y < h1; y++) {
                for (int64_t x = w0; x < w1; x++) {
                    if (backward)
                        dtype_store(dt, dst, y * w + x, dtype_load(dt, dst, y * w + x) + gv);
                    else
                        s += dtype_load(dt, src, y * w + x);
                }
            }
            if (!backward)
                dtype_store(dt, dst, i * ow + j, s / count);
        }
    }
}

/* Adaptive pooling by the loops, for contiguous tensors: forward from x [N,C,H,W]
 * to out [N,C,OH,OW], or backward from gout to gin (p is not used: the sizes are
 * the tensors'). */
static int adaptive_loops(tensor *dst, const tensor *src, const pool2d_params *p, bool backward)
{
    (void)p;
    const tensor *big = backward ? dst : src, *small = backward ? src : dst;
    dtype_t dt = dst->dtype;
    size_t es = dtype_size(dt);
    int64_t planes = big->shape[0] * big->shape[1], h = big->shape[2], w = big->shape[3],
            oh = small->shape[2], ow = small->shape[3];
    if (oh == 1 && ow == 1) {
        if (backward)
            plane_means_backward(dt, tensor_data(dst), tensor_data(src), planes, h * w);
        else
            plane_means(dt, tensor_data(src), tensor_data(dst), planes, h * w);
        return 0;
    }
    const char *s = tensor_data(src);
    char *d = tensor_data(dst);
    size_t sstep = (size_t)(backward ? oh * ow : h * w) * es;
    size_t dstep = (size_t)(backward ? h * w : oh * ow) * es;
    if (backward)
        memset(d, 0, (size_t)planes * dstep);
    int nt = pool_threads(planes, h * w);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < planes; k++)
        adaptive_plane(dt, s + (size_t)k * sstep, d + (size_t)k * dstep, h, w, oh, ow, backward);
    return 0;
}

/* Channels go in blocks of this many in the channels-last means below. */
#define CL_BLOCK 64

/* Channel means of a channels-last float32 x [N,C,H,W] (in memory N,H,W,C) into
 * out [N,C] (the 1x1 case on a convolution's output), summed in double. */
static void cl_means(const float *x, float *out, int64_t n, int64_t c, int64_t hw)
{
    int64_t blocks = (c + CL_BLOCK - 1) / CL_BLOCK;
    int nt = pool_threads(n * blocks, hw * CL_BLOCK);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < n * blocks; k++) {
        int64_t b = k / blocks, c0 = k % blocks * CL_BLOCK;
        int64_t cb = c - c0 < CL_BLOCK ? c - c0 : CL_BLOCK;
        const float *base = x + b * hw * c + c0;
        double acc[CL_BLOCK] = {0};
        for (int64_t i = 0; i < hw; i++)
            for (int64_t j = 0; j < cb; j++)
                acc[j] += base[i * c + j];
        for (int64_t j = 0; j < cb; j++)
            out[b * c + c0 + j] = (float)(acc[j] / (double)hw);
    }
}

/* Its adjoint: gin[n, :, :, c] = g[n, c] / (H*W), gin channels-last. */
static void cl_means_backward(float *gin, const float *g, int64_t n, int64_t c, int64_t hw)
{
    int64_t blocks = (c + CL_BLOCK - 1) / CL_BLOCK;
    int nt = pool_threads(n * blocks, hw * CL_BLOCK);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < n * blocks; k++) {
        int64_t b = k / blocks, c0 = k % blocks * CL_BLOCK;
        int64_t cb = c - c0 < CL_BLOCK ? c - c0 : CL_BLOCK;
        float v[CL_BLOCK];
        for (int64_t j = 0; j < cb; j++)
            v[j] = g[b * c + c0 + j] / (float)hw;
        float *base = gin + b * hw * c + c0;
        for (int64_t i = 0; i < hw; i++)
            for (int64_t j = 0; j < cb; j++)
                base[i * c + j] = v[j];
    }
}

/* Is this the 1x1 case on a channels-last float32 input (x, or gin)? */
static bool cl_global(const tensor *big, const tensor *small)
{
    return big->dtype == DT_F32 && !tensor_is_contiguous(big) && small->shape[2] == 1 &&
           small->shape[3] == 1;
}

int cpu_adaptive_avg_pool2d(tensor *out, const tensor *x)
{
    if (cl_global(x, out)) {
        cl_means(tensor_data(x), tensor_data(out), x->shape[0], x->shape[1],
                 x->shape[2] * x->shape[3]);
        return 0;
    }
    return on_contiguous(adaptive_loops, out, x, NULL, false);
}

int cpu_adaptive_avg_pool2d_backward(tensor *gin, const tensor *gout)
{
    if (cl_global(gin, gout)) {
        cl_means_backward(tensor_data(gin), tensor_data(gout), gin->shape[0], gin->shape[1],
                          gin->shape[2] * gin->shape[3]);
        return 0;
    }
    return on_contiguous(adaptive_loops, gin, gout, NULL, true);
}
