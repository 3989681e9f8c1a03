/* Bindings for the runtime itself: random seeds, threads, memory, devices. */
#include "../alloc.h"
#include "../cpu/iter.h"
#include "../cuda/cuda_backend.h"
#include "../ops.h"
#include "../rng.h"
#include "l_tensor.h"

#include <cblas.h>
#include <time.h>
#include <omp.h>

static int l_manual_seed(lua_State *L)
{
    rng_manual_seed((uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

static int l_initial_seed(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)rng_get_seed());
    return 1;
}

/* The generator's state as {seed, offset}, to store in checkpoints. */
static int l_get_rng_state(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)rng_get_seed());
    lua_setfield(L, -2, "seed");
    lua_pushinteger(L, (lua_Integer)rng_get_offset());
    lua_setfield(L, -2, "offset");
    return 1;
}

static int l_set_rng_state(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "seed");
    lua_getfield(L, 1, "offset");
    rng_set_state((uint64_t)luaL_checkinteger(L, -2), (uint64_t)luaL_checkinteger(L, -1));
    return 0;
}

/* Threads for the CPU kernels, OpenBLAS and oneDNN. */
static int l_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "the number of threads must be in [1, 1024]");
    cpu_set_num_threads((int)n);
    openblas_set_num_threads((int)n);
    omp_set_num_threads((int)n); /* oneDNN's OpenMP runtime reads this */
    return 0;
}

static int l_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, cpu_num_threads());
    return 1;
}

static void push_stats(lua_State *L, device_type type)
{
    alloc_stats s = alloc_get_stats(type);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, s.live_bytes);
    lua_setfield(L, -2, "live_bytes");
    lua_pushinteger(L, s.peak_bytes);
    lua_setfield(L, -2, "peak_bytes");
    lua_pushinteger(L, s.cached_bytes);
    lua_setfield(L, -2, "cached_bytes");
    lua_pushinteger(L, s.n_allocs);
    lua_setfield(L, -2, "allocations");
    if (type == DEV_CUDA) {
        lua_pushinteger(L, cuda_cudnn_plans());
        lua_setfield(L, -2, "cudnn_plans");
    }
}

/* memory() -> {cpu = {live_bytes=, peak_bytes=, ...}, cuda = {...}} */
static int l_memory(lua_State *L)
{
    lua_createtable(L, 0, 2);
    push_stats(L, DEV_CPU);
    lua_setfield(L, -2, "cpu");
    push_stats(L, DEV_CUDA);
    lua_setfield(L, -2, "cuda");
    return 1;
}

static int l_empty_cache(lua_State *L)
{
    (void)L;
    alloc_empty_cache(DEV_CUDA);
    return 0;
}

static int l_cuda_built(lua_State *L)
{
    lua_pushboolean(L, cuda_built());
    return 1;
}

static int l_cuda_emulated(lua_State *L)
{
    lua_pushboolean(L, cuda_emulated());
    return 1;
}

static int l_cuda_device_count(lua_State *L)
{
    lua_pushinteger(L, cuda_device_count());
    return 1;
}

/* cuda_synchronize([index]): wait for the GPU's queued work; raises an error a
 * kernel flagged (an index out of range). */
static int l_cuda_synchronize(lua_State *L)
{
    lua_Integer i = luaL_optinteger(L, 1, 0);
    luaL_argcheck(L, i >= 0 && i < 1024, 1, "a GPU index (0 for the first)");
    if (cuda_synchronize((int)i) != 0)
        return lt_error(L);
    return 0;
}

/* cuda_tf32([on]) -> whether TF32 maths is allowed (after setting it when given) */
static int l_cuda_tf32(lua_State *L)
{
    return lt_switch(L, cuda_set_tf32, cuda_get_tf32);
}

/* autocast([on]) -> whether bf16 autocast is on (after setting it when given);
 * autocast(on, fn, ...) -> fn(...)'s results, run with the switch set to on and
 * then set back as it was (after an error too, which goes on up). */
static int l_autocast(lua_State *L)
{
    if (lua_isnoneornil(L, 2))
        return lt_switch(L, op_set_autocast, op_autocast);
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    bool was = op_autocast();
    op_set_autocast(lua_toboolean(L, 1));
    int rc = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0); /* fn (index 2) and its args */
    op_set_autocast(was);
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L) - 1; /* its results, after `on` */
}

/* cuda_deterministic([on]) -> whether GPU convolutions repeat bit for bit (after
 * setting it when given); always false in a build without CUDA */
static int l_cuda_deterministic(lua_State *L)
{
    return lt_switch(L, cuda_set_deterministic, cuda_get_deterministic);
}

static int l_cuda_host_waits(lua_State *L)
{
    lua_pushinteger(L, cuda_host_waits());
    return 1;
}

/* Seconds on a monotonic clock, for timing (differences only). */
static int l_wall_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"manual_seed", l_manual_seed}, {"initial_seed", l_initial_seed},
    {"get_rng_state", l_get_rng_state}, {"set_rng_state", l_set_rng_state},
    {"set_num_threads", l_set_num_threads}, {"get_num_threads", l_get_num_threads},
    {"memory", l_memory}, {"empty_cache", l_empty_cache}, {"cuda_built", l_cuda_built}, {"cuda_emulated", l_cuda_emulated},
    {"cuda_device_count", l_cuda_device_count}, {"cuda_synchronize", l_cuda_synchronize},
    {"cuda_tf32", l_cuda_tf32}, {"autocast", l_autocast},
    {"cuda_deterministic", l_cuda_deterministic}, {"cuda_host_waits", l_cuda_host_waits},
    {"wall_time", l_wall_time}, {NULL, NULL},
};

void l_sys_open(lua_State *L)
{
    lt_register(L, funcs, NULL);
}
