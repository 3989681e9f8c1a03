/* Pinned (page-locked) host memory for CPU tensors that go to a GPU: the data
 * loader's batches. A copy from pinned memory is read by the GPU's copy engine
 * directly, so the host neither copies the batch into a staging buffer nor waits.
 *
 * The blocks come from a caching allocator over cudaHostAlloc (pinning memory is
 * slow). A block may still be read by a queued copy when its tensor is freed: each
 * copy records an event after it (cuda_pinned_copied), and a freed block that was
 * copied waits on a pending list until its event has completed; blocks are
 * recycled from that list when the next one is asked for. */
#include <pthread.h>
#include <stdlib.h>

#include "../alloc.h"
#include "../cache_alloc.h"
#include "../error.h"
#include "../tensor.h"
#include "cuda_backend.h"
#include "cuda_ctx.h"

typedef struct pinned_block {
    void *p;
    size_t size;
    cudaEvent_t read; /* recorded after the last copy that read it (NULL: none yet) */
    int gpu;          /* that copy's GPU, or -1 */
    struct pinned_block *next;
} pinned_block;

static cache_alloc *cache;
static pinned_block *pending; /* freed, perhaps still read by a copy */
/* Events of recycled blocks, for the next ones: a block is freed by the collector
 * at any time, even inside a CUDA graph capture, where destroying an event is not
 * a call to make. */
static cudaEvent_t *spare;
static int nspare, capspare;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *host_alloc(void *ud, size_t n)
{
    (void)ud;
    void *p = NULL;
    /* portable: pinned for every GPU, whichever is current in this thread */
    if (cudaHostAlloc(&p, n, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void host_free(void *ud, void *p, size_t n)
{
    (void)ud;
    (void)n;
    cudaFreeHost(p);
}

/* With the lock held: b's memory back to the cache, its event to the spares. */
static void block_free(pinned_block *b)
{
    cache_alloc_put(cache, b->p, b->size);
    if (b->read && nspare == capspare) {
        int cap = capspare ? 2 * capspare : 16;
        cudaEvent_t *grown = realloc(spare, (size_t)cap * sizeof *grown);
        if (grown) {
            spare = grown;
            capspare = cap;
        }
    }
    if (b->read && nspare < capspare)
        spare[nspare++] = b->read; /* else (no host memory) the event is leaked */
    free(b);
}

/* With the lock held: recycle the pending blocks whose copies are done. */
static void recycle_locked(void)
{
    pinned_block **link = &pending;
    while (*link) {
        pinned_block *b = *link;
        if (cudaEventQuery(b->read) == cudaSuccess) {
            *link = b->next;
            block_free(b);
        } else {
            link = &b->next;
        }
    }
}

static void pinned_release(storage *st)
{
    pinned_block *b = st->release_ud;
    pthread_mutex_lock(&lock);
    if (b->gpu < 0) {
        block_free(b);
    } else {
        b->next = pending;
        pending = b;
    }
    pthread_mutex_unlock(&lock);
}

bool cuda_is_pinned(const tensor *t)
{
    return t && t->st && t->st->release == pinned_release;
}

tensor *cuda_pinned_empty(int dt, int ndim, const int64_t *shape)
{
    if (cuda_device_count() == 0)
        return tensor_empty((dtype_t)dt, ndim, shape, DEVICE_CPU);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > ((int64_t)1 << 50) / shape[i])) {
            err_set("pinned tensor: invalid or too large shape");
            return NULL;
        }
        n *= shape[i];
    }
    size_t nbytes = (size_t)n * dtype_size((dtype_t)dt);
    pinned_block *b = calloc(1, sizeof *b);
    if (!b) {
        err_set("out of host memory (a pinned block)");
        return NULL;
    }
    pthread_mutex_lock(&lock);
    if (!cache)
        cache = cache_alloc_new((cache_alloc_device){host_alloc, host_free, NULL});
    if (cache) {
        recycle_locked();
        b->size = nbytes ? nbytes : 1;
        b->p = cache_alloc_get(cache, b->size);
    }
    pthread_mutex_unlock(&lock);
    if (!b->p) {
        free(b);
        err_set("out of pinned host memory: asked for %zu bytes", nbytes);
        return NULL;
    }
    b->gpu = -1;
    tensor *t = tensor_wrap((dtype_t)dt, ndim, shape, b->p, nbytes, pinned_release, b);
    if (!t) {
        pthread_mutex_lock(&lock);
        block_free(b);
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    alloc_note_pressure(nbytes);
    return t;
}

int cuda_pinned_copied(const tensor *src, int index, cudaStream_t s)
{
    pinned_block *b = src->st->release_ud;
    /* one event per block: a copy to another GPU before must be done first */
    if (b->gpu >= 0 && b->gpu != index &&
        cuda_ctx_check(cudaEventSynchronize(b->read), "cuda (pinned memory)") != 0)
        return -1;
    if (!b->read) {
        pthread_mutex_lock(&lock);
        if (nspare > 0)
            b->read = spare[--nspare];
        pthread_mutex_unlock(&lock);
    }
    if (!b->read && cuda_ctx_check(cudaEventCreateWithFlags(&b->read, cudaEventDisableTiming),
                                   "cudaEventCreate") != 0)
        return -1;
    if (cuda_ctx_check(cudaEventRecord(b->read, s), "cudaEventRecord") != 0)
        return -1;
    b->gpu = index;
    return 0;
}
