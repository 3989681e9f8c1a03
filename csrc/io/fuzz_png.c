/* libFuzzer harness for the PNG reader and writer: each input is read as uint8
 * and as float32; a uint8 success is written back with io_png_save and read
 * again, which must give the same tensor (a failed round trip traps).
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

#include "png.h"

#define FUZZ_READER "png"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write t as a PNG and read it back: it must come back unchanged. */
static void fuzz_round_trip(const tensor *t)
{
    const char *out = fuzz_path("out.png");
    if (io_png_save(out, t) != 0)
        __builtin_trap(); /* any image we read must be writable */
    tensor *back = io_png_load(out, DT_U8);
    if (!fuzz_same(t, back))
        __builtin_trap();
    tensor_decref(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("in");
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    tensor *t = io_png_load(path, DT_U8);
    sink += fuzz_touch(t);
    if (t && tensor_numel(t) <= (1 << 20))
        fuzz_round_trip(t);
    tensor_decref(t);
    t = io_png_load(path, DT_F32);
    sink += fuzz_touch(t);
    tensor_decref(t);
    (void)sink;
    return 0;
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_png_fuzz_disabled;
#endif
