/* Classification metrics with scikit-learn's definitions, computed by a
 * streaming accumulator: it is fed one batch after another (scores and targets)
 * and keeps only counts, so an epoch's metrics need no stored logits. One-shot
 * metrics are an accumulator fed once, so the two always agree.
 *
 * Inputs (CPU tensors, any strides):
 *   single-label: scores x [N, C] float32/float64 (logits or probabilities: the
 *                 prediction is the argmax, the first index among equal maxima,
 *                 NaN counted as the largest value, as NumPy's argmax), or
 *                 predicted classes x [N] int64; targets y [N] int64.
 *   multi-label:  scores x [N, C] float32/float64, positive when the probability
 *                 is > threshold (the probability is sigmoid(x) computed in
 *                 float64, or x itself with probs; NaN is never positive), or
 *                 0/1 predictions x [N, C] bool/uint8/int64; multi-hot targets
 *                 y [N, C] of any dtype holding only 0 and 1.
 * Class indices (targets, predicted classes) count from opts.base: 0 in C, 1
 * from Lua; error messages number rows and classes from the same base.
 *
 * Definitions (scikit-learn's, with zero_division = 0 or 1 standing for the
 * value of a ratio whose denominator is 0; sklearn's default "warn" is 0):
 *   accuracy     single-label: argmax == target; multi-label: the subset
 *                accuracy (every column right), as sklearn's accuracy_score.
 *   top-k        the target's rank is < k, the rank counting the classes with
 *                a higher score plus the lower-numbered classes with an equal
 *                one (ties broken as argmax breaks them, so top-1 == accuracy);
 *                k >= C counts every sample.
 *   per class    precision tp/(tp+fp), recall tp/(tp+fn), F1 2tp/(2tp+fp+fn),
 *                support tp+fn.
 *   micro        the same ratios over the summed counts.
 *   macro        the unweighted mean over the classes averaged: every column in
 *                multi-label; in single-label only the classes present in the
 *                targets or the predictions (sklearn's labels=None); a class
 *                absent from both takes no part (its per-class values read
 *                zero_division).
 *   weighted     the mean weighted by support; when every support is 0 (no
 *                positive target at all), the unweighted mean (sklearn >= 1.3's
 *                fallback; with zero_division 0 every version returns 0 there).
 *   samples      the mean over samples of each sample's precision, recall and F1
 *                of its label set; in single-label each sample's set is its one
 *                class, so all three equal the accuracy (sklearn refuses samples
 *                averaging for multiclass input; this is its value on the
 *                one-hot encoding).
 * Every function returns 0 (or a pointer), or -1 (NULL) with the message set,
 * prefixed by `who` (the caller's name for the operation). A failed add leaves
 * the accumulator unchanged. */
#ifndef MILES_METRICS_H
#define MILES_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#define METRICS_MAX_TOPK 8
#define METRICS_MAX_CLASSES ((int64_t)1 << 24)
/* A confusion matrix larger than this many bytes is refused. */
#define METRICS_MAX_CONFUSION_BYTES ((int64_t)1 << 30)

typedef enum {
    METRICS_MICRO = 0,
    METRICS_MACRO,
    METRICS_WEIGHTED,
    METRICS_SAMPLES,
    METRICS_AVERAGES
} metrics_average;

/* What the accumulator counts. */
typedef struct {
    int64_t classes;     /* C >= 1 */
    bool multilabel;     /* multi-hot targets [N, C] */
    bool probs;          /* multi-label scores are probabilities (else logits) */
    double threshold;    /* multi-label: positive when probability > threshold; in [0, 1] */
    double zero_division; /* 0 or 1 */
    bool confusion;      /* keep a C x C confusion matrix (single-label only) */
    int nk;              /* how many top-k accuracies to track (single-label only) */
    int64_t topk[METRICS_MAX_TOPK];
    int base;            /* 0 or 1: the first class index and row number */
} metrics_opts;

/* Precision, recall and F1 of one class or one average. */
typedef struct {
    double precision, recall, f1;
} metrics_prf;

typedef struct metrics_acc metrics_acc;

/* Defaults: single-label, logits, threshold 0.5, zero_division 0, base 0, no
 * confusion matrix, no top-k. */
metrics_opts metrics_default_opts(int64_t classes);
/* A new empty accumulator after checking opts, or NULL. */
metrics_acc *metrics_acc_new(const metrics_opts *o, const char *who);
void metrics_acc_free(metrics_acc *a);
/* Forget every sample (start a new epoch). */
void metrics_acc_reset(metrics_acc *a);
/* Count one batch; nothing changes unless every check passes. */
int metrics_acc_add(metrics_acc *a, const tensor *x, const tensor *y, const char *who);
const metrics_opts *metrics_acc_opts(const metrics_acc *a);
int64_t metrics_acc_count(const metrics_acc *a);

/* The results; each fails when no sample was added yet. */
int metrics_acc_accuracy(const metrics_acc *a, double *out, const char *who);
/* The top-k accuracy for a k that the accumulator tracks. */
int metrics_acc_topk(const metrics_acc *a, int64_t k, double *out, const char *who);
int metrics_acc_average(const metrics_acc *a, metrics_average avg, metrics_prf *out,
                        const char *who);
/* Class c's values (0-based c) and its support; zero_division where undefined. */
void metrics_acc_class(const metrics_acc *a, int64_t c, metrics_prf *out, int64_t *support);
/* The C x C counts, row = true class, column = predicted (row-major), or NULL
 * when the accumulator does not keep them. */
const int64_t *metrics_acc_confusion(const metrics_acc *a);

/* "micro", "macro", "weighted", "samples" -> the average, or -1. */
int metrics_average_parse(const char *name);
const char *metrics_average_name(metrics_average avg);

#endif
