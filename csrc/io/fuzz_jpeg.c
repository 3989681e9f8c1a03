/* libFuzzer harness for the JPEG reader: each input is decoded with io_jpeg_load,
 * which must fail cleanly (libjpeg's longjmp staying inside the reader) or give
 * a tensor whose every byte can be read.
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

#include "jpeg.h"

static char fuzz_paths[2][64];

/* Remove the temporary files when the fuzzer exits. */
static void fuzz_cleanup(void)
{
    for (int k = 0; k < 2; k++)
        if (fuzz_paths[k][0])
            unlink(fuzz_paths[k]);
}

/* A temporary file of this process for the run ("in", or one output), rewritten
 * for each input and removed at exit. */
static const char *fuzz_path(const char *tag)
{
    int k = strcmp(tag, "in") != 0;
    if (!fuzz_paths[k][0]) {
        snprintf(fuzz_paths[k], sizeof fuzz_paths[k], "/tmp/miles_fuzz_jpeg.%ld.%s",
                 (long)getpid(), tag);
        if (k == 0)
            atexit(fuzz_cleanup);
    }
    return fuzz_paths[k];
}

/* Write the input to path; returns 0 when all of it was written. */
static int fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = size ? fwrite(data, 1, size, f) : 0;
    return (fclose(f) == 0 && n == size) ? 0 : -1;
}

/* Touch every byte of a tensor so that a bad length or pointer shows up. */
static unsigned fuzz_touch(const tensor *t)
{
    unsigned sum = 0;
    if (!t)
        return 0;
    const unsigned char *p = tensor_data(t);
    size_t n = (size_t)tensor_numel(t) * dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

/* Whether two contiguous tensors hold the same bytes with the same shape. */
static int fuzz_same(const tensor *a, const tensor *b)
{
    if (!a || !b || a->dtype != b->dtype || !tensor_same_shape(a, b))
        return 0;
    size_t n = (size_t)tensor_numel(a) * dtype_size(a->dtype);
    return memcmp(tensor_data(a), tensor_data(b), n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("in");
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    tensor *t = io_jpeg_load(path);
    sink += fuzz_touch(t);
    tensor_decref(t);
    (void)sink;
    (void)fuzz_same;
    return 0;
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_jpeg_fuzz_disabled;
#endif
