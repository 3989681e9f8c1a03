// What every kernel file shares: the core's headers, tensor geometry passed to
// kernels by value, grid-stride loops, the float/double (and bfloat16) dispatch,
// unfused products, and the thread groups that reduce a row together.
#ifndef MILES_KERNELS_COMMON_CUH
#define MILES_KERNELS_COMMON_CUH

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "../csrc/cuda/cuda_ctx.h"
#include "../csrc/cuda/kernels.h"
#include "../csrc/dispatch.h"
#include "../csrc/error.h"
}

#define KTHREADS 256

// A tensor's shape and strides (elements), for kernels that walk any layout.
// The storage offset is already in the data pointer (tensor_data).
struct kgeom {
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
};

static inline kgeom kgeom_of(const tensor *t)
{
    kgeom g;
    g.ndim = t->ndim;
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) {
        g.shape[i] = i < t->ndim ? t->shape[i] : 1;
        g.stride[i] = i < t->ndim ? t->stride[i] : 0;
    }
    return g;
}

// The element offset of the i-th element in row-major order of the shape.
__device__ __forceinline__ int64_t kgeom_offset(const kgeom &g, int64_t i)
{
    int64_t off = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t s = g.shape[d];
        off += (i % s) * g.stride[d];
        i /= s;
    }
    return off;
}

// V neighbouring elements of T, loaded and stored at once: one 16-byte access
// in the kernels that read 16 bytes at a time (V = 1: one element).
template <typename T, int V> struct alignas(sizeof(T) * V) kvec {
    T e[V];
};

// The V elements of p from element i on (p + i aligned for them), and back.
template <int V, typename T> __device__ inline kvec<T, V> kvld(const T *p, int64_t i)
{
    return *reinterpret_cast<const kvec<T, V> *>(p + i);
}

template <int V, typename T> __device__ inline void kvst(T *p, int64_t i, const kvec<T, V> &v)
{
    *reinterpret_cast<kvec<T, V> *>(p + i) = v;
}

// The next loop unrolled whole (a constant trip count): arrays that it indexes
// stay in registers instead of local memory.
#ifndef KUNROLL
#define KUNROLL _Pragma("unroll")
#endif

#define KLOOP(i, n)                                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)blockDim.x * gridDim.x)

// The stream of the GPU a tensor lives on (making that GPU current), or NULL
// with the error set.
static inline cudaStream_t kstream(const tensor *t)
{
    return cuda_ctx_stream(tensor_device(t).index);
}

static inline unsigned kblocks(int64_t n)
{
    return cuda_ctx_blocks((long long)n, KTHREADS);
}

// Call f with a value of the C++ type of dt (float32, float64), then report the
// launch(es); any other dtype is an error.
template <typename F> int by_dtype(dtype_t dt, const char *what, F f)
{
    switch (dt) {
    case DT_F32:
        f(float());
        break;
    case DT_F64:
        f(double());
        break;
    default:
        return err_set("%s: no CUDA kernel for %s", what, dtype_name(dt));
    }
    return cuda_ctx_launched(what);
}

// bfloat16 is a storage type: a kernel computes in compute_t of its element type
// (float32 for bfloat16, else the type itself), reading each element through
// kwiden and storing each result through knarrow (to nearest, ties to even), as
// csrc/widen.c's float32 copies do on the CPU.
template <typename T> struct kcompute {
    using type = T;
};
template <> struct kcompute<__nv_bfloat16> {
    using type = float;
};
template <typename T> using compute_t = typename kcompute<T>::type;

__host__ __device__ inline float kwiden(__nv_bfloat16 x)
{
    return __bfloat162float(x);
}
__host__ __device__ inline float kwiden(float x)
{
    return x;
}
__host__ __device__ inline double kwiden(double x)
{
    return x;
}

template <typename T> __host__ __device__ inline T knarrow(compute_t<T> v)
{
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        return __float2bfloat16_rn(v);
    else
        return v;
}

// by_dtype with bfloat16 too: f gets a value of its storage type.
template <typename F> int by_dtype_bf16(dtype_t dt, const char *what, F f)
{
    if (dt != DT_BF16)
        return by_dtype(dt, what, f);
    f(__nv_bfloat16());
    return cuda_ctx_launched(what);
}

// a * b rounded on its own: the GPU would otherwise fuse it with a following
// add, which the CPU twins (built for plain x86-64) do not.
__host__ __device__ inline float kmul(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

__host__ __device__ inline double kmul(double a, double b)
{
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

// --- threads that reduce one row together (reduce.cu, softmax.cu) ---
//
// A group's threads each fold the elements rank, rank + size, ... of a row, in
// order; all() then combines their partial results as a fixed tree and gives the
// result to every one of them (two-pass reductions need it everywhere). Rows are
// visited first_row(), first_row() + row_step(), ...

// The ways to combine two partial results shared by the reductions; each is
// commutative, so every thread of a butterfly gets the same bits.
struct add_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct fmax_op { // ignores NaN, as the CPU's fmax does
    __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

// The value of lane (this lane ^ lane_mask); a file overloads it for its own
// structs (found through their namespace when warp_all is instantiated).
template <typename T> __device__ __forceinline__ T shfl_xor(T v, int lane_mask)
{
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

// Every lane of the warp gets op over the 32 lanes' values.
template <typename T, typename Op> __device__ T warp_all(T v, Op op)
{
    for (int m = 16; m > 0; m >>= 1)
        v = op(v, shfl_xor(v, m));
    return v;
}

// One slot per warp of shared scratch for block_group's all(): raw bytes, as
// large and as aligned as the largest type it combines (best<double>), used as
// an array of whatever type all() combines.
#define WARP_SCRATCH_SLOT 16
__shared__ __align__(16) unsigned char warp_scratch[32 * WARP_SCRATCH_SLOT];

// A thread per row.
struct thread_group {
    static constexpr int MAX_THREADS = KTHREADS;
    __device__ int rank() const { return 0; }
    __device__ int size() const { return 1; }
    __device__ int64_t first_row() const { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
    __device__ int64_t row_step() const { return (int64_t)gridDim.x * blockDim.x; }
    template <typename T, typename Op> __device__ T all(T v, Op) const { return v; }
};

// A warp per row.
struct warp_group {
    static constexpr int MAX_THREADS = KTHREADS;
    __device__ int rank() const { return threadIdx.x & 31; }
    __device__ int size() const { return 32; }
    __device__ int64_t first_row() const
    {
        return (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    }
    __device__ int64_t row_step() const { return (int64_t)gridDim.x * (blockDim.x >> 5); }
    template <typename T, typename Op> __device__ T all(T v, Op op) const
    {
        return warp_all(v, op);
    }
};

// The block per row; Scratch is the largest type all() combines.
template <typename Scratch> struct block_group {
    static constexpr int MAX_THREADS = 1024;
    __device__ int rank() const { return threadIdx.x; }
    __device__ int size() const { return blockDim.x; }
    __device__ int64_t first_row() const { return blockIdx.x; }
    __device__ int64_t row_step() const { return gridDim.x; }
    template <typename T, typename Op> __device__ T all(T v, Op op) const
    {
        static_assert(sizeof(T) <= sizeof(Scratch) && sizeof(Scratch) <= WARP_SCRATCH_SLOT &&
                          alignof(Scratch) <= 16,
                      "block_group: Scratch too small, or larger than a scratch slot");
        T *part = reinterpret_cast<T *>(warp_scratch);
        v = warp_all(v, op);
        __syncthreads(); // the previous call's readers are done with part
        if ((threadIdx.x & 31) == 0)
            part[threadIdx.x >> 5] = v;
        __syncthreads();
        v = part[0];
        for (unsigned w = 1; w < blockDim.x >> 5; w++)
            v = op(v, part[w]);
        return v;
    }
};

// op over load(0), ..., load(n - 1), starting from acc (op's identity) and in
// acc's type; every thread of the group must call it, those without elements
// with n = 0.
template <typename G, typename A, typename Load, typename Op>
__device__ A group_reduce(const G &g, int64_t n, A acc, Load load, Op op)
{
    for (int64_t j = g.rank(); j < n; j += g.size())
        acc = op(acc, load(j));
    return g.all(acc, op);
}

#endif
