/* Real forward FFTs for the signal functions (prefix sig_fft_).
 *
 * A plan transforms n real samples into the n/2+1 complex bins of the one-sided
 * spectrum, X[k] = sum_j x[j] exp(-2 pi i j k / n), in one precision:
 *   - float32 plans run KISS FFT (BSD-3; FFTW is GPL and not linked): kiss_fftr
 *     for an even n, the complex kiss_fft on a zero-imaginary input for an odd n;
 *   - float64 plans run our own mixed-radix Cooley-Tukey DFT in double (KISS FFT
 *     is built for float here): radices are n's prime factors, a prime factor p
 *     costs O(n p), so a prime n is an O(n^2) direct DFT. Twiddles are computed
 *     once per plan with cos/sin in double.
 * The caller fills the plan's input in its precision (frame32 for a float32 plan,
 * frame for a float64 one) and reads the output from spec32 or spec (re, im
 * pairs of bins 0..n/2).
 *
 * A plan holds scratch memory, so one thread uses it at a time. Plans are cached:
 * sig_fft_acquire takes a free plan of the same size and precision from a small
 * process-wide pool (or makes one) and sig_fft_release gives it back, so the STFTs
 * of many clips set KISS FFT up once per thread, not once per call. */
#ifndef MILES_SIGNAL_FFT_H
#define MILES_SIGNAL_FFT_H

#include <stdint.h>

#include "../dtype.h"

/* Largest transform length accepted (KISS FFT takes an int; memory stays modest). */
#define SIG_FFT_MAX_N (1 << 20)

typedef struct sig_fft_plan {
    int64_t n;
    dtype_t dt;     /* DT_F32 (KISS FFT) or DT_F64 (our DFT) */
    float *frame32; /* float32 plans: n input samples, written by the caller */
    float *spec32;  /* float32 plans: 2 * (n/2 + 1) outputs, after sig_fft_rfft */
    double *frame;  /* float64 plans (and float32 ones below KISS_MIN_N, inside) */
    double *spec;
    void *impl;     /* the precision's private state */
    struct sig_fft_plan *next; /* the pool's free list */
} sig_fft_plan;

/* A plan for length n (1..SIG_FFT_MAX_N) in precision dt, from the pool or new;
 * NULL with the error set when memory runs out. */
sig_fft_plan *sig_fft_acquire(int64_t n, dtype_t dt);

/* Give a plan back to the pool (NULL is ignored); freed when the pool is full. */
void sig_fft_release(sig_fft_plan *p);

/* spec = one-sided DFT of frame (spec32 of frame32 for a float32 plan). */
void sig_fft_rfft(sig_fft_plan *p);

/* Free every pooled plan (plans in use are unaffected). */
void sig_fft_cache_clear(void);

/* Number of plans currently in the pool (for tests). */
int sig_fft_cache_size(void);

#endif
