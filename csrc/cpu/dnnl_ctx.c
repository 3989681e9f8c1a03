/* The process-wide oneDNN engine and stream, and the helpers of dnnl_ctx.h. */
#include "dnnl_ctx.h"

#include <omp.h>
#include <pthread.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "../error.h"
#include "iter.h"

static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t ctx_engine;
static dnnl_stream_t ctx_stream;
static dnnl_status_t ctx_status = dnnl_success;
static const char *ctx_failed_call = "";
/* oneDNN streams are not meant to be shared by threads at once: executions take
 * turns (each one still runs on all the threads it is given). */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

/* Create the engine and the stream once; remember why if that fails, so that every
 * later caller gets the same message. */
static void ctx_create(void)
{
    ctx_status = dnnl_engine_create(&ctx_engine, dnnl_cpu, 0);
    if (ctx_status != dnnl_success) {
        ctx_failed_call = "engine creation";
        return;
    }
    ctx_status = dnnl_stream_create(&ctx_stream, ctx_engine, dnnl_stream_default_flags);
    if (ctx_status != dnnl_success)
        ctx_failed_call = "stream creation";
}

dnnl_engine_t dnnl_ctx_engine(const char *op)
{
    pthread_once(&ctx_once, ctx_create);
    if (dnnl_ctx_check(ctx_status, op, ctx_failed_call) != 0)
        return NULL;
    return ctx_engine;
}

int dnnl_ctx_check(dnnl_status_t st, const char *op, const char *what)
{
    if (st == dnnl_success)
        return 0;
    const char *why = st == dnnl_out_of_memory      ? "out of memory"
                    : st == dnnl_invalid_arguments ? "invalid arguments"
                    : st == dnnl_unimplemented     ? "no implementation for these arguments"
                                                    : dnnl_status2str(st);
    return err_set("%s: oneDNN %s failed (%s)", op, what, why);
}

/* A descriptor of dims and strides (in elements) for our dtype dt. */
static int md_strided(dnnl_memory_desc_t *md, dtype_t dt, int ndim, const int64_t *shape,
                      const int64_t *stride, const char *op)
{
    dnnl_data_type_t ddt = dt == DT_F32 ? dnnl_f32 : dt == DT_U8 ? dnnl_u8 : dnnl_data_type_undef;
    if (ddt == dnnl_data_type_undef)
        return err_set("%s: oneDNN does not handle %s tensors", op, dtype_name(dt));
    if (ndim < 1 || ndim > DNNL_MAX_NDIMS)
        return err_set("%s: oneDNN cannot describe a %d-D tensor", op, ndim);
    dnnl_dims_t dims, strides;
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        strides[i] = stride[i];
    }
    return dnnl_ctx_check(dnnl_memory_desc_init_by_strides(md, ndim, dims, ddt, strides), op,
                          "memory descriptor");
}

int dnnl_ctx_md(dnnl_memory_desc_t *md, dtype_t dt, int ndim, const int64_t *shape,
                const char *op)
{
    if (ndim < 1 || ndim > DNNL_MAX_NDIMS)
        return err_set("%s: oneDNN cannot describe a %d-D tensor", op, ndim);
    int64_t stride[DNNL_MAX_NDIMS], st = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = st;
        st *= shape[i] > 0 ? shape[i] : 1;
    }
    return md_strided(md, dt, ndim, shape, stride, op);
}

int dnnl_ctx_tensor_md(dnnl_memory_desc_t *md, const tensor *t, const char *op)
{
    return md_strided(md, t->dtype, t->ndim, t->shape, t->stride, op);
}

/* Wrap each argument's buffer in a memory object; on failure destroy those made. */
static int make_memories(int nargs, const dnnl_ctx_arg *args, dnnl_exec_arg_t *exec,
                         dnnl_engine_t eng, const char *op)
{
    for (int i = 0; i < nargs; i++) {
        exec[i].arg = args[i].arg;
        dnnl_status_t st = dnnl_memory_create(&exec[i].memory, args[i].md, eng, args[i].data);
        if (st != dnnl_success) {
            for (int k = 0; k < i; k++)
                dnnl_memory_destroy(exec[k].memory);
            return dnnl_ctx_check(st, op, "memory creation");
        }
    }
    return 0;
}

/* Run prim on the shared stream and wait for it, one caller at a time. */
static dnnl_status_t run_locked(dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *exec)
{
    pthread_mutex_lock(&ctx_lock);
    /* oneDNN's OpenMP runtime uses this thread's setting: follow miles's own. */
    omp_set_num_threads(cpu_num_threads());
    dnnl_status_t st = dnnl_primitive_execute(prim, ctx_stream, nargs, exec);
    if (st == dnnl_success)
        st = dnnl_stream_wait(ctx_stream);
    pthread_mutex_unlock(&ctx_lock);
    return st;
}

int dnnl_ctx_execute(const_dnnl_primitive_desc_t pd, int nargs, const dnnl_ctx_arg *args,
                     const char *op)
{
    enum { MAX_ARGS = 16 };
    if (nargs > MAX_ARGS)
        return err_set("%s: too many oneDNN arguments (%d)", op, nargs);
    dnnl_engine_t eng = dnnl_ctx_engine(op);
    if (!eng)
        return -1;
    dnnl_primitive_t prim;
    if (dnnl_ctx_check(dnnl_primitive_create(&prim, pd), op, "primitive creation") != 0)
        return -1;
    dnnl_exec_arg_t exec[MAX_ARGS];
    int rc = make_memories(nargs, args, exec, eng, op);
    if (rc == 0) {
        rc = dnnl_ctx_check(run_locked(prim, nargs, exec), op, "execution");
        for (int i = 0; i < nargs; i++)
            dnnl_memory_destroy(exec[i].memory);
    }
    dnnl_primitive_destroy(prim);
    return rc;
}
