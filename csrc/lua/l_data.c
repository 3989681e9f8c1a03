/* Lua bindings of the data loaders and of the cache's helpers: miles.checksum_file
 * and the table miles._data (loader, permutation, file-system helpers) that
 * lua/miles/data builds its API on. They check arguments, move values between Lua
 * and the core, and pass the core's errors on. The loader's worker threads never
 * see Lua: batches come back as core tensors and are pushed here, in the Lua
 * thread. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../data/checksum.h"
#include "../data/fsutil.h"
#include "../data/loader.h"
#include "l_tensor.h"

#define LD_LOADER_MT "miles.DataLoader"

/* The loader userdata: NULL once closed. A batch taken from the core stays in
 * `pending` until each tensor is pushed, so a Lua error half-way leaks nothing. */
typedef struct {
    loader *ld;
    loader_batch pending;
} l_loader;

/* --- reading the spec table --- */

/* t[key] as an integer in [lo, hi] (def when nil); raises naming the key. */
static lua_Integer field_int(lua_State *L, int t, const char *key, lua_Integer def,
                             lua_Integer lo, lua_Integer hi)
{
    lua_getfield(L, t, key);
    lua_Integer v = def;
    if (!lua_isnil(L, -1)) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < lo || v > hi)
            luaL_error(L, "loader: %s must be an integer in [%I, %I], got %s", key, lo, hi,
                       luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
    return v;
}

/* t[key] as a number (def when nil). */
static double field_num(lua_State *L, int t, const char *key, double def)
{
    lua_getfield(L, t, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "loader: %s must be a number, got %s", key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* t[key] as a boolean (def when nil). */
static bool field_bool(lua_State *L, int t, const char *key, bool def)
{
    lua_getfield(L, t, key);
    bool v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1))
            luaL_error(L, "loader: %s must be a boolean, got %s", key, luaL_typename(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* t[key] as a tensor (NULL when nil and optional). The tensor stays referenced by
 * the spec table, which is on the stack for the whole call. */
static tensor *field_tensor(lua_State *L, int t, const char *key, bool optional)
{
    lua_getfield(L, t, key);
    tensor *x = lt_test(L, -1);
    if (!x && !(optional && lua_isnil(L, -1)))
        luaL_error(L, "loader: %s must be a tensor, got %s", key, luaL_typename(L, -1));
    lua_pop(L, 1);
    return x;
}

/* The list t[key] of numbers into out (at most cap); returns the count. */
static int field_floats(lua_State *L, int t, const char *key, float *out, int cap)
{
    lua_getfield(L, t, key);
    int n = 0;
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        n = (int)luaL_len(L, -1);
        if (n > cap)
            luaL_error(L, "loader: %s has %d values (at most %d)", key, n, cap);
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (!lua_isnumber(L, -1))
                luaL_error(L, "loader: %s[%d] must be a number", key, i + 1);
            out[i] = (float)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return n;
}

/* Channels a mean/std list may have at most. */
#define LD_MAX_NORM 4096

/* One source table at the top of the stack into m; means and stds go to
 * norm[0..LD_MAX_NORM) and norm[LD_MAX_NORM..). */
static void read_source(lua_State *L, loader_modality *m, float *norm)
{
    int t = lua_gettop(L);
    luaL_checktype(L, t, LUA_TTABLE);
    lua_getfield(L, t, "name");
    m->name = luaL_checkstring(L, -1); /* kept alive by the spec table */
    lua_pop(L, 1);
    m->src = field_tensor(L, t, "tensor", false);
    m->scale = (float)field_num(L, t, "scale", 1.0);
    int nm = field_floats(L, t, "mean", norm, LD_MAX_NORM);
    int ns = field_floats(L, t, "std", norm + LD_MAX_NORM, LD_MAX_NORM);
    if (nm != ns && nm && ns)
        luaL_error(L, "loader: modality '%s': %d means but %d stds", m->name, nm, ns);
    for (int i = nm; i < ns; i++)
        norm[i] = 0.0f;
    for (int i = ns; i < nm; i++)
        norm[LD_MAX_NORM + i] = 1.0f;
    m->nnorm = nm > ns ? nm : ns;
    m->mean = norm;
    m->std = norm + LD_MAX_NORM;
    m->flip = field_bool(L, t, "flip", false);
    m->crop = (int)field_int(L, t, "crop", 0, 0, 1 << 20);
    m->time_shift = (int)field_int(L, t, "time_shift", 0, 0, 1 << 30);
    m->shift_zero = field_bool(L, t, "shift_zero", false);
    m->noise = (float)field_num(L, t, "noise", 0.0);
}

/* The scalar fields of the spec at index t into cfg. */
static void read_options(lua_State *L, int t, loader_config *cfg)
{
    cfg->batch_size = field_int(L, t, "batch_size", 1, 1, (lua_Integer)1 << 40);
    cfg->drop_last = field_bool(L, t, "drop_last", false);
    cfg->shuffle = field_bool(L, t, "shuffle", false);
    cfg->seed = (uint64_t)field_int(L, t, "seed", 0, LUA_MININTEGER, LUA_MAXINTEGER);
    cfg->workers = (int)field_int(L, t, "workers", 0, 0, LOADER_MAX_WORKERS);
    cfg->prefetch = (int)field_int(L, t, "prefetch", 2, 1, LOADER_MAX_PREFETCH);
    cfg->pin_memory = field_bool(L, t, "pin_memory", false);
    cfg->fail_batch = field_int(L, t, "fail_batch", 0, 0, LUA_MAXINTEGER) - 1;
    cfg->index_base = 1;
}

/* The tensors the loader needs contiguous, as new references (the C-only phase:
 * no Lua error may happen between these and their release). */
typedef struct {
    tensor *src[LOADER_MAX_MODALITIES];
    tensor *labels, *indices;
} dense_refs;

/* Make cfg's tensors contiguous (new references in d); 0 or -1 with the error. */
static int make_dense(loader_config *cfg, loader_modality *mods, tensor *idx, dense_refs *d)
{
    memset(d, 0, sizeof *d);
    for (int m = 0; m < cfg->n_mod; m++) {
        if (!(d->src[m] = tensor_contiguous(mods[m].src)))
            return -1;
        mods[m].src = d->src[m];
    }
    if (cfg->labels && !(d->labels = tensor_contiguous(cfg->labels)))
        return -1;
    if (!(d->indices = tensor_contiguous(idx)))
        return -1;
    cfg->labels = d->labels;
    cfg->indices = tensor_data(d->indices);
    cfg->n_indices = tensor_numel(d->indices);
    return 0;
}

/* Drop the references make_dense took. */
static void release_dense(dense_refs *d)
{
    for (int m = 0; m < LOADER_MAX_MODALITIES; m++)
        tensor_decref(d->src[m]);
    tensor_decref(d->labels);
    tensor_decref(d->indices);
}

/* The split's indices: a 1-D int64 CPU tensor. */
static tensor *check_indices(lua_State *L, int t)
{
    tensor *idx = field_tensor(L, t, "indices", false);
    if (idx->dtype != DT_I64 || idx->ndim != 1)
        luaL_error(L, "loader: indices must be a 1-D int64 tensor, got %s with %d dims",
                   dtype_name(idx->dtype), idx->ndim);
    if (!device_eq(tensor_device(idx), DEVICE_CPU))
        luaL_error(L, "loader: indices must be on the cpu");
    return idx;
}

/* miles._data.loader(spec) -> loader: spec = {sources = {{name=, tensor=, scale=,
 * mean=, std=, flip=, crop=, time_shift=, shift_zero=, noise=}, ...}, labels =,
 * indices = (1-based int64), batch_size=, drop_last=, shuffle=, seed=, workers=,
 * prefetch=, pin_memory=, fail_batch= (tests: 1-based batch that fails)}. */
static int l_loader_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    loader_config cfg = {0};
    loader_modality mods[LOADER_MAX_MODALITIES];
    memset(mods, 0, sizeof mods);
    read_options(L, 1, &cfg);
    cfg.labels = field_tensor(L, 1, "labels", true);
    tensor *idx = check_indices(L, 1);
    if (lua_getfield(L, 1, "sources") != LUA_TTABLE)
        return luaL_error(L, "loader: sources must be a list of tables");
    lua_Integer n = luaL_len(L, -1);
    if (n > LOADER_MAX_MODALITIES)
        return luaL_error(L, "loader: %I modalities (at most %d)", n, LOADER_MAX_MODALITIES);
    cfg.n_mod = (int)n;
    float *norm = lua_newuserdatauv(L, sizeof(float) * 2 * LD_MAX_NORM * (size_t)(n ? n : 1), 0);
    for (int m = 0; m < cfg.n_mod; m++) {
        lua_rawgeti(L, -2, m + 1);
        read_source(L, &mods[m], norm + (size_t)m * 2 * LD_MAX_NORM);
        lua_pop(L, 1);
    }
    cfg.mods = mods;
    l_loader *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, LD_LOADER_MT);
    dense_refs d;
    if (make_dense(&cfg, mods, idx, &d) == 0)
        u->ld = loader_new(&cfg);
    release_dense(&d);
    if (!u->ld)
        return lt_error(L);
    return 1;
}

/* --- the loader's methods --- */

/* The open loader at idx, or an error. */
static l_loader *check_loader(lua_State *L, int idx)
{
    l_loader *u = luaL_checkudata(L, idx, LD_LOADER_MT);
    if (!u->ld)
        luaL_error(L, "loader: the loader is closed");
    return u;
}

/* __gc / __close / close(): stop and join the threads, free everything; safe to
 * call twice. */
static int l_loader_close(lua_State *L)
{
    l_loader *u = luaL_checkudata(L, 1, LD_LOADER_MT);
    loader_batch_free(&u->pending);
    loader_free(u->ld);
    u->ld = NULL;
    return 0;
}

/* loader:reset(epoch): start the epoch from its first batch. */
static int l_loader_reset(lua_State *L)
{
    l_loader *u = check_loader(L, 1);
    lua_Integer e = luaL_checkinteger(L, 2);
    if (loader_start(u->ld, (uint64_t)e) != 0)
        return lt_error(L);
    return 0;
}

/* loader:stop(): cancel the epoch; the workers go idle, prepared batches are freed. */
static int l_loader_stop(lua_State *L)
{
    loader_stop(check_loader(L, 1)->ld);
    return 0;
}

/* Push the pending batch as {<modality> = x, y = labels, index = indices}. */
static void push_batch(lua_State *L, l_loader *u)
{
    loader_batch *b = &u->pending;
    lua_createtable(L, 0, b->n_mod + 2);
    for (int m = 0; m < b->n_mod; m++) {
        lt_push(L, b->x[m]);
        b->x[m] = NULL;
        lua_setfield(L, -2, loader_modality_name(u->ld, m));
    }
    if (b->y) {
        lt_push(L, b->y);
        b->y = NULL;
        lua_setfield(L, -2, "y");
    }
    lt_push(L, b->index);
    b->index = NULL;
    lua_setfield(L, -2, "index");
}

/* loader:next() -> batch table, or nil at the end of the epoch. */
static int l_loader_next(lua_State *L)
{
    l_loader *u = check_loader(L, 1);
    loader_batch_free(&u->pending);
    int rc = loader_next(u->ld, &u->pending);
    if (rc < 0)
        return lt_error(L);
    if (rc == 0) {
        lua_pushnil(L);
        return 1;
    }
    push_batch(L, u);
    return 1;
}

/* loader:stats() -> {batches=, waits=, wait_seconds=}: how often the consumer
 * had to wait for a batch. */
static int l_loader_stats(lua_State *L)
{
    loader_stats s = loader_get_stats(check_loader(L, 1)->ld);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, s.batches);
    lua_setfield(L, -2, "batches");
    lua_pushinteger(L, s.waits);
    lua_setfield(L, -2, "waits");
    lua_pushnumber(L, s.wait_seconds);
    lua_setfield(L, -2, "wait_seconds");
    return 1;
}

/* #loader: batches per epoch. */
static int l_loader_len(lua_State *L)
{
    lua_pushinteger(L, loader_num_batches(check_loader(L, 1)->ld));
    return 1;
}

/* loader.<name>: a method, or a property (num_batches, size, closed). */
static int l_loader_index(lua_State *L)
{
    l_loader *u = luaL_checkudata(L, 1, LD_LOADER_MT);
    const char *k = luaL_checkstring(L, 2);
    luaL_getmetatable(L, LD_LOADER_MT);
    lua_getfield(L, -1, "methods");
    if (lua_getfield(L, -1, k) != LUA_TNIL)
        return 1;
    if (strcmp(k, "closed") == 0) {
        lua_pushboolean(L, u->ld == NULL);
        return 1;
    }
    if (!u->ld)
        return luaL_error(L, "loader: the loader is closed");
    if (strcmp(k, "num_batches") == 0)
        lua_pushinteger(L, loader_num_batches(u->ld));
    else if (strcmp(k, "size") == 0)
        lua_pushinteger(L, loader_num_samples(u->ld));
    else
        lua_pushnil(L);
    return 1;
}

/* tostring(loader): its size, or that it is closed. */
static int l_loader_tostring(lua_State *L)
{
    l_loader *u = luaL_checkudata(L, 1, LD_LOADER_MT);
    if (!u->ld)
        lua_pushstring(L, "DataLoader (closed)");
    else
        lua_pushfstring(L, "DataLoader (%I samples, %I batches)",
                        (lua_Integer)loader_num_samples(u->ld),
                        (lua_Integer)loader_num_batches(u->ld));
    return 1;
}

/* --- helpers of the cache and the splits --- */

/* miles._data.permutation(n, seed [, stream]) -> int64 tensor: a permutation of
 * 1..n that depends only on (n, seed, stream). */
static int l_permutation(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer seed = luaL_checkinteger(L, 2);
    lua_Integer stream = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, n >= 0 && n < ((lua_Integer)1 << 40), 1, "n out of range");
    tensor *t = tensor_empty(DT_I64, 1, (int64_t[]){n}, DEVICE_CPU);
    if (!t)
        return lt_error(L);
    lt_push(L, t);
    int64_t *p = tensor_data(t);
    loader_permutation(p, n, (uint64_t)seed, (uint64_t)stream);
    for (lua_Integer i = 0; i < n; i++)
        p[i] += 1;
    return 1;
}

/* miles.checksum_file(path) -> "xxh64:<16 hex digits>", size in bytes. */
static int l_checksum_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    uint64_t h;
    int64_t size;
    if (checksum_file(path, &h, &size) != 0)
        return lt_error(L);
    char hex[24];
    snprintf(hex, sizeof hex, "xxh64:%016llx", (unsigned long long)h);
    lua_pushstring(L, hex);
    lua_pushinteger(L, size);
    return 2;
}

/* miles._data.checksum_string(s) -> "xxh64:<hex>" of a Lua string's bytes. */
static int l_checksum_string(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[24];
    snprintf(hex, sizeof hex, "xxh64:%016llx", (unsigned long long)checksum_bytes(s, n));
    lua_pushstring(L, hex);
    return 1;
}

/* Raise the core's error unless rc is 0. */
static int check_rc(lua_State *L, int rc)
{
    return rc != 0 ? lt_error(L) : 0;
}

/* miles._data.mkdir_p(path): make a directory and its parents. */
static int l_mkdir_p(lua_State *L)
{
    return check_rc(L, fsutil_mkdir_p(luaL_checkstring(L, 1)));
}

/* miles._data.remove_tree(path): remove a file or a tree (links not followed). */
static int l_remove_tree(lua_State *L)
{
    return check_rc(L, fsutil_remove_tree(luaL_checkstring(L, 1)));
}

/* miles._data.fsync(path): flush a file or a directory to disk. */
static int l_fsync(lua_State *L)
{
    return check_rc(L, fsutil_fsync(luaL_checkstring(L, 1)));
}

#define LD_LIST_MT "miles.data_name_list"

/* A C list of names held by a userdata while it is copied to Lua. */
typedef struct {
    char **names;
    size_t n;
} name_list;

/* __gc of the name list box. */
static int name_list_gc(lua_State *L)
{
    name_list *b = luaL_checkudata(L, 1, LD_LIST_MT);
    fsutil_free_list(b->names, b->n);
    b->names = NULL;
    b->n = 0;
    return 0;
}

/* miles._data.list_dir(path) -> {names} (unsorted; no "." or ".."). */
static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    name_list *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->names = NULL;
    b->n = 0;
    luaL_setmetatable(L, LD_LIST_MT);
    if (fsutil_list_dir(path, &b->names, &b->n) != 0)
        return lt_error(L);
    lua_createtable(L, b->n > 1000000 ? 0 : (int)b->n, 0);
    for (size_t i = 0; i < b->n; i++) {
        lua_pushstring(L, b->names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* miles._data.pid_alive(pid) -> does the process run? */
static int l_pid_alive(lua_State *L)
{
    lua_pushboolean(L, fsutil_pid_alive((long)luaL_checkinteger(L, 1)));
    return 1;
}

/* miles._data.getpid() -> this process's id. */
static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* miles._data.isatty(fd) -> is file descriptor fd (0, 1, 2) a terminal? */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)) == 1);
    return 1;
}

/* The loader's metatable, with its methods in a "methods" field. */
static void make_loader_metatable(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", l_loader_close},   {"__close", l_loader_close}, {"__len", l_loader_len},
        {"__index", l_loader_index}, {"__tostring", l_loader_tostring}, {NULL, NULL},
    };
    static const luaL_Reg methods[] = {
        {"reset", l_loader_reset}, {"next", l_loader_next},   {"stop", l_loader_stop},
        {"close", l_loader_close}, {"stats", l_loader_stats}, {NULL, NULL},
    };
    luaL_newmetatable(L, LD_LOADER_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_newmetatable(L, LD_LIST_MT);
    lua_pushcfunction(L, name_list_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

/* Register miles._data and miles.checksum_file in the module table at the top. */
void l_data_open(lua_State *L)
{
    make_loader_metatable(L);
    static const luaL_Reg helpers[] = {
        {"loader", l_loader_new},       {"permutation", l_permutation},
        {"checksum_string", l_checksum_string},
        {"mkdir_p", l_mkdir_p},         {"remove_tree", l_remove_tree},
        {"fsync", l_fsync},             {"list_dir", l_list_dir},
        {"pid_alive", l_pid_alive},     {"getpid", l_getpid},
        {"isatty", l_isatty},           {NULL, NULL},
    };
    luaL_newlib(L, helpers);
    lua_setfield(L, -2, "_data");
    static const luaL_Reg funcs[] = {{"checksum_file", l_checksum_file}, {NULL, NULL}};
    lt_register(L, funcs, NULL);
}
