/* The CUDA backend's entry points in a CPU-only build. */
#include "cuda_backend.h"

#include "../error.h"

bool cuda_built(void)
{
    return false;
}

int cuda_device_count(void)
{
    return 0;
}

const struct backend *cuda_backend_get(int index)
{
    (void)index;
    err_set("this build of miles has no CUDA backend (built with CUDA=0 or without the "
            "CUDA toolkit)");
    return NULL;
}

void *cuda_alloc(int index, size_t nbytes)
{
    (void)index;
    (void)nbytes;
    err_set("this build of miles has no CUDA backend");
    return NULL;
}

void cuda_release(int index, void *p, size_t nbytes)
{
    (void)index;
    (void)p;
    (void)nbytes;
}

int64_t cuda_cached_bytes(void)
{
    return 0;
}

void cuda_empty_cache(void)
{
}
