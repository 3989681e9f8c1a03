/* Bindings of the MILES decision (csrc/miles.h) and of the metrics
 * (csrc/metrics.h). They read Lua values, call the core and build the result
 * tables; no maths here. Modalities and classes are numbered from 1.
 *
 *   miles.decide(m_fused, {m_1, ..., m_n}, {tau =, mu =, reset_other =, prev =})
 *       -> {u = {...}, delta =, scale = {...}, action =, slowed = {...}, reason =}
 *   miles.head_gap({m_1, ..., m_n}) -> the paper's Delta (max - min)
 *   miles.metrics.accuracy(x, y [, opts])       miles.metrics.topk(x, y, k [, opts])
 *   miles.metrics.confusion(x, y [, C])         miles.metrics.f1(x, y [, opts])
 *   miles.metrics.precision(x, y [, opts])      miles.metrics.recall(x, y [, opts])
 *   miles.metrics.Accumulator(opts) -> acc; acc:add(x, y), acc:result(), acc:reset(),
 *       acc:count(), acc:close()
 * opts: {classes =, multilabel =, threshold =, probs =, zero_division =, average =}
 * (average for f1/precision/recall, default "macro"); Accumulator opts add
 * topk = {k, ...} and confusion = true|false (default: single-label with
 * classes <= 4096). */
#include <stdio.h>
#include <string.h>

#include "../error.h"
#include "../metrics.h"
#include "../miles.h"
#include "l_tensor.h"

#define ACC_MT "miles.metrics.Accumulator"
/* Above this many classes the accumulator keeps no confusion matrix unless asked. */
#define AUTO_CONFUSION_MAX 4096

/* Raise the core's message as it stands (it names the function already). */
static int raise_core(lua_State *L)
{
    return luaL_error(L, "%s", err_msg());
}

/* Raise unless every key of the options table at idx is one of `known`. */
static void check_keys(lua_State *L, int idx, const char *who, const char *const *known)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        bool ok = false;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        for (int i = 0; k && known[i]; i++)
            ok = ok || strcmp(k, known[i]) == 0;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; known[i]; i++) {
                luaL_addstring(&b, i ? ", " : "");
                luaL_addstring(&b, known[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown option '%s' (known: %s)", who,
                       k ? k : luaL_typename(L, -2), lua_tostring(L, -1));
        }
    }
}

/* Field k of the options table at idx (0: none) as a number, or def when nil. */
static double opt_num(lua_State *L, int idx, const char *who, const char *k, double def)
{
    if (idx == 0 || lua_getfield(L, idx, k) == LUA_TNIL) {
        if (idx)
            lua_pop(L, 1);
        return def;
    }
    int ok;
    double v = (double)lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: '%s' must be a number, got %s", who, k, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Field k as a boolean, def when nil; anything but a boolean is an error. */
static bool opt_bool(lua_State *L, int idx, const char *who, const char *k, bool def)
{
    if (idx == 0)
        return def;
    int t = lua_getfield(L, idx, k);
    bool v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "%s: '%s' must be a boolean, got %s", who, k, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* The value on top as an integer (3 and 3.0 alike), or an error naming field k. */
static int64_t top_integer(lua_State *L, const char *who, const char *k)
{
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: '%s' must be an integer, got %s", who, k,
                   lua_type(L, -1) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, -1));
    return (int64_t)v;
}

/* Element i (1-based) of the list at idx, which must be a number. */
static double list_num(lua_State *L, int idx, lua_Integer i, const char *who, const char *what)
{
    int ok;
    lua_rawgeti(L, idx, i);
    double v = (double)lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: %s[%d] must be a number, got %s", who, what, (int)i,
                   luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* The metrics list at idx: between 2 and MILES_MAX_MODALITIES numbers. */
static int read_metrics(lua_State *L, int idx, const char *who, double *m)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n < 2 || n > MILES_MAX_MODALITIES)
        luaL_error(L, "%s: the number of modalities must be in [2, %d], got %d", who,
                   MILES_MAX_MODALITIES, (int)n);
    for (lua_Integer i = 1; i <= n; i++)
        m[i - 1] = list_num(L, idx, i, who, "metrics");
    return (int)n;
}

/* ------------------------------------------------------------------------------
 * miles.decide */

/* opts.prev: nil (all 1) or a list of n numbers; returns whether given. */
static bool read_prev(lua_State *L, int idx, int n, double *prev)
{
    if (idx == 0 || lua_getfield(L, idx, "prev") == LUA_TNIL) {
        if (idx)
            lua_pop(L, 1);
        return false;
    }
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        luaL_error(L, "miles.decide: 'prev' must be a list of scales, got %s",
                   luaL_typename(L, t));
    if ((int)lua_rawlen(L, t) != n)
        luaL_error(L, "miles.decide: prev has %d scales but there are %d modalities",
                   (int)lua_rawlen(L, t), n);
    for (int i = 0; i < n; i++)
        prev[i] = list_num(L, t, i + 1, "miles.decide", "prev");
    lua_pop(L, 1);
    return true;
}

/* Push a Lua list of n numbers. */
static void push_numbers(lua_State *L, const double *v, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Push the action name: "slow_1", "slow_1_3" for MILES_SLOW. */
static void push_action(lua_State *L, const miles_result *r, const bool *slowed, int n)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, miles_action_name(r->action));
    for (int i = 0; r->action == MILES_SLOW && i < n; i++)
        if (slowed[i]) {
            lua_pushfstring(L, "_%d", i + 1);
            luaL_addvalue(&b);
        }
    luaL_pushresult(&b);
}

/* The result table of miles.decide. */
static void push_decision(lua_State *L, const miles_result *r, const double *u,
                          const double *scale, const bool *slowed, int n, const miles_opts *o)
{
    char reason[512];
    lua_createtable(L, 0, 6);
    push_numbers(L, u, n);
    lua_setfield(L, -2, "u");
    lua_pushnumber(L, r->delta);
    lua_setfield(L, -2, "delta");
    push_numbers(L, scale, n);
    lua_setfield(L, -2, "scale");
    push_action(L, r, slowed, n);
    lua_setfield(L, -2, "action");
    lua_createtable(L, r->n_slowed, 0);
    for (int i = 0, k = 0; i < n; i++)
        if (slowed[i]) {
            lua_pushinteger(L, i + 1);
            lua_rawseti(L, -2, ++k);
        }
    lua_setfield(L, -2, "slowed");
    miles_reason(r, u, slowed, n, o, reason, sizeof reason);
    lua_pushstring(L, reason);
    lua_setfield(L, -2, "reason");
}

/* miles.decide(m_fused, {m_1, ..., m_n}, opts) */
static int l_decide(lua_State *L)
{
    static const char *const known[] = {"tau", "mu", "reset_other", "prev", NULL};
    double m[MILES_MAX_MODALITIES], prev[MILES_MAX_MODALITIES], u[MILES_MAX_MODALITIES],
        scale[MILES_MAX_MODALITIES];
    bool slowed[MILES_MAX_MODALITIES];
    double mf = (double)luaL_checknumber(L, 1);
    int n = read_metrics(L, 2, "miles.decide", m);
    int oi = lua_isnoneornil(L, 3) ? 0 : 3;
    if (oi) {
        luaL_checktype(L, oi, LUA_TTABLE);
        check_keys(L, oi, "miles.decide", known);
    }
    miles_opts o;
    o.tau = opt_num(L, oi, "miles.decide", "tau", 0.2);
    o.mu = opt_num(L, oi, "miles.decide", "mu", 0.5);
    o.reset_other = opt_bool(L, oi, "miles.decide", "reset_other", false);
    bool has_prev = read_prev(L, oi, n, prev);
    miles_result r;
    if (miles_decide(mf, m, n, has_prev ? prev : NULL, &o, u, scale, slowed, &r) != 0)
        return raise_core(L);
    push_decision(L, &r, u, scale, slowed, n, &o);
    return 1;
}

/* miles.head_gap({m_1, ..., m_n}) */
static int l_head_gap(lua_State *L)
{
    double m[MILES_MAX_MODALITIES], gap;
    int n = read_metrics(L, 1, "miles.head_gap", m);
    if (miles_head_gap(m, n, &gap) != 0)
        return raise_core(L);
    lua_pushnumber(L, gap);
    return 1;
}

/* ------------------------------------------------------------------------------
 * The accumulator userdata */

typedef struct {
    metrics_acc *acc; /* NULL until created, and after close */
} acc_box;

/* __gc and __close: free the counts; safe to call twice. */
static int acc_gc(lua_State *L)
{
    acc_box *b = luaL_checkudata(L, 1, ACC_MT);
    metrics_acc_free(b->acc);
    b->acc = NULL;
    return 0;
}

/* The open accumulator at idx, or an error naming the method. */
static metrics_acc *acc_check(lua_State *L, int idx, const char *who)
{
    acc_box *b = luaL_checkudata(L, idx, ACC_MT);
    if (!b->acc)
        luaL_error(L, "%s: the accumulator was closed", who);
    return b->acc;
}

/* A new empty box on the stack (before the counts are allocated, so that a Lua
 * error at any later point frees them through __gc). */
static acc_box *acc_push_box(lua_State *L)
{
    acc_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->acc = NULL;
    luaL_setmetatable(L, ACC_MT);
    return b;
}

/* opts.topk: nil, a number, or a list of numbers. */
static void read_topk(lua_State *L, int idx, const char *who, metrics_opts *o)
{
    int t = lua_getfield(L, idx, "topk");
    if (t == LUA_TNUMBER) {
        o->nk = 1;
        o->topk[0] = top_integer(L, who, "topk");
    } else if (t == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        if (n > METRICS_MAX_TOPK)
            luaL_error(L, "%s: at most %d top-k values may be tracked, got %d", who,
                       METRICS_MAX_TOPK, (int)n);
        o->nk = (int)n;
        for (lua_Integer i = 1; i <= n; i++) {
            char name[32];
            snprintf(name, sizeof name, "topk[%d]", (int)i);
            lua_rawgeti(L, -1, i);
            o->topk[i - 1] = top_integer(L, who, name);
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: 'topk' must be a number or a list of numbers, got %s", who,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* The options shared by every metric: multilabel, threshold, probs, zero_division. */
static void read_common(lua_State *L, int idx, const char *who, metrics_opts *o)
{
    o->multilabel = opt_bool(L, idx, who, "multilabel", false);
    o->probs = opt_bool(L, idx, who, "probs", false);
    o->threshold = opt_num(L, idx, who, "threshold", 0.5);
    o->zero_division = opt_num(L, idx, who, "zero_division", 0);
    o->base = 1;
}

/* metrics.Accumulator(opts) */
static int l_acc_new(lua_State *L)
{
    static const char *const known[] = {"classes", "multilabel", "topk", "threshold",
                                        "probs", "zero_division", "confusion", NULL};
    const char *who = "metrics.Accumulator";
    luaL_checktype(L, 1, LUA_TTABLE);
    check_keys(L, 1, who, known);
    lua_getfield(L, 1, "classes");
    metrics_opts o = metrics_default_opts(top_integer(L, who, "classes"));
    lua_pop(L, 1);
    read_common(L, 1, who, &o);
    read_topk(L, 1, who, &o);
    bool auto_cm = !o.multilabel && o.classes <= AUTO_CONFUSION_MAX;
    o.confusion = opt_bool(L, 1, who, "confusion", auto_cm);
    acc_box *b = acc_push_box(L);
    b->acc = metrics_acc_new(&o, who);
    if (!b->acc)
        return raise_core(L);
    return 1;
}

/* acc:add(x, y) -> acc */
static int l_acc_add(lua_State *L)
{
    metrics_acc *a = acc_check(L, 1, "Accumulator:add");
    tensor *x = lt_check(L, 2), *y = lt_check(L, 3);
    if (metrics_acc_add(a, x, y, "Accumulator:add") != 0)
        return raise_core(L);
    lua_settop(L, 1);
    return 1;
}

/* acc:reset() -> acc */
static int l_acc_reset(lua_State *L)
{
    metrics_acc_reset(acc_check(L, 1, "Accumulator:reset"));
    lua_settop(L, 1);
    return 1;
}

/* acc:count() -> the number of samples added since creation or reset */
static int l_acc_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)metrics_acc_count(acc_check(L, 1, "Accumulator:count")));
    return 1;
}

/* Push the C x C confusion counts as an int64 tensor. */
static void push_confusion(lua_State *L, const int64_t *cm, int64_t C)
{
    int64_t shape[2] = {C, C};
    tensor *t = tensor_empty(DT_I64, 2, shape, DEVICE_CPU);
    if (t)
        memcpy(tensor_data(t), cm, (size_t)(C * C) * sizeof(int64_t));
    lt_push(L, t);
}

/* Set the per-class lists precision, recall, f1 and support in the table on top. */
static void set_per_class(lua_State *L, const metrics_acc *a)
{
    static const char *const names[] = {"precision", "recall", "f1", "support"};
    int64_t C = metrics_acc_opts(a)->classes;
    for (int f = 0; f < 4; f++) {
        lua_createtable(L, (int)C, 0);
        for (int64_t c = 0; c < C; c++) {
            metrics_prf v;
            int64_t s;
            metrics_acc_class(a, c, &v, &s);
            if (f == 3)
                lua_pushinteger(L, (lua_Integer)s);
            else
                lua_pushnumber(L, f == 0 ? v.precision : f == 1 ? v.recall : v.f1);
            lua_rawseti(L, -2, (lua_Integer)c + 1);
        }
        lua_setfield(L, -2, names[f]);
    }
}

/* t[name] = v for the table on top. */
static void set_number(lua_State *L, const char *name, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
}

/* Set f1_<avg>, precision_<avg> and recall_<avg> for every average. */
static void set_averages(lua_State *L, const metrics_acc *a, const char *who)
{
    char key[32];
    for (int avg = 0; avg < METRICS_AVERAGES; avg++) {
        metrics_prf v;
        if (metrics_acc_average(a, (metrics_average)avg, &v, who) != 0)
            raise_core(L);
        const char *name = metrics_average_name((metrics_average)avg);
        snprintf(key, sizeof key, "f1_%s", name);
        set_number(L, key, v.f1);
        snprintf(key, sizeof key, "precision_%s", name);
        set_number(L, key, v.precision);
        snprintf(key, sizeof key, "recall_%s", name);
        set_number(L, key, v.recall);
    }
}

/* acc:result() -> a table of every metric */
static int l_acc_result(lua_State *L)
{
    const char *who = "Accumulator:result";
    metrics_acc *a = acc_check(L, 1, who);
    const metrics_opts *o = metrics_acc_opts(a);
    double acc;
    if (metrics_acc_accuracy(a, &acc, who) != 0)
        return raise_core(L);
    lua_createtable(L, 0, 24);
    lua_pushinteger(L, (lua_Integer)metrics_acc_count(a));
    lua_setfield(L, -2, "n");
    lua_pushinteger(L, (lua_Integer)o->classes);
    lua_setfield(L, -2, "classes");
    lua_pushboolean(L, o->multilabel);
    lua_setfield(L, -2, "multilabel");
    lua_pushnumber(L, acc);
    lua_setfield(L, -2, "accuracy");
    for (int i = 0; i < o->nk; i++) {
        double v;
        char key[32];
        metrics_acc_topk(a, o->topk[i], &v, who);
        snprintf(key, sizeof key, "top%lld", (long long)o->topk[i]);
        set_number(L, key, v);
    }
    set_averages(L, a, who);
    set_per_class(L, a);
    if (metrics_acc_confusion(a)) {
        push_confusion(L, metrics_acc_confusion(a), o->classes);
        lua_setfield(L, -2, "confusion");
    }
    return 1;
}

/* "metrics.Accumulator(classes=3, single-label, n=100)" */
static int acc_tostring(lua_State *L)
{
    acc_box *b = luaL_checkudata(L, 1, ACC_MT);
    if (!b->acc) {
        lua_pushstring(L, "metrics.Accumulator(closed)");
        return 1;
    }
    const metrics_opts *o = metrics_acc_opts(b->acc);
    lua_pushfstring(L, "metrics.Accumulator(classes=%d, %s, n=%d)", (int)o->classes,
                    o->multilabel ? "multi-label" : "single-label",
                    (int)metrics_acc_count(b->acc));
    return 1;
}

/* ------------------------------------------------------------------------------
 * One-shot metrics: a temporary accumulator fed once */

/* The number of classes: opts.classes, else `hint` (> 0), else the width of
 * 2-D predictions. */
static int64_t oneshot_classes(lua_State *L, int oi, const char *who, tensor *x, int64_t hint)
{
    if (oi && lua_getfield(L, oi, "classes") != LUA_TNIL)
        hint = top_integer(L, who, "classes");
    if (oi)
        lua_pop(L, 1);
    if (hint > 0)
        return hint;
    if (x->ndim == 2)
        return x->shape[1];
    luaL_error(L, "%s: pass the number of classes (classes = C) when the predictions are "
                  "class indices", who);
    return 0;
}

/* Check the one-shot options table at idx (0 when absent) for unknown keys. */
static int oneshot_opts(lua_State *L, int idx, const char *who)
{
    static const char *const known[] = {"classes", "multilabel", "threshold", "probs",
                                        "zero_division", "average", NULL};
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    check_keys(L, idx, who, known);
    return idx;
}

/* A temporary accumulator (left on the stack, freed by the collector) fed with
 * x = arg 1 and y = arg 2. o arrives with the top-k and confusion fields set. */
static metrics_acc *oneshot(lua_State *L, int oi, const char *who, int64_t classes,
                            metrics_opts *o)
{
    tensor *x = lt_check(L, 1), *y = lt_check(L, 2);
    o->classes = oneshot_classes(L, oi, who, x, classes);
    read_common(L, oi, who, o);
    acc_box *b = acc_push_box(L);
    b->acc = metrics_acc_new(o, who);
    if (!b->acc || metrics_acc_add(b->acc, x, y, who) != 0)
        raise_core(L);
    return b->acc;
}

/* metrics.accuracy(x, y [, opts]) */
static int l_accuracy(lua_State *L)
{
    const char *who = "metrics.accuracy";
    int oi = oneshot_opts(L, 3, who);
    metrics_opts o = metrics_default_opts(0);
    double v;
    if (metrics_acc_accuracy(oneshot(L, oi, who, 0, &o), &v, who) != 0)
        return raise_core(L);
    lua_pushnumber(L, v);
    return 1;
}

/* metrics.topk(x, y, k [, opts]) */
static int l_topk(lua_State *L)
{
    const char *who = "metrics.topk";
    metrics_opts o = metrics_default_opts(0);
    o.nk = 1;
    o.topk[0] = (int64_t)luaL_checkinteger(L, 3);
    int oi = oneshot_opts(L, 4, who);
    double v;
    if (metrics_acc_topk(oneshot(L, oi, who, 0, &o), o.topk[0], &v, who) != 0)
        return raise_core(L);
    lua_pushnumber(L, v);
    return 1;
}

/* metrics.confusion(x_or_pred, y [, C]) -> int64 [C, C], rows = true class */
static int l_confusion(lua_State *L)
{
    const char *who = "metrics.confusion";
    lua_Integer C = luaL_optinteger(L, 3, 0);
    if (!lua_isnoneornil(L, 3) && C < 1)
        return luaL_error(L, "%s: C (the number of classes) must be >= 1, got %d", who, (int)C);
    lua_settop(L, 2);
    metrics_opts o = metrics_default_opts(0);
    o.confusion = true;
    metrics_acc *a = oneshot(L, 0, who, (int64_t)C, &o);
    push_confusion(L, metrics_acc_confusion(a), metrics_acc_opts(a)->classes);
    return 1;
}

/* f1, precision and recall: one average (opts.average, default "macro"). */
static int prf_oneshot(lua_State *L, const char *who, int field)
{
    int oi = oneshot_opts(L, 3, who);
    const char *name = "macro";
    if (oi && lua_getfield(L, oi, "average") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "%s: 'average' must be a string, got %s", who,
                              luaL_typename(L, -1));
        name = lua_tostring(L, -1); /* stays on the stack while used */
    }
    int avg = metrics_average_parse(name);
    if (avg < 0)
        return luaL_error(L, "%s: average must be \"micro\", \"macro\", \"weighted\" or "
                             "\"samples\", got \"%s\"", who, name);
    metrics_opts o = metrics_default_opts(0);
    metrics_prf v;
    if (metrics_acc_average(oneshot(L, oi, who, 0, &o), (metrics_average)avg, &v, who) != 0)
        return raise_core(L);
    lua_pushnumber(L, field == 0 ? v.precision : field == 1 ? v.recall : v.f1);
    return 1;
}

static int l_f1(lua_State *L) { return prf_oneshot(L, "metrics.f1", 2); }
static int l_precision(lua_State *L) { return prf_oneshot(L, "metrics.precision", 0); }
static int l_recall(lua_State *L) { return prf_oneshot(L, "metrics.recall", 1); }

/* ------------------------------------------------------------------------------
 * Registration */

/* The accumulator's metatable, made once. */
static void acc_metatable(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", acc_gc}, {"__close", acc_gc}, {"__tostring", acc_tostring}, {NULL, NULL},
    };
    static const luaL_Reg methods[] = {
        {"add", l_acc_add}, {"result", l_acc_result}, {"reset", l_acc_reset},
        {"count", l_acc_count}, {"close", acc_gc}, {NULL, NULL},
    };
    luaL_newmetatable(L, ACC_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

/* Register miles.decide, miles.head_gap and the miles.metrics table into the
 * module table on top of the stack. */
void l_miles_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"decide", l_decide}, {"head_gap", l_head_gap}, {NULL, NULL},
    };
    static const luaL_Reg metrics[] = {
        {"accuracy", l_accuracy}, {"topk", l_topk}, {"confusion", l_confusion},
        {"f1", l_f1}, {"precision", l_precision}, {"recall", l_recall},
        {"Accumulator", l_acc_new}, {NULL, NULL},
    };
    acc_metatable(L);
    lt_register(L, funcs, NULL);
    luaL_newlib(L, metrics);
    lua_setfield(L, -2, "metrics");
}
