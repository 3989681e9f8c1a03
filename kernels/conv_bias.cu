// The bias of conv2d on the GPU (see csrc/cuda/conv_bias.h): its addition to the
// output when cuDNN did not fuse it into the convolution, and its gradient.
// CPU twin: csrc/cpu/conv.c (cpu_conv2d starts y from the bias; the bias gradient
// of cpu_conv2d_backward_weight sums gy over n, h, w).
//
// The gradient is deterministic: each block sums a fixed part of one channel's
// values into a partial sum (in a fixed order), and a second kernel adds a
// channel's partials in order. Sums are accumulated in double (bfloat16 read and
// rounded as common.cuh's compute_t says).
#include "common.cuh"

extern "C" {
#include "../csrc/alloc.h"
}
#include "../csrc/cuda/conv_bias.h"

static_assert(KTHREADS == 256, "the channels-last gradient splits a block as 32 x 8");

// How a [N, C, H, W] tensor lies in memory.
enum { LAYOUT_STRIDED = 0, LAYOUT_NCHW = 1, LAYOUT_NHWC = 2 };

struct geom4 {
    int64_t n, c, h, w;     // shape
    int64_t sn, sc, sh, sw; // strides (elements), for LAYOUT_STRIDED
    int layout;
};

static geom4 geom4_of(const tensor *t)
{
    geom4 g = {t->shape[0],  t->shape[1],  t->shape[2],  t->shape[3],   t->stride[0],
               t->stride[1], t->stride[2], t->stride[3], LAYOUT_STRIDED};
    if (tensor_is_contiguous(t))
        g.layout = LAYOUT_NCHW;
    else if (tensor_is_channels_last(t))
        g.layout = LAYOUT_NHWC;
    return g;
}

static inline int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

// --- y += b ---

template <typename T> __global__ void bias_add_kernel(T *y, const T *b, geom4 g, int64_t total)
{
    KLOOP(i, total)
    {
        int64_t c, off = i; // dense layouts: element i of memory
        if (g.layout == LAYOUT_NHWC) {
            c = i % g.c;
        } else if (g.layout == LAYOUT_NCHW) {
            c = (i / (g.h * g.w)) % g.c;
        } else { // i walks the logical [N, C, H, W] order
            int64_t w = i % g.w, r = i / g.w, h = r % g.h;
            r /= g.h;
            c = r % g.c;
            off = (r / g.c) * g.sn + c * g.sc + h * g.sh + w * g.sw;
        }
        y[off] = knarrow<T>(kwiden(y[off]) + kwiden(b[c]));
    }
}

extern "C" int cuda_conv_bias_add(tensor *y, const tensor *b)
{
    int64_t total = tensor_numel(y);
    if (total == 0)
        return 0;
    cudaStream_t s = kstream(y);
    if (!s)
        return -1;
    geom4 g = geom4_of(y);
    return by_dtype_bf16(y->dtype, "conv2d (bias addition)", [&](auto z) {
        using T = decltype(z);
        bias_add_kernel<T><<<kblocks(total), KTHREADS, 0, s>>>(
            (T *)tensor_data(y), (const T *)tensor_data(b), g, total);
    });
}

// --- gb = sum of gy over n, h, w ---

// The sum of acc[0 .. KTHREADS) by a fixed tree; every thread of the block calls it.
__device__ static double block_sum(double *acc)
{
    for (int off = KTHREADS / 2; off > 0; off >>= 1) {
        if ((int)threadIdx.x < off)
            acc[threadIdx.x] += acc[threadIdx.x + off];
        __syncthreads();
    }
    return acc[0];
}

// Channels-last: rows of C values. Block (tile, p) sums 32 channels over the
// rows [p * chunk, (p + 1) * chunk): a warp reads 32 neighbouring channels of one
// row, the block's 8 warps take every 8th row.
template <typename T>
__global__ void bias_grad_nhwc(const T *gy, double *part, int64_t C, int64_t rows, int64_t chunk)
{
    __shared__ double acc[KTHREADS];
    int lane = threadIdx.x & 31, row = threadIdx.x >> 5;
    int64_t c = (int64_t)blockIdx.x * 32 + lane;
    int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double s = 0.0;
    if (c < C)
        for (int64_t r = r0 + row; r < r1; r += KTHREADS / 32)
            s += (double)kwiden(gy[r * C + c]);
    acc[threadIdx.x] = s;
    __syncthreads();
    if (row == 0 && c < C) {
        double t = 0.0;
        for (int j = 0; j < KTHREADS / 32; j++)
            t += acc[lane + 32 * j];
        part[(int64_t)blockIdx.y * C + c] = t;
    }
}

// Contiguous: block (c, p) sums channel c's planes of images [p * imgs, (p + 1) * imgs).
template <typename T>
__global__ void bias_grad_nchw(const T *gy, double *part, int64_t N, int64_t C, int64_t HW,
                               int64_t imgs)
{
    __shared__ double acc[KTHREADS];
    int64_t c = blockIdx.x;
    int64_t n0 = (int64_t)blockIdx.y * imgs, n1 = n0 + imgs < N ? n0 + imgs : N;
    double s = 0.0;
    for (int64_t n = n0; n < n1; n++) {
        const T *plane = gy + (n * C + c) * HW;
        for (int64_t i = threadIdx.x; i < HW; i += KTHREADS)
            s += (double)kwiden(plane[i]);
    }
    acc[threadIdx.x] = s;
    __syncthreads();
    double t = block_sum(acc);
    if (threadIdx.x == 0)
        part[(int64_t)blockIdx.y * C + c] = t;
}

// Any strides: block (c, p) sums channel c over the rows (n, h, w) numbered
// [p * chunk, (p + 1) * chunk).
template <typename T>
__global__ void bias_grad_strided(const T *gy, double *part, geom4 g, int64_t rows, int64_t chunk)
{
    __shared__ double acc[KTHREADS];
    int64_t c = blockIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double s = 0.0;
    for (int64_t r = r0 + threadIdx.x; r < r1; r += KTHREADS) {
        int64_t w = r % g.w, q = r / g.w, h = q % g.h, n = q / g.h;
        s += (double)kwiden(gy[n * g.sn + c * g.sc + h * g.sh + w * g.sw]);
    }
    acc[threadIdx.x] = s;
    __syncthreads();
    double t = block_sum(acc);
    if (threadIdx.x == 0)
        part[(int64_t)blockIdx.y * g.c + c] = t;
}

// gb[c] = the sum of part[p, c] over p, in order.
template <typename T>
__global__ void bias_grad_final(T *gb, const double *part, int64_t C, int64_t P)
{
    KLOOP(c, C)
    {
        double s = 0.0;
        for (int64_t p = 0; p < P; p++)
            s += part[p * C + c];
        gb[c] = knarrow<T>((compute_t<T>)s);
    }
}

template <typename T> static int bias_grad_launch(tensor *gb, const tensor *gy, cudaStream_t s)
{
    const char *what = "conv2d backward (bias gradient)";
    geom4 g = geom4_of(gy);
    int64_t C = g.c, rows = g.n * g.h * g.w;
    if (rows == 0)
        return cuda_ctx_check(cudaMemsetAsync(tensor_data(gb), 0, sizeof(T) * (size_t)C, s), what);
    // The split depends on the shape and layout only, so the sums are reproducible.
    int64_t tiles, P, chunk;
    if (g.layout == LAYOUT_NHWC) {
        tiles = ceil_div(C, 32);
        P = ceil_div(rows, 2048);
        P = P > 256 ? 256 : P;
        chunk = ceil_div(rows, P);
    } else if (g.layout == LAYOUT_NCHW) {
        tiles = C;
        P = g.n > 64 ? 64 : g.n;
        chunk = ceil_div(g.n, P); // images per block
        P = ceil_div(g.n, chunk);
    } else {
        tiles = C;
        P = ceil_div(rows, 4096);
        P = P > 64 ? 64 : P;
        chunk = ceil_div(rows, P);
    }
    if (tiles > INT32_MAX)
        return err_set("%s: %lld channels are too many", what, (long long)C);
    device dev = tensor_device(gy);
    size_t bytes = sizeof(double) * (size_t)(P * C);
    double *part = (double *)alloc_bytes(dev, bytes);
    if (!part)
        return err_prefix(what);
    dim3 grid((unsigned)tiles, (unsigned)P);
    const T *src = (const T *)tensor_data(gy);
    if (g.layout == LAYOUT_NHWC)
        bias_grad_nhwc<T><<<grid, KTHREADS, 0, s>>>(src, part, C, rows, chunk);
    else if (g.layout == LAYOUT_NCHW)
        bias_grad_nchw<T><<<grid, KTHREADS, 0, s>>>(src, part, g.n, C, g.h * g.w, chunk);
    else
        bias_grad_strided<T><<<grid, KTHREADS, 0, s>>>(src, part, g, rows, chunk);
    int rc = cuda_ctx_launched(what);
    if (rc == 0) {
        bias_grad_final<T><<<kblocks(C), KTHREADS, 0, s>>>((T *)tensor_data(gb), part, C, P);
        rc = cuda_ctx_launched(what);
    }
    // The stream runs in order: the next user of this memory comes after us.
    alloc_release(dev, part, bytes);
    return rc;
}

extern "C" int cuda_conv_bias_grad(tensor *gb, const tensor *gy)
{
    if (gy->shape[1] == 0)
        return 0;
    cudaStream_t s = kstream(gy);
    if (!s)
        return -1;
    if (gy->dtype == DT_F32)
        return bias_grad_launch<float>(gb, gy, s);
    if (gy->dtype == DT_F64)
        return bias_grad_launch<double>(gb, gy, s);
    if (gy->dtype == DT_BF16)
        return bias_grad_launch<__nv_bfloat16>(gb, gy, s);
    return err_set("conv2d backward: the bias gradient wants float32, float64 or bfloat16, got "
                   "%s", dtype_name(gy->dtype));
}
