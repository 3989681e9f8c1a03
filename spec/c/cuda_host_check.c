/* The host side of the CUDA backend run against a fake CUDA runtime
 * (fake_cudart.c): the caching allocator in front of cudaMalloc, copies through
 * the staging ring, pinned memory and its recycling, the device error flag, the
 * out-of-memory path, and CUDA graph capture (private pool, refusals, updatable
 * launches, deferred frees). What the GPU computes is not checked here (no kernel
 * runs): spec/cuda_spec.lua and spec/cuda_graph_spec.lua do that on a GPU.
 *
 * Prints "ok - <check>" or "not ok - <check>: <why>" per check and exits 1 when
 * one failed; spec/cuda_host_spec.lua runs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/alloc.h"
#include "../../csrc/cuda/cuda_backend.h"
#include "../../csrc/cuda/cuda_ctx.h"
#include "../../csrc/dispatch.h"
#include "../../csrc/error.h"
#include "../../csrc/tensor.h"
#include "fake_cudart.h"

#define GPU0 ((device){DEV_CUDA, 0})

/* The backend's kernel table (csrc/cuda/backend.c, not linked here): empty, as
 * the check runs no op on the fake GPU. */
const backend cuda_backend = {0};

static int failed;
static char why[512];

/* Record the check's result: failed when an EXPECT set `why`. */
static void report(const char *name)
{
    if (why[0]) {
        failed++;
        printf("not ok - %s: %s\n", name, why);
    } else {
        printf("ok - %s\n", name);
    }
    why[0] = 0;
}

#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond) && !why[0])                                                                \
            snprintf(why, sizeof why, __VA_ARGS__);                                            \
    } while (0)

/* Does the core's error message hold s? */
static int error_has(const char *s)
{
    return strstr(err_msg(), s) != NULL;
}

static tensor *cpu_range(int64_t n)
{
    tensor *t = tensor_empty(DT_F32, 1, &n, DEVICE_CPU);
    float *p = tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(i % 1000) - 3.5f;
    return t;
}

static int same_floats(const tensor *a, const tensor *b, int64_t n)
{
    return memcmp(tensor_data(a), tensor_data(b), (size_t)n * sizeof(float)) == 0;
}

static void check_allocator(void)
{
    int64_t n = 1000;
    tensor *a = tensor_empty(DT_F32, 1, &n, GPU0);
    EXPECT(a != NULL, "no tensor: %s", err_msg());
    long before = fake.mallocs;
    void *pa = tensor_data(a);
    tensor_decref(a);
    tensor *b = tensor_empty(DT_F32, 1, &n, GPU0);
    EXPECT(b && tensor_data(b) == pa, "a freed block of the same size was not handed out again");
    EXPECT(fake.mallocs == before, "cudaMalloc was called again (%ld)", fake.mallocs - before);
    tensor_decref(b);
    report("freed GPU blocks are reused without cudaMalloc");
}

static void check_round_trip(int64_t n, const char *name)
{
    tensor *h = cpu_range(n);
    tensor *d = tensor_empty(DT_F32, 1, &n, GPU0);
    tensor *back = tensor_empty(DT_F32, 1, &n, DEVICE_CPU);
    EXPECT(d && tensor_copy_into(d, h) == 0, "to the GPU: %s", err_msg());
    EXPECT(tensor_copy_into(back, d) == 0, "back: %s", err_msg());
    EXPECT(same_floats(h, back, n), "the values changed on the way");
    tensor_decref(h);
    tensor_decref(d);
    tensor_decref(back);
    report(name);
}

static void check_staging_ring(void)
{
    int64_t n = 64;
    tensor *h = cpu_range(n);
    tensor *d = tensor_empty(DT_F32, 1, &n, GPU0);
    tensor *back = tensor_empty(DT_F32, 1, &n, DEVICE_CPU);
    tensor_copy_into(back, d); /* waits: the queue is empty */
    long waits = fake.host_waits;
    for (int i = 0; i < 8; i++)
        tensor_copy_into(d, h);
    EXPECT(fake.host_waits == waits, "the host waited %ld times for 8 copies",
           fake.host_waits - waits);
    tensor_copy_into(d, h); /* the ninth reuses the first buffer: waits for its copy */
    EXPECT(fake.host_waits == waits + 1, "the ninth copy waited %ld times (1 expected)",
           fake.host_waits - waits);
    tensor_decref(h);
    tensor_decref(d);
    tensor_decref(back);
    report("host-to-device copies queue 8 deep before the host waits");
}

static void check_pinned(void)
{
    int64_t n = 4096;
    tensor *p = cuda_pinned_empty(DT_F32, 1, &n);
    EXPECT(p && cuda_is_pinned(p), "not pinned: %s", p ? "" : err_msg());
    float *v = tensor_data(p);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)i;
    tensor *d = tensor_empty(DT_F32, 1, &n, GPU0);
    long copies = fake.h2d_copies, waits = fake.host_waits;
    EXPECT(tensor_copy_into(d, p) == 0, "copy: %s", err_msg());
    EXPECT(fake.h2d_copies == copies + 1, "%ld copies for one pinned tensor",
           fake.h2d_copies - copies);
    EXPECT(fake.host_waits == waits, "the copy from pinned memory waited");
    void *block = v;
    tensor_decref(p); /* its copy is not done: the block must wait */
    tensor *q = cuda_pinned_empty(DT_F32, 1, &n);
    EXPECT(tensor_data(q) != block, "a block still read by a copy was handed out again");
    tensor_decref(q); /* never copied: back at once */
    fake_gpu_catch_up(); /* the copy runs now, reading the block */
    const float *got = tensor_data(d);
    int64_t bad = 0;
    while (bad < n && got[bad] == (float)bad)
        bad++;
    EXPECT(bad == n, "the GPU got other values (from %lld on)", (long long)bad);
    tensor *r = cuda_pinned_empty(DT_F32, 1, &n);
    tensor *s = cuda_pinned_empty(DT_F32, 1, &n);
    EXPECT(tensor_data(r) == block || tensor_data(s) == block,
           "the block was not recycled once its copy was done");
    tensor_decref(r);
    tensor_decref(s);
    tensor_decref(d);
    report("pinned tensors copy without staging and are recycled after their copies");
}

static void check_error_flag(void)
{
    int *flag = cuda_ctx_error_flag(0);
    *flag = CUDA_FLAG_INDEX_RANGE; /* as a kernel would */
    EXPECT(cuda_synchronize(0) != 0 && error_has("out of range"),
           "the flag was not reported: %s", err_msg());
    EXPECT(cuda_synchronize(0) == 0, "the flag was not cleared: %s", err_msg());
    report("an index error flagged by a kernel is reported once at synchronisation");
}

static void check_oom(void)
{
    int64_t n = (int64_t)1 << 40;
    long frees = fake.frees;
    tensor *t = tensor_empty(DT_F32, 1, &n, GPU0);
    EXPECT(!t, "4 TiB were handed out");
    EXPECT(error_has("out of memory on cuda:0: asked for 4.0 TiB"), "message: %s", err_msg());
    EXPECT(fake.frees > frees, "the cache was not given back before failing");
    int64_t m = 10;
    tensor *ok = tensor_empty(DT_F32, 1, &m, GPU0);
    EXPECT(ok != NULL, "the GPU is not usable afterwards: %s", err_msg());
    tensor_decref(ok);
    report("asking for more than the GPU has: cache given back, then a clear error");
}

static void fake_kernel(void)
{
}

static void other_kernel(void)
{
}

static int launch(const void *func, uint64_t key)
{
    int arg = 0;
    void *args[] = {&arg};
    return cuda_ctx_launch(0, "check", func, 4, 256, args, key);
}

static void check_graph(void)
{
    int64_t n = 256;
    fake_gpu_catch_up();
    EXPECT(cuda_graph_begin(0) == 0, "begin: %s", err_msg());
    long mallocs = fake.mallocs;
    tensor *a = tensor_empty(DT_F32, 1, &n, GPU0); /* a fresh size: cudaMalloc, relaxed */
    EXPECT(a != NULL, "allocating while capturing: %s", err_msg());
    EXPECT(fake.mallocs == mallocs + 1, "%ld cudaMalloc calls", fake.mallocs - mallocs);
    void *pa = tensor_data(a);
    tensor_decref(a);
    tensor *b = tensor_empty(DT_F32, 1, &n, GPU0);
    EXPECT(tensor_data(b) == pa, "the pool did not reuse its freed block within the capture");
    EXPECT(launch((const void *)fake_kernel, 7) == 0, "launch: %s", err_msg());
    EXPECT(cuda_synchronize(0) != 0 && error_has("cannot wait for cuda:0 while a CUDA graph"),
           "a synchronisation was not refused: %s", err_msg());
    tensor *h = cpu_range(n);
    EXPECT(tensor_copy_into(b, h) != 0 && error_has("cannot copy host data to cuda:0"),
           "a host copy was not refused: %s", err_msg());
    tensor *back = tensor_empty(DT_F32, 1, &n, DEVICE_CPU);
    EXPECT(tensor_copy_into(back, b) != 0 && error_has("cannot read cuda:0"),
           "a read was not refused: %s", err_msg());
    cuda_empty_cache(); /* skipped while capturing */
    cuda_graph *g = cuda_graph_end(0, true);
    EXPECT(g != NULL, "end: %s", err_msg());
    EXPECT(fake.capture_violations == 0, "%ld calls broke the capture", fake.capture_violations);
    report("capturing: pool memory, refused synchronisations and host copies");
    if (!g)
        return;

    EXPECT(cuda_graph_updatable_count(g) == 1, "%d updatable launches",
           cuda_graph_updatable_count(g));
    tensor_decref(b); /* a pool block freed while its graph lives stays the graph's */
    tensor *c = tensor_empty(DT_F32, 1, &n, GPU0);
    EXPECT(tensor_data(c) != pa, "a block the graph uses was handed out outside it");
    report("a graph's blocks stay its own while it lives");

    long updates = fake.node_updates, kernels = fake.kernels;
    EXPECT(cuda_graph_refresh_begin(g) == 0, "refresh: %s", err_msg());
    EXPECT(launch((const void *)fake_kernel, 7) == 0, "refreshed launch: %s", err_msg());
    EXPECT(cuda_graph_refresh_end(g) == 0, "refresh end: %s", err_msg());
    EXPECT(fake.node_updates == updates + 1 && fake.kernels == kernels,
           "the launch ran or did not update its node");
    EXPECT(cuda_graph_launch(g) == 0 && fake.graph_launches == 1, "launch: %s", err_msg());
    EXPECT(fake.bad_node_updates == 0, "a node update did not fit its node");
    report("a refresh rewrites the captured launch's node instead of launching");

    cuda_graph_refresh_begin(g);
    EXPECT(launch((const void *)fake_kernel, 8) != 0 && error_has("capture the graph again"),
           "other tensors were accepted: %s", err_msg());
    EXPECT(cuda_graph_refresh_end(g) != 0 && error_has("refresh failed"), "end: %s", err_msg());
    EXPECT(cuda_graph_launch(g) != 0 && error_has("last refresh failed"),
           "a graph whose refresh failed was launched");
    cuda_graph_refresh_begin(g);
    EXPECT(launch((const void *)other_kernel, 7) != 0, "another kernel was accepted");
    cuda_graph_refresh_end(g);
    cuda_graph_refresh_begin(g);
    EXPECT(cuda_graph_refresh_end(g) != 0 && error_has("made 0 of the 1"),
           "a missing launch was not noticed: %s", err_msg());
    cuda_graph_refresh_begin(g);
    launch((const void *)fake_kernel, 7);
    EXPECT(cuda_graph_refresh_end(g) == 0 && cuda_graph_launch(g) == 0,
           "a good refresh after failed ones: %s", err_msg());
    report("a refresh refuses launches that differ from the captured ones");

    /* freed while another capture runs: destroyed at its end */
    EXPECT(cuda_graph_begin(0) == 0, "second begin: %s", err_msg());
    long execs = fake.execs;
    cuda_graph_free(g);
    EXPECT(fake.execs == execs, "a graph was destroyed inside a capture");
    EXPECT(cuda_graph_end(0, false) == NULL, "a discarded capture gave a graph");
    EXPECT(fake.execs == execs - 1, "the deferred graph was not destroyed");
    report("a graph freed during another capture goes at its end");

    /* the pool's blocks join the general cache once the graph is gone */
    long m2 = fake.mallocs;
    tensor *d = tensor_empty(DT_F32, 1, &n, GPU0);
    EXPECT(tensor_data(d) == pa, "the freed graph's block was not reused");
    EXPECT(fake.mallocs == m2, "cudaMalloc was called");
    tensor_decref(c);
    tensor_decref(d);
    tensor_decref(h);
    tensor_decref(back);
    report("a freed graph's memory goes back to the general cache");

    /* a capture broken by a call the fake refuses */
    EXPECT(cuda_graph_begin(0) == 0, "third begin: %s", err_msg());
    cudaStreamSynchronize(cuda_ctx_stream(0)); /* as a library might */
    EXPECT(cuda_graph_end(0, true) == NULL && error_has("capturing a CUDA graph on cuda:0 failed"),
           "a broken capture gave a graph: %s", err_msg());
    EXPECT(cuda_graph_begin(0) == 0, "a capture after a failed one: %s", err_msg());
    cuda_graph_end(0, false);
    report("a broken capture is reported and the next one works");
}

int main(void)
{
    fake.devices = 1;
    fake.capacity = (size_t)1 << 30;
    if (cuda_device_count() != 1) {
        printf("not ok - the fake GPU is not seen\n");
        return 1;
    }
    check_allocator();
    check_round_trip(1000, "a small tensor goes to the GPU and back unchanged");
    check_round_trip((int64_t)21 << 20, "84 MiB go through the 32 MiB staging buffers unchanged");
    check_staging_ring();
    check_pinned();
    check_error_flag();
    check_oom();
    check_graph();
    cuda_empty_cache();
    EXPECT(fake.bad_frees == 0, "%ld frees of unknown pointers", fake.bad_frees);
    EXPECT(fake.graphs == 0 && fake.execs == 0, "%ld graphs, %ld instantiated graphs left",
           fake.graphs, fake.execs);
    report("no bad frees, no graph left");
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
