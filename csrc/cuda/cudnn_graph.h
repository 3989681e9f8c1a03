/* Helpers for cuDNN's graph (backend) API, shared by the cuDNN-based kernels:
 * one handle per GPU, descriptors built with a sticky status, engine selection by
 * measurement, execution, and a cache of finalized plans keyed by the problem.
 *
 * Usage: build tensor and operation descriptors into a cg_plan's owner list (so
 * they die with the plan), make an operation graph, let cg_autotune pick the
 * fastest engine configuration on the real buffers, cache the plan with
 * cg_cache_insert, and run it with cg_execute. Only compiled in a CUDA build. */
#ifndef MILES_CUDNN_GRAPH_H
#define MILES_CUDNN_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include <cudnn_graph.h>

#include "../device.h"

typedef cudnnBackendDescriptor_t cg_desc;

/* The first failure of a run of descriptor calls: after one, the later calls do
 * nothing, so a sequence of them needs one check at its end. */
typedef struct {
    cudnnStatus_t status;
    const char *what; /* the call that failed */
} cg_status;

/* Descriptors that live and die together, destroyed in reverse order. */
#define CG_MAX_DESCS 40
typedef struct {
    int n;
    cg_desc d[CG_MAX_DESCS];
} cg_owner;

/* A finalized execution plan with everything it was built from. */
typedef struct {
    cg_owner own;      /* tensors, operations, graph, engine config, plan */
    cg_desc plan;      /* owned by `own` */
    int64_t workspace; /* bytes of scratch memory the plan needs */
    float ms;          /* its time per run when it was chosen */
    int tag;           /* the caller's note about how the plan was built */
    /* the cache's bookkeeping (under its lock) */
    int holds;         /* callers using the plan now: not evicted meanwhile */
    bool pinned;       /* used in a CUDA graph capture: never evicted */
    int dev;           /* the GPU it runs on */
    uint64_t last_use; /* the cache's clock at its last find or insert */
} cg_plan;

/* The buffers of one execution, by tensor UID. */
#define CG_MAX_ARGS 16
typedef struct {
    int n;
    int64_t uid[CG_MAX_ARGS];
    void *ptr[CG_MAX_ARGS];
} cg_args;

/* GPU `index`'s cuDNN handle, made on first use and bound to the GPU's stream
 * (the GPU is made current). NULL with the error set. */
cudnnHandle_t cg_handle(int index, const char *op);

/* Is MILES_CUDNN_VERBOSE set (not "0")? Then each engine choice, and each
 * fused graph no engine accepted, is reported on stderr. */
bool cg_verbose(void);

/* Is environment variable name "0" (a cuDNN path switched off)? Read once into
 * *cache, which starts at -1. */
bool cg_switched_off(const char *name, int *cache);

/* Set the error "<op>: cuDNN <what> failed: <status>" and return -1. */
int cg_fail(const char *op, const char *what, cudnnStatus_t s);
/* cg_fail for a sticky status; 0 when it holds no failure. */
int cg_check(const cg_status *s, const char *op);
/* After descriptor calls that failed (s): the error set, and 1 when cuDNN does
 * not take the problem (a descriptor it refuses), -1 for a failure that may pass
 * (memory, an execution). */
int cg_build_failure(const cg_status *s, const char *op);

/* Create a descriptor owned by o. NULL (with s failed) on failure. */
cg_desc cg_new(cg_owner *o, cg_status *s, cudnnBackendDescriptorType_t type, const char *what);
void cg_set(cg_status *s, cg_desc d, cudnnBackendAttributeName_t name,
            cudnnBackendAttributeType_t type, int64_t count, const void *values, const char *what);
void cg_finalize(cg_status *s, cg_desc d, const char *what);
void cg_owner_free(cg_owner *o);

/* cg_tensor's flags: a virtual tensor (an intermediate of the graph, with no
 * buffer); a scalar passed by value (its variant-pack pointer is a host pointer
 * to the value, read when the plan is executed). */
enum { CG_VIRTUAL = 1, CG_BY_VALUE = 2 };

/* A finalized tensor descriptor of `nd` dims. `align` is the byte alignment of
 * its data pointer (the largest power of two, up to 16, dividing it). */
cg_desc cg_tensor(cg_owner *o, cg_status *s, int64_t uid, cudnnDataType_t dt, int nd,
                  const int64_t *dims, const int64_t *strides, int64_t align, unsigned flags);
/* The packed strides of a 4-D shape, NCHW or (nhwc) channels-last. */
void cg_layout_strides(const int64_t *shape, bool nhwc, int64_t *strides);
/* A finalized pointwise operation y = mode(x[, b]) computed in comp (b NULL for
 * the unary modes). */
cg_desc cg_pointwise(cg_owner *o, cg_status *s, cudnnPointwiseMode_t mode, cudnnDataType_t comp,
                     cg_desc x, const cg_desc *b, cg_desc y, const char *what);
/* A finalized relu backward: dx = dy where x > 0, else 0. */
cg_desc cg_relu_backward(cg_owner *o, cg_status *s, cudnnDataType_t comp, cg_desc x, cg_desc dy,
                         cg_desc dx, const char *what);
/* A finalized operation graph of `nops` finalized operations. */
cg_desc cg_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, int nops, const cg_desc *ops);

/* The byte alignment to declare for a data pointer: the largest power of two up
 * to 16 that divides its address. */
int64_t cg_alignment(const void *p);

/* Choose the engine for `graph` by measurement: the heuristics' engine configs
 * (mode A; the fallback list when A yields none that works) are finalized into
 * plans, up to a handful, skipping those whose workspace is too large or whose
 * numerical notes are unwanted (inputs down-converted; tensor cores when
 * !allow_tensor_cores); each runs on a's buffers (a warm-up, then timed runs), so
 * the outputs in `a` are overwritten. The fastest plan and its engine config join
 * p->own; p->plan and p->workspace are set. 0; 1 with the error set when no
 * engine can run the graph (a property of the problem, which callers may
 * remember); -1 with the error set for a failure that may pass (memory for a
 * workspace, a CUDA call). */
int cg_autotune(cg_plan *p, cudnnHandle_t h, cg_desc graph, bool allow_tensor_cores,
                const cg_args *a, device dev, const char *op);

/* Run p on a's buffers, with a workspace from the device allocator. */
int cg_execute(cudnnHandle_t h, const cg_plan *p, const cg_args *a, device dev, const char *op);

/* A new, empty plan (calloc), or NULL with the error set. */
cg_plan *cg_plan_new(const char *op);
void cg_plan_free(cg_plan *p);
/* cg_plan_free once the work queued on the plan's GPU is done (its kernels may be
 * among it): a host wait. */
void cg_plan_free_when_done(cg_plan *p);

/* The plan cache: keys are arrays of n int64 values (n <= CG_MAX_KEY), for GPU
 * dev. find returns the cached plan, held, or NULL. insert takes p (a new plan) and returns
 * the plan to use, held: p, or the one another thread cached first (p is then
 * freed); NULL with the error set when out of memory (p is freed). A held plan is
 * given back with cg_cache_release once its last execution is enqueued.
 * The cache keeps at most MILES_CUDNN_PLANS plans (default 1024; shapes that
 * change every batch would otherwise grow it without end): an insert past that
 * frees the least recently used plan that nobody holds and no CUDA graph capture
 * used (a captured graph may run kernels that live in the plan). */
#define CG_MAX_KEY 64
cg_plan *cg_cache_find(const int64_t *key, int n, int dev);
cg_plan *cg_cache_insert(const int64_t *key, int n, int dev, cg_plan *p, const char *op);
void cg_cache_release(cg_plan *p);

/* Builds a problem's operation graph into o (ctx: the caller's problem). */
typedef cg_desc (*cg_build_fn)(cg_owner *o, cg_status *s, cudnnHandle_t h, const void *ctx);
/* Runs the problem on our kernels, writing only what the graph writes (0 or -1
 * with the error set): timed against cuDNN's plan. */
typedef int (*cg_run_fn)(const void *ctx);

/* The plan of the problem behind key, held (give it back with cg_cache_release):
 * the cached one, or else one whose graph build() makes, tuned on a's buffers
 * (cg_autotune: a's outputs are overwritten) and cached. With ours, the plan
 * is kept only when it runs faster than ours(ctx) (timed the same way), so a
 * library engine never replaces a faster kernel of ours. before (or NULL) is a
 * pass of ours that cuDNN's way of running the problem needs first (writing one
 * of the graph's inputs, which the caller then runs before each execution): it
 * runs before the tuning, so that the engines read real data, and its time is
 * counted with cuDNN's against ours. NULL with *why = 1
 * when cuDNN is not to run the problem: no engine takes it, or ours is faster
 * (both remembered by the cache, so later calls answer at once; with
 * MILES_CUDNN_VERBOSE the reason is printed), or it is met first inside a CUDA
 * graph capture (an engine is chosen by timing, which a capture cannot do). In
 * deterministic mode ours is not timed: cuDNN's engine runs when one takes the
 * problem, so that timing noise cannot change the results from run to run;
 * NULL with *why = -1 and the error set for a failure (nothing remembered). For
 * problems with one graph and our own kernels to fall back on. */
cg_plan *cg_plan_for(const int64_t *key, int nk, int dev, cudnnHandle_t h, cg_build_fn build,
                     cg_run_fn ours, cg_run_fn before, const void *ctx, const cg_args *a,
                     bool tensor_cores, const char *op, int *why);
/* What the cache holds for a key: 1 a plan, -1 cg_plan_for's note that cuDNN is
 * not to run the problem, 0 nothing. */
int cg_cache_known(const int64_t *key, int nk, int dev);
/* Keep p (held) in the cache for the process's life: a plan that later calls
 * cannot do without (max pooling's backward, which reads cuDNN's index). */
void cg_cache_pin(cg_plan *p);

#endif
