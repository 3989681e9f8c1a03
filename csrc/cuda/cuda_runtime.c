/* The CUDA backend's host side: device discovery, one stream per GPU, the
 * caching allocator over cudaMalloc, the device-side error flag, and copies
 * between host and device through pinned staging buffers. */
#include <pthread.h>
#include <string.h>

#include "../cache_alloc.h"
#include "../dispatch.h"
#include "../error.h"
#include "../tensor.h"
#include "cuda_backend.h"
#include "cuda_ctx.h"

/* Host<->device copies move through a ring of pinned buffers of at most
 * STAGE_BYTES each, so that filling one overlaps the transfers of the others, and
 * the host can queue a few training steps' inputs (three per step for two
 * modalities and the labels) before it waits for the GPU to free a buffer. */
#define STAGE_SLOTS 8
#define STAGE_BYTES ((size_t)32 << 20)

typedef struct {
    void *p;
    size_t size;
    cudaEvent_t done; /* recorded after the transfer that last read it */
} stage_buf;

typedef struct {
    bool ready;
    cudaStream_t stream;
    int *error_flag; /* device memory */
    cache_alloc *cache;
    stage_buf stage[STAGE_SLOTS];
    int next_stage;
} gpu_state;

extern const backend cuda_backend;

static gpu_state gpus[CUDA_MAX_GPUS];
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static bool tf32 = true;
static bool deterministic = false;

int cuda_ctx_check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 0;
    cudaGetLastError(); /* clear it, so the next call does not see it again */
    return err_set("%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int cuda_ctx_launched(const char *what)
{
    return cuda_ctx_check(cudaGetLastError(), what);
}

unsigned cuda_ctx_blocks(long long n, unsigned threads)
{
    long long b = (n + threads - 1) / threads;
    /* grid-stride loops cover the rest; enough blocks to fill any current GPU */
    return (unsigned)(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

bool cuda_built(void)
{
    return true;
}

bool cuda_emulated(void)
{
#ifdef MILES_EMU
    return true;
#else
    return false;
#endif
}

static pthread_once_t count_once = PTHREAD_ONCE_INIT;
static int n_devices;

static void count_devices(void)
{
    if (cudaGetDeviceCount(&n_devices) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the sticky error */
        n_devices = 0;
    }
}

int cuda_device_count(void)
{
    pthread_once(&count_once, count_devices);
    return n_devices;
}

/* The GPU this thread last made current (-1: none yet), so that the common case,
 * one GPU, makes no cudaSetDevice call per kernel. */
static _Thread_local int current_gpu = -1;

/* The GPU made current last, by any thread (for threads that have none). */
static _Atomic int preferred_gpu;

int cuda_ctx_preferred_device(void)
{
    return preferred_gpu;
}

static int use_device(int index)
{
    if (index == current_gpu)
        return 0;
    if (cuda_ctx_check(cudaSetDevice(index), "cudaSetDevice") != 0)
        return -1;
    current_gpu = index;
    preferred_gpu = index;
    return 0;
}

static int check_index(int index)
{
    int n = cuda_device_count();
    if (index >= 0 && index < n && index < CUDA_MAX_GPUS)
        return 0;
    if (n == 0)
        return err_set("no CUDA device is available on this machine");
    return err_set("cuda:%d does not exist (this machine has %d GPU%s)", index, n,
                   n == 1 ? "" : "s");
}

static void *device_malloc(void *ud, size_t n)
{
    void *p = NULL;
    if (use_device((int)(intptr_t)ud) != 0 || cudaMalloc(&p, n) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void device_free(void *ud, void *p, size_t n)
{
    (void)n;
    if (use_device((int)(intptr_t)ud) == 0)
        cudaFree(p);
}

/* The state of GPU `index`, set up on first use, with that GPU made current. */
static gpu_state *gpu(int index)
{
    if (check_index(index) != 0)
        return NULL;
    gpu_state *g = &gpus[index];
    if (use_device(index) != 0)
        return NULL;
    if (g->ready)
        return g;
    pthread_mutex_lock(&init_lock);
    int rc = 0;
    if (!g->ready) {
        cache_alloc_device dev = {device_malloc, device_free, (void *)(intptr_t)index};
        rc = cuda_ctx_check(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking),
                            "cudaStreamCreate");
        if (rc == 0)
            rc = cuda_ctx_check(cudaMalloc((void **)&g->error_flag, sizeof(int)),
                                "cudaMalloc (error flag)");
        if (rc == 0)
            rc = cuda_ctx_check(cudaMemsetAsync(g->error_flag, 0, sizeof(int), g->stream),
                                "cudaMemsetAsync (error flag)");
        for (int i = 0; i < STAGE_SLOTS && rc == 0; i++)
            rc = cuda_ctx_check(cudaEventCreateWithFlags(&g->stage[i].done,
                                                         cudaEventDisableTiming),
                                "cudaEventCreate");
        if (rc == 0 && !(g->cache = cache_alloc_new(dev)))
            rc = err_set("out of host memory (the CUDA allocator's cache)");
        g->ready = rc == 0;
    }
    pthread_mutex_unlock(&init_lock);
    return rc == 0 ? g : NULL;
}

void *cuda_ctx_handle(cuda_lib_handles *lib, int index, const char *op)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    cudaStream_t stream = cuda_ctx_stream(index); /* checks index, makes it current */
    if (!stream)
        return NULL;
    pthread_mutex_lock(&lock);
    void *h = lib->handles[index];
    if (!h && cuda_capturing_any()) /* (setting it up would break a capture on any GPU) */
        err_set("%s: the first %s on cuda:%d came inside a CUDA graph capture (%s is set up "
                "at its first use, which a capture cannot hold): run the captured function "
                "once before capturing it", op, lib->first_use, index, lib->library);
    else if (!h && lib->make(&h, stream, op) == 0)
        lib->handles[index] = h;
    pthread_mutex_unlock(&lock);
    return h; /* NULL when refused or when make failed (h untouched), the error set */
}

struct cache_alloc *cuda_ctx_cache(int index)
{
    gpu_state *g = gpu(index);
    return g ? g->cache : NULL;
}

cudaStream_t cuda_ctx_stream(int index)
{
    gpu_state *g = gpu(index);
    return g ? g->stream : NULL;
}

int *cuda_ctx_error_flag(int index)
{
    gpu_state *g = gpu(index);
    return g ? g->error_flag : NULL;
}

static _Atomic int64_t host_waits;

int64_t cuda_host_waits(void)
{
    return host_waits;
}

void cuda_ctx_count_wait(void)
{
    host_waits++;
}

int cuda_ctx_wait_stream(cudaStream_t s, const char *what)
{
    cuda_ctx_count_wait();
    return cuda_ctx_check(cudaStreamSynchronize(s), what);
}

int cuda_ctx_wait_event(cudaEvent_t ev, const char *what)
{
    cudaError_t q = cudaEventQuery(ev);
    if (q != cudaErrorNotReady)
        return cuda_ctx_check(q, what);
    (void)cudaGetLastError(); /* "not ready" is no error: leave none for the next check */
    cuda_ctx_count_wait();
    return cuda_ctx_check(cudaEventSynchronize(ev), what);
}

int cuda_ctx_sync(int index)
{
    gpu_state *g = gpu(index);
    if (!g)
        return -1;
    if (cuda_capturing_any()) /* (a wait breaks a capture on any GPU) */
        return err_set("cannot wait for cuda:%d while a CUDA graph is being captured: "
                       "reading a GPU value (item(), :cpu(), tostring, a metric) or a "
                       "synchronisation cannot be part of a graph; do it outside the "
                       "captured function", index);
    if (cuda_ctx_wait_stream(g->stream, "cuda") != 0)
        return -1;
    int flag = 0;
    if (cuda_ctx_check(cudaMemcpy(&flag, g->error_flag, sizeof flag, cudaMemcpyDeviceToHost),
                       "cuda (reading the error flag)") != 0)
        return -1;
    if (!flag)
        return 0;
    /* on the stream, so that it is ordered with the kernels that set the flag */
    if (cuda_ctx_check(cudaMemsetAsync(g->error_flag, 0, sizeof(int), g->stream),
                       "cudaMemsetAsync (error flag)") != 0)
        return -1;
    return err_set("an index on cuda:%d was out of range (in gather, index_select, "
                   "their backward, or a loss's class targets)", index);
}

int cuda_synchronize(int index)
{
    return cuda_ctx_sync(index);
}

bool cuda_get_tf32(void)
{
    return tf32;
}

void cuda_set_tf32(bool on)
{
    tf32 = on;
}

bool cuda_get_deterministic(void)
{
    return deterministic;
}

void cuda_set_deterministic(bool on)
{
    deterministic = on;
}

const struct backend *cuda_backend_get(int index)
{
    return gpu(index) ? &cuda_backend : NULL;
}

/* --- memory --- */

/* On the emulated GPU under AddressSanitizer (make SAN=1 EMU=1) device memory is
 * host memory: the rest of a block past what was asked is poisoned, so that a
 * kernel reading or writing past its tensor is reported, not only past the block.
 * Not a CUDA graph's blocks: a replay uses them as they were at the capture. */
#if defined(MILES_EMU) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* The fake runtime's queued work runs first: it may use the block as it was
 * (a stream-ordered reuse, right on a GPU). */
void fake_gpu_catch_up(void);
static void guard_tail(void *p, size_t asked, bool on)
{
    if (on) /* (unpoisoning only loosens the checks: queued work may stay queued) */
        fake_gpu_catch_up();
    size_t size = cache_alloc_class(asked);
    if (on)
        ASAN_POISON_MEMORY_REGION((char *)p + asked, size - asked);
    else
        ASAN_UNPOISON_MEMORY_REGION(p, size);
}
#else
static void guard_tail(void *p, size_t asked, bool on)
{
    (void)p;
    (void)asked;
    (void)on;
}
#endif

int cuda_alloc_check(int index)
{
    if (cuda_ctx_capturing(index) || !cuda_capturing_any())
        return 0;
    return err_set("cuda:%d: no memory can be allocated there while a CUDA graph is being "
                   "captured on another GPU (a graph holds one GPU's work): do the other GPU's "
                   "work outside the captured function", index);
}

void *cuda_alloc(int index, size_t nbytes, bool grow)
{
    gpu_state *g = gpu(index);
    if (!g)
        return NULL;
    nbytes = nbytes ? nbytes : 1;
    if (cuda_ctx_capturing(index)) /* (a graph's blocks are reused inside it: unguarded) */
        return cuda_graph_pool_alloc(index, nbytes);
    void *p = grow ? cache_alloc_get(g->cache, nbytes) : cache_alloc_reuse(g->cache, nbytes);
    if (p)
        guard_tail(p, nbytes, true);
    return p;
}

void cuda_release(int index, void *p, size_t nbytes)
{
    if (index < 0 || index >= CUDA_MAX_GPUS || !gpus[index].ready || !p)
        return;
    nbytes = nbytes ? nbytes : 1;
    guard_tail(p, nbytes, false);
    if (!cuda_graph_pool_release(index, p, nbytes))
        cache_alloc_put(gpus[index].cache, p, nbytes);
}

/* The allocators' figures summed over the GPUs in use. */
static cache_alloc_stats all_gpus_stats(void)
{
    cache_alloc_stats sum = {0};
    for (int i = 0; i < CUDA_MAX_GPUS; i++) {
        if (!gpus[i].ready)
            continue;
        cache_alloc_stats s = cache_alloc_get_stats(gpus[i].cache);
        sum.cached_bytes += s.cached_bytes;
        sum.device_allocs += s.device_allocs;
    }
    return sum;
}

int64_t cuda_cached_bytes(void)
{
    return all_gpus_stats().cached_bytes;
}

int64_t cuda_device_allocs(void)
{
    return all_gpus_stats().device_allocs + cuda_graph_device_allocs();
}

void cuda_empty_cache(void)
{
    if (cuda_capturing_any())
        return; /* its waits and cudaFree would break the capture */
    for (int i = 0; i < CUDA_MAX_GPUS; i++) {
        if (!gpus[i].ready)
            continue;
        /* blocks freed by work still queued must not be handed back under it */
        if (use_device(i) != 0)
            continue;
        cuda_ctx_count_wait(); /* (an error here shows at the next check) */
        cudaStreamSynchronize(gpus[i].stream);
        cache_alloc_empty(gpus[i].cache);
    }
}

/* --- copies between devices --- */

/* A pinned staging buffer of at least n bytes, no longer read by a transfer. */
static void *stage_take(gpu_state *g, size_t n, cudaEvent_t *done)
{
    stage_buf *s = &g->stage[g->next_stage];
    g->next_stage = (g->next_stage + 1) % STAGE_SLOTS;
    if (cuda_ctx_wait_event(s->done, "cuda (staging buffer)") != 0)
        return NULL;
    if (s->size < n) {
        /* grown in powers of two from 1 MiB, so a run of growing copies does not
         * pin memory anew each time */
        size_t size = (size_t)1 << 20;
        while (size < n)
            size *= 2;
        cudaFreeHost(s->p);
        s->p = NULL;
        s->size = 0;
        if (cuda_ctx_check(cudaHostAlloc(&s->p, size, cudaHostAllocDefault),
                           "cudaHostAlloc (staging buffer)") != 0)
            return NULL;
        s->size = size;
    }
    *done = s->done;
    return s->p;
}

/* Contiguous host bytes to device memory, through the staging buffers. */
static int host_to_device(gpu_state *g, void *dst, const void *src, size_t n)
{
    int index = (int)(g - gpus);
    if (cuda_capturing_any())
        return err_set("cannot copy host data to cuda:%d while a CUDA graph is being captured "
                       "(each replay would copy a reused staging buffer again): make the "
                       "tensor on the GPU before capturing, and copy new values into it "
                       "between replays", index);
    for (size_t off = 0; off < n; off += STAGE_BYTES) {
        size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
        cudaEvent_t done;
        void *buf = stage_take(g, len, &done);
        if (!buf)
            return -1;
        memcpy(buf, (const char *)src + off, len);
        if (cuda_ctx_check(cudaMemcpyAsync((char *)dst + off, buf, len,
                                           cudaMemcpyHostToDevice, g->stream),
                           "copy to the GPU") != 0 ||
            cuda_ctx_check(cudaEventRecord(done, g->stream), "cudaEventRecord") != 0)
            return -1;
    }
    return 0;
}

/* Contiguous device memory to host bytes; waits for the GPU. */
static int device_to_host(gpu_state *g, int index, void *dst, const void *src, size_t n)
{
    if (cuda_capturing_any())
        return err_set("cannot read cuda:%d while a CUDA graph is being captured: reading a "
                       "GPU value (item(), :cpu(), tostring, a metric) waits for the GPU, "
                       "which a graph cannot hold; do it outside the captured function",
                       index);
    for (size_t off = 0; off < n; off += STAGE_BYTES) {
        size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
        cudaEvent_t done;
        void *buf = stage_take(g, len, &done);
        if (!buf)
            return -1;
        if (cuda_ctx_check(cudaMemcpyAsync(buf, (const char *)src + off, len,
                                           cudaMemcpyDeviceToHost, g->stream),
                           "copy from the GPU") != 0 ||
            cuda_ctx_sync(index) != 0)
            return -1;
        memcpy((char *)dst + off, buf, len);
    }
    return 0;
}

/* Do a and b have the same strides? */
static bool same_strides(const tensor *a, const tensor *b)
{
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] > 1 && a->stride[i] != b->stride[i])
            return false;
    return true;
}

/* Move the bytes of dense s to dense d, laid out alike, on other devices. */
static int move_bytes(tensor *d, const tensor *s)
{
    device dd = tensor_device(d), sd = tensor_device(s);
    size_t n = (size_t)tensor_numel(s) * dtype_size(s->dtype);
    if (n == 0)
        return 0;
    if (sd.type == DEV_CPU) {
        gpu_state *g = gpu(dd.index);
        if (!g)
            return -1;
        if (!cuda_is_pinned(s) || cuda_capturing_any())
            return host_to_device(g, tensor_data(d), tensor_data(s), n);
        /* pinned: the copy engine reads it directly */
        if (cuda_ctx_check(cudaMemcpyAsync(tensor_data(d), tensor_data(s), n,
                                           cudaMemcpyHostToDevice, g->stream),
                           "copy to the GPU") != 0)
            return -1;
        return cuda_pinned_copied(s, dd.index, g->stream);
    }
    if (dd.type == DEV_CPU) {
        gpu_state *g = gpu(sd.index);
        return g ? device_to_host(g, sd.index, tensor_data(d), tensor_data(s), n) : -1;
    }
    /* GPU to GPU: the source's queued work first, then a peer copy queued on the
     * destination's stream (both waits are refused while either GPU is captured) */
    if (cuda_capturing_any())
        return err_set("cannot copy between GPUs while a CUDA graph is being captured (the "
                       "copy waits for the source GPU)");
    if (cuda_ctx_sync(sd.index) != 0)
        return -1;
    gpu_state *g = gpu(dd.index);
    if (!g || cuda_ctx_check(cudaMemcpyPeerAsync(tensor_data(d), dd.index, tensor_data(s),
                                                 sd.index, n, g->stream),
                             "copy between GPUs") != 0)
        return -1;
    /* s may go back to its GPU's cache (and be handed to that GPU's next op) as
     * soon as we return: wait until the copy has read it */
    return cuda_ctx_sync(dd.index);
}

int cuda_copy_across(tensor *dst, const tensor *src)
{
    /* Convert on the source's side into dst's layout (contiguous when dst is not
     * dense), move the bytes, then place them into dst when it is not dense. */
    bool dense = tensor_is_dense(dst);
    tensor *s = NULL, *d = NULL;
    if (dense && src->dtype == dst->dtype && tensor_is_dense(src) && same_strides(src, dst))
        s = tensor_incref((tensor *)src);
    else if (dense)
        s = tensor_empty_like_on(dst, dst->dtype, tensor_device(src));
    else
        s = tensor_empty(dst->dtype, dst->ndim, dst->shape, tensor_device(src));
    if (s && s != src && tensor_copy_into(s, src) != 0) {
        tensor_decref(s);
        return -1;
    }
    if (s)
        d = dense ? tensor_incref(dst) : tensor_empty(dst->dtype, dst->ndim, dst->shape,
                                                      tensor_device(dst));
    int rc = d ? move_bytes(d, s) : -1;
    if (rc == 0 && !dense)
        rc = tensor_copy_into(dst, d);
    tensor_decref(d);
    tensor_decref(s);
    return rc;
}
