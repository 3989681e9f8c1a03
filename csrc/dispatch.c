#include "dispatch.h"

#include "cuda/cuda_backend.h"
#include "error.h"

const backend *dispatch_backend(device dev, const char *op)
{
    if (dev.type == DEV_CPU)
        return &cpu_backend;
    const backend *be = cuda_backend_get(dev.index);
    if (!be)
        err_prefix(op);
    return be;
}
