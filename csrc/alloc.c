#include "alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/cuda_backend.h"
#include "error.h"

static alloc_oom_hook oom_hook;
static alloc_pressure_hook pressure_hook;
static alloc_reclaim_hook reclaim_hook;
static void *hook_ud;

static _Atomic int64_t live[DEV_TYPES], peak[DEV_TYPES], nallocs[DEV_TYPES];

void alloc_set_hooks(alloc_oom_hook oom, alloc_pressure_hook pressure,
                     alloc_reclaim_hook reclaim, void *ud)
{
    oom_hook = oom;
    pressure_hook = pressure;
    reclaim_hook = reclaim;
    hook_ud = ud;
}

static void *device_alloc(device dev, size_t nbytes)
{
    if (dev.type == DEV_CPU) {
        /* 64-byte alignment suits AVX-512 loads and oneDNN's preferences. */
        size_t rounded = (nbytes + 63) & ~(size_t)63;
        return aligned_alloc(64, rounded ? rounded : 64);
    }
    /* A block the GPU's cache lacks may be held by tensors that are garbage the
     * collector has yet to reach: let it collect (the hook judges whether enough
     * was allocated since its last cycle) and look again before asking the GPU
     * for more, so that a steady loop stops allocating. */
    void *p = cuda_alloc(dev.index, nbytes, false);
    if (!p && reclaim_hook && reclaim_hook(hook_ud, dev.type))
        p = cuda_alloc(dev.index, nbytes, false);
    return p ? p : cuda_alloc(dev.index, nbytes, true);
}

/* "1.5 GiB" into buf (at least 32 bytes). */
static const char *human_bytes(double n, char *buf)
{
    static const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (n >= 1024 && u < 6) {
        n /= 1024;
        u++;
    }
    snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

void alloc_note_pressure(size_t nbytes)
{
    if (pressure_hook)
        pressure_hook(hook_ud, DEV_CPU, nbytes); /* (pinned host memory) */
}

void *alloc_bytes(device dev, size_t nbytes)
{
    if (dev.type == DEV_CUDA && (!cuda_backend_get(dev.index) || cuda_alloc_check(dev.index) != 0))
        return NULL; /* no such GPU, no CUDA, or a capture elsewhere: that, not out of memory */
    void *p = device_alloc(dev, nbytes);
    if (!p && oom_hook) {
        oom_hook(hook_ud);
        p = device_alloc(dev, nbytes); /* (from the blocks the collection gave back) */
        if (!p && dev.type == DEV_CUDA) {
            alloc_empty_cache(DEV_CUDA);
            p = device_alloc(dev, nbytes);
        }
    }
    if (!p) {
        char buf[16], asked[32], used[32], cached[32];
        alloc_stats s = alloc_get_stats(dev.type);
        err_set("out of memory on %s: asked for %s (%zu bytes), %s in use, %s cached",
                device_str(dev, buf), human_bytes((double)nbytes, asked), nbytes,
                human_bytes((double)s.live_bytes, used),
                human_bytes((double)s.cached_bytes, cached));
        return NULL;
    }
    int64_t now = atomic_fetch_add(&live[dev.type], (int64_t)nbytes) + (int64_t)nbytes;
    int64_t old = atomic_load(&peak[dev.type]);
    while (now > old && !atomic_compare_exchange_weak(&peak[dev.type], &old, now))
        ;
    atomic_fetch_add(&nallocs[dev.type], 1);
    if (pressure_hook)
        pressure_hook(hook_ud, dev.type, nbytes);
    return p;
}

void alloc_release(device dev, void *p, size_t nbytes)
{
    if (!p)
        return;
    atomic_fetch_sub(&live[dev.type], (int64_t)nbytes);
    if (dev.type == DEV_CPU)
        free(p);
    else
        cuda_release(dev.index, p, nbytes);
}

alloc_stats alloc_get_stats(device_type type)
{
    alloc_stats s = {atomic_load(&live[type]), atomic_load(&peak[type]), 0,
                     atomic_load(&nallocs[type])};
    if (type == DEV_CUDA) {
        s.cached_bytes = cuda_cached_bytes();
        s.n_allocs = cuda_device_allocs(); /* the rest came from the cache */
    }
    return s;
}

void alloc_empty_cache(device_type type)
{
    if (type == DEV_CUDA)
        cuda_empty_cache();
}
