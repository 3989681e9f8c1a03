/* The STFT, windows, |z| and decibels (see stft.h). Frames of all the signals of
 * a batch are shared out among OpenMP threads, each with its own FFT plan from
 * the pool in fft.c. */
#include "stft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu/iter.h"
#include "../error.h"
#include "fft.h"
#include "signal_util.h"

/* Below this many multiply-adds of framing work, one thread does it all. */
#define PARALLEL_MIN_WORK (1 << 16)

void sig_stft_defaults(sig_stft_args *a, int64_t n_fft)
{
    memset(a, 0, sizeof *a);
    a->n_fft = n_fft;
    a->window = SIG_WIN_HANN;
    a->center = true;
    a->pad_mode = SIG_PAD_REFLECT;
    a->onesided = true;
    a->output = SIG_OUT_COMPLEX;
}

/* Value i of a window whose cosine has period `period` samples. */
static double window_value(sig_window_kind kind, int64_t i, int64_t period)
{
    double c = cos(2.0 * M_PI * (double)i / (double)period);
    switch (kind) {
    case SIG_WIN_HANN:
        return 0.5 - 0.5 * c;
    case SIG_WIN_HAMMING:
        return 0.54 - 0.46 * c;
    default:
        return 1.0;
    }
}

/* Fill w[0..length) with a window (a single value is 1, as torch makes it). */
static void window_fill(sig_window_kind kind, int64_t length, bool periodic, double *w)
{
    int64_t period = periodic ? length : length - 1;
    for (int64_t i = 0; i < length; i++)
        w[i] = length == 1 || kind == SIG_WIN_RECT ? 1.0 : window_value(kind, i, period);
}

tensor *sig_window(sig_window_kind kind, int64_t length, bool periodic, dtype_t dt)
{
    if (length < 1 || length > SIG_FFT_MAX_N) {
        err_set("window: length must be 1..%d, got %lld", SIG_FFT_MAX_N, (long long)length);
        return NULL;
    }
    if (dt != DT_F32 && dt != DT_F64) {
        err_set("window: dtype must be float32 or float64, got %s", dtype_name(dt));
        return NULL;
    }
    double *w = malloc((size_t)length * sizeof *w);
    tensor *t = w ? tensor_empty(dt, 1, &length, DEVICE_CPU) : NULL;
    if (t) {
        window_fill(kind, length, periodic, w);
        for (int64_t i = 0; i < length; i++)
            dtype_store(dt, tensor_data(t), i, w[i]);
    } else if (!w) {
        err_set("window: out of memory");
    }
    free(w);
    return t;
}

/* Everything one STFT needs, resolved from the arguments. */
typedef struct {
    const char *fn;           /* the function named in errors */
    int64_t n_fft, hop, win_length, pad, T, frames, nfreq, rows;
    dtype_t dt;
    sig_pad_mode mode;
    sig_output output;
    double scale;             /* n_fft^-1/2 when normalized, else 1 */
    double *win;              /* n_fft values: the window, zero-padded */
    float *win32;             /* the same rounded to float32 (float32 inputs) */
    int64_t wl, wr;           /* the window's support [wl, wr) within the frame */
    const void *x;            /* rows x T input samples (contiguous) */
    void *y;                  /* the output */
} stft_ctx;

/* Check n_fft, hop and win_length (and the window tensor's length) and fill
 * them into c. */
static int resolve_lengths(stft_ctx *c, const sig_stft_args *a)
{
    const char *fn = c->fn;
    if (a->n_fft < 1 || a->n_fft > SIG_FFT_MAX_N)
        return err_set("%s: n_fft must be 1..%d, got %lld", fn, SIG_FFT_MAX_N,
                       (long long)a->n_fft);
    c->n_fft = a->n_fft;
    c->hop = a->hop_length ? a->hop_length : (a->n_fft / 4 > 0 ? a->n_fft / 4 : 1);
    if (c->hop < 1)
        return err_set("%s: hop_length must be >= 1, got %lld", fn, (long long)c->hop);
    const tensor *wv = a->window_values;
    c->win_length = a->win_length ? a->win_length : (wv ? tensor_numel(wv) : a->n_fft);
    if (c->win_length < 1 || c->win_length > a->n_fft)
        return err_set("%s: win_length must be 1..n_fft (%lld), got %lld", fn,
                       (long long)a->n_fft, (long long)c->win_length);
    if (wv && (wv->ndim != 1 || !dtype_is_float(wv->dtype) ||
               tensor_device(wv).type != DEV_CPU))
        return err_set("%s: window must be a 1-D float tensor on the cpu, got a %d-D %s "
                       "tensor", fn, wv->ndim, dtype_name(wv->dtype));
    if (wv && wv->shape[0] != c->win_length)
        return err_set("%s: window has %lld values but win_length is %lld", fn,
                       (long long)wv->shape[0], (long long)c->win_length);
    return 0;
}

/* Check the padding against the signal's length and count the frames. */
static int resolve_frames(stft_ctx *c, const sig_stft_args *a)
{
    const char *fn = c->fn;
    c->mode = a->pad_mode;
    if ((unsigned)a->pad_mode > SIG_PAD_CIRCULAR)
        return err_set("%s: unknown pad_mode %d", fn, (int)a->pad_mode);
    if (c->T < 1)
        return err_set("%s: the signal is empty (0 samples)", fn);
    c->pad = a->center ? c->n_fft / 2 : 0;
    if (c->pad > 0 && c->mode == SIG_PAD_REFLECT && c->pad >= c->T)
        return err_set("%s: reflect padding of %lld samples needs a signal longer than "
                       "that, got %lld samples (pad_mode \"constant\" accepts short "
                       "signals)", fn, (long long)c->pad, (long long)c->T);
    if (c->pad > 0 && c->mode == SIG_PAD_CIRCULAR && c->pad > c->T)
        return err_set("%s: circular padding of %lld samples needs at least that many, "
                       "got %lld samples", fn, (long long)c->pad, (long long)c->T);
    int64_t padded = c->T + 2 * c->pad;
    if (padded < c->n_fft)
        return err_set("%s: the signal has %lld samples (%lld after padding), fewer than "
                       "n_fft = %lld: no frame fits%s", fn, (long long)c->T,
                       (long long)padded, (long long)c->n_fft,
                       a->center ? "" : " (center = true pads the signal)");
    c->frames = 1 + (padded - c->n_fft) / c->hop;
    return 0;
}

int64_t sig_stft_num_frames(int64_t T, const sig_stft_args *a)
{
    stft_ctx c = {.fn = "stft", .T = T};
    if (resolve_lengths(&c, a) != 0 || resolve_frames(&c, a) != 0)
        return -1;
    return c.frames;
}

/* The zero-padded window of n_fft values in c->win and c->win32 (allocated
 * here; the caller frees them). */
static int build_window(stft_ctx *c, const sig_stft_args *a)
{
    c->win = calloc((size_t)c->n_fft, sizeof *c->win);
    c->win32 = calloc((size_t)c->n_fft, sizeof *c->win32);
    if (!c->win || !c->win32)
        return err_set("%s: out of memory", c->fn);
    c->wl = (c->n_fft - c->win_length) / 2;
    c->wr = c->wl + c->win_length;
    if (!a->window_values)
        window_fill(a->window, c->win_length, true, c->win + c->wl);
    else
        for (int64_t i = 0; i < c->win_length; i++)
            c->win[c->wl + i] = tensor_get(a->window_values, &i);
    for (int64_t i = 0; i < c->n_fft; i++)
        c->win32[i] = (float)c->win[i];
    return 0;
}

/* Index of sample s (in the signal's coordinates; outside [0, T) it falls in
 * the padding) after padding, or -1 for a zero of constant padding. */
static int64_t padded_index(const stft_ctx *c, int64_t s)
{
    int64_t T = c->T;
    if (s >= 0 && s < T)
        return s;
    switch (c->mode) {
    case SIG_PAD_REFLECT:
        return s < 0 ? -s : 2 * (T - 1) - s;
    case SIG_PAD_REPLICATE:
        return s < 0 ? 0 : T - 1;
    case SIG_PAD_CIRCULAR:
        return ((s % T) + T) % T;
    default:
        return -1;
    }
}

/* Does the window's support of frame f (starting at sample s0) lie inside the
 * signal, so that no padding is read? */
static bool frame_inside(const stft_ctx *c, int64_t s0)
{
    return s0 + c->wl >= 0 && s0 + c->wr <= c->T;
}

/* frame = window * frame f of signal `row`, in float32. */
static void fill_frame_f32(const stft_ctx *c, float *frame, int64_t row, int64_t f)
{
    int64_t s0 = f * c->hop - c->pad;
    const float *x = (const float *)c->x + row * c->T, *w = c->win32;
    for (int64_t j = 0; j < c->wl; j++)
        frame[j] = 0.0f;
    for (int64_t j = c->wr; j < c->n_fft; j++)
        frame[j] = 0.0f;
    if (frame_inside(c, s0)) {
        for (int64_t j = c->wl; j < c->wr; j++)
            frame[j] = w[j] * x[s0 + j];
        return;
    }
    for (int64_t j = c->wl; j < c->wr; j++) {
        int64_t i = padded_index(c, s0 + j);
        frame[j] = i < 0 ? 0.0f : w[j] * x[i];
    }
}

/* The same in float64. */
static void fill_frame_f64(const stft_ctx *c, double *frame, int64_t row, int64_t f)
{
    int64_t s0 = f * c->hop - c->pad;
    const double *x = (const double *)c->x + row * c->T, *w = c->win;
    for (int64_t j = 0; j < c->wl; j++)
        frame[j] = 0.0;
    for (int64_t j = c->wr; j < c->n_fft; j++)
        frame[j] = 0.0;
    if (frame_inside(c, s0)) {
        for (int64_t j = c->wl; j < c->wr; j++)
            frame[j] = w[j] * x[s0 + j];
        return;
    }
    for (int64_t j = c->wl; j < c->wr; j++) {
        int64_t i = padded_index(c, s0 + j);
        frame[j] = i < 0 ? 0.0 : w[j] * x[i];
    }
}

/* Values per frequency bin in the output: 2 for complex, else 1. */
static int64_t bin_width(const stft_ctx *c)
{
    return c->output == SIG_OUT_COMPLEX ? 2 : 1;
}

/* Write a float32 spectrum (re, im of bins 0..n/2) as frame f of signal `row`
 * (the output is [rows][nfreq][frames], times 2 for complex); bins above n/2
 * (two-sided output) are the conjugates of their mirror bins n - k. One loop
 * per output kind, so each is a plain strided store loop. */
static void emit_f32(const stft_ctx *c, const float *spec, int64_t row, int64_t f)
{
    int64_t F = c->frames, w = bin_width(c), n = c->n_fft, half = n / 2;
    float sc = (float)c->scale, *y = (float *)c->y + (row * c->nfreq * F + f) * w;
    for (int64_t k = 0; k < c->nfreq; k++) {
        int64_t b = k <= half ? k : n - k;
        float re = spec[2 * b], im = spec[2 * b + 1];
        if (c->output == SIG_OUT_POWER) {
            y[k * F] = (re * re + im * im) * (sc * sc);
        } else if (c->output == SIG_OUT_MAGNITUDE) {
            y[k * F] = sqrtf(re * re + im * im) * sc;
        } else {
            y[2 * k * F] = re * sc;
            y[2 * k * F + 1] = (k <= half ? im : -im) * sc;
        }
    }
}

/* The same in float64. */
static void emit_f64(const stft_ctx *c, const double *spec, int64_t row, int64_t f)
{
    int64_t F = c->frames, w = bin_width(c), n = c->n_fft, half = n / 2;
    double sc = c->scale, *y = (double *)c->y + (row * c->nfreq * F + f) * w;
    for (int64_t k = 0; k < c->nfreq; k++) {
        int64_t b = k <= half ? k : n - k;
        double re = spec[2 * b], im = spec[2 * b + 1];
        if (c->output == SIG_OUT_POWER) {
            y[k * F] = (re * re + im * im) * (sc * sc);
        } else if (c->output == SIG_OUT_MAGNITUDE) {
            y[k * F] = sqrt(re * re + im * im) * sc;
        } else {
            y[2 * k * F] = re * sc;
            y[2 * k * F + 1] = (k <= half ? im : -im) * sc;
        }
    }
}

/* Frames [b, e) of the flattened (row, frame) range, with one plan. */
static void run_range(const stft_ctx *c, sig_fft_plan *p, int64_t b, int64_t e)
{
    for (int64_t j = b; j < e; j++) {
        int64_t row = j / c->frames, f = j % c->frames;
        if (c->dt == DT_F32) {
            fill_frame_f32(c, p->frame32, row, f);
            sig_fft_rfft(p);
            emit_f32(c, p->spec32, row, f);
        } else {
            fill_frame_f64(c, p->frame, row, f);
            sig_fft_rfft(p);
            emit_f64(c, p->spec, row, f);
        }
    }
}

/* Give back the first n plans. */
static void release_plans(sig_fft_plan **plans, int n)
{
    for (int t = 0; t < n; t++)
        sig_fft_release(plans[t]);
}

/* Transform every frame, shared out among threads (one pooled plan each). */
static int run_all(const stft_ctx *c)
{
    int64_t total = c->rows * c->frames;
    int nt = cpu_num_threads();
    if (total * c->n_fft < PARALLEL_MIN_WORK || nt < 1)
        nt = 1;
    if (nt > total)
        nt = (int)(total > 0 ? total : 1);
    if (nt > 256)
        nt = 256;
    sig_fft_plan *plans[256];
    for (int t = 0; t < nt; t++) {
        plans[t] = sig_fft_acquire(c->n_fft, c->dt);
        if (!plans[t]) {
            release_plans(plans, t);
            return err_prefix(c->fn);
        }
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++)
        run_range(c, plans[t], total * t / nt, total * (t + 1) / nt);
    release_plans(plans, nt);
    return 0;
}

/* The output tensor: the input's leading dims, then [freq, frames] (and [2]). */
static tensor *make_output(stft_ctx *c, const tensor *x)
{
    int64_t shape[TENSOR_MAX_DIMS];
    int nd = x->ndim - 1;
    memcpy(shape, x->shape, (size_t)nd * sizeof *shape);
    shape[nd++] = c->nfreq;
    shape[nd++] = c->frames;
    if (c->output == SIG_OUT_COMPLEX)
        shape[nd++] = 2;
    return tensor_empty(c->dt, nd, shape, DEVICE_CPU);
}

/* Check the arguments, then fill c (all but the data pointers). */
static int stft_prepare(stft_ctx *c, const tensor *x, const sig_stft_args *a)
{
    int max_ndim = a->output == SIG_OUT_COMPLEX ? TENSOR_MAX_DIMS - 2 : TENSOR_MAX_DIMS - 1;
    if (sig_check_signal(x, max_ndim, c->fn) != 0)
        return -1;
    if ((unsigned)a->output > SIG_OUT_POWER)
        return err_set("%s: unknown output kind %d", c->fn, (int)a->output);
    if (!a->window_values && (unsigned)a->window > SIG_WIN_RECT)
        return err_set("%s: unknown window kind %d", c->fn, (int)a->window);
    c->T = x->shape[x->ndim - 1];
    c->rows = shape_numel(x->ndim - 1, x->shape); /* the leading (batch) dims */
    c->dt = x->dtype;
    c->output = a->output;
    if (resolve_lengths(c, a) != 0 || resolve_frames(c, a) != 0)
        return -1;
    c->nfreq = a->onesided ? c->n_fft / 2 + 1 : c->n_fft;
    c->scale = a->normalized ? 1.0 / sqrt((double)c->n_fft) : 1.0;
    return 0;
}

tensor *sig_stft_named(tensor *x, const sig_stft_args *a, const char *fn)
{
    stft_ctx c = {.fn = fn};
    if (stft_prepare(&c, x, a) != 0 || build_window(&c, a) != 0) {
        free(c.win);
        free(c.win32);
        return NULL;
    }
    tensor *xc = tensor_contiguous(x);
    tensor *y = xc ? make_output(&c, x) : NULL;
    if (y) {
        c.x = tensor_data(xc);
        c.y = tensor_data(y);
        if (run_all(&c) != 0) {
            tensor_decref(y);
            y = NULL;
        }
    } else {
        err_prefix(fn);
    }
    if (xc)
        tensor_decref(xc);
    free(c.win);
    free(c.win32);
    return y;
}

tensor *sig_stft(tensor *x, const sig_stft_args *a)
{
    return sig_stft_named(x, a, "stft");
}

tensor *sig_complex_abs(tensor *z, bool power)
{
    const char *fn = power ? "power" : "magnitude";
    if (sig_check_float_cpu(z, fn) != 0)
        return NULL;
    if (z->ndim < 1 || z->shape[z->ndim - 1] != 2) {
        char buf[96];
        err_set("%s: expected a complex tensor [..., 2] (re, im), got shape %s", fn,
                tensor_shape_str(z, buf, sizeof buf));
        return NULL;
    }
    tensor *zc = tensor_contiguous(z);
    tensor *y = zc ? tensor_empty(z->dtype, z->ndim - 1, z->shape, DEVICE_CPU) : NULL;
    if (!y) {
        if (zc)
            tensor_decref(zc);
        err_prefix(fn);
        return NULL;
    }
    const void *src = tensor_data(zc);
    void *dst = tensor_data(y);
    int64_t n = tensor_numel(y);
    for (int64_t i = 0; i < n; i++) {
        double re = dtype_load(z->dtype, src, 2 * i), im = dtype_load(z->dtype, src, 2 * i + 1);
        double p = re * re + im * im;
        dtype_store(z->dtype, dst, i, power ? p : sqrt(p));
    }
    tensor_decref(zc);
    return y;
}

void sig_db_defaults(sig_db_args *a)
{
    a->multiplier = 10.0;
    a->amin = 1e-10;
    a->ref = 1.0;
    a->has_top_db = true;
    a->top_db = 80.0;
}

/* Check the decibel options (named after fn in errors). */
int sig_check_db_args(const sig_db_args *a, const char *fn)
{
    if (!(a->multiplier > 0) || !isfinite(a->multiplier))
        return err_set("%s: multiplier must be a positive number (10 for power, 20 for "
                       "magnitude), got %g", fn, a->multiplier);
    if (!(a->amin > 0) || !isfinite(a->amin))
        return err_set("%s: amin must be positive, got %g", fn, a->amin);
    if (!(a->ref > 0) || !isfinite(a->ref))
        return err_set("%s: ref must be positive, got %g", fn, a->ref);
    if (a->has_top_db && (!(a->top_db >= 0) || !isfinite(a->top_db)))
        return err_set("%s: top_db must be >= 0, got %g", fn, a->top_db);
    return 0;
}

/* Decibels of n float32 values in place (log10f: within an ulp or two of float),
 * then the top_db floor over them. */
static void db_block_f32(float *v, int64_t n, const sig_db_args *a)
{
    float off = (float)(a->multiplier * log10(a->ref > a->amin ? a->ref : a->amin));
    float mul = (float)a->multiplier, amin = (float)a->amin, mx = -INFINITY;
    if (amin <= 0.0f) /* an amin below float's range: the smallest positive float */
        amin = 1e-45f;
    for (int64_t i = 0; i < n; i++) {
        float x = v[i] < amin ? amin : v[i]; /* NaN passes through */
        v[i] = mul * log10f(x) - off;
        if (v[i] > mx)
            mx = v[i];
    }
    if (!a->has_top_db)
        return;
    float floor = (float)((double)mx - a->top_db);
    for (int64_t i = 0; i < n; i++)
        if (v[i] < floor)
            v[i] = floor;
}

/* The same for float64 values. */
static void db_block_f64(double *v, int64_t n, const sig_db_args *a)
{
    double off = a->multiplier * log10(a->ref > a->amin ? a->ref : a->amin);
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double x = v[i] < a->amin ? a->amin : v[i];
        v[i] = a->multiplier * log10(x) - off;
        if (v[i] > mx)
            mx = v[i];
    }
    if (!a->has_top_db)
        return;
    double floor = mx - a->top_db;
    for (int64_t i = 0; i < n; i++)
        if (v[i] < floor)
            v[i] = floor;
}

tensor *sig_amplitude_to_db_named(tensor *x, const sig_db_args *a, const char *fn)
{
    if (sig_check_float_cpu(x, fn) != 0 || sig_check_db_args(a, fn) != 0)
        return NULL;
    int64_t n = tensor_numel(x);
    int64_t block = x->ndim >= 2 ? x->shape[x->ndim - 1] * x->shape[x->ndim - 2] : n;
    int64_t nblocks = block > 0 ? n / block : 0;
    tensor *y = tensor_copy_as(x, x->dtype); /* contiguous, its own storage */
    if (!y) {
        err_prefix(fn);
        return NULL;
    }
    void *v = tensor_data(y);
    int nt = n < PARALLEL_MIN_WORK ? 1 : cpu_num_threads();
    bool f32 = x->dtype == DT_F32;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < nblocks; b++) {
        if (f32)
            db_block_f32((float *)v + b * block, block, a);
        else
            db_block_f64((double *)v + b * block, block, a);
    }
    return y;
}

tensor *sig_amplitude_to_db(tensor *x, const sig_db_args *a)
{
    return sig_amplitude_to_db_named(x, a, "amplitude_to_db");
}
