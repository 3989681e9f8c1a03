/* libFuzzer harness for the JPEG reader: each input is decoded with io_jpeg_load,
 * which must fail cleanly (libjpeg's longjmp staying inside the reader) or give
 * a tensor whose every byte can be read.
 *
 * Built only with -DMILES_FUZZ (`make fuzz`, clang -fsanitize=fuzzer,address,
 * undefined); in the ordinary build this file is empty. */
#ifdef MILES_FUZZ

#include <stddef.h>
#include <stdint.h>

#include "jpeg.h"

#define FUZZ_READER "jpeg"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fuzz_reader readers[] = { io_jpeg_load };
    return fuzz_read_each(data, size, readers, (int)(sizeof readers / sizeof readers[0]));
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_jpeg_fuzz_disabled;
#endif
