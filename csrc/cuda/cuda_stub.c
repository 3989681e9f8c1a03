/* The CUDA backend's entry points in a CPU-only build. */
#include "cuda_backend.h"

#include "../error.h"
#include "../tensor.h"

#define NOT_BUILT "this build of miles has no CUDA backend (built with CUDA=0 or without the CUDA toolkit)"

bool cuda_built(void)
{
    return false;
}

bool cuda_emulated(void)
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
    err_set(NOT_BUILT);
    return NULL;
}

void *cuda_alloc(int index, size_t nbytes, bool grow)
{
    (void)index;
    (void)nbytes;
    (void)grow;
    err_set(NOT_BUILT);
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

int64_t cuda_device_allocs(void)
{
    return 0;
}

int64_t cuda_cudnn_plans(void)
{
    return 0;
}

int cuda_alloc_check(int index)
{
    (void)index;
    return 0;
}

int64_t cuda_host_waits(void)
{
    return 0;
}

void cuda_empty_cache(void)
{
}

int cuda_copy_across(struct tensor *dst, const struct tensor *src)
{
    (void)dst;
    (void)src;
    return err_set(NOT_BUILT);
}

struct tensor *cuda_pinned_empty(int dt, int ndim, const int64_t *shape)
{
    return tensor_empty((dtype_t)dt, ndim, shape, DEVICE_CPU);
}

bool cuda_is_pinned(const struct tensor *t)
{
    (void)t;
    return false;
}

int cuda_synchronize(int index)
{
    (void)index;
    return err_set(NOT_BUILT);
}

bool cuda_get_tf32(void)
{
    return false;
}

void cuda_set_tf32(bool on)
{
    (void)on;
}

bool cuda_get_deterministic(void)
{
    return false;
}

void cuda_set_deterministic(bool on)
{
    (void)on;
}

int cuda_graph_begin(int index)
{
    (void)index;
    return err_set(NOT_BUILT);
}

cuda_graph *cuda_graph_end(int index, bool keep)
{
    (void)index;
    (void)keep;
    err_set(NOT_BUILT);
    return NULL;
}

/* No graph exists without the backend: these are never reached with one. */
int cuda_graph_launch(cuda_graph *g)
{
    (void)g;
    return err_set(NOT_BUILT);
}

int cuda_graph_refresh_begin(cuda_graph *g)
{
    (void)g;
    return err_set(NOT_BUILT);
}

int cuda_graph_refresh_end(cuda_graph *g)
{
    (void)g;
    return err_set(NOT_BUILT);
}

void cuda_graph_free(cuda_graph *g)
{
    (void)g;
}

size_t cuda_graph_node_count(const cuda_graph *g)
{
    (void)g;
    return 0;
}

int cuda_graph_updatable_count(const cuda_graph *g)
{
    (void)g;
    return 0;
}

int cuda_graph_device(const cuda_graph *g)
{
    (void)g;
    return -1;
}

bool cuda_capturing_any(void)
{
    return false;
}
