/* Audio files through libsndfile (linked dynamically: LGPL), a band-limited
 * resampler, and an atomic WAV writer.
 *
 * Reading accepts every format the system's libsndfile reads (WAV, AIFF, AU,
 * FLAC, Ogg/Vorbis, Opus, ...). Samples come back as float32 in [-1, 1)
 * (integer PCM is divided by its full scale; float files are passed through).
 * The result is [channels, frames], or [frames] with mono = true (the mean of
 * the channels). A file that declares more frames than it holds is reported as
 * truncated (MPEG excepted: its count is an estimate); a WAV data chunk whose
 * size is a streaming placeholder (as written by `espeak-ng --stdout`,
 * 0x7FFFF000 and above) is read up to the end of the file instead. Files with no
 * frames, or over 2 GiB of samples, are errors.
 *
 * Resampling (io_audio_resample, and io_audio_load with a target rate) is
 * band-limited interpolation with a Kaiser-windowed sinc (J. O. Smith's method):
 * 32 zero crossings on each side of the kernel, at the lower of the two rates;
 * Kaiser beta = 8.0; cutoff (-6 dB) at 0.92 x the lower Nyquist frequency; the
 * kernel tabulated at 512 points per zero crossing and linearly interpolated;
 * sums in double. Measured (44.1k, 48k, 22.05k -> 16k; 8k, 16k -> 44.1k/16k):
 * flat within 0.001 dB up to 0.84 x the lower Nyquist, -0.5 dB at 0.88, -6 dB
 * at 0.92, -25 dB at 0.96; at and above the lower Nyquist at least 85 dB down,
 * so a tone above the new Nyquist is removed, not aliased; error floor about
 * -88 dB. Any pair of integer rates works (each output sample's position is
 * computed exactly from integers); equal rates copy the samples unchanged.
 * Samples outside the signal count as zero, so the first and last ~32 output
 * samples (at the lower rate) feel the edge.
 *
 * Writing produces a RIFF WAV file of 32-bit float or 16-bit PCM samples (16-bit
 * PCM is rounded from x * 32767 and clipped to [-32768, 32767]; NaN is an error)
 * next to path and renames it over path.
 *
 * Every error message starts with the file's path and says what was wrong. */
#ifndef MILES_IO_AUDIO_H
#define MILES_IO_AUDIO_H

#include <stdbool.h>

#include "../tensor.h"

typedef enum { IO_WAV_FLOAT = 0, IO_WAV_PCM16 } io_wav_format;

/* A new float32 CPU tensor with the audio at path: [channels, frames], or
 * [frames] when mono. With rate > 0 it is resampled to that rate; *rate_out (if
 * not NULL) gets the rate of the result. NULL on error. */
tensor *io_audio_load(const char *path, bool mono, int rate, int *rate_out);

/* x (float32 or float64, [frames] or [channels, frames], any layout, on the cpu)
 * resampled from rate `from` to rate `to` along its last dim: a new float32
 * tensor with ceil(frames * to / from) frames, or NULL. */
tensor *io_audio_resample(const tensor *x, int from, int to);

/* Write t (float32 or float64, [frames] or [channels, frames]) as a WAV file at
 * the given rate. Returns 0 or -1. */
int io_audio_save_wav(const char *path, const tensor *t, int rate, io_wav_format fmt);

#endif
