/* CUDA graphs: a function's GPU work captured once from the GPU's stream and
 * replayed with one launch (for small models, whose steps are bound by the cost
 * of launching hundreds of small kernels, not by the kernels themselves).
 *
 * Capture records the kernels, with their arguments (pointers and scalars) as
 * they were; nothing runs. So:
 *  - Memory that captured kernels use must stay theirs for the graph's life. Every
 *    allocation made while capturing comes from the graph's private pool (the
 *    pool's own free blocks, then the general cache's, then cudaMalloc), and a pool
 *    block freed while the graph lives goes back to the pool, never to the general
 *    cache: the graph would write into it at its next replay. When the graph is
 *    freed, its pool's blocks go to the general cache (those still held by tensors,
 *    when those are freed).
 *  - What a graph cannot hold is refused while capturing, with a message: waiting
 *    for the GPU (item(), :cpu(), a metric), copies from host memory (the copy
 *    would read a reused staging buffer at each replay), convolution shapes not
 *    met before (their engines are chosen by timing).
 *  - Random numbers (dropout) drawn while capturing read the generator's state
 *    from a device slot of the graph, {seed, offset}, their kernels holding only
 *    their offsets from the capture's start: each replay claims as many counters
 *    from the generator as the capture did and writes the slot first (a copy
 *    from pageable memory, which CUDA reads at the call), so every replay draws
 *    new numbers, those an eager run from that generator state would draw. The
 *    capture's own claims are given back at its end (as in PyTorch, a capture
 *    moves the generator not at all), unless draws on the CPU, which did run,
 *    claimed counters too. The slot is taken from the general cache before the capture, not from the
 *    graph's pool, whose blocks the graph's own nodes may write before the
 *    draws read it. Reseeding inside the captured function, then drawing, is
 *    refused.
 *  - Scalars that change from step to step (the optimizers' learning rates and
 *    bias corrections) go through "updatable" launches (cuda_ctx_launch): each is
 *    remembered as a slot with its graph node; before a replay, the optimizer's
 *    step runs again in refresh mode, and its launches, the same ones in the same
 *    order, rewrite their nodes' arguments instead of launching.
 *
 * Capture uses cudaStreamCaptureModeThreadLocal: a call from this thread that a
 * graph cannot hold (a synchronisation) fails the capture instead of silently
 * escaping it; the pool's cudaMalloc, which is safe here, is made in relaxed mode. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../cache_alloc.h"
#include "../error.h"
#include "../rng.h"
#include "cuda_backend.h"
#include "cuda_ctx.h"

/* A graph's memory: its free blocks, and how many blocks (free or held) it owns. */
typedef struct graph_pool {
    int gpu;
    cache_alloc *cache; /* NULL once the graph is freed */
    int64_t blocks;
} graph_pool;

/* An updatable launch of a graph: its node and what the launch was (key: the
 * launcher's digest of what must not change, such as its tensors). */
typedef struct {
    cudaGraphNode_t node;
    const void *func;
    unsigned grid, block;
    uint64_t key;
} graph_slot;

struct cuda_graph {
    int gpu;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    graph_pool *pool;
    graph_slot *slots;
    int nslots, cap, cursor;
    bool stale; /* the last refresh failed: its nodes are partly rewritten */
    size_t nodes;
    /* random numbers: the device slot {seed, offset}, whether the capture drew
     * on the GPU, the generator's state when the capture began, the counters the
     * capture claimed (rng_gpu of them by draws on the GPU) */
    uint64_t *rng_state;
    bool rng_drawn;
    uint64_t rng_seed, rng_start, rng_used, rng_gpu;
};

/* A pool block, found by address when it is freed (sorted by p). */
typedef struct {
    void *p;
    graph_pool *pool;
} pool_block;

typedef struct {
    cuda_graph *capture; /* being captured on this GPU (exec NULL until the end) */
    cuda_graph *refresh; /* whose slots the updatable launches rewrite */
    pool_block *reg;
    int64_t nreg, capreg;
    cuda_graph **deferred; /* freed while a capture ran: destroyed at its end */
    int ndeferred, capdeferred;
} graph_gpu;

static graph_gpu ggpus[CUDA_MAX_GPUS];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int64_t pool_device_allocs;

bool cuda_ctx_capturing(int index)
{
    return index >= 0 && index < CUDA_MAX_GPUS && ggpus[index].capture != NULL;
}

bool cuda_capturing_any(void)
{
    for (int i = 0; i < CUDA_MAX_GPUS; i++)
        if (ggpus[i].capture)
            return true;
    return false;
}

int64_t cuda_graph_device_allocs(void)
{
    return pool_device_allocs;
}

/* --- the pool registry --- */

/* The place of p in gpu's registry, or where it would go. With reg_lock held. */
static int64_t reg_find(const graph_gpu *gg, const void *p)
{
    int64_t lo = 0, hi = gg->nreg;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((const char *)gg->reg[mid].p < (const char *)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int reg_add(int index, void *p, graph_pool *pool)
{
    graph_gpu *gg = &ggpus[index];
    pthread_mutex_lock(&reg_lock);
    int rc = 0;
    if (gg->nreg == gg->capreg) {
        int64_t cap = gg->capreg ? 2 * gg->capreg : 256;
        pool_block *grown = realloc(gg->reg, (size_t)cap * sizeof *grown);
        if (grown) {
            gg->reg = grown;
            gg->capreg = cap;
        } else {
            rc = -1;
        }
    }
    if (rc == 0) {
        int64_t at = reg_find(gg, p);
        memmove(gg->reg + at + 1, gg->reg + at, (size_t)(gg->nreg - at) * sizeof *gg->reg);
        gg->reg[at] = (pool_block){p, pool};
        gg->nreg++;
        pool->blocks++;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

/* Forget pool block p; its pool is freed when it was its last block and its
 * graph is gone. With reg_lock held. */
static void reg_remove_locked(graph_gpu *gg, int64_t at)
{
    graph_pool *pool = gg->reg[at].pool;
    memmove(gg->reg + at, gg->reg + at + 1, (size_t)(gg->nreg - at - 1) * sizeof *gg->reg);
    gg->nreg--;
    if (--pool->blocks == 0 && !pool->cache)
        free(pool);
}

/* The pool's cache gives a free block back (only when the graph is freed): it
 * joins the general cache, as a block the graph no longer uses. */
static void pool_give_back(void *ud, void *p, size_t n)
{
    graph_pool *pool = ud;
    graph_gpu *gg = &ggpus[pool->gpu];
    if (pool->cache)
        return; /* the live pool had no host memory to remember p: leaked, as the
                 * graph may still use it (reg_lock is held by the caller here) */
    cache_alloc_adopt(cuda_ctx_cache(pool->gpu), p, n);
    pthread_mutex_lock(&reg_lock);
    int64_t at = reg_find(gg, p);
    if (at < gg->nreg && gg->reg[at].p == p)
        reg_remove_locked(gg, at);
    pthread_mutex_unlock(&reg_lock);
}

static void *pool_no_device(void *ud, size_t n)
{
    (void)ud;
    (void)n;
    return NULL; /* the pool takes blocks itself (cuda_graph_pool_alloc) */
}

static graph_pool *pool_new(int index)
{
    graph_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->gpu = index;
    pool->cache = cache_alloc_new((cache_alloc_device){pool_no_device, pool_give_back, pool});
    if (!pool->cache) {
        free(pool);
        return NULL;
    }
    return pool;
}

/* The graph is gone: its free blocks go to the general cache now, its held ones
 * when they are freed; the pool goes with its last block. */
static void pool_end(graph_pool *pool)
{
    pthread_mutex_lock(&reg_lock);
    cache_alloc *c = pool->cache;
    pool->cache = NULL; /* from now on a freed block goes to the general cache */
    pool->blocks++;     /* keep the pool while its cache empties */
    pthread_mutex_unlock(&reg_lock);
    cache_alloc_free(c);
    pthread_mutex_lock(&reg_lock);
    bool last = --pool->blocks == 0;
    pthread_mutex_unlock(&reg_lock);
    if (last)
        free(pool);
}

void *cuda_graph_pool_alloc(int index, size_t nbytes)
{
    graph_pool *pool = ggpus[index].capture->pool;
    size_t size = cache_alloc_class(nbytes);
    if (size == 0)
        return NULL;
    void *p = cache_alloc_take_cached(pool->cache, size);
    if (p)
        return p; /* already registered as the pool's */
    p = cache_alloc_take_cached(cuda_ctx_cache(index), size);
    if (!p) {
        /* cudaMalloc is not a stream operation: safe during capture, which the
         * thread-local mode would refuse */
        enum cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&mode);
        cudaError_t e = cudaMalloc(&p, size);
        cudaThreadExchangeStreamCaptureMode(&mode);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return NULL; /* alloc.c reports it; the general cache is not emptied
                          * here (cudaFree waits for the device) */
        }
        pool_device_allocs++;
    }
    if (reg_add(index, p, pool) != 0) {
        cache_alloc_adopt(cuda_ctx_cache(index), p, size);
        return NULL;
    }
    return p;
}

bool cuda_graph_pool_release(int index, void *p, size_t nbytes)
{
    if (index < 0 || index >= CUDA_MAX_GPUS)
        return false;
    graph_gpu *gg = &ggpus[index];
    pthread_mutex_lock(&reg_lock);
    if (gg->nreg == 0) {
        pthread_mutex_unlock(&reg_lock);
        return false;
    }
    int64_t at = reg_find(gg, p);
    if (at == gg->nreg || gg->reg[at].p != p) {
        pthread_mutex_unlock(&reg_lock);
        return false;
    }
    graph_pool *pool = gg->reg[at].pool;
    if (pool->cache) {
        cache_alloc_adopt(pool->cache, p, nbytes); /* the graph may still use it */
    } else {
        reg_remove_locked(gg, at); /* its graph is gone: a general block again */
        cache_alloc_adopt(cuda_ctx_cache(index), p, nbytes);
    }
    pthread_mutex_unlock(&reg_lock);
    return true;
}

/* --- capture, replay, refresh --- */

#define RNG_STATE_BYTES (2 * sizeof(uint64_t))

static void graph_destroy(cuda_graph *g)
{
    if (g->exec)
        cudaGraphExecDestroy(g->exec); /* a launch in flight finishes first */
    if (g->graph)
        cudaGraphDestroy(g->graph);
    if (g->rng_state)
        cache_alloc_put(cuda_ctx_cache(g->gpu), g->rng_state, RNG_STATE_BYTES);
    if (g->pool)
        pool_end(g->pool);
    free(g->slots);
    free(g);
}

/* Destroy the graphs freed while GPU index was capturing. */
static void destroy_deferred(graph_gpu *gg)
{
    for (int i = 0; i < gg->ndeferred; i++)
        graph_destroy(gg->deferred[i]);
    gg->ndeferred = 0;
}

int cuda_graph_begin(int index)
{
    cudaStream_t s = cuda_ctx_stream(index);
    if (!s)
        return -1;
    graph_gpu *gg = &ggpus[index];
    if (gg->capture)
        return err_set("cuda:%d is already capturing a CUDA graph (captures do not nest)", index);
    if (gg->refresh)
        return err_set("cannot capture a CUDA graph on cuda:%d while a graph is being replayed",
                       index);
    /* errors of the work queued so far are reported now, not inside the capture */
    if (cuda_ctx_sync(index) != 0)
        return -1;
    cuda_graph *g = calloc(1, sizeof *g);
    if (!g || !(g->pool = pool_new(index))) {
        free(g);
        return err_set("out of host memory (a CUDA graph)");
    }
    g->gpu = index;
    g->rng_seed = rng_get_seed();
    g->rng_start = rng_get_offset();
    if (!(g->rng_state = cache_alloc_get(cuda_ctx_cache(index), RNG_STATE_BYTES))) {
        graph_destroy(g);
        return err_set("out of memory on cuda:%d (a CUDA graph's random state)", index);
    }
    if (cuda_ctx_check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
                       "cudaStreamBeginCapture") != 0) {
        graph_destroy(g);
        return -1;
    }
    gg->capture = g;
    return 0;
}

cuda_graph *cuda_graph_end(int index, bool keep)
{
    graph_gpu *gg = index >= 0 && index < CUDA_MAX_GPUS ? &ggpus[index] : NULL;
    cuda_graph *g = gg ? gg->capture : NULL;
    if (!g) {
        err_set("cuda:%d is not capturing a CUDA graph", index);
        return NULL;
    }
    cudaStream_t s = cuda_ctx_stream(index);
    cudaError_t e = cudaStreamEndCapture(s, &g->graph);
    gg->capture = NULL;
    bool same = rng_get_seed() == g->rng_seed && rng_get_offset() >= g->rng_start;
    g->rng_used = same ? rng_get_offset() - g->rng_start : 0;
    /* As in PyTorch, the capture itself claims no counters (nothing was drawn):
     * the generator goes back to where it was, and each replay claims them. So a
     * captured step replayed n times draws what n eager steps would. Unless draws
     * on the CPU, which did run, claimed some too: then all stay claimed. */
    if (same && g->rng_used > 0 && g->rng_gpu == g->rng_used)
        rng_set_state(g->rng_seed, g->rng_start);
    if (!cuda_capturing_any())
        for (int i = 0; i < CUDA_MAX_GPUS; i++)
            destroy_deferred(&ggpus[i]);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (keep)
            err_set("capturing a CUDA graph on cuda:%d failed: %s (%s); something in the "
                    "captured function waited for the GPU or made a call that a graph "
                    "cannot hold",
                    index, cudaGetErrorString(e), cudaGetErrorName(e));
        keep = false;
    }
    if (keep &&
        (cuda_ctx_check(cudaGraphInstantiate(&g->exec, g->graph, 0), "cudaGraphInstantiate") != 0 ||
         cuda_ctx_check(cudaGraphGetNodes(g->graph, NULL, &g->nodes), "cudaGraphGetNodes") != 0))
        keep = false;
    if (!keep) {
        graph_destroy(g);
        return NULL;
    }
    return g;
}

int cuda_graph_launch(cuda_graph *g)
{
    cudaStream_t s = cuda_ctx_stream(g->gpu);
    if (!s)
        return -1;
    graph_gpu *gg = &ggpus[g->gpu];
    if (gg->capture)
        return err_set("cannot replay a CUDA graph while cuda:%d is capturing one", g->gpu);
    if (gg->refresh)
        return err_set("cannot replay a CUDA graph while one is being refreshed");
    if (g->stale)
        return err_set("this CUDA graph's last refresh failed: refresh it again, or capture "
                       "the graph again");
    if (g->rng_drawn) { /* this replay's random numbers */
        uint64_t st[2] = {rng_get_seed(), rng_reserve(g->rng_used)};
        if (cuda_ctx_check(cudaMemcpyAsync(g->rng_state, st, sizeof st, cudaMemcpyHostToDevice, s),
                           "a CUDA graph's random state") != 0)
            return -1;
    }
    return cuda_ctx_check(cudaGraphLaunch(g->exec, s), "cudaGraphLaunch");
}

const uint64_t *cuda_graph_rng_state(int index, uint64_t *offset, uint64_t n)
{
    cuda_graph *g = cuda_ctx_capturing(index) ? ggpus[index].capture : NULL;
    if (!g) {
        err_set("cuda:%d is not capturing a CUDA graph", index);
        return NULL;
    }
    if (rng_get_seed() != g->rng_seed || *offset < g->rng_start) {
        err_set("random numbers drawn inside a CUDA graph capture after the generator was "
                "reseeded in it: seed it before capturing");
        return NULL;
    }
    g->rng_drawn = true;
    g->rng_gpu += n;
    *offset -= g->rng_start;
    return g->rng_state;
}

int cuda_graph_refresh_begin(cuda_graph *g)
{
    graph_gpu *gg = &ggpus[g->gpu];
    if (gg->capture || gg->refresh)
        return err_set("cannot refresh a CUDA graph while cuda:%d is capturing or refreshing "
                       "one", g->gpu);
    gg->refresh = g;
    g->cursor = 0;
    g->stale = false;
    return 0;
}

int cuda_graph_refresh_end(cuda_graph *g)
{
    graph_gpu *gg = &ggpus[g->gpu];
    if (gg->refresh != g)
        return err_set("this CUDA graph is not being refreshed");
    gg->refresh = NULL;
    if (g->stale)
        return err_set("a launch of the CUDA graph's refresh failed: capture the graph again");
    if (g->cursor != g->nslots) {
        g->stale = true;
        return err_set("the CUDA graph's optimizer steps made %d of the %d updatable launches "
                       "they made when captured (a group frozen or parameters changed since?): "
                       "capture the graph again",
                       g->cursor, g->nslots);
    }
    return 0;
}

void cuda_graph_free(cuda_graph *g)
{
    if (!g)
        return;
    graph_gpu *gg = &ggpus[g->gpu];
    if (gg->refresh == g)
        gg->refresh = NULL;
    if (cuda_capturing_any()) {
        /* destroying a graph is not a call to make inside a capture */
        if (gg->ndeferred == gg->capdeferred) {
            int cap = gg->capdeferred ? 2 * gg->capdeferred : 4;
            cuda_graph **grown = realloc(gg->deferred, (size_t)cap * sizeof *grown);
            if (!grown)
                return; /* leaked rather than destroyed under the capture */
            gg->deferred = grown;
            gg->capdeferred = cap;
        }
        gg->deferred[gg->ndeferred++] = g;
        return;
    }
    graph_destroy(g);
}

size_t cuda_graph_node_count(const cuda_graph *g)
{
    return g->nodes;
}

int cuda_graph_updatable_count(const cuda_graph *g)
{
    return g->nslots;
}

int cuda_graph_device(const cuda_graph *g)
{
    return g->gpu;
}

uint64_t cuda_ctx_key(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Remember the launch just captured on GPU index's stream as a slot of g. */
static int note_slot(cuda_graph *g, cudaStream_t s, const void *func, unsigned grid,
                     unsigned block, uint64_t key, const char *who)
{
    enum cudaStreamCaptureStatus st;
    const cudaGraphNode_t *deps = NULL;
    const cudaGraphEdgeData *edges = NULL;
    size_t n = 0;
    if (cuda_ctx_check(cudaStreamGetCaptureInfo(s, &st, NULL, NULL, &deps, &edges, &n), who) != 0)
        return -1;
    if (st != cudaStreamCaptureStatusActive || n != 1)
        return err_set("%s: could not find its kernel in the CUDA graph being captured", who);
    if (g->nslots == g->cap) {
        int cap = g->cap ? 2 * g->cap : 8;
        graph_slot *grown = realloc(g->slots, (size_t)cap * sizeof *grown);
        if (!grown)
            return err_set("out of host memory (a CUDA graph)");
        g->slots = grown;
        g->cap = cap;
    }
    g->slots[g->nslots++] = (graph_slot){deps[0], func, grid, block, key};
    return 0;
}

/* In refresh mode: rewrite the next slot's node with this launch's arguments. */
static int refresh_launch(cuda_graph *r, const char *who, const void *func, unsigned grid,
                          unsigned block, void **args, uint64_t key)
{
    if (r->cursor >= r->nslots)
        return err_set("%s: more updatable launches than when the CUDA graph was captured (a "
                       "group unfrozen or parameters added since?): capture the graph again",
                       who);
    const graph_slot *sl = &r->slots[r->cursor++];
    if (sl->func != func || sl->grid != grid || sl->block != block || sl->key != key)
        return err_set("%s: launch %d differs from the one the CUDA graph captured (other "
                       "options, or other tensors such as gradients made by a step outside "
                       "the graph?): capture the graph again",
                       who, r->cursor);
    dim3 gd = {grid, 1, 1}, bd = {block, 1, 1};
    struct cudaKernelNodeParams kp = {.func = (void *)func, .gridDim = gd, .blockDim = bd,
                                      .sharedMemBytes = 0, .kernelParams = args, .extra = NULL};
    return cuda_ctx_check(cudaGraphExecKernelNodeSetParams(r->exec, sl->node, &kp), who);
}

int cuda_ctx_launch(int index, const char *who, const void *func, unsigned grid, unsigned block,
                    void **args, uint64_t key)
{
    if (index < 0 || index >= CUDA_MAX_GPUS)
        return err_set("%s: cuda:%d is beyond the %d GPUs miles handles", who, index,
                       CUDA_MAX_GPUS);
    graph_gpu *gg = &ggpus[index];
    cuda_graph *r = gg->refresh;
    dim3 gd = {grid, 1, 1}, bd = {block, 1, 1};
    if (r) {
        int rc = refresh_launch(r, who, func, grid, block, args, key);
        if (rc != 0)
            r->stale = true; /* its nodes are now partly rewritten */
        return rc;
    }
    cudaStream_t s = cuda_ctx_stream(index);
    if (!s || cuda_ctx_check(cudaLaunchKernel(func, gd, bd, args, 0, s), who) != 0)
        return -1;
    return gg->capture ? note_slot(gg->capture, s, func, grid, block, key, who) : 0;
}
