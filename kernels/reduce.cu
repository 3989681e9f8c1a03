// Reductions over the middle dim of a contiguous [outer, n, inner] tensor: the CUDA
// twin of csrc/cpu/reduce.c. As there, float reductions run in double (float32 sums
// do not drift with n), integer sum, prod, max and min are exact (sums and products
// wrap around), logsumexp and var take two passes, and max/min report the first
// NaN, else the first maximum (minimum). Only the order of the operations differs:
// each row is combined as a fixed tree, not left to right, so float sums and
// products may differ from the CPU's in the last bits (the same on every run).
// bfloat16 is read as float32; a result is rounded to float32, then to bf16, as
// the CPU's float32 copies of it are (common.cuh).
#include <cmath>
#include <type_traits>

#include "common.cuh"

namespace {

// The best (max or min) value so far and its position; i == NONE before any.
constexpr int64_t NONE = INT64_MAX;
template <typename V> struct best {
    V v;
    int64_t i;
};

__device__ __forceinline__ bool knan(float v) { return isnan(v); }
__device__ __forceinline__ bool knan(double v) { return isnan(v); }
__device__ __forceinline__ bool knan(int64_t) { return false; }

// The ways to combine two partial results besides common.cuh's add_op and
// fmax_op. Each is commutative (better_op breaks ties by position), so every
// thread of a butterfly gets the same bits.
struct mul_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a * b; }
};
struct better_op {
    bool is_max;
    template <typename V> __device__ best<V> operator()(best<V> a, best<V> b) const
    {
        bool an = knan(a.v), bn = knan(b.v);
        if (an != bn)
            return an ? a : b;
        if (!an && a.v != b.v)
            return (is_max ? a.v > b.v : a.v < b.v) ? a : b;
        return a.i < b.i ? a : b; // equal, or both NaN: the first
    }
};

// A best<V> across the lanes of a warp, for common.cuh's warp_all.
template <typename V> __device__ __forceinline__ best<V> shfl_xor(best<V> b, int lane_mask)
{
    return {::shfl_xor(b.v, lane_mask), ::shfl_xor(b.i, lane_mask)};
}

// The groups of threads that reduce one row together are common.cuh's: a thread
// per row (inner == 1, very short rows: the warp's loads still fall into a few
// lines, and no combining is needed), a warp per row (inner == 1, short rows),
// the block per row (inner == 1, long rows; its scratch sized for best<double>,
// the largest accumulator), and col_group below (inner > 1).
using row_block_group = block_group<best<double>>;

// Scratch for col_group's partial results, one slot per thread, for every
// accumulator type (best<double> is the largest).
__shared__ best<double> col_scratch[32 * 32];

// A column of the block per output (inner > 1): threadIdx.x runs along inner, so
// loads are coalesced, and the blockDim.y threads of a column split its row.
struct col_group {
    __device__ int rank() const { return threadIdx.y; }
    __device__ int size() const { return blockDim.y; }
    template <typename T, typename Op> __device__ T all(T v, Op op) const
    {
        T *part = reinterpret_cast<T *>(col_scratch);
        __syncthreads(); // the previous call's readers are done with part
        part[threadIdx.y * 32 + threadIdx.x] = v;
        __syncthreads();
        v = part[threadIdx.x];
        for (unsigned y = 1; y < blockDim.y; y++)
            v = op(v, part[y * 32 + threadIdx.x]);
        return v;
    }
};

// The float reductions of x[0], x[st], ..., x[(n-1) st] (reduce_run on the CPU;
// bfloat16 read as float32); *arg gets the position of the max/min.
template <typename G, typename T>
__device__ double reduce_float(const G &g, reduce_op op, const T *x, int64_t n, int64_t st,
                               double p0, int64_t *arg)
{
    using C = compute_t<T>;
    auto at = [=](int64_t j) { return (double)kwiden(x[j * st]); };
    switch (op) {
    case RED_SUM: return group_reduce(g, n, 0.0, at, add_op());
    case RED_PROD: return group_reduce(g, n, 1.0, at, mul_op());
    case RED_MAX:
    case RED_MIN: {
        bool is_max = op == RED_MAX;
        best<C> none = {is_max ? (C)-INFINITY : (C)INFINITY, NONE};
        best<C> b = group_reduce(
            g, n, none, [=](int64_t j) { return best<C>{kwiden(x[j * st]), j}; },
            better_op{is_max});
        if (b.i == NONE) // n == 0: the CPU gives NaN at 0
            return NAN;
        *arg = b.i;
        return b.v;
    }
    case RED_LOGSUMEXP: {
        // a double start value: the max is kept in its type (a float one would overflow)
        double m = group_reduce(g, n, (double)-INFINITY, at, fmax_op());
        // Run even when m is infinite, so that every thread reaches the barriers.
        double s = group_reduce(
            g, n, 0.0, [=](int64_t j) { return exp(at(j) - m); }, add_op());
        return isinf(m) ? m : m + log(s);
    }
    case RED_VAR: {
        double mean = group_reduce(g, n, 0.0, at, add_op()) / (double)n;
        double ss = group_reduce(
            g, n, 0.0,
            [=](int64_t j) {
                double d = at(j) - mean;
                return d * d;
            },
            add_op());
        double dof = (double)n - p0;
        return dof > 0 ? ss / dof : NAN;
    }
    default: return 0;
    }
}

// The exact integer sum, prod, max and min (reduce_run_int on the CPU); T is
// uint8_t (bool and uint8, read as bytes) or int64_t.
template <typename G, typename T>
__device__ int64_t reduce_int(const G &g, reduce_op op, const T *x, int64_t n, int64_t st,
                              int64_t *arg)
{
    auto at = [=](int64_t j) { return (uint64_t)(int64_t)x[j * st]; };
    switch (op) {
    case RED_SUM: return (int64_t)group_reduce(g, n, (uint64_t)0, at, add_op());
    case RED_PROD: return (int64_t)group_reduce(g, n, (uint64_t)1, at, mul_op());
    case RED_MAX:
    case RED_MIN: {
        bool is_max = op == RED_MAX;
        best<int64_t> none = {is_max ? INT64_MIN : INT64_MAX, NONE};
        best<int64_t> b = group_reduce(
            g, n, none, [=](int64_t j) { return best<int64_t>{(int64_t)x[j * st], j}; },
            better_op{is_max});
        if (b.i == NONE) // n == 0: the CPU gives 0 at 0
            return 0;
        *arg = b.i;
        return b.v;
    }
    default: return 0; // logsumexp and var get float input (the op converts)
    }
}

// What every reduction kernel gets. out has the input's dtype for float input; for
// integer input, int64 (sum, prod) or the input's dtype (max, min).
struct red_args {
    reduce_op op;
    void *out;
    dtype_t out_dt;
    int64_t *idx; // the max/min positions, or NULL
    int64_t outer, n, inner;
    double p0;
};

// The CPU's dtype_store for the exact integer results.
__device__ __forceinline__ void store_int(dtype_t dt, void *out, int64_t r, int64_t v)
{
    switch (dt) {
    case DT_BOOL: static_cast<uint8_t *>(out)[r] = v != 0; break;
    case DT_U8: static_cast<uint8_t *>(out)[r] = (uint8_t)v; break;
    default: static_cast<int64_t *>(out)[r] = v; break; // DT_I64
    }
}

// Reduce the row of output r starting at x (n elements, p.inner apart); the
// group's first thread stores the result when live.
template <typename G, typename T>
__device__ void reduce_row(const G &g, const red_args &p, const T *x, int64_t n, int64_t r,
                           bool live)
{
    int64_t arg = 0;
    bool lead = live && g.rank() == 0;
    if constexpr (std::is_floating_point_v<compute_t<T>>) { // bfloat16's is float
        double v = reduce_float(g, p.op, x, n, p.inner, p.p0, &arg);
        if (lead)
            static_cast<T *>(p.out)[r] = knarrow<T>((compute_t<T>)v);
    } else {
        int64_t v = reduce_int(g, p.op, x, n, p.inner, &arg);
        if (lead)
            store_int(p.out_dt, p.out, r, v);
    }
    if (lead && p.idx)
        p.idx[r] = arg;
}

// inner == 1 (so the rows are the outer indices): a thread, a warp or the block per
// row.
template <typename G, typename T>
__global__ void __launch_bounds__(G::MAX_THREADS) reduce_rows(red_args p, const T *a)
{
    G g;
    for (int64_t r = g.first_row(); r < p.outer; r += g.row_step())
        reduce_row(g, p, a + r * p.n, p.n, r, true);
}

// inner > 1: each block takes tiles of 32 outputs along inner of one outer index.
// All threads of the block take part in every tile (col_group's barriers); those
// past the end of inner reduce nothing.
template <typename T>
__global__ void __launch_bounds__(1024) reduce_cols(red_args p, const T *a)
{
    col_group g;
    int64_t per_outer = (p.inner + 31) / 32;
    for (int64_t t = blockIdx.x; t < p.outer * per_outer; t += gridDim.x) {
        int64_t o = t / per_outer, i = (t % per_outer) * 32 + threadIdx.x;
        bool live = i < p.inner;
        const T *x = a + o * p.n * p.inner + (live ? i : 0);
        reduce_row(g, p, x, live ? p.n : 0, o * p.inner + i, live);
    }
}

// Rows up to THREAD_ROW_MAX long get a thread each, up to WARP_ROW_MAX a warp each,
// longer ones a block.
constexpr int64_t THREAD_ROW_MAX = 8;
constexpr int64_t WARP_ROW_MAX = 1024;
// Below this many rows (or tiles), blocks of 1024 threads: few blocks would
// leave most of the GPU idle.
constexpr int64_t FEW = 256;

template <typename T>
static int launch_reduce(const red_args &p, const T *a, cudaStream_t s)
{
    if (p.inner > 1) {
        int64_t tiles = p.outer * ((p.inner + 31) / 32);
        dim3 block(32, tiles < FEW && p.n >= FEW ? 32 : 8);
        reduce_cols<T><<<cuda_ctx_blocks(tiles, 1), block, 0, s>>>(p, a);
    } else if (p.n <= THREAD_ROW_MAX) {
        reduce_rows<thread_group, T><<<kblocks(p.outer), KTHREADS, 0, s>>>(p, a);
    } else if (p.n <= WARP_ROW_MAX) {
        reduce_rows<warp_group, T>
            <<<cuda_ctx_blocks(p.outer, KTHREADS / 32), KTHREADS, 0, s>>>(p, a);
    } else {
        unsigned threads = p.outer < FEW ? 1024 : KTHREADS;
        reduce_rows<row_block_group, T><<<cuda_ctx_blocks(p.outer, 1), threads, 0, s>>>(p, a);
    }
    return cuda_ctx_launched("reduce");
}

} // namespace

extern "C" int cuda_reduce(reduce_op op, tensor *out, tensor *idx, const tensor *a,
                           int64_t outer, int64_t n, int64_t inner, double p0)
{
    if (outer * inner == 0)
        return 0;
    if (!dtype_is_float(a->dtype) && op > RED_MIN)
        return err_set("reduce: %s input needs a float type", dtype_name(a->dtype));
    cudaStream_t s = kstream(a);
    if (!s)
        return -1;
    int64_t *ib = idx ? static_cast<int64_t *>(tensor_data(idx)) : NULL;
    red_args p = {op, tensor_data(out), out->dtype, ib, outer, n, inner, p0};
    const void *x = tensor_data(a);
    switch (a->dtype) {
    case DT_F32: return launch_reduce(p, static_cast<const float *>(x), s);
    case DT_F64: return launch_reduce(p, static_cast<const double *>(x), s);
    case DT_BF16: return launch_reduce(p, static_cast<const __nv_bfloat16 *>(x), s);
    case DT_BOOL:
    case DT_U8: return launch_reduce(p, static_cast<const uint8_t *>(x), s);
    case DT_I64: return launch_reduce(p, static_cast<const int64_t *>(x), s);
    default: return err_set("reduce: unsupported dtype %s", dtype_name(a->dtype));
    }
}
