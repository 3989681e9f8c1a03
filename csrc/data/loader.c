/* Data loaders (see loader.h): the epoch's order, the making of one batch, and the
 * worker threads that fill a ring of prepared batches ahead of the consumer.
 *
 * Locking: one mutex guards the epoch state (running, next_claim, consumed, busy,
 * failed) and the ring's slots. A worker claims the next batch number under the
 * lock, makes the batch without it (reading only the sources, the labels and the
 * epoch's order, which do not change while any worker is busy), and stores it in
 * its slot under the lock. Batch b lives in slot b % prefetch and is claimed only
 * once batch b - prefetch has been consumed, so a slot has one owner at a time. */
#include "loader.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cuda/cuda_backend.h"
#include "../error.h"
#include "../rng.h"

enum { SLOT_EMPTY, SLOT_FILLING, SLOT_READY, SLOT_FAILED };

#define LOADER_ERR_CAP 512

typedef struct {
    int state;
    loader_batch b;
    char err[LOADER_ERR_CAP];
} slot;

/* A modality as the workers use it: the source and the per-sample geometry. */
typedef struct {
    char name[64];
    tensor *src;
    int sample_ndim;
    int64_t numel;      /* elements per sample */
    int64_t width;      /* the last dim (1 for scalar samples) */
    int64_t height;     /* the dim before it (1 for 1-D samples) */
    int64_t chan_numel; /* elements per channel */
    int nchan;          /* channels: the sample's first dim when it has 3+ dims */
    float *mul, *add;   /* per channel: x * mul + add = (x * scale - mean) / std */
    bool flip, shift_zero;
    int crop, time_shift;
    float noise;
} modality;

struct loader {
    int n_mod;
    modality mods[LOADER_MAX_MODALITIES];
    tensor *labels;
    size_t label_row_bytes;
    int64_t n_samples;  /* N, the sources' first dim */
    int64_t *indices;   /* the split, 0-based */
    int64_t *order;     /* the current epoch's order of the split */
    int64_t n, n_batches, batch_size, index_base, fail_batch;
    bool drop_last, shuffle, pin_memory;
    uint64_t seed;
    int prefetch, n_threads;
    pthread_t *threads;
    slot *ring;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers wait here for a batch to make */
    pthread_cond_t done_cv; /* the consumer waits here for a batch or for idle workers */
    bool running, shutdown, failed;
    uint64_t epoch;
    int64_t next_claim, consumed;
    int busy;
    atomic_bool cancel; /* read by workers between samples, without the lock */
    char inline_err[LOADER_ERR_CAP]; /* the sticky error of a loader without workers */
    loader_stats stats;
};

/* --- random streams --- */

/* SplitMix64's finaliser: spreads the bits of x over the whole word. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The Philox key of one stream of a (seed, epoch): stream 0 shuffles, stream 1 + m
 * augments modality m. */
static uint64_t stream_key(uint64_t seed, uint64_t epoch, uint64_t stream)
{
    return mix64(mix64(mix64(seed) ^ epoch) + stream * 0x9e3779b97f4a7c15ull);
}

/* Fisher-Yates shuffle of a[0..n) with the Philox words of counters 1..n-1. */
static void shuffle_keyed(int64_t *a, int64_t n, uint64_t key)
{
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t w[4];
        rng_philox((uint64_t)i, key, w);
        uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        int64_t j = (int64_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void loader_permutation(int64_t *out, int64_t n, uint64_t seed, uint64_t stream)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = i;
    shuffle_keyed(out, n, stream_key(seed ^ 0x7065726d75746521ull, stream, 0));
}

/* --- making one sample --- */

/* The augmentation draws of one sample of one modality. */
typedef struct {
    bool flip;
    int64_t dy, dx, shift;
} sample_draw;

/* A value in [-r, r] from a random word (the bias of the modulo is below 2^-20). */
static int64_t draw_range(uint32_t w, int r)
{
    return r > 0 ? (int64_t)(w % (uint32_t)(2 * r + 1)) - r : 0;
}

/* The draws of sample s (counter s << 32 of the modality's stream). */
static sample_draw draw_sample(const modality *md, uint64_t key, int64_t s)
{
    uint32_t w[4];
    rng_philox((uint64_t)s << 32, key, w);
    sample_draw d = {md->flip && (w[0] & 1u), draw_range(w[1], md->crop),
                     draw_range(w[2], md->crop), draw_range(w[3], md->time_shift)};
    return d;
}

/* For each output column of a row, the source column, or -1 where the output shows
 * padding: out = shift(flip(crop(in))), so out[x] = in[W - 1 - (x - shift) + dx]
 * with a flip and in[(x - shift) + dx] without. */
static void column_map(const modality *md, sample_draw d, int64_t *map)
{
    int64_t w = md->width;
    for (int64_t x = 0; x < w; x++) {
        int64_t c = x - d.shift;
        if (c < 0 || c >= w) {
            if (md->shift_zero) {
                map[x] = -1;
                continue;
            }
            c = ((c % w) + w) % w;
        }
        if (d.flip)
            c = w - 1 - c;
        c += d.dx;
        map[x] = (c >= 0 && c < w) ? c : -1;
    }
}

/* Raw element k of a uint8 or float32 sample, as float. */
static inline float raw_value(const void *base, bool u8, int64_t k)
{
    return u8 ? (float)((const uint8_t *)base)[k] : ((const float *)base)[k];
}

/* Convert one sample without geometric augmentation: per channel, x * mul + add. */
static void convert_plain(const modality *md, const void *in, float *out)
{
    bool u8 = md->src->dtype == DT_U8;
    for (int c = 0; c < md->nchan; c++) {
        float mul = md->mul[c], add = md->add[c];
        int64_t lo = c * md->chan_numel, hi = lo + md->chan_numel;
        if (u8) {
            const uint8_t *p = in;
            for (int64_t k = lo; k < hi; k++)
                out[k] = (float)p[k] * mul + add;
        } else {
            const float *p = in;
            for (int64_t k = lo; k < hi; k++)
                out[k] = p[k] * mul + add;
        }
    }
}

/* Convert one sample through the column map and a vertical crop offset dy: rows
 * that fall in the padding hold the converted value of a raw 0. */
static void convert_mapped(const modality *md, const void *in, float *out, const int64_t *map,
                           int64_t dy)
{
    bool u8 = md->src->dtype == DT_U8;
    int64_t w = md->width, h = md->height, rows = md->numel / w;
    int64_t rows_per_chan = md->chan_numel / w;
    for (int64_t r = 0; r < rows; r++) {
        int c = (int)(r / rows_per_chan);
        float mul = md->mul[c], add = md->add[c];
        int64_t sy = r % h + dy;
        float *o = out + r * w;
        if (sy < 0 || sy >= h) {
            for (int64_t x = 0; x < w; x++)
                o[x] = add;
            continue;
        }
        int64_t base = (r - r % h + sy) * w;
        for (int64_t x = 0; x < w; x++)
            o[x] = map[x] < 0 ? add : raw_value(in, u8, base + map[x]) * mul + add;
    }
}

/* Add Gaussian noise of std md->noise: four normals per Philox call (Box-Muller
 * on two pairs of words), counters (s << 32) + 1, 2, ... of the stream. */
static void add_noise(const modality *md, uint64_t key, int64_t s, float *out)
{
    const float two_pi = 6.28318530717958647692f, inv24 = 1.0f / 16777216.0f;
    for (int64_t k = 0; k < md->numel; k += 4) {
        uint32_t w[4];
        rng_philox(((uint64_t)s << 32) + 1 + (uint64_t)(k / 4), key, w);
        float z[4];
        for (int p = 0; p < 2; p++) {
            float u1 = ((float)(w[2 * p] >> 8) + 1.0f) * inv24; /* (0, 1] */
            float u2 = (float)(w[2 * p + 1] >> 8) * inv24;
            float r = sqrtf(-2.0f * logf(u1));
            z[2 * p] = r * cosf(two_pi * u2);
            z[2 * p + 1] = r * sinf(two_pi * u2);
        }
        for (int64_t j = 0; j < 4 && k + j < md->numel; j++)
            out[k + j] += md->noise * z[j];
    }
}

/* Write sample s of modality md, augmented for this epoch, to out. map is scratch
 * for md->width columns. */
static void make_sample(const loader *ld, int m, uint64_t epoch, int64_t s, void *out,
                        int64_t *map)
{
    const modality *md = &ld->mods[m];
    if (md->numel == 0)
        return;
    size_t esz = dtype_size(md->src->dtype);
    const char *in = (const char *)tensor_data(md->src) + (size_t)s * (size_t)md->numel * esz;
    if (md->src->dtype == DT_I64) { /* token ids: copied as they are (checked: no augmentation) */
        memcpy(out, in, (size_t)md->numel * esz);
        return;
    }
    uint64_t key = stream_key(ld->seed, epoch, 1 + (uint64_t)m);
    sample_draw d = draw_sample(md, key, s);
    if (d.flip || d.dx || d.dy || d.shift) {
        column_map(md, d, map);
        convert_mapped(md, in, out, map, d.dy);
    } else {
        convert_plain(md, in, out);
    }
    if (md->noise > 0)
        add_noise(md, key, s, out);
}

/* --- making one batch --- */

void loader_batch_free(loader_batch *b)
{
    if (!b)
        return;
    for (int m = 0; m < LOADER_MAX_MODALITIES; m++) {
        tensor_decref(b->x[m]);
        b->x[m] = NULL;
    }
    tensor_decref(b->y);
    tensor_decref(b->index);
    b->y = b->index = NULL;
}

/* A tensor of shape [count, like's dims after the first], pinned when asked. */
static tensor *batch_tensor(dtype_t dt, const tensor *like, int64_t count, bool pin)
{
    int64_t shape[TENSOR_MAX_DIMS];
    shape[0] = count;
    for (int i = 1; i < like->ndim; i++)
        shape[i] = like->shape[i];
    return pin ? cuda_pinned_empty((int)dt, like->ndim, shape)
               : tensor_empty(dt, like->ndim, shape, DEVICE_CPU);
}

/* Allocate the tensors of a batch of count samples. */
static int alloc_batch(const loader *ld, int64_t count, loader_batch *b)
{
    for (int m = 0; m < ld->n_mod; m++)
        if (!(b->x[m] = batch_tensor(ld->mods[m].src->dtype == DT_I64 ? DT_I64 : DT_F32,
                                     ld->mods[m].src, count, ld->pin_memory)))
            return -1;
    if (ld->labels &&
        !(b->y = batch_tensor(ld->labels->dtype, ld->labels, count, ld->pin_memory)))
        return -1;
    b->index = tensor_empty(DT_I64, 1, &count, DEVICE_CPU);
    return b->index ? 0 : -1;
}

/* The widest row of any modality (the column map's size). */
static int64_t max_width(const loader *ld)
{
    int64_t w = 1;
    for (int m = 0; m < ld->n_mod; m++)
        if (ld->mods[m].width > w)
            w = ld->mods[m].width;
    return w;
}

/* Fill the samples first..first+count-1 of the order into b: 0, or 1 when
 * the epoch was cancelled meanwhile. */
static int fill_samples(const loader *ld, int64_t first, int64_t count, uint64_t epoch,
                        loader_batch *b, int64_t *map)
{
    int64_t *idx = tensor_data(b->index);
    for (int64_t i = 0; i < count; i++) {
        if (atomic_load_explicit(&((loader *)ld)->cancel, memory_order_relaxed))
            return 1;
        int64_t s = ld->order[first + i];
        for (int m = 0; m < ld->n_mod; m++) {
            char *out = (char *)tensor_data(b->x[m]) +
                        (size_t)i * (size_t)ld->mods[m].numel * dtype_size(b->x[m]->dtype);
            make_sample(ld, m, epoch, s, out, map);
        }
        if (ld->labels)
            memcpy((char *)tensor_data(b->y) + (size_t)i * ld->label_row_bytes,
                   (const char *)tensor_data(ld->labels) + (size_t)s * ld->label_row_bytes,
                   ld->label_row_bytes);
        idx[i] = s + ld->index_base;
    }
    return 0;
}

/* Make batch `number` of the epoch into b: 0 on success, 1 if cancelled, -1 with
 * the error message. b holds nothing unless 0 is returned. */
static int make_batch(const loader *ld, int64_t number, uint64_t epoch, loader_batch *b)
{
    memset(b, 0, sizeof *b);
    b->n_mod = ld->n_mod;
    b->number = number;
    if (number == ld->fail_batch)
        return err_set("out of memory (simulated for tests)");
    int64_t first = number * ld->batch_size;
    int64_t count = ld->n - first < ld->batch_size ? ld->n - first : ld->batch_size;
    int64_t *map = malloc(sizeof *map * (size_t)max_width(ld));
    int rc = map ? alloc_batch(ld, count, b) : err_set("out of memory (column map)");
    if (rc == 0)
        rc = fill_samples(ld, first, count, epoch, b, map);
    free(map);
    if (rc != 0)
        loader_batch_free(b);
    return rc;
}

/* --- the worker threads --- */

/* Is there a batch for a worker to make? (Under the lock.) */
static bool work_available(const loader *ld)
{
    return ld->running && !ld->failed && ld->next_claim < ld->n_batches
           && ld->next_claim < ld->consumed + ld->prefetch;
}

/* Store the outcome of making a batch in its slot (under the lock). */
static void store_result(loader *ld, slot *sl, int64_t number, int rc, loader_batch *b)
{
    if (rc == 0) {
        sl->b = *b;
        sl->state = SLOT_READY;
    } else if (rc < 0) {
        snprintf(sl->err, sizeof sl->err, "loader: batch %" PRId64 ": %s",
                 number + ld->index_base, err_msg());
        sl->state = SLOT_FAILED;
        ld->failed = true;
    } else {
        sl->state = SLOT_EMPTY;
    }
}

/* A worker: claim the next batch number, make the batch, store it; until shutdown. */
static void *worker_main(void *arg)
{
    loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (!ld->shutdown && !work_available(ld))
            pthread_cond_wait(&ld->work_cv, &ld->mu);
        if (ld->shutdown)
            break;
        int64_t number = ld->next_claim++;
        uint64_t epoch = ld->epoch;
        slot *sl = &ld->ring[number % ld->prefetch];
        sl->state = SLOT_FILLING;
        ld->busy++;
        pthread_mutex_unlock(&ld->mu);
        loader_batch b;
        int rc = make_batch(ld, number, epoch, &b);
        pthread_mutex_lock(&ld->mu);
        ld->busy--;
        store_result(ld, sl, number, rc, &b);
        pthread_cond_broadcast(&ld->done_cv);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

/* Start the worker threads with every signal blocked (signals are for the main
 * thread: Ctrl-C must reach the host). Returns 0 or -1 with the threads joined. */
static int start_threads(loader *ld, int n)
{
    ld->threads = calloc((size_t)n, sizeof *ld->threads);
    if (!ld->threads)
        return err_set("loader: out of memory");
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = 0;
    for (ld->n_threads = 0; ld->n_threads < n; ld->n_threads++)
        if ((err = pthread_create(&ld->threads[ld->n_threads], NULL, worker_main, ld)) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0)
        return 0;
    err_set("loader: cannot start worker thread %d of %d: %s", ld->n_threads + 1, n,
            strerror(err));
    return -1;
}

/* --- checking and copying the configuration --- */

/* Check a modality's source and augmentations against N. */
static int check_modality(const loader_modality *lm, int64_t n)
{
    const char *nm = lm->name ? lm->name : "?";
    const tensor *t = lm->src;
    if (!t)
        return err_set("loader: modality '%s' has no source array", nm);
    if (t->dtype != DT_U8 && t->dtype != DT_F32 && t->dtype != DT_I64)
        return err_set("loader: modality '%s' is %s; sources must be uint8, float32 or int64", nm,
                       dtype_name(t->dtype));
    if (t->dtype == DT_I64 && (lm->flip || lm->crop || lm->time_shift || lm->noise != 0 ||
                               lm->nnorm || lm->scale != 1))
        return err_set("loader: modality '%s' holds int64 ids, which take no augmentation or "
                       "normalisation", nm);
    if (t->ndim < 1 || t->shape[0] != n)
        return err_set("loader: modality '%s' has %" PRId64 " samples, expected %" PRId64, nm,
                       t->ndim < 1 ? 0 : t->shape[0], n);
    if (!device_eq(tensor_device(t), DEVICE_CPU) || !tensor_is_contiguous(t))
        return err_set("loader: modality '%s' must be a contiguous CPU array", nm);
    if (lm->crop < 0 || lm->crop > 1 << 20 || lm->time_shift < 0 || lm->time_shift > 1 << 30)
        return err_set("loader: modality '%s': crop and time_shift must be >= 0", nm);
    if (lm->crop > 0 && t->ndim < 3)
        return err_set("loader: modality '%s': crop needs samples with 2+ dims (height, "
                       "width), got %d", nm, t->ndim - 1);
    if (!(lm->noise >= 0 && isfinite(lm->noise)) || !isfinite(lm->scale))
        return err_set("loader: modality '%s': noise must be >= 0 and scale finite", nm);
    return 0;
}

/* Fill md's geometry and its per-channel affine map from lm (already checked). */
static int setup_modality(modality *md, const loader_modality *lm)
{
    const tensor *t = lm->src;
    snprintf(md->name, sizeof md->name, "%s", lm->name ? lm->name : "?");
    md->sample_ndim = t->ndim - 1;
    md->numel = shape_numel(md->sample_ndim, t->shape + 1);
    md->width = md->sample_ndim >= 1 ? t->shape[t->ndim - 1] : 1;
    md->height = md->sample_ndim >= 2 ? t->shape[t->ndim - 2] : 1;
    md->nchan = md->sample_ndim >= 3 && md->numel > 0 ? (int)t->shape[1] : 1;
    if (md->numel >= (int64_t)1 << 33)
        return err_set("loader: modality '%s': samples of %" PRId64 " elements are too large",
                       md->name, md->numel);
    md->chan_numel = md->numel / md->nchan;
    if (lm->nnorm != 0 && lm->nnorm != 1 && lm->nnorm != md->nchan)
        return err_set("loader: modality '%s': %d means/stds for %d channels", md->name,
                       lm->nnorm, md->nchan);
    md->mul = malloc(sizeof(float) * (size_t)md->nchan);
    md->add = malloc(sizeof(float) * (size_t)md->nchan);
    if (!md->mul || !md->add)
        return err_set("loader: out of memory");
    for (int c = 0; c < md->nchan; c++) {
        int k = lm->nnorm > 1 ? c : 0;
        float mean = lm->nnorm ? lm->mean[k] : 0.0f, sd = lm->nnorm ? lm->std[k] : 1.0f;
        if (!(sd > 0 && isfinite(sd) && isfinite(mean)))
            return err_set("loader: modality '%s': std must be > 0 and finite (channel %d)",
                           md->name, c + 1);
        md->mul[c] = lm->scale / sd;
        md->add[c] = -mean / sd;
    }
    md->flip = lm->flip;
    md->crop = lm->crop;
    md->time_shift = lm->time_shift;
    md->shift_zero = lm->shift_zero;
    md->noise = lm->noise;
    md->src = tensor_incref(lm->src);
    return 0;
}

/* Check the sizes and numbers of cfg; sets N. */
static int check_config(const loader_config *cfg, int64_t *n)
{
    if (cfg->n_mod < 0 || cfg->n_mod > LOADER_MAX_MODALITIES)
        return err_set("loader: %d modalities (at most %d)", cfg->n_mod, LOADER_MAX_MODALITIES);
    if (cfg->n_mod == 0 && !cfg->labels)
        return err_set("loader: no modality and no labels");
    *n = cfg->n_mod > 0 && cfg->mods[0].src && cfg->mods[0].src->ndim > 0
             ? cfg->mods[0].src->shape[0]
             : (cfg->labels && cfg->labels->ndim > 0 ? cfg->labels->shape[0] : 0);
    if (*n >= (int64_t)1 << 32)
        return err_set("loader: %" PRId64 " samples (at most 2^32 - 1)", *n);
    if (cfg->batch_size < 1)
        return err_set("loader: batch_size must be >= 1, got %" PRId64, cfg->batch_size);
    if (cfg->workers < 0 || cfg->workers > LOADER_MAX_WORKERS)
        return err_set("loader: workers must be in [0, %d], got %d", LOADER_MAX_WORKERS,
                       cfg->workers);
    if (cfg->prefetch < 1 || cfg->prefetch > LOADER_MAX_PREFETCH)
        return err_set("loader: prefetch must be in [1, %d], got %d", LOADER_MAX_PREFETCH,
                       cfg->prefetch);
    if (cfg->n_indices < 0)
        return err_set("loader: negative number of indices");
    for (int m = 0; m < cfg->n_mod; m++)
        if (check_modality(&cfg->mods[m], *n) != 0)
            return -1;
    const tensor *y = cfg->labels;
    if (y && (y->ndim < 1 || y->shape[0] != *n))
        return err_set("loader: labels have %" PRId64 " rows, expected %" PRId64,
                       y->ndim < 1 ? 0 : y->shape[0], *n);
    if (y && (!device_eq(tensor_device(y), DEVICE_CPU) || !tensor_is_contiguous(y)))
        return err_set("loader: labels must be a contiguous CPU array");
    return 0;
}

/* Copy the split into 0-based indices, checking each. */
static int copy_indices(loader *ld, const loader_config *cfg)
{
    ld->indices = malloc(sizeof(int64_t) * (size_t)(cfg->n_indices ? cfg->n_indices : 1));
    ld->order = malloc(sizeof(int64_t) * (size_t)(cfg->n_indices ? cfg->n_indices : 1));
    if (!ld->indices || !ld->order)
        return err_set("loader: out of memory for %" PRId64 " indices", cfg->n_indices);
    for (int64_t i = 0; i < cfg->n_indices; i++) {
        int64_t v = cfg->indices[i] - cfg->index_base;
        if (v < 0 || v >= ld->n_samples)
            return err_set("loader: index %" PRId64 " (entry %" PRId64 " of the split) is out "
                           "of range [%" PRId64 ", %" PRId64 "]", cfg->indices[i],
                           i + cfg->index_base, cfg->index_base,
                           ld->n_samples - 1 + cfg->index_base);
        ld->indices[i] = v;
    }
    return 0;
}

/* Everything of cfg that the loader keeps, and the ring; the threads are not
 * started yet. */
static int setup(loader *ld, const loader_config *cfg)
{
    if (check_config(cfg, &ld->n_samples) != 0)
        return -1;
    ld->n = cfg->n_indices;
    ld->batch_size = cfg->batch_size;
    ld->drop_last = cfg->drop_last;
    ld->n_batches = cfg->drop_last ? ld->n / ld->batch_size
                                   : (ld->n + ld->batch_size - 1) / ld->batch_size;
    ld->index_base = cfg->index_base;
    ld->fail_batch = cfg->fail_batch;
    ld->shuffle = cfg->shuffle;
    ld->pin_memory = cfg->pin_memory;
    ld->seed = cfg->seed;
    ld->prefetch = cfg->prefetch;
    if (copy_indices(ld, cfg) != 0)
        return -1;
    for (int m = 0; m < cfg->n_mod; m++, ld->n_mod++)
        if (setup_modality(&ld->mods[m], &cfg->mods[m]) != 0)
            return -1;
    if (cfg->labels) {
        ld->labels = tensor_incref(cfg->labels);
        int64_t row = ld->n_samples ? tensor_numel(ld->labels) / ld->n_samples : 0;
        ld->label_row_bytes = (size_t)row * dtype_size(ld->labels->dtype);
    }
    ld->ring = calloc((size_t)ld->prefetch, sizeof *ld->ring);
    return ld->ring ? 0 : err_set("loader: out of memory");
}

loader *loader_new(const loader_config *cfg)
{
    loader *ld = calloc(1, sizeof *ld);
    if (!ld) {
        err_set("loader: out of memory");
        return NULL;
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->done_cv, NULL);
    atomic_init(&ld->cancel, false);
    if (setup(ld, cfg) != 0 || (cfg->workers > 0 && start_threads(ld, cfg->workers) != 0)) {
        char msg[LOADER_ERR_CAP];
        snprintf(msg, sizeof msg, "%s", err_msg());
        loader_free(ld);
        err_set("%s", msg);
        return NULL;
    }
    return ld;
}

/* --- epochs --- */

void loader_stop(loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->running = false;
    atomic_store(&ld->cancel, true);
    while (ld->busy > 0)
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    for (int i = 0; i < ld->prefetch; i++) {
        loader_batch_free(&ld->ring[i].b);
        ld->ring[i].state = SLOT_EMPTY;
    }
    pthread_mutex_unlock(&ld->mu);
}

int loader_start(loader *ld, uint64_t epoch)
{
    loader_stop(ld);
    /* No worker reads the order now: none is busy and none will claim until
     * running is set below, under the lock. */
    memcpy(ld->order, ld->indices, sizeof(int64_t) * (size_t)ld->n);
    if (ld->shuffle)
        shuffle_keyed(ld->order, ld->n, stream_key(ld->seed, epoch, 0));
    pthread_mutex_lock(&ld->mu);
    ld->epoch = epoch;
    ld->next_claim = ld->consumed = 0;
    ld->failed = false;
    ld->inline_err[0] = '\0';
    atomic_store(&ld->cancel, false);
    ld->running = true;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    return 0;
}

/* loader_next without workers: make the batch here. */
static int next_inline(loader *ld, loader_batch *out)
{
    if (ld->failed)
        return err_set("%s", ld->inline_err);
    int rc = make_batch(ld, ld->consumed, ld->epoch, out);
    if (rc != 0) {
        snprintf(ld->inline_err, sizeof ld->inline_err, "loader: batch %" PRId64 ": %s",
                 ld->consumed + ld->index_base, err_msg());
        ld->failed = true;
        return err_set("%s", ld->inline_err);
    }
    ld->consumed++;
    ld->stats.batches++;
    return 1;
}

/* Seconds on the monotonic clock. */
static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wait (under the lock) until the slot's batch is made or has failed. */
static void wait_for_slot(loader *ld, slot *sl)
{
    if (sl->state == SLOT_READY || sl->state == SLOT_FAILED)
        return;
    double t0 = now_seconds();
    ld->stats.waits++;
    while (sl->state != SLOT_READY && sl->state != SLOT_FAILED)
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    ld->stats.wait_seconds += now_seconds() - t0;
}

int loader_next(loader *ld, loader_batch *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&ld->mu);
    bool more = ld->running && ld->consumed < ld->n_batches;
    pthread_mutex_unlock(&ld->mu);
    if (!more)
        return 0;
    if (ld->n_threads == 0)
        return next_inline(ld, out);
    pthread_mutex_lock(&ld->mu);
    slot *sl = &ld->ring[ld->consumed % ld->prefetch];
    wait_for_slot(ld, sl);
    if (sl->state == SLOT_FAILED) {
        err_set("%s", sl->err);
        pthread_mutex_unlock(&ld->mu);
        return -1;
    }
    *out = sl->b;
    memset(&sl->b, 0, sizeof sl->b);
    sl->state = SLOT_EMPTY;
    ld->consumed++;
    ld->stats.batches++;
    pthread_cond_signal(&ld->work_cv); /* one more batch may be claimed: wake one worker */
    pthread_mutex_unlock(&ld->mu);
    return 1;
}

/* --- lifetime and queries --- */

/* Tell the workers to finish and wait for them. */
static void join_threads(loader *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->shutdown = true;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ld->n_threads; i++)
        pthread_join(ld->threads[i], NULL);
    ld->n_threads = 0;
}

void loader_free(loader *ld)
{
    if (!ld)
        return;
    if (ld->ring)
        loader_stop(ld);
    join_threads(ld);
    for (int m = 0; m < ld->n_mod; m++) {
        tensor_decref(ld->mods[m].src);
        free(ld->mods[m].mul);
        free(ld->mods[m].add);
    }
    /* A modality whose setup failed half-way holds its tables only. */
    if (ld->n_mod < LOADER_MAX_MODALITIES) {
        free(ld->mods[ld->n_mod].mul);
        free(ld->mods[ld->n_mod].add);
    }
    tensor_decref(ld->labels);
    free(ld->threads);
    free(ld->ring);
    free(ld->indices);
    free(ld->order);
    pthread_cond_destroy(&ld->work_cv);
    pthread_cond_destroy(&ld->done_cv);
    pthread_mutex_destroy(&ld->mu);
    free(ld);
}

int64_t loader_num_batches(const loader *ld)
{
    return ld->n_batches;
}

int64_t loader_num_samples(const loader *ld)
{
    return ld->n;
}

int loader_num_modalities(const loader *ld)
{
    return ld->n_mod;
}

const char *loader_modality_name(const loader *ld, int m)
{
    return m >= 0 && m < ld->n_mod ? ld->mods[m].name : NULL;
}

loader_stats loader_get_stats(const loader *ld)
{
    return ld->stats;
}
