/* The host side of the CUDA backend, as the rest of the core sees it. In a
 * CPU-only build (CUDA=0, or no toolkit) cuda_stub.c provides these, and every
 * call reports that CUDA is not built in. */
#ifndef MILES_CUDA_BACKEND_H
#define MILES_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backend;
struct tensor;

/* Was the CUDA backend compiled in? */
bool cuda_built(void);
/* Is the GPU the emulated one (make EMU=1: spec/emu/)? */
bool cuda_emulated(void);
/* Number of usable GPUs (0 when none or not built). */
int cuda_device_count(void);
/* The kernel table for GPU `index`, or NULL with the error set. */
const struct backend *cuda_backend_get(int index);

/* Device memory through the caching allocator (NULL without setting the error
 * when out of memory: alloc.c reports it). Unless grow, only a cached block (NULL
 * when there is none: the GPU is not asked); during a capture, grow or not, the
 * capture's pool serves it. */
void *cuda_alloc(int index, size_t nbytes, bool grow);
/* 0, or -1 with the error set when cuda:index's memory cannot be handed out now
 * (a CUDA graph is being captured on another GPU: its cudaMalloc would break it). */
int cuda_alloc_check(int index);
void cuda_release(int index, void *p, size_t nbytes);
int64_t cuda_cached_bytes(void);
int64_t cuda_device_allocs(void); /* cudaMalloc calls so far, all GPUs */
int64_t cuda_cudnn_plans(void);   /* cuDNN plans cached now (cudnn_graph.c) */
/* Times miles has made the host wait for a GPU (a synchronisation, a read of a
 * GPU value, a staging buffer still being read): a steady training step makes
 * none. */
int64_t cuda_host_waits(void);
void cuda_empty_cache(void);

/* dst = src between devices (cpu <-> cuda:N, or two GPUs): same shape, any
 * strides and dtypes. Host-to-device copies go through pinned buffers and do not
 * wait for the GPU; device-to-host copies wait for it (and report an error a
 * kernel flagged, such as an index out of range). */
int cuda_copy_across(struct tensor *dst, const struct tensor *src);

/* A CPU tensor of dtype dt in pinned (page-locked) host memory: a copy from it to
 * a GPU reads it directly (no staging copy on the host) and does not wait; its
 * memory is reused only once such copies are done. Without a GPU, an ordinary CPU
 * tensor. Thread-safe (the data loader's workers make their batches with it).
 * NULL with the error set. */
struct tensor *cuda_pinned_empty(int dt, int ndim, const int64_t *shape);
bool cuda_is_pinned(const struct tensor *t);
/* Wait until GPU `index` has finished its work; reports a flagged error. */
int cuda_synchronize(int index);

/* CUDA graphs (cuda_graph.c): the GPU work of a function captured from GPU
 * `index`'s stream between begin and end, then replayed with one launch. end(keep
 * false) discards the capture (after an error in the function); it returns NULL
 * with the error set when the capture failed. Before a replay, the optimizers'
 * launches are refreshed: between refresh_begin and refresh_end their updatable
 * launches rewrite the graph's nodes instead of launching. free may be called
 * while another capture runs (the graph is destroyed at its end). */
typedef struct cuda_graph cuda_graph;
int cuda_graph_begin(int index);
cuda_graph *cuda_graph_end(int index, bool keep);
int cuda_graph_launch(cuda_graph *g);
int cuda_graph_refresh_begin(cuda_graph *g);
int cuda_graph_refresh_end(cuda_graph *g);
void cuda_graph_free(cuda_graph *g);
size_t cuda_graph_node_count(const cuda_graph *g);
int cuda_graph_updatable_count(const cuda_graph *g);
int cuda_graph_device(const cuda_graph *g);
/* Is any GPU being captured (by this process)? */
bool cuda_capturing_any(void);

/* TF32 tensor-core maths for float32 matmuls and convolutions. */
bool cuda_get_tf32(void);
void cuda_set_tf32(bool on);

/* Deterministic convolutions (off by default): cuDNN engines that note
 * non-determinism are skipped and the first workable engine of the heuristics'
 * order is used instead of the fastest by timing, so a run repeats bit for bit
 * (scatter_add/index_add with repeated indices still add in atomic order). */
bool cuda_get_deterministic(void);
void cuda_set_deterministic(bool on);

#endif
