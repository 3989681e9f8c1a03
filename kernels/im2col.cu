// im2col and col2im for the GEMM path of conv2d on the GPU (csrc/cuda/conv_gemm.h).
// CPU twin: csrc/cpu/conv.c (the same convolution, through oneDNN); checked
// against it by spec/cuda_spec.lua's GEMM-path case.
#include "common.cuh"

#include "../csrc/cuda/conv_gemm.h"

// Element i of col, row-major [c * kh * kw, oh * ow].
template <typename T>
__global__ void im2col_kernel(T *col, const T *x, im2col_geom g, int64_t total)
{
    KLOOP(i, total)
    {
        int64_t ox = i % g.ow, r = i / g.ow, oy = r % g.oh;
        r /= g.oh;
        int64_t j = r % g.kw, ki = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
        int64_t y = oy * g.stride[0] - g.padding[0] + ki * g.dilation[0];
        int64_t xx = ox * g.stride[1] - g.padding[1] + j * g.dilation[1];
        col[i] = y >= 0 && y < g.h && xx >= 0 && xx < g.w ? x[c * g.sc + y * g.sh + xx * g.sw]
                                                          : T(0);
    }
}

// Input element i of the image (row-major [c, h, w]): the sum over the kernel
// positions (in order) whose output position reads it.
template <typename T>
__global__ void col2im_kernel(T *x, const T *col, im2col_geom g, int64_t total)
{
    KLOOP(i, total)
    {
        int64_t xx = i % g.w, r = i / g.w, y = r % g.h, c = r / g.h;
        T sum = 0;
        for (int64_t ki = 0; ki < g.kh; ki++) {
            int64_t ty = y + g.padding[0] - ki * g.dilation[0];
            if (ty < 0 || ty % g.stride[0] != 0 || ty / g.stride[0] >= g.oh)
                continue;
            for (int64_t j = 0; j < g.kw; j++) {
                int64_t tx = xx + g.padding[1] - j * g.dilation[1];
                if (tx < 0 || tx % g.stride[1] != 0 || tx / g.stride[1] >= g.ow)
                    continue;
                sum += col[((c * g.kh + ki) * g.kw + j) * g.oh * g.ow +
                           ty / g.stride[0] * g.ow + tx / g.stride[1]];
            }
        }
        x[c * g.sc + y * g.sh + xx * g.sw] = sum;
    }
}

extern "C" int cuda_im2col(tensor *col, const tensor *x, int64_t n, const im2col_geom *g)
{
    int64_t total = tensor_numel(col);
    cudaStream_t s = kstream(col);
    if (total == 0 || !s)
        return s ? 0 : -1;
    return by_dtype(x->dtype, "conv2d (im2col)", [&](auto z) {
        using T = decltype(z);
        im2col_kernel<T><<<kblocks(total), KTHREADS, 0, s>>>(
            (T *)tensor_data(col), (const T *)tensor_data(x) + n * x->stride[0], *g, total);
    });
}

extern "C" int cuda_col2im(tensor *gx, int64_t n, const tensor *col, const im2col_geom *g)
{
    int64_t total = g->c * g->h * g->w;
    cudaStream_t s = kstream(gx);
    if (total == 0 || !s)
        return s ? 0 : -1;
    return by_dtype(gx->dtype, "conv2d (col2im)", [&](auto z) {
        using T = decltype(z);
        col2im_kernel<T><<<kblocks(total), KTHREADS, 0, s>>>(
            (T *)tensor_data(gx) + n * gx->stride[0], (const T *)tensor_data(col), *g, total);
    });
}
