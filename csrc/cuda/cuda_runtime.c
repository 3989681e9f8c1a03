/* The CUDA backend's host side: device discovery and device memory. Built when
 * the CUDA toolkit is found (see the Makefile's CUDA switch). The kernel table is
 * filled in by the CUDA backend work; until then a GPU tensor op reports that
 * plainly instead of running anything. */
#include <cuda_runtime.h>

#include "../error.h"
#include "cuda_backend.h"

bool cuda_built(void)
{
    return true;
}

int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the sticky error */
        return 0;
    }
    return n;
}

const struct backend *cuda_backend_get(int index)
{
    int n = cuda_device_count();
    if (index >= n) {
        if (n == 0)
            err_set("no CUDA device is available on this machine");
        else
            err_set("cuda:%d does not exist (this machine has %d GPU%s)", index, n,
                    n == 1 ? "" : "s");
        return NULL;
    }
    err_set("the CUDA kernels are not part of this build yet");
    return NULL;
}

void *cuda_alloc(int index, size_t nbytes)
{
    void *p = NULL;
    if (cudaSetDevice(index) != cudaSuccess || cudaMalloc(&p, nbytes ? nbytes : 1) != cudaSuccess) {
        err_set("cudaMalloc of %zu bytes on cuda:%d failed: %s", nbytes, index,
                cudaGetErrorString(cudaGetLastError()));
        return NULL;
    }
    return p;
}

void cuda_release(int index, void *p, size_t nbytes)
{
    (void)nbytes;
    cudaSetDevice(index);
    cudaFree(p);
}

int64_t cuda_cached_bytes(void)
{
    return 0;
}

void cuda_empty_cache(void)
{
}
