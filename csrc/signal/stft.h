/* Short-time Fourier transforms and spectrogram helpers (prefix sig_), on the CPU.
 *
 * Conventions are torch.stft's (PyTorch 1.13, return_complex=True, then
 * torch.view_as_real for the complex layout):
 *   - input [..., T] (float32 or float64, any layout; up to 6 dims); the leading
 *     dims are a batch;
 *   - center: T is padded by n_fft/2 on both sides first, with pad_mode reflect
 *     (no edge repeat, needs n_fft/2 < T), constant (zeros), replicate (the edge
 *     sample) or circular (wraps, needs n_fft/2 <= T);
 *   - frames = 1 + (T_padded - n_fft) / hop_length (floor); T_padded < n_fft is
 *     an error (no frame fits);
 *   - frame f starts at f * hop_length of the padded signal and is multiplied by
 *     the window: win_length samples (default n_fft) zero-padded on both sides to
 *     n_fft, with (n_fft - win_length) / 2 zeros on the left;
 *   - windows: hann (default, periodic as torch.hann_window and scipy's
 *     get_window: 0.5 - 0.5 cos(2 pi k / N)), hamming (0.54 - 0.46 cos(2 pi k /
 *     N)), rect (ones), or the caller's win_length values; sig_window also makes
 *     the symmetric variants (N - 1 in the denominator);
 *   - X[k, f] = sum_j frame_f[j] exp(-2 pi i j k / n_fft), times n_fft^-1/2 when
 *     normalized; onesided keeps bins 0..n_fft/2 (n_fft/2 + 1 of them), else all
 *     n_fft (the rest by conjugate symmetry);
 *   - output: complex [..., freq, frames, 2] (re, im), magnitude |X| or power
 *     |X|^2 as [..., freq, frames]. Note: torch.stft's default window is rect;
 *     ours is hann, as torchaudio's Spectrogram and scipy.signal.stft.
 *
 * Precision: float32 inputs are windowed and transformed with KISS FFT in
 * float32 (errors about 2e-7 of the spectrum's largest value against torch's
 * float64 results); float64 inputs with our own double-precision DFT (fft.h),
 * agreeing with torch's float64 ones to about 1e-15. Outputs have the input's
 * dtype. (The choice for float64: compute it in double rather than reject it or
 * round it through KISS FFT's float build.)
 *
 * Threads: the frames of all signals of a call are shared out among
 * cpu_num_threads() OpenMP threads (small calls run on one), each with an FFT
 * plan taken from the pool in fft.h, so calls on many clips of the same n_fft
 * set KISS FFT up once per thread.
 *
 * Tensors that require grad are read as plain values: the results carry no
 * autograd history (these are preprocessing steps). Every function returns a new
 * tensor, or NULL with an error message that names it and the bad value. */
#ifndef MILES_SIGNAL_STFT_H
#define MILES_SIGNAL_STFT_H

#include <stdbool.h>

#include "../tensor.h"

typedef enum { SIG_WIN_HANN = 0, SIG_WIN_HAMMING, SIG_WIN_RECT } sig_window_kind;
typedef enum {
    SIG_PAD_REFLECT = 0,
    SIG_PAD_CONSTANT,
    SIG_PAD_REPLICATE,
    SIG_PAD_CIRCULAR
} sig_pad_mode;
typedef enum { SIG_OUT_COMPLEX = 0, SIG_OUT_MAGNITUDE, SIG_OUT_POWER } sig_output;

typedef struct {
    int64_t n_fft;                  /* 1..SIG_FFT_MAX_N */
    int64_t hop_length;             /* 0: n_fft / 4 (at least 1) */
    int64_t win_length;             /* 0: n_fft, or the window tensor's length */
    sig_window_kind window;         /* used when window_values is NULL */
    const tensor *window_values;    /* a 1-D float CPU tensor, or NULL */
    bool center;
    sig_pad_mode pad_mode;
    bool onesided;
    bool normalized;
    sig_output output;
} sig_stft_args;

/* The defaults for n_fft: hop n_fft/4, win_length n_fft, periodic hann, center
 * with reflect padding, onesided, not normalized, complex output. */
void sig_stft_defaults(sig_stft_args *a, int64_t n_fft);

/* A window of `length` values (float32 or float64): periodic (denominator
 * length, for spectral analysis) or symmetric (length - 1). */
tensor *sig_window(sig_window_kind kind, int64_t length, bool periodic, dtype_t dt);

/* The number of frames of a signal of T samples (-1 with the error set when the
 * arguments are invalid or no frame fits). */
int64_t sig_stft_num_frames(int64_t T, const sig_stft_args *a);

/* The STFT of x (see above). */
tensor *sig_stft(tensor *x, const sig_stft_args *a);

/* |z| (power: |z|^2) of a complex tensor [..., 2] (re, im): [...]. */
tensor *sig_complex_abs(tensor *z, bool power);

/* Decibels as torchaudio.functional.amplitude_to_DB computes them:
 *   db = multiplier * log10(max(x, amin)) - multiplier * log10(max(ref, amin)),
 * multiplier 10 for power, 20 for magnitude; with top_db, db is floored at
 * (the spectrogram's max - top_db). The max is taken over each spectrogram (the
 * last two dims; the whole tensor when it has fewer), so one clip's values never
 * depend on the clips batched with it. torchaudio takes it over the last three
 * dims for inputs of 3 or more dims; for one [freq, time] spectrogram, and for
 * librosa's power_to_db on one array, the two agree. NaN stays NaN and is left
 * out of the max. */
typedef struct {
    double multiplier; /* > 0; default 10 */
    double amin;       /* > 0; default 1e-10 */
    double ref;        /* > 0; default 1 */
    bool has_top_db;   /* default true (as librosa's power_to_db; torchaudio's none) */
    double top_db;     /* >= 0; default 80 */
} sig_db_args;

void sig_db_defaults(sig_db_args *a);
tensor *sig_amplitude_to_db(tensor *x, const sig_db_args *a);

#endif
