/* libFuzzer harness for the IDX reader: each input is written to a temporary
 * file and read with io_idx_load, plain or (when it starts with the gzip magic)
 * decompressed; it must fail cleanly or give a tensor whose every byte can be read.
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

#include "idx.h"

#define FUZZ_READER "idx"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("in");
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    tensor *t = io_idx_load(path);
    sink += fuzz_touch(t);
    tensor_decref(t);
    (void)sink;
    (void)fuzz_same;
    return 0;
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_idx_fuzz_disabled;
#endif
