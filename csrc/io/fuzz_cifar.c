/* libFuzzer harness for the CIFAR reader: each input is read as a CIFAR-10 and as
 * a CIFAR-100 batch; a success must give 1-based labels in range and images whose
 * every byte can be read.
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

#include "cifar.h"

#define FUZZ_READER "cifar"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Trap unless every label lies in 1..hi. */
static void fuzz_labels(const tensor *t, int64_t hi)
{
    const int64_t *p = tensor_data(t);
    for (int64_t i = 0; i < tensor_numel(t); i++)
        if (p[i] < 1 || p[i] > hi)
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("in");
    if (fuzz_write(path, data, size) != 0)
        return 0;
    volatile unsigned sink = 0;
    for (int variant = 10; variant <= 100; variant += 90) {
        tensor *images = NULL, *labels = NULL, *coarse = NULL;
        if (io_cifar_load(path, variant, &images, &labels, &coarse) != 0)
            continue;
        sink += fuzz_touch(images) + fuzz_touch(labels) + fuzz_touch(coarse);
        fuzz_labels(labels, variant);
        if (coarse)
            fuzz_labels(coarse, 20);
        tensor_decref(images);
        tensor_decref(labels);
        tensor_decref(coarse);
    }
    (void)sink;
    (void)fuzz_same;
    return 0;
}

#else
/* Keep the translation unit non-empty in the ordinary build. */
typedef int io_cifar_fuzz_disabled;
#endif
