/* NPY files: the header parser, the readers (copy and mmap) and the atomic writer.
 *
 * The layout: 6 bytes of magic "\x93NUMPY", a major and a minor version byte, the
 * header length (2 bytes little-endian in version 1, 4 bytes in versions 2 and 3),
 * the header (a Python dict literal padded with spaces and ending in '\n'), then
 * the data in C order. Every read of the file's bytes is bounded by the file's
 * size and the header's length, whatever they contain. */
#include "npy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../error.h"
#include "io_file.h"
#include "text_cursor.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* Our dtypes and at most 8 dims need ~300 bytes; anything much longer is bogus. */
#define NPY_MAX_HEADER (1u << 20)
#define NPY_ALIGN 64

/* This machine's byte order as NumPy writes it in a dtype string. */
#define NPY_HOST_ORDER (IO_HOST_BIG ? '>' : '<')

/* What the header says about the array, and where its data lies in the file. */
typedef struct {
    const char *path;
    dtype_t dt;      /* the tensor's type */
    char kind;       /* the file's type: 'f', 'i', 'u' or 'b' */
    size_t esize;    /* bytes per element in the file */
    bool big;        /* the file's elements are big-endian */
    bool fortran;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t numel;
    uint64_t file_size;
    uint64_t data_off;   /* where the data starts */
    uint64_t data_bytes; /* numel * esize */
} npy_info;

/* --- the header dict, read through a cursor that never passes its end --- */

/* A quoted string without escapes (NumPy writes none in the keys and dtypes we read)
 * into buf of cap bytes. */
static int h_str(io_cur *c, char *buf, size_t cap)
{
    io_cur_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return io_cur_fail(c, "expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || (unsigned char)*c->p < 0x20)
            return io_cur_fail(c, "unexpected character in a string");
        if (n + 1 >= cap)
            return io_cur_fail(c, "string too long");
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return io_cur_fail(c, "unterminated string");
    c->p++;
    buf[n] = '\0';
    return 0;
}

/* A Python bool literal. */
static int h_bool(io_cur *c, bool *out)
{
    io_cur_ws(c);
    if (io_cur_word(c, "True"))
        *out = true;
    else if (io_cur_word(c, "False"))
        *out = false;
    else
        return io_cur_fail(c, "expected True or False");
    return 0;
}

/* One size of the shape tuple: a non-negative decimal integer below 2^63 (Python 2
 * wrote them with an 'L' suffix, which is accepted). */
static int h_size(io_cur *c, int64_t *out)
{
    io_cur_ws(c);
    bool neg = c->p < c->end && *c->p == '-';
    c->p += neg;
    uint64_t v = 0;
    io_cur_num got = io_cur_digits(c, INT64_MAX, &v);
    if (got == IO_CUR_NUM_NONE)
        return io_cur_fail(c, "expected a size in the shape");
    if (got == IO_CUR_NUM_OVERFLOW)
        return io_file_err(c->path, "bad shape: a size is too large (over 2^63-1)");
    if (neg && v > 0)
        return io_file_err(c->path, "bad shape: negative size -%" PRIu64, v);
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *out = (int64_t)v;
    return 0;
}

/* The shape tuple: "()", "(n,)", "(n, m)", "(n, m, )"; at most TENSOR_MAX_DIMS sizes. */
static int h_shape(io_cur *c, npy_info *in)
{
    bool comma = false;
    in->ndim = 0;
    if (!io_cur_accept(c, '('))
        return io_cur_fail(c, "the shape is not a tuple");
    if (io_cur_accept(c, ')'))
        return 0;
    for (;;) {
        int64_t v = 0;
        if (h_size(c, &v) != 0)
            return -1;
        if (in->ndim == TENSOR_MAX_DIMS)
            return io_file_err(c->path, "bad shape: more than %d dims are not supported",
                               TENSOR_MAX_DIMS);
        in->shape[in->ndim++] = v;
        if (io_cur_accept(c, ',')) {
            comma = true;
            if (io_cur_accept(c, ')'))
                break;
        } else if (io_cur_accept(c, ')')) {
            break;
        } else {
            return io_cur_fail(c, "expected ',' or ')' in the shape");
        }
    }
    /* In Python "(3)" is the number 3, not a tuple. */
    if (in->ndim == 1 && !comma)
        return io_file_err(c->path, "bad shape: (n) is not a tuple; expected (n,)");
    return 0;
}

/* Integer sizes NumPy may store; all but int64 and uint8 are widened to int64. */
static int descr_int(npy_info *in, const char *descr)
{
    bool ok = in->esize == 1 || in->esize == 2 || in->esize == 4 || in->esize == 8;
    if (!ok)
        return io_file_err(in->path, "unsupported dtype '%s'", descr);
    in->dt = (in->kind == 'u' && in->esize == 1) ? DT_U8 : DT_I64;
    return 0;
}

/* Map a dtype string such as '<f4' to our dtype, the file's element size and its
 * byte order; reject what we cannot hold without loss. */
static int h_descr_str(npy_info *in, const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 4 || !strchr("<>|=", s[0]) || strspn(s + 2, "0123456789") != n - 2)
        return io_file_err(in->path, "unsupported dtype '%s'", s);
    in->kind = s[1];
    in->esize = (size_t)atoi(s + 2);
    in->big = s[0] == '>' || (s[0] == '=' && IO_HOST_BIG);
    if (in->kind == 'f' && in->esize == 4)
        in->dt = DT_F32;
    else if (in->kind == 'f' && in->esize == 8)
        in->dt = DT_F64;
    else if (in->kind == 'f' && in->esize == 2)
        return io_file_err(in->path, "float16 ('%s') is not supported; convert with "
                           "astype(np.float32)", s);
    else if (in->kind == 'b' && in->esize == 1)
        in->dt = DT_BOOL;
    else if (in->kind == 'i' || in->kind == 'u')
        return descr_int(in, s);
    else
        return io_file_err(in->path, "unsupported dtype '%s' (supported: float32, float64, "
                           "signed and unsigned integers, bool)", s);
    return 0;
}

/* The 'descr' value: a dtype string (a list would be a structured dtype). */
static int h_descr(io_cur *c, npy_info *in)
{
    char s[32];
    io_cur_ws(c);
    if (c->p < c->end && *c->p == '[')
        return io_file_err(c->path, "unsupported dtype: structured arrays are not supported");
    if (h_str(c, s, sizeof s) != 0)
        return -1;
    return h_descr_str(in, s);
}

static const char *const h_keys[3] = {"descr", "fortran_order", "shape"};

/* One "key: value" pair; seen collects the keys met so far (each once only). */
static int h_entry(io_cur *c, npy_info *in, unsigned *seen)
{
    char key[32];
    int k = 0;
    if (h_str(c, key, sizeof key) != 0)
        return -1;
    if (!io_cur_accept(c, ':'))
        return io_cur_fail(c, "expected ':' after a key");
    while (k < 3 && strcmp(key, h_keys[k]) != 0)
        k++;
    if (k == 3)
        return io_file_err(c->path, "malformed header: unexpected key '%s'", key);
    if (*seen & (1u << k))
        return io_file_err(c->path, "malformed header: key '%s' appears twice", key);
    *seen |= 1u << k;
    if (k == 0)
        return h_descr(c, in);
    if (k == 1)
        return h_bool(c, &in->fortran);
    return h_shape(c, in);
}

/* The whole header: one dict with exactly the three keys, then only white space. */
static int h_dict(io_cur *c, npy_info *in)
{
    unsigned seen = 0;
    if (!io_cur_accept(c, '{'))
        return io_cur_fail(c, "expected '{'");
    while (!io_cur_accept(c, '}')) {
        if (h_entry(c, in, &seen) != 0)
            return -1;
        if (!io_cur_accept(c, ',')) {
            if (io_cur_accept(c, '}'))
                break;
            return io_cur_fail(c, "expected ',' or '}'");
        }
    }
    io_cur_ws(c);
    if (c->p != c->end)
        return io_cur_fail(c, "unexpected text after the dict");
    for (int k = 0; k < 3; k++)
        if (!(seen & (1u << k)))
            return io_file_err(c->path, "malformed header: missing key '%s'", h_keys[k]);
    return 0;
}

/* --- checks on what the header declares --- */

/* The element count and data size, refusing products that overflow and data that
 * the file does not hold (trailing bytes after the data are ignored, as NumPy does). */
static int npy_check_sizes(npy_info *in)
{
    if (in->fortran)
        return io_file_err(in->path, "Fortran-order arrays are not supported; save with "
                           "np.ascontiguousarray");
    uint64_t nonzero = 1; /* the product of the non-zero sizes: it bounds every stride */
    bool empty = false;
    for (int i = 0; i < in->ndim; i++) {
        uint64_t d = (uint64_t)in->shape[i];
        if (d == 0) {
            empty = true;
            continue;
        }
        if (nonzero > (uint64_t)INT64_MAX / d)
            return io_file_err(in->path, "bad shape: the declared size overflows");
        nonzero *= d;
    }
    in->numel = empty ? 0 : nonzero;
    if (in->numel > UINT64_MAX / in->esize)
        return io_file_err(in->path, "bad shape: the declared size overflows");
    in->data_bytes = in->numel * in->esize;
    uint64_t avail = in->file_size - in->data_off;
    if (in->data_bytes > avail)
        return io_file_err(in->path, "truncated: header declares %" PRIu64 " bytes of data, "
                           "file has %" PRIu64, in->data_bytes, avail);
    return 0;
}

/* --- reading the file --- */

/* Check the magic and version and find the header: sets in->data_off and returns
 * the header's length, or -1. */
static int64_t npy_prelude(int fd, npy_info *in)
{
    unsigned char pre[12];
    size_t got = in->file_size < sizeof pre ? (size_t)in->file_size : sizeof pre;
    if (io_file_read_at(fd, in->path, pre, got, 0) != 0)
        return -1;
    size_t m = got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN;
    if (got == 0 || memcmp(pre, NPY_MAGIC, m) != 0)
        return io_file_err(in->path, "not an NPY file (bad magic)");
    if (got < 8)
        return io_file_err(in->path, "truncated header: the file has only %zu bytes", got);
    int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return io_file_err(in->path, "unsupported NPY version %d.%d (1.0, 2.0 and 3.0 are read)",
                           major, minor);
    size_t lsize = major == 1 ? 2 : 4;
    if (got < 8 + lsize)
        return io_file_err(in->path, "truncated header: the file has only %zu bytes", got);
    uint32_t hlen = (uint32_t)io_file_uint(pre + 8, lsize, false);
    if (hlen > NPY_MAX_HEADER)
        return io_file_err(in->path, "malformed header: declared length %" PRIu32 " is too long",
                           hlen);
    in->data_off = 8 + lsize + hlen;
    if (in->data_off > in->file_size)
        return io_file_err(in->path, "truncated header: it declares %" PRIu32 " bytes, the file "
                           "has %" PRIu64 " after the prelude", hlen, in->file_size - 8 - lsize);
    return hlen;
}

/* Read and parse the header of the open file fd into in. */
static int npy_header(int fd, npy_info *in)
{
    int64_t hlen = npy_prelude(fd, in);
    if (hlen < 0)
        return -1;
    char *text = malloc((size_t)hlen + 1);
    if (!text)
        return io_file_err(in->path, "out of memory reading the header");
    int rc = io_file_read_at(fd, in->path, text, (size_t)hlen, in->data_off - (uint64_t)hlen);
    if (rc == 0) {
        io_cur c = {text, text, text + hlen, in->path, "dict"};
        rc = h_dict(&c, in);
    }
    free(text);
    return rc == 0 ? npy_check_sizes(in) : -1;
}

/* Open path and parse its header: returns the file descriptor, or -1. */
static int npy_open(const char *path, npy_info *in)
{
    memset(in, 0, sizeof *in);
    in->path = path;
    int fd = io_file_open(path, &in->file_size);
    if (fd < 0)
        return -1;
    if (npy_header(fd, in) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether the file's bytes are the tensor's bytes (same type, our byte order). */
static bool npy_direct(const npy_info *in)
{
    bool same = (in->kind == 'f') || (in->kind == 'b') || (in->kind == 'i' && in->esize == 8)
                || (in->kind == 'u' && in->esize == 1);
    return same && (in->esize == 1 || in->big == IO_HOST_BIG);
}

/* Convert n elements from the file's layout (src) into the tensor's (dst, from
 * element first). Floats are byte-swapped, integers widened, bools made 0 or 1. */
static int npy_convert(const npy_info *in, const unsigned char *src, void *dst, uint64_t first,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t u = io_file_uint(src + i * in->esize, in->esize, in->big);
        uint64_t j = first + i;
        if (in->dt == DT_F32) {
            uint32_t b = (uint32_t)u;
            memcpy((float *)dst + j, &b, 4);
        } else if (in->dt == DT_F64) {
            memcpy((double *)dst + j, &u, 8);
        } else if (in->dt == DT_BOOL || in->dt == DT_U8) {
            ((uint8_t *)dst)[j] = in->dt == DT_BOOL ? u != 0 : (uint8_t)u;
        } else if (in->kind == 'i') {
            unsigned bits = (unsigned)(8 * in->esize);
            if (bits < 64 && (u >> (bits - 1)) & 1)
                u |= ~(uint64_t)0 << bits; /* sign-extend */
            memcpy((int64_t *)dst + j, &u, 8);
        } else {
            if (u > (uint64_t)INT64_MAX)
                return io_file_err(in->path, "value %" PRIu64 " of element %" PRIu64
                                   " does not fit in int64", u, j);
            ((int64_t *)dst)[j] = (int64_t)u;
        }
    }
    return 0;
}

/* Read the data in chunks through a small buffer, converting each chunk. */
static int npy_read_converted(int fd, const npy_info *in, void *dst)
{
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return io_file_err(in->path, "out of memory reading the data");
    size_t per = CHUNK / in->esize;
    int rc = 0;
    for (uint64_t done = 0; rc == 0 && done < in->numel;) {
        size_t k = in->numel - done < per ? (size_t)(in->numel - done) : per;
        rc = io_file_read_at(fd, in->path, buf, k * in->esize, in->data_off + done * in->esize);
        if (rc == 0)
            rc = npy_convert(in, buf, dst, done, k);
        done += k;
    }
    free(buf);
    return rc;
}

/* Make every bool byte 0 or 1, as the rest of the library expects. */
static void npy_fix_bools(uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        p[i] = p[i] != 0;
}

/* A new tensor with the data read from the file (after npy_open). */
static tensor *npy_read_data(int fd, const npy_info *in)
{
    tensor *t = tensor_empty(in->dt, in->ndim, in->shape, DEVICE_CPU);
    if (!t) {
        err_prefix(in->path);
        return NULL;
    }
    int rc;
    if (npy_direct(in)) {
        rc = io_file_read_at(fd, in->path, tensor_data(t), (size_t)in->data_bytes, in->data_off);
        if (rc == 0 && in->dt == DT_BOOL)
            npy_fix_bools(tensor_data(t), in->numel);
    } else {
        rc = npy_read_converted(fd, in, tensor_data(t));
    }
    if (rc != 0) {
        tensor_decref(t);
        return NULL;
    }
    return t;
}

tensor *io_npy_load(const char *path)
{
    npy_info in;
    int fd = npy_open(path, &in);
    if (fd < 0)
        return NULL;
    tensor *t = npy_read_data(fd, &in);
    close(fd);
    return t;
}

/* --- memory mapping --- */

/* What a mapped storage must give back. */
typedef struct {
    void *base;
    size_t len;
} npy_mapping;

/* The storage's release function: unmap the file. */
static void npy_unmap(storage *st)
{
    npy_mapping *m = st->release_ud;
    munmap(m->base, m->len);
    free(m);
}

/* Whether a bool array holds only 0 and 1 (others must be fixed in a copy). */
static bool npy_bools_clean(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return false;
    return true;
}

/* Map the whole file privately and wrap its data; NULL with *fallback set when the
 * data needs fixing in a copy instead. */
static tensor *npy_map_data(int fd, const npy_info *in, bool *fallback)
{
    size_t len = (size_t)(in->data_off + in->data_bytes);
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
        io_file_err(in->path, "mmap failed: %s", strerror(errno));
        return NULL;
    }
    uint8_t *data = (uint8_t *)base + in->data_off;
    *fallback = in->dt == DT_BOOL && !npy_bools_clean(data, in->numel);
    npy_mapping *m = *fallback ? NULL : malloc(sizeof *m);
    if (!m) {
        munmap(base, len);
        if (!*fallback)
            io_file_err(in->path, "out of memory");
        return NULL;
    }
    *m = (npy_mapping){base, len};
    tensor *t = tensor_wrap(in->dt, in->ndim, in->shape, data, (size_t)in->data_bytes,
                            npy_unmap, m);
    if (!t) {
        munmap(base, len);
        free(m);
        err_prefix(in->path);
    }
    return t;
}

tensor *io_npy_mmap(const char *path)
{
    npy_info in;
    int fd = npy_open(path, &in);
    if (fd < 0)
        return NULL;
    bool fallback = true;
    tensor *t = NULL;
    /* The mapping starts on a page, so the data is aligned when its offset is. */
    if (npy_direct(&in) && in.data_bytes > 0 && in.data_off % in.esize == 0)
        t = npy_map_data(fd, &in, &fallback);
    if (!t && fallback)
        t = npy_read_data(fd, &in);
    close(fd);
    return t;
}

/* --- writing --- */

/* The dtype string for our dtype in this machine's byte order. */
static void npy_descr_of(dtype_t dt, char out[4])
{
    static const char kinds[DT_COUNT] = {[DT_BOOL] = 'b', [DT_U8] = 'u', [DT_I64] = 'i',
                                         [DT_F32] = 'f', [DT_F64] = 'f'};
    size_t es = dtype_size(dt);
    out[0] = es == 1 ? '|' : NPY_HOST_ORDER;
    out[1] = kinds[dt];
    out[2] = (char)('0' + es);
    out[3] = '\0';
}

/* The prelude and header for t (contiguous) into buf; returns its length (a
 * multiple of 64, so the data is aligned), or 0 if buf is too small. */
static size_t npy_format_header(const tensor *t, char *buf, size_t cap)
{
    char descr[4], dict[512];
    npy_descr_of(t->dtype, descr);
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%" PRId64 "%s", t->shape[i],
                      t->ndim == 1 ? "," : (i + 1 < t->ndim ? ", " : ""));
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t dlen = (size_t)n;
    /* Version 1.0 stores the header length in 2 bytes; 2.0 in 4. */
    size_t pre = 10, total = (pre + dlen + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    bool v2 = total - pre > 65535;
    if (v2) {
        pre = 12;
        total = (pre + dlen + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    }
    if (total > cap)
        return 0;
    size_t hlen = total - pre;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = v2 ? 2 : 1;
    buf[7] = 0;
    for (size_t k = 0; k < pre - 8; k++)
        buf[8 + k] = (char)((hlen >> (8 * k)) & 0xff);
    memcpy(buf + pre, dict, dlen);
    memset(buf + pre + dlen, ' ', total - pre - dlen - 1);
    buf[total - 1] = '\n';
    return total;
}

int io_npy_save(const char *path, const tensor *t)
{
    if (!device_eq(tensor_device(t), DEVICE_CPU)) {
        char dev[16];
        return io_file_err(path, "save: move the tensor to the cpu first (it is on %s)",
                           device_str(tensor_device(t), dev));
    }
    if (t->dtype == DT_BF16)
        return io_file_err(path, "save: NumPy has no bfloat16 (convert with :float(), or "
                                 "save as safetensors)");
    /* tensor_contiguous only takes a reference or copies; t itself is not changed. */
    tensor *c = tensor_contiguous((tensor *)t);
    if (!c)
        return err_prefix(path);
    char hdr[1024];
    size_t hlen = npy_format_header(c, hdr, sizeof hdr);
    /* The file: the prelude and header, then the data. */
    io_file_piece file[2] = {{hdr, hlen},
                             {tensor_data(c), (size_t)tensor_numel(c) * dtype_size(c->dtype)}};
    int rc = hlen ? io_file_write_pieces(path, 2, file)
                  : io_file_err(path, "save: the header does not fit");
    tensor_decref(c);
    return rc;
}
