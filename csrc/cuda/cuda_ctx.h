/* What the CUDA backend's files share: per-GPU streams and library handles, the
 * device-side error flag, and CUDA error checks that set the core's message.
 * Only compiled in a CUDA build (it includes the toolkit's headers). */
#ifndef MILES_CUDA_CTX_H
#define MILES_CUDA_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "cuda_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cache_alloc;

#define CUDA_MAX_GPUS 16

/* Make GPU `index` current and return its stream, created on first use. All of
 * miles's work on a GPU runs in order on this one stream, so memory freed by one
 * op can be handed to the next without waiting. NULL with the error set when the
 * device cannot be used. */
cudaStream_t cuda_ctx_stream(int index);

/* The host waits for the GPU: stream s's work, or event ev (no wait when it has
 * happened). Each wait is counted (cuda_host_waits). 0, or -1 with the error set
 * (saying what failed). */
int cuda_ctx_wait_stream(cudaStream_t s, const char *what);
int cuda_ctx_wait_event(cudaEvent_t ev, const char *what);
/* Count a wait that the caller makes itself (keeping its own error handling). */
void cuda_ctx_count_wait(void);

/* A device int that kernels set when their input is invalid (an index out of
 * range, a class target of a loss among them); read, reported and cleared at
 * each synchronisation. */
enum { CUDA_FLAG_INDEX_RANGE = 1 };
int *cuda_ctx_error_flag(int index);

/* Wait for GPU `index`'s stream, then report a flag a kernel set. 0 or -1. */
int cuda_ctx_sync(int index);

/* 0 when e is cudaSuccess; else -1 with "<what>: <CUDA's message>". */
int cuda_ctx_check(cudaError_t e, const char *what);
/* After a kernel launch: the launch's error, if any (no synchronisation). */
int cuda_ctx_launched(const char *what);

/* A library's handle for each GPU (cuBLAS's, cuDNN's), made on first use by
 * make (bound to the GPU's stream; 0, or -1 with the error set) and kept for the
 * process's life. */
typedef struct {
    const char *library;   /* "cuBLAS", for messages */
    const char *first_use; /* what first needs it: "matmul" */
    int (*make)(void **h, cudaStream_t s, const char *op);
    void *handles[CUDA_MAX_GPUS];
} cuda_lib_handles;

/* lib's handle for GPU index (made current), or NULL with the error set (op names
 * the operation). The first use inside a CUDA graph capture is refused: making a
 * handle is not something a capture can hold. */
void *cuda_ctx_handle(cuda_lib_handles *lib, int index, const char *op);

/* The GPU last made current by any thread (0 at first): where a thread that uses
 * no GPU of its own (a data loader's) pins memory. */
int cuda_ctx_preferred_device(void);

/* The general caching allocator of GPU `index` (set up by cuda_ctx_stream). */
struct cache_alloc *cuda_ctx_cache(int index);

/* CUDA graphs (cuda_graph.c). Is GPU index's stream being captured? */
bool cuda_ctx_capturing(int index);
/* While capturing: a block of the graph's private pool (NULL when out of memory). */
void *cuda_graph_pool_alloc(int index, size_t nbytes);
/* Take back p if it is a graph pool's block (true), else leave it (false). */
bool cuda_graph_pool_release(int index, void *p, size_t nbytes);
int64_t cuda_graph_device_allocs(void);
/* While GPU index's stream is captured: the graph's random state on the device,
 * {seed, offset} (made on first use), which each replay sets to the generator's;
 * *offset, the first of n counters claimed from the generator while capturing,
 * is made relative to the capture's start. A kernel draws from the seed at
 * counter state[1] + *offset. NULL with the error set. */
const uint64_t *cuda_graph_rng_state(int index, uint64_t *offset, uint64_t n);
/* Launch func<<<grid, block>>>(args) on GPU index's stream, as an updatable launch:
 * while a graph is captured, remembered with its node; while that graph is
 * refreshed, rewriting the node's arguments instead of launching. The same
 * launches must come in the same order, with the same key: the launcher's digest
 * of the arguments that must not change (its tensors), so that only the scalars
 * do. For the kernels whose scalars change between replays (the optimizers'). 0
 * or -1 with the error set. */
int cuda_ctx_launch(int index, const char *who, const void *func, unsigned grid, unsigned block,
                    void **args, uint64_t key);
/* FNV-1a over n bytes, continuing from h (start with CUDA_CTX_KEY_SEED): keys. */
#define CUDA_CTX_KEY_SEED 14695981039346656037ull
uint64_t cuda_ctx_key(uint64_t h, const void *p, size_t n);

/* After queuing a copy from pinned tensor src on GPU index's stream s: its memory
 * is reused only once that copy is done (cuda_pinned.c). 0 or -1. */
struct tensor;
int cuda_pinned_copied(const struct tensor *src, int index, cudaStream_t s);

/* The maths settings (TF32, bf16 autocast, deterministic) are cuda_backend.h's
 * cuda_get_* functions. */

/* Grid size for n elements with `threads` per block and grid-stride loops. */
unsigned cuda_ctx_blocks(long long n, unsigned threads);

#ifdef __cplusplus
}
#endif

#endif
