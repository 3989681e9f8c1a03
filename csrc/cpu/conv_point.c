/* Convolutions with a single output position (1x1 outputs: the last stage of a
 * ResNet on small images) as matrix products. Only the kernel taps that land
 * inside the input matter, each on one input position, so with K = C x taps:
 *   forward   y[N, O]  = X[N, K] W[O, K]^T (+ b)
 *   data      gX[N, K] = gY[N, O] W[O, K]       (scattered back into gx)
 *   weights   gW[O, K] = gY[N, O]^T X[N, K]     (the other taps get zero)
 * which OpenBLAS does far faster than a direct convolution that also walks every
 * tap that only sees padding. Activations are read through their strides, so NCHW
 * and channels-last both work. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "cpu.h"

/* The taps of one axis that land inside the input: kernel index and input index. */
typedef struct {
    int n;
    int64_t k[64], in[64];
} axis_taps; /* kernels are at most 64 wide here (conv_point_applies) */

static void find_taps(axis_taps *t, int64_t ksize, int64_t in_size, int64_t pad, int64_t dil)
{
    t->n = 0;
    for (int64_t u = 0; u < ksize && t->n < 64; u++) {
        int64_t pos = u * dil - pad;
        if (pos >= 0 && pos < in_size) {
            t->k[t->n] = u;
            t->in[t->n++] = pos;
        }
    }
}

bool conv_point_applies(const tensor *x, const tensor *w, const tensor *y,
                        const conv2d_params *p)
{
    return y->shape[2] == 1 && y->shape[3] == 1 && p->groups == 1 && w->shape[2] <= 64 &&
           w->shape[3] <= 64 && x->dtype == y->dtype;
}

/* The geometry shared by the three passes. */
typedef struct {
    int64_t n, c, o, kh, kw, taps, k;
    axis_taps rows, cols;
} point_geom;

static void geometry(point_geom *g, const tensor *x, const tensor *w, const conv2d_params *p)
{
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->o = w->shape[0];
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    find_taps(&g->rows, g->kh, x->shape[2], p->padding[0], p->dilation[0]);
    find_taps(&g->cols, g->kw, x->shape[3], p->padding[1], p->dilation[1]);
    g->taps = (int64_t)g->rows.n * g->cols.n;
    g->k = g->c * g->taps;
}

/* Element offset of x[b, c, tap] and of w[o, c, tap] (tap = row tap * cols + col tap). */
static int64_t x_off(const tensor *x, const point_geom *g, int64_t b, int64_t c, int64_t t)
{
    return b * x->stride[0] + c * x->stride[1] + g->rows.in[t / g->cols.n] * x->stride[2] +
           g->cols.in[t % g->cols.n] * x->stride[3];
}

static int64_t w_off(const point_geom *g, int64_t o, int64_t c, int64_t t)
{
    return ((o * g->c + c) * g->kh + g->rows.k[t / g->cols.n]) * g->kw + g->cols.k[t % g->cols.n];
}

/* Move one element of type T between a tensor and a gathered matrix. */
#define MOVE(T, to_matrix, pt, pm) \
    do {                                                            \
        if (to_matrix)                                              \
            *(T *)(pm) = *(const T *)(pt);                          \
        else                                                        \
            *(T *)(pt) = *(const T *)(pm);                          \
    } while (0)

/* Move between x and its gathered [N, K] matrix (to_matrix), or back. */
static void gather_x(const tensor *x, const point_geom *g, char *m, bool to_matrix)
{
    bool f32 = x->dtype == DT_F32;
    size_t es = dtype_size(x->dtype);
    char *base = tensor_data(x);
    for (int64_t b = 0; b < g->n; b++)
        for (int64_t c = 0; c < g->c; c++)
            for (int64_t t = 0; t < g->taps; t++) {
                char *px = base + x_off(x, g, b, c, t) * (int64_t)es;
                char *pm = m + ((b * g->c + c) * g->taps + t) * (int64_t)es;
                if (f32)
                    MOVE(float, to_matrix, px, pm);
                else
                    MOVE(double, to_matrix, px, pm);
            }
}

/* Move between w and its gathered [O, K] matrix (to_matrix), or back, writing all
 * of w (the taps outside the matrix as zeros). The taps of one (o, c) pair are a
 * run in both, so only the tap index varies. */
static void gather_w(const tensor *w, const point_geom *g, char *m, bool to_matrix)
{
    bool f32 = w->dtype == DT_F32;
    size_t es = dtype_size(w->dtype);
    char *base = tensor_data(w);
    int64_t tap_off[64 * 64];
    for (int64_t t = 0; t < g->taps; t++)
        tap_off[t] = w_off(g, 0, 0, t);
    int64_t plane = g->kh * g->kw, pairs = g->o * g->c;
    for (int64_t oc = 0; oc < pairs; oc++) {
        char *pw = base + oc * plane * (int64_t)es;
        char *pm = m + oc * g->taps * (int64_t)es;
        if (!to_matrix) /* writing w back: the taps not in the matrix are zero */
            memset(pw, 0, (size_t)plane * es);
        for (int64_t t = 0; t < g->taps; t++) {
            if (f32)
                MOVE(float, to_matrix, pw + tap_off[t] * (int64_t)es, pm + t * (int64_t)es);
            else
                MOVE(double, to_matrix, pw + tap_off[t] * (int64_t)es, pm + t * (int64_t)es);
        }
    }
}

/* C[m, n] = A op B, row-major, in the tensors' float type. */
static void gemm(bool f32, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,
                 int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc)
{
    enum CBLAS_TRANSPOSE oa = ta ? CblasTrans : CblasNoTrans, ob = tb ? CblasTrans : CblasNoTrans;
    if (f32)
        cblas_sgemm(CblasRowMajor, oa, ob, (blasint)m, (blasint)n, (blasint)k, 1.0f, a,
                    (blasint)lda, b, (blasint)ldb, 0.0f, c, (blasint)ldc);
    else
        cblas_dgemm(CblasRowMajor, oa, ob, (blasint)m, (blasint)n, (blasint)k, 1.0, a,
                    (blasint)lda, b, (blasint)ldb, 0.0, c, (blasint)ldc);
}

/* Scratch for the gathered matrices: rows x K of each kind. */
static char *scratch(size_t elems, size_t es, const char *what)
{
    char *p = malloc(elems * es + 1);
    if (!p)
        err_set("conv2d: out of memory for the %s matrix", what);
    return p;
}

int conv_point_forward(tensor *y, const tensor *x, const tensor *w, const tensor *b,
                       const conv2d_params *p)
{
    point_geom g;
    geometry(&g, x, w, p);
    size_t es = dtype_size(x->dtype);
    bool f32 = x->dtype == DT_F32;
    char *out = tensor_data(y);
    /* y's [N, O, 1, 1] is a row-major N x O matrix in either layout */
    if (g.taps == 0) {
        memset(out, 0, (size_t)(g.n * g.o) * es);
    } else {
        char *xm = scratch((size_t)(g.n * g.k), es, "input");
        char *wm = xm ? scratch((size_t)(g.o * g.k), es, "weight") : NULL;
        if (!wm) {
            free(xm);
            return -1;
        }
        gather_x(x, &g, xm, true);
        gather_w(w, &g, wm, true);
        gemm(f32, false, true, g.n, g.o, g.k, xm, g.k, wm, g.k, out, g.o);
        free(xm);
        free(wm);
    }
    if (b)
        for (int64_t i = 0; i < g.n * g.o; i++)
            dtype_store(y->dtype, out, i, dtype_load(y->dtype, out, i) +
                                              dtype_load(b->dtype, tensor_data(b), i % g.o));
    return 0;
}

int conv_point_backward_data(tensor *gx, const tensor *gy, const tensor *w,
                             const conv2d_params *p)
{
    point_geom g;
    geometry(&g, gx, w, p);
    size_t es = dtype_size(gx->dtype);
    if (tensor_fill(gx, 0) != 0)
        return -1;
    if (g.taps == 0)
        return 0;
    char *xm = scratch((size_t)(g.n * g.k), es, "input gradient");
    char *wm = xm ? scratch((size_t)(g.o * g.k), es, "weight") : NULL;
    if (!wm) {
        free(xm);
        return -1;
    }
    gather_w(w, &g, wm, true);
    gemm(gx->dtype == DT_F32, false, false, g.n, g.k, g.o, tensor_data(gy), g.o, wm, g.k, xm, g.k);
    gather_x(gx, &g, xm, false);
    free(xm);
    free(wm);
    return 0;
}

int conv_point_backward_weight(tensor *gw, tensor *gb, const tensor *x, const tensor *gy,
                               const conv2d_params *p)
{
    point_geom g;
    geometry(&g, x, gw, p);
    size_t es = dtype_size(x->dtype);
    if (g.taps == 0 && tensor_fill(gw, 0) != 0)
        return -1;
    if (g.taps > 0) {
        char *xm = scratch((size_t)(g.n * g.k), es, "input");
        char *wm = xm ? scratch((size_t)(g.o * g.k), es, "weight gradient") : NULL;
        if (!wm) {
            free(xm);
            return -1;
        }
        gather_x(x, &g, xm, true);
        gemm(x->dtype == DT_F32, true, false, g.o, g.k, g.n, tensor_data(gy), g.o, xm, g.k, wm, g.k);
        gather_w(gw, &g, wm, false);
        free(xm);
        free(wm);
    }
    if (gb) {
        const char *gyd = tensor_data(gy);
        for (int64_t o = 0; o < g.o; o++) {
            double s = 0;
            for (int64_t b = 0; b < g.n; b++)
                s += dtype_load(gy->dtype, gyd, b * g.o + o);
            dtype_store(gb->dtype, tensor_data(gb), o, s);
        }
    }
    return 0;
}
