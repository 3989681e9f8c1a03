/* luaopen_miles_core: the module table, the tensor metatable, and the memory
 * hooks that tie the core's allocator to Lua's garbage collector. */
#include <pthread.h>
#include <stdatomic.h>

#include "../alloc.h"
#include "../version.h"
#include "l_repl.h"
#include "l_tensor.h"

/* Bytes allocated since the collector was last nudged; above this threshold it
 * runs an incremental step sized by those bytes, so that Lua collects dead
 * tensors in proportion to the memory they hold outside its heap. */
#define PRESSURE_STEP_BYTES (8u << 20)

static lua_State *main_L;
static pthread_t main_thread;
static _Atomic size_t pending_bytes;

static void on_pressure(void *ud, size_t nbytes)
{
    (void)ud;
    size_t now = atomic_fetch_add(&pending_bytes, nbytes) + nbytes;
    /* Only the thread that runs Lua may touch it (loader threads allocate too). */
    if (now < PRESSURE_STEP_BYTES || !main_L || !pthread_equal(pthread_self(), main_thread))
        return;
    atomic_store(&pending_bytes, 0);
    lua_gc(main_L, LUA_GCSTEP, (int)(now >> 10));
}

static void on_oom(void *ud)
{
    (void)ud;
    if (main_L && pthread_equal(pthread_self(), main_thread))
        lua_gc(main_L, LUA_GCCOLLECT);
}

int luaopen_miles_core(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    main_L = lua_tothread(L, -1);
    lua_pop(L, 1);
    main_thread = pthread_self();
    alloc_set_hooks(on_oom, on_pressure, NULL);

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
    lua_pushcfunction(L, l_repl);
    lua_setfield(L, -2, "repl");
    lua_pushstring(L, MILES_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
