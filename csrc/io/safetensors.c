/* safetensors files: the header's JSON parser, the checks on what it declares,
 * the reader and the atomic writer. See safetensors.h for the layout.
 *
 * Every read of the header's text goes through a cursor bounded by its end, and
 * every read of the file is bounded by its size, whatever the file contains. */
#include "safetensors.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../error.h"
#include "io_file.h"
#include "text_cursor.h"

/* Python's safetensors refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER 100000000ull
/* Unknown fields in a tensor's entry are skipped, nested at most this deep. */
#define ST_MAX_DEPTH 32
/* Data is copied through a buffer of this size when bytes must be swapped. */
#define ST_CHUNK (1u << 16)

/* --- dtypes --- */

static const struct {
    const char *name;
    dtype_t dt;
} st_dtypes[] = {
    {"F32", DT_F32}, {"F64", DT_F64}, {"BF16", DT_BF16}, {"I64", DT_I64}, {"U8", DT_U8}, {"BOOL", DT_BOOL},
};

/* The safetensors name of a dtype. */
static const char *st_dtype_name(dtype_t dt)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].name;
    return NULL;
}

/* The dtype of a safetensors name, or -1. */
static int st_dtype_parse(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0)
            return (int)st_dtypes[i].dt;
    return -1;
}

/* --- the header's JSON, read through a cursor that never passes its end --- */

/* Read 4 hex digits of a \u escape. */
static int j_hex4(io_cur *c, unsigned *out)
{
    if (c->end - c->p < 4)
        return io_cur_fail(c, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char h = c->p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
              : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0)
            return io_cur_fail(c, "bad \\u escape");
        v = v << 4 | (unsigned)d;
    }
    c->p += 4;
    *out = v;
    return 0;
}

/* Append code point cp as UTF-8 at *o. */
static void j_utf8(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80) {
        *u++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *u++ = (unsigned char)(0xc0 | cp >> 6);
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *u++ = (unsigned char)(0xe0 | cp >> 12);
        *u++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        *u++ = (unsigned char)(0xf0 | cp >> 18);
        *u++ = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        *u++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
    *o = (char *)u;
}

/* Decode a \u escape (the backslash and 'u' consumed), joining surrogate pairs.
 * NUL is refused: names and metadata are C strings. */
static int j_unicode(io_cur *c, char **o)
{
    unsigned cp;
    if (j_hex4(c, &cp) != 0)
        return -1;
    if (cp >= 0xd800 && cp < 0xdc00) {
        unsigned lo;
        if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
            return io_cur_fail(c, "unpaired surrogate in \\u escape");
        c->p += 2;
        if (j_hex4(c, &lo) != 0)
            return -1;
        if (lo < 0xdc00 || lo >= 0xe000)
            return io_cur_fail(c, "unpaired surrogate in \\u escape");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp < 0xe000) {
        return io_cur_fail(c, "unpaired surrogate in \\u escape");
    }
    if (cp == 0)
        return io_cur_fail(c, "a NUL character (\\u0000) in a string");
    j_utf8(o, cp);
    return 0;
}

/* Decode one escape sequence (the backslash consumed) into *o. */
static int j_escape(io_cur *c, char **o)
{
    if (c->p >= c->end)
        return io_cur_fail(c, "unterminated string");
    char e = *c->p++;
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *k = e ? strchr(from, e) : NULL;
    if (k) {
        *(*o)++ = to[k - from];
        return 0;
    }
    if (e == 'u')
        return j_unicode(c, o);
    c->p--;
    return io_cur_fail(c, "bad escape in string");
}

/* The length of the quoted text from the cursor to the closing quote (escapes
 * skipped over), or the length to the end when it is unterminated. */
static size_t j_quoted_len(const io_cur *c)
{
    const char *q = c->p;
    while (q < c->end && *q != '"')
        q += (*q == '\\' && q + 1 < c->end) ? 2 : 1;
    return (size_t)(q - c->p);
}

/* Parse a JSON string into a new NUL-terminated buffer (*out, to free). The
 * decoded text is never longer than the quoted one, which sizes the buffer. */
static int j_string(io_cur *c, char **out)
{
    *out = NULL;
    if (io_cur_expect(c, '"') != 0)
        return -1;
    char *buf = malloc(j_quoted_len(c) + 1), *o = buf;
    if (!buf)
        return io_file_err(c->path, "out of memory reading the header");
    for (;;) {
        if (c->p >= c->end) {
            free(buf);
            return io_cur_fail(c, "unterminated string");
        }
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"')
            break;
        int rc = 0;
        if (ch < 0x20)
            c->p--, rc = io_cur_fail(c, "control character in string");
        else if (ch == '\\')
            rc = j_escape(c, &o);
        else
            *o++ = (char)ch;
        if (rc != 0) {
            free(buf);
            return -1;
        }
    }
    *o = '\0';
    *out = buf;
    return 0;
}

/* Parse a non-negative integer (no sign, fraction or exponent) that fits 64 bits. */
static int j_uint(io_cur *c, uint64_t *out)
{
    io_cur_ws(c);
    io_cur_num got = io_cur_digits(c, UINT64_MAX, out);
    if (got == IO_CUR_NUM_NONE)
        return io_cur_fail(c, "expected a non-negative integer");
    if (got == IO_CUR_NUM_OVERFLOW)
        return io_cur_fail(c, "integer too large");
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
        return io_cur_fail(c, "expected an integer, not a fraction");
    return 0;
}

static int j_skip(io_cur *c, int depth);

/* Skip the rest of an array or object whose opening bracket was consumed. */
static int j_skip_items(io_cur *c, char close, int depth)
{
    if (io_cur_accept(c, close))
        return 0;
    do {
        if (close == '}') {
            char *key;
            if (j_string(c, &key) != 0)
                return -1;
            free(key);
            if (io_cur_expect(c, ':') != 0)
                return -1;
        }
        if (j_skip(c, depth + 1) != 0)
            return -1;
    } while (io_cur_accept(c, ','));
    return io_cur_expect(c, close);
}

/* Skip one JSON value of any kind (unknown fields), nested at most ST_MAX_DEPTH. */
static int j_skip(io_cur *c, int depth)
{
    if (depth > ST_MAX_DEPTH)
        return io_cur_fail(c, "nested too deep");
    io_cur_ws(c);
    if (c->p >= c->end)
        return io_cur_fail(c, "expected a value");
    char ch = *c->p;
    if (ch == '"') {
        char *s;
        int rc = j_string(c, &s);
        free(s);
        return rc;
    }
    if (ch == '[' || ch == '{') {
        c->p++;
        return j_skip_items(c, ch == '[' ? ']' : '}', depth);
    }
    const char *q = c->p;
    while (q < c->end && (strchr("+-.eE", *q) || (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z')))
        q++;
    size_t n = (size_t)(q - c->p);
    bool lit = (n == 4 && (!memcmp(c->p, "true", 4) || !memcmp(c->p, "null", 4)))
               || (n == 5 && !memcmp(c->p, "false", 5));
    bool num = n > 0 && (ch == '-' || (ch >= '0' && ch <= '9'));
    if (!lit && !num)
        return io_cur_fail(c, "expected a value");
    c->p = q;
    return 0;
}

/* --- what the header declares --- */

/* One tensor's entry. */
typedef struct {
    char *name;
    dtype_t dt;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t begin, end;
} st_info;

/* The parsed header: tensors and metadata, in the header's order. */
typedef struct {
    const char *path;
    st_info *v;
    size_t n, cap;
    char **mk, **mv;
    size_t nm, mcap;
} st_header;

/* Free everything a header holds. */
static void st_header_free(st_header *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].name);
    for (size_t i = 0; i < h->nm; i++) {
        free(h->mk[i]);
        free(h->mv[i]);
    }
    free(h->v);
    free(h->mk);
    free(h->mv);
    memset(h, 0, sizeof *h);
}

/* Make room for one more element in an array of *cap elements of size sz. */
static int st_grow(void **arr, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * sz);
    if (!p)
        return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

/* "shape": [d, ...] of the tensor named in ti. */
static int p_shape(io_cur *c, st_info *ti)
{
    if (io_cur_expect(c, '[') != 0)
        return -1;
    ti->ndim = 0;
    if (io_cur_accept(c, ']'))
        return 0;
    do {
        uint64_t d;
        if (ti->ndim == TENSOR_MAX_DIMS)
            return io_file_err(c->path, "tensor '%s' has more than %d dims", ti->name,
                               TENSOR_MAX_DIMS);
        if (j_uint(c, &d) != 0)
            return -1;
        if (d > INT64_MAX)
            return io_file_err(c->path, "tensor '%s': dim %d is too large", ti->name, ti->ndim + 1);
        ti->shape[ti->ndim++] = (int64_t)d;
    } while (io_cur_accept(c, ','));
    return io_cur_expect(c, ']');
}

/* "data_offsets": [begin, end]. */
static int p_offsets(io_cur *c, st_info *ti)
{
    if (io_cur_expect(c, '[') != 0 || j_uint(c, &ti->begin) != 0 || io_cur_expect(c, ',') != 0
        || j_uint(c, &ti->end) != 0 || io_cur_expect(c, ']') != 0)
        return -1;
    if (ti->end < ti->begin)
        return io_file_err(c->path, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end "
                           "before they begin", ti->name, ti->begin, ti->end);
    return 0;
}

/* "dtype": "F32" (one of ours, or an error naming it). */
static int p_dtype(io_cur *c, st_info *ti)
{
    char *s;
    if (j_string(c, &s) != 0)
        return -1;
    int dt = st_dtype_parse(s);
    if (dt < 0) {
        io_file_err(c->path, "tensor '%s' has dtype '%.32s', which miles does not read (F32, F64, "
                    "BF16, I64, U8, BOOL)", ti->name, s);
        free(s);
        return -1;
    }
    free(s);
    ti->dt = (dtype_t)dt;
    return 0;
}

/* One field of a tensor's entry; seen collects which of the three were found. */
static int p_field(io_cur *c, st_info *ti, unsigned *seen)
{
    char *key;
    if (j_string(c, &key) != 0)
        return -1;
    int rc = io_cur_expect(c, ':'), bit = 0;
    if (rc == 0) {
        if (strcmp(key, "dtype") == 0)
            bit = 1, rc = p_dtype(c, ti);
        else if (strcmp(key, "shape") == 0)
            bit = 2, rc = p_shape(c, ti);
        else if (strcmp(key, "data_offsets") == 0)
            bit = 4, rc = p_offsets(c, ti);
        else
            rc = j_skip(c, 1);
    }
    free(key);
    if (rc == 0 && bit && (*seen & (unsigned)bit))
        return io_file_err(c->path, "tensor '%s' has a field twice", ti->name);
    *seen |= (unsigned)bit;
    return rc;
}

/* A tensor's entry {"dtype": ..., "shape": [...], "data_offsets": [b, e]}. */
static int p_tensor(io_cur *c, st_info *ti)
{
    unsigned seen = 0;
    if (io_cur_expect(c, '{') != 0)
        return -1;
    if (!io_cur_accept(c, '}')) {
        do {
            if (p_field(c, ti, &seen) != 0)
                return -1;
        } while (io_cur_accept(c, ','));
        if (io_cur_expect(c, '}') != 0)
            return -1;
    }
    if (seen != 7)
        return io_file_err(c->path, "tensor '%s' lacks its %s", ti->name,
                           !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");
    return 0;
}

/* Make room for one more metadata pair (keys and values grow together). */
static int st_meta_grow(st_header *h)
{
    if (h->nm < h->mcap)
        return 0;
    size_t nc = h->mcap ? h->mcap * 2 : 8;
    char **k = realloc(h->mk, nc * sizeof *k);
    if (!k)
        return -1;
    h->mk = k;
    char **v = realloc(h->mv, nc * sizeof *v);
    if (!v)
        return -1;
    h->mv = v;
    h->mcap = nc;
    return 0;
}

/* "__metadata__": {"key": "value", ...}; values must be strings. */
static int p_metadata(io_cur *c, st_header *h)
{
    if (io_cur_expect(c, '{') != 0)
        return -1;
    if (io_cur_accept(c, '}'))
        return 0;
    do {
        if (st_meta_grow(h) != 0)
            return io_file_err(c->path, "out of memory reading the header");
        h->mk[h->nm] = h->mv[h->nm] = NULL;
        h->nm++;
        if (j_string(c, &h->mk[h->nm - 1]) != 0 || io_cur_expect(c, ':') != 0)
            return -1;
        io_cur_ws(c);
        if (c->p < c->end && *c->p != '"')
            return io_file_err(c->path, "metadata '%s' is not a string", h->mk[h->nm - 1]);
        if (j_string(c, &h->mv[h->nm - 1]) != 0)
            return -1;
    } while (io_cur_accept(c, ','));
    return io_cur_expect(c, '}');
}

/* One "key": value member of the top-level object. */
static int p_member(io_cur *c, st_header *h, bool *had_meta)
{
    char *key;
    if (j_string(c, &key) != 0)
        return -1;
    if (io_cur_expect(c, ':') != 0) {
        free(key);
        return -1;
    }
    if (strcmp(key, "__metadata__") == 0) {
        free(key);
        if (*had_meta)
            return io_file_err(c->path, "malformed header: __metadata__ appears twice");
        *had_meta = true;
        return p_metadata(c, h);
    }
    if (st_grow((void **)&h->v, h->n, &h->cap, sizeof *h->v) != 0) {
        free(key);
        return io_file_err(c->path, "out of memory reading the header");
    }
    st_info *ti = &h->v[h->n++];
    memset(ti, 0, sizeof *ti);
    ti->name = key;
    return p_tensor(c, ti);
}

/* The whole header: one object, then only whitespace to its end. */
static int p_header(io_cur *c, st_header *h)
{
    bool had_meta = false;
    io_cur_ws(c);
    if (c->p >= c->end || *c->p != '{')
        return io_cur_fail(c, "the header is not a JSON object");
    c->p++;
    if (!io_cur_accept(c, '}')) {
        do {
            if (p_member(c, h, &had_meta) != 0)
                return -1;
        } while (io_cur_accept(c, ','));
        if (io_cur_expect(c, '}') != 0)
            return -1;
    }
    io_cur_ws(c);
    if (c->p != c->end)
        return io_cur_fail(c, "unexpected text after the header's object");
    return 0;
}

/* --- checks on the declared tensors --- */

/* Order tensors by name, then by where their data begins. */
static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_info *const *)a)->name, (*(const st_info *const *)b)->name);
}

static int cmp_begin(const void *a, const void *b)
{
    const st_info *x = *(const st_info *const *)a, *y = *(const st_info *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Does each tensor's byte range hold exactly its shape's elements? */
static int st_check_sizes(const st_header *h)
{
    for (size_t i = 0; i < h->n; i++) {
        const st_info *ti = &h->v[i];
        uint64_t bytes = dtype_size(ti->dt);
        for (int d = 0; d < ti->ndim; d++)
            if (__builtin_mul_overflow(bytes, (uint64_t)ti->shape[d], &bytes))
                return io_file_err(h->path, "tensor '%s': its shape's size overflows", ti->name);
        if (bytes != ti->end - ti->begin)
            return io_file_err(h->path, "tensor '%s': shape and dtype need %" PRIu64 " bytes but "
                               "data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64, ti->name,
                               bytes, ti->begin, ti->end, ti->end - ti->begin);
    }
    return 0;
}

/* Are the names unique, the ranges inside the data, and no two overlapping? */
static int st_check_layout(const st_header *h, uint64_t data_len)
{
    int rc = 0;
    const st_info **ix = malloc((h->n ? h->n : 1) * sizeof *ix);
    if (!ix)
        return io_file_err(h->path, "out of memory checking the header");
    for (size_t i = 0; i < h->n; i++)
        ix[i] = &h->v[i];
    qsort(ix, h->n, sizeof *ix, cmp_name);
    for (size_t i = 1; i < h->n && rc == 0; i++)
        if (strcmp(ix[i]->name, ix[i - 1]->name) == 0)
            rc = io_file_err(h->path, "tensor '%s' appears twice in the header", ix[i]->name);
    qsort(ix, h->n, sizeof *ix, cmp_begin);
    for (size_t i = 0; i < h->n && rc == 0; i++) {
        if (ix[i]->end > data_len)
            rc = io_file_err(h->path, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run "
                             "past the end of the data (%" PRIu64 " bytes; truncated file?)",
                             ix[i]->name, ix[i]->begin, ix[i]->end, data_len);
        else if (i > 0 && ix[i]->begin < ix[i - 1]->end)
            rc = io_file_err(h->path, "tensors '%s' and '%s' overlap in the data", ix[i - 1]->name,
                             ix[i]->name);
    }
    free(ix);
    return rc;
}

/* --- reading --- */

/* Read the header length and check it against the file's size; returns it or -1. */
static int64_t st_header_len(int fd, const char *path, uint64_t size)
{
    unsigned char b[8];
    if (size < 8)
        return io_file_err(path, "not a safetensors file: %" PRIu64 " bytes, too short for the "
                           "8-byte header length", size);
    if (io_file_read_at(fd, path, b, 8, 0) != 0)
        return -1;
    uint64_t n = io_file_uint(b, 8, false);
    if (n < 2 || n > ST_MAX_HEADER || n > size - 8)
        return io_file_err(path, "bad header length %" PRIu64 " (the file has %" PRIu64 " bytes "
                           "after the 8-byte length%s)", n, size - 8,
                           n > ST_MAX_HEADER ? "; at most 100 MB are accepted" : "");
    return (int64_t)n;
}

/* Read, parse and check the header of the open file; fills h and *data_off. */
static int st_read_header(int fd, const char *path, uint64_t size, st_header *h,
                          uint64_t *data_off)
{
    int64_t n = st_header_len(fd, path, size);
    if (n < 0)
        return -1;
    char *text = malloc((size_t)n);
    if (!text)
        return io_file_err(path, "out of memory reading the header");
    int rc = io_file_read_at(fd, path, text, (size_t)n, 8);
    if (rc == 0) {
        io_cur c = {text, text, text + n, path, "header"};
        rc = p_header(&c, h);
    }
    free(text);
    *data_off = 8 + (uint64_t)n;
    if (rc == 0)
        rc = st_check_sizes(h);
    if (rc == 0)
        rc = st_check_layout(h, size - *data_off);
    return rc;
}

/* Make the tensor of one entry and read its bytes. */
static tensor *st_read_tensor(int fd, const char *path, const st_info *ti, uint64_t data_off)
{
    tensor *t = tensor_empty(ti->dt, ti->ndim, ti->shape, DEVICE_CPU);
    if (!t) {
        err_prefix(path);
        return NULL;
    }
    size_t n = (size_t)(ti->end - ti->begin), esize = dtype_size(ti->dt);
    if (n && io_file_read_at(fd, path, tensor_data(t), n, data_off + ti->begin) != 0) {
        tensor_decref(t);
        return NULL;
    }
    if (IO_HOST_BIG)
        io_file_swap(tensor_data(t), esize, n / esize);
    if (ti->dt == DT_BOOL) /* any non-zero byte reads as true */
        for (size_t i = 0; i < n; i++)
            ((unsigned char *)tensor_data(t))[i] = ((unsigned char *)tensor_data(t))[i] != 0;
    return t;
}

/* Move the header's tensors (read from fd) and metadata into out. */
static int st_fill(int fd, const char *path, st_header *h, uint64_t data_off, io_st_file *out)
{
    out->entries = calloc(h->n ? h->n : 1, sizeof *out->entries);
    if (!out->entries)
        return io_file_err(path, "out of memory");
    for (size_t i = 0; i < h->n; i++) {
        tensor *t = st_read_tensor(fd, path, &h->v[i], data_off);
        if (!t)
            return -1;
        out->entries[out->n].name = h->v[i].name;
        out->entries[out->n++].t = t;
        h->v[i].name = NULL;
    }
    out->meta_keys = h->mk, out->meta_vals = h->mv, out->n_meta = h->nm;
    h->mk = h->mv = NULL;
    h->nm = 0;
    return 0;
}

int io_st_load(const char *path, io_st_file *out)
{
    memset(out, 0, sizeof *out);
    uint64_t size = 0, data_off = 0;
    int fd = io_file_open(path, &size);
    if (fd < 0)
        return -1;
    st_header h = {.path = path};
    int rc = st_read_header(fd, path, size, &h, &data_off);
    if (rc == 0)
        rc = st_fill(fd, path, &h, data_off, out);
    close(fd);
    st_header_free(&h);
    if (rc != 0)
        io_st_free(out);
    return rc;
}

void io_st_free(io_st_file *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->entries[i].name);
        tensor_decref(f->entries[i].t);
    }
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->entries);
    free(f->meta_keys);
    free(f->meta_vals);
    memset(f, 0, sizeof *f);
}

/* --- writing: the header text --- */

/* A growing string; a failed allocation sets oom and later appends do nothing. */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

/* Append n bytes. */
static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *p = realloc(b->s, nc);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p, b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* Append a printf-formatted piece (short: numbers and fixed words). */
__attribute__((format(printf, 2, 3))) static void sb_fmt(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Append s as a JSON string: quotes, backslashes and control characters escaped. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            sb_fmt(b, "\\u%04x", *p);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* One tensor to write: its name and a contiguous CPU copy or reference. */
typedef struct {
    const char *name;
    tensor *t;
    uint64_t begin, end;
} st_out;

/* Append the __metadata__ member (when there is metadata). */
static void sb_metadata(sbuf *b, size_t n_meta, const char *const *mk, const char *const *mv)
{
    if (n_meta == 0)
        return;
    sb_put(b, "\"__metadata__\":{", 16);
    for (size_t i = 0; i < n_meta; i++) {
        if (i)
            sb_put(b, ",", 1);
        sb_json_str(b, mk[i]);
        sb_put(b, ":", 1);
        sb_json_str(b, mv[i]);
    }
    sb_put(b, "}", 1);
}

/* The header: 8-byte length, then the JSON padded with spaces to a multiple of 8. */
static int st_build_header(const char *path, st_out *v, size_t n, size_t n_meta,
                           const char *const *mk, const char *const *mv, sbuf *b)
{
    sb_put(b, "12345678{", 9); /* the length is filled in below */
    sb_metadata(b, n_meta, mk, mv);
    for (size_t i = 0; i < n; i++) {
        if (i || n_meta)
            sb_put(b, ",", 1);
        sb_json_str(b, v[i].name);
        sb_fmt(b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(v[i].t->dtype));
        for (int d = 0; d < v[i].t->ndim; d++)
            sb_fmt(b, d ? ",%" PRId64 : "%" PRId64, v[i].t->shape[d]);
        sb_fmt(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", v[i].begin, v[i].end);
    }
    sb_put(b, "}", 1);
    while (!b->oom && b->n % 8 != 0)
        sb_put(b, " ", 1);
    if (b->oom)
        return io_file_err(path, "save: out of memory building the header");
    uint64_t len = b->n - 8;
    for (int k = 0; k < 8; k++)
        b->s[k] = (char)(len >> (8 * k) & 0xff);
    return 0;
}

/* Order outputs by name (byte order). */
static int cmp_out(const void *a, const void *b)
{
    return strcmp(((const st_out *)a)->name, ((const st_out *)b)->name);
}

/* Check one tensor to write and take a contiguous reference to it. */
static int st_take(const char *path, const char *name, tensor *t, st_out *o)
{
    char dev[16];
    if (!st_dtype_name(t->dtype))
        return io_file_err(path, "save: tensor '%s' has dtype %s, which safetensors files of miles "
                           "do not hold", name, dtype_name(t->dtype));
    if (!device_eq(tensor_device(t), DEVICE_CPU))
        return io_file_err(path, "save: tensor '%s' is on %s; move it to the cpu first", name,
                           device_str(tensor_device(t), dev));
    if (strcmp(name, "__metadata__") == 0)
        return io_file_err(path, "save: '__metadata__' is reserved and cannot name a tensor");
    /* tensor_contiguous only takes a reference or copies; t is not changed. */
    o->t = tensor_contiguous(t);
    o->name = name;
    return o->t ? 0 : err_prefix(path);
}

/* Check and sort the tensors and give each its byte range. */
static int st_prepare(const char *path, size_t n, const char *const *names,
                      tensor *const *tensors, st_out *v)
{
    for (size_t i = 0; i < n; i++)
        if (st_take(path, names[i], tensors[i], &v[i]) != 0)
            return -1;
    qsort(v, n, sizeof *v, cmp_out);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i].name, v[i - 1].name) == 0)
            return io_file_err(path, "save: tensor name '%s' is given twice", v[i].name);
        v[i].begin = off;
        off += (uint64_t)tensor_numel(v[i].t) * dtype_size(v[i].t->dtype);
        v[i].end = off;
    }
    return 0;
}

/* --- writing: the file --- */

/* Write n bytes of elements of esize bytes in little-endian order. */
static bool st_write_le(FILE *f, const void *data, size_t n, size_t esize)
{
    if (!IO_HOST_BIG || esize == 1)
        return n == 0 || fwrite(data, 1, n, f) == n;
    unsigned char buf[ST_CHUNK];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < ST_CHUNK ? n - done : ST_CHUNK;
        memcpy(buf, (const char *)data + done, k);
        io_file_swap(buf, esize, k / esize);
        if (fwrite(buf, 1, k, f) != k)
            return false;
        done += k;
    }
    return true;
}

/* What to write: the header and the tensors. */
typedef struct {
    const sbuf *hdr;
    const st_out *v;
    size_t n;
} st_payload;

/* Write the payload to f (io_file_write_atomic's writer). */
static bool st_write_payload(FILE *f, const void *ctx)
{
    const st_payload *pl = ctx;
    bool ok = fwrite(pl->hdr->s, 1, pl->hdr->n, f) == pl->hdr->n;
    for (size_t i = 0; ok && i < pl->n; i++)
        ok = st_write_le(f, tensor_data(pl->v[i].t), (size_t)(pl->v[i].end - pl->v[i].begin),
                         dtype_size(pl->v[i].t->dtype));
    return ok;
}

int io_st_save(const char *path, size_t n, const char *const *names, tensor *const *tensors,
               size_t n_meta, const char *const *meta_keys, const char *const *meta_vals)
{
    st_out *v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return io_file_err(path, "save: out of memory");
    sbuf hdr = {0};
    int rc = st_prepare(path, n, names, tensors, v);
    if (rc == 0)
        rc = st_build_header(path, v, n, n_meta, meta_keys, meta_vals, &hdr);
    if (rc == 0) {
        st_payload pl = {.hdr = &hdr, .v = v, .n = n};
        rc = io_file_write_atomic(path, st_write_payload, &pl);
    }
    for (size_t i = 0; i < n; i++)
        tensor_decref(v[i].t);
    free(v);
    free(hdr.s);
    return rc;
}

int io_st_write_atomic(const char *path, const void *data, size_t n)
{
    io_file_piece file = {data, n};
    return io_file_write_pieces(path, 1, &file);
}
