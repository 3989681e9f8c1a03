// Batch normalisation on the GPU (twin: csrc/cpu/batchnorm.c): our kernels, for
// the problems csrc/cuda/cudnn_norm.c does not give cuDNN (and the statistics
// of an evaluation that cuDNN normalises).
//
// x is contiguous [N, C, ...] ("planes": N*C runs of S positions, S the product
// of the spatial dims) or channels-last [N, C, H, W] ("rows": N*S rows of C
// values); y, gy and gx are in x's layout. Contiguous [N, C] (S = 1) is rows too.
//
// The per-channel sums (of x and x^2; of gy and gy*x) are in double, as on the
// CPU, and deterministic (no atomics): blocks sum chunks of positions into a
// scratch array of partial sums, then one block per channel adds its partials in
// a fixed order and derives the channel's coefficients, and an elementwise pass
// applies them. The statistics are the CPU's: one pass for the sum and the sum
// of squares, the biased variance to normalise, the unbiased one for the running
// variance. Products that the CPU rounds on their own are rounded so here too
// (kmul), so that evaluation mode, which has no sums, matches it bit for bit.
//
// A bfloat16 x (and y, gy, gx, residual) has float32 parameters and statistics;
// the elementwise pass computes in float32 and rounds once (common.cuh's
// compute_t), as the CPU's float32 copies do (csrc/widen.c). S below is the
// activations' storage type, T the parameters'.
//
// In rows, a thread takes V neighbouring channels of a row at once: one 16-byte
// load (8 bfloat16, 4 float32) where C is a multiple of V and every tensor is
// 16-byte aligned, else V = 1. A block's threads are a tile of channel groups by
// rows, so that a warp reads a run of memory.
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "common.cuh"

#define BN_THREADS 256       // threads of the blocks (a multiple of 32)
#define BN_PLANE_CHUNK 16384 // positions per block in the planes' partial sums
#define BN_ROW_PASSES 8      // rows per thread at least in the rows' partial sums
#define BN_MAX_CHUNKS 1024   // partial sums per channel at most
#define BN_MAX_SUMS (1 << 18) // partial sums of each kind in all at most (2 MiB)
#define BN_UNROLL 4          // elements a thread loads before it uses the first

// Vectors (V > 1) a thread loads before it uses the first: fewer, so that the
// registers they take leave room for two blocks on a multiprocessor.
__host__ __device__ constexpr int unroll_of(int V)
{
    return V > 1 ? 2 : BN_UNROLL;
}

// Everything but the entry points is local to this file.
namespace {

struct bn_geo {
    int64_t n, c, s, m; // batch, channels, positions per plane, positions in all (n*s)
    bool rows;          // memory is m rows of c values (else n*c planes of s)
};

bn_geo geo_of(const tensor *x)
{
    bn_geo g;
    g.n = x->shape[0];
    g.c = x->shape[1];
    g.s = g.n * g.c > 0 ? tensor_numel(x) / (g.n * g.c) : 0;
    g.m = g.n * g.s;
    // the op layer passes contiguous tensors, or else channels-last ones
    g.rows = !tensor_is_contiguous(x) || g.s == 1;
    return g;
}

// A per-channel [C] tensor (p NULL: absent), through its stride.
template <typename T> struct chan {
    T *p;
    int64_t st;
    __device__ T &operator[](int64_t c) const { return p[c * st]; }
};

template <typename T> chan<T> chan_of(const tensor *t)
{
    return t ? chan<T>{(T *)tensor_data(t), t->stride[0]} : chan<T>{nullptr, 0};
}

// --- per-channel sums ---

// Sum u and v over a 1-D block of BN_THREADS threads: thread 0 gets the totals.
// The order is fixed, so the result is deterministic. Every thread must call it.
__device__ void block_sum2(double &u, double &v)
{
    __shared__ double su[BN_THREADS / 32], sv[BN_THREADS / 32];
    for (int o = 16; o > 0; o /= 2) {
        u += __shfl_down_sync(0xffffffffu, u, o);
        v += __shfl_down_sync(0xffffffffu, v, o);
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
        su[warp] = u;
        sv[warp] = v;
    }
    __syncthreads();
    if (warp == 0) {
        u = lane < BN_THREADS / 32 ? su[lane] : 0;
        v = lane < BN_THREADS / 32 ? sv[lane] : 0;
        for (int o = 16; o > 0; o /= 2) {
            u += __shfl_down_sync(0xffffffffu, u, o);
            v += __shfl_down_sync(0xffffffffu, v, o);
        }
    }
}

// v as the relu's backward passes it when its mask element m is given: v * 1
// where *m > 0, v * 0 elsewhere (what that op computes: the same bits).
template <typename S> __device__ inline compute_t<S> masked(S v, const S *m)
{
    using C = compute_t<S>;
    C w = kwiden(v);
    return m ? w * (kwiden(*m) > C(0) ? C(1) : C(0)) : w;
}

// u[k] += a, v[k] += a * b over the V-element vectors at i = i0, i0 + step, ...
// (U of them, in that order; b = a when NULL; a masked by mask when given). All
// U are loaded before the first is added, so that a thread has U loads in
// flight: one at a time left these memory-bound passes waiting on each load.
template <typename S, int V, int U = unroll_of(V)>
__device__ inline void add_group(double (&u)[V], double (&v)[V], const S *a, const S *b,
                                 const S *mask, int64_t i0, int64_t step)
{
    kvec<S, V> av[U], bv[U], mv[U];
    for (int j = 0; j < U; j++) {
        av[j] = kvld<V>(a, i0 + j * step);
        if (b)
            bv[j] = kvld<V>(b, i0 + j * step);
        if (mask)
            mv[j] = kvld<V>(mask, i0 + j * step);
    }
    for (int j = 0; j < U; j++)
        for (int k = 0; k < V; k++) {
            double x = (double)masked(av[j].e[k], mask ? &mv[j].e[k] : nullptr);
            u[k] += x;
            v[k] += x * (b ? (double)kwiden(bv[j].e[k]) : x);
        }
}

// The partial sums of a and a*b (b = a when NULL; a masked by mask when given)
// of chunk blockIdx.y (of P) of the positions of channel blockIdx.x, into part:
// [2][P][C] doubles.
template <typename S>
__global__ void planes_partial(double *part, const S *a, const S *b, const S *mask, bn_geo g,
                               int64_t P)
{
    int64_t c = blockIdx.x, p = blockIdx.y;
    int64_t m0 = g.m * p / P, m1 = g.m * (p + 1) / P;
    double u[1] = {0}, v[1] = {0};
    for (int64_t n = m0 / g.s; n * g.s < m1; n++) { // the planes the chunk meets
        int64_t lo = m0 - n * g.s, hi = m1 - n * g.s, base = (n * g.c + c) * g.s;
        lo = lo > 0 ? lo : 0;
        hi = hi < g.s ? hi : g.s;
        int64_t k = lo + threadIdx.x;
        for (; k + (BN_UNROLL - 1) * (int64_t)blockDim.x < hi; k += BN_UNROLL * blockDim.x)
            add_group<S, 1>(u, v, a, b, mask, base + k, blockDim.x);
        for (; k < hi; k += blockDim.x)
            add_group<S, 1, 1>(u, v, a, b, mask, base + k, 0);
    }
    block_sum2(u[0], v[0]);
    if (threadIdx.x == 0) {
        part[p * g.c + c] = u[0];
        part[(P + p) * g.c + c] = v[0];
    }
}

// How the rows' kernels tile a block: `groups` channel groups of V channels in
// all, `across` of them side by side in a block (tile blockIdx.x), `rows` rows of
// them (BN_THREADS / across; the threads beyond across * rows idle).
struct row_tiles {
    int64_t groups;
    int across, rows;
};

row_tiles tiles_of(const bn_geo &g, int V)
{
    row_tiles t;
    t.groups = g.c / V;
    t.across = (int)(t.groups < BN_THREADS ? t.groups : BN_THREADS);
    t.rows = t.across > 0 ? BN_THREADS / t.across : 0;
    return t;
}

// This thread's channel group (blockIdx.x's tile) and row in the block, or
// false when it has none.
__device__ inline bool tile_place(const row_tiles &t, int64_t &group, int &row)
{
    group = (int64_t)blockIdx.x * t.across + threadIdx.x % t.across;
    row = threadIdx.x / t.across;
    return group < t.groups && row < t.rows;
}

// The same over rows: chunk blockIdx.y (of P) of the rows, each thread V
// channels of every t.rows-th row, then the block's rows added in a fixed order.
template <typename S, int V>
__global__ void rows_partial(double *part, const S *a, const S *b, const S *mask, bn_geo g,
                             row_tiles t, int64_t P)
{
    int64_t group, p = blockIdx.y;
    int row;
    bool mine = tile_place(t, group, row);
    int64_t r0 = g.m * p / P, r1 = g.m * (p + 1) / P, step = t.rows;
    double u[V] = {}, v[V] = {};
    if (mine) {
        constexpr int U = unroll_of(V);
        int64_t r = r0 + row, at = group * V;
        for (; r + (U - 1) * step < r1; r += U * step)
            add_group<S, V>(u, v, a, b, mask, r * g.c + at, step * g.c);
        for (; r < r1; r += step)
            add_group<S, V, 1>(u, v, a, b, mask, r * g.c + at, 0);
    }
    __shared__ double su[BN_THREADS * V], sv[BN_THREADS * V];
    for (int k = 0; k < V; k++) {
        su[threadIdx.x * V + k] = u[k];
        sv[threadIdx.x * V + k] = v[k];
    }
    __syncthreads();
    if (mine && row == 0) {
        for (int q = 1; q < t.rows; q++)
            for (int k = 0; k < V; k++) {
                u[k] += su[(threadIdx.x + q * t.across) * V + k];
                v[k] += sv[(threadIdx.x + q * t.across) * V + k];
            }
        for (int k = 0; k < V; k++) {
            part[p * g.c + group * V + k] = u[k];
            part[(P + p) * g.c + group * V + k] = v[k];
        }
    }
}

// Channel blockIdx.x's totals of the P partial sums, in thread 0.
__device__ void channel_totals(const double *part, int64_t P, int64_t C, double &u, double &v)
{
    int64_t c = blockIdx.x;
    u = v = 0;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
        u += part[p * C + c];
        v += part[(P + p) * C + c];
    }
    block_sum2(u, v);
}

// --- per-channel coefficients: out = in * k + extra * m + base ---
// coef holds [3][C] doubles: k, m, base.

template <typename T> struct bn_forward_args {
    chan<T> w, b, running_mean, running_var, save_mean, save_invstd;
    bool training;
    double momentum, eps;
};

// The statistics of channel blockIdx.x (batch ones from the partial sums when
// training, updating the running ones; else the running ones), saved, and y's
// coefficients: k = w * invstd, base = b - mean * k.
template <typename T>
__global__ void forward_coefs(double *coef, const double *part, int64_t P, bn_geo g,
                              bn_forward_args<T> a)
{
    int64_t c = blockIdx.x;
    double u, v;
    channel_totals(part, P, g.c, u, v);
    if (threadIdx.x != 0)
        return;
    double mean, var;
    if (a.training) {
        double cnt = (double)g.m;
        mean = u / cnt;
        var = fmax(v / cnt - mean * mean, 0.0);
        if (a.running_mean.p) {
            double rm = (double)a.running_mean[c];
            a.running_mean[c] = (T)((1 - a.momentum) * rm + a.momentum * mean);
        }
        if (a.running_var.p) {
            double rv = (double)a.running_var[c];
            double unbiased = cnt > 1 ? var * cnt / (cnt - 1) : var;
            a.running_var[c] = (T)((1 - a.momentum) * rv + a.momentum * unbiased);
        }
    } else {
        mean = (double)a.running_mean[c];
        var = (double)a.running_var[c];
    }
    double invstd = 1.0 / sqrt(var + a.eps);
    double k = a.w.p ? kmul((double)a.w[c], invstd) : invstd;
    a.save_mean[c] = (T)mean;
    a.save_invstd[c] = (T)invstd;
    coef[c] = k;
    coef[g.c + c] = 0;
    coef[2 * g.c + c] = (a.b.p ? (double)a.b[c] : 0.0) - kmul(mean, k);
}

template <typename T> struct bn_backward_args {
    chan<T> w, mean, invstd, gw, gb;
    bool training;
};

// gw and gb of channel blockIdx.x from the sums of gy and gy*x, and gx's
// coefficients. With xhat = (x - mean) invstd and k = w invstd:
//   gb = sum(gy), gw = sum(gy xhat) = invstd (sum(gy x) - mean sum(gy));
//   training: gx = k gy - k/M (gb + xhat gw)
//               = gy k + x (-k invstd gw / M) + (k/M)(mean invstd gw - gb);
//   eval: gx = k gy (mean and invstd are constants).
template <typename T>
__global__ void backward_coefs(double *coef, const double *part, int64_t P, bn_geo g,
                               bn_backward_args<T> a)
{
    int64_t c = blockIdx.x;
    double sg, sgx;
    channel_totals(part, P, g.c, sg, sgx);
    if (threadIdx.x != 0)
        return;
    double M = (double)g.m, mu = (double)a.mean[c], is = (double)a.invstd[c];
    double dw = (sgx - kmul(mu, sg)) * is;
    if (a.gw.p)
        a.gw[c] = (T)dw;
    if (a.gb.p)
        a.gb[c] = (T)sg;
    double k = (a.w.p ? (double)a.w[c] : 1.0) * is;
    coef[c] = k;
    coef[g.c + c] = a.training ? -k * is * dw / M : 0.0;
    coef[2 * g.c + c] = a.training ? k / M * (kmul(kmul(mu, is), dw) - sg) : 0.0;
}

// --- the elementwise pass ---

// in * k + e * m + base in C (no second term without ex), rounded as the CPU's
// float32 loops round it.
template <typename C> __device__ inline C affine(C in, bool ex, C e, C k, C m, C base)
{
    return ex ? kmul(in, k) + kmul(e, m) + base : kmul(in, k) + base;
}

// The forward's epilogue (bn_epilogue): + the residual (res NULL: none), then relu.
template <typename S> struct tail {
    using C = compute_t<S>;
    const S *res;
    bool relu;
    __device__ C operator()(C v, C r) const
    {
        if (res)
            v = v + r;
        return relu ? (v > C(0) ? v : C(0)) : v;
    }
};

// The backward's start (the relu's backward): in masked by mask when given, and
// that written to through (the residual's gradient) when given.
template <typename S> struct head {
    const S *mask;
    S *through;
};

// A channel group's coefficients (out = in * k + extra * m + base), in the
// compute type.
template <typename C, int V> struct coefs {
    C k[V], m[V], base[V];
};

// The group of V channels from channel c on.
template <typename C, int V> __device__ inline coefs<C, V> coefs_at(const double *coef, bn_geo g,
                                                                  int64_t c)
{
    coefs<C, V> f;
    for (int j = 0; j < V; j++) {
        f.k[j] = (C)coef[c + j];
        f.m[j] = (C)coef[g.c + c + j];
        f.base[j] = (C)coef[2 * g.c + c + j];
    }
    return f;
}

// The V-element vectors at i = i0, i0 + step, ... (cnt of them, at most
// unroll_of(V)): out (when given) from in through the head h, affine with f,
// the tail t. All are loaded before the first is stored (loads in flight, as
// add_group).
template <typename S, int V, typename C = compute_t<S>>
__device__ inline void apply_group(S *out, const S *in, const S *ex, int64_t i0, int64_t step,
                                   int cnt, const coefs<C, V> &f, head<S> h, tail<S> t)
{
    constexpr int U = unroll_of(V);
    kvec<S, V> v[U], e[U], r[U], mk[U];
    // (whole loops with the test inside: the arrays stay in registers)
    KUNROLL
    for (int j = 0; j < U; j++) {
        if (j >= cnt)
            break;
        int64_t i = i0 + j * step;
        v[j] = kvld<V>(in, i);
        if (h.mask)
            mk[j] = kvld<V>(h.mask, i);
        if (ex)
            e[j] = kvld<V>(ex, i);
        if (t.res)
            r[j] = kvld<V>(t.res, i);
    }
    KUNROLL
    for (int j = 0; j < U; j++) {
        if (j >= cnt)
            break;
        kvec<S, V> o, th;
        for (int q = 0; q < V; q++) {
            C x = masked(v[j].e[q], h.mask ? &mk[j].e[q] : nullptr);
            th.e[q] = knarrow<S>(x);
            C y = affine(x, ex != nullptr, ex ? kwiden(e[j].e[q]) : C(0), f.k[q], f.m[q],
                         f.base[q]);
            o.e[q] = knarrow<S>(t(y, t.res ? kwiden(r[j].e[q]) : C(0)));
        }
        int64_t i = i0 + j * step;
        if (h.through)
            kvst<V>(h.through, i, th);
        if (out)
            kvst<V>(out, i, o);
    }
}

// How many of the u elements first, first + step, ... lie below end.
__device__ inline int group_count(int64_t first, int64_t step, int64_t end, int u)
{
    int64_t n = first < end ? (end - first + step - 1) / step : 0;
    return (int)(n < u ? n : u);
}

// Planes: blockIdx.y walks the N*C planes, the threads of blockIdx.x a plane,
// BN_UNROLL positions each (blockDim.x apart, so that a warp's loads coalesce).
template <typename S>
__global__ void planes_apply(S *out, const S *in, const S *ex, const double *coef, bn_geo g,
                             head<S> h, tail<S> t)
{
    using C = compute_t<S>;
    int64_t span = (int64_t)BN_UNROLL * blockDim.x;
    for (int64_t pl = blockIdx.y; pl < g.n * g.c; pl += gridDim.y) {
        coefs<C, 1> f = coefs_at<C, 1>(coef, g, pl % g.c);
        for (int64_t s = (int64_t)blockIdx.x * span + threadIdx.x; s < g.s;
             s += (int64_t)gridDim.x * span)
            apply_group<S, 1>(out, in, ex, pl * g.s + s, blockDim.x,
                              group_count(s, blockDim.x, g.s, BN_UNROLL), f, h, t);
    }
}

// Rows: blocks of channel groups by rows (row_tiles), each thread unroll_of(V)
// rows of its group at a time.
template <typename S, int V>
__global__ void rows_apply(S *out, const S *in, const S *ex, const double *coef, bn_geo g,
                           row_tiles tl, head<S> h, tail<S> t)
{
    using C = compute_t<S>;
    int64_t group;
    int row;
    if (!tile_place(tl, group, row))
        return;
    coefs<C, V> f = coefs_at<C, V>(coef, g, group * V);
    int64_t span = (int64_t)unroll_of(V) * tl.rows;
    for (int64_t r = (int64_t)blockIdx.y * span + row; r < g.m; r += (int64_t)gridDim.y * span)
        apply_group<S, V>(out, in, ex, r * g.c + group * V, tl.rows * g.c,
                          group_count(r, tl.rows, g.m, unroll_of(V)), f, h, t);
}

// --- launches ---

unsigned at_most(int64_t v, int64_t cap)
{
    return (unsigned)(v < cap ? v : cap);
}

// The channels a thread of the rows' kernels takes at once (see the top): 16
// bytes' worth of elem-byte elements when C is a multiple of that and every
// tensor of ts (NULLs skipped) is 16-byte aligned, else 1.
int rows_width(const bn_geo &g, size_t elem, std::initializer_list<const tensor *> ts)
{
    int V = (int)(16 / elem);
    if (!g.rows || V < 2 || g.c % V != 0)
        return 1;
    for (const tensor *t : ts)
        if (t && (uintptr_t)tensor_data(t) % 16 != 0)
            return 1;
    return V;
}

// How many chunks (partial sums per channel) the positions are summed in: in
// rows, enough blocks to keep the GPU's loads in flight, each thread still
// taking BN_ROW_PASSES rows at least, and no more partial sums in all than
// BN_MAX_SUMS (many channels: fewer chunks).
int64_t chunks_of(const bn_geo &g, int V)
{
    int64_t per = g.rows ? (int64_t)tiles_of(g, V).rows * BN_ROW_PASSES : BN_PLANE_CHUNK;
    int64_t cap = BN_MAX_SUMS / g.c < BN_MAX_CHUNKS ? BN_MAX_SUMS / g.c : BN_MAX_CHUNKS;
    return at_most((g.m + per - 1) / per, cap > 1 ? cap : 1);
}

// The P chunks of partial sums of a and a*b (b = a when NULL; a masked by mask
// when given) into part; V from rows_width.
template <typename S>
void launch_partials(cudaStream_t s, double *part, const S *a, const S *b, const S *mask,
                     const bn_geo &g, int V, int64_t P)
{
    constexpr int W = 16 / sizeof(S);
    if (P == 0)
        return;
    row_tiles t = tiles_of(g, V);
    dim3 grid((unsigned)((t.groups + t.across - 1) / t.across), (unsigned)P);
    if (g.rows && V == W)
        rows_partial<S, W><<<grid, BN_THREADS, 0, s>>>(part, a, b, mask, g, t, P);
    else if (g.rows)
        rows_partial<S, 1><<<grid, BN_THREADS, 0, s>>>(part, a, b, mask, g, t, P);
    else
        planes_partial<S><<<dim3((unsigned)g.c, (unsigned)P), BN_THREADS, 0, s>>>(
            part, a, b, mask, g, P);
}

// out = in * k + ex * m + base over the whole tensor, in through the head h
// first, then the epilogue t; V from rows_width.
template <typename S>
void launch_apply(cudaStream_t s, S *out, const S *in, const S *ex, const double *coef,
                  const bn_geo &g, int V, head<S> h, tail<S> t)
{
    constexpr int W = 16 / sizeof(S);
    if (g.m == 0)
        return;
    row_tiles tl = tiles_of(g, V);
    int64_t span = (int64_t)unroll_of(V) * tl.rows; // rows a block takes at a time
    dim3 grid((unsigned)((tl.groups + tl.across - 1) / tl.across),
              at_most((g.m + span - 1) / span, 65535));
    if (g.rows && V == W)
        rows_apply<S, W><<<grid, BN_THREADS, 0, s>>>(out, in, ex, coef, g, tl, h, t);
    else if (g.rows)
        rows_apply<S, 1><<<grid, BN_THREADS, 0, s>>>(out, in, ex, coef, g, tl, h, t);
    else
        planes_apply<S><<<dim3(at_most((g.s + BN_UNROLL * BN_THREADS - 1) /
                                           (BN_UNROLL * BN_THREADS), 1024),
                               at_most(g.n * g.c, 65535)),
                          BN_THREADS, 0, s>>>(out, in, ex, coef, g, h, t);
}

// Scratch for P chunks of partial sums (*part: [2][P][C]) and the coefficients
// after them (*coef: [3][C]), on x's device. The caller may release it as soon
// as the kernels are queued: everything on a GPU runs in order on one stream,
// so nothing reuses it before they are done.
tensor *scratch_for(const tensor *x, int64_t P, const bn_geo &g, double **part, double **coef)
{
    int64_t len = (2 * P + 3) * g.c;
    tensor *scratch = tensor_empty(DT_F64, 1, &len, tensor_device(x));
    if (scratch) {
        *part = (double *)tensor_data(scratch);
        *coef = *part + 2 * P * g.c;
    }
    return scratch;
}

// The parameters' type of activations of type S: float32 for bfloat16.
template <typename S> using param_t = compute_t<S>;

} // namespace

extern "C" int cuda_batch_norm_kernel(tensor *y, tensor *save_mean, tensor *save_invstd,
                                      const tensor *x, const tensor *w, const tensor *b,
                                      tensor *running_mean, tensor *running_var, bool training,
                                      double momentum, double eps, const bn_epilogue *ep)
{
    cudaStream_t s = kstream(x);
    if (!s)
        return -1;
    bn_geo g = geo_of(x);
    if (g.c == 0)
        return 0;
    int V = rows_width(g, dtype_size(x->dtype), {x, y, ep ? ep->residual : nullptr});
    int64_t P = training ? chunks_of(g, V) : 0;
    double *part, *coef;
    tensor *scratch = scratch_for(x, P, g, &part, &coef);
    if (!scratch)
        return -1;
    int rc = by_dtype_bf16(x->dtype, "batch_norm", [&](auto z) {
        using S = decltype(z);
        using T = param_t<S>;
        bn_forward_args<T> a = {chan_of<T>(w), chan_of<T>(b), chan_of<T>(running_mean),
                                chan_of<T>(running_var), chan_of<T>(save_mean),
                                chan_of<T>(save_invstd), training, momentum, eps};
        launch_partials<S>(s, part, (const S *)tensor_data(x), nullptr, nullptr, g, V, P);
        forward_coefs<T><<<(unsigned)g.c, BN_THREADS, 0, s>>>(coef, part, P, g, a);
        tail<S> t = {ep && ep->residual ? (const S *)tensor_data(ep->residual) : nullptr,
                     ep && ep->relu};
        if (y)
            launch_apply<S>(s, (S *)tensor_data(y), (const S *)tensor_data(x), nullptr, coef, g, V,
                            head<S>{nullptr, nullptr}, t);
    });
    tensor_decref(scratch);
    return rc;
}

extern "C" int cuda_batch_norm_backward_kernel(tensor *gx, tensor *gw, tensor *gb,
                                               const tensor *gy, const tensor *x,
                                               const tensor *w, const tensor *mean,
                                               const tensor *invstd, bool training,
                                               const tensor *relu_out, tensor *g_residual)
{
    cudaStream_t s = kstream(x);
    if (!s)
        return -1;
    bn_geo g = geo_of(x);
    if (g.c == 0 || (!gx && !gw && !gb && !g_residual))
        return 0;
    // the sums are needed by gw, gb and the training gx only
    int V = rows_width(g, dtype_size(x->dtype), {gx, gy, x, relu_out, g_residual});
    int64_t P = gw || gb || (training && gx) ? chunks_of(g, V) : 0;
    double *part, *coef;
    tensor *scratch = scratch_for(x, P, g, &part, &coef);
    if (!scratch)
        return -1;
    int rc = by_dtype_bf16(x->dtype, "batch_norm_backward", [&](auto z) {
        using S = decltype(z);
        using T = param_t<S>;
        const S *gyd = (const S *)tensor_data(gy), *xd = (const S *)tensor_data(x);
        bn_backward_args<T> a = {chan_of<T>(w), chan_of<T>(mean), chan_of<T>(invstd),
                                 chan_of<T>(gw), chan_of<T>(gb), training};
        const S *mask = relu_out ? (const S *)tensor_data(relu_out) : nullptr;
        launch_partials<S>(s, part, gyd, xd, mask, g, V, P);
        backward_coefs<T><<<(unsigned)g.c, BN_THREADS, 0, s>>>(coef, part, P, g, a);
        if (gx || g_residual)
            launch_apply<S>(s, gx ? (S *)tensor_data(gx) : nullptr, gyd,
                            training ? xd : nullptr, coef, g, V,
                            head<S>{mask, g_residual ? (S *)tensor_data(g_residual) : nullptr},
                            tail<S>{nullptr, false});
    });
    tensor_decref(scratch);
    return rc;
}
