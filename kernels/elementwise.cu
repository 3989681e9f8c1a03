// Copy, fill, unary and binary elementwise ops, and where, on the GPU.
// CPU twin: csrc/cpu/elementwise.c, whose results these kernels reproduce: the same
// dtype conversions, wrapping integer arithmetic and NaN rules. Float arithmetic,
// sqrt and division round as on the CPU; exp, log, tanh, pow and log1p may differ
// from glibc's in the last bit or two. bfloat16 is computed in float32 and rounded
// once, as the CPU's float32 copies of it are (csrc/widen.c).
#include "common.cuh"

#include <cuda_bf16.h>
#include <math.h>

#include <initializer_list>
#include <type_traits>

// --- element types and conversions ---

// The C type each dtype is stored as (bool as one byte, read as 0 or not).
template <dtype_t DT> struct ktype;
template <> struct ktype<DT_BOOL> { using T = uint8_t; };
template <> struct ktype<DT_U8> { using T = uint8_t; };
template <> struct ktype<DT_I64> { using T = int64_t; };
template <> struct ktype<DT_F32> { using T = float; };
template <> struct ktype<DT_F64> { using T = double; };
template <> struct ktype<DT_BF16> { using T = __nv_bfloat16; };
template <dtype_t DT> using elem_t = typename ktype<DT>::T;

// Call f with dtype_c<DT>() for dt's DT (f reads it as d.value) and return what
// f returns; any other dtype is an error of `what`.
template <dtype_t DT> using dtype_c = std::integral_constant<dtype_t, DT>;

template <typename F> static int with_dtype(dtype_t dt, const char *what, F f)
{
    switch (dt) {
    case DT_BOOL: return f(dtype_c<DT_BOOL>());
    case DT_U8: return f(dtype_c<DT_U8>());
    case DT_I64: return f(dtype_c<DT_I64>());
    case DT_F32: return f(dtype_c<DT_F32>());
    case DT_F64: return f(dtype_c<DT_F64>());
    case DT_BF16: return f(dtype_c<DT_BF16>());
    default: return err_set("%s: unknown dtype %d", what, (int)dt);
    }
}

// (int64_t)v as the CPU twin gets it from x86-64's cvttsd2si: truncation, and
// INT64_MIN for NaN and out-of-range values (which the GPU would saturate).
__host__ __device__ static inline int64_t d2i64(double v)
{
    return v >= -9223372036854775808.0 && v < 9223372036854775808.0 ? (int64_t)v : INT64_MIN;
}

// dtype_load: an element as a double.
template <dtype_t DT> __host__ __device__ static inline double load_d(elem_t<DT> x)
{
    if constexpr (DT == DT_BOOL)
        return x != 0;
    else if constexpr (DT == DT_BF16)
        return (double)__bfloat162float(x);
    else
        return (double)x;
}

// dtype_store: a double as an element.
template <dtype_t DT> __host__ __device__ static inline elem_t<DT> from_d(double v)
{
    if constexpr (DT == DT_BOOL)
        return v != 0;
    else if constexpr (DT == DT_U8)
        return (uint8_t)d2i64(v);
    else if constexpr (DT == DT_I64)
        return d2i64(v);
    else if constexpr (DT == DT_BF16) // through float32, as the CPU's dtype_store
        return __float2bfloat16_rn((float)v);
    else
        return (elem_t<DT>)v;
}

// --- geometry ---

// The order a launch walks the dims in: those of its output (the operands are
// views of its shape) by decreasing stride, so that a channels-last or transposed
// output, and the operands laid out as it is, are walked as the runs of memory
// they are (the CPU's iter.c: a stable sort, which keeps a contiguous order).
// Row-major when an operand's rank is not the output's: each is then walked as
// it is, in the row-major order the callers pair such operands in.
struct korder {
    int n, dim[TENSOR_MAX_DIMS];
};

static korder korder_of(const tensor *out, std::initializer_list<const tensor *> operands = {})
{
    korder o;
    o.n = out->ndim;
    bool same_rank = true; // (else each is walked row-major, as it is)
    for (const tensor *t : operands)
        same_rank = same_rank && t->ndim == out->ndim;
    for (int i = 0; i < out->ndim; i++) {
        int j = i;
        for (; same_rank && j > 0 && out->stride[o.dim[j - 1]] < out->stride[i]; j--)
            o.dim[j] = o.dim[j - 1];
        o.dim[j] = i;
    }
    return o;
}

// t's geometry with its dims in the order o, adjacent ones merged where its
// strides allow and size-1 dims dropped: an element's offset for each index in
// the walk, which visits each element once. A tensor laid out in o's order
// becomes one dim of stride 1 and a broadcast scalar one dim of stride 0.
static kgeom kgeom_merged(const tensor *t, const korder &o)
{
    kgeom g;
    g.ndim = 0;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) {
        g.shape[d] = 1;
        g.stride[d] = 0;
    }
    for (int k = 0; k < t->ndim; k++) {
        int d = t->ndim == o.n ? o.dim[k] : k; // (an operand of another rank: as it is)
        if (t->shape[d] == 1)
            continue;
        int last = g.ndim - 1;
        if (last >= 0 && g.stride[last] == t->stride[d] * t->shape[d]) {
            g.shape[last] *= t->shape[d];
            g.stride[last] = t->stride[d];
        } else {
            g.shape[g.ndim] = t->shape[d];
            g.stride[g.ndim] = t->stride[d];
            g.ndim++;
        }
    }
    return g;
}


// The element offset of row-major index i (< numel) in a merged geometry, without
// divisions in the common cases of 0 or 1 dims.
__device__ __forceinline__ int64_t kat(const kgeom &g, int64_t i)
{
    if (g.ndim == 0)
        return 0;
    if (g.ndim == 1)
        return i * g.stride[0];
    return kgeom_offset(g, i);
}

// --- runs in vectors ---
// An operand that is one run of the n elements (or one broadcast scalar) is read
// and written 16 bytes at a time when it is float32 or bfloat16 (the types of a
// network's activations and gradients) and aligned so: a warp's loads are then as
// wide as the memory system's. The kernels take V elements at a time (V = 1:
// one at a time), then the tail of fewer than V one by one.

// Elements per 16-byte vector of T: 4 float32, 8 bfloat16; 1 for the others.
template <typename T> constexpr int kvec_width()
{
    return std::is_same<T, float>::value || std::is_same<T, __nv_bfloat16>::value
               ? (int)(16 / sizeof(T))
               : 1;
}

// Is p aligned for vectors of V elements of T (V = 1: always)?
template <typename T> static bool kvec_aligned(const void *p, int V)
{
    return (uintptr_t)p % (sizeof(T) * (size_t)V) == 0;
}

// The n elements of a flat launch: vec(i) does elements i .. i + V - 1 for
// each whole vector (i a multiple of V), one(j) each element j of the tail.
template <int V, typename FV, typename F1> __device__ inline void kflat(int64_t n, FV vec, F1 one)
{
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t step = (int64_t)blockDim.x * gridDim.x, nv = n / V;
    for (int64_t i = t; i < nv; i += step)
        vec(i * V);
    for (int64_t j = nv * V + t; j < n; j += step)
        one(j);
}

// Is g (merged) one run of stride 1, or a broadcast scalar (stride 0, or no dims)?
static bool kgeom_run(const kgeom &g)
{
    return g.ndim == 1 && g.stride[0] == 1;
}

static bool kgeom_scalar(const kgeom &g)
{
    return g.ndim == 0 || (g.ndim == 1 && g.stride[0] == 0);
}

// Is g a run, or nothing to walk (no dims: one element)?
static bool kgeom_flat(const kgeom &g)
{
    return g.ndim == 0 || kgeom_run(g);
}

// --- copy and fill ---

// Same dtype: the element as is (bytes of bool included); else through a double,
// as the CPU's dtype_load / dtype_store (so int64 -> float32 rounds twice there too).
template <dtype_t D, dtype_t S>
__global__ void copy_kernel(elem_t<D> *dst, kgeom gd, const elem_t<S> *src, kgeom gs, int64_t n)
{
    KLOOP(i, n)
    {
        elem_t<S> x = src[kat(gs, i)];
        if constexpr (D == S)
            dst[kat(gd, i)] = x;
        else
            dst[kat(gd, i)] = from_d<D>(load_d<S>(x));
    }
}

// Are a and b dense and laid out alike (both channels-last, say)? Then their
// elements are the same bytes in the same order.
static bool same_dense_layout(const tensor *a, const tensor *b)
{
    if (!tensor_is_dense(a) || !tensor_is_dense(b))
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] > 1 && a->stride[i] != b->stride[i])
            return false;
    return true;
}

// A conversion between runs (float32 and bfloat16 both ways: the casts of
// autocast), V elements at a time.
template <dtype_t D, dtype_t S, int V>
__global__ void cast_run_kernel(elem_t<D> *dst, const elem_t<S> *src, int64_t n)
{
    kflat<V>(
        n,
        [&](int64_t i) {
            kvec<elem_t<S>, V> x = kvld<V>(src, i);
            kvec<elem_t<D>, V> y;
            KUNROLL
            for (int k = 0; k < V; k++)
                y.e[k] = from_d<D>(load_d<S>(x.e[k]));
            kvst<V>(dst, i, y);
        },
        [&](int64_t j) { dst[j] = from_d<D>(load_d<S>(src[j])); });
}

template <dtype_t D, dtype_t S> static int copy_launch(tensor *dst, const tensor *src, int64_t n)
{
    // (vectors of 16 bytes of the wider type)
    constexpr int W = kvec_width<elem_t<D>>() < kvec_width<elem_t<S>>() ? kvec_width<elem_t<D>>()
                                                                      : kvec_width<elem_t<S>>();
    cudaStream_t s = kstream(dst);
    if (!s)
        return -1;
    korder o = korder_of(dst, {src});
    kgeom gd = kgeom_merged(dst, o), gs = kgeom_merged(src, o);
    if (D != S && W > 1 && kgeom_run(gd) && kgeom_run(gs) &&
        kvec_aligned<elem_t<D>>(tensor_data(dst), W) && kvec_aligned<elem_t<S>>(tensor_data(src), W)) {
        cast_run_kernel<D, S, W><<<kblocks(n / W + 1), KTHREADS, 0, s>>>(
            (elem_t<D> *)tensor_data(dst), (const elem_t<S> *)tensor_data(src), n);
        return cuda_ctx_launched("copy");
    }
    if (D == S && ((kgeom_flat(gd) && kgeom_flat(gs)) || same_dense_layout(dst, src))) {
        if (tensor_data(dst) == tensor_data(src)) // x:copy_(x)
            return 0;
        return cuda_ctx_check(cudaMemcpyAsync(tensor_data(dst), tensor_data(src),
                                              (size_t)n * sizeof(elem_t<D>),
                                              cudaMemcpyDeviceToDevice, s),
                              "copy");
    }
    copy_kernel<D, S><<<kblocks(n), KTHREADS, 0, s>>>((elem_t<D> *)tensor_data(dst), gd,
                                                      (const elem_t<S> *)tensor_data(src), gs, n);
    return cuda_ctx_launched("copy");
}

extern "C" int cuda_copy(tensor *dst, const tensor *src)
{
    int64_t n = tensor_numel(dst);
    if (n == 0)
        return 0;
    return with_dtype(dst->dtype, "copy", [&](auto d) {
        return with_dtype(src->dtype, "copy",
                          [&](auto s) { return copy_launch<d.value, s.value>(dst, src, n); });
    });
}

template <typename T> __global__ void fill_kernel(T *p, kgeom g, int64_t n, T v)
{
    KLOOP(i, n) p[kat(g, i)] = v;
}

// The value is converted once, on the host, as the CPU twin does.
template <dtype_t DT> static int fill_launch(tensor *t, double v, int64_t n)
{
    cudaStream_t s = kstream(t);
    if (!s)
        return -1;
    fill_kernel<elem_t<DT>><<<kblocks(n), KTHREADS, 0, s>>>((elem_t<DT> *)tensor_data(t),
                                                             kgeom_merged(t, korder_of(t)), n,
                                                             from_d<DT>(v));
    return cuda_ctx_launched("fill");
}

extern "C" int cuda_fill(tensor *t, double v)
{
    int64_t n = tensor_numel(t);
    if (n == 0)
        return 0;
    return with_dtype(t->dtype, "fill", [&](auto d) { return fill_launch<d.value>(t, v, n); });
}

// --- math functions of float or double (tgmath.h's choice on the CPU) ---

__device__ static inline float m_fabs(float x) { return fabsf(x); }
__device__ static inline double m_fabs(double x) { return fabs(x); }
__device__ static inline float m_exp(float x) { return expf(x); }
__device__ static inline double m_exp(double x) { return exp(x); }
__device__ static inline float m_log(float x) { return logf(x); }
__device__ static inline double m_log(double x) { return log(x); }
__device__ static inline float m_log1p(float x) { return log1pf(x); }
__device__ static inline double m_log1p(double x) { return log1p(x); }
__device__ static inline float m_sqrt(float x) { return sqrtf(x); }
__device__ static inline double m_sqrt(double x) { return sqrt(x); }
__device__ static inline float m_tanh(float x) { return tanhf(x); }
__device__ static inline double m_tanh(double x) { return tanh(x); }
__device__ static inline float m_pow(float x, float y) { return powf(x, y); }
__device__ static inline double m_pow(double x, double y) { return pow(x, y); }
__device__ static inline float m_fmax(float x, float y) { return fmaxf(x, y); }
__device__ static inline double m_fmax(double x, double y) { return fmax(x, y); }
// p * x + q rounded twice, as the CPU (no FMA on x86-64's baseline) computes it.
__device__ static inline float m_affine(float p, float x, float q) { return __fadd_rn(__fmul_rn(p, x), q); }
__device__ static inline double m_affine(double p, double x, double q) { return __dadd_rn(__dmul_rn(p, x), q); }

// --- integer helpers: arithmetic wraps around, as on the CPU ---

__device__ static inline int64_t wrap_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
__device__ static inline int64_t wrap_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
__device__ static inline int64_t wrap_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }

// b^e in wrapping arithmetic; a negative e gives 0 unless |b| == 1.
__device__ static int64_t ipow(int64_t b, int64_t e)
{
    if (e < 0)
        return b == 1 ? 1 : b == -1 ? (e % 2 ? -1 : 1) : 0;
    int64_t r = 1;
    while (e) {
        if (e & 1)
            r = wrap_mul(r, b);
        b = wrap_mul(b, b);
        e >>= 1;
    }
    return r;
}

// --- unary ---

template <unary_op OP, typename T> __device__ static inline T unary_float(T x, T p0, T p1)
{
    const T one = 1, zero = 0;
    if constexpr (OP == UN_NEG) return -x;
    else if constexpr (OP == UN_ABS) return m_fabs(x);
    else if constexpr (OP == UN_EXP) return m_exp(x);
    else if constexpr (OP == UN_LOG) return m_log(x);
    else if constexpr (OP == UN_SQRT) return m_sqrt(x);
    else if constexpr (OP == UN_RSQRT) return one / m_sqrt(x);
    else if constexpr (OP == UN_RECIP) return one / x;
    else if constexpr (OP == UN_SQUARE) return x * x;
    else if constexpr (OP == UN_RELU) return x > zero ? x : zero;
    else if constexpr (OP == UN_SIGMOID) return one / (one + m_exp(-x));
    else if constexpr (OP == UN_TANH) return m_tanh(x);
    else if constexpr (OP == UN_SIGN) return (T)((x > zero) - (x < zero));
    else if constexpr (OP == UN_CLAMP) {
        // fmin(fmax(x, lo), hi) as glibc's fmax/fmin (maxsd/minsd) pick on
        // non-NaN operands; NaN x stays NaN, a NaN bound is no bound.
        if (isnan(x))
            return x;
        T lo = isnan(p0) ? x : p0, hi = isnan(p1) ? x : p1;
        T y = x > lo ? x : lo;
        return y < hi ? y : hi;
    }
    else if constexpr (OP == UN_POW) return m_pow(x, p0);
    else if constexpr (OP == UN_STEP) return x > zero ? one : zero;
    else if constexpr (OP == UN_AFFINE) return m_affine(p0, x, p1);
    else // UN_LOG1P_EXP, stably: max(x, 0) + log(1 + exp(-|x|))
        return m_fmax(x, zero) + m_log1p(m_exp(-m_fabs(x)));
}

// The CPU's unary_int; ops without an integer meaning leave x as is.
template <unary_op OP> __device__ static inline int64_t unary_int(int64_t x, double p0, double p1)
{
    if constexpr (OP == UN_NEG) return wrap_sub(0, x);
    else if constexpr (OP == UN_ABS) return x < 0 ? wrap_sub(0, x) : x;
    else if constexpr (OP == UN_SQUARE) return wrap_mul(x, x);
    else if constexpr (OP == UN_RELU) return x > 0 ? x : 0;
    else if constexpr (OP == UN_SIGN) return (x > 0) - (x < 0);
    else if constexpr (OP == UN_STEP) return x > 0;
    else if constexpr (OP == UN_CLAMP) {
        if (!isnan(p0) && (double)x < p0)
            x = d2i64(ceil(p0));
        if (!isnan(p1) && (double)x > p1)
            x = d2i64(floor(p1));
        return x;
    }
    else if constexpr (OP == UN_AFFINE) return d2i64(m_affine(p0, (double)x, p1));
    else if constexpr (OP == UN_POW) return ipow(x, d2i64(p0));
    else return x;
}

// Floats in their own type (bfloat16 in float32, rounded once); int64 as integers;
// uint8 and bool through the CPU's dtype_load and dtype_store.
template <unary_op OP, dtype_t DT>
__device__ static inline elem_t<DT> unary_elem(elem_t<DT> x, double p0, double p1)
{
    using T = elem_t<DT>;
    if constexpr (DT == DT_F32 || DT == DT_F64)
        return unary_float<OP, T>(x, (T)p0, (T)p1);
    else if constexpr (DT == DT_BF16)
        return __float2bfloat16_rn(
            unary_float<OP, float>(__bfloat162float(x), (float)p0, (float)p1));
    else if constexpr (DT == DT_I64)
        return unary_int<OP>(x, p0, p1);
    else
        return from_d<DT>((double)unary_int<OP>((int64_t)load_d<DT>(x), p0, p1));
}

template <unary_op OP, dtype_t DT, int V>
__global__ void unary_kernel(elem_t<DT> *out, const elem_t<DT> *a, int64_t n, double p0, double p1)
{
    using T = elem_t<DT>;
    kflat<V>(
        n,
        [&](int64_t i) {
            kvec<T, V> x = kvld<V>(a, i), y;
            KUNROLL
            for (int k = 0; k < V; k++)
                y.e[k] = unary_elem<OP, DT>(x.e[k], p0, p1);
            kvst<V>(out, i, y);
        },
        [&](int64_t j) { out[j] = unary_elem<OP, DT>(a[j], p0, p1); });
}

// out and a are dense with the same strides: both are flat arrays of n elements.
template <unary_op OP, dtype_t DT>
static int unary_launch(tensor *out, const tensor *a, int64_t n, double p0, double p1)
{
    using T = elem_t<DT>;
    constexpr int W = kvec_width<T>();
    cudaStream_t s = kstream(out);
    if (!s)
        return -1;
    T *o = (T *)tensor_data(out);
    const T *x = (const T *)tensor_data(a);
    if (kvec_aligned<T>(o, W) && kvec_aligned<T>(x, W))
        unary_kernel<OP, DT, W><<<kblocks(n / W + 1), KTHREADS, 0, s>>>(o, x, n, p0, p1);
    else
        unary_kernel<OP, DT, 1><<<kblocks(n), KTHREADS, 0, s>>>(o, x, n, p0, p1);
    return cuda_ctx_launched("unary");
}

template <dtype_t DT>
static int unary_dt(unary_op op, tensor *out, const tensor *a, int64_t n, double p0, double p1)
{
    switch (op) {
    case UN_NEG: return unary_launch<UN_NEG, DT>(out, a, n, p0, p1);
    case UN_ABS: return unary_launch<UN_ABS, DT>(out, a, n, p0, p1);
    case UN_EXP: return unary_launch<UN_EXP, DT>(out, a, n, p0, p1);
    case UN_LOG: return unary_launch<UN_LOG, DT>(out, a, n, p0, p1);
    case UN_SQRT: return unary_launch<UN_SQRT, DT>(out, a, n, p0, p1);
    case UN_RSQRT: return unary_launch<UN_RSQRT, DT>(out, a, n, p0, p1);
    case UN_RECIP: return unary_launch<UN_RECIP, DT>(out, a, n, p0, p1);
    case UN_SQUARE: return unary_launch<UN_SQUARE, DT>(out, a, n, p0, p1);
    case UN_RELU: return unary_launch<UN_RELU, DT>(out, a, n, p0, p1);
    case UN_SIGMOID: return unary_launch<UN_SIGMOID, DT>(out, a, n, p0, p1);
    case UN_TANH: return unary_launch<UN_TANH, DT>(out, a, n, p0, p1);
    case UN_SIGN: return unary_launch<UN_SIGN, DT>(out, a, n, p0, p1);
    case UN_CLAMP: return unary_launch<UN_CLAMP, DT>(out, a, n, p0, p1);
    case UN_POW: return unary_launch<UN_POW, DT>(out, a, n, p0, p1);
    case UN_STEP: return unary_launch<UN_STEP, DT>(out, a, n, p0, p1);
    case UN_AFFINE: return unary_launch<UN_AFFINE, DT>(out, a, n, p0, p1);
    case UN_LOG1P_EXP: return unary_launch<UN_LOG1P_EXP, DT>(out, a, n, p0, p1);
    default: return err_set("unary: unknown op %d", (int)op);
    }
}

extern "C" int cuda_unary_kernel(unary_op op, tensor *out, const tensor *a, double p0,
                                 double p1)
{
    int64_t n = tensor_numel(out);
    if (n == 0)
        return 0;
    return with_dtype(a->dtype, "unary",
                      [&](auto d) { return unary_dt<d.value>(op, out, a, n, p0, p1); });
}

// --- activations' gradients (the CPU's formulas, in the compute type) ---

template <unary_op OP, typename T> __device__ static inline T act_grad(T g, T y)
{
    const T one = 1, zero = 0;
    if constexpr (OP == UN_RELU) return y > zero ? g : zero;
    else if constexpr (OP == UN_SIGMOID) return g * (one - y) * y;
    else return g * (one - y * y); // UN_TANH
}

template <unary_op OP, typename S, int V>
__global__ void act_grad_kernel(S *gin, const S *gout, const S *y, int64_t n)
{
    auto f = [](S g, S v) { return knarrow<S>(act_grad<OP, compute_t<S>>(kwiden(g), kwiden(v))); };
    kflat<V>(
        n,
        [&](int64_t i) {
            kvec<S, V> g = kvld<V>(gout, i), v = kvld<V>(y, i), r;
            KUNROLL
            for (int k = 0; k < V; k++)
                r.e[k] = f(g.e[k], v.e[k]);
            kvst<V>(gin, i, r);
        },
        [&](int64_t j) { gin[j] = f(gout[j], y[j]); });
}

template <unary_op OP, typename S>
static void act_grad_launch(cudaStream_t s, S *gi, const S *go, const S *yy, int64_t n)
{
    constexpr int W = kvec_width<S>();
    if (kvec_aligned<S>(gi, W) && kvec_aligned<S>(go, W) && kvec_aligned<S>(yy, W))
        act_grad_kernel<OP, S, W><<<kblocks(n / W + 1), KTHREADS, 0, s>>>(gi, go, yy, n);
    else
        act_grad_kernel<OP, S, 1><<<kblocks(n), KTHREADS, 0, s>>>(gi, go, yy, n);
}

extern "C" int cuda_activation_backward_kernel(unary_op op, tensor *gin, const tensor *gout,
                                               const tensor *y)
{
    if (op != UN_RELU && op != UN_SIGMOID && op != UN_TANH)
        return err_set("activation_backward: %d is not an activation", (int)op);
    int64_t n = tensor_numel(gin);
    cudaStream_t s = n > 0 ? kstream(gin) : nullptr;
    if (n == 0 || !s)
        return n == 0 ? 0 : -1;
    return by_dtype_bf16(y->dtype, "activation_backward", [&](auto z) {
        using S = decltype(z);
        S *gi = (S *)tensor_data(gin);
        const S *go = (const S *)tensor_data(gout), *yy = (const S *)tensor_data(y);
        if (op == UN_RELU)
            act_grad_launch<UN_RELU, S>(s, gi, go, yy, n);
        else if (op == UN_SIGMOID)
            act_grad_launch<UN_SIGMOID, S>(s, gi, go, yy, n);
        else
            act_grad_launch<UN_TANH, S>(s, gi, go, yy, n);
    });
}

// --- binary ---

// The output element type: bool (one byte) for comparisons and logic.
template <binary_op OP, dtype_t DT> using binary_out_t =
    typename ktype<(OP >= BIN_EQ ? DT_BOOL : DT)>::T;

// Float ops; max and min propagate a NaN from either side, as the CPU does.
template <binary_op OP, typename T> __device__ static inline auto binary_float(T x, T y)
{
    if constexpr (OP == BIN_ADD) return x + y;
    else if constexpr (OP == BIN_SUB) return x - y;
    else if constexpr (OP == BIN_MUL) return x * y;
    else if constexpr (OP == BIN_DIV) return x / y;
    else if constexpr (OP == BIN_POW) return m_pow(x, y);
    else if constexpr (OP == BIN_MAX) return isnan(x) || x > y ? x : y;
    else if constexpr (OP == BIN_MIN) return isnan(x) || x < y ? x : y;
    else if constexpr (OP == BIN_EQ) return (uint8_t)(x == y);
    else if constexpr (OP == BIN_NE) return (uint8_t)(x != y);
    else if constexpr (OP == BIN_LT) return (uint8_t)(x < y);
    else if constexpr (OP == BIN_LE) return (uint8_t)(x <= y);
    else if constexpr (OP == BIN_GT) return (uint8_t)(x > y);
    else if constexpr (OP == BIN_GE) return (uint8_t)(x >= y);
    else if constexpr (OP == BIN_AND) return (uint8_t)(x != 0 && y != 0);
    else return (uint8_t)(x != 0 || y != 0);
}

// The CPU's binary_generic on values read as int64 (uint8 and bool: the raw byte).
template <binary_op OP> __device__ static inline int64_t binary_int(int64_t x, int64_t y)
{
    if constexpr (OP == BIN_ADD) return wrap_add(x, y);
    else if constexpr (OP == BIN_SUB) return wrap_sub(x, y);
    else if constexpr (OP == BIN_MUL) return wrap_mul(x, y);
    else if constexpr (OP == BIN_DIV) return y == 0 ? 0 : y == -1 ? wrap_sub(0, x) : x / y;
    else if constexpr (OP == BIN_POW) return ipow(x, y);
    else if constexpr (OP == BIN_MAX) return x > y ? x : y;
    else if constexpr (OP == BIN_MIN) return x < y ? x : y;
    else if constexpr (OP == BIN_EQ) return x == y;
    else if constexpr (OP == BIN_NE) return x != y;
    else if constexpr (OP == BIN_LT) return x < y;
    else if constexpr (OP == BIN_LE) return x <= y;
    else if constexpr (OP == BIN_GT) return x > y;
    else if constexpr (OP == BIN_GE) return x >= y;
    else if constexpr (OP == BIN_AND) return x && y;
    else return x || y;
}

template <binary_op OP, dtype_t DT>
__device__ static inline binary_out_t<OP, DT> binary_elem(elem_t<DT> x, elem_t<DT> y)
{
    if constexpr (DT == DT_F32 || DT == DT_F64) {
        return binary_float<OP>(x, y);
    } else if constexpr (DT == DT_BF16) { // in float32, rounded once
        auto r = binary_float<OP>(__bfloat162float(x), __bfloat162float(y));
        if constexpr (OP >= BIN_EQ)
            return r;
        else
            return __float2bfloat16_rn(r);
    } else {
        int64_t r = binary_int<OP>((int64_t)x, (int64_t)y);
        if constexpr (OP >= BIN_EQ || DT == DT_BOOL)
            return r != 0;
        else
            return (elem_t<DT>)r; // uint8 keeps the low byte
    }
}

template <binary_op OP, dtype_t DT>
__global__ void binary_kernel(binary_out_t<OP, DT> *out, kgeom go, const elem_t<DT> *a,
                              kgeom ga, const elem_t<DT> *b, kgeom gb, int64_t n)
{
    KLOOP(i, n) out[kat(go, i)] = binary_elem<OP, DT>(a[kat(ga, i)], b[kat(gb, i)]);
}

// The same when out is a run and a and b are runs or broadcast scalars (sa, sb):
// V elements at a time.
template <binary_op OP, dtype_t DT, int V>
__global__ void binary_run_kernel(binary_out_t<OP, DT> *out, const elem_t<DT> *a, bool sa,
                                  const elem_t<DT> *b, bool sb, int64_t n)
{
    using T = elem_t<DT>;
    using O = binary_out_t<OP, DT>;
    kflat<V>(
        n,
        [&](int64_t i) {
            kvec<T, V> x, y;
            kvec<O, V> r;
            if (!sa)
                x = kvld<V>(a, i);
            if (!sb)
                y = kvld<V>(b, i);
            KUNROLL
            for (int k = 0; k < V; k++)
                r.e[k] = binary_elem<OP, DT>(sa ? a[0] : x.e[k], sb ? b[0] : y.e[k]);
            kvst<V>(out, i, r);
        },
        [&](int64_t j) { out[j] = binary_elem<OP, DT>(a[sa ? 0 : j], b[sb ? 0 : j]); });
}

// out is walked by its geometry too: the op layer may lay it out like a
// channels-last operand.
template <binary_op OP, dtype_t DT>
static int binary_launch(tensor *out, const tensor *a, const tensor *b, int64_t n)
{
    using T = elem_t<DT>;
    using O = binary_out_t<OP, DT>;
    constexpr int W = kvec_width<T>();
    cudaStream_t s = kstream(out);
    if (!s)
        return -1;
    korder o = korder_of(out, {a, b});
    kgeom go = kgeom_merged(out, o), ga = kgeom_merged(a, o), gb = kgeom_merged(b, o);
    O *po = (O *)tensor_data(out);
    const T *pa = (const T *)tensor_data(a), *pb = (const T *)tensor_data(b);
    bool sa = kgeom_scalar(ga), sb = kgeom_scalar(gb);
    if (W > 1 && kgeom_run(go) && (sa || kgeom_run(ga)) && (sb || kgeom_run(gb)) &&
        kvec_aligned<O>(po, W) && (sa || kvec_aligned<T>(pa, W)) && (sb || kvec_aligned<T>(pb, W)))
        binary_run_kernel<OP, DT, W><<<kblocks(n / W + 1), KTHREADS, 0, s>>>(po, pa, sa, pb, sb, n);
    else
        binary_kernel<OP, DT><<<kblocks(n), KTHREADS, 0, s>>>(po, go, pa, ga, pb, gb, n);
    return cuda_ctx_launched("binary");
}

template <dtype_t DT>
static int binary_dt(binary_op op, tensor *out, const tensor *a, const tensor *b, int64_t n)
{
    switch (op) {
    case BIN_ADD: return binary_launch<BIN_ADD, DT>(out, a, b, n);
    case BIN_SUB: return binary_launch<BIN_SUB, DT>(out, a, b, n);
    case BIN_MUL: return binary_launch<BIN_MUL, DT>(out, a, b, n);
    case BIN_DIV: return binary_launch<BIN_DIV, DT>(out, a, b, n);
    case BIN_POW: return binary_launch<BIN_POW, DT>(out, a, b, n);
    case BIN_MAX: return binary_launch<BIN_MAX, DT>(out, a, b, n);
    case BIN_MIN: return binary_launch<BIN_MIN, DT>(out, a, b, n);
    case BIN_EQ: return binary_launch<BIN_EQ, DT>(out, a, b, n);
    case BIN_NE: return binary_launch<BIN_NE, DT>(out, a, b, n);
    case BIN_LT: return binary_launch<BIN_LT, DT>(out, a, b, n);
    case BIN_LE: return binary_launch<BIN_LE, DT>(out, a, b, n);
    case BIN_GT: return binary_launch<BIN_GT, DT>(out, a, b, n);
    case BIN_GE: return binary_launch<BIN_GE, DT>(out, a, b, n);
    case BIN_AND: return binary_launch<BIN_AND, DT>(out, a, b, n);
    case BIN_OR: return binary_launch<BIN_OR, DT>(out, a, b, n);
    default: return err_set("binary: unknown op %d", (int)op);
    }
}

extern "C" int cuda_binary(binary_op op, tensor *out, const tensor *a, const tensor *b)
{
    int64_t n = tensor_numel(out);
    if (n == 0)
        return 0;
    return with_dtype(a->dtype, "binary",
                      [&](auto d) { return binary_dt<d.value>(op, out, a, b, n); });
}

// --- where ---

// Elements are moved as they are (like the CPU's memcpy); cond is read as a byte.
template <typename T>
__global__ void where_kernel(T *out, kgeom go, const uint8_t *cond, kgeom gc, const T *a,
                             kgeom ga, const T *b, kgeom gb, int64_t n)
{
    KLOOP(i, n) out[kat(go, i)] = cond[kat(gc, i)] ? a[kat(ga, i)] : b[kat(gb, i)];
}

template <dtype_t DT>
static int where_launch(tensor *out, const tensor *cond, const tensor *a, const tensor *b,
                        int64_t n)
{
    using T = elem_t<DT>;
    cudaStream_t s = kstream(out);
    if (!s)
        return -1;
    korder o = korder_of(out, {cond, a, b});
    where_kernel<T><<<kblocks(n), KTHREADS, 0, s>>>(
        (T *)tensor_data(out), kgeom_merged(out, o), (const uint8_t *)tensor_data(cond),
        kgeom_merged(cond, o), (const T *)tensor_data(a), kgeom_merged(a, o),
        (const T *)tensor_data(b), kgeom_merged(b, o), n);
    return cuda_ctx_launched("where");
}

extern "C" int cuda_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b)
{
    int64_t n = tensor_numel(out);
    if (n == 0)
        return 0;
    return with_dtype(out->dtype, "where",
                      [&](auto d) { return where_launch<d.value>(out, cond, a, b, n); });
}
