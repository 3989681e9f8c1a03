/* What the fake CUDA runtime (fake_cudart.c) counts, and its controls. */
#ifndef MILES_FAKE_CUDART_H
#define MILES_FAKE_CUDART_H

#include <stdbool.h>
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

/* Device work on stream s (the emulated GPU's kernels, the fake cuBLAS's and
 * cuDNN's operations): while s is captured, a kernel node that replays run(ctx)
 * (drop(ctx) when the graph goes); else queued: run(ctx), then drop(ctx), when
 * the host next waits for it. In the emulated GPU, device memory is readable by
 * the host only while device work runs (see fake_cudart.c). */
void fake_device_work(cudaStream_t s, const void *func, unsigned grid, void (*run)(void *),
                      void *ctx, void (*drop)(void *));

/* The fake clock that events time: each queued operation costs one unit; the
 * fakes of libraries charge more for theirs (fake_cudnn.c's
 * MILES_FAKE_CUDNN_COST), so that timing picks between them and our kernels. */
void fake_charge(unsigned long long units);

/* A line (printf's fmt, no newline) in the trace that MILES_FAKE_TRACE names, if
 * any: the fakes of libraries say what each of their operations is. */
void fake_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool fake_tracing(void); /* is there such a trace? */
/* A kernel's line in that trace: where func lies in its binary (tools/emu-trace.pl
 * asks addr2line for the name), its blocks and threads per block. */
void fake_trace_kernel(cudaStream_t s, const void *func, dim3 grid, dim3 block);

#endif
