/* Pinned (page-locked) host memory for CPU tensors that go to a GPU: the data
 * loader's batches. A copy from pinned memory is read by the GPU's copy engine
 * directly, so the host neither copies the batch into a staging buffer nor waits
 * (the copy reads the tensor after :cuda() returns: do not write to it in place
 * afterwards).
 *
 * The blocks are cached (pinning memory is slow): free ones wait in a cache of
 * size classes. A block may still be read by a queued copy when its tensor is
 * freed: each copy records an event after it (cuda_pinned_copied; an event
 * belongs to the GPU it was recorded for), and a freed block that was copied waits
 * on a pending list until its event has completed; pending blocks are recycled
 * when the next one is asked for. While a CUDA graph is being captured nothing
 * here may query events or pin memory on the capturing thread: tensors made then
 * are ordinary ones. */
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
    int gpu;          /* the GPU of that event, or -1 */
    struct pinned_block *next;
} pinned_block;

static cache_alloc *cache; /* the free blocks (taken and adopted, never asked to pin) */
static pinned_block *pending; /* freed, perhaps still read by a copy */
/* Events of recycled blocks, per GPU, for the next ones: a block is freed by the
 * collector at any time, even inside a CUDA graph capture, where destroying an
 * event is not a call to make. */
typedef struct {
    cudaEvent_t *ev;
    int n, cap;
} spares;
static spares spare[CUDA_MAX_GPUS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *no_alloc(void *ud, size_t n)
{
    (void)ud;
    (void)n;
    return NULL; /* blocks are pinned outside the lock (pin_new) */
}

static void host_free(void *ud, void *p, size_t n)
{
    (void)ud;
    (void)n;
    cudaFreeHost(p);
}

/* A newly pinned block of size bytes on the GPU the process uses (so that a loader
 * thread does not open a context on another), or NULL. */
static void *pin_new(size_t size)
{
    cudaSetDevice(cuda_ctx_preferred_device());
    void *p = NULL;
    /* portable: pinned for every GPU */
    if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

/* With the lock held: b's memory back to the cache, its event to its GPU's
 * spares. */
static void block_free(pinned_block *b)
{
    cache_alloc_adopt(cache, b->p, b->size);
    if (b->read) {
        spares *s = &spare[b->gpu];
        if (s->n == s->cap) {
            int cap = s->cap ? 2 * s->cap : 16;
            cudaEvent_t *grown = realloc(s->ev, (size_t)cap * sizeof *grown);
            if (grown) {
                s->ev = grown;
                s->cap = cap;
            }
        }
        if (s->n < s->cap)
            s->ev[s->n++] = b->read; /* else (no host memory) the event is leaked */
    }
    free(b);
}

/* With the lock held: recycle the pending blocks whose copies are done. */
static void recycle_locked(void)
{
    pinned_block **link = &pending;
    while (*link) {
        pinned_block *b = *link;
        cudaError_t q = cudaEventQuery(b->read);
        if (q == cudaSuccess) {
            *link = b->next;
            block_free(b);
        } else {
            if (q == cudaErrorNotReady) /* no error: leave none for this thread's next check */
                (void)cudaGetLastError();
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

/* A block of at least size bytes: a free one, else newly pinned (the cache given
 * back to the system first when that fails). NULL when out of pinned memory. */
static void *block_get(size_t size)
{
    pthread_mutex_lock(&lock);
    if (!cache)
        cache = cache_alloc_new((cache_alloc_device){no_alloc, host_free, NULL});
    void *p = NULL;
    if (cache) {
        recycle_locked();
        p = cache_alloc_take_cached(cache, size);
    }
    pthread_mutex_unlock(&lock);
    if (p || !cache)
        return p;
    size_t class_size = cache_alloc_class(size);
    if (!(p = pin_new(class_size))) {
        pthread_mutex_lock(&lock);
        cache_alloc_empty(cache);
        pthread_mutex_unlock(&lock);
        p = pin_new(class_size);
    }
    return p;
}

tensor *cuda_pinned_empty(int dt, int ndim, const int64_t *shape)
{
    if (cuda_device_count() == 0 || cuda_capturing_any())
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
    b->size = nbytes ? nbytes : 1;
    b->gpu = -1;
    if (!(b->p = block_get(b->size))) {
        free(b);
        err_set("out of pinned host memory: asked for %zu bytes", nbytes);
        return NULL;
    }
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

/* An event of GPU index (current) for a block: a spare one, or a new one. */
static int event_for(int index, cudaEvent_t *ev)
{
    pthread_mutex_lock(&lock);
    spares *s = &spare[index];
    *ev = s->n > 0 ? s->ev[--s->n] : NULL;
    pthread_mutex_unlock(&lock);
    if (*ev)
        return 0;
    return cuda_ctx_check(cudaEventCreateWithFlags(ev, cudaEventDisableTiming),
                          "cudaEventCreate");
}

int cuda_pinned_copied(const tensor *src, int index, cudaStream_t s)
{
    pinned_block *b = src->st->release_ud;
    int rc = 0;
    if (b->gpu >= 0 && b->gpu != index) {
        /* the event is the other GPU's: that copy done, the event goes back there */
        rc = cuda_ctx_wait_event(b->read, "cuda (pinned memory)");
        pthread_mutex_lock(&lock);
        spares *sp = &spare[b->gpu];
        if (sp->n < sp->cap)
            sp->ev[sp->n++] = b->read; /* else leaked */
        pthread_mutex_unlock(&lock);
        b->read = NULL;
        b->gpu = -1;
    }
    if (rc == 0 && !b->read && (rc = event_for(index, &b->read)) == 0)
        b->gpu = index;
    if (rc == 0)
        rc = cuda_ctx_check(cudaEventRecord(b->read, s), "cudaEventRecord");
    if (rc != 0) { /* the copy is queued: it must be done before the block can go */
        cuda_ctx_count_wait();
        cudaStreamSynchronize(s); /* (rc's message stays the one reported) */
    }
    return rc;
}
