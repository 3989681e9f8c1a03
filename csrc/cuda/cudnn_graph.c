/* cuDNN's graph API: handles, descriptors, engine choice by measurement, plan
 * execution and the plan cache (see cudnn_graph.h). */
#include "cudnn_graph.h"

#include <errno.h>
#include <float.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc.h"
#include "../error.h"
#include "cuda_backend.h"
#include "cuda_ctx.h"

/* --- handles --- */

/* A cuDNN handle bound to stream s. */
static int handle_make(void **out, cudaStream_t stream, const char *op)
{
    cudnnHandle_t h = NULL;
    cudnnStatus_t s = cudnnCreate(&h);
    if (s != CUDNN_STATUS_SUCCESS)
        return cg_fail(op, "cudnnCreate", s);
    if ((s = cudnnSetStream(h, stream)) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroy(h);
        return cg_fail(op, "cudnnSetStream", s);
    }
    *out = h;
    return 0;
}

static cuda_lib_handles handles = {"cuDNN", "convolution", handle_make, {0}};

cudnnHandle_t cg_handle(int index, const char *op)
{
    return cuda_ctx_handle(&handles, index, op);
}

/* --- errors and descriptors --- */

bool cg_verbose(void)
{
    static int on = -1; /* read once */
    if (on < 0) {
        const char *v = getenv("MILES_CUDNN_VERBOSE");
        on = v && *v && strcmp(v, "0") != 0;
    }
    return on;
}

bool cg_switched_off(const char *name, int *cache)
{
    if (*cache < 0) {
        const char *v = getenv(name);
        *cache = v && strcmp(v, "0") == 0;
    }
    return *cache;
}

int cg_fail(const char *op, const char *what, cudnnStatus_t s)
{
    char detail[256] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    detail[sizeof detail - 1] = '\0';
    if (detail[0])
        return err_set("%s: cuDNN %s failed: %s (cuDNN's last message: %s)", op, what,
                       cudnnGetErrorString(s), detail);
    return err_set("%s: cuDNN %s failed: %s", op, what, cudnnGetErrorString(s));
}

int cg_check(const cg_status *s, const char *op)
{
    return s->status == CUDNN_STATUS_SUCCESS ? 0 : cg_fail(op, s->what, s->status);
}

int cg_build_failure(const cg_status *s, const char *op)
{
    cg_check(s, op);
    switch (s->status) {
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED:
    case CUDNN_STATUS_EXECUTION_FAILED:
    case CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER:
    case CUDNN_STATUS_EXECUTION_FAILED_CUDART:
        return -1;
    default:
        return 1;
    }
}

static void fail_with(cg_status *s, cudnnStatus_t st, const char *what)
{
    if (s->status == CUDNN_STATUS_SUCCESS && st != CUDNN_STATUS_SUCCESS) {
        s->status = st;
        s->what = what;
    }
}

cg_desc cg_new(cg_owner *o, cg_status *s, cudnnBackendDescriptorType_t type, const char *what)
{
    if (s->status != CUDNN_STATUS_SUCCESS)
        return NULL;
    if (o->n == CG_MAX_DESCS) { /* a miles limit, not cuDNN's: the message says so */
        fail_with(s, CUDNN_STATUS_NOT_SUPPORTED,
                  "a graph of more than CG_MAX_DESCS descriptors (miles's limit)");
        return NULL;
    }
    cg_desc d = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(type, &d);
    if (st != CUDNN_STATUS_SUCCESS) {
        fail_with(s, st, what);
        return NULL;
    }
    o->d[o->n++] = d;
    return d;
}

void cg_set(cg_status *s, cg_desc d, cudnnBackendAttributeName_t name,
            cudnnBackendAttributeType_t type, int64_t count, const void *values, const char *what)
{
    if (s->status == CUDNN_STATUS_SUCCESS)
        fail_with(s, cudnnBackendSetAttribute(d, name, type, count, values), what);
}

void cg_finalize(cg_status *s, cg_desc d, const char *what)
{
    if (s->status == CUDNN_STATUS_SUCCESS)
        fail_with(s, cudnnBackendFinalize(d), what);
}

void cg_owner_free(cg_owner *o)
{
    while (o->n > 0)
        cudnnBackendDestroyDescriptor(o->d[--o->n]);
}

cg_desc cg_tensor(cg_owner *o, cg_status *s, int64_t uid, cudnnDataType_t dt, int nd,
                  const int64_t *dims, const int64_t *strides, int64_t align, unsigned flags)
{
    bool is_virtual = flags & CG_VIRTUAL, by_value = flags & CG_BY_VALUE;
    cg_desc t = cg_new(o, s, CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor descriptor creation");
    cg_set(s, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt, "tensor data type");
    cg_set(s, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, nd, dims, "tensor dimensions");
    cg_set(s, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, nd, strides, "tensor strides");
    cg_set(s, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor unique id");
    cg_set(s, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align,
           "tensor byte alignment");
    if (is_virtual)
        cg_set(s, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual,
               "tensor virtual flag");
    if (by_value)
        cg_set(s, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value,
               "tensor by-value flag");
    cg_finalize(s, t, "tensor descriptor finalization");
    return s->status == CUDNN_STATUS_SUCCESS ? t : NULL;
}

void cg_layout_strides(const int64_t *shape, bool nhwc, int64_t *st)
{
    int64_t c = shape[1], h = shape[2], w = shape[3];
    st[0] = c * h * w;
    st[1] = nhwc ? 1 : h * w;
    st[2] = nhwc ? w * c : w;
    st[3] = nhwc ? c : 1;
}

/* The pointwise descriptor of an operation: its mode, computed in comp. A relu's
 * clips are set as cudnn-frontend sets them (lower 0 with slope 0, upper the
 * largest float: its kernels compare with the upper clip, and an infinite one
 * has been a problem there), not left to the library's defaults. */
static cg_desc pointwise_desc(cg_owner *o, cg_status *s, cudnnPointwiseMode_t mode,
                              cudnnDataType_t comp, const char *what)
{
    cg_desc pw = cg_new(o, s, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what);
    cg_set(s, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, what);
    cg_set(s, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    if (mode == CUDNN_POINTWISE_RELU_FWD || mode == CUDNN_POINTWISE_RELU_BWD) {
        const cudnnBackendAttributeName_t names[3] = {CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP,
                                                      CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP,
                                                      CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE};
        const double values[3] = {0.0, FLT_MAX, 0.0};
        bool single = comp == CUDNN_DATA_FLOAT; /* (their type follows the maths') */
        for (int i = 0; i < 3; i++) {
            float f = (float)values[i];
            cg_set(s, pw, names[i], single ? CUDNN_TYPE_FLOAT : CUDNN_TYPE_DOUBLE, 1,
                   single ? (const void *)&f : (const void *)&values[i], what);
        }
    }
    cg_finalize(s, pw, what);
    return pw;
}

cg_desc cg_pointwise(cg_owner *o, cg_status *s, cudnnPointwiseMode_t mode, cudnnDataType_t comp,
                     cg_desc x, const cg_desc *b, cg_desc y, const char *what)
{
    cg_desc pw = pointwise_desc(o, s, mode, comp, what);
    cg_desc op = cg_new(o, s, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
           &pw, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, what);
    if (b)
        cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, b,
               what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, what);
    cg_finalize(s, op, what);
    return op;
}

cg_desc cg_relu_backward(cg_owner *o, cg_status *s, cudnnDataType_t comp, cg_desc x, cg_desc dy,
                         cg_desc dx, const char *what)
{
    cg_desc pw = pointwise_desc(o, s, CUDNN_POINTWISE_RELU_BWD, comp, what);
    cg_desc op = cg_new(o, s, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
           &pw, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dy,
           what);
    cg_set(s, op, CUDNN_ATTR_OPERATION_POINTWISE_DXDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &dx,
           what);
    cg_finalize(s, op, what);
    return op;
}

cg_desc cg_graph(cg_owner *o, cg_status *s, cudnnHandle_t h, int nops, const cg_desc *ops)
{
    cg_desc g = cg_new(o, s, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph creation");
    cg_set(s, g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops,
           "operation graph operations");
    /* The handle names the graph's GPU. cuDNN 9.8 made it optional (and marks the
     * attribute deprecated), so setting it is best effort. */
    if (s->status == CUDNN_STATUS_SUCCESS)
        (void)cudnnBackendSetAttribute(g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                       &h);
    cg_finalize(s, g, "operation graph finalization");
    return s->status == CUDNN_STATUS_SUCCESS ? g : NULL;
}

int64_t cg_alignment(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int64_t al = 16;
    while (al > 1 && a % (uintptr_t)al != 0)
        al /= 2;
    return al;
}

/* --- engine choice --- */

#define TUNE_EXAMINE 24                      /* engine configs asked of the heuristics */
#define TUNE_TRIES 12                        /* plans finalized per heuristics mode, at most */
#define TUNE_COMPILED 2                      /* of which compile kernels at finalization */
#define TUNE_KEEP 8                          /* plans timed per heuristics mode, at most */
#define TUNE_MAX_WORKSPACE ((int64_t)512 << 20) /* bytes */
#define TUNE_RUNS 2                          /* timed runs after the warm-up */

/* What happened to the engine configs, for the message when none works. */
typedef struct {
    int proposed, filtered, unreadable, compiles, unfinalized, too_big, no_memory, failed;
    cudnnStatus_t last; /* the last failure's status */
    const char *last_what;
} tune_stats;

static void note_failure(tune_stats *st, cudnnStatus_t s, const char *what)
{
    st->last = s;
    st->last_what = what;
}

/* Up to `max` engine configs for graph from heuristics `mode`, into cfgs (each
 * created here, to be destroyed by the caller). Returns how many. */
static int heuristic_configs(cg_desc graph, cudnnBackendHeurMode_t mode, cg_desc *cfgs, int max,
                             tune_stats *st)
{
    cg_desc heur = NULL;
    int64_t count = 0, got = 0;
    int made = 0;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1,
                                     &mode);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendFinalize(heur);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
    if (s == CUDNN_STATUS_SUCCESS) {
        if (count > max)
            count = max;
        for (; made < count; made++) {
            s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[made]);
            if (s != CUDNN_STATUS_SUCCESS)
                break;
        }
        if (s == CUDNN_STATUS_SUCCESS && made > 0)
            s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, made, &got, cfgs);
    }
    if (s != CUDNN_STATUS_SUCCESS) {
        note_failure(st, s, "engine heuristics");
        got = 0;
    }
    if (got > made)
        got = made;
    for (int i = (int)got; i < made; i++)
        cudnnBackendDestroyDescriptor(cfgs[i]);
    if (heur)
        cudnnBackendDestroyDescriptor(heur);
    st->proposed += (int)got;
    return (int)got;
}

/* What cfg's engine says of itself: *allowed is false for an unwanted numerical
 * note (inputs down-converted; tensor cores when !allow_tensor_cores;
 * non-deterministic in deterministic mode), *compiles
 * when finalizing it compiles kernels (NVRTC: slow). 0, or -1 when the numerical
 * notes cannot be read (the config is then not used). */
static int config_notes(cg_desc cfg, bool allow_tensor_cores, bool *allowed, bool *compiles)
{
    cg_desc engine = NULL;
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    cudnnBackendBehaviorNote_t behavior[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
    int64_t n = 0, nb = 0;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                     CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                     &n, notes);
    /* The behaviour notes only tune the search: unreadable, they count as none. */
    if (s == CUDNN_STATUS_SUCCESS &&
        cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE,
                                 CUDNN_TYPE_BEHAVIOR_NOTE, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &nb,
                                 behavior) != CUDNN_STATUS_SUCCESS)
        nb = 0;
    if (engine)
        cudnnBackendDestroyDescriptor(engine);
    if (s != CUDNN_STATUS_SUCCESS)
        return -1;
    *allowed = true;
    *compiles = false;
    for (int64_t i = 0; i < n && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; i++)
        if (notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
            (notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE && !allow_tensor_cores) ||
            (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC && cuda_get_deterministic()))
            *allowed = false;
    for (int64_t i = 0; i < nb && i < CUDNN_BEHAVIOR_NOTE_TYPE_COUNT; i++)
        if (behavior[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION)
            *compiles = true;
    return 0;
}

/* A finalized execution plan for cfg and its workspace size, or NULL. */
static cg_desc make_plan(cudnnHandle_t h, cg_desc cfg, int64_t *workspace, tune_stats *st)
{
    cg_desc plan = NULL;
    int64_t n = 0;
    const char *what = "execution plan creation";
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan);
    /* Optional since cuDNN 9.8, like the graph's: best effort. */
    if (s == CUDNN_STATUS_SUCCESS)
        (void)cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE,
                                       1, &h);
    if (s == CUDNN_STATUS_SUCCESS) {
        what = "execution plan engine config";
        s = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg);
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        what = "execution plan finalization";
        s = cudnnBackendFinalize(plan);
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        what = "execution plan workspace size";
        s = cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                     CUDNN_TYPE_INT64, 1, &n, workspace);
    }
    if (s != CUDNN_STATUS_SUCCESS) {
        note_failure(st, s, what);
        st->unfinalized++;
        if (plan)
            cudnnBackendDestroyDescriptor(plan);
        return NULL;
    }
    return plan;
}

/* Run plan on a's buffers with workspace ws (a variant pack made for the run). */
static cudnnStatus_t run_plan(cudnnHandle_t h, cg_desc plan, const cg_args *a, void *ws,
                              const char **what)
{
    cg_desc pack = NULL;
    *what = "variant pack creation";
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    if (s == CUDNN_STATUS_SUCCESS) {
        *what = "variant pack data pointers";
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                     CUDNN_TYPE_VOID_PTR, a->n, a->ptr);
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        *what = "variant pack unique ids";
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                     a->n, a->uid);
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        *what = "variant pack workspace";
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR,
                                     1, &ws);
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        *what = "variant pack finalization";
        s = cudnnBackendFinalize(pack);
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        *what = "execution";
        s = cudnnBackendExecute(h, plan, pack);
    }
    if (pack)
        cudnnBackendDestroyDescriptor(pack);
    return s;
}

/* Milliseconds per run of plan (a warm-up, then TUNE_RUNS timed runs), or a
 * negative number when it cannot run. */
static float time_plan(cudnnHandle_t h, cg_desc plan, int64_t workspace, const cg_args *a,
                       device dev, cudaStream_t stream, cudaEvent_t ev[2], tune_stats *st)
{
    void *ws = NULL;
    if (workspace > 0 && !(ws = alloc_bytes(dev, (size_t)workspace))) {
        st->no_memory++;
        return -1.0f;
    }
    const char *what = "execution";
    cudnnStatus_t s = run_plan(h, plan, a, ws, &what);
    float ms = -1.0f;
    if (s == CUDNN_STATUS_SUCCESS && cudaEventRecord(ev[0], stream) == cudaSuccess) {
        for (int i = 0; i < TUNE_RUNS && s == CUDNN_STATUS_SUCCESS; i++)
            s = run_plan(h, plan, a, ws, &what);
        float t = 0.0f;
        if (s == CUDNN_STATUS_SUCCESS && cudaEventRecord(ev[1], stream) == cudaSuccess &&
            (cuda_ctx_count_wait(), cudaEventSynchronize(ev[1])) == cudaSuccess &&
            cudaEventElapsedTime(&t, ev[0], ev[1]) == cudaSuccess)
            ms = t / TUNE_RUNS;
    }
    if (ms < 0.0f) {
        st->failed++;
        if (s != CUDNN_STATUS_SUCCESS)
            note_failure(st, s, what);
    }
    alloc_release(dev, ws, (size_t)workspace);
    return ms;
}

int cg_autotune(cg_plan *p, cudnnHandle_t h, cg_desc graph, bool allow_tensor_cores,
                const cg_args *a, device dev, const char *op)
{
    cudaStream_t stream = cuda_ctx_stream(dev.index);
    if (!stream)
        return -1;
    if (p->own.n + 2 > CG_MAX_DESCS)
        return err_set("%s: too many cuDNN descriptors for one plan", op);
    cudaEvent_t ev[2] = {NULL, NULL};
    if (cuda_ctx_check(cudaEventCreate(&ev[0]), "cudaEventCreate") != 0 ||
        cuda_ctx_check(cudaEventCreate(&ev[1]), "cudaEventCreate") != 0) {
        if (ev[0])
            cudaEventDestroy(ev[0]);
        return err_prefix(op);
    }
    tune_stats st = {0};
    cg_desc best_plan = NULL, best_cfg = NULL;
    int64_t best_ws = 0;
    float best_ms = 0.0f;
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    for (int m = 0; m < 2 && !best_plan; m++) {
        cg_desc cfgs[TUNE_EXAMINE];
        int ncfg = heuristic_configs(graph, modes[m], cfgs, TUNE_EXAMINE, &st);
        /* Finalizing can compile kernels (a second or more each): a bounded number
         * of tries, fewer of those that compile. */
        int tries = 0, compiled = 0, kept = 0;
        /* deterministic: the first workable engine, so timing noise cannot change it */
        int keep = cuda_get_deterministic() ? 1 : TUNE_KEEP;
        for (int i = 0; i < ncfg && tries < TUNE_TRIES && kept < keep; i++) {
            bool allowed = false, compiles = false;
            if (config_notes(cfgs[i], allow_tensor_cores, &allowed, &compiles) != 0) {
                st.unreadable++;
                continue;
            }
            if (!allowed) {
                st.filtered++;
                continue;
            }
            if (compiles && compiled == TUNE_COMPILED) {
                st.compiles++;
                continue;
            }
            compiled += compiles;
            tries++;
            int64_t ws = 0;
            cg_desc plan = make_plan(h, cfgs[i], &ws, &st);
            if (!plan)
                continue;
            if (ws < 0 || ws > TUNE_MAX_WORKSPACE) {
                st.too_big++;
                cudnnBackendDestroyDescriptor(plan);
                continue;
            }
            kept++;
            float ms = time_plan(h, plan, ws, a, dev, stream, ev, &st);
            if (ms >= 0.0f && (!best_plan || ms < best_ms)) {
                if (best_plan) {
                    cudnnBackendDestroyDescriptor(best_plan);
                    cudnnBackendDestroyDescriptor(best_cfg);
                }
                best_plan = plan;
                best_cfg = cfgs[i];
                cfgs[i] = NULL; /* now best_cfg's */
                best_ws = ws;
                best_ms = ms;
            } else {
                cudnnBackendDestroyDescriptor(plan);
            }
        }
        for (int i = 0; i < ncfg; i++)
            if (cfgs[i])
                cudnnBackendDestroyDescriptor(cfgs[i]);
    }
    cudaEventDestroy(ev[0]);
    cudaEventDestroy(ev[1]);
    if (!best_plan) {
        err_set("%s: no cuDNN engine can run this problem (%d configs proposed: %d with "
                       "unwanted numerical notes, %d with unreadable notes, %d more compiling "
                       "ones skipped, %d failed to finalize, %d over the %lld MiB workspace "
                       "bound, %d without memory for their workspace, %d failed to run; last "
                       "failure: %s: %s)",
                       op, st.proposed, st.filtered, st.unreadable, st.compiles, st.unfinalized,
                       st.too_big, (long long)(TUNE_MAX_WORKSPACE >> 20), st.no_memory, st.failed,
                       st.last_what ? st.last_what : "none",
                       st.last_what ? cudnnGetErrorString(st.last) : "-");
        return st.no_memory ? -1 : 1; /* (short of memory: another time may do) */
    }
    if (cg_verbose()) {
        cg_desc engine = NULL;
        int64_t index = -1, n = 0;
        if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine) ==
                CUDNN_STATUS_SUCCESS &&
            cudnnBackendGetAttribute(best_cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine) ==
                CUDNN_STATUS_SUCCESS)
            cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                                     &n, &index);
        if (engine)
            cudnnBackendDestroyDescriptor(engine);
        fprintf(stderr,
                "miles: %s: cuDNN engine %lld chosen, %.4f ms, %lld bytes of workspace "
                "(%d configs proposed, %d filtered by notes, %d unreadable, %d compiling ones "
                "skipped, %d unfinalized, %d over the workspace bound, %d without memory, %d "
                "failed to run)\n",
                op, (long long)index, best_ms, (long long)best_ws, st.proposed, st.filtered,
                st.unreadable, st.compiles, st.unfinalized, st.too_big, st.no_memory, st.failed);
    }
    p->own.d[p->own.n++] = best_cfg; /* the plan goes after its config: destroyed first */
    p->own.d[p->own.n++] = best_plan;
    p->plan = best_plan;
    p->workspace = best_ws;
    p->ms = best_ms;
    return 0;
}

int cg_execute(cudnnHandle_t h, const cg_plan *p, const cg_args *a, device dev, const char *op)
{
    void *ws = NULL;
    if (p->workspace > 0 && !(ws = alloc_bytes(dev, (size_t)p->workspace)))
        return err_prefix(op);
    const char *what = "execution";
    cudnnStatus_t s = run_plan(h, p->plan, a, ws, &what);
    /* The stream runs in order: the next user of this memory comes after us. */
    alloc_release(dev, ws, (size_t)p->workspace);
    return s == CUDNN_STATUS_SUCCESS ? 0 : cg_fail(op, what, s);
}

/* --- plans and their cache --- */

cg_plan *cg_plan_new(const char *op)
{
    cg_plan *p = calloc(1, sizeof *p);
    if (!p)
        err_set("%s: out of memory for a cuDNN plan", op);
    return p;
}

void cg_plan_free(cg_plan *p)
{
    if (p) {
        cg_owner_free(&p->own);
        free(p);
    }
}

#define CACHE_BUCKETS 256
#define CACHE_PLANS_DEFAULT 1024

typedef struct cache_entry {
    struct cache_entry *next;
    uint64_t hash;
    cg_plan *plan;
    int n;
    int64_t key[];
} cache_entry;

static cache_entry *buckets[CACHE_BUCKETS];
static int64_t cached;  /* entries in all buckets */
static uint64_t clock_; /* ticks at every find and insert */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* The bound: MILES_CUDNN_PLANS (a positive integer), else the default. */
static int64_t cache_bound(void)
{
    static int64_t bound;
    if (!bound) {
        const char *v = getenv("MILES_CUDNN_PLANS");
        char *end = NULL;
        errno = 0;
        long long n = v ? strtoll(v, &end, 10) : 0;
        bool ok = v && end != v && *end == '\0' && errno == 0 && n > 0;
        bound = ok ? n : CACHE_PLANS_DEFAULT;
        if (v && !ok)
            fprintf(stderr, "miles: MILES_CUDNN_PLANS=%s is not a positive integer: the cuDNN "
                            "plan cache keeps up to %d plans\n", v, CACHE_PLANS_DEFAULT);
    }
    return bound;
}

static uint64_t key_hash(const int64_t *key, int n)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a over the key's bytes */
    const unsigned char *b = (const unsigned char *)key;
    for (size_t i = 0; i < (size_t)n * sizeof *key; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The entry for key in its bucket, or NULL; the caller holds cache_lock. */
static cache_entry *lookup(uint64_t h, const int64_t *key, int n)
{
    for (cache_entry *e = buckets[h % CACHE_BUCKETS]; e; e = e->next)
        if (e->hash == h && e->n == n && memcmp(e->key, key, sizeof *key * (size_t)n) == 0)
            return e;
    return NULL;
}

/* Hold e's plan for a caller on GPU dev (pinned when that GPU is capturing). */
static cg_plan *hold(cache_entry *e, int dev)
{
    e->plan->holds++;
    e->plan->last_use = ++clock_;
    e->plan->pinned |= cuda_ctx_capturing(dev);
    e->plan->dev = dev;
    return e->plan;
}

/* Unlink the least recently used entry that may go, or return NULL (none may go
 * while a graph is captured: freeing waits for the GPU); the caller holds
 * cache_lock. */
static cache_entry *evict_one(void)
{
    if (cuda_capturing_any())
        return NULL;
    cache_entry **victim = NULL;
    for (int b = 0; b < CACHE_BUCKETS; b++)
        for (cache_entry **e = &buckets[b]; *e; e = &(*e)->next) {
            const cg_plan *p = (*e)->plan;
            if (!p->holds && !p->pinned && (!victim || p->last_use < (*victim)->plan->last_use))
                victim = e;
        }
    if (!victim)
        return NULL;
    cache_entry *gone = *victim;
    *victim = gone->next;
    cached--;
    return gone;
}

cg_plan *cg_cache_find(const int64_t *key, int n, int dev)
{
    uint64_t h = key_hash(key, n);
    pthread_mutex_lock(&cache_lock);
    cache_entry *e = lookup(h, key, n);
    cg_plan *p = e ? hold(e, dev) : NULL;
    pthread_mutex_unlock(&cache_lock);
    return p;
}

void cg_plan_free_when_done(cg_plan *p)
{
    cudaStream_t stream = p->plan ? cuda_ctx_stream(p->dev) : NULL;
    if (!p->plan || (stream && cuda_ctx_wait_stream(stream, "cudaStreamSynchronize") == 0))
        cg_plan_free(p); /* (a failed wait leaks the plan rather than risk it) */
}

cg_plan *cg_cache_insert(const int64_t *key, int n, int dev, cg_plan *p, const char *op)
{
    uint64_t h = key_hash(key, n);
    cache_entry *fresh = malloc(sizeof *fresh + sizeof *key * (size_t)n);
    if (!fresh) {
        cg_plan_free(p);
        err_set("%s: out of memory for the cuDNN plan cache", op);
        return NULL;
    }
    cache_entry *gone = NULL;
    pthread_mutex_lock(&cache_lock);
    cache_entry *e = lookup(h, key, n);
    if (!e) {
        if (cached >= cache_bound())
            gone = evict_one();
        fresh->hash = h;
        fresh->plan = p;
        fresh->n = n;
        memcpy(fresh->key, key, sizeof *key * (size_t)n);
        fresh->next = buckets[h % CACHE_BUCKETS];
        buckets[h % CACHE_BUCKETS] = fresh;
        cached++;
        e = fresh;
        fresh = NULL;
    }
    cg_plan *use = hold(e, dev);
    pthread_mutex_unlock(&cache_lock);
    if (fresh) { /* another thread was first: keep its plan */
        free(fresh);
        cg_plan_free(p);
    }
    if (gone) { /* nobody holds it */
        cg_plan_free_when_done(gone->plan);
        free(gone);
        cuda_ctx_stream(dev); /* the caller's GPU current again (the wait made old's) */
    }
    return use;
}

void cg_cache_release(cg_plan *p)
{
    pthread_mutex_lock(&cache_lock);
    p->holds--;
    pthread_mutex_unlock(&cache_lock);
}

int64_t cuda_cudnn_plans(void)
{
    pthread_mutex_lock(&cache_lock);
    int64_t n = cached;
    pthread_mutex_unlock(&cache_lock);
    return n;
}

/* --- a plan or a note that cuDNN does not take the problem --- */

#define NO_ENGINE (-1) /* the tag of a cached note that holds no plan */

/* Milliseconds per run of ours(ctx) on GPU dev (a warm-up, then TUNE_RUNS timed
 * runs, as time_plan), or -1 with the error set. */
static float time_ours(cg_run_fn ours, const void *ctx, int dev, const char *op)
{
    cudaStream_t stream = cuda_ctx_stream(dev);
    cudaEvent_t ev[2] = {NULL, NULL};
    float ms = -1.0f, t = 0.0f;
    if (stream && cuda_ctx_check(cudaEventCreate(&ev[0]), "cudaEventCreate") == 0 &&
        cuda_ctx_check(cudaEventCreate(&ev[1]), "cudaEventCreate") == 0 && ours(ctx) == 0 &&
        cuda_ctx_check(cudaEventRecord(ev[0], stream), "cudaEventRecord") == 0) {
        int rc = 0;
        for (int i = 0; i < TUNE_RUNS && rc == 0; i++)
            rc = ours(ctx);
        if (rc == 0 && cuda_ctx_check(cudaEventRecord(ev[1], stream), "cudaEventRecord") == 0 &&
            (cuda_ctx_count_wait(), cuda_ctx_check(cudaEventSynchronize(ev[1]),
                                                   "cudaEventSynchronize")) == 0 &&
            cuda_ctx_check(cudaEventElapsedTime(&t, ev[0], ev[1]), "cudaEventElapsedTime") == 0)
            ms = t / TUNE_RUNS;
    }
    for (int i = 0; i < 2; i++)
        if (ev[i])
            cudaEventDestroy(ev[i]);
    if (ms < 0.0f)
        err_prefix(op);
    return ms;
}

cg_plan *cg_plan_for(const int64_t *key, int nk, int dev, cudnnHandle_t h, cg_build_fn build,
                     cg_run_fn ours, cg_run_fn before, const void *ctx, const cg_args *a,
                     bool tensor_cores, const char *op, int *why)
{
    cg_plan *plan = cg_cache_find(key, nk, dev);
    *why = 1;
    if (!plan && cuda_capturing_any()) /* (its timing would break a capture on any GPU) */
        return NULL;
    if (!plan) {
        if (!(plan = cg_plan_new(op))) {
            *why = -1;
            return NULL;
        }
        cg_status s = {0};
        cg_desc graph = build(&plan->own, &s, h, ctx);
        device d = {DEV_CUDA, dev};
        int rc = s.status != CUDNN_STATUS_SUCCESS ? cg_build_failure(&s, op)
                 : before && before(ctx) != 0   ? -1
                                                : cg_autotune(plan, h, graph, tensor_cores, a, d, op);
        ours = cuda_get_deterministic() ? NULL : ours;
        if (rc < 0) {
            cg_plan_free(plan);
            *why = -1;
            return NULL;
        }
        float ours_ms = rc == 0 && ours ? time_ours(ours, ctx, dev, op) : 0.0f;
        float before_ms = rc == 0 && ours && before ? time_ours(before, ctx, dev, op) : 0.0f;
        if (ours_ms < 0.0f || before_ms < 0.0f) {
            cg_plan_free(plan);
            *why = -1;
            return NULL;
        }
        if (rc > 0 && cg_verbose())
            fprintf(stderr, "miles: %s; running it on our kernels\n", err_msg());
        bool ours_faster = ours && ours_ms < plan->ms + before_ms;
        if (rc == 0 && ours_faster && cg_verbose())
            fprintf(stderr, "miles: %s: our kernels chosen, %.4f ms against cuDNN's %.4f ms\n",
                    op, ours_ms, plan->ms + before_ms);
        if (rc > 0 || ours_faster) {
            cg_owner_free(&plan->own);
            plan->plan = NULL;
            plan->workspace = 0;
            plan->tag = NO_ENGINE;
        }
        if (!(plan = cg_cache_insert(key, nk, dev, plan, op))) {
            *why = -1;
            return NULL;
        }
    }
    if (plan->tag == NO_ENGINE) {
        cg_cache_release(plan);
        return NULL;
    }
    return plan;
}

int cg_cache_known(const int64_t *key, int nk, int dev)
{
    cg_plan *plan = cg_cache_find(key, nk, dev);
    int known = !plan ? 0 : plan->tag == NO_ENGINE ? -1 : 1;
    if (plan)
        cg_cache_release(plan);
    return known;
}

void cg_cache_pin(cg_plan *p)
{
    pthread_mutex_lock(&cache_lock);
    p->pinned = true;
    pthread_mutex_unlock(&cache_lock);
}
