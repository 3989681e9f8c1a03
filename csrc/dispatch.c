#include "dispatch.h"

#include "cuda/cuda_backend.h"
#include "error.h"

const backend *dispatch_backend(device dev, const char *op)
{
    return dispatch_device_table(dev, op) ? &widening_backend : NULL;
}

const backend *dispatch_device_table(device dev, const char *op)
{
    if (dev.type == DEV_CPU)
        return &cpu_backend;
    const backend *be = cuda_backend_get(dev.index);
    if (!be)
        err_prefix(op);
    return be;
}
