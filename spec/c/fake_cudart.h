/* What the fake CUDA runtime (fake_cudart.c) counts, and its controls. */
#ifndef MILES_FAKE_CUDART_H
#define MILES_FAKE_CUDART_H

#include <stddef.h>

#include <cuda_runtime.h>

typedef struct {
    int devices;           /* GPUs it reports (set by the check) */
    size_t capacity;       /* device bytes cudaMalloc may hand out in all */
    long mallocs, frees, bad_frees, host_allocs;
    long kernels;          /* kernel launches run (not captured) */
    long h2d_copies;       /* host-to-device copies run */
    long host_waits;       /* event synchronisations that had to wait */
    long capture_violations;
    long graphs, execs;    /* live graphs and instantiated graphs */
    long node_updates, bad_node_updates, graph_launches;
} fake_counts;

extern fake_counts fake;

/* The fake GPU finishes all work queued so far. */
void fake_gpu_catch_up(void);
/* Device bytes held (cudaMalloc'd, not freed). */
size_t fake_device_bytes(void);

/* For the emulated GPU's launches: while s is captured, append a kernel node that
 * replays run(ctx) (drop(ctx) when the graph goes) and return 0; else 1. */
int fake_capture_closure(cudaStream_t s, const void *func, unsigned grid, void (*run)(void *),
                         void *ctx, void (*drop)(void *));

#endif
