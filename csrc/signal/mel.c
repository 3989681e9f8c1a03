/* Mel filterbanks, mel spectrograms, the DCT and MFCCs (see mel.h). */
#include "mel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu/iter.h"
#include "../error.h"
#include "signal_util.h"

/* Largest filterbank accepted (far beyond any audio use). */
#define MEL_MAX_BANDS 65536
#define MEL_MAX_FREQS (1 << 20)
/* Below this many multiply-adds, sig_apply_matrix runs on one thread. */
#define PARALLEL_MIN_WORK (1 << 16)

/* The Slaney scale: linear below 1 kHz, logarithmic above. */
#define SLANEY_HZ_PER_MEL (200.0 / 3.0)
#define SLANEY_BREAK_HZ 1000.0
#define SLANEY_BREAK_MEL 15.0 /* 1000 Hz / (200/3 Hz per mel) */

void sig_mel_defaults(sig_mel_args *m)
{
    m->n_mels = 128;
    m->sample_rate = 16000.0;
    m->fmin = 0.0;
    m->fmax = -1.0;
    m->scale = SIG_MEL_HTK;
    m->norm_slaney = false;
}

void sig_mfcc_defaults(sig_mfcc_args *c)
{
    c->n_mfcc = 40;
    c->ortho = true;
    c->log_mels = false;
    sig_db_defaults(&c->db); /* top_db 80, as torchaudio's MFCC */
}

/* ln(6.4) / 27: the Slaney scale's log step per mel above 1 kHz. */
static double slaney_logstep(void)
{
    return log(6.4) / 27.0;
}

double sig_hz_to_mel(double hz, sig_mel_scale s)
{
    if (s == SIG_MEL_HTK)
        return 2595.0 * log10(1.0 + hz / 700.0);
    if (hz >= SLANEY_BREAK_HZ)
        return SLANEY_BREAK_MEL + log(hz / SLANEY_BREAK_HZ) / slaney_logstep();
    return hz / SLANEY_HZ_PER_MEL;
}

double sig_mel_to_hz(double mel, sig_mel_scale s)
{
    if (s == SIG_MEL_HTK)
        return 700.0 * (pow(10.0, mel / 2595.0) - 1.0);
    if (mel >= SLANEY_BREAK_MEL)
        return SLANEY_BREAK_HZ * exp(slaney_logstep() * (mel - SLANEY_BREAK_MEL));
    return mel * SLANEY_HZ_PER_MEL;
}

/* Check the filterbank's arguments; *hi gets fmax (sample_rate / 2 by default). */
static int check_mel_args(const sig_mel_args *m, int64_t n_freqs, double *hi, const char *fn)
{
    if (n_freqs < 1 || n_freqs > MEL_MAX_FREQS)
        return err_set("%s: n_freqs must be 1..%d, got %lld", fn, MEL_MAX_FREQS,
                       (long long)n_freqs);
    if (m->n_mels < 1 || m->n_mels > MEL_MAX_BANDS)
        return err_set("%s: n_mels must be 1..%d, got %lld", fn, MEL_MAX_BANDS,
                       (long long)m->n_mels);
    if (!(m->sample_rate > 0) || !isfinite(m->sample_rate))
        return err_set("%s: sample_rate must be positive, got %g", fn, m->sample_rate);
    if (!(m->fmin >= 0) || !isfinite(m->fmin))
        return err_set("%s: fmin must be >= 0 Hz, got %g", fn, m->fmin);
    *hi = m->fmax < 0 ? m->sample_rate / 2 : m->fmax;
    if (!(*hi > m->fmin) || !isfinite(*hi))
        return err_set("%s: fmax (%g Hz) must be above fmin (%g Hz)", fn, *hi, m->fmin);
    if ((unsigned)m->scale > SIG_MEL_SLANEY)
        return err_set("%s: unknown mel scale %d", fn, (int)m->scale);
    return 0;
}

/* The n_mels + 2 band edges in Hz, equally spaced in mel from lo to hi. */
static int band_edges(const sig_mel_args *m, double lo, double hi, double *edges,
                      const char *fn)
{
    double mlo = sig_hz_to_mel(lo, m->scale), mhi = sig_hz_to_mel(hi, m->scale);
    int64_t n = m->n_mels + 2;
    for (int64_t i = 0; i < n; i++)
        edges[i] = sig_mel_to_hz(mlo + (mhi - mlo) * (double)i / (double)(n - 1), m->scale);
    for (int64_t i = 1; i < n; i++)
        if (!(edges[i] > edges[i - 1]))
            return err_set("%s: fmin (%g Hz) and fmax (%g Hz) are too close for %lld mel "
                           "bands", fn, lo, hi, (long long)m->n_mels);
    return 0;
}

/* Weight of bin frequency f in the triangle on edges e[0] < e[1] < e[2]. */
static double triangle(const double *e, double f, bool slaney)
{
    double lower = (f - e[0]) / (e[1] - e[0]), upper = (e[2] - f) / (e[2] - e[1]);
    double w = lower < upper ? lower : upper;
    if (!(w > 0))
        return 0.0;
    return slaney ? w * 2.0 / (e[2] - e[0]) : w;
}

/* Fill a zeroed [n_mels, n_freqs] filterbank from the band edges: each band only
 * over the bins inside its triangle (the rest stay 0). */
static void fill_bands(tensor *fb, const double *edges, const sig_mel_args *m)
{
    int64_t n_freqs = fb->shape[1];
    void *d = tensor_data(fb);
    double df = n_freqs > 1 ? m->sample_rate / 2 / (double)(n_freqs - 1) : 0.0;
    for (int64_t b = 0; b < m->n_mels; b++) {
        const double *e = edges + b;
        int64_t lo = 0, hi = n_freqs - 1;
        if (df > 0) {
            double flo = floor(e[0] / df), fhi = ceil(e[2] / df);
            lo = flo <= 0 ? 0 : flo < (double)n_freqs ? (int64_t)flo : n_freqs;
            hi = fhi < (double)(n_freqs - 1) ? (int64_t)fhi : n_freqs - 1;
        }
        for (int64_t k = lo; k <= hi; k++)
            dtype_store(fb->dtype, d, b * n_freqs + k,
                        triangle(e, df * (double)k, m->norm_slaney));
    }
}

/* The filterbank with errors led by fn. */
static tensor *mel_filterbank_named(int64_t n_freqs, const sig_mel_args *m, dtype_t dt,
                                    const char *fn)
{
    double hi = 0;
    if (check_mel_args(m, n_freqs, &hi, fn) != 0)
        return NULL;
    if (dt != DT_F32 && dt != DT_F64) {
        err_set("%s: dtype must be float32 or float64, got %s", fn, dtype_name(dt));
        return NULL;
    }
    double *edges = malloc((size_t)(m->n_mels + 2) * sizeof *edges);
    tensor *fb = NULL;
    if (!edges)
        err_set("%s: out of memory", fn);
    else if (band_edges(m, m->fmin, hi, edges, fn) == 0) {
        int64_t shape[2] = {m->n_mels, n_freqs};
        fb = tensor_zeros(dt, 2, shape, DEVICE_CPU);
    }
    if (fb)
        fill_bands(fb, edges, m);
    free(edges);
    return fb;
}

tensor *sig_mel_filterbank(int64_t n_freqs, const sig_mel_args *m, dtype_t dt)
{
    return mel_filterbank_named(n_freqs, m, dt, "mel_filterbank");
}

/* out[t] = sum over k in [lo, hi) of w[k] * s[k * T + t], in float32. */
static void apply_row_f32(const float *w, const float *s, float *out, int64_t lo, int64_t hi,
                          int64_t T)
{
    for (int64_t t = 0; t < T; t++)
        out[t] = 0.0f;
    for (int64_t k = lo; k < hi; k++) {
        float wk = w[k];
        const float *sk = s + k * T;
        for (int64_t t = 0; t < T; t++)
            out[t] += wk * sk[t];
    }
}

/* The same in float64. */
static void apply_row_f64(const double *w, const double *s, double *out, int64_t lo,
                          int64_t hi, int64_t T)
{
    for (int64_t t = 0; t < T; t++)
        out[t] = 0.0;
    for (int64_t k = lo; k < hi; k++) {
        double wk = w[k];
        const double *sk = s + k * T;
        for (int64_t t = 0; t < T; t++)
            out[t] += wk * sk[t];
    }
}

/* The non-zero span [range[2m], range[2m+1]) of each row of a contiguous [M, F]
 * matrix (an all-zero row gets an empty span). */
static void row_spans(const tensor *mat, int64_t *range)
{
    int64_t M = mat->shape[0], F = mat->shape[1];
    const void *d = tensor_data(mat);
    for (int64_t m = 0; m < M; m++) {
        int64_t lo = 0, hi = F;
        while (lo < F && dtype_load(mat->dtype, d, m * F + lo) == 0.0)
            lo++;
        while (hi > lo && dtype_load(mat->dtype, d, m * F + hi - 1) == 0.0)
            hi--;
        range[2 * m] = lo;
        range[2 * m + 1] = hi;
    }
}

/* Check mat [M, F] against spec [..., F, T] (errors led by fn). */
static int check_apply(const tensor *mat, const tensor *spec, const char *fn)
{
    if (sig_check_float_cpu(mat, fn) != 0 || sig_check_float_cpu(spec, fn) != 0)
        return -1;
    char b1[96], b2[96];
    if (mat->ndim != 2 || spec->ndim < 2 || spec->shape[spec->ndim - 2] != mat->shape[1])
        return err_set("%s: cannot apply a matrix of shape %s to a spectrogram of shape %s "
                       "(expected [M, F] and [..., F, T])", fn,
                       tensor_shape_str(mat, b1, sizeof b1),
                       tensor_shape_str(spec, b2, sizeof b2));
    return 0;
}

/* out[r, m, :] = mat[m, span] @ spec[r, span, :] for every (r, m), in parallel. */
static void apply_all(const tensor *mat, const tensor *spec, tensor *out, const int64_t *range)
{
    int64_t M = mat->shape[0], F = mat->shape[1], T = spec->shape[spec->ndim - 1];
    int64_t rows = F * T > 0 ? tensor_numel(spec) / (F * T) : 0, jobs = rows * M;
    int nt = jobs * F * T / (M > 0 ? M : 1) < PARALLEL_MIN_WORK ? 1 : cpu_num_threads();
    const void *w = tensor_data(mat), *s = tensor_data(spec);
    void *o = tensor_data(out);
    bool f32 = spec->dtype == DT_F32;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t j = 0; j < jobs; j++) {
        int64_t r = j / M, m = j % M, lo = range[2 * m], hi = range[2 * m + 1];
        if (f32)
            apply_row_f32((const float *)w + m * F, (const float *)s + r * F * T,
                          (float *)o + j * T, lo, hi, T);
        else
            apply_row_f64((const double *)w + m * F, (const double *)s + r * F * T,
                          (double *)o + j * T, lo, hi, T);
    }
}

/* sig_apply_matrix with errors led by fn. */
static tensor *apply_matrix_named(tensor *mat, tensor *spec, const char *fn)
{
    if (check_apply(mat, spec, fn) != 0)
        return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, spec->shape, (size_t)spec->ndim * sizeof *shape);
    shape[spec->ndim - 2] = mat->shape[0];
    tensor *mc = tensor_copy_as(mat, spec->dtype);
    tensor *sc = mc ? tensor_contiguous(spec) : NULL;
    tensor *out = sc ? tensor_empty(spec->dtype, spec->ndim, shape, DEVICE_CPU) : NULL;
    int64_t *range = out ? malloc((size_t)(mc->shape[0] * 2 + 1) * sizeof *range) : NULL;
    if (range) {
        row_spans(mc, range);
        apply_all(mc, sc, out, range);
    } else {
        if (out) {
            err_set("out of memory");
            tensor_decref(out);
            out = NULL;
        }
        err_prefix(fn);
    }
    free(range);
    if (sc)
        tensor_decref(sc);
    if (mc)
        tensor_decref(mc);
    return out;
}

tensor *sig_apply_matrix(tensor *mat, tensor *spec)
{
    return apply_matrix_named(mat, spec, "apply_matrix");
}

/* The mel spectrogram with errors led by fn. */
static tensor *mel_spectrogram_named(tensor *x, const sig_stft_args *s, const sig_mel_args *m,
                                     const char *fn)
{
    if (sig_check_float_cpu(x, fn) != 0)
        return NULL;
    if (s->output != SIG_OUT_POWER && s->output != SIG_OUT_MAGNITUDE) {
        err_set("%s: the spectrogram must be a power or magnitude one", fn);
        return NULL;
    }
    if (!s->onesided) {
        err_set("%s: the spectrogram must be onesided", fn);
        return NULL;
    }
    int64_t n_freqs = s->n_fft / 2 + 1;
    tensor *fb = mel_filterbank_named(n_freqs, m, x->dtype, fn);
    tensor *spec = fb ? sig_stft_named(x, s, fn) : NULL;
    tensor *out = spec ? apply_matrix_named(fb, spec, fn) : NULL;
    if (spec)
        tensor_decref(spec);
    if (fb)
        tensor_decref(fb);
    return out;
}

tensor *sig_mel_spectrogram(tensor *x, const sig_stft_args *s, const sig_mel_args *m)
{
    return mel_spectrogram_named(x, s, m, "mel_spectrogram");
}

tensor *sig_dct_matrix(int64_t n_out, int64_t n_in, bool ortho, dtype_t dt)
{
    if (n_in < 1 || n_in > MEL_MAX_BANDS || n_out < 1 || n_out > n_in) {
        err_set("dct_matrix: expected 1 <= n_out <= n_in <= %d, got n_out %lld, n_in %lld",
                MEL_MAX_BANDS, (long long)n_out, (long long)n_in);
        return NULL;
    }
    if (dt != DT_F32 && dt != DT_F64) {
        err_set("dct_matrix: dtype must be float32 or float64, got %s", dtype_name(dt));
        return NULL;
    }
    int64_t shape[2] = {n_out, n_in};
    tensor *d = tensor_empty(dt, 2, shape, DEVICE_CPU);
    if (!d)
        return NULL;
    for (int64_t k = 0; k < n_out; k++) {
        double s = ortho ? sqrt((k == 0 ? 1.0 : 2.0) / (double)n_in) : 2.0;
        for (int64_t m = 0; m < n_in; m++)
            dtype_store(dt, tensor_data(d), k * n_in + m,
                        s * cos(M_PI / (double)n_in * ((double)m + 0.5) * (double)k));
    }
    return d;
}

/* ln(x + 1e-6) of every element of a fresh contiguous tensor, in place. */
static void log_offset_inplace(tensor *t)
{
    int64_t n = tensor_numel(t);
    void *d = tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        dtype_store(t->dtype, d, i, log(dtype_load(t->dtype, d, i) + 1e-6));
}

tensor *sig_mfcc(tensor *x, const sig_stft_args *s, const sig_mel_args *m,
                 const sig_mfcc_args *c)
{
    if (c->n_mfcc < 1 || c->n_mfcc > m->n_mels) {
        err_set("mfcc: n_mfcc must be 1..n_mels (%lld), got %lld", (long long)m->n_mels,
                (long long)c->n_mfcc);
        return NULL;
    }
    if (!c->log_mels && sig_check_db_args(&c->db, "mfcc") != 0)
        return NULL;
    tensor *mel = mel_spectrogram_named(x, s, m, "mfcc");
    if (!mel)
        return NULL;
    tensor *logmel = mel;
    if (c->log_mels)
        log_offset_inplace(mel); /* mel is our own fresh tensor */
    else
        logmel = sig_amplitude_to_db_named(mel, &c->db, "mfcc");
    tensor *dct = logmel ? sig_dct_matrix(c->n_mfcc, m->n_mels, c->ortho, x->dtype) : NULL;
    tensor *out = dct ? apply_matrix_named(dct, logmel, "mfcc") : NULL;
    if (dct)
        tensor_decref(dct);
    if (logmel && logmel != mel)
        tensor_decref(logmel);
    tensor_decref(mel);
    return out;
}
