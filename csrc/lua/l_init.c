/* luaopen_miles_core: the module table, the tensor metatable, and the memory
 * hooks that tie the core's allocator to Lua's garbage collector. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "../alloc.h"
#include "../version.h"
#include "l_repl.h"
#include "l_tensor.h"

/* Lua's collector is paced by the bytes tensors hold outside its heap: a full
 * cycle once the bytes allocated since the last one reach a threshold per kind
 * of memory. Host memory: 32 MiB (it has no out-of-memory retry: the kernel
 * kills a process that overcommits, so its garbage stays small). GPU memory: the
 * GPU bytes live after the last cycle, at least 32 MiB, as Lua paces its own
 * heap (pause 200%); and also when the GPU's cache has no block for a request
 * and half that came since the last cycle (on_reclaim), so that garbage is
 * collected before the GPU is asked for more memory. (A cycle per 8 MB of
 * either, as before, traversed the whole heap on nearly every allocation of a
 * large model: on an H200 that was most of an eager ResNet-18 step's host time,
 * ~100 cycles.) */
#define PRESSURE_MIN_BYTES ((size_t)32 << 20)

static lua_State *main_L;
static pthread_t main_thread;
static _Atomic size_t pending_bytes[DEV_TYPES], gpu_threshold = PRESSURE_MIN_BYTES;
static long paced_cycles; /* cycles the pacing ran, and their time (main thread only) */
static double paced_seconds;

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Only the thread that runs Lua may touch it (loader threads allocate too). */
static bool on_lua_thread(void)
{
    return main_L && pthread_equal(pthread_self(), main_thread);
}

/* A full cycle, counted and timed, the pacing started again after it; false when
 * Lua refused (called from a finalizer, while the collector runs). */
static bool paced_collect(void)
{
    double t0 = now_seconds();
    if (lua_gc(main_L, LUA_GCCOLLECT) < 0)
        return false;
    for (int t = 0; t < DEV_TYPES; t++)
        atomic_store(&pending_bytes[t], 0);
    paced_seconds += now_seconds() - t0;
    paced_cycles++;
    int64_t live = alloc_get_stats(DEV_CUDA).live_bytes;
    atomic_store(&gpu_threshold, live > (int64_t)PRESSURE_MIN_BYTES ? (size_t)live : PRESSURE_MIN_BYTES);
    return true;
}

static void on_pressure(void *ud, device_type type, size_t nbytes)
{
    (void)ud;
    size_t now = atomic_fetch_add(&pending_bytes[type], nbytes) + nbytes;
    size_t threshold = type == DEV_CUDA ? atomic_load(&gpu_threshold) : PRESSURE_MIN_BYTES;
    if (now >= threshold && on_lua_thread())
        paced_collect();
}

static bool on_reclaim(void *ud, device_type type)
{
    (void)ud;
    size_t half = atomic_load(&gpu_threshold) / 2; /* (cycles at most twice as often) */
    size_t least = half > PRESSURE_MIN_BYTES ? half : PRESSURE_MIN_BYTES;
    if (type != DEV_CUDA || atomic_load(&pending_bytes[type]) < least || !on_lua_thread())
        return false;
    return paced_collect();
}

/* core.collector_stats() -> cycles, seconds: the full collections that tensor
 * memory paced so far, and the time they took (miles.profile reports them). */
static int l_collector_stats(lua_State *L)
{
    lua_pushinteger(L, paced_cycles);
    lua_pushnumber(L, paced_seconds);
    return 2;
}

static void on_oom(void *ud)
{
    (void)ud;
    if (on_lua_thread())
        paced_collect();
}

int luaopen_miles_core(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    main_L = lua_tothread(L, -1);
    lua_pop(L, 1);
    main_thread = pthread_self();
    alloc_set_hooks(on_oom, on_pressure, on_reclaim, NULL);

    lua_newtable(L);
    l_tensor_open(L);
    l_ops_open(L);
    l_autograd_open(L);
    l_io_open(L);
    l_sys_open(L);
    l_conv_open(L);
    l_pool_open(L);
    l_optim_open(L);
    l_checkpoint_open(L);
    l_data_open(L);
    l_readers_open(L);
    l_miles_open(L);
    l_signal_open(L);
    l_cache_alloc_open(L);
    l_cuda_graph_open(L);
    lua_pushcfunction(L, l_collector_stats);
    lua_setfield(L, -2, "collector_stats");
    lua_pushcfunction(L, l_repl);
    lua_setfield(L, -2, "repl");
    lua_pushstring(L, MILES_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
