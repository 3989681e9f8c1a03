/* libFuzzer harness for the NPY reader: each input is written to a temporary file
 * and read with io_npy_load and io_npy_mmap, which must fail cleanly or succeed
 * without touching memory outside the file's bytes.
 *
 * Built only with -DMILES_FUZZ (the `fuzz` target, with clang
 * -fsanitize=fuzzer,address); in the ordinary build this file is empty. */
#ifdef MILES_FUZZ

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "npy.h"

/* One temporary file for the whole run, rewritten for each input. */
static const char *fuzz_path(void)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/miles_fuzz_npy.%ld.npy", (long)getpid());
    }
    return path;
}

/* Write the input to the file; returns 0 when all of it was written. */
static int fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = size ? fwrite(data, 1, size, f) : 0;
    return (fclose(f) == 0 && n == size) ? 0 : -1;
}

/* Touch every byte of a loaded tensor so that a bad mapping or length shows up. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path();
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    tensor *t = io_npy_load(path);
    sink += fuzz_touch(t);
    tensor_decref(t);
    t = io_npy_mmap(path);
    sink += fuzz_touch(t);
    tensor_decref(t);
    (void)sink;
    return 0;
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_npy_fuzz_disabled;
#endif
