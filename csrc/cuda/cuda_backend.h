/* The host side of the CUDA backend. In a CPU-only build (CUDA=0, or no toolkit)
 * cuda_stub.c provides these, and every call reports that CUDA is not built in. */
#ifndef MILES_CUDA_BACKEND_H
#define MILES_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backend;

/* Was the CUDA backend compiled in? */
bool cuda_built(void);
/* Number of usable GPUs (0 when none or not built). */
int cuda_device_count(void);
/* The kernel table for GPU `index`, or NULL with the error set. */
const struct backend *cuda_backend_get(int index);

void *cuda_alloc(int index, size_t nbytes);
void cuda_release(int index, void *p, size_t nbytes);
int64_t cuda_cached_bytes(void);
void cuda_empty_cache(void);

#endif
