/* Real forward FFTs: KISS FFT for float32, a small mixed-radix DFT of our own for
 * float64, and the pool of plans (see fft.h). */
#include "fft.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include <kiss_fft.h>
#include <kiss_fftr.h>

#include "../error.h"

/* Plans kept for reuse; beyond this a released plan is freed. */
#define POOL_MAX 64
/* Lengths below this run the double DFT even for float32 (KISS FFT's factoriser
 * does not handle a length of 1, and kiss_fftr of 2 would need one). */
#define KISS_MIN_N 4

/* --- float32: KISS FFT --- */

typedef struct {
    kiss_fftr_cfg rcfg; /* even n */
    kiss_fft_cfg ccfg;  /* odd n */
    kiss_fft_cpx *cin;  /* odd n: n complex inputs */
    kiss_fft_cpx *cout; /* n/2+1 (even) or n (odd) outputs */
} f32_impl;

/* Free a float32 plan's state (any part may be missing). */
static void f32_free(f32_impl *k)
{
    if (!k)
        return;
    if (k->rcfg)
        kiss_fftr_free(k->rcfg);
    if (k->ccfg)
        kiss_fft_free(k->ccfg);
    free(k->cin);
    free(k->cout);
    free(k);
}

/* KISS FFT's configuration and buffers for length n, or NULL. */
static f32_impl *f32_new(int64_t n)
{
    f32_impl *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    if (n % 2 == 0) {
        k->rcfg = kiss_fftr_alloc((int)n, 0, NULL, NULL);
        k->cout = malloc((size_t)(n / 2 + 1) * sizeof *k->cout);
        if (k->rcfg && k->cout)
            return k;
    } else {
        k->ccfg = kiss_fft_alloc((int)n, 0, NULL, NULL);
        k->cin = malloc((size_t)n * sizeof *k->cin);
        k->cout = malloc((size_t)n * sizeof *k->cout);
        if (k->ccfg && k->cin && k->cout)
            return k;
    }
    f32_free(k);
    return NULL;
}

/* The one-sided spectrum of p->frame32 in float32 arithmetic. */
static void f32_rfft(sig_fft_plan *p)
{
    f32_impl *k = p->impl;
    int64_t n = p->n, nb = n / 2 + 1;
    if (k->rcfg) {
        kiss_fftr(k->rcfg, p->frame32, k->cout);
    } else {
        for (int64_t j = 0; j < n; j++) {
            k->cin[j].r = p->frame32[j];
            k->cin[j].i = 0.0f;
        }
        kiss_fft(k->ccfg, k->cin, k->cout);
    }
    for (int64_t b = 0; b < nb; b++) {
        p->spec32[2 * b] = k->cout[b].r;
        p->spec32[2 * b + 1] = k->cout[b].i;
    }
}

/* --- float64: mixed-radix Cooley-Tukey in double --- */

typedef struct {
    int64_t n;
    int nfac;
    int64_t fac[64]; /* n's prime factors, ascending */
    double *tw;      /* n twiddles exp(-2 pi i j / n), re/im interleaved */
    double *cin;     /* n complex inputs */
    double *cout;    /* n complex outputs */
    double *tmp;     /* scratch of the largest factor's size (complex) */
} f64_impl;

/* Free a float64 plan's state. */
static void f64_free(f64_impl *d)
{
    if (!d)
        return;
    free(d->tw);
    free(d->cin);
    free(d->cout);
    free(d->tmp);
    free(d);
}

/* Split n into prime factors (ascending) and return the largest. */
static int64_t f64_factor(f64_impl *d, int64_t n)
{
    int64_t maxp = 1;
    d->nfac = 0;
    for (int64_t p = 2; n > 1; p++) {
        if (p * p > n)
            p = n; /* what is left is prime */
        while (n % p == 0) {
            d->fac[d->nfac++] = p;
            n /= p;
            maxp = p;
        }
    }
    return maxp;
}

/* Twiddles, buffers and factors for length n, or NULL. */
static f64_impl *f64_new(int64_t n)
{
    f64_impl *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->n = n;
    int64_t maxp = f64_factor(d, n);
    d->tw = malloc((size_t)n * 2 * sizeof *d->tw);
    d->cin = malloc((size_t)n * 2 * sizeof *d->cin);
    d->cout = malloc((size_t)n * 2 * sizeof *d->cout);
    d->tmp = malloc((size_t)maxp * 2 * sizeof *d->tmp);
    if (!d->tw || !d->cin || !d->cout || !d->tmp) {
        f64_free(d);
        return NULL;
    }
    for (int64_t j = 0; j < n; j++) {
        double a = -2.0 * M_PI * (double)j / (double)n;
        d->tw[2 * j] = cos(a);
        d->tw[2 * j + 1] = sin(a);
    }
    return d;
}

/* Join p transforms of length m stored one after another in out (the DFTs of the
 * p interleaved sub-sequences) into one of length n = p m, in place. tstep maps
 * length-n twiddle indices onto the plan's table: W_n^e = tw[e * tstep]. */
static void f64_combine(f64_impl *d, double *out, int64_t m, int64_t p, int64_t tstep)
{
    const double *tw = d->tw;
    double *t = d->tmp;
    for (int64_t k = 0; k < m; k++) {
        for (int64_t r = 0; r < p; r++) { /* t[r] = Y_r[k] W_n^(r k) */
            const double *y = out + 2 * (r * m + k), *w = tw + 2 * (r * k * tstep);
            t[2 * r] = y[0] * w[0] - y[1] * w[1];
            t[2 * r + 1] = y[0] * w[1] + y[1] * w[0];
        }
        for (int64_t q = 0; q < p; q++) { /* X[k + q m] = sum_r t[r] W_p^(r q) */
            double re = 0, im = 0;
            for (int64_t r = 0; r < p; r++) {
                const double *w = tw + 2 * ((r * q) % p * m * tstep);
                re += t[2 * r] * w[0] - t[2 * r + 1] * w[1];
                im += t[2 * r] * w[1] + t[2 * r + 1] * w[0];
            }
            out[2 * (k + q * m)] = re;
            out[2 * (k + q * m) + 1] = im;
        }
    }
}

/* out[0..n) = DFT of the n complex values in[0], in[s], in[2s], ... (decimation
 * in time: one level per prime factor, starting at fac[level]). */
static void f64_dft(f64_impl *d, double *out, const double *in, int64_t n, int64_t s,
                    int level)
{
    if (n == 1) {
        out[0] = in[0];
        out[1] = in[1];
        return;
    }
    int64_t p = d->fac[level], m = n / p;
    for (int64_t r = 0; r < p; r++)
        f64_dft(d, out + 2 * r * m, in + 2 * r * s, m, s * p, level + 1);
    f64_combine(d, out, m, p, d->n / n);
}

/* The one-sided spectrum of p->frame in double arithmetic. */
static void f64_rfft(sig_fft_plan *p)
{
    f64_impl *d = p->impl;
    int64_t n = p->n;
    for (int64_t j = 0; j < n; j++) {
        d->cin[2 * j] = p->frame[j];
        d->cin[2 * j + 1] = 0.0;
    }
    f64_dft(d, d->cout, d->cin, n, 1, 0);
    for (int64_t b = 0; b < 2 * (n / 2 + 1); b++)
        p->spec[b] = d->cout[b];
}

/* --- plans and their pool --- */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static sig_fft_plan *pool_head;
static int pool_count;

/* Does this plan run KISS FFT (float32 and long enough)? */
static bool uses_kiss(const sig_fft_plan *p)
{
    return p->dt == DT_F32 && p->n >= KISS_MIN_N;
}

/* Free a plan and its state. */
static void plan_free(sig_fft_plan *p)
{
    if (!p)
        return;
    if (uses_kiss(p))
        f32_free(p->impl);
    else
        f64_free(p->impl);
    free(p->frame32);
    free(p->spec32);
    free(p->frame);
    free(p->spec);
    free(p);
}

/* The plan's buffers: float ones for float32, double ones for float64 and
 * for the float32 lengths that run the double DFT. Returns whether all exist. */
static bool plan_buffers(sig_fft_plan *p)
{
    size_t n = (size_t)p->n, nspec = (size_t)(p->n / 2 + 1) * 2;
    if (p->dt == DT_F32) {
        p->frame32 = malloc(n * sizeof *p->frame32);
        p->spec32 = malloc(nspec * sizeof *p->spec32);
        if (!p->frame32 || !p->spec32)
            return false;
    }
    if (!uses_kiss(p)) {
        p->frame = malloc(n * sizeof *p->frame);
        p->spec = malloc(nspec * sizeof *p->spec);
        if (!p->frame || !p->spec)
            return false;
    }
    return true;
}

/* A new plan, or NULL with the error set. */
static sig_fft_plan *plan_new(int64_t n, dtype_t dt)
{
    sig_fft_plan *p = calloc(1, sizeof *p);
    bool ok = false;
    if (p) {
        p->n = n;
        p->dt = dt;
        p->impl = uses_kiss(p) ? (void *)f32_new(n) : (void *)f64_new(n);
        ok = p->impl && plan_buffers(p);
    }
    if (!ok) {
        plan_free(p);
        err_set("fft: out of memory for a plan of length %lld", (long long)n);
        return NULL;
    }
    return p;
}

sig_fft_plan *sig_fft_acquire(int64_t n, dtype_t dt)
{
    if (n < 1 || n > SIG_FFT_MAX_N) {
        err_set("fft: length must be 1..%d, got %lld", SIG_FFT_MAX_N, (long long)n);
        return NULL;
    }
    if (dt != DT_F32 && dt != DT_F64) {
        err_set("fft: precision must be float32 or float64, got %s", dtype_name(dt));
        return NULL;
    }
    pthread_mutex_lock(&pool_lock);
    sig_fft_plan **link = &pool_head;
    while (*link && ((*link)->n != n || (*link)->dt != dt))
        link = &(*link)->next;
    sig_fft_plan *p = *link;
    if (p) {
        *link = p->next;
        pool_count--;
    }
    pthread_mutex_unlock(&pool_lock);
    if (p) {
        p->next = NULL;
        return p;
    }
    return plan_new(n, dt);
}

void sig_fft_release(sig_fft_plan *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&pool_lock);
    if (pool_count < POOL_MAX) {
        p->next = pool_head;
        pool_head = p;
        pool_count++;
        p = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    plan_free(p); /* the pool was full */
}

void sig_fft_rfft(sig_fft_plan *p)
{
    if (uses_kiss(p)) {
        f32_rfft(p);
        return;
    }
    if (p->dt == DT_F32) /* a tiny float32 length: through the double DFT */
        for (int64_t j = 0; j < p->n; j++)
            p->frame[j] = p->frame32[j];
    f64_rfft(p);
    if (p->dt == DT_F32)
        for (int64_t b = 0; b < 2 * (p->n / 2 + 1); b++)
            p->spec32[b] = (float)p->spec[b];
}

void sig_fft_cache_clear(void)
{
    pthread_mutex_lock(&pool_lock);
    sig_fft_plan *p = pool_head;
    pool_head = NULL;
    pool_count = 0;
    pthread_mutex_unlock(&pool_lock);
    while (p) {
        sig_fft_plan *next = p->next;
        plan_free(p);
        p = next;
    }
}

int sig_fft_cache_size(void)
{
    pthread_mutex_lock(&pool_lock);
    int n = pool_count;
    pthread_mutex_unlock(&pool_lock);
    return n;
}
