/* libFuzzer harness for the audio reader, the resampler and the WAV writer: each
 * input is read with io_audio_load (every channel, and mixed to mono); a small
 * success is resampled to 16 kHz, and written as a float WAV and read back, which
 * must give the same samples (a failed round trip traps).
 *
 * Built only with -DMILES_FUZZ (`make fuzz`, clang -fsanitize=fuzzer,address,
 * undefined); in the ordinary build this file is empty. */
#ifdef MILES_FUZZ

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio.h"

#define FUZZ_READER "audio"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Resample t to 16 kHz and write it as a float WAV: it must read back unchanged. */
static unsigned fuzz_resample_and_write(const tensor *t, int rate)
{
    unsigned sum = 0;
    if (rate >= 4000 && rate <= 96000) {
        tensor *r = io_audio_resample(t, rate, 16000);
        sum += fuzz_touch(r);
        tensor_decref(r);
    }
    const char *out = fuzz_path("out.wav");
    if (io_audio_save_wav(out, t, rate, IO_WAV_FLOAT) != 0)
        __builtin_trap(); /* anything we read must be writable */
    int back_rate = 0;
    tensor *back = io_audio_load(out, false, 0, &back_rate);
    if (!fuzz_same(t, back) || back_rate != rate)
        __builtin_trap();
    tensor_decref(back);
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("in");
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    int rate = 0;
    tensor *t = io_audio_load(path, false, 0, &rate);
    sink += fuzz_touch(t);
    if (t && tensor_numel(t) <= (1 << 16))
        sink += fuzz_resample_and_write(t, rate);
    tensor_decref(t);
    t = io_audio_load(path, true, 0, &rate);
    sink += fuzz_touch(t);
    tensor_decref(t);
    (void)sink;
    return 0;
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_audio_fuzz_disabled;
#endif
