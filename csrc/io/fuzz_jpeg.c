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

#define FUZZ_READER "jpeg"
#include "fuzz_support.h"

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
