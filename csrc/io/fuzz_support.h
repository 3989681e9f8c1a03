/* What every libFuzzer harness of csrc/io/fuzz_<reader>.c needs: temporary
 * files for the input (and outputs), and checks that a result can be read whole.
 * A harness defines FUZZ_READER (its name, for the temporary files) before
 * including this; only fuzz builds (-DMILES_FUZZ) include it. */
#ifndef MILES_IO_FUZZ_SUPPORT_H
#define MILES_IO_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tensor.h"

static char fuzz_paths[2][64];

/* Remove the temporary files when the fuzzer exits. */
static inline void fuzz_cleanup(void)
{
    for (int k = 0; k < 2; k++)
        if (fuzz_paths[k][0])
            unlink(fuzz_paths[k]);
}

/* A temporary file of this process for the run ("in", or one output), rewritten
 * for each input and removed at exit. */
static inline const char *fuzz_path(const char *tag)
{
    int k = strcmp(tag, "in") != 0;
    if (!fuzz_paths[k][0]) {
        snprintf(fuzz_paths[k], sizeof fuzz_paths[k], "/tmp/miles_fuzz_%s.%ld.%s",
                 FUZZ_READER, (long)getpid(), tag);
        if (k == 0)
            atexit(fuzz_cleanup);
    }
    return fuzz_paths[k];
}

/* Write the input to path; returns 0 when all of it was written. */
static inline int fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = size ? fwrite(data, 1, size, f) : 0;
    return (fclose(f) == 0 && n == size) ? 0 : -1;
}

/* Touch every byte of a tensor so that a bad length or pointer shows up. */
static inline unsigned fuzz_touch(const tensor *t)
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

typedef tensor *(*fuzz_reader)(const char *path);

/* The whole harness of readers that take only a path: the input goes to the
 * temporary file, each reader reads it, and every byte of each result is read. */
static inline int fuzz_read_each(const uint8_t *data, size_t size, const fuzz_reader *readers, int n)
{
    const char *path = fuzz_path("in");
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    for (int i = 0; i < n; i++) {
        tensor *t = readers[i](path);
        sink += fuzz_touch(t);
        tensor_decref(t);
    }
    (void)sink;
    return 0;
}

/* Whether two contiguous tensors hold the same bytes with the same shape. */
static inline int fuzz_same(const tensor *a, const tensor *b)
{
    if (!a || !b || a->dtype != b->dtype || !tensor_same_shape(a, b))
        return 0;
    size_t n = (size_t)tensor_numel(a) * dtype_size(a->dtype);
    return memcmp(tensor_data(a), tensor_data(b), n) == 0;
}

#endif
