// 2-D pooling on the GPU: max, average and adaptive average over [N,C,H,W]
// (twin: csrc/cpu/pool.c, whose plain loops these kernels follow): our kernels,
// for the problems csrc/cuda/cudnn_pool.c does not give cuDNN.
//
// Tensors come contiguous or (float32, bfloat16) channels-last; bfloat16 is
// computed in float32 and rounded once (common.cuh). Each kernel walks the
// tensor it writes in memory order and reaches the others through their strides,
// so either layout, or a mix, works. Windows are summed in double, as in the
// CPU's loops. The backward kernels gather rather than scatter: each input
// element adds up the gradients of the output windows that hold it, in the order
// the CPU's scatter adds them, so there are no atomics and the results are
// deterministic. The per-element functions are __host__ __device__ so that their
// index arithmetic can be checked against the CPU without a GPU.
#include <cmath>

#include "common.cuh"

// Everything but the entry points is local to this file.
namespace {

// A [N,C,H,W] tensor as the kernels see it.
struct dims4 {
    int64_t c, h, w;        // sizes of dims 1..3
    int64_t sn, sc, sh, sw; // strides, in elements
    bool cl;                // memory order N,H,W,C (else N,C,H,W)
};

dims4 dims_of(const tensor *t)
{
    // the op layer passes contiguous tensors, or else channels-last ones
    return {t->shape[1], t->shape[2], t->shape[3], t->stride[0], t->stride[1],
            t->stride[2], t->stride[3], !tensor_is_contiguous(t)};
}

struct at4 {
    int64_t n, c, h, w;
};

// a / b for a >= 0 and b > 0, in 32 bits when both fit: a 64-bit division costs
// the GPU several times a 32-bit one, and the backward kernels, which do little
// else, make about seven per element.
__host__ __device__ inline int64_t qdiv(int64_t a, int64_t b)
{
    if ((uint64_t)a <= UINT32_MAX && (uint64_t)b <= UINT32_MAX)
        return (int64_t)((uint32_t)a / (uint32_t)b);
    return a / b;
}

// *i / d, leaving the remainder in *rem.
__host__ __device__ inline int64_t divrem(int64_t *i, int64_t d)
{
    int64_t q = qdiv(*i, d), rem = *i - q * d;
    *i = q;
    return rem;
}

// The indices of the i-th element of d in memory order.
__host__ __device__ inline at4 at_of(const dims4 &d, int64_t i)
{
    at4 a;
    if (d.cl) {
        a.c = divrem(&i, d.c);
        a.w = divrem(&i, d.w);
        a.h = divrem(&i, d.h);
    } else {
        a.w = divrem(&i, d.w);
        a.h = divrem(&i, d.h);
        a.c = divrem(&i, d.c);
    }
    a.n = i;
    return a;
}

// The offset of element (n, c, h, w) of d.
__host__ __device__ inline int64_t off(const dims4 &d, int64_t n, int64_t c, int64_t h,
                                       int64_t w)
{
    return n * d.sn + c * d.sc + h * d.sh + w * d.sw;
}

// Along one axis, the outputs [*o0, *o1) whose windows can hold input index i,
// with ip = i + the leading padding: windows start at o * stride - padding and
// span `span` inputs. The range may include windows whose dilation skips i.
__host__ __device__ inline void outputs_over(int64_t ip, int64_t span, int64_t stride,
                                             int64_t out, int64_t *o0, int64_t *o1)
{
    *o0 = ip < span ? 0 : qdiv(ip - span, stride) + 1;
    int64_t e = qdiv(ip, stride) + 1;
    *o1 = e < out ? e : out;
}

// --- max pooling ---

// Output element i of out: the max of its window and, into ws (int64, out's
// shape), the position h * in_w + w of that max in its plane (-1: an empty
// window). A NaN wins, and the first of equal maxima, as in PyTorch.
template <typename T>
__host__ __device__ void max_one(int64_t i, T *out, int64_t *ws, const T *x, const dims4 &od,
                                 const dims4 &wd, const dims4 &xd, const pool2d_params &p)
{
    using C = compute_t<T>;
    at4 o = at_of(od, i);
    C best = (C)-INFINITY;
    int64_t at = -1;
    for (int64_t a = 0; a < p.kh; a++) {
        int64_t ih = o.h * p.sh - p.pad_t + a * p.dh;
        for (int64_t b = 0; ih >= 0 && ih < p.in_h && b < p.kw; b++) {
            int64_t iw = o.w * p.sw - p.pad_l + b * p.dw;
            if (iw < 0 || iw >= p.in_w)
                continue;
            C v = kwiden(x[off(xd, o.n, o.c, ih, iw)]);
            if (at < 0 || v > best || isnan(v)) {
                best = v;
                at = ih * p.in_w + iw;
            }
        }
    }
    out[off(od, o.n, o.c, o.h, o.w)] = knarrow<T>(best);
    ws[off(wd, o.n, o.c, o.h, o.w)] = at;
}

// Input element i of gin: the sum of the gradients of the outputs whose max it was.
template <typename T>
__host__ __device__ void max_grad_one(int64_t i, T *gin, const T *gout, const int64_t *ws,
                                      const dims4 &gd, const dims4 &od, const dims4 &wd,
                                      const pool2d_params &p)
{
    at4 q = at_of(gd, i);
    int64_t here = q.h * p.in_w + q.w, oh0, oh1, ow0, ow1;
    outputs_over(q.h + p.pad_t, (p.kh - 1) * p.dh + 1, p.sh, p.out_h, &oh0, &oh1);
    outputs_over(q.w + p.pad_l, (p.kw - 1) * p.dw + 1, p.sw, p.out_w, &ow0, &ow1);
    compute_t<T> acc = 0;
    for (int64_t oh = oh0; oh < oh1; oh++)
        for (int64_t ow = ow0; ow < ow1; ow++)
            if (ws[off(wd, q.n, q.c, oh, ow)] == here)
                acc += kwiden(gout[off(od, q.n, q.c, oh, ow)]);
    gin[off(gd, q.n, q.c, q.h, q.w)] = knarrow<T>(acc);
}

template <typename T>
__global__ void max_kernel(T *out, int64_t *ws, const T *x, dims4 od, dims4 wd, dims4 xd,
                           pool2d_params p, int64_t n)
{
    KLOOP(i, n) max_one(i, out, ws, x, od, wd, xd, p);
}

template <typename T>
__global__ void max_grad_kernel(T *gin, const T *gout, const int64_t *ws, dims4 gd, dims4 od,
                                dims4 wd, pool2d_params p, int64_t n)
{
    KLOOP(i, n) max_grad_one(i, gin, gout, ws, gd, od, wd, p);
}

// --- average pooling ---

// One average window in PyTorch's terms: the input rows [h0, h1) and columns
// [w0, w1) it covers and the divisor of its sum (the CPU's avg_window_at).
struct avg_window {
    int64_t h0, h1, w0, w1;
    double div;
};

__host__ __device__ inline avg_window avg_window_at(int64_t oh, int64_t ow,
                                                    const pool2d_params &p)
{
    avg_window w;
    w.h0 = oh * p.sh - p.pad_t;
    w.w0 = ow * p.sw - p.pad_l;
    w.h1 = w.h0 + p.kh < p.in_h + p.pad_t ? w.h0 + p.kh : p.in_h + p.pad_t;
    w.w1 = w.w0 + p.kw < p.in_w + p.pad_l ? w.w0 + p.kw : p.in_w + p.pad_l;
    int64_t padded = (w.h1 - w.h0) * (w.w1 - w.w0);
    w.h0 = w.h0 > 0 ? w.h0 : 0;
    w.w0 = w.w0 > 0 ? w.w0 : 0;
    w.h1 = w.h1 < p.in_h ? w.h1 : p.in_h;
    w.w1 = w.w1 < p.in_w ? w.w1 : p.in_w;
    int64_t inside = (w.h1 - w.h0) * (w.w1 - w.w0);
    w.div = (double)(p.count_include_pad ? padded : inside);
    return w;
}

// Output element i of out: the mean of its window (0 for an empty one).
template <typename T>
__host__ __device__ void avg_one(int64_t i, T *out, const T *x, const dims4 &od,
                                 const dims4 &xd, const pool2d_params &p)
{
    at4 o = at_of(od, i);
    avg_window w = avg_window_at(o.h, o.w, p);
    double s = 0;
    for (int64_t ih = w.h0; ih < w.h1; ih++)
        for (int64_t iw = w.w0; iw < w.w1; iw++)
            s += (double)kwiden(x[off(xd, o.n, o.c, ih, iw)]);
    out[off(od, o.n, o.c, o.h, o.w)] =
        knarrow<T>((compute_t<T>)(w.h0 < w.h1 && w.w0 < w.w1 ? s / w.div : 0));
}

// Input element i of gin: each window holding it gives gout / divisor, added in
// double and rounded to T at each step, as the CPU's scatter does.
template <typename T>
__host__ __device__ void avg_grad_one(int64_t i, T *gin, const T *gout, const dims4 &gd,
                                      const dims4 &od, const pool2d_params &p)
{
    at4 q = at_of(gd, i);
    int64_t oh0, oh1, ow0, ow1;
    outputs_over(q.h + p.pad_t, p.kh, p.sh, p.out_h, &oh0, &oh1);
    outputs_over(q.w + p.pad_l, p.kw, p.sw, p.out_w, &ow0, &ow1);
    using C = compute_t<T>;
    C acc = 0;
    for (int64_t oh = oh0; oh < oh1; oh++)
        for (int64_t ow = ow0; ow < ow1; ow++)
            acc = (C)((double)acc + (double)kwiden(gout[off(od, q.n, q.c, oh, ow)]) /
                                        avg_window_at(oh, ow, p).div);
    gin[off(gd, q.n, q.c, q.h, q.w)] = knarrow<T>(acc);
}

template <typename T>
__global__ void avg_kernel(T *out, const T *x, dims4 od, dims4 xd, pool2d_params p, int64_t n)
{
    KLOOP(i, n) avg_one(i, out, x, od, xd, p);
}

template <typename T>
__global__ void avg_grad_kernel(T *gin, const T *gout, dims4 gd, dims4 od, pool2d_params p,
                                int64_t n)
{
    KLOOP(i, n) avg_grad_one(i, gin, gout, gd, od, p);
}

// --- adaptive average pooling ---

// PyTorch's adaptive window of output index o of `out` over `in` inputs:
// [floor(o * in / out), ceil((o + 1) * in / out)).
__host__ __device__ inline int64_t adaptive_start(int64_t o, int64_t in, int64_t out)
{
    return qdiv(o * in, out);
}

__host__ __device__ inline int64_t adaptive_end(int64_t o, int64_t in, int64_t out)
{
    return qdiv((o + 1) * in + out - 1, out);
}

// The outputs [*o0, *o1) whose adaptive windows hold input index i: those with
// start <= i (o <= ((i + 1) * out - 1) / in) and end > i (o >= i * out / in).
__host__ __device__ inline void adaptive_outputs_over(int64_t i, int64_t in, int64_t out,
                                                      int64_t *o0, int64_t *o1)
{
    *o0 = qdiv(i * out, in);
    int64_t e = qdiv((i + 1) * out - 1, in) + 1;
    *o1 = e < out ? e : out;
}

// Output element i of out (od; x is xd, of H x W planes): the mean of its window.
template <typename T>
__host__ __device__ void adaptive_one(int64_t i, T *out, const T *x, const dims4 &od,
                                      const dims4 &xd)
{
    at4 o = at_of(od, i);
    int64_t h0 = adaptive_start(o.h, xd.h, od.h), h1 = adaptive_end(o.h, xd.h, od.h);
    int64_t w0 = adaptive_start(o.w, xd.w, od.w), w1 = adaptive_end(o.w, xd.w, od.w);
    double s = 0;
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++)
            s += (double)kwiden(x[off(xd, o.n, o.c, ih, iw)]);
    out[off(od, o.n, o.c, o.h, o.w)] =
        knarrow<T>((compute_t<T>)(s / (double)((h1 - h0) * (w1 - w0))));
}

// Input element i of gin: each window holding it gives gout / its size, added in
// double and rounded to T at each step, as the CPU's scatter does.
template <typename T>
__host__ __device__ void adaptive_grad_one(int64_t i, T *gin, const T *gout, const dims4 &gd,
                                           const dims4 &od)
{
    at4 q = at_of(gd, i);
    int64_t oh0, oh1, ow0, ow1;
    adaptive_outputs_over(q.h, gd.h, od.h, &oh0, &oh1);
    adaptive_outputs_over(q.w, gd.w, od.w, &ow0, &ow1);
    using C = compute_t<T>;
    C acc = 0;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        int64_t rows = adaptive_end(oh, gd.h, od.h) - adaptive_start(oh, gd.h, od.h);
        for (int64_t ow = ow0; ow < ow1; ow++) {
            int64_t cols = adaptive_end(ow, gd.w, od.w) - adaptive_start(ow, gd.w, od.w);
            acc = (C)((double)acc +
                      (double)kwiden(gout[off(od, q.n, q.c, oh, ow)]) / (double)(rows * cols));
        }
    }
    gin[off(gd, q.n, q.c, q.h, q.w)] = knarrow<T>(acc);
}

template <typename T>
__global__ void adaptive_kernel(T *out, const T *x, dims4 od, dims4 xd, int64_t n)
{
    KLOOP(i, n) adaptive_one(i, out, x, od, xd);
}

template <typename T>
__global__ void adaptive_grad_kernel(T *gin, const T *gout, dims4 gd, dims4 od, int64_t n)
{
    KLOOP(i, n) adaptive_grad_one(i, gin, gout, gd, od);
}

} // namespace

// --- the entry points ---

extern "C" int cuda_max_pool2d_kernel(tensor *out, tensor **ws, const tensor *x,
                               const pool2d_params *p)
{
    cudaStream_t s = kstream(x);
    if (!s)
        return -1;
    *ws = tensor_empty_like(out, DT_I64); // laid out like out, so its writes coalesce too
    if (!*ws)
        return -1;
    int64_t n = tensor_numel(out);
    int64_t *w = (int64_t *)tensor_data(*ws);
    dims4 od = dims_of(out), wd = dims_of(*ws), xd = dims_of(x);
    int rc = by_dtype_bf16(x->dtype, "max_pool2d", [&](auto z) {
        using T = decltype(z);
        max_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>((T *)tensor_data(out), w,
                                                      (const T *)tensor_data(x), od, wd, xd,
                                                      *p, n);
    });
    if (rc != 0) {
        tensor_decref(*ws);
        *ws = NULL;
    }
    return rc;
}

extern "C" int cuda_max_pool2d_backward_kernel(tensor *gin, const tensor *gout, const tensor *ws,
                                        const pool2d_params *p)
{
    cudaStream_t s = kstream(gin);
    if (!s)
        return -1;
    int64_t n = tensor_numel(gin);
    const int64_t *w = (const int64_t *)tensor_data(ws);
    dims4 gd = dims_of(gin), od = dims_of(gout), wd = dims_of(ws);
    return by_dtype_bf16(gin->dtype, "max_pool2d", [&](auto z) {
        using T = decltype(z);
        max_grad_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
            (T *)tensor_data(gin), (const T *)tensor_data(gout), w, gd, od, wd, *p, n);
    });
}

extern "C" int cuda_avg_pool2d_kernel(tensor *out, const tensor *x, const pool2d_params *p)
{
    cudaStream_t s = kstream(x);
    if (!s)
        return -1;
    int64_t n = tensor_numel(out);
    dims4 od = dims_of(out), xd = dims_of(x);
    return by_dtype_bf16(x->dtype, "avg_pool2d", [&](auto z) {
        using T = decltype(z);
        avg_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>((T *)tensor_data(out),
                                                      (const T *)tensor_data(x), od, xd, *p, n);
    });
}

extern "C" int cuda_avg_pool2d_backward_kernel(tensor *gin, const tensor *gout, const pool2d_params *p)
{
    cudaStream_t s = kstream(gin);
    if (!s)
        return -1;
    int64_t n = tensor_numel(gin);
    dims4 gd = dims_of(gin), od = dims_of(gout);
    return by_dtype_bf16(gin->dtype, "avg_pool2d", [&](auto z) {
        using T = decltype(z);
        avg_grad_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
            (T *)tensor_data(gin), (const T *)tensor_data(gout), gd, od, *p, n);
    });
}

extern "C" int cuda_adaptive_avg_pool2d_kernel(tensor *out, const tensor *x)
{
    cudaStream_t s = kstream(x);
    if (!s)
        return -1;
    int64_t n = tensor_numel(out);
    dims4 od = dims_of(out), xd = dims_of(x);
    return by_dtype_bf16(x->dtype, "adaptive_avg_pool2d", [&](auto z) {
        using T = decltype(z);
        adaptive_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
            (T *)tensor_data(out), (const T *)tensor_data(x), od, xd, n);
    });
}

extern "C" int cuda_adaptive_avg_pool2d_backward_kernel(tensor *gin, const tensor *gout)
{
    cudaStream_t s = kstream(gin);
    if (!s)
        return -1;
    int64_t n = tensor_numel(gin);
    dims4 gd = dims_of(gin), od = dims_of(gout);
    return by_dtype_bf16(gin->dtype, "adaptive_avg_pool2d", [&](auto z) {
        using T = decltype(z);
        adaptive_grad_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
            (T *)tensor_data(gin), (const T *)tensor_data(gout), gd, od, n);
    });
}
