/* Audio: reading through libsndfile into a growing buffer (the declared length
 * of a hostile file is never trusted for an allocation), mixing or
 * de-interleaving into a tensor, the windowed-sinc resampler, and the atomic
 * WAV writer. See audio.h for the formats and the resampler's quality. */
#include "audio.h"

#include <inttypes.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../error.h"
#include "io_file.h"

#ifdef MILES_FUZZ
/* The fuzzing build lowers the cap so that a tiny compressed input cannot
 * exhaust the fuzzer's memory; the checks are the same. */
#define AUDIO_MAX_BYTES ((uint64_t)64 << 20)
#else
/* The largest tensor we make or read into: 2 GiB of float32 samples. */
#define AUDIO_MAX_BYTES ((uint64_t)1 << 31)
#endif
#define AUDIO_MAX_CHANNELS 1024
#define AUDIO_MAX_RATE 10000000
#define AUDIO_CHUNK 65536 /* samples per read or write */

/* The resampler's kernel (see audio.h). */
#define RS_ZEROS 32     /* zero crossings on each side */
#define RS_RES 512      /* table points per zero crossing */
#define RS_BETA 8.0     /* Kaiser window's beta */
#define RS_ROLLOFF 0.92 /* cutoff as a fraction of the lower Nyquist */

/* --- the resampler --- */

/* The modified Bessel function I0, by its power series (converges fast for the
 * arguments a Kaiser window with beta <= 20 needs). */
static double rs_bessel_i0(double x)
{
    double sum = 1.0, term = 1.0, q = x * x / 4.0;
    for (int k = 1; k < 64; k++) {
        term *= q / ((double)k * k);
        sum += term;
        if (term < sum * 1e-17)
            break;
    }
    return sum;
}

/* The kernel sinc(u) * kaiser(u / RS_ZEROS) at u = i / RS_RES, i = 0..ZEROS*RES,
 * plus one zero so that interpolation at the last point stays inside. */
static double *rs_table(void)
{
    size_t n = (size_t)RS_ZEROS * RS_RES + 2;
    double *tab = malloc(n * sizeof *tab);
    if (!tab)
        return NULL;
    double norm = rs_bessel_i0(RS_BETA);
    for (size_t i = 0; i + 1 < n; i++) {
        double u = (double)i / RS_RES, r = u / RS_ZEROS;
        double sinc = i == 0 ? 1.0 : sin(M_PI * u) / (M_PI * u);
        double w = r >= 1.0 ? 0.0 : rs_bessel_i0(RS_BETA * sqrt(1.0 - r * r)) / norm;
        tab[i] = sinc * w;
    }
    tab[n - 1] = 0.0;
    return tab;
}

/* The number of frames n input frames become: ceil(n * to / from). */
static int64_t rs_length(int64_t n, int from, int to)
{
    return (n * to + from - 1) / from;
}

/* One output sample at input position t = base + frac / to (in input frames):
 * the kernel, scaled by s (the cutoff over the input's Nyquist), summed over the
 * input frames within its reach. */
static float rs_sample(const double *tab, const float *x, int64_t n, int64_t base,
                       double frac, double s)
{
    double t = (double)base + frac, reach = RS_ZEROS / s, acc = 0.0;
    int64_t lo = (int64_t)ceil(t - reach), hi = (int64_t)floor(t + reach);
    if (lo < 0)
        lo = 0;
    if (hi > n - 1)
        hi = n - 1;
    for (int64_t k = lo; k <= hi; k++) {
        double pos = fabs(t - (double)k) * s * RS_RES;
        size_t i = (size_t)pos;
        if (i >= (size_t)RS_ZEROS * RS_RES)
            continue;
        double f = pos - (double)i, h = tab[i] + f * (tab[i + 1] - tab[i]);
        acc += h * x[k];
    }
    return (float)(acc * s);
}

/* Resample n frames of x at rate from into ny frames of y at rate to. */
static void rs_run(const double *tab, const float *x, int64_t n, int from, int to, float *y,
                   int64_t ny)
{
    double s = (to < from ? (double)to / from : 1.0) * RS_ROLLOFF;
    for (int64_t j = 0; j < ny; j++) {
        int64_t num = j * from; /* output j lies at input position num / to, exactly */
        y[j] = rs_sample(tab, x, n, num / to, (double)(num % to) / to, s);
    }
}

/* Check a rate pair and the output size; returns the output length or -1. */
static int64_t rs_check(const char *what, int64_t n, int from, int to, int64_t rows)
{
    if (from < 1 || to < 1 || from > AUDIO_MAX_RATE || to > AUDIO_MAX_RATE)
        return io_file_err(what, "bad resampling rates %d -> %d (1..%d Hz)", from, to,
                           AUDIO_MAX_RATE);
    int64_t ny = rs_length(n, from, to);
    if ((uint64_t)ny * (uint64_t)rows * sizeof(float) > AUDIO_MAX_BYTES)
        return io_file_err(what, "%" PRId64 " frames at %d Hz are %" PRId64 " at %d Hz, over "
                           "the %" PRIu64 "-byte limit", n, from, ny, to, AUDIO_MAX_BYTES);
    return ny;
}

/* Resample each of the rows of a contiguous float32 [rows, n] buffer into a new
 * [rows, ny] (or [ny] when ndim is 1) tensor. */
static tensor *rs_rows(const char *what, const float *x, int64_t rows, int64_t n, int ndim,
                       int from, int to)
{
    int64_t ny = rs_check(what, n, from, to, rows);
    if (ny < 0)
        return NULL;
    double *tab = rs_table();
    int64_t shape[2] = {rows, ny};
    tensor *y = tab ? tensor_empty(DT_F32, ndim, ndim == 1 ? shape + 1 : shape, DEVICE_CPU)
                    : NULL;
    if (!y) {
        free(tab);
        if (!tab)
            io_file_err(what, "out of memory for the resampling table");
        else
            err_prefix(what);
        return NULL;
    }
    float *out = tensor_data(y);
    if (from == to) /* the identity, exactly (the filter would trim the top band) */
        memcpy(out, x, (size_t)(rows * n) * sizeof *out);
    else
        for (int64_t r = 0; r < rows; r++)
            rs_run(tab, x + r * n, n, from, to, out + r * ny, ny);
    free(tab);
    return y;
}

/* Check that x is a float [frames] or [channels, frames] tensor on the cpu. */
static int rs_check_input(const tensor *x)
{
    char shp[64];
    if (!device_eq(tensor_device(x), DEVICE_CPU))
        return err_set("resample: move the tensor to the cpu first");
    if (!dtype_is_float(x->dtype) || (x->ndim != 1 && x->ndim != 2))
        return err_set("resample: expected a float [frames] or [channels, frames] tensor, "
                       "got %s %s", dtype_name(x->dtype), tensor_shape_str(x, shp, sizeof shp));
    return 0;
}

tensor *io_audio_resample(const tensor *x, int from, int to)
{
    if (rs_check_input(x) != 0)
        return NULL;
    tensor *c = tensor_copy_as(x, DT_F32);
    if (!c) {
        err_prefix("resample");
        return NULL;
    }
    int64_t rows = x->ndim == 2 ? x->shape[0] : 1, n = x->shape[x->ndim - 1];
    tensor *y = rs_rows("resample", tensor_data(c), rows, n, x->ndim, from, to);
    tensor_decref(c);
    return y;
}

/* --- reading --- */

/* The file being read, and the interleaved samples read so far. */
typedef struct {
    const char *path;
    int fd;
    SNDFILE *sf;
    SF_INFO info;
    float *buf;
    size_t cap, frames; /* capacity in samples, frames read */
} au_reader;

/* Open the file and hand it to libsndfile. */
static int au_open(au_reader *r)
{
    uint64_t size = 0;
    r->fd = io_file_open(r->path, &size);
    if (r->fd < 0)
        return -1;
    /* libsndfile must not close our descriptor: we do, on every path. */
    r->sf = sf_open_fd(r->fd, SFM_READ, &r->info, SF_FALSE);
    if (!r->sf)
        return io_file_err(r->path, "cannot read audio: %s", sf_strerror(NULL));
    if (r->info.channels < 1 || r->info.channels > AUDIO_MAX_CHANNELS)
        return io_file_err(r->path, "%d channels (1..%d are supported)", r->info.channels,
                           AUDIO_MAX_CHANNELS);
    if (r->info.samplerate < 1 || r->info.samplerate > AUDIO_MAX_RATE)
        return io_file_err(r->path, "bad sample rate %d", r->info.samplerate);
    return 0;
}

/* Make room for `more` samples after those read, doubling within the cap. */
static int au_grow(au_reader *r, size_t more)
{
    size_t need = r->frames * (size_t)r->info.channels + more;
    if (need <= r->cap)
        return 0;
    if ((uint64_t)need * sizeof(float) > AUDIO_MAX_BYTES)
        return io_file_err(r->path, "more than %" PRIu64 " bytes of samples", AUDIO_MAX_BYTES);
    size_t cap = r->cap ? r->cap : AUDIO_CHUNK;
    while (cap < need)
        cap *= 2;
    if ((uint64_t)cap * sizeof(float) > AUDIO_MAX_BYTES)
        cap = need;
    float *p = realloc(r->buf, cap * sizeof *p);
    if (!p)
        return io_file_err(r->path, "out of memory for %zu samples", cap);
    r->buf = p;
    r->cap = cap;
    return 0;
}

/* Read every frame into the growing buffer. */
static int au_read_all(au_reader *r)
{
    size_t ch = (size_t)r->info.channels, step = AUDIO_CHUNK / ch ? AUDIO_CHUNK / ch : 1;
    for (;;) {
        if (au_grow(r, step * ch) != 0)
            return -1;
        sf_count_t k = sf_readf_float(r->sf, r->buf + r->frames * ch, (sf_count_t)step);
        if (k < 0 || sf_error(r->sf) != SF_ERR_NO_ERROR)
            return io_file_err(r->path, "corrupt audio data: %s", sf_strerror(r->sf));
        r->frames += (size_t)k;
        if (k == 0)
            return 0;
    }
}

/* A WAV/AIFF data chunk shorter than declared: libsndfile logs "data : D (should
 * be S)" and reads what is there. A D of 0x7FFFF000 or more is the placeholder
 * of a streamed file (unknown length), not truncation. */
static int au_check_log(au_reader *r)
{
    char log[4096];
    sf_command(r->sf, SFC_GET_LOG_INFO, log, sizeof log);
    log[sizeof log - 1] = '\0';
    for (const char *line = log; *line;) {
        unsigned long long d = 0, s = 0;
        bool chunk = strncmp(line, "data", 4) == 0 || strncmp(line, "SSND", 4) == 0;
        if (chunk && sscanf(line + 4, " : %llu (should be %llu)", &d, &s) == 2 && d > s
            && d < 0x7FFFF000ull)
            return io_file_err(r->path, "truncated: the data chunk declares %llu bytes, the file "
                               "holds %llu", d, s);
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
    }
    return 0;
}

/* Checks after reading: frames present, none missing. */
static int au_check_frames(au_reader *r)
{
    if (r->frames == 0)
        return io_file_err(r->path, "no audio frames");
    sf_count_t declared = r->info.frames;
    /* An MPEG stream's frame count is an estimate (VBR without a header). */
    bool exact = (r->info.format & SF_FORMAT_TYPEMASK) != SF_FORMAT_MPEG;
    if (exact && declared > 0 && declared != SF_COUNT_MAX && (uint64_t)declared > r->frames)
        return io_file_err(r->path, "truncated: %lld frames declared, %zu read",
                           (long long)declared, r->frames);
    return au_check_log(r);
}

/* The samples as a tensor: the channels' mean [frames], or [channels, frames]. */
static tensor *au_tensor(const au_reader *r, bool mono)
{
    size_t ch = (size_t)r->info.channels, n = r->frames;
    int64_t shape[2] = {mono ? 1 : (int64_t)ch, (int64_t)n};
    tensor *t = tensor_empty(DT_F32, mono ? 1 : 2, mono ? shape + 1 : shape, DEVICE_CPU);
    if (!t) {
        err_prefix(r->path);
        return NULL;
    }
    float *out = tensor_data(t);
    for (size_t i = 0; i < n; i++) {
        const float *f = r->buf + i * ch;
        if (mono) {
            double acc = 0.0;
            for (size_t c = 0; c < ch; c++)
                acc += f[c];
            out[i] = (float)(acc / (double)ch);
        } else {
            for (size_t c = 0; c < ch; c++)
                out[c * n + i] = f[c];
        }
    }
    return t;
}

/* Read, check, and shape the samples (the reader is open). */
static tensor *au_load(au_reader *r, bool mono, int rate)
{
    if (au_read_all(r) != 0 || au_check_frames(r) != 0)
        return NULL;
    tensor *t = au_tensor(r, mono);
    if (!t || rate <= 0 || rate == r->info.samplerate)
        return t;
    int64_t rows = mono ? 1 : r->info.channels;
    tensor *y = rs_rows(r->path, tensor_data(t), rows, (int64_t)r->frames, t->ndim,
                        r->info.samplerate, rate);
    tensor_decref(t);
    return y;
}

tensor *io_audio_load(const char *path, bool mono, int rate, int *rate_out)
{
    au_reader r = {.path = path, .fd = -1};
    tensor *t = NULL;
    if (rate < 0 || rate > AUDIO_MAX_RATE)
        io_file_err(path, "target rate %d is out of range (1..%d, or 0 to keep the file's)", rate,
                    AUDIO_MAX_RATE);
    else if (au_open(&r) == 0)
        t = au_load(&r, mono, rate);
    if (t && rate_out)
        *rate_out = rate > 0 ? rate : r.info.samplerate;
    if (r.sf)
        sf_close(r.sf);
    if (r.fd >= 0)
        close(r.fd);
    free(r.buf);
    return t;
}

/* --- writing --- */

/* What a write needs. */
typedef struct {
    const char *path;
    tensor *c; /* float32, contiguous [channels, frames] */
    int64_t ch, n;
    int rate;
    io_wav_format fmt;
    float *buf;
    char msg[256]; /* why the write failed, when libsndfile or the data says */
} au_writer;

/* Check the tensor and the rate; make the contiguous float32 copy. */
static int au_writer_input(au_writer *w, const tensor *t)
{
    char shp[64];
    if (!device_eq(tensor_device(t), DEVICE_CPU))
        return io_file_err(w->path, "write: move the tensor to the cpu first");
    if (!dtype_is_float(t->dtype) || (t->ndim != 1 && t->ndim != 2))
        return io_file_err(w->path, "write: expected a float [frames] or [channels, frames] "
                           "tensor, got %s %s", dtype_name(t->dtype),
                           tensor_shape_str(t, shp, sizeof shp));
    w->ch = t->ndim == 2 ? t->shape[0] : 1;
    w->n = t->shape[t->ndim - 1];
    if (w->ch < 1 || w->ch > AUDIO_MAX_CHANNELS || w->n < 1)
        return io_file_err(w->path, "write: cannot write %s (1..%d channels, at least 1 frame)",
                           tensor_shape_str(t, shp, sizeof shp), AUDIO_MAX_CHANNELS);
    if (w->rate < 1 || w->rate > AUDIO_MAX_RATE)
        return io_file_err(w->path, "write: bad sample rate %d", w->rate);
    w->c = tensor_copy_as(t, DT_F32);
    return w->c ? 0 : err_prefix(w->path);
}

/* Interleave frames [first, first + k) into the buffer; for 16-bit PCM clip to
 * [-1, 1] and refuse NaN. */
static bool au_interleave(au_writer *w, int64_t first, int64_t k, bool pcm)
{
    const float *src = tensor_data(w->c);
    for (int64_t i = 0; i < k; i++)
        for (int64_t c = 0; c < w->ch; c++) {
            float v = src[c * w->n + first + i];
            if (pcm && isnan(v)) {
                snprintf(w->msg, sizeof w->msg, "sample %" PRId64 " of channel %" PRId64
                         " is NaN", first + i + 1, c + 1);
                return false;
            }
            w->buf[i * w->ch + c] = pcm ? fminf(1.0f, fmaxf(-1.0f, v)) : v;
        }
    return true;
}

/* Write every frame through libsndfile, a buffer at a time. */
static bool au_write_frames(au_writer *w, SNDFILE *sf)
{
    bool pcm = w->fmt == IO_WAV_PCM16;
    int64_t step = AUDIO_CHUNK / w->ch;
    for (int64_t i = 0; i < w->n; i += step) {
        int64_t k = w->n - i < step ? w->n - i : step;
        if (!au_interleave(w, i, k, pcm))
            return false;
        if (sf_writef_float(sf, w->buf, k) != k) {
            snprintf(w->msg, sizeof w->msg, "%s", sf_strerror(sf));
            return false;
        }
    }
    return true;
}

/* io_file_write_atomic's writer: libsndfile on the temporary file's descriptor
 * (it writes and seeks back to finish the header; nothing goes through f's
 * buffer), closed before the caller flushes the file to disk. */
static bool au_write_file(FILE *f, const void *ctx)
{
    au_writer *w = (au_writer *)ctx;
    int sub = w->fmt == IO_WAV_PCM16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT;
    SF_INFO info = {.samplerate = w->rate, .channels = (int)w->ch, .format = SF_FORMAT_WAV | sub};
    SNDFILE *sf = sf_open_fd(fileno(f), SFM_WRITE, &info, SF_FALSE);
    if (!sf) {
        snprintf(w->msg, sizeof w->msg, "%s", sf_strerror(NULL));
        return false;
    }
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    bool ok = au_write_frames(w, sf);
    int rc = sf_close(sf);
    if (ok && rc != 0)
        snprintf(w->msg, sizeof w->msg, "%s", sf_error_number(rc));
    return ok && rc == 0;
}

int io_audio_save_wav(const char *path, const tensor *t, int rate, io_wav_format fmt)
{
    au_writer w = {.path = path, .rate = rate, .fmt = fmt};
    int rc = au_writer_input(&w, t);
    if (rc == 0) {
        w.buf = malloc(AUDIO_CHUNK * sizeof *w.buf);
        rc = w.buf ? io_file_write_atomic(path, au_write_file, &w)
                   : io_file_err(path, "write: out of memory");
        /* libsndfile's reason, or the data's, says more than the errno. */
        if (rc != 0 && w.msg[0])
            io_file_err(path, "write: %s", w.msg);
    }
    free(w.buf);
    tensor_decref(w.c);
    return rc;
}
