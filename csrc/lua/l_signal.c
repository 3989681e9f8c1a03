/* Lua bindings of the signal functions, in the sub-table miles.signal: stft,
 * window, magnitude, power, mel_filterbank, apply_filterbank, mel_spectrogram,
 * amplitude_to_db, dct_matrix, mfcc, hz_to_mel, mel_to_hz and the FFT plan pool's
 * fft_cache_size / fft_cache_clear. Options come in a table; a misspelt option
 * or a bad value is an error led by the function's name. The maths is in
 * csrc/signal/; lua/miles/signal.lua adds the Lua-level helpers. */
#include <string.h>

#include "../error.h"
#include "../signal/fft.h"
#include "../signal/mel.h"
#include "../signal/stft.h"
#include "l_tensor.h"

/* Raise the core's error (its message already names the function). */
static int ls_fail(lua_State *L)
{
    return luaL_error(L, "%s", err_msg());
}

/* Push t (taking the reference) or raise the core's error. */
static int ls_push(lua_State *L, tensor *t)
{
    if (!t)
        return ls_fail(L);
    return lt_push(L, t);
}

/* Make the argument at idx an options table: nil or absent becomes an empty
 * table; anything else must be a table whose keys are all in known. */
static void ls_opts(lua_State *L, int idx, const char *fn, const char *const *known)
{
    if (lua_isnoneornil(L, idx)) {
        lua_settop(L, idx - 1);
        lua_newtable(L);
        return;
    }
    if (!lua_istable(L, idx) || lt_test(L, idx))
        luaL_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, idx));
    lt_check_keys(L, idx, fn, known);
}

/* Push option name of the table at idx; returns whether it is set (non-nil). */
static bool ls_get(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1))
        return true;
    lua_pop(L, 1);
    return false;
}

/* Integer option (def when absent). */
static lua_Integer ls_int(lua_State *L, int idx, const char *name, lua_Integer def,
                          const char *fn)
{
    if (!ls_get(L, idx, name))
        return def;
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "%s: option '%s' must be an integer, got %s", fn, name,
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
                                                   : luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Number option (def when absent). */
static double ls_num(lua_State *L, int idx, const char *name, double def, const char *fn)
{
    if (!ls_get(L, idx, name))
        return def;
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "%s: option '%s' must be a number, got %s", fn, name,
                   luaL_typename(L, -1));
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Boolean option (def when absent). */
static bool ls_bool(lua_State *L, int idx, const char *name, bool def, const char *fn)
{
    if (!ls_get(L, idx, name))
        return def;
    if (!lua_isboolean(L, -1))
        luaL_error(L, "%s: option '%s' must be true or false, got %s", fn, name,
                   luaL_typename(L, -1));
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* String option that must be one of names (index returned; def when absent). */
static int ls_enum(lua_State *L, int idx, const char *name, const char *const *names, int def,
                   const char *fn)
{
    if (!ls_get(L, idx, name))
        return def;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    for (int i = 0; s && names[i]; i++)
        if (strcmp(s, names[i]) == 0) {
            lua_pop(L, 1);
            return i;
        }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; names[i]; i++) {
        luaL_addstring(&b, i ? ", " : "");
        luaL_addstring(&b, names[i]);
    }
    luaL_pushresult(&b);
    return luaL_error(L, "%s: option '%s' must be one of %s, got %s%s%s", fn, name,
                      lua_tostring(L, -1), s ? "\"" : "", s ? s : luaL_typename(L, -2),
                      s ? "\"" : "");
}

/* A normalisation option `key`: true for its one named normalisation, false
 * for "none" or false; def when absent. */
static bool ls_norm(lua_State *L, int idx, const char *key, const char *named, bool def,
                    const char *fn)
{
    if (!ls_get(L, idx, key))
        return def;
    bool on = false;
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
        on = false;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), named) == 0)
        on = true;
    else if (!(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "none") == 0))
        luaL_error(L, "%s: option '%s' must be \"%s\", \"none\" or false, got %s", fn, key,
                   named, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                          : luaL_typename(L, -1));
    lua_pop(L, 1);
    return on;
}

/* A float dtype option (default float32). */
static dtype_t ls_dtype(lua_State *L, int idx, const char *fn)
{
    static const char *const names[] = {"float32", "float64", "float", "double", NULL};
    int i = ls_enum(L, idx, "dtype", names, 0, fn);
    return i % 2 == 0 ? DT_F32 : DT_F64;
}

static const char *const WINDOWS[] = {"hann", "hamming", "rect", NULL};
static const char *const PADS[] = {"reflect", "constant", "replicate", "circular", NULL};

/* The window option: a name or a tensor (left on the stack, so it stays alive). */
static void ls_window(lua_State *L, int idx, sig_stft_args *a, const char *fn)
{
    lua_getfield(L, idx, "window");
    tensor *w = lt_test(L, -1);
    if (w) {
        a->window_values = w; /* kept alive by the options table */
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    a->window = (sig_window_kind)ls_enum(L, idx, "window", WINDOWS, SIG_WIN_HANN, fn);
}

/* The framing options shared by stft, mel_spectrogram and mfcc. n_fft_def <= 0
 * makes n_fft required; hop_half makes the default hop win_length / 2
 * (torchaudio's transforms) instead of n_fft / 4 (torch.stft). */
static void ls_stft_args(lua_State *L, int idx, sig_stft_args *a, lua_Integer n_fft_def,
                         bool hop_half, const char *fn)
{
    if (n_fft_def <= 0 && !ls_get(L, idx, "n_fft"))
        luaL_error(L, "%s: option 'n_fft' is required", fn);
    lua_settop(L, idx);
    sig_stft_defaults(a, ls_int(L, idx, "n_fft", n_fft_def, fn));
    a->win_length = ls_int(L, idx, "win_length", 0, fn);
    if (ls_get(L, idx, "win_length") && a->win_length < 1)
        luaL_error(L, "%s: option 'win_length' must be >= 1, got %I", fn,
                   (LUAI_UACINT)a->win_length);
    ls_window(L, idx, a, fn);
    lua_Integer win = a->win_length ? a->win_length
                                    : (a->window_values ? tensor_numel(a->window_values)
                                                        : a->n_fft);
    lua_Integer hop_def = hop_half ? (win / 2 > 0 ? win / 2 : 1) : 0;
    a->hop_length = ls_int(L, idx, "hop_length", hop_def, fn);
    if (ls_get(L, idx, "hop_length") && a->hop_length < 1)
        luaL_error(L, "%s: option 'hop_length' must be >= 1, got %I", fn,
                   (LUAI_UACINT)a->hop_length);
    lua_settop(L, idx);
    a->center = ls_bool(L, idx, "center", true, fn);
    a->pad_mode = (sig_pad_mode)ls_enum(L, idx, "pad_mode", PADS, SIG_PAD_REFLECT, fn);
    a->normalized = ls_bool(L, idx, "normalized", false, fn);
}

/* miles.signal.stft(x, {n_fft=, hop_length=, win_length=, window=, center=,
 * pad_mode=, onesided=, normalized=, output="complex"|"magnitude"|"power"}). */
static int l_stft(lua_State *L)
{
    static const char *const known[] = {"n_fft",    "hop_length", "win_length", "window",
                                        "center",   "pad_mode",   "onesided",   "normalized",
                                        "output",   NULL};
    static const char *const outputs[] = {"complex", "magnitude", "power", NULL};
    tensor *x = lt_check(L, 1);
    ls_opts(L, 2, "stft", known);
    sig_stft_args a;
    ls_stft_args(L, 2, &a, 0, false, "stft");
    a.onesided = ls_bool(L, 2, "onesided", true, "stft");
    a.output = (sig_output)ls_enum(L, 2, "output", outputs, SIG_OUT_COMPLEX, "stft");
    return ls_push(L, sig_stft(x, &a));
}

/* miles.signal.window(kind, length, {periodic = true, dtype = "float32"}). */
static int l_window(lua_State *L)
{
    static const char *const known[] = {"periodic", "dtype", NULL};
    luaL_checkstring(L, 1);
    int kind = luaL_checkoption(L, 1, NULL, WINDOWS);
    lua_Integer n = luaL_checkinteger(L, 2);
    ls_opts(L, 3, "window", known);
    bool periodic = ls_bool(L, 3, "periodic", true, "window");
    dtype_t dt = ls_dtype(L, 3, "window");
    return ls_push(L, sig_window((sig_window_kind)kind, n, periodic, dt));
}

/* miles.signal.magnitude(z): |z| of a complex [..., 2] tensor. */
static int l_magnitude(lua_State *L)
{
    return ls_push(L, sig_complex_abs(lt_check(L, 1), false));
}

/* miles.signal.power(z): |z|^2 of a complex [..., 2] tensor. */
static int l_power(lua_State *L)
{
    return ls_push(L, sig_complex_abs(lt_check(L, 1), true));
}

/* The mel options shared by mel_filterbank, mel_spectrogram and mfcc (whose
 * filterbank normalisation is under norm_key). */
static void ls_mel_args(lua_State *L, int idx, sig_mel_args *m, const char *norm_key,
                        const char *fn)
{
    static const char *const scales[] = {"htk", "slaney", NULL};
    sig_mel_defaults(m);
    m->n_mels = ls_int(L, idx, "n_mels", m->n_mels, fn);
    m->sample_rate = ls_num(L, idx, "sample_rate", m->sample_rate, fn);
    m->fmin = ls_num(L, idx, "fmin", 0.0, fn);
    if (ls_get(L, idx, "fmax")) {
        lua_pop(L, 1);
        m->fmax = ls_num(L, idx, "fmax", 0.0, fn);
        if (m->fmax < 0)
            luaL_error(L, "%s: option 'fmax' must be positive, got %f", fn, m->fmax);
    }
    m->scale = (sig_mel_scale)ls_enum(L, idx, "scale", scales, SIG_MEL_HTK, fn);
    m->norm_slaney = ls_norm(L, idx, norm_key, "slaney", false, fn);
}

/* miles.signal.mel_filterbank({n_freqs=, n_mels=128, sample_rate=16000, fmin=0,
 * fmax=sample_rate/2, scale="htk"|"slaney", norm="slaney"|"none", dtype=}). */
static int l_mel_filterbank(lua_State *L)
{
    static const char *const known[] = {"n_freqs", "n_mels", "sample_rate", "fmin", "fmax",
                                        "scale",   "norm",   "dtype",       NULL};
    ls_opts(L, 1, "mel_filterbank", known);
    lua_getfield(L, 1, "n_freqs");
    if (lua_isnil(L, -1))
        return luaL_error(L, "mel_filterbank: option 'n_freqs' is required (n_fft / 2 + 1)");
    lua_pop(L, 1);
    sig_mel_args m;
    ls_mel_args(L, 1, &m, "norm", "mel_filterbank");
    lua_Integer n_freqs = ls_int(L, 1, "n_freqs", 0, "mel_filterbank");
    dtype_t dt = ls_dtype(L, 1, "mel_filterbank");
    return ls_push(L, sig_mel_filterbank(n_freqs, &m, dt));
}

/* miles.signal.apply_filterbank(fb, spec): fb [M, F] @ spec [..., F, T]. */
static int l_apply_filterbank(lua_State *L)
{
    tensor *fb = lt_check(L, 1), *spec = lt_check(L, 2);
    return ls_push(L, sig_apply_matrix(fb, spec));
}

/* The options of mel_spectrogram (and, with extra names, of mfcc). */
#define MEL_SPEC_OPTS                                                                      \
    "n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "normalized",     \
        "power", "n_mels", "sample_rate", "fmin", "fmax", "scale"

/* Read mel_spectrogram's options (torchaudio's MelSpectrogram defaults). */
static void ls_melspec_args(lua_State *L, int idx, sig_stft_args *s, sig_mel_args *m,
                            const char *norm_key, const char *fn)
{
    ls_stft_args(L, idx, s, 400, true, fn);
    lua_Number power = ls_num(L, idx, "power", 2.0, fn);
    if (power != 1.0 && power != 2.0)
        luaL_error(L, "%s: option 'power' must be 1 (magnitude) or 2 (power), got %f", fn,
                   power);
    s->output = power == 1.0 ? SIG_OUT_MAGNITUDE : SIG_OUT_POWER;
    ls_mel_args(L, idx, m, norm_key, fn);
}

/* miles.signal.mel_spectrogram(x, {n_fft=400, hop_length=win_length/2, ...,
 * power=2, n_mels=128, sample_rate=16000, fmin, fmax, scale, norm}). */
static int l_mel_spectrogram(lua_State *L)
{
    static const char *const known[] = {MEL_SPEC_OPTS, "norm", NULL};
    tensor *x = lt_check(L, 1);
    ls_opts(L, 2, "mel_spectrogram", known);
    sig_stft_args s;
    sig_mel_args m;
    ls_melspec_args(L, 2, &s, &m, "norm", "mel_spectrogram");
    return ls_push(L, sig_mel_spectrogram(x, &s, &m));
}

/* The top_db option: a number, or false for none (def when absent). */
static void ls_top_db(lua_State *L, int idx, sig_db_args *d, const char *fn)
{
    if (!ls_get(L, idx, "top_db"))
        return;
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        d->has_top_db = false;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        d->has_top_db = true;
        d->top_db = lua_tonumber(L, -1);
    } else {
        luaL_error(L, "%s: option 'top_db' must be a number or false, got %s", fn,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* miles.signal.amplitude_to_db(x, {multiplier=10, amin=1e-10, ref=1,
 * top_db=80|false}). */
static int l_amplitude_to_db(lua_State *L)
{
    static const char *const known[] = {"multiplier", "amin", "ref", "top_db", NULL};
    tensor *x = lt_check(L, 1);
    ls_opts(L, 2, "amplitude_to_db", known);
    sig_db_args d;
    sig_db_defaults(&d);
    d.multiplier = ls_num(L, 2, "multiplier", d.multiplier, "amplitude_to_db");
    d.amin = ls_num(L, 2, "amin", d.amin, "amplitude_to_db");
    d.ref = ls_num(L, 2, "ref", d.ref, "amplitude_to_db");
    ls_top_db(L, 2, &d, "amplitude_to_db");
    return ls_push(L, sig_amplitude_to_db(x, &d));
}

/* miles.signal.dct_matrix(n_out, n_in, {norm="ortho"|"none", dtype=}). */
static int l_dct_matrix(lua_State *L)
{
    static const char *const known[] = {"norm", "dtype", NULL};
    lua_Integer n_out = luaL_checkinteger(L, 1), n_in = luaL_checkinteger(L, 2);
    ls_opts(L, 3, "dct_matrix", known);
    bool ortho = ls_norm(L, 3, "norm", "ortho", true, "dct_matrix");
    dtype_t dt = ls_dtype(L, 3, "dct_matrix");
    return ls_push(L, sig_dct_matrix(n_out, n_in, ortho, dt));
}

/* miles.signal.mfcc(x, {n_mfcc=40, norm="ortho", log_mels=false, top_db=80,
 * mel_norm=, and mel_spectrogram's options}). */
static int l_mfcc(lua_State *L)
{
    static const char *const known[] = {MEL_SPEC_OPTS, "mel_norm", "n_mfcc", "norm",
                                        "log_mels", "top_db", NULL};
    tensor *x = lt_check(L, 1);
    ls_opts(L, 2, "mfcc", known);
    sig_stft_args s;
    sig_mel_args m;
    ls_melspec_args(L, 2, &s, &m, "mel_norm", "mfcc");
    sig_mfcc_args c;
    sig_mfcc_defaults(&c);
    c.n_mfcc = ls_int(L, 2, "n_mfcc", c.n_mfcc, "mfcc");
    c.ortho = ls_norm(L, 2, "norm", "ortho", true, "mfcc");
    c.log_mels = ls_bool(L, 2, "log_mels", false, "mfcc");
    ls_top_db(L, 2, &c.db, "mfcc");
    return ls_push(L, sig_mfcc(x, &s, &m, &c));
}

/* miles.signal.hz_to_mel(f, scale) and mel_to_hz(m, scale): numbers. */
static int l_hz_to_mel(lua_State *L)
{
    static const char *const scales[] = {"htk", "slaney", NULL};
    double f = luaL_checknumber(L, 1);
    int s = luaL_checkoption(L, 2, "htk", scales);
    lua_pushnumber(L, sig_hz_to_mel(f, (sig_mel_scale)s));
    return 1;
}

static int l_mel_to_hz(lua_State *L)
{
    static const char *const scales[] = {"htk", "slaney", NULL};
    double m = luaL_checknumber(L, 1);
    int s = luaL_checkoption(L, 2, "htk", scales);
    lua_pushnumber(L, sig_mel_to_hz(m, (sig_mel_scale)s));
    return 1;
}

/* miles.signal.fft_cache_size() / fft_cache_clear(): the pool of FFT plans. */
static int l_fft_cache_size(lua_State *L)
{
    lua_pushinteger(L, sig_fft_cache_size());
    return 1;
}

static int l_fft_cache_clear(lua_State *L)
{
    (void)L;
    sig_fft_cache_clear();
    return 0;
}

void l_signal_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"stft", l_stft},
        {"window", l_window},
        {"magnitude", l_magnitude},
        {"power", l_power},
        {"mel_filterbank", l_mel_filterbank},
        {"apply_filterbank", l_apply_filterbank},
        {"mel_spectrogram", l_mel_spectrogram},
        {"amplitude_to_db", l_amplitude_to_db},
        {"dct_matrix", l_dct_matrix},
        {"mfcc", l_mfcc},
        {"hz_to_mel", l_hz_to_mel},
        {"mel_to_hz", l_mel_to_hz},
        {"fft_cache_size", l_fft_cache_size},
        {"fft_cache_clear", l_fft_cache_clear},
        {NULL, NULL},
    };
    /* The module table is on top: its sub-table signal holds these. */
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
    lua_setfield(L, -2, "signal");
}
