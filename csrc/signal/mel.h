/* Mel filterbanks, mel spectrograms and MFCCs (prefix sig_), on the CPU.
 *
 * The filterbank is librosa.filters.mel's and torchaudio.functional.
 * melscale_fbanks's (transposed: ours is [n_mels, n_freqs], librosa's layout):
 *   - n_freqs bins at f_k = (sample_rate / 2) k / (n_freqs - 1) (torchaudio uses
 *     sample_rate // 2: the same for even integer rates);
 *   - n_mels + 2 points equally spaced on the mel scale from mel(fmin) to
 *     mel(fmax), mapped back to Hz: f_0 .. f_{n_mels+1};
 *   - filter m is the triangle max(0, min((f - f_m) / (f_{m+1} - f_m),
 *     (f_{m+2} - f) / (f_{m+2} - f_{m+1}))), times 2 / (f_{m+2} - f_m) with the
 *     Slaney area normalisation (norm "slaney"; constant energy per channel);
 *   - mel scales: HTK, mel = 2595 log10(1 + f / 700); Slaney (Auditory Toolbox,
 *     librosa's default), linear below 1 kHz (mel = 3 f / 200) and logarithmic
 *     above (mel = 15 + ln(f / 1000) / (ln(6.4) / 27)).
 * Defaults are torchaudio's (HTK, no normalisation, 128 mels, 16 kHz, fmin 0,
 * fmax sample_rate / 2); librosa's are Slaney with norm "slaney".
 *
 * mel_spectrogram is torchaudio.transforms.MelSpectrogram: the STFT's power
 * (or magnitude) spectrogram [..., n_fft/2+1, frames], then filterbank @ it:
 * [..., n_mels, frames].
 *
 * MFCC is torchaudio.transforms.MFCC with its defaults (log_mels = false): the
 * power mel spectrogram in decibels (10 log10(max(x, 1e-10)), floored at 80 dB
 * below each spectrogram's max), then the DCT-II with orthonormal scaling
 *   c_k = s_k sum_m L_m cos(pi k (m + 1/2) / n_mels),
 *   s_0 = sqrt(1 / n_mels), s_k = sqrt(2 / n_mels) (scipy's dct(type=2,
 *   norm="ortho")); without ortho, s_k = 2 (scipy's unnormalised DCT-II).
 * log_mels = true uses ln(mel + 1e-6) instead of decibels (torchaudio's option).
 * The top_db floor is per spectrogram (see sig_amplitude_to_db): a batched call
 * equals one call per clip. */
#ifndef MILES_SIGNAL_MEL_H
#define MILES_SIGNAL_MEL_H

#include "stft.h"

typedef enum { SIG_MEL_HTK = 0, SIG_MEL_SLANEY } sig_mel_scale;

typedef struct {
    int64_t n_mels;      /* >= 1; default 128 */
    double sample_rate;  /* > 0; default 16000 */
    double fmin;         /* >= 0; default 0 */
    double fmax;         /* > fmin; a negative value means sample_rate / 2 */
    sig_mel_scale scale; /* default HTK */
    bool norm_slaney;    /* default false */
} sig_mel_args;

void sig_mel_defaults(sig_mel_args *m);

/* Hz <-> mel on a scale (no argument checks). */
double sig_hz_to_mel(double hz, sig_mel_scale s);
double sig_mel_to_hz(double mel, sig_mel_scale s);

/* The filterbank [n_mels, n_freqs] (float32 or float64). */
tensor *sig_mel_filterbank(int64_t n_freqs, const sig_mel_args *m, dtype_t dt);

/* mat [M, F] applied along the second-last dim of spec [..., F, T]:
 * [..., M, T] (mat is cast to spec's dtype). Zero runs at the ends of each row
 * of mat are skipped, so a sparse filterbank costs little. */
tensor *sig_apply_matrix(tensor *mat, tensor *spec);

/* The mel spectrogram of x [..., T]: s->output must be SIG_OUT_POWER or
 * SIG_OUT_MAGNITUDE and s->onesided true. */
tensor *sig_mel_spectrogram(tensor *x, const sig_stft_args *s, const sig_mel_args *m);

/* The DCT-II matrix [n_out, n_in] (ortho or not; see above), n_out <= n_in. */
tensor *sig_dct_matrix(int64_t n_out, int64_t n_in, bool ortho, dtype_t dt);

typedef struct {
    int64_t n_mfcc; /* 1..n_mels; default 40 */
    bool ortho;     /* default true */
    bool log_mels;  /* default false: decibels */
    sig_db_args db; /* default multiplier 10, amin 1e-10, ref 1, top_db 80 */
} sig_mfcc_args;

void sig_mfcc_defaults(sig_mfcc_args *c);

/* MFCCs of x [..., T]: [..., n_mfcc, frames]; s as for sig_mel_spectrogram
 * (power, as torchaudio's default, or magnitude). */
tensor *sig_mfcc(tensor *x, const sig_stft_args *s, const sig_mel_args *m,
                 const sig_mfcc_args *c);

#endif
