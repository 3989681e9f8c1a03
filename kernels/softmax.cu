// Softmax and log-softmax over the middle dim of a contiguous [outer, n, inner]
// tensor, and their backward passes: the CUDA twin of csrc/cpu/softmax.c. As there,
// each row is computed in double with the same formulas; only the sums are combined
// as a fixed tree instead of left to right (last-bit differences, the same on every
// run).
#include <cmath>

#include "common.cuh"

namespace {

// The threads that work on one row together are common.cuh's groups, all of
// them combining doubles: a thread per row (inner > 1: neighbouring threads take
// neighbouring inner indices, so their loads are coalesced; or very short rows),
// a warp per row (inner == 1, short rows), the block per row (inner == 1, long
// rows).
using row_block_group = block_group<double>;

// y = softmax(x) (or log_softmax) on the row at base: its n elements lie inner apart.
template <typename T> struct softmax_fwd {
    T *y;
    const T *x;
    int64_t n, inner;
    bool log_;

    template <typename G> __device__ void operator()(const G &g, int64_t base) const
    {
        const T *xr = x + base;
        auto at = [=](int64_t j) { return (double)xr[j * inner]; };
        // in double: group_reduce accumulates in its start value's type (INFINITY is a float)
        double m = group_reduce(g, n, (double)-INFINITY, at, fmax_op());
        double s = group_reduce(g, n, 0.0, [=](int64_t j) { return exp(at(j) - m); }, add_op());
        double lse = m + log(s);
        for (int64_t j = g.rank(); j < n; j += g.size()) {
            double v = at(j) - lse;
            y[base + j * inner] = (T)(log_ ? v : exp(v));
        }
    }
};

// softmax:     gin = y * (gout - sum(gout * y))
// log-softmax: gin = gout - exp(y) * sum(gout)
template <typename T> struct softmax_bwd {
    T *gin;
    const T *gout, *y;
    int64_t n, inner;
    bool log_;

    template <typename G> __device__ void operator()(const G &g, int64_t base) const
    {
        const T *gr = gout + base, *yr = y + base;
        double dot = group_reduce(
            g, n, 0.0,
            [=](int64_t j) {
                double gv = gr[j * inner];
                return log_ ? gv : gv * (double)yr[j * inner];
            },
            add_op());
        for (int64_t j = g.rank(); j < n; j += g.size()) {
            double gv = gr[j * inner], yv = yr[j * inner];
            gin[base + j * inner] = (T)(log_ ? gv - exp(yv) * dot : yv * (gv - dot));
        }
    }
};

// Run row (softmax_fwd or softmax_bwd) on each of the outer * inner rows.
template <typename G, typename Row>
__global__ void __launch_bounds__(G::MAX_THREADS) each_row(Row row, int64_t rows)
{
    G g;
    for (int64_t r = g.first_row(); r < rows; r += g.row_step())
        row(g, (r / row.inner) * row.n * row.inner + r % row.inner);
}

// Rows up to THREAD_ROW_MAX long get a thread each, up to WARP_ROW_MAX a warp each;
// longer ones a block, of 1024 threads when there are fewer than FEW rows (few
// blocks would leave most of the GPU idle).
constexpr int64_t THREAD_ROW_MAX = 8;
constexpr int64_t WARP_ROW_MAX = 1024;
constexpr int64_t FEW = 256;

template <typename Row>
static int launch_rows(const Row &row, int64_t rows, cudaStream_t s, const char *what)
{
    if (row.inner > 1 || row.n <= THREAD_ROW_MAX) {
        each_row<thread_group, Row><<<kblocks(rows), KTHREADS, 0, s>>>(row, rows);
    } else if (row.n <= WARP_ROW_MAX) {
        each_row<warp_group, Row><<<cuda_ctx_blocks(rows, KTHREADS / 32), KTHREADS, 0, s>>>(row, rows);
    } else {
        unsigned threads = rows < FEW ? 1024 : KTHREADS;
        each_row<row_block_group, Row><<<cuda_ctx_blocks(rows, 1), threads, 0, s>>>(row, rows);
    }
    return cuda_ctx_launched(what);
}

} // namespace

extern "C" int cuda_softmax(tensor *out, const tensor *a, int64_t outer, int64_t n,
                            int64_t inner, bool log)
{
    int64_t rows = outer * inner;
    if (rows * n == 0)
        return 0;
    cudaStream_t s = kstream(a);
    if (!s)
        return -1;
    void *y = tensor_data(out);
    const void *x = tensor_data(a);
    switch (a->dtype) {
    case DT_F32: {
        softmax_fwd<float> row = {static_cast<float *>(y), static_cast<const float *>(x), n,
                                  inner, log};
        return launch_rows(row, rows, s, "softmax");
    }
    case DT_F64: {
        softmax_fwd<double> row = {static_cast<double *>(y), static_cast<const double *>(x), n,
                                   inner, log};
        return launch_rows(row, rows, s, "softmax");
    }
    default: return err_set("softmax: unsupported dtype %s", dtype_name(a->dtype));
    }
}

extern "C" int cuda_softmax_backward(tensor *gin, const tensor *gout, const tensor *y,
                                     int64_t outer, int64_t n, int64_t inner, bool log)
{
    int64_t rows = outer * inner;
    if (rows * n == 0)
        return 0;
    cudaStream_t s = kstream(y);
    if (!s)
        return -1;
    void *gi = tensor_data(gin);
    const void *g = tensor_data(gout), *yy = tensor_data(y);
    switch (y->dtype) {
    case DT_F32: {
        softmax_bwd<float> row = {static_cast<float *>(gi), static_cast<const float *>(g),
                                  static_cast<const float *>(yy), n, inner, log};
        return launch_rows(row, rows, s, "softmax backward");
    }
    case DT_F64: {
        softmax_bwd<double> row = {static_cast<double *>(gi), static_cast<const double *>(g),
                                   static_cast<const double *>(yy), n, inner, log};
        return launch_rows(row, rows, s, "softmax backward");
    }
    default: return err_set("softmax backward: unsupported dtype %s", dtype_name(y->dtype));
    }
}
