// Resizing [N,C,H,W] planes on the GPU (interpolate): bilinear and PyTorch's
// legacy "nearest", forward and backward (twin: csrc/cpu/resize.c).
//
// The op layer passes contiguous tensors. Source positions follow the CPU twin
// exactly: the host computes each axis's scale as the CPU does, and each thread
// derives the taps it needs from it, with products rounded on their own (kmul)
// so that no fused multiply-add moves a position or a weight.
//
// The backward gathers rather than scatters (no atomics, deterministic): each
// input element adds up what the outputs that read it send it. Along an axis the
// outputs read nondecreasing source indices, so those that read index v are a
// range found by binary search; they are visited in the CPU scatter's order.
// The per-element functions are __host__ __device__ so that they can be checked
// against the CPU without a GPU.
#include <cmath>

#include "common.cuh"

extern "C" {
#include "../csrc/cpu/cpu.h"
}

// Everything but the entry points is local to this file.
namespace {

// One axis of a resize: `in` source pixels to `out`, and the scale its source
// positions are computed with (a float value for float32 data).
struct axis {
    int64_t in, out;
    double scale;
};

// Where output index o of an axis reads: two source indices and their weights
// (nearest: i0 only).
struct tap {
    int64_t i0, i1;
    double l0, l1;
};

// --- the scales, on the host: the CPU's own functions (csrc/cpu/resize.c) ---

// The axis of a resize from `in` to `out` pixels; user_scale is the user's scale
// factor, or 0.
axis axis_of(int64_t in, int64_t out, double user_scale, const resize_params *p, bool f32)
{
    double s = p->mode == RESIZE_NEAREST
                   ? resize_nearest_scale(in, out, user_scale, f32)
                   : resize_linear_scale(in, out, user_scale, p->align_corners, f32);
    return {in, out, s};
}

// The row and column axes of a resize from `in`'s planes to `out`'s (the
// backward's gin and gout alike), in the precision of in's dtype.
void axes_of(const tensor *in, const tensor *out, const resize_params *p, axis *ay, axis *ax)
{
    bool f32 = in->dtype == DT_F32;
    *ay = axis_of(in->shape[2], out->shape[2], p->scale_h, p, f32);
    *ax = axis_of(in->shape[3], out->shape[3], p->scale_w, p, f32);
}

// --- the taps, on the device ---

// PyTorch's area_pixel_compute_source_index (non-cubic), in T's precision.
template <typename T>
__host__ __device__ inline double linear_source(double scale, int64_t o, bool align)
{
    T s = (T)scale;
    T r = align ? kmul(s, (T)o) : kmul(s, (T)o + (T)0.5) - (T)0.5;
    return r < 0 ? 0 : (double)r;
}

// The bilinear tap of output o; an axis that keeps its size maps to itself.
template <typename T>
__host__ __device__ inline tap linear_tap(const axis &a, int64_t o, bool align)
{
    if (a.in == a.out)
        return {o, o, 1, 0};
    double r = linear_source<T>(a.scale, o, align);
    int64_t i0 = (int64_t)r;
    double l1 = fmin(fmax(r - (double)i0, 0.0), 1.0);
    return {i0, i0 < a.in - 1 ? i0 + 1 : i0, 1 - l1, l1};
}

// The nearest tap of output o: floor(o * scale), the product in T's precision
// and floored in float, clamped to the last pixel.
template <typename T> __host__ __device__ inline tap nearest_tap(const axis &a, int64_t o)
{
    float r = (float)kmul((T)o, (T)a.scale);
    int64_t i = (int64_t)floorf(r);
    return {i < a.in - 1 ? i : a.in - 1, 0, 1, 0};
}

template <typename T>
__host__ __device__ inline tap tap_at(const axis &a, int64_t o, const resize_params &p)
{
    return p.mode == RESIZE_NEAREST ? nearest_tap<T>(a, o) : linear_tap<T>(a, o, p.align_corners);
}

// The first output of axis a whose tap's i0 is at least v (a.out if none); i0
// never decreases along an axis.
template <typename T>
__host__ __device__ int64_t first_from(const axis &a, int64_t v, const resize_params &p)
{
    int64_t lo = 0, hi = a.out;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tap_at<T>(a, mid, p).i0 < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// --- forward and backward, one element ---

// Output element i of y (planes of ay.out x ax.out) from x.
template <typename T>
__host__ __device__ void resize_one(int64_t i, T *y, const T *x, const axis &ay, const axis &ax,
                                    const resize_params &p)
{
    int64_t j = i % ax.out, t = i / ax.out, r = t % ay.out, plane = t / ay.out;
    const T *xp = x + plane * ay.in * ax.in;
    tap ty = tap_at<T>(ay, r, p), tx = tap_at<T>(ax, j, p);
    if (p.mode == RESIZE_NEAREST) {
        y[i] = xp[ty.i0 * ax.in + tx.i0];
        return;
    }
    const T *r0 = xp + ty.i0 * ax.in, *r1 = xp + ty.i1 * ax.in;
    T a0 = (T)ty.l0, a1 = (T)ty.l1, b0 = (T)tx.l0, b1 = (T)tx.l1;
    y[i] = kmul(a0, kmul(b0, r0[tx.i0]) + kmul(b1, r0[tx.i1])) +
           kmul(a1, kmul(b0, r1[tx.i0]) + kmul(b1, r1[tx.i1]));
}

// Input element i of gin (planes of ay.in x ax.in): the sum over the outputs
// that read it of weight * gout, each term added in double and rounded to T, in
// the CPU's order (outputs in raster order, then the taps (i0,j0), (i0,j1),
// (i1,j0), (i1,j1); zero weights included, as there).
template <typename T>
__host__ __device__ void resize_grad_one(int64_t i, T *gin, const T *g, const axis &ay,
                                         const axis &ax, const resize_params &p)
{
    int64_t xi = i % ax.in, t = i / ax.in, yi = t % ay.in, plane = t / ay.in;
    const T *gp = g + plane * ay.out * ax.out;
    // nearest reads index v where i0 == v; bilinear also where i0 == v - 1 (via i1)
    bool nearest = p.mode == RESIZE_NEAREST;
    int64_t back = nearest ? 0 : 1;
    int64_t r0 = first_from<T>(ay, yi - back, p), r1 = first_from<T>(ay, yi + 1, p);
    int64_t c0 = first_from<T>(ax, xi - back, p), c1 = first_from<T>(ax, xi + 1, p);
    T acc = 0;
    for (int64_t r = r0; r < r1; r++) {
        tap ty = tap_at<T>(ay, r, p);
        for (int64_t c = c0; c < c1; c++) {
            tap tx = tap_at<T>(ax, c, p);
            double v = (double)gp[r * ax.out + c];
            for (int k = 0; k < (nearest ? 1 : 4); k++) {
                int64_t row = k < 2 ? ty.i0 : ty.i1, col = k % 2 ? tx.i1 : tx.i0;
                if (row != yi || col != xi)
                    continue;
                double w = kmul(k < 2 ? ty.l0 : ty.l1, k % 2 ? tx.l1 : tx.l0);
                acc = (T)((double)acc + kmul(w, v));
            }
        }
    }
    gin[i] = acc;
}

template <typename T>
__global__ void resize_kernel(T *y, const T *x, axis ay, axis ax, resize_params p, int64_t n)
{
    KLOOP(i, n) resize_one(i, y, x, ay, ax, p);
}

template <typename T>
__global__ void resize_grad_kernel(T *gin, const T *g, axis ay, axis ax, resize_params p,
                                   int64_t n)
{
    KLOOP(i, n) resize_grad_one(i, gin, g, ay, ax, p);
}

} // namespace

// --- the entry points ---

extern "C" int cuda_interpolate2d(tensor *out, const tensor *x, const resize_params *p)
{
    cudaStream_t s = kstream(x);
    if (!s)
        return -1;
    axis ay, ax;
    axes_of(x, out, p, &ay, &ax);
    int64_t n = tensor_numel(out);
    return by_dtype(x->dtype, "interpolate", [&](auto z) {
        using T = decltype(z);
        resize_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
            (T *)tensor_data(out), (const T *)tensor_data(x), ay, ax, *p, n);
    });
}

extern "C" int cuda_interpolate2d_backward(tensor *gin, const tensor *gout,
                                           const resize_params *p)
{
    cudaStream_t s = kstream(gin);
    if (!s)
        return -1;
    axis ay, ax;
    axes_of(gin, gout, p, &ay, &ax);
    int64_t n = tensor_numel(gin);
    return by_dtype(gin->dtype, "interpolate", [&](auto z) {
        using T = decltype(z);
        resize_grad_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
            (T *)tensor_data(gin), (const T *)tensor_data(gout), ay, ax, *p, n);
    });
}
