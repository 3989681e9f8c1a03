// Optimizer updates on the GPU: fused multi-tensor Adam/AdamW and SGD steps.
// CPU twin: csrc/optim.c adam_range_* (adam_moments_*, adam_apply_*) / sgd_*
// (sgd_range_*, sgd_loop_*); the entry points are declared in
// csrc/cuda/optim_cuda.h, and csrc/optim.c calls them after its checks.
//
// One launch updates up to OPTIM_CUDA_TENSORS_PER_LAUNCH tensors: their pointers,
// sizes and per-tensor scalars travel by value in the kernel's parameter block
// (a table under 4 KB). Each tensor is cut into chunks of OPTIM_CHUNK elements;
// the launch's chunks are numbered through the tensors in order (chunk_end holds
// the running totals), and each block takes chunks blockIdx.x, + gridDim.x, ...,
// finds its tensor by a binary search that every thread of the block does alike,
// and updates the chunk's elements with its threads side by side (coalesced).
//
// The arithmetic is the CPU loops', operation by operation and in the same
// order, in float for float32 and double for float64, the scalars computed in
// double by optim.c and rounded to the dtype here (as the CPU loops round them).
// Every operation is an explicit round-to-nearest intrinsic (__fmul_rn, ...):
// nvcc would otherwise contract a * b + c into a fused multiply-add, which the
// CPU build (x86-64 without FMA) does not do, and the results would differ in the
// last bit. Division and square root are the IEEE ones (__fdiv_rn, __fsqrt_rn),
// whatever -prec-div / -prec-sqrt / -use_fast_math say.
#include "common.cuh"

extern "C" {
#include "../csrc/cuda/optim_cuda.h"
}

namespace {

// Elements per chunk: 16 per thread of a 256-thread block.
constexpr int64_t OPTIM_CHUNK = 4096;
constexpr int K = OPTIM_CUDA_TENSORS_PER_LAUNCH;
// Blocks per launch at most (grid-stride over the chunks beyond), as kblocks.
constexpr int64_t OPTIM_MAX_BLOCKS = 65536;

// IEEE operations rounded to nearest, never fused, per dtype.
template <typename T> struct fop;

template <> struct fop<float> {
    static __device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
    static __device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
    static __device__ __forceinline__ float div(float a, float b) { return __fdiv_rn(a, b); }
    static __device__ __forceinline__ float sqrt(float a) { return __fsqrt_rn(a); }
    // A double scalar rounded to float, as the CPU's (float) cast rounds it.
    static __device__ __forceinline__ float cvt(double x) { return __double2float_rn(x); }
};

template <> struct fop<double> {
    static __device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
    static __device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
    static __device__ __forceinline__ double div(double a, double b) { return __ddiv_rn(a, b); }
    static __device__ __forceinline__ double sqrt(double a) { return __dsqrt_rn(a); }
    static __device__ __forceinline__ double cvt(double x) { return x; }
};

// One Adam launch's tensors (structure of arrays, indexed by the tensor's place).
struct adam_table {
    int count;               // tensors in this launch, 1..K
    int64_t chunk_end[K];    // chunks of tensors 0..t together
    int64_t numel[K];
    void *p[K], *m[K], *v[K], *vmax[K];
    const void *g[K];
    double bc2_sqrt[K], neg_step_size[K];
};

// One SGD launch's tensors.
struct sgd_table {
    int count;
    int64_t chunk_end[K];
    int64_t numel[K];
    void *p[K], *buf[K];
    const void *g[K];
    double buf_mom[K], a[K];
    bool first[K];
};

// The kernel parameter block of every architecture holds 4 KB.
static_assert(sizeof(adam_table) + sizeof(optim_cuda_adam_hp) <= 4000,
              "the Adam table must fit the 4 KB kernel parameter block");
static_assert(sizeof(sgd_table) + sizeof(optim_cuda_sgd_hp) <= 4000,
              "the SGD table must fit the 4 KB kernel parameter block");

// The tensor that chunk c belongs to: the first t with chunk_end[t] > c. c is the
// same for the whole block, so the reads are uniform.
template <typename Table>
__device__ __forceinline__ int find_tensor(const Table &tab, int64_t c)
{
    int lo = 0, hi = tab.count - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (tab.chunk_end[mid] > c)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

// Where chunk c of a table lies: its tensor t and that tensor's elements
// [begin, end).
struct chunk_span {
    int t;
    int64_t begin, end;
};

template <typename Table>
__device__ __forceinline__ chunk_span chunk_at(const Table &tab, int64_t c)
{
    const int t = find_tensor(tab, c);
    const int64_t c0 = t > 0 ? tab.chunk_end[t - 1] : 0;
    const int64_t begin = (c - c0) * OPTIM_CHUNK, n = tab.numel[t];
    const int64_t end = begin + OPTIM_CHUNK < n ? begin + OPTIM_CHUNK : n;
    return {t, begin, end};
}

// Adam over every chunk of the table. L2 and AMS are the CPU loops' l2 and ams
// (each combination its own branch-free kernel, as each is its own CPU loop).
// Per element, as adam_moments_* then adam_apply_* (s = sqrt of the second
// moment that normalises):
//   g' = sgn * g (+ wd * p);  m = m * b1 + a1 * g';  v = v * b2 + (a2 * g') * g'
//   [amsgrad: vmax = vmax > v ? vmax : v, normalising by it]
//   p = p * decay + (neg_step_size * m) / (sqrt(v) / bc2_sqrt + eps)
template <typename T, bool L2, bool AMS>
__global__ void __launch_bounds__(KTHREADS)
adam_kernel(const adam_table tab, const optim_cuda_adam_hp hp)
{
    using F = fop<T>;
    const T sgn = F::cvt(hp.sgn), wd = F::cvt(hp.wd), b1 = F::cvt(hp.b1), a1 = F::cvt(hp.a1),
            b2 = F::cvt(hp.b2), a2 = F::cvt(hp.a2), decay = F::cvt(hp.decay),
            eps = F::cvt(hp.eps);
    const int64_t chunks = tab.chunk_end[tab.count - 1];
    for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
        const auto [t, begin, end] = chunk_at(tab, c);
        T *__restrict__ p = static_cast<T *>(tab.p[t]);
        T *__restrict__ m = static_cast<T *>(tab.m[t]);
        T *__restrict__ v = static_cast<T *>(tab.v[t]);
        const T *__restrict__ g = static_cast<const T *>(tab.g[t]);
        const T bc = F::cvt(tab.bc2_sqrt[t]), ns = F::cvt(tab.neg_step_size[t]);
        for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
            // adam_moments_*
            const T p0 = p[i];
            T gi = F::mul(sgn, g[i]);
            if constexpr (L2)
                gi = F::add(gi, F::mul(wd, p0));
            T mi = F::mul(m[i], b1);
            mi = F::add(mi, F::mul(a1, gi));
            T vi = F::mul(v[i], b2);
            vi = F::add(vi, F::mul(F::mul(a2, gi), gi));
            m[i] = mi;
            v[i] = vi;
            if constexpr (AMS) {
                T *__restrict__ vmax = static_cast<T *>(tab.vmax[t]);
                const T mx = vmax[i];
                vi = mx > vi ? mx : vi; // not fmax: NaN goes as on the CPU
                vmax[i] = vi;
            }
            // sqrt_f32 / sqrt_f64, then adam_apply_*
            const T s = F::sqrt(vi);
            const T denom = F::add(F::div(s, bc), eps);
            const T pi = F::mul(p0, decay);
            p[i] = F::add(pi, F::div(F::mul(ns, mi), denom));
        }
    }
}

// SGD over every chunk of the table, as sgd_loop_*:
//   d = sgn * g (+ wd * p)
//   [momentum: buf = buf * buf_mom + a * d (buf read as 0 on the first step, where
//    the CPU zeroes it); d = nesterov ? d + mom * buf : buf]
//   p = p + neg_lr * d
template <typename T, bool L2, bool BUF, bool NESTEROV>
__global__ void __launch_bounds__(KTHREADS)
sgd_kernel(const sgd_table tab, const optim_cuda_sgd_hp hp)
{
    using F = fop<T>;
    const T sgn = F::cvt(hp.sgn), wd = F::cvt(hp.wd), mom = F::cvt(hp.mom),
            nlr = F::cvt(hp.neg_lr);
    const int64_t chunks = tab.chunk_end[tab.count - 1];
    for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
        const auto [t, begin, end] = chunk_at(tab, c);
        T *__restrict__ p = static_cast<T *>(tab.p[t]);
        const T *__restrict__ g = static_cast<const T *>(tab.g[t]);
        for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const T pi = p[i];
            T d = F::mul(sgn, g[i]);
            if constexpr (L2)
                d = F::add(d, F::mul(wd, pi));
            if constexpr (BUF) {
                T *__restrict__ buf = static_cast<T *>(tab.buf[t]);
                const T bm = F::cvt(tab.buf_mom[t]), a = F::cvt(tab.a[t]);
                const T b0 = tab.first[t] ? T(0) : buf[i];
                T bi = F::mul(b0, bm);
                bi = F::add(bi, F::mul(a, d));
                buf[i] = bi;
                if constexpr (NESTEROV)
                    d = F::add(d, F::mul(mom, bi));
                else
                    d = bi;
            }
            p[i] = F::add(pi, F::mul(nlr, d));
        }
    }
}

// Blocks for a launch of `chunks` chunks.
unsigned grid_for(int64_t chunks)
{
    return (unsigned)(chunks < OPTIM_MAX_BLOCKS ? chunks : OPTIM_MAX_BLOCKS);
}

// The digest of a table's tensors: their count, sizes and pointers (not the
// scalars), over the places in use only (the rest of the table is not set).
uint64_t tensors_key(const adam_table &t)
{
    const size_t n = (size_t)t.count;
    uint64_t h = cuda_ctx_key(CUDA_CTX_KEY_SEED, &t.count, sizeof t.count);
    h = cuda_ctx_key(h, t.chunk_end, n * sizeof *t.chunk_end);
    h = cuda_ctx_key(h, t.numel, n * sizeof *t.numel);
    const void *const *arrays[] = {t.p, t.m, t.v, t.vmax, t.g};
    for (const void *const *ps : arrays)
        h = cuda_ctx_key(h, ps, n * sizeof(void *));
    return h;
}

uint64_t tensors_key(const sgd_table &t)
{
    const size_t n = (size_t)t.count;
    uint64_t h = cuda_ctx_key(CUDA_CTX_KEY_SEED, &t.count, sizeof t.count);
    h = cuda_ctx_key(h, t.chunk_end, n * sizeof *t.chunk_end);
    h = cuda_ctx_key(h, t.numel, n * sizeof *t.numel);
    const void *const *arrays[] = {t.p, t.buf, t.g};
    for (const void *const *ps : arrays)
        h = cuda_ctx_key(h, ps, n * sizeof(void *));
    return h;
}

// Launch kernel k on the table and the hyper-parameters, as an updatable launch
// (csrc/cuda/cuda_ctx.h): inside a CUDA graph, the step's scalars are rewritten
// before each replay, its tensors must stay the captured ones.
template <typename Table, typename Hp>
int launch(const char *who, int device, void (*k)(Table, Hp), int64_t chunks, Table &tab,
           const Hp &hp)
{
    void *args[] = {&tab, const_cast<Hp *>(&hp)};
#ifdef MILES_EMU
    emu::note(k); // the emulated GPU runs it from cudaLaunchKernel's arguments
#endif
    return cuda_ctx_launch(device, who, reinterpret_cast<const void *>(k), grid_for(chunks),
                           KTHREADS, args, tensors_key(tab));
}

// Launch the Adam kernel of the table's flags on its filled table, then empty it.
template <typename T>
int adam_flush(const char *who, int device, adam_table &tab, int64_t chunks,
               const optim_cuda_adam_hp &hp)
{
    if (tab.count == 0)
        return 0;
    auto k = hp.amsgrad ? (hp.l2 ? adam_kernel<T, true, true> : adam_kernel<T, false, true>)
                        : (hp.l2 ? adam_kernel<T, true, false> : adam_kernel<T, false, false>);
    const int rc = launch(who, device, k, chunks, tab, hp);
    tab.count = 0;
    return rc;
}

// Pack the n tensors ts into tab, up to K at a time, and launch each full table
// and the last one: fill(k, x) stores tensor x's own fields at place k, and
// flush(chunks) launches the table's `chunks` chunks and empties it. Empty
// tensors take no place.
template <typename Table, typename Tensor, typename Fill, typename Flush>
int pack_and_flush(Table &tab, int n, const Tensor *ts, Fill fill, Flush flush)
{
    tab.count = 0;
    int64_t chunks = 0;
    for (int i = 0; i < n; i++) {
        const Tensor &x = ts[i];
        if (x.numel <= 0)
            continue;
        const int k = tab.count++;
        chunks += (x.numel + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
        tab.chunk_end[k] = chunks;
        tab.numel[k] = x.numel;
        fill(k, x);
        if (tab.count == K) {
            if (flush(chunks) != 0)
                return -1;
            chunks = 0;
        }
    }
    return flush(chunks);
}

// Pack the tensors into tables of up to K and launch each (one launch for K or
// fewer tensors).
template <typename T>
int adam_all(const char *who, int device, int n, const optim_cuda_adam_tensor *ts,
             const optim_cuda_adam_hp &hp)
{
    adam_table tab;
    return pack_and_flush(
        tab, n, ts,
        [&](int k, const optim_cuda_adam_tensor &x) {
            tab.p[k] = x.p;
            tab.m[k] = x.m;
            tab.v[k] = x.v;
            tab.vmax[k] = hp.amsgrad ? x.vmax : nullptr;
            tab.g[k] = x.g;
            tab.bc2_sqrt[k] = x.bc2_sqrt;
            tab.neg_step_size[k] = x.neg_step_size;
        },
        [&](int64_t chunks) { return adam_flush<T>(who, device, tab, chunks, hp); });
}

// The SGD twin of adam_flush.
template <typename T>
int sgd_flush(int device, sgd_table &tab, int64_t chunks, const optim_cuda_sgd_hp &hp)
{
    if (tab.count == 0)
        return 0;
    auto k = !hp.with_buf ? (hp.l2 ? sgd_kernel<T, true, false, false>
                                   : sgd_kernel<T, false, false, false>)
             : hp.nesterov ? (hp.l2 ? sgd_kernel<T, true, true, true>
                                    : sgd_kernel<T, false, true, true>)
                           : (hp.l2 ? sgd_kernel<T, true, true, false>
                                    : sgd_kernel<T, false, true, false>);
    const int rc = launch("sgd", device, k, chunks, tab, hp);
    tab.count = 0;
    return rc;
}

// The SGD twin of adam_all.
template <typename T>
int sgd_all(int device, int n, const optim_cuda_sgd_tensor *ts, const optim_cuda_sgd_hp &hp)
{
    sgd_table tab;
    return pack_and_flush(
        tab, n, ts,
        [&](int k, const optim_cuda_sgd_tensor &x) {
            tab.p[k] = x.p;
            tab.buf[k] = hp.with_buf ? x.buf : nullptr;
            tab.g[k] = x.g;
            tab.buf_mom[k] = x.buf_mom;
            tab.a[k] = x.a;
            tab.first[k] = x.first;
        },
        [&](int64_t chunks) { return sgd_flush<T>(device, tab, chunks, hp); });
}

} // namespace

extern "C" int optim_cuda_adam(const char *who, int device, dtype_t dt, int n,
                               const optim_cuda_adam_tensor *ts, const optim_cuda_adam_hp *hp)
{
    if (n <= 0)
        return 0;
    if (dt != DT_F32 && dt != DT_F64)
        return err_set("%s: parameters must be float32 or float64, got %s", who,
                       dtype_name(dt));
    return dt == DT_F32 ? adam_all<float>(who, device, n, ts, *hp)
                        : adam_all<double>(who, device, n, ts, *hp);
}

extern "C" int optim_cuda_sgd(int device, dtype_t dt, int n, const optim_cuda_sgd_tensor *ts,
                              const optim_cuda_sgd_hp *hp)
{
    if (n <= 0)
        return 0;
    if (dt != DT_F32 && dt != DT_F64)
        return err_set("sgd: parameters must be float32 or float64, got %s", dtype_name(dt));
    return dt == DT_F32 ? sgd_all<float>(device, n, ts, *hp) : sgd_all<double>(device, n, ts, *hp);
}
