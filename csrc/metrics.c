/* Classification metrics: the streaming accumulator of metrics.h. It keeps the
 * counts that scikit-learn's definitions need (per-class true positives,
 * predicted and true counts, the confusion matrix, top-k hits, and for
 * multi-label the running sums of each sample's precision, recall and F1), so
 * that any split of the data into batches gives the same result. */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct metrics_acc {
    metrics_opts o;
    int64_t n;                         /* samples counted */
    int64_t correct;                   /* argmax right, or every column right */
    int64_t hits[METRICS_MAX_TOPK];    /* top-k hits, one per tracked k */
    int64_t *tp, *npred, *ntrue;       /* per class: tp, tp + fp, tp + fn */
    int64_t *cm;                       /* C x C, or NULL */
    double sum_p, sum_r, sum_f;        /* multi-label: sums of per-sample values */
};

/* ------------------------------------------------------------------------------
 * Options and lifetime */

/* Options with every field at its default (see metrics.h). */
metrics_opts metrics_default_opts(int64_t classes)
{
    metrics_opts o;
    memset(&o, 0, sizeof o);
    o.classes = classes;
    o.threshold = 0.5;
    return o;
}

/* The top-k list: 1 <= k, single-label only. */
static int check_topk(const metrics_opts *o, const char *who)
{
    if (o->nk < 0 || o->nk > METRICS_MAX_TOPK)
        return err_set("%s: at most %d top-k values may be tracked, got %d", who,
                       METRICS_MAX_TOPK, o->nk);
    if (o->nk > 0 && o->multilabel)
        return err_set("%s: top-k accuracy needs single-label targets (multilabel is set)", who);
    for (int i = 0; i < o->nk; i++)
        if (o->topk[i] < 1)
            return err_set("%s: top-k needs k >= 1, got %" PRId64, who, o->topk[i]);
    return 0;
}

/* Every option, before anything is allocated. NaN fails the range tests. */
static int check_opts(const metrics_opts *o, const char *who)
{
    if (o->classes < 1 || o->classes > METRICS_MAX_CLASSES)
        return err_set("%s: the number of classes must be in [1, %" PRId64 "], got %" PRId64,
                       who, METRICS_MAX_CLASSES, o->classes);
    if (!(o->threshold >= 0 && o->threshold <= 1))
        return err_set("%s: threshold must be in [0, 1], got %g", who, o->threshold);
    if (!(o->zero_division == 0 || o->zero_division == 1))
        return err_set("%s: zero_division must be 0 or 1, got %g", who, o->zero_division);
    if (o->base != 0 && o->base != 1)
        return err_set("%s: the index base must be 0 or 1, got %d", who, o->base);
    if (o->confusion && o->multilabel)
        return err_set("%s: a confusion matrix needs single-label targets (multilabel is set)",
                       who);
    if (o->confusion && o->classes * o->classes > METRICS_MAX_CONFUSION_BYTES / 8)
        return err_set("%s: a confusion matrix of %" PRId64 " classes would need %.3g GB",
                       who, o->classes, (double)o->classes * (double)o->classes * 8 / 1e9);
    return check_topk(o, who);
}

/* Check the options, then allocate the zeroed counts (3 per class, and the
 * confusion matrix when asked). */
metrics_acc *metrics_acc_new(const metrics_opts *o, const char *who)
{
    if (check_opts(o, who) != 0)
        return NULL;
    metrics_acc *a = calloc(1, sizeof *a);
    int64_t C = o->classes;
    if (a) {
        a->o = *o;
        a->tp = calloc((size_t)(3 * C), sizeof(int64_t));
        a->cm = o->confusion ? calloc((size_t)(C * C), sizeof(int64_t)) : NULL;
    }
    if (!a || !a->tp || (o->confusion && !a->cm)) {
        metrics_acc_free(a);
        err_set("%s: out of memory for the counts of %" PRId64 " classes", who, C);
        return NULL;
    }
    a->npred = a->tp + C;
    a->ntrue = a->tp + 2 * C;
    return a;
}

/* Free the counts; NULL is fine. */
void metrics_acc_free(metrics_acc *a)
{
    if (!a)
        return;
    free(a->tp);
    free(a->cm);
    free(a);
}

/* Zero every count, keeping the options (a new epoch). */
void metrics_acc_reset(metrics_acc *a)
{
    int64_t C = a->o.classes;
    a->n = a->correct = 0;
    memset(a->hits, 0, sizeof a->hits);
    memset(a->tp, 0, (size_t)(3 * C) * sizeof(int64_t));
    if (a->cm)
        memset(a->cm, 0, (size_t)(C * C) * sizeof(int64_t));
    a->sum_p = a->sum_r = a->sum_f = 0;
}

/* The options the accumulator was made with. */
const metrics_opts *metrics_acc_opts(const metrics_acc *a)
{
    return &a->o;
}

/* Samples counted so far. */
int64_t metrics_acc_count(const metrics_acc *a)
{
    return a->n;
}

/* ------------------------------------------------------------------------------
 * Reading elements (any strides, any dtype) */

/* Element (i, j) of a 2-D tensor as a double. */
static double at2(const tensor *t, int64_t i, int64_t j)
{
    return dtype_load(t->dtype, tensor_data(t), i * t->stride[0] + j * t->stride[1]);
}

/* Element i of a 1-D int64 tensor, exactly. */
static int64_t at1_i64(const tensor *t, int64_t i)
{
    return ((const int64_t *)tensor_data(t))[i * t->stride[0]];
}

/* ------------------------------------------------------------------------------
 * Checks of a batch: nothing is counted until the whole batch passes */

/* The tensor is on the CPU (the counts are read element by element). */
/* t (a new reference) when on the cpu, else a copy there: GPU outputs are
 * counted on the host (a synchronisation, where the metric is read). */
static tensor *on_cpu(const tensor *t)
{
    if (tensor_device(t).type == DEV_CPU)
        return tensor_incref((tensor *)t);
    return tensor_to_device(t, DEVICE_CPU);
}

/* Is t 2-D with shape [n, C] (n < 0: any number of rows)? */
static bool is_rows(const tensor *t, int64_t n, int64_t C)
{
    return t->ndim == 2 && (n < 0 || t->shape[0] == n) && t->shape[1] == C;
}

/* Class indices in [base, base + C): targets, or predicted classes. */
static int check_indices(const metrics_acc *a, const tensor *t, const char *what,
                         const char *who)
{
    int64_t b = a->o.base;
    for (int64_t i = 0; i < t->shape[0]; i++) {
        int64_t v = at1_i64(t, i);
        if (v < b || v >= a->o.classes + b)
            return err_set("%s: %s %" PRId64 " at row %" PRId64 " is out of range [%" PRId64
                           ", %" PRId64 "]", who, what, v, i + b, b, a->o.classes - 1 + b);
    }
    return 0;
}

/* Every element of a 2-D tensor is 0 or 1 (multi-hot targets, 0/1 predictions). */
static int check_binary(const metrics_acc *a, const tensor *t, const char *what,
                        const char *who)
{
    int64_t b = a->o.base;
    for (int64_t i = 0; i < t->shape[0]; i++)
        for (int64_t j = 0; j < t->shape[1]; j++) {
            double v = at2(t, i, j);
            if (v != 0 && v != 1)
                return err_set("%s: %s must be 0 or 1, got %g at [%" PRId64 ", %" PRId64 "]",
                               who, what, v, i + b, j + b);
        }
    return 0;
}

/* Single-label: y int64 [N]; x float [N, C] scores or int64 [N] classes. */
static int check_single(const metrics_acc *a, const tensor *x, const tensor *y, const char *who)
{
    char b1[64], b2[64];
    int64_t C = a->o.classes;
    if (y->dtype != DT_I64 || y->ndim != 1)
        return err_set("%s: single-label targets must be int64 class indices of shape [N], got "
                       "%s %s (multi-hot targets need multilabel = true)", who,
                       dtype_name(y->dtype), tensor_shape_str(y, b1, sizeof b1));
    int64_t n = y->shape[0];
    if (dtype_is_float(x->dtype)) {
        if (!is_rows(x, n, C))
            return err_set("%s: scores must be [N, C] = [%" PRId64 ", %" PRId64 "] for %s targets, "
                           "got %s", who, n, C, tensor_shape_str(y, b1, sizeof b1),
                           tensor_shape_str(x, b2, sizeof b2));
    } else if (x->dtype == DT_I64) {
        if (x->ndim != 1 || x->shape[0] != n)
            return err_set("%s: predicted classes must be int64 [N] like the targets %s, got %s",
                           who, tensor_shape_str(y, b1, sizeof b1),
                           tensor_shape_str(x, b2, sizeof b2));
        if (a->o.nk > 0)
            return err_set("%s: top-k accuracy needs scores [N, C], not predicted classes", who);
        if (check_indices(a, x, "predicted class", who) != 0)
            return -1;
    } else {
        return err_set("%s: predictions must be float32/float64 scores or int64 classes, got %s",
                       who, dtype_name(x->dtype));
    }
    return check_indices(a, y, "target", who);
}

/* Multi-label: y [N, C] multi-hot; x float [N, C] scores or 0/1 predictions. */
static int check_multi(const metrics_acc *a, const tensor *x, const tensor *y, const char *who)
{
    char b1[64], b2[64];
    int64_t C = a->o.classes;
    if (!is_rows(y, -1, C))
        return err_set("%s: multi-label targets must be multi-hot [N, C] with C = %" PRId64
                       ", got %s", who, C, tensor_shape_str(y, b1, sizeof b1));
    if (!is_rows(x, y->shape[0], C))
        return err_set("%s: predictions must be [N, C] like the targets %s, got %s", who,
                       tensor_shape_str(y, b1, sizeof b1), tensor_shape_str(x, b2, sizeof b2));
    if (!dtype_is_float(x->dtype) && check_binary(a, x, "0/1 predictions", who) != 0)
        return -1;
    return check_binary(a, y, "multi-hot targets", who);
}

/* ------------------------------------------------------------------------------
 * Counting */

/* Is score a above score b? NaN ranks above every number (NumPy's argmax). */
static bool score_gt(double a, double b)
{
    return isnan(a) ? !isnan(b) : (!isnan(b) && a > b);
}

/* Are two scores tied (NaN ties NaN)? */
static bool score_eq(double a, double b)
{
    return isnan(a) ? isnan(b) : a == b;
}

/* The first index of the largest score in row i. */
static int64_t row_argmax(const tensor *x, int64_t i, int64_t C)
{
    int64_t best = 0;
    double bv = at2(x, i, 0);
    for (int64_t c = 1; c < C; c++) {
        double v = at2(x, i, c);
        if (score_gt(v, bv)) {
            best = c;
            bv = v;
        }
    }
    return best;
}

/* Class t's rank in row i: the classes above it, plus the lower-numbered classes
 * tied with it (0 for the argmax). */
static int64_t row_rank(const tensor *x, int64_t i, int64_t t, int64_t C)
{
    double vt = at2(x, i, t);
    int64_t rank = 0;
    for (int64_t c = 0; c < C; c++) {
        double v = at2(x, i, c);
        rank += score_gt(v, vt) || (c < t && score_eq(v, vt));
    }
    return rank;
}

/* Count one single-label sample: target t, predicted class p (both 0-based). */
static void count_single(metrics_acc *a, int64_t t, int64_t p)
{
    a->correct += p == t;
    a->tp[t] += p == t;
    a->npred[p]++;
    a->ntrue[t]++;
    if (a->cm)
        a->cm[t * a->o.classes + p]++;
}

/* Count a checked single-label batch: argmax (or given class), top-k ranks. */
static void add_single(metrics_acc *a, const tensor *x, const tensor *y)
{
    int64_t C = a->o.classes, n = y->shape[0], b = a->o.base;
    bool scores = dtype_is_float(x->dtype);
    for (int64_t i = 0; i < n; i++) {
        int64_t t = at1_i64(y, i) - b;
        int64_t p = scores ? row_argmax(x, i, C) : at1_i64(x, i) - b;
        if (a->o.nk > 0) {
            int64_t rank = row_rank(x, i, t, C);
            for (int k = 0; k < a->o.nk; k++)
                a->hits[k] += rank < a->o.topk[k];
        }
        count_single(a, t, p);
    }
}

/* Is element (i, c) of a multi-label prediction positive? */
static bool positive(const metrics_acc *a, const tensor *x, int64_t i, int64_t c)
{
    double v = at2(x, i, c);
    if (!dtype_is_float(x->dtype))
        return v != 0;
    double p = a->o.probs ? v : 1.0 / (1.0 + exp(-v));
    return p > a->o.threshold;
}

/* num / den, or zero_division when den is 0. */
static double ratio(double num, double den, double zd)
{
    return den == 0 ? zd : num / den;
}

/* Count a checked multi-label batch: per-class counts, exact matches and each
 * sample's precision, recall and F1 (for the samples average). */
static void add_multi(metrics_acc *a, const tensor *x, const tensor *y)
{
    int64_t C = a->o.classes, n = y->shape[0];
    double zd = a->o.zero_division;
    for (int64_t i = 0; i < n; i++) {
        int64_t tp = 0, np = 0, nt = 0;
        for (int64_t c = 0; c < C; c++) {
            bool p = positive(a, x, i, c), t = at2(y, i, c) != 0;
            tp += p && t;
            np += p;
            nt += t;
            a->tp[c] += p && t;
            a->npred[c] += p;
            a->ntrue[c] += t;
        }
        a->correct += tp == np && tp == nt;
        a->sum_p += ratio((double)tp, (double)np, zd);
        a->sum_r += ratio((double)tp, (double)nt, zd);
        a->sum_f += ratio(2.0 * (double)tp, (double)(np + nt), zd);
    }
}

/* Check the whole batch first, then count it, so a bad batch changes nothing. */
static int add_host(metrics_acc *a, const tensor *x, const tensor *y, const char *who)
{
    if ((a->o.multilabel ? check_multi : check_single)(a, x, y, who) != 0)
        return -1;
    if (a->o.multilabel)
        add_multi(a, x, y);
    else
        add_single(a, x, y);
    a->n += y->shape[0];
    return 0;
}

int metrics_acc_add(metrics_acc *a, const tensor *x, const tensor *y, const char *who)
{
    tensor *hx = on_cpu(x), *hy = hx ? on_cpu(y) : NULL;
    int rc = hy ? add_host(a, hx, hy, who) : -1;
    tensor_decref(hx);
    tensor_decref(hy);
    return rc;
}

/* ------------------------------------------------------------------------------
 * Results */

/* Fail when there is nothing to average over. */
static int check_count(const metrics_acc *a, const char *who)
{
    if (a->n == 0)
        return err_set("%s: no samples were added", who);
    return 0;
}

/* The fraction of samples right (every column right, in multi-label). */
int metrics_acc_accuracy(const metrics_acc *a, double *out, const char *who)
{
    if (check_count(a, who) != 0)
        return -1;
    *out = (double)a->correct / (double)a->n;
    return 0;
}

/* The fraction of samples whose target ranks within k (a tracked k only). */
int metrics_acc_topk(const metrics_acc *a, int64_t k, double *out, const char *who)
{
    if (check_count(a, who) != 0)
        return -1;
    for (int i = 0; i < a->o.nk; i++)
        if (a->o.topk[i] == k) {
            *out = (double)a->hits[i] / (double)a->n;
            return 0;
        }
    return err_set("%s: top-%" PRId64 " accuracy was not tracked by this accumulator", who, k);
}

/* One class's precision, recall and F1 from its counts. */
void metrics_acc_class(const metrics_acc *a, int64_t c, metrics_prf *out, int64_t *support)
{
    double zd = a->o.zero_division;
    double tp = (double)a->tp[c], np = (double)a->npred[c], nt = (double)a->ntrue[c];
    out->precision = ratio(tp, np, zd);
    out->recall = ratio(tp, nt, zd);
    out->f1 = ratio(2.0 * tp, (double)(a->npred[c] + a->ntrue[c]), zd);
    if (support)
        *support = a->ntrue[c];
}

/* Does class c take part in the macro and weighted averages? Every column in
 * multi-label; in single-label the classes seen in targets or predictions. */
static bool averaged(const metrics_acc *a, int64_t c)
{
    return a->o.multilabel || a->npred[c] > 0 || a->ntrue[c] > 0;
}

/* The precision, recall and F1 of the summed counts. */
static void micro(const metrics_acc *a, metrics_prf *out)
{
    int64_t tp = 0, np = 0, nt = 0;
    for (int64_t c = 0; c < a->o.classes; c++) {
        tp += a->tp[c];
        np += a->npred[c];
        nt += a->ntrue[c];
    }
    double zd = a->o.zero_division;
    out->precision = ratio((double)tp, (double)np, zd);
    out->recall = ratio((double)tp, (double)nt, zd);
    out->f1 = ratio(2.0 * (double)tp, (double)(np + nt), zd);
}

/* The mean of the per-class values over the averaged classes, weighted by
 * support when `weighted` and some support is positive. */
static void class_mean(const metrics_acc *a, bool weighted, metrics_prf *out)
{
    double sp = 0, sr = 0, sf = 0, sw = 0, wsum = 0;
    for (int64_t c = 0; c < a->o.classes; c++)
        wsum += averaged(a, c) ? (double)a->ntrue[c] : 0;
    bool use_w = weighted && wsum > 0;
    for (int64_t c = 0; c < a->o.classes; c++) {
        if (!averaged(a, c))
            continue;
        metrics_prf v;
        metrics_acc_class(a, c, &v, NULL);
        double w = use_w ? (double)a->ntrue[c] : 1;
        sp += w * v.precision;
        sr += w * v.recall;
        sf += w * v.f1;
        sw += w;
    }
    out->precision = sp / sw;
    out->recall = sr / sw;
    out->f1 = sf / sw;
}

/* The mean over samples of each sample's values (equal to the accuracy in
 * single-label, where a sample's label set is its one class). */
static void samples(const metrics_acc *a, metrics_prf *out)
{
    double n = (double)a->n;
    if (a->o.multilabel) {
        out->precision = a->sum_p / n;
        out->recall = a->sum_r / n;
        out->f1 = a->sum_f / n;
    } else {
        out->precision = out->recall = out->f1 = (double)a->correct / n;
    }
}

/* One of the four averages of precision, recall and F1. */
int metrics_acc_average(const metrics_acc *a, metrics_average avg, metrics_prf *out,
                        const char *who)
{
    if (check_count(a, who) != 0)
        return -1;
    switch (avg) {
    case METRICS_MICRO: micro(a, out); return 0;
    case METRICS_MACRO: class_mean(a, false, out); return 0;
    case METRICS_WEIGHTED: class_mean(a, true, out); return 0;
    case METRICS_SAMPLES: samples(a, out); return 0;
    default: return err_set("%s: unknown average %d", who, (int)avg);
    }
}

/* The confusion counts, or NULL when not kept. */
const int64_t *metrics_acc_confusion(const metrics_acc *a)
{
    return a->cm;
}

static const char *const average_names[METRICS_AVERAGES] = {"micro", "macro", "weighted",
                                                            "samples"};

/* An average's number from its name, -1 if unknown. */
int metrics_average_parse(const char *name)
{
    for (int i = 0; i < METRICS_AVERAGES; i++)
        if (strcmp(name, average_names[i]) == 0)
            return i;
    return -1;
}

/* An average's name ("micro", ...). */
const char *metrics_average_name(metrics_average avg)
{
    return avg >= 0 && avg < METRICS_AVERAGES ? average_names[avg] : "unknown";
}
