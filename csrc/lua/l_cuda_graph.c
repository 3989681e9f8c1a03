/* CUDA graphs for Lua (csrc/cuda/cuda_graph.c); lua/miles/cuda_graph.lua builds
 * miles.cuda.graph on these:
 *
 *   miles._cuda_graph_begin(index)        start capturing GPU index's stream
 *   miles._cuda_graph_end(index, keep)    -> graph (keep), or nothing (discard)
 *   miles._cuda_capturing()               -> is a capture running
 *   g:launch()  g:refresh_begin()  g:refresh_end()  g:free()
 *   g:node_count()  g:updatable_count()  g:device()
 */
#include <lauxlib.h>

#include "../cuda/cuda_backend.h"
#include "l_tensor.h"

#define GRAPH_MT "miles.cuda_graph"

typedef struct {
    cuda_graph *g;
} graph_ud;

static cuda_graph *check_graph(lua_State *L)
{
    graph_ud *u = luaL_checkudata(L, 1, GRAPH_MT);
    if (!u->g)
        luaL_error(L, "this CUDA graph was freed");
    return u->g;
}

static int check_index(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 1);
    luaL_argcheck(L, i >= 0 && i < 1024, 1, "a GPU index (0 for the first)");
    return (int)i;
}

static int l_begin(lua_State *L)
{
    if (cuda_graph_begin(check_index(L)) != 0)
        return lt_error(L);
    return 0;
}

static int l_end(lua_State *L)
{
    int index = check_index(L);
    bool keep = lua_toboolean(L, 2);
    /* the userdata first, so that no Lua error can lose the graph */
    graph_ud *u = keep ? lua_newuserdatauv(L, sizeof *u, 0) : NULL;
    cuda_graph *g = cuda_graph_end(index, keep);
    if (!keep)
        return 0;
    if (!g)
        return lt_error(L);
    u->g = g;
    luaL_setmetatable(L, GRAPH_MT);
    return 1;
}

static int l_capturing(lua_State *L)
{
    lua_pushboolean(L, cuda_capturing_any());
    return 1;
}

static int l_launch(lua_State *L)
{
    if (cuda_graph_launch(check_graph(L)) != 0)
        return lt_error(L);
    return 0;
}

static int l_refresh_begin(lua_State *L)
{
    if (cuda_graph_refresh_begin(check_graph(L)) != 0)
        return lt_error(L);
    return 0;
}

static int l_refresh_end(lua_State *L)
{
    if (cuda_graph_refresh_end(check_graph(L)) != 0)
        return lt_error(L);
    return 0;
}

static int l_free(lua_State *L)
{
    graph_ud *u = luaL_checkudata(L, 1, GRAPH_MT);
    cuda_graph_free(u->g);
    u->g = NULL;
    return 0;
}

static int l_node_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)cuda_graph_node_count(check_graph(L)));
    return 1;
}

static int l_updatable_count(lua_State *L)
{
    lua_pushinteger(L, cuda_graph_updatable_count(check_graph(L)));
    return 1;
}

static int l_device(lua_State *L)
{
    lua_pushinteger(L, cuda_graph_device(check_graph(L)));
    return 1;
}

void l_cuda_graph_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"launch", l_launch},         {"refresh_begin", l_refresh_begin},
        {"refresh_end", l_refresh_end}, {"free", l_free},
        {"node_count", l_node_count}, {"updatable_count", l_updatable_count},
        {"device", l_device},         {NULL, NULL},
    };
    luaL_newmetatable(L, GRAPH_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_free);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {
        {"_cuda_graph_begin", l_begin},
        {"_cuda_graph_end", l_end},
        {"_cuda_capturing", l_capturing},
        {NULL, NULL},
    };
    lt_register(L, funcs, NULL);
}
