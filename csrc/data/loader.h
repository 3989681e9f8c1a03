/* Data loaders: batches of a data set's samples, shuffled deterministically and
 * prepared ahead of time by background threads.
 *
 * A loader reads aligned source arrays (one per modality, first dim N, uint8 or
 * float32, contiguous, possibly memory-mapped) and labels (any dtype, first dim N),
 * and yields for each batch a float32 tensor [B, ...] per modality, the labels of
 * the batch's samples and their indices. uint8 values are scaled (e.g. by 1/255)
 * and every modality can be normalised per channel ((x - mean) / std) and
 * augmented (random crop with padding, horizontal flip, time shift, Gaussian
 * noise).
 *
 * Determinism: the order of an epoch is a Philox-driven shuffle keyed by
 * (seed, epoch), and the augmentation of a sample by (seed, epoch, modality,
 * sample), so the batches are the same on every machine and for any number of
 * worker threads.
 *
 * Threads: `workers` threads fill a ring of `prefetch` batches ahead of the
 * consumer; loader_next blocks only while its batch is not ready. The workers run
 * core code only (they allocate tensors, nothing else is shared with the caller
 * but the read-only sources). An error in a worker (out of memory) is returned by
 * loader_next for that batch, in order. All functions but the workers' own are
 * meant for one consumer thread. */
#ifndef MILES_DATA_LOADER_H
#define MILES_DATA_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "../tensor.h"

#define LOADER_MAX_MODALITIES 16
#define LOADER_MAX_WORKERS 64
#define LOADER_MAX_PREFETCH 1024

typedef struct loader loader;

/* One modality: its source and how to turn a sample into float32. */
typedef struct {
    const char *name;    /* for messages (copied) */
    tensor *src;         /* [N, ...] uint8 or float32, contiguous, on the CPU (borrowed);
                          * or int64 ids (text tokens), copied as they are */
    float scale;         /* multiplies the raw values first (1: none) */
    int nnorm;           /* 0: no normalisation; 1: one mean/std; else one per
                          * channel (the source's dim 2, the sample's first) */
    const float *mean;   /* nnorm values (copied) */
    const float *std;    /* nnorm values, > 0 (copied) */
    bool flip;           /* reverse the last dim with probability 1/2 */
    int crop;            /* pad the last two dims by crop, take a random window */
    int time_shift;      /* shift the last dim by a random amount in [-s, s] */
    bool shift_zero;     /* fill what a shift uncovers with zeros (else wrap around) */
    float noise;         /* std of the additive Gaussian noise (0: none) */
} loader_modality;

typedef struct {
    int n_mod;
    const loader_modality *mods;
    tensor *labels;          /* [N, ...] any dtype, contiguous, CPU, or NULL (borrowed) */
    const int64_t *indices;  /* the split: sample numbers (copied) */
    int64_t n_indices;
    int64_t index_base;      /* the first sample's number in indices and batches
                              * (1 for Lua) */
    int64_t batch_size;
    bool drop_last;          /* leave out a last batch smaller than batch_size */
    bool shuffle;
    uint64_t seed;
    int workers;             /* 0: batches made in loader_next's own thread */
    int prefetch;            /* batches prepared ahead (the ring's size), >= 1 */
    bool pin_memory;         /* batches' x and y in pinned host memory (when there is
                              * a GPU), which copies to a GPU read directly */
    int64_t fail_batch;      /* for tests: this batch fails in its worker as if memory
                              * ran out (-1: none) */
} loader_config;

/* One batch; the caller owns the tensors (release with loader_batch_free). */
typedef struct {
    int n_mod;
    tensor *x[LOADER_MAX_MODALITIES]; /* float32 [B, ...] per modality (int64 for ids) */
    tensor *y;                        /* labels [B, ...] (NULL without labels) */
    tensor *index;                    /* int64 [B]: sample numbers (with index_base) */
    int64_t number;                   /* the batch's place in the epoch, from 0 */
} loader_batch;

typedef struct {
    int64_t batches;     /* batches handed to the consumer */
    int64_t waits;       /* of which the consumer had to wait for */
    double wait_seconds; /* time the consumer spent waiting */
} loader_stats;

/* A loader over cfg (everything is checked and copied), with its threads
 * started and idle; NULL with the error message on failure. */
loader *loader_new(const loader_config *cfg);
/* Stop the threads, drop prepared batches and free everything (NULL is fine). */
void loader_free(loader *ld);

/* Start epoch `epoch` from its first batch (cancelling the current one). */
int loader_start(loader *ld, uint64_t epoch);
/* The next batch into *out: 1, or 0 at the end of the epoch (or before the first
 * loader_start), or -1 with the error message (again on every later call, until
 * the next loader_start). */
int loader_next(loader *ld, loader_batch *out);
/* Cancel the current epoch: the workers stop and prepared batches are freed. */
void loader_stop(loader *ld);

void loader_batch_free(loader_batch *b);

int64_t loader_num_batches(const loader *ld);
int64_t loader_num_samples(const loader *ld);
const char *loader_modality_name(const loader *ld, int m);
int loader_num_modalities(const loader *ld);
loader_stats loader_get_stats(const loader *ld);

/* A random permutation of 0..n-1 into out, from a Philox stream keyed by
 * (seed, stream): the same everywhere. */
void loader_permutation(int64_t *out, int64_t n, uint64_t seed, uint64_t stream);

#endif
