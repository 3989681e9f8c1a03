/* libFuzzer harness for the IDX reader: each input is written to a temporary
 * file and read with io_idx_load, plain or (when it starts with the gzip magic)
 * decompressed; it must fail cleanly or give a tensor whose every byte can be read.
 *
 * Built only with -DMILES_FUZZ (`make fuzz`, clang -fsanitize=fuzzer,address,
 * undefined); in the ordinary build this file is empty. */
#ifdef MILES_FUZZ

#include <stddef.h>
#include <stdint.h>

#include "idx.h"

#define FUZZ_READER "idx"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fuzz_reader readers[] = { io_idx_load };
    return fuzz_read_each(data, size, readers, (int)(sizeof readers / sizeof readers[0]));
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_idx_fuzz_disabled;
#endif
