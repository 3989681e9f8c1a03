// Gather / scatter-add along the middle dim of [outer, *, inner] tensors, and
// index_select / index_add with one index list: the CUDA twin of csrc/cpu/index.c.
// Unlike the CPU's, these kernels check the indices themselves (the op layer does
// not read cuda indices): an index outside [0, na) skips its element (gather and
// index_select write 0 there) and raises the device error flag, which the host
// reports at the next synchronisation.
// The float additions (scatter_add, index_add) are atomic, so their rounding
// depends on the order the additions land in; with miles.cuda.deterministic(true)
// each output element instead adds its sources itself, in the CPU's order (the
// same bits as the CPU), scanning all m sources: slower when m is large.
#include <type_traits>

#include "common.cuh"

namespace {

// Where element p of [outer, m, inner] goes to or comes from on the [outer, na,
// inner] side: [o, k, i] with k = ix[j] when per_row (index_select, index_add: one
// index per j) and ix[p] otherwise (gather, scatter_add).
struct index_args {
    const int64_t *ix;
    int64_t total, na, m, inner; // total = outer * m * inner
    bool per_row;
    int *flag; // the device error flag
};

// That side's offset for element p, or -1 for an index out of range (after
// raising the flag).
__device__ __forceinline__ int64_t indexed_at(const index_args &x, int64_t p)
{
    int64_t i = p % x.inner, j = (p / x.inner) % x.m, o = p / x.inner / x.m;
    int64_t k = x.ix[x.per_row ? j : p];
    if (k < 0 || k >= x.na) {
        atomicOr(x.flag, CUDA_FLAG_INDEX_RANGE);
        return -1;
    }
    return (o * x.na + k) * x.inner + i;
}

// out[p] = a[indexed_at(p)], moving elements as bits of their size (E is an
// unsigned integer as wide as the dtype), so every dtype works.
template <typename E> __global__ void select_kernel(E *out, const E *a, index_args x)
{
    KLOOP(p, x.total) {
        int64_t q = indexed_at(x, p);
        out[p] = q < 0 ? (E)0 : a[q];
    }
}

__device__ __forceinline__ void atomic_add(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double *p, double v) { atomicAdd(p, v); }
// Two's complement: unsigned addition wraps to the same bits as signed.
__device__ __forceinline__ void atomic_add(int64_t *p, int64_t v)
{
    atomicAdd(reinterpret_cast<unsigned long long *>(p), (unsigned long long)v);
}

// out[indexed_at(p)] += src[p]. Atomic, since indices may repeat: float results then
// depend on the order in which the additions land, which varies from run to run
// (the CPU adds in order p = 0, 1, ...); with distinct indices they are exact.
template <typename T> __global__ void add_kernel(T *out, const T *src, index_args x)
{
    KLOOP(p, x.total) {
        int64_t q = indexed_at(x, p);
        if (q >= 0)
            atomic_add(out + q, src[p]);
    }
}

// Every index checked (the flag raised for one out of range), nothing moved.
__global__ void check_kernel(index_args x)
{
    KLOOP(p, x.total) { indexed_at(x, p); }
}

// out[o, k, i] += src[o, j, i] for j = 0, 1, ... whose index is k: one thread per
// output element, in the CPU's order.
template <typename T> __global__ void ordered_add_kernel(T *out, const T *src, index_args x)
{
    KLOOP(q, x.total / x.m * x.na) {
        int64_t i = q % x.inner, k = (q / x.inner) % x.na, o = q / x.inner / x.na;
        T acc = out[q];
        for (int64_t j = 0; j < x.m; j++) {
            int64_t p = (o * x.m + j) * x.inner + i;
            if (x.ix[x.per_row ? j : p] == k)
                acc += src[p];
        }
        out[q] = acc;
    }
}

template <typename E>
static void launch_select(void *out, const void *a, const index_args &x, cudaStream_t s)
{
    select_kernel<E><<<kblocks(x.total), KTHREADS, 0, s>>>(static_cast<E *>(out),
                                                           static_cast<const E *>(a), x);
}

template <typename T>
static void launch_add(void *out, const void *src, const index_args &x, cudaStream_t s)
{
    if (std::is_floating_point<T>::value && cuda_get_deterministic()) {
        check_kernel<<<kblocks(x.total), KTHREADS, 0, s>>>(x);
        int64_t n_out = x.total / x.m * x.na;
        if (n_out > 0)
            ordered_add_kernel<T><<<kblocks(n_out), KTHREADS, 0, s>>>(
                static_cast<T *>(out), static_cast<const T *>(src), x);
        return;
    }
    add_kernel<T><<<kblocks(x.total), KTHREADS, 0, s>>>(static_cast<T *>(out),
                                                        static_cast<const T *>(src), x);
}

// The op `what` over the outer * m * inner elements of [outer, m, inner]: out[p] =
// a[..] (gather, index_select), or out[..] += a[p] when add (scatter_add, index_add).
static int run_index(const char *what, bool add, tensor *out, const tensor *a,
                     const tensor *idx, int64_t outer, int64_t na, int64_t m, int64_t inner,
                     bool per_row)
{
    int64_t total = outer * m * inner;
    if (total == 0)
        return 0;
    cudaStream_t s = kstream(out);
    int *flag = s ? cuda_ctx_error_flag(tensor_device(out).index) : NULL;
    if (!flag)
        return -1;
    index_args x = {static_cast<const int64_t *>(tensor_data(idx)), total, na, m, inner,
                    per_row, flag};
    void *o = tensor_data(out);
    const void *src = tensor_data(a);
    if (add) {
        switch (out->dtype) {
        case DT_F32: launch_add<float>(o, src, x, s); break;
        case DT_F64: launch_add<double>(o, src, x, s); break;
        case DT_I64: launch_add<int64_t>(o, src, x, s); break;
        default: return err_set("%s: unsupported dtype %s", what, dtype_name(out->dtype));
        }
    } else {
        switch (a->dtype) {
        case DT_BOOL:
        case DT_U8: launch_select<uint8_t>(o, src, x, s); break;
        case DT_BF16: launch_select<uint16_t>(o, src, x, s); break;
        case DT_F32: launch_select<uint32_t>(o, src, x, s); break;
        case DT_I64:
        case DT_F64: launch_select<uint64_t>(o, src, x, s); break;
        default: return err_set("%s: unsupported dtype %s", what, dtype_name(a->dtype));
        }
    }
    return cuda_ctx_launched(what);
}

} // namespace

extern "C" int cuda_gather(tensor *out, const tensor *a, const tensor *idx, int64_t outer,
                           int64_t na, int64_t m, int64_t inner)
{
    return run_index("gather", false, out, a, idx, outer, na, m, inner, false);
}

extern "C" int cuda_scatter_add(tensor *out, const tensor *src, const tensor *idx,
                                int64_t outer, int64_t na, int64_t m, int64_t inner)
{
    return run_index("scatter_add", true, out, src, idx, outer, na, m, inner, false);
}

extern "C" int cuda_index_select(tensor *out, const tensor *a, const tensor *idx,
                                 int64_t outer, int64_t na, int64_t m, int64_t inner)
{
    return run_index("index_select", false, out, a, idx, outer, na, m, inner, true);
}

extern "C" int cuda_index_add(tensor *out, const tensor *src, const tensor *idx,
                              int64_t outer, int64_t na, int64_t m, int64_t inner)
{
    return run_index("index_add", true, out, src, idx, outer, na, m, inner, true);
}
