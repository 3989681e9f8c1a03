/* Batch normalisation on the CPU over a contiguous [N, C, S] tensor (S: the
 * product of the spatial dims; 1 for BatchNorm1d on [N, C]). One channel per
 * task; sums in double. Both float types share the code through load/store
 * helpers that the compiler specialises per call site. */
#include <math.h>

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

/* Sum and sum of squared deviations of channel c (two passes: exact enough for
 * float32 data whose mean is far from 0). */
static void channel_moments(const void *x, bool f32, int64_t n, int64_t C, int64_t S,
                            int64_t c, double *mean, double *var)
{
    double sum = 0;
    for (int64_t b = 0; b < n; b++) {
        int64_t base = (b * C + c) * S;
        for (int64_t s = 0; s < S; s++)
            sum += ld(x, f32, base + s);
    }
    double m = sum / (double)(n * S), sq = 0;
    for (int64_t b = 0; b < n; b++) {
        int64_t base = (b * C + c) * S;
        for (int64_t s = 0; s < S; s++) {
            double d = ld(x, f32, base + s) - m;
            sq += d * d;
        }
    }
    *mean = m;
    *var = sq / (double)(n * S);
}

int cpu_batch_norm(tensor *y, tensor *save_mean, tensor *save_invstd, const tensor *x,
                   const tensor *w, const tensor *b, tensor *running_mean, tensor *running_var,
                   bool training, double momentum, double eps)
{
    int64_t n = x->shape[0], C = x->shape[1], S = tensor_numel(x) / (n * C > 0 ? n * C : 1);
    bool f32 = x->dtype == DT_F32;
    const void *xd = tensor_data(x);
    void *yd = tensor_data(y);
    int nt = tensor_numel(x) >= 32768 ? cpu_num_threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double mean, var;
        if (training) {
            channel_moments(xd, f32, n, C, S, c, &mean, &var);
            if (running_mean) {
                double m = ld(tensor_data(running_mean), f32, c);
                st(tensor_data(running_mean), f32, c, (1 - momentum) * m + momentum * mean);
            }
            if (running_var) { /* the running variance is the unbiased one */
                double cnt = (double)(n * S), v = ld(tensor_data(running_var), f32, c);
                double unbiased = cnt > 1 ? var * cnt / (cnt - 1) : var;
                st(tensor_data(running_var), f32, c, (1 - momentum) * v + momentum * unbiased);
            }
        } else {
            mean = ld(tensor_data(running_mean), f32, c);
            var = ld(tensor_data(running_var), f32, c);
        }
        double invstd = 1.0 / sqrt(var + eps);
        double scale = w ? ld(tensor_data(w), f32, c) * invstd : invstd;
        double shift = (b ? ld(tensor_data(b), f32, c) : 0.0) - mean * scale;
        st(tensor_data(save_mean), f32, c, mean);
        st(tensor_data(save_invstd), f32, c, invstd);
        for (int64_t bb = 0; bb < n; bb++) {
            int64_t base = (bb * C + c) * S;
            if (f32) {
                const float *xs = (const float *)xd + base;
                float *ys = (float *)yd + base;
                float sc = (float)scale, sh = (float)shift;
                for (int64_t s = 0; s < S; s++)
                    ys[s] = xs[s] * sc + sh;
            } else {
                for (int64_t s = 0; s < S; s++)
                    st(yd, false, base + s, ld(xd, false, base + s) * scale + shift);
            }
        }
    }
    return 0;
}

/* With xhat = (x - mean) * invstd:
 *   gb = sum(gy), gw = sum(gy * xhat),
 *   training: gx = w * invstd / M * (M * gy - gb - xhat * gw)
 *   eval:     gx = w * invstd * gy   (mean and invstd are constants) */
int cpu_batch_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                            const tensor *x, const tensor *w, const tensor *mean,
                            const tensor *invstd, bool training)
{
    int64_t n = x->shape[0], C = x->shape[1], S = tensor_numel(x) / (n * C > 0 ? n * C : 1);
    bool f32 = x->dtype == DT_F32;
    const void *xd = tensor_data(x), *g = tensor_data(gy);
    double M = (double)(n * S);
    int nt = tensor_numel(x) >= 32768 ? cpu_num_threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double mu = ld(tensor_data(mean), f32, c), is = ld(tensor_data(invstd), f32, c);
        double sg = 0, sgx = 0;
        for (int64_t b = 0; b < n; b++) {
            int64_t base = (b * C + c) * S;
            for (int64_t s = 0; s < S; s++) {
                double gv = ld(g, f32, base + s);
                sg += gv;
                sgx += gv * (ld(xd, f32, base + s) - mu);
            }
        }
        double dw = sgx * is;
        if (gw)
            st(tensor_data(gw), f32, c, dw);
        if (gb)
            st(tensor_data(gb), f32, c, sg);
        if (!gx)
            continue;
        double wc = w ? ld(tensor_data(w), f32, c) : 1.0;
        double k = wc * is;
        for (int64_t b = 0; b < n; b++) {
            int64_t base = (b * C + c) * S;
            for (int64_t s = 0; s < S; s++) {
                double gv = ld(g, f32, base + s);
                double v = training ? k / M * (M * gv - sg - (ld(xd, f32, base + s) - mu) * is * dw)
                                    : k * gv;
                st(tensor_data(gx), f32, base + s, v);
            }
        }
    }
    return 0;
}
