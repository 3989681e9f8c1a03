/* Helpers shared by the signal files (not part of the public signal API): input
 * checks, and the STFT and decibel entry points with the caller's name for the
 * error messages (so mel_spectrogram's errors say "mel_spectrogram: ..."). */
#ifndef MILES_SIGNAL_UTIL_H
#define MILES_SIGNAL_UTIL_H

#include "stft.h"

/* 0 if t is a float32/float64 tensor on the cpu, else -1 with "fn: ..." set. */
int sig_check_float_cpu(const tensor *t, const char *fn);

/* Like sig_check_float_cpu, and t has 1..max_ndim dims (a signal [..., T]). */
int sig_check_signal(const tensor *t, int max_ndim, const char *fn);

/* sig_stft and sig_amplitude_to_db, with errors led by fn. */
tensor *sig_stft_named(tensor *x, const sig_stft_args *a, const char *fn);
tensor *sig_amplitude_to_db_named(tensor *x, const sig_db_args *a, const char *fn);

/* 0 if the decibel options are valid, else -1 with "fn: ..." set. */
int sig_check_db_args(const sig_db_args *a, const char *fn);

#endif
