/* The caching allocator (csrc/cache_alloc.c) over host memory, for the specs: the
 * GPU uses the same code over cudaMalloc, and this lets a machine without a GPU
 * check its policy (reuse by size class, no device call in a steady loop, giving
 * the cache back when the device runs out).
 *
 *   local c = miles._cache_allocator(limit_bytes)
 *   local h = c:get(n)   -- a handle, or nil when out of memory
 *   local h = c:reuse(n) -- the same from the free lists only, or nil
 *   c:put(h); c:empty(); c:stats() -> {in_use_bytes=, cached_bytes=, device_allocs=, ...}
 *   local h = c:take(n)  -- a cached block of n's class, or nil (the device is not asked)
 *   c:adopt(other, h)    -- block h held through allocator `other`, onto c's free lists
 */
#include <lauxlib.h>
#include <stdlib.h>

#include "../cache_alloc.h"
#include "l_tensor.h"

#define PROBE_MT "miles.cache_allocator"
#define MAX_BLOCKS 4096

typedef struct {
    cache_alloc *c;
    size_t limit, used; /* the fake device's capacity and what it has handed out */
    void *blocks[MAX_BLOCKS];
    size_t sizes[MAX_BLOCKS];
} probe;

static void *fake_alloc(void *ud, size_t n)
{
    probe *p = ud;
    if (p->used + n > p->limit)
        return NULL;
    void *b = malloc(n);
    if (b)
        p->used += n;
    return b;
}

static void fake_release(void *ud, void *b, size_t n)
{
    probe *p = ud;
    p->used -= n;
    free(b);
}

static probe *check_probe(lua_State *L)
{
    probe *p = luaL_checkudata(L, 1, PROBE_MT);
    luaL_argcheck(L, p->c != NULL, 1, "the allocator was collected");
    return p;
}

static int l_new(lua_State *L)
{
    lua_Integer limit = luaL_checkinteger(L, 1);
    luaL_argcheck(L, limit > 0, 1, "a capacity in bytes");
    probe *p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = (probe){.limit = (size_t)limit};
    luaL_setmetatable(L, PROBE_MT);
    p->c = cache_alloc_new((cache_alloc_device){fake_alloc, fake_release, p});
    if (!p->c)
        return luaL_error(L, "_cache_allocator: out of memory");
    return 1;
}

/* Hold block b (asked as n bytes) under a new handle, pushed; or push nothing. */
static int hold(lua_State *L, probe *p, void *b, size_t n)
{
    if (!b)
        return 0;
    int h = 0;
    while (h < MAX_BLOCKS && p->blocks[h])
        h++;
    if (h == MAX_BLOCKS) {
        fake_release(p, b, cache_alloc_class(n));
        return luaL_error(L, "_cache_allocator: too many blocks held");
    }
    p->blocks[h] = b;
    p->sizes[h] = n;
    lua_pushinteger(L, h + 1);
    return 1;
}

static size_t check_size(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "a size in bytes");
    return (size_t)n;
}

static int l_get(lua_State *L)
{
    probe *p = check_probe(L);
    size_t n = check_size(L);
    return hold(L, p, cache_alloc_get(p->c, n), n);
}

static int l_reuse(lua_State *L)
{
    probe *p = check_probe(L);
    size_t n = check_size(L);
    return hold(L, p, cache_alloc_reuse(p->c, n), n);
}

static int l_take(lua_State *L)
{
    probe *p = check_probe(L);
    size_t n = check_size(L);
    return hold(L, p, cache_alloc_take_cached(p->c, n), n);
}

/* The block of the handle at stack index arg, held through p, no longer held. */
static void *release_handle(lua_State *L, probe *p, int arg, size_t *n)
{
    lua_Integer h = luaL_checkinteger(L, arg);
    luaL_argcheck(L, h >= 1 && h <= MAX_BLOCKS && p->blocks[h - 1], arg, "a held block");
    void *b = p->blocks[h - 1];
    *n = p->sizes[h - 1];
    p->blocks[h - 1] = NULL;
    return b;
}

static int l_adopt(lua_State *L)
{
    probe *p = check_probe(L);
    probe *from = luaL_checkudata(L, 2, PROBE_MT);
    size_t n;
    void *b = release_handle(L, from, 3, &n);
    cache_alloc_adopt(p->c, b, n);
    return 0;
}

static int l_put(lua_State *L)
{
    probe *p = check_probe(L);
    size_t n;
    void *b = release_handle(L, p, 2, &n);
    cache_alloc_put(p->c, b, n);
    return 0;
}

static int l_empty(lua_State *L)
{
    cache_alloc_empty(check_probe(L)->c);
    return 0;
}

static int l_stats(lua_State *L)
{
    probe *p = check_probe(L);
    cache_alloc_stats s = cache_alloc_get_stats(p->c);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, s.in_use_bytes);
    lua_setfield(L, -2, "in_use_bytes");
    lua_pushinteger(L, s.cached_bytes);
    lua_setfield(L, -2, "cached_bytes");
    lua_pushinteger(L, s.device_allocs);
    lua_setfield(L, -2, "device_allocs");
    lua_pushinteger(L, s.device_releases);
    lua_setfield(L, -2, "device_releases");
    lua_pushinteger(L, s.hits);
    lua_setfield(L, -2, "hits");
    lua_pushinteger(L, (lua_Integer)p->used);
    lua_setfield(L, -2, "device_bytes");
    return 1;
}

static int l_class(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "a size in bytes");
    lua_pushinteger(L, (lua_Integer)cache_alloc_class((size_t)n));
    return 1;
}

static int l_gc(lua_State *L)
{
    probe *p = luaL_checkudata(L, 1, PROBE_MT);
    cache_alloc_free(p->c);
    p->c = NULL;
    for (int h = 0; h < MAX_BLOCKS; h++)
        if (p->blocks[h])
            fake_release(p, p->blocks[h], cache_alloc_class(p->sizes[h]));
    return 0;
}

void l_cache_alloc_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"get", l_get},     {"reuse", l_reuse}, {"put", l_put},     {"take", l_take},
        {"adopt", l_adopt},
        {"empty", l_empty}, {"stats", l_stats}, {NULL, NULL},
    };
    luaL_newmetatable(L, PROBE_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {
        {"_cache_allocator", l_new}, {"_cache_alloc_class", l_class}, {NULL, NULL},
    };
    lt_register(L, funcs, NULL);
}
