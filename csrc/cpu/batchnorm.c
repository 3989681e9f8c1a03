/* Batch normalisation on the CPU. The input is contiguous [N, C, ...] (S: the
 * product of the spatial dims; 1 for BatchNorm1d on [N, C]) or channels-last
 * [N, C, H, W] (rows of C values in memory). Sums are in double, one pass for the
 * sum and the sum of squares; per-channel results go through double arrays, so
 * both float types share everything but the innermost loops. */
#include <math.h>
#include <omp.h>
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

/* gy as the relu's backward passes it: a * 1 where mask > 0, a * 0 elsewhere
 * (what its op computes: the same bits), n values. */
static void masked_f32(float *restrict out, const float *restrict a, const float *restrict mask,
                       int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * (mask[i] > 0.0f ? 1.0f : 0.0f);
}

static inline double masked(const void *a, const void *mask, int64_t i)
{
    double v = ld(a, false, i);
    return mask ? v * (ld(mask, false, i) > 0.0 ? 1.0 : 0.0) : v;
}

/* Scratch of n floats for each of the threads (NULL with the error set). */
static float *thread_scratch(const bn_shape *g, int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)g->threads * (size_t)(n ? n : 1));
    if (!p)
        err_set("batch_norm: out of memory for %d x %lld scratch values", g->threads,
                (long long)n);
    return p;
}

/* Per channel: s1 = sum(a) and s2 = sum(a * b), with b = a when b is NULL, and a
 * masked by mask (masked_f32) when given. Used as (x, NULL) for sum x and sum
 * x^2, and as (gy, x) for sum gy and sum gy x. */
static int channel_sums(const bn_shape *g, const void *a, const void *b, const void *mask,
                        double *s1, double *s2)
{
    int64_t C = g->c;
    if (!g->rows) {
        float *scr = mask && g->f32 ? thread_scratch(g, g->s) : NULL;
        if (mask && g->f32 && !scr)
            return -1;
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int64_t c = 0; c < C; c++) {
            double u = 0, v = 0;
            float *mine = scr ? scr + (size_t)omp_get_thread_num() * (size_t)g->s : NULL;
            for (int64_t i = 0; i < g->n; i++) {
                int64_t base = (i * C + c) * g->s;
                if (g->f32) {
                    const float *ap = (const float *)a + base;
                    if (mine) {
                        masked_f32(mine, ap, (const float *)mask + base, g->s);
                        ap = mine;
                    }
                    plane_sums_f32(ap, b ? (const float *)b + base : NULL, g->s, &u, &v);
                    continue;
                }
                for (int64_t k = 0; k < g->s; k++) {
                    double av = masked(a, mask, base + k), bv = b ? ld(b, false, base + k) : av;
                    u += av;
                    v += av * bv;
                }
            }
            s1[c] = u;
            s2[c] = v;
        }
        free(scr);
        return 0;
    }
    /* Rows of C: each thread sums a block of rows into its own arrays. */
    int nt = g->threads;
    double *part = calloc((size_t)(2 * nt) * (size_t)C, sizeof *part);
    float *fpart = malloc(sizeof(float) * (size_t)(2 * nt) * (size_t)C + 1);
    float *scr = mask && g->f32 ? thread_scratch(g, ROW_BLOCK * C) : NULL;
    if (!part || !fpart || (mask && g->f32 && !scr)) {
        free(part);
        free(fpart);
        free(scr);
        return err_set("batch_norm: out of memory for %d x %lld partial sums", nt, (long long)C);
    }
    int64_t rows = g->n * g->s;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        double *u = part + (size_t)(2 * t) * (size_t)C, *v = u + C;
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        if (g->f32) {
            float *fu = fpart + (size_t)(2 * t) * (size_t)C;
            if (!scr) {
                row_sums_f32(a, b, r0, r1, C, u, v, fu, fu + C);
                continue;
            }
            float *mine = scr + (size_t)t * (size_t)(ROW_BLOCK * C);
            for (int64_t r = r0; r < r1; r += ROW_BLOCK) { /* a block of rows, masked */
                int64_t n = (r + ROW_BLOCK < r1 ? ROW_BLOCK : r1 - r);
                masked_f32(mine, (const float *)a + r * C, (const float *)mask + r * C, n * C);
                row_sums_f32(mine, b ? (const float *)b + r * C : NULL, 0, n, C, u, v, fu, fu + C);
            }
            continue;
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < C; c++) {
                double av = masked(a, mask, r * C + c), bv = b ? ld(b, false, r * C + c) : av;
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
    free(scr);
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

/* What channel_affine does besides out = in * k + extra * m + base: the
 * forward's epilogue (+ res, a residual in out's layout; relu), or the
 * backward's prologue (in masked by mask as the relu's backward passes it,
 * and that masked gradient also written to through when given). */
typedef struct {
    const void *res;
    bool relu;
    const void *mask;
    void *through;
} affine_extras;

/* out = in * k[c] + extra * m[c] + base[c] over the whole tensor (out NULL: only
 * the masked in to through), where extra is a second input (the backward pass's
 * x) or absent, with the extras x, run on each plane or row while it is in cache.
 * float32 runs typed loops over planes or rows with float coefficients; float64
 * the generic loop. */
static int channel_affine(const bn_shape *g, void *out, const void *in, const double *k,
                          const void *extra, const double *m, const double *base,
                          const affine_extras *x)
{
    int64_t C = g->c, total = g->n * g->c * g->s;
    if (g->f32) {
        int64_t run = g->rows ? C : g->s; /* values per plane or row */
        float *kf = malloc(sizeof(float) * 3 * (size_t)(C ? C : 1));
        float *scr = x->mask ? thread_scratch(g, run) : NULL;
        if (!kf || (x->mask && !scr)) {
            free(kf);
            free(scr);
            return err_set("batch_norm: out of memory");
        }
        float *mf = kf + C, *bf = kf + 2 * C;
        for (int64_t c = 0; c < C; c++) {
            kf[c] = (float)k[c];
            mf[c] = m ? (float)m[c] : 0.0f;
            bf[c] = (float)base[c];
        }
        const float *in32 = in, *ex32 = extra, *res32 = x->res, *mask32 = x->mask;
        float *o32 = out, *th32 = x->through;
        int64_t runs = g->rows ? g->n * g->s : g->n * C;
#pragma omp parallel for num_threads(g->threads) schedule(static)
        for (int64_t p = 0; p < runs; p++) {
            int64_t off = p * run;
            const float *src = in32 + off;
            if (scr) {
                float *mine = scr + (size_t)omp_get_thread_num() * (size_t)run;
                masked_f32(mine, src, mask32 + off, run);
                src = mine;
            }
            if (th32)
                memcpy(th32 + off, src, sizeof(float) * (size_t)run);
            if (!o32)
                continue;
            const float *ex = ex32 ? ex32 + off : NULL;
            if (g->rows) {
                affine_row_f32(o32 + off, src, ex, C, kf, mf, bf);
            } else {
                int64_t c = p % C;
                affine_plane_f32(o32 + off, src, ex, g->s, kf[c], mf[c], bf[c]);
            }
            epilogue_f32(o32 + off, res32 ? res32 + off : NULL, x->relu, run);
        }
        free(kf);
        free(scr);
        return 0;
    }
#pragma omp parallel for num_threads(g->threads) schedule(static)
    for (int64_t i = 0; i < total; i++) {
        int64_t c = g->rows ? i % C : (i / g->s) % C;
        double a = masked(in, x->mask, i);
        if (x->through)
            st(x->through, false, i, a);
        if (!out)
            continue;
        double v = a * k[c] + base[c];
        if (extra)
            v += m[c] * ld(extra, false, i);
        if (x->res)
            v += ld(x->res, false, i);
        if (x->relu)
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
        rc = channel_sums(&g, tensor_data(x), NULL, NULL, mean, var);
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
                            &(affine_extras){ep && ep->residual ? tensor_data(ep->residual)
                                                                : NULL,
                                             ep && ep->relu, NULL, NULL});
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
                            const tensor *invstd, bool training,
                            const tensor *relu_out, tensor *g_residual)
{
    bn_shape g = bn_geometry(x);
    int64_t C = g.c;
    double M = (double)(g.n * g.s);
    double *buf = malloc(sizeof(double) * 5 * (size_t)(C ? C : 1));
    if (!buf)
        return err_set("batch_norm: out of memory");
    double *sg = buf, *sgx = buf + C, *k = buf + 2 * C, *m = buf + 3 * C, *base = buf + 4 * C;
    const void *mask = relu_out ? tensor_data(relu_out) : NULL;
    int rc = channel_sums(&g, tensor_data(gy), tensor_data(x), mask, sg, sgx);
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
    if (rc == 0 && (gx || g_residual))
        rc = channel_affine(&g, gx ? tensor_data(gx) : NULL, tensor_data(gy), k,
                            training ? tensor_data(x) : NULL, m, base,
                            &(affine_extras){NULL, false, mask,
                                             g_residual ? tensor_data(g_residual) : NULL});
    free(buf);
    return rc;
}
