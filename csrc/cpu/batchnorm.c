/* Batch normalisation on the CPU. The input is contiguous [N, C, ...] (S: the
 * product of the spatial dims; 1 for BatchNorm1d on [N, C]) or channels-last
 * [N, C, H, W] (rows of C values in memory). Sums are in double, one pass for the
 * sum and the sum of squares; per-channel results go through double arrays, so
 * both float types share everything but the innermost loops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "cpu.h"
#include "iter.h"

static inline double ld(const void *p, bool f32, int64_t i)
{
    return f32 ? ((const float *)p)[i] : ((const double *)p)[i];
}

static inline void st(void *p, bool f32, int64_t i, double v)
{
    if (f32)
        ((float *)p)[i] = (float)v;
    else
        ((double *)p)[i] = v;
}

/* The geometry of a batch-norm input: N*S positions of C channels, either as
 * [N, C, S] planes or as N*S rows of C (channels-last). */
typedef struct {
    int64_t n, c, s;
    bool rows;
    bool f32;
    int threads;
} bn_shape;

static bn_shape bn_geometry(const tensor *x)
{
    bn_shape g;
    g.n = x->shape[0];
    g.c = x->shape[1];
    g.s = g.n * g.c > 0 ? tensor_numel(x) / (g.n * g.c) : 0;
    g.rows = !tensor_is_contiguous(x); /* the op layer passes contiguous or channels-last */
    g.f32 = x->dtype == DT_F32;
    g.threads = tensor_numel(x) >= 32768 ? cpu_num_threads() : 1;
    return g;
}

/* Sums over the positions of one channel plane (or one row of channels), typed,
 * so the compiler vectorises them; accumulation is in double. */
static void plane_sums_f32(const float *a, const float *b, int64_t n, double *u, double *v)
{
    double su = 0, sv = 0;
    for (int64_t k = 0; k < n; k++) {
        double av = a[k], bv = b ? b[k] : av;
        su += av;
        sv += av * bv;
    }
    *u += su;
    *v += sv;
}

/* Rows [r0, r1) of C channels: sums in float over blocks of rows (vectorised
 * across channels), each block then added into the double totals. */
#define ROW_BLOCK 32
static void row_sums_f32(const float *restrict a, const float *restrict b, int64_t r0,
                         int64_t r1, int64_t C, double *restrict u, double *restrict v,
                         float *restrict fu, float *restrict fv)
{
    for (int64_t r = r0; r < r1; r += ROW_BLOCK) {
        int64_t end = r + ROW_BLOCK < r1 ? r + ROW_BLOCK : r1;
        for (int64_t c = 0; c < C; c++)
            fu[c] = fv[c] = 0.0f;
        for (int64_t q = r; q < end; q++) {
            const float *ar = a + q * C, *br = b ? b + q * C : ar;
            for (int64_t c = 0; c < C; c++) {
                fu[c] += ar[c];
                fv[c] += ar[c] * br[c];
            }
        }
        for (int64_t c = 0; c < C; c++) {
            u[c] += fu[c];
            v[c] += fv[c];
        }
    }
}

/* Per channel: s1 = sum(a) and s2 = sum(a * b), with b = a when b is NULL. Used
 * as (x, NULL) for sum x and sum x^2, and as (gy, x) for sum gy and sum gy x. */
static int channel_sums(const bn_shape *g, const void *a, const void *b, double *s1, double *s2)
{
    int64_t C = g->c;
    if (!g->rows) {
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int64_t c = 0; c < C; c++) {
            double u = 0, v = 0;
            for (int64_t i = 0; i < g->n; i++) {
                int64_t base = (i * C + c) * g->s;
                if (g->f32) {
                    plane_sums_f32((const float *)a + base, b ? (const float *)b + base : NULL,
                                   g->s, &u, &v);
                    continue;
                }
                for (int64_t k = 0; k < g->s; k++) {
                    double av = ld(a, false, base + k), bv = b ? ld(b, false, base + k) : av;
                    u += av;
                    v += av * bv;
                }
            }
            s1[c] = u;
            s2[c] = v;
        }
        return 0;
    }
    /* Rows of C: each thread sums a block of rows into its own arrays. */
    int nt = g->threads;
    double *part = calloc((size_t)(2 * nt) * (size_t)C, sizeof *part);
    float *fpart = malloc(sizeof(float) * (size_t)(2 * nt) * (size_t)C + 1);
    if (!part || !fpart) {
        free(part);
        free(fpart);
        return err_set("batch_norm: out of memory for %d x %lld partial sums", nt, (long long)C);
    }
    int64_t rows = g->n * g->s;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        double *u = part + (size_t)(2 * t) * (size_t)C, *v = u + C;
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        if (g->f32) {
            float *fu = fpart + (size_t)(2 * t) * (size_t)C;
            row_sums_f32(a, b, r0, r1, C, u, v, fu, fu + C);
            continue;
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < C; c++) {
                double av = ld(a, false, r * C + c), bv = b ? ld(b, false, r * C + c) : av;
                u[c] += av;
                v[c] += av * bv;
            }
    }
    for (int64_t c = 0; c < C; c++) {
        s1[c] = s2[c] = 0;
        for (int t = 0; t < nt; t++) {
            s1[c] += part[(size_t)(2 * t) * (size_t)C + (size_t)c];
            s2[c] += part[(size_t)(2 * t + 1) * (size_t)C + (size_t)c];
        }
    }
    free(part);
    free(fpart);
    return 0;
}

/* out = in * k[c] + extra * m[c] + base[c] over one run of positions that share
 * channel c (a plane), or over one row of all channels. */
static void affine_plane_f32(float *restrict o, const float *restrict in,
                             const float *restrict ex, int64_t n, float k,
                             float m, float base)
{
    if (ex)
        for (int64_t i = 0; i < n; i++)
            o[i] = in[i] * k + ex[i] * m + base;
    else
        for (int64_t i = 0; i < n; i++)
            o[i] = in[i] * k + base;
}

static void affine_row_f32(float *restrict o, const float *restrict in, const float *restrict ex,
                           int64_t C, const float *restrict k, const float *restrict m,
                           const float *restrict base)
{
    if (ex)
        for (int64_t c = 0; c < C; c++)
            o[c] = in[c] * k[c] + ex[c] * m[c] + base[c];
    else
        for (int64_t c = 0; c < C; c++)
            o[c] = in[c] * k[c] + base[c];
}

/* The forward's epilogue over n values of out (see bn_epilogue): + res, then
 * relu (x > 0 ? x : 0, as the relu op), each rounded to the type. */
static void epilogue_f32(float *restrict o, const float *restrict res, bool relu, int64_t n)
{
    if (res)
        for (int64_t i = 0; i < n; i++)
            o[i] = o[i] + res[i];
    if (relu)
        for (int64_t i = 0; i < n; i++)
            o[i] = o[i] > 0.0f ? o[i] : 0.0f;
}

/* out = in * k[c] + extra * m[c] + base[c] over the whole tensor, where extra is a
 * second input (the backward pass's x) or absent; then the epilogue (res: a
 * residual in out's layout, or NULL; relu), run on each plane or row while it
 * is in cache. float32 runs typed loops over planes or rows with float
 * coefficients; float64 the generic loop. */
static int channel_affine(const bn_shape *g, void *out, const void *in, const double *k,
                          const void *extra, const double *m, const double *base,
                          const void *res, bool relu)
{
    int64_t C = g->c, total = g->n * g->c * g->s;
    if (g->f32) {
        float *kf = malloc(sizeof(float) * 3 * (size_t)(C ? C : 1));
        if (!kf)
            return err_set("batch_norm: out of memory");
        float *mf = kf + C, *bf = kf + 2 * C;
        for (int64_t c = 0; c < C; c++) {
            kf[c] = (float)k[c];
            mf[c] = m ? (float)m[c] : 0.0f;
            bf[c] = (float)base[c];
        }
        const float *in32 = in, *ex32 = extra, *res32 = res;
        float *o32 = out;
        if (g->rows) {
            int64_t rows = g->n * g->s;
#pragma omp parallel for num_threads(g->threads) schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                affine_row_f32(o32 + r * C, in32 + r * C, ex32 ? ex32 + r * C : NULL, C, kf, mf, bf);
                epilogue_f32(o32 + r * C, res32 ? res32 + r * C : NULL, relu, C);
            }
        } else {
            int64_t planes = g->n * C;
#pragma omp parallel for num_threads(g->threads) schedule(static)
            for (int64_t p = 0; p < planes; p++) {
                int64_t c = p % C, off = p * g->s;
                affine_plane_f32(o32 + off, in32 + off, ex32 ? ex32 + off : NULL, g->s, kf[c],
                                 mf[c], bf[c]);
                epilogue_f32(o32 + off, res32 ? res32 + off : NULL, relu, g->s);
            }
        }
        free(kf);
        return 0;
    }
#pragma omp parallel for num_threads(g->threads) schedule(static)
    for (int64_t i = 0; i < total; i++) {
        int64_t c = g->rows ? i % C : (i / g->s) % C;
        double v = ld(in, false, i) * k[c] + base[c];
        if (extra)
            v += m[c] * ld(extra, false, i);
        if (res)
            v += ld(res, false, i);
        if (relu)
            v = v > 0.0 ? v : 0.0;
        st(out, false, i, v);
    }
    return 0;
}

int cpu_batch_norm(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                   const tensor *w, const tensor *b, tensor *running_mean, tensor *running_var,
                   bool training, double momentum, double eps, const bn_epilogue *ep)
{
    bn_shape g = bn_geometry(x);
    int64_t C = g.c;
    double *buf = malloc(sizeof(double) * 4 * (size_t)(C ? C : 1));
    if (!buf)
        return err_set("batch_norm: out of memory");
    double *mean = buf, *var = buf + C, *scale = buf + 2 * C, *shift = buf + 3 * C;
    int rc = 0;
    if (training) {
        double cnt = (double)(g.n * g.s);
        rc = channel_sums(&g, tensor_data(x), NULL, mean, var);
        for (int64_t c = 0; rc == 0 && c < C; c++) {
            mean[c] /= cnt;
            var[c] = fmax(var[c] / cnt - mean[c] * mean[c], 0.0);
            if (running_mean) {
                double m = ld(tensor_data(running_mean), g.f32, c);
                st(tensor_data(running_mean), g.f32, c, (1 - momentum) * m + momentum * mean[c]);
            }
            if (running_var) { /* the running variance is the unbiased one */
                double v = ld(tensor_data(running_var), g.f32, c);
                double unbiased = cnt > 1 ? var[c] * cnt / (cnt - 1) : var[c];
                st(tensor_data(running_var), g.f32, c, (1 - momentum) * v + momentum * unbiased);
            }
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = ld(tensor_data(running_mean), g.f32, c);
            var[c] = ld(tensor_data(running_var), g.f32, c);
        }
    }
    for (int64_t c = 0; rc == 0 && c < C; c++) {
        double invstd = 1.0 / sqrt(var[c] + eps);
        scale[c] = w ? ld(tensor_data(w), g.f32, c) * invstd : invstd;
        shift[c] = (b ? ld(tensor_data(b), g.f32, c) : 0.0) - mean[c] * scale[c];
        st(tensor_data(save_mean), g.f32, c, mean[c]);
        st(tensor_data(save_invstd), g.f32, c, invstd);
    }
    if (rc == 0)
        rc = channel_affine(&g, tensor_data(y), tensor_data(x), scale, NULL, NULL, shift,
                            ep && ep->residual ? tensor_data(ep->residual) : NULL,
                            ep && ep->relu);
    free(buf);
    return rc;
}

/* With xhat = (x - mean) * invstd, k = w * invstd:
 *   gb = sum(gy), gw = sum(gy * xhat) = invstd * (sum(gy x) - mean sum(gy)),
 *   training: gx = k gy - k/M (gb + xhat gw)
 *           = gy * k + x * (-k invstd gw / M) + (k/M)(mean invstd gw - gb)
 *   eval:     gx = k gy  (mean and invstd are constants) */
int cpu_batch_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                            const tensor *x, const tensor *w, const tensor *mean,
                            const tensor *invstd, bool training)
{
    bn_shape g = bn_geometry(x);
    int64_t C = g.c;
    double M = (double)(g.n * g.s);
    double *buf = malloc(sizeof(double) * 5 * (size_t)(C ? C : 1));
    if (!buf)
        return err_set("batch_norm: out of memory");
    double *sg = buf, *sgx = buf + C, *k = buf + 2 * C, *m = buf + 3 * C, *base = buf + 4 * C;
    int rc = channel_sums(&g, tensor_data(gy), tensor_data(x), sg, sgx);
    for (int64_t c = 0; rc == 0 && c < C; c++) {
        double mu = ld(tensor_data(mean), g.f32, c), is = ld(tensor_data(invstd), g.f32, c);
        double dw = (sgx[c] - mu * sg[c]) * is;
        if (gw)
            st(tensor_data(gw), g.f32, c, dw);
        if (gb)
            st(tensor_data(gb), g.f32, c, sg[c]);
        k[c] = (w ? ld(tensor_data(w), g.f32, c) : 1.0) * is;
        m[c] = training ? -k[c] * is * dw / M : 0.0;
        base[c] = training ? k[c] / M * (mu * is * dw - sg[c]) : 0.0;
    }
    if (rc == 0 && gx)
        rc = channel_affine(&g, tensor_data(gx), tensor_data(gy), k,
                            training ? tensor_data(x) : NULL, m, base, NULL, false);
    free(buf);
    return rc;
}
