/* A fake CUDA runtime on host memory, for checking the host side of the CUDA
 * backend (csrc/cuda/cuda_runtime.c, cuda_graph.c, cuda_pinned.c) on a machine
 * without a GPU: spec/c/cuda_host_check.c links those files with this instead of
 * libcudart. It implements the calls they make, with the rules of the real
 * runtime that matter to them:
 *  - device memory is host memory (so copies really copy); every block is tracked,
 *    and freeing an unknown pointer is an error; a capacity makes cudaMalloc fail;
 *  - work queued on a stream (kernels, copies, sets, graph launches) runs, in
 *    order, only when the host waits for it (a stream or event synchronisation, a
 *    blocking copy, cudaFree, or the check's fake_gpu_catch_up()): as late as a GPU
 *    may run it. Events recorded in between report cudaErrorNotReady; host code
 *    that reads a result without waiting gets a stale one, and host memory written
 *    after a copy from it was queued (pinned memory; pageable memory is read at
 *    the call, as CUDA does) reaches the device changed, as on a GPU;
 *  - stream capture: queued work becomes graph nodes instead of running; a call
 *    that is not allowed during a capture (cudaMalloc, cudaFree, a synchronisation,
 *    cudaEventQuery) fails and invalidates the capture, as the real runtime does,
 *    when made by any thread in global mode, by the capturing thread in
 *    thread-local mode, unless that thread switched itself to relaxed mode;
 *  - graphs: instantiate, launch, destroy, and kernel nodes whose parameters can be
 *    set on an instantiated graph.
 *  - devices: each thread has a current one (cudaSetDevice); streams and events
 *    belong to the device current when they were made; a kernel launched on a
 *    stream of another device than the current one, or an event recorded on a
 *    stream of another device than its own, fails with
 *    cudaErrorInvalidResourceHandle, as CUDA's rules say (copies and waits may
 *    cross devices). In the emulated GPU MILES_FAKE_GPUS=n reports n GPUs.
 * Kernels do not run (their launches are counted), except in the emulated GPU
 * (spec/emu/), which runs them. There (MILES_EMU) device memory is also fenced
 * off from the host: it lies in one reserved range of addresses that the host can
 * read and write only while device work (a kernel, a copy, a set, a graph) runs, so
 * that host code touching a GPU tensor's memory (a crash on a real GPU, correct
 * here otherwise) stops with a message. Streams, events and graphs are for the thread
 * that made them; memory calls may come from any thread (the data loader's make
 * pinned batches). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "fake_cudart.h"

struct CUstream_st {
    int dev;
    bool capturing, invalidated;
    struct CUgraph_st *graph; /* being captured */
};

/* A captured or queued operation: a kernel (run by the emulated GPU through its
 * closure; only counted without one), a copy, a set, or (queued only) a launch of
 * graph ctx. */
enum node_op { NODE_KERNEL, NODE_COPY, NODE_SET, NODE_GRAPH };

struct CUgraphNode_st {
    enum node_op op;
    const void *func;
    unsigned grid;
    void (*run)(void *ctx), (*drop)(void *ctx);
    void *ctx;
    void *dst;
    const void *src;
    size_t n;
    int value;
    void *owned; /* a queued copy's snapshot of pageable host memory (freed after) */
};

struct CUgraph_st {
    struct CUgraphNode_st **nodes; /* each its own allocation: handles stay valid */
    size_t n, cap;
};

struct CUgraphExec_st {
    struct CUgraph_st *graph;
};

struct CUevent_st {
    int dev;
    unsigned long long ticket; /* the work it waits for (0: none) */
    unsigned long long clock;  /* the fake clock when it was recorded */
};

fake_counts fake = {.devices = 1, .capacity = (size_t)4 << 30};

static _Thread_local cudaError_t last_error = cudaSuccess;
static _Thread_local int current_dev;
static _Atomic unsigned long long issued, completed; /* queued work, done work */
static _Atomic unsigned long long charged;           /* fake_charge's units */

void fake_charge(unsigned long long units)
{
    charged += units;
}
static _Thread_local enum cudaStreamCaptureMode thread_mode = cudaStreamCaptureModeGlobal;
static struct CUstream_st *capturing_stream;
static enum cudaStreamCaptureMode capture_mode;
static pthread_t capturing_thread;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    void *p;
    size_t n;
    bool host;
} block;
static block *blocks;
static size_t nblocks, capblocks;

static FILE *trace_out;

static void open_trace(void)
{
    const char *path = getenv("MILES_FAKE_TRACE");
    if (path && *path && !(trace_out = fopen(path, "a")))
        fprintf(stderr, "fake cudart: cannot open MILES_FAKE_TRACE %s\n", path);
    if (trace_out) /* whole lines: the fakes stop with abort(), and children append */
        setvbuf(trace_out, NULL, _IOLBF, 0);
}

/* MILES_FAKE_TRACE=path: a line for each kernel launch, library operation, copy,
 * set and graph launch that the host queues or captures, appended to path:
 * tools/emu-trace.pl names the kernels and sums what a step asks of the GPU. */
bool fake_tracing(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, open_trace);
    return trace_out != NULL;
}

void fake_trace(const char *fmt, ...)
{
    if (!fake_tracing())
        return;
    va_list ap;
    va_start(ap, fmt);
    flockfile(trace_out);
    vfprintf(trace_out, fmt, ap);
    fputc('\n', trace_out);
    funlockfile(trace_out);
    va_end(ap);
}

void fake_trace_kernel(cudaStream_t s, const void *func, dim3 grid, dim3 block)
{
    if (!fake_tracing())
        return;
    Dl_info info = {0};
    uintptr_t at = (uintptr_t)func;
    if (dladdr(func, &info) && info.dli_fbase)
        at -= (uintptr_t)info.dli_fbase;
    fake_trace("kernel %s 0x%zx %llu %u", s && s->capturing ? "captured" : "queued", (size_t)at,
               (unsigned long long)grid.x * grid.y * grid.z, block.x * block.y * block.z);
}

static cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

/* A call that the running capture does not allow from this thread. */
static bool capture_forbids(void)
{
    struct CUstream_st *s = capturing_stream;
    if (!s || thread_mode == cudaStreamCaptureModeRelaxed)
        return false;
    if (capture_mode == cudaStreamCaptureModeThreadLocal &&
        !pthread_equal(pthread_self(), capturing_thread))
        return false;
    s->invalidated = true;
    fake.capture_violations++;
    return true;
}

static void track(void *p, size_t n, bool host)
{
    pthread_mutex_lock(&blocks_lock);
    if (nblocks == capblocks) {
        capblocks = capblocks ? 2 * capblocks : 64;
        blocks = realloc(blocks, capblocks * sizeof *blocks);
    }
    blocks[nblocks++] = (block){p, n, host};
    pthread_mutex_unlock(&blocks_lock);
}

static bool untrack(void *p, bool host, size_t *n)
{
    bool found = false;
    pthread_mutex_lock(&blocks_lock);
    for (size_t i = 0; i < nblocks && !found; i++)
        if (blocks[i].p == p && blocks[i].host == host) {
            *n = blocks[i].n;
            blocks[i] = blocks[--nblocks];
            found = true;
        }
    pthread_mutex_unlock(&blocks_lock);
    return found;
}

/* --- device memory (fenced off from the host in the emulated GPU) --- */

#ifdef MILES_EMU
#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_BYTES ((size_t)1 << 38) /* addresses reserved (256 GiB) */
#define PAGE 4096u
static char *arena;      /* the range, mapped PROT_NONE but while device work runs */
static size_t arena_top; /* bytes handed out: blocks are carved in order, a page each
                          * at least, never reused (the caching allocator above
                          * reuses them; a freed one gives its pages back) */
static int open_depth;

#ifndef __SANITIZE_ADDRESS__ /* (AddressSanitizer reports such a fault itself) */
/* A fault in the range outside device work: host code touched device memory. */
static void on_fault(int sig, siginfo_t *info, void *uctx)
{
    (void)uctx;
    char *a = info->si_addr;
    if (a >= arena && a < arena + ARENA_BYTES) {
        static const char msg[] = "emu: host code touched device memory (on a real GPU "
                                  "this crashes): a CPU path was given a GPU tensor?\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            abort();
        void *frames[64];
        backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
        abort();
    }
    signal(sig, SIG_DFL); /* not ours: the fault again, handled as usual */
}
#endif

static void arena_init(void)
{
    arena = mmap(NULL, ARENA_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
    if (arena == MAP_FAILED) {
        perror("emu: reserving device memory");
        abort();
    }
#ifndef __SANITIZE_ADDRESS__
    struct sigaction sa = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO};
    sigaction(SIGSEGV, &sa, NULL);
#endif
}

static void *device_take(size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, arena_init);
    size_t len = (n + PAGE - 1) / PAGE * PAGE;
    void *p = NULL;
    pthread_mutex_lock(&blocks_lock);
    if (len <= ARENA_BYTES - arena_top) {
        p = arena + arena_top;
        arena_top += len ? len : PAGE;
    }
    pthread_mutex_unlock(&blocks_lock);
    return p;
}

static void device_give(void *p, size_t n)
{
    madvise(p, (n + PAGE - 1) / PAGE * PAGE, MADV_DONTNEED);
}

/* Open (or close) device memory to the host, around device work. */
static void device_open(bool on)
{
    if (on ? open_depth++ > 0 : --open_depth > 0)
        return;
    if (arena_top && mprotect(arena, arena_top, on ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
        perror("emu: mprotect of device memory");
        abort();
    }
}
#else
static void *device_take(size_t n)
{
    return malloc(n ? n : 1);
}

static void device_give(void *p, size_t n)
{
    (void)n;
    free(p);
}

static void device_open(bool on)
{
    (void)on;
}
#endif

/* Is s a stream of the current device (the default stream is)? */
static bool on_current(cudaStream_t s)
{
    return !s || s->dev == current_dev;
}

/* --- the queue --- */

typedef struct pending {
    struct pending *next;
    unsigned long long ticket;
    struct CUgraphNode_st work;
} pending;
static pending *queue_head, **queue_tail = &queue_head;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t gpu_lock = PTHREAD_MUTEX_INITIALIZER; /* one thread runs work */

/* MILES_FAKE_SKIP=1: kernels and library operations are not run (copies and
 * sets are), so that a run's wall time is its host side's, for profiling that
 * (the results are garbage). */
static bool skip_work(void)
{
    static int skip = -1;
    if (skip < 0) {
        const char *v = getenv("MILES_FAKE_SKIP");
        skip = v && strcmp(v, "1") == 0;
    }
    return skip;
}

static void run_node(const struct CUgraphNode_st *n)
{
    switch (n->op) {
    case NODE_KERNEL:
        if (n->run && !skip_work())
            n->run(n->ctx);
        break;
    case NODE_COPY: memmove(n->dst, n->src, n->n); break;
    case NODE_SET: memset(n->dst, n->value, n->n); break;
    case NODE_GRAPH: {
        const struct CUgraph_st *g = n->ctx;
        for (size_t i = 0; i < g->n; i++)
            run_node(g->nodes[i]);
        break;
    }
    }
}

/* Queue work (a copy of w) behind everything queued before. */
static cudaError_t enqueue(struct CUgraphNode_st w)
{
    pending *p = malloc(sizeof *p);
    p->next = NULL;
    p->work = w;
    pthread_mutex_lock(&queue_lock);
    p->ticket = ++issued;
    *queue_tail = p;
    queue_tail = &p->next;
    pthread_mutex_unlock(&queue_lock);
    return cudaSuccess;
}

/* Run the queued work up to ticket upto, in order; the caller holds gpu_lock. */
static void run_queue(unsigned long long upto)
{
    bool opened = false; /* device memory opened once for the whole run */
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        pending *p = queue_head;
        if (p && p->ticket <= upto) {
            queue_head = p->next;
            if (!queue_head)
                queue_tail = &queue_head;
        } else {
            p = NULL;
        }
        pthread_mutex_unlock(&queue_lock);
        if (!p)
            break;
        if (!opened)
            device_open(true);
        opened = true;
        run_node(&p->work);
        if (p->work.op == NODE_KERNEL && p->work.drop)
            p->work.drop(p->work.ctx);
        free(p->work.owned);
        completed = p->ticket;
        free(p);
    }
    if (opened)
        device_open(false);
}

/* The host waits for the work up to ticket upto. */
static void wait_for(unsigned long long upto)
{
    pthread_mutex_lock(&gpu_lock);
    run_queue(upto);
    pthread_mutex_unlock(&gpu_lock);
}

void fake_gpu_catch_up(void)
{
    wait_for(issued);
}

/* A copy that completes before its call returns (after all queued work). */
static void copy_now(void *dst, const void *src, size_t n)
{
    pthread_mutex_lock(&gpu_lock);
    run_queue(issued);
    device_open(true);
    memmove(dst, src, n);
    device_open(false);
    pthread_mutex_unlock(&gpu_lock);
}

/* Is p in memory from cudaHostAlloc? */
static bool is_pinned(const void *p)
{
    bool found = false;
    pthread_mutex_lock(&blocks_lock);
    for (size_t i = 0; i < nblocks && !found; i++)
        found = blocks[i].host && (const char *)p >= (const char *)blocks[i].p &&
                (const char *)p < (const char *)blocks[i].p + blocks[i].n;
    pthread_mutex_unlock(&blocks_lock);
    return found;
}

size_t fake_device_bytes(void)
{
    size_t sum = 0;
    pthread_mutex_lock(&blocks_lock);
    for (size_t i = 0; i < nblocks; i++)
        if (!blocks[i].host)
            sum += blocks[i].n;
    pthread_mutex_unlock(&blocks_lock);
    return sum;
}

/* Append node to s's capture. */
static cudaError_t capture(cudaStream_t s, struct CUgraphNode_st node)
{
    struct CUgraph_st *g = s->graph;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->nodes = realloc(g->nodes, g->cap * sizeof *g->nodes);
    }
    struct CUgraphNode_st *n = malloc(sizeof *n);
    *n = node;
    g->nodes[g->n++] = n;
    return cudaSuccess;
}

static void drop_node(struct CUgraphNode_st *n)
{
    if (n->drop)
        n->drop(n->ctx);
    free(n);
}

static void free_graph(struct CUgraph_st *g)
{
    for (size_t i = 0; i < g->n; i++)
        drop_node(g->nodes[i]);
    free(g->nodes);
    free(g);
}

void fake_device_work(cudaStream_t s, const void *func, unsigned grid, void (*run)(void *),
                      void *ctx, void (*drop)(void *))
{
    if (!on_current(s)) { /* a launch on another device's stream */
        fail(cudaErrorInvalidResourceHandle);
        drop(ctx);
        return;
    }
    if (s && s->capturing) {
        capture(s, (struct CUgraphNode_st){.op = NODE_KERNEL, .func = func, .grid = grid,
                                           .run = run, .ctx = ctx, .drop = drop});
        return;
    }
    enqueue((struct CUgraphNode_st){.op = NODE_KERNEL, .func = func, .grid = grid, .run = run,
                                    .ctx = ctx, .drop = drop});
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorName(cudaError_t error)
{
    return error == cudaSuccess ? "cudaSuccess" : "cudaErrorFake";
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "fake error";
    }
}

#ifdef MILES_EMU
static void read_gpu_count(void)
{
    const char *v = getenv("MILES_FAKE_GPUS");
    if (v && atoi(v) > 0)
        fake.devices = atoi(v);
}
#endif

cudaError_t cudaGetDeviceCount(int *count)
{
#ifdef MILES_EMU
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_gpu_count);
#endif
    *count = fake.devices;
    return fake.devices ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= fake.devices)
        return fail(cudaErrorInvalidDevice);
    current_dev = device;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    (void)flags;
    *pStream = calloc(1, sizeof **pStream);
    (*pStream)->dev = current_dev;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    if (fake_device_bytes() + size > fake.capacity)
        return fail(cudaErrorMemoryAllocation);
    if (!(*devPtr = device_take(size)))
        return fail(cudaErrorMemoryAllocation);
    track(*devPtr, size, false);
    fake.mallocs++;
    return cudaSuccess;
}

cudaError_t cudaFree(void *devPtr)
{
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    size_t n;
    if (!devPtr)
        return cudaSuccess;
    fake_gpu_catch_up(); /* cudaFree waits for the device */
    if (!untrack(devPtr, false, &n)) {
        fake.bad_frees++;
        return fail(cudaErrorInvalidValue);
    }
    device_give(devPtr, n);
    fake.frees++;
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags)
{
    (void)flags;
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    *pHost = malloc(size ? size : 1);
    track(*pHost, size, true);
    fake.host_allocs++;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *ptr)
{
    size_t n;
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    if (!ptr)
        return cudaSuccess;
    fake_gpu_catch_up(); /* so does cudaFreeHost */
    if (!untrack(ptr, true, &n)) {
        fake.bad_frees++;
        return fail(cudaErrorInvalidValue);
    }
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    (void)kind;
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    fake_trace("copy blocking %zu", count);
    copy_now(dst, src, count); /* after everything before it */
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    static const char *const kinds[] = {"h2h", "h2d", "d2h", "d2d", "default"};
    fake_trace("copy %s %zu", kind >= 0 && kind <= 4 ? kinds[kind] : "?", count);
    if (stream && stream->capturing)
        return capture(stream, (struct CUgraphNode_st){.op = NODE_COPY, .dst = dst, .src = src,
                                                       .n = count});
    if (kind == cudaMemcpyDeviceToHost && !is_pinned(dst)) {
        copy_now(dst, src, count); /* to pageable memory: done when the call returns */
        return cudaSuccess;
    }
    void *owned = NULL;
    if (kind == cudaMemcpyHostToDevice && !is_pinned(src)) {
        owned = malloc(count ? count : 1); /* from pageable memory: read at the call */
        memcpy(owned, src, count);
        src = owned;
    }
    if (kind == cudaMemcpyHostToDevice)
        fake.h2d_copies++;
    return enqueue((struct CUgraphNode_st){.op = NODE_COPY, .dst = dst, .src = src, .n = count,
                                           .owned = owned});
}

cudaError_t cudaMemcpyPeerAsync(void *dst, int dstDevice, const void *src, int srcDevice,
                                size_t count, cudaStream_t stream)
{
    (void)dstDevice;
    (void)srcDevice;
    return cudaMemcpyAsync(dst, src, count, cudaMemcpyDeviceToDevice, stream);
}

cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    fake_trace("set %zu", count);
    if (stream && stream->capturing)
        return capture(stream, (struct CUgraphNode_st){.op = NODE_SET, .dst = devPtr,
                                                       .value = value, .n = count});
    return enqueue((struct CUgraphNode_st){.op = NODE_SET, .dst = devPtr, .value = value,
                                           .n = count});
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (stream && stream->capturing) {
        stream->invalidated = true;
        fake.capture_violations++;
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    fake_trace("stream sync");
    fake_gpu_catch_up();
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    (void)flags;
    *event = calloc(1, sizeof **event);
    (*event)->dev = current_dev;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    return cudaEventCreateWithFlags(event, 0);
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    free(event);
    return cudaSuccess;
}

/* 0.01 ms per unit of the fake clock between the events (queued operations):
 * stretches of equal work take equal times, and the first of equals wins
 * (cuDNN's autotuning keeps the first fastest). */
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    unsigned long long units = end->clock > start->clock ? end->clock - start->clock : 0;
    *ms = 0.01f * (float)units;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (event->dev != (stream ? stream->dev : current_dev))
        return fail(cudaErrorInvalidResourceHandle);
    if (stream && stream->capturing) {
        stream->invalidated = true; /* no event nodes in this fake */
        fake.capture_violations++;
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    event->ticket = issued;
    event->clock = issued + charged;
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    return event->ticket <= completed ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    if (event->ticket > completed) {
        fake.host_waits++;
        fake_trace("host wait");
        wait_for(event->ticket);
    }
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode)
{
    enum cudaStreamCaptureMode old = thread_mode;
    thread_mode = *mode;
    *mode = old;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    if (stream->capturing || capturing_stream)
        return fail(cudaErrorIllegalState);
    stream->capturing = true;
    stream->invalidated = false;
    stream->graph = calloc(1, sizeof *stream->graph);
    capturing_stream = stream;
    capture_mode = thread_mode = mode;
    capturing_thread = pthread_self();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph)
{
    if (!stream->capturing)
        return fail(cudaErrorIllegalState);
    stream->capturing = false;
    capturing_stream = NULL;
    thread_mode = cudaStreamCaptureModeGlobal;
    if (stream->invalidated) {
        free_graph(stream->graph);
        *pGraph = NULL;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *pGraph = stream->graph;
    fake.graphs++;
    return cudaSuccess;
}

cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream,
                                     enum cudaStreamCaptureStatus *captureStatus_out,
                                     unsigned long long *id_out, cudaGraph_t *graph_out,
                                     const cudaGraphNode_t **dependencies_out,
                                     const cudaGraphEdgeData **edgeData_out,
                                     size_t *numDependencies_out)
{
    static cudaGraphNode_t dep;
    (void)id_out;
    (void)edgeData_out;
    *captureStatus_out = !stream->capturing ? cudaStreamCaptureStatusNone
                         : stream->invalidated ? cudaStreamCaptureStatusInvalidated
                                               : cudaStreamCaptureStatusActive;
    if (graph_out)
        *graph_out = stream->capturing ? stream->graph : NULL;
    size_t n = stream->capturing && stream->graph->n > 0 ? 1 : 0;
    dep = n ? stream->graph->nodes[stream->graph->n - 1] : NULL;
    if (dependencies_out)
        *dependencies_out = &dep;
    if (numDependencies_out)
        *numDependencies_out = n;
    return cudaSuccess;
}

/* The emulated GPU (spec/emu/emu.cpp) runs the kernels it knows, now or as a
 * captured closure (bound to a copy of the arguments); without it (the host
 * check) kernels only count. */
int emu_bind_kernel(const void *func, dim3 grid, dim3 block, void **args,
                    void (**run)(void *), void **ctx, void (**drop)(void *))
    __attribute__((weak));

/* A kernel node of func over args (bound when the emulated GPU is there). */
static struct CUgraphNode_st kernel_node(const void *func, dim3 grid, dim3 block, void **args)
{
    struct CUgraphNode_st n = {.op = NODE_KERNEL, .func = func, .grid = grid.x};
    if (emu_bind_kernel)
        emu_bind_kernel(func, grid, block, args, &n.run, &n.ctx, &n.drop);
    return n;
}

cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args,
                             size_t sharedMem, cudaStream_t stream)
{
    (void)sharedMem;
    if (!on_current(stream))
        return fail(cudaErrorInvalidResourceHandle);
    fake_trace_kernel(stream, func, gridDim, blockDim);
    if (stream && stream->capturing)
        return capture(stream, kernel_node(func, gridDim, blockDim, args));
    fake.kernels++;
    if (emu_bind_kernel) {
        struct CUgraphNode_st n = kernel_node(func, gridDim, blockDim, args);
        if (!n.run)
            return fail(cudaErrorInvalidDeviceFunction);
        fake_device_work(stream, func, gridDim.x, n.run, n.ctx, n.drop);
        return cudaSuccess;
    }
    return enqueue((struct CUgraphNode_st){.op = NODE_KERNEL, .func = func}); /* counted only */
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags)
{
    (void)flags;
    *pGraphExec = calloc(1, sizeof **pGraphExec);
    (*pGraphExec)->graph = graph;
    fake.execs++;
    return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *numNodes)
{
    (void)nodes;
    *numNodes = graph->n;
    return cudaSuccess;
}

cudaError_t cudaGraphExecKernelNodeSetParams(cudaGraphExec_t hGraphExec, cudaGraphNode_t node,
                                             const struct cudaKernelNodeParams *pNodeParams)
{
    struct CUgraph_st *g = hGraphExec->graph;
    bool found = false;
    for (size_t i = 0; i < g->n && !found; i++)
        found = g->nodes[i] == node;
    if (!found || node->op != NODE_KERNEL || node->func != pNodeParams->func ||
        node->grid != pNodeParams->gridDim.x) {
        fake.bad_node_updates++;
        return fail(cudaErrorInvalidValue);
    }
    /* (the executable graph shares the graph's nodes here: one is ever launched;
     * launches still queued run with the old parameters, as on a GPU) */
    fake_gpu_catch_up();
    struct CUgraphNode_st fresh = kernel_node(pNodeParams->func, pNodeParams->gridDim,
                                              pNodeParams->blockDim, pNodeParams->kernelParams);
    if (node->drop)
        node->drop(node->ctx);
    *node = fresh;
    fake.node_updates++;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream)
{
    if (stream->capturing)
        return fail(cudaErrorStreamCaptureUnsupported);
    fake.graph_launches++;
    fake_trace("graph launch %zu nodes", graphExec->graph->n);
    return enqueue((struct CUgraphNode_st){.op = NODE_GRAPH, .ctx = graphExec->graph});
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec)
{
    if (capture_forbids())
        return fail(cudaErrorStreamCaptureUnsupported);
    fake_gpu_catch_up(); /* (a GPU frees it once its queued launches are done) */
    free(graphExec);
    fake.execs--;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    fake_gpu_catch_up();
    free_graph(graph);
    fake.graphs--;
    return cudaSuccess;
}

