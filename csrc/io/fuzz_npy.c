/* libFuzzer harness for the NPY reader: each input is written to a temporary file
 * and read with io_npy_load and io_npy_mmap, which must fail cleanly or succeed
 * without touching memory outside the file's bytes.
 *
 * Built only with -DMILES_FUZZ (`make fuzz`, clang -fsanitize=fuzzer,address,
 * undefined); in the ordinary build this file is empty. */
#ifdef MILES_FUZZ

#include <stddef.h>
#include <stdint.h>

#include "npy.h"

#define FUZZ_READER "npy"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fuzz_reader readers[] = { io_npy_load, io_npy_mmap };
    return fuzz_read_each(data, size, readers, (int)(sizeof readers / sizeof readers[0]));
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_npy_fuzz_disabled;
#endif
