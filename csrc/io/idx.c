/* IDX files, plain or gzip-compressed: a byte source that hides the compression,
 * the header parser with its size checks, and the big-endian element conversion.
 *
 * Every read is bounded: the plain source never reads past the file's size, and
 * the gzip source hands out only what zlib produced. Sizes are checked against
 * the file (and, for gzip, against deflate's largest ratio) before any tensor is
 * allocated, so a hostile header cannot make us allocate gigabytes. */
#include "idx.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../error.h"
#include "io_file.h"

/* The largest tensor we make (2 GiB); MNIST-sized files are ~50 MB. */
#define IDX_MAX_BYTES ((uint64_t)1 << 31)
/* deflate cannot expand by more than ~1032:1, so a gzip file of n bytes holds at
 * most IDX_GZ_RATIO * n bytes (plus a little for tiny files). */
#define IDX_GZ_RATIO 1040u
#define IDX_GZ_SLACK 4096u
#define IDX_CHUNK (1u << 16)

/* Where the bytes come from: the file itself or its gzip decompression. */
typedef struct {
    const char *path;
    int fd;
    uint64_t file_size;
    uint64_t pos; /* file offset of the next byte to read from the file */
    bool gz;
    bool z_ready; /* z holds an initialised inflate state */
    bool z_done;  /* the last gzip member ended and no input is left */
    z_stream z;
    unsigned char *in; /* IDX_CHUNK bytes of compressed input (gzip only) */
} idx_src;

/* Open the file and note its size (io_file_open refuses what is not a regular file). */
static int idx_open(idx_src *s)
{
    s->fd = io_file_open(s->path, &s->file_size);
    return s->fd < 0 ? -1 : 0;
}

/* --- the gzip source --- */

/* Start inflating when the file begins with the gzip magic. */
static int src_init_gz(idx_src *s)
{
    unsigned char m[2];
    if (s->file_size < 2 || io_file_read_at(s->fd, s->path, m, 2, 0) != 0)
        return 0; /* too short for gzip: the header check will report it */
    if (m[0] != 0x1f || m[1] != 0x8b)
        return 0;
    s->gz = true;
    s->in = malloc(IDX_CHUNK);
    if (!s->in)
        return io_file_err(s->path, "out of memory");
    /* 16 + MAX_WBITS: a gzip wrapper (header and CRC-checked trailer). */
    if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
        return io_file_err(s->path, "cannot start gzip decompression");
    s->z_ready = true;
    return 0;
}

/* Give zlib more compressed input; false when the file is exhausted. */
static int gz_refill(idx_src *s, bool *eof)
{
    uint64_t left = s->file_size - s->pos;
    size_t n = left < IDX_CHUNK ? (size_t)left : IDX_CHUNK;
    *eof = n == 0;
    if (n == 0)
        return 0;
    if (io_file_read_at(s->fd, s->path, s->in, n, s->pos) != 0)
        return -1;
    s->pos += n;
    s->z.next_in = s->in;
    s->z.avail_in = (uInt)n;
    return 0;
}

/* A gzip member ended: start the next one if input is left (gzip allows
 * concatenated members), else note the end of the stream. */
static int gz_member_end(idx_src *s)
{
    bool eof = false;
    if (s->z.avail_in == 0 && gz_refill(s, &eof) != 0)
        return -1;
    if (eof) {
        s->z_done = true;
        return 0;
    }
    inflateReset(&s->z);
    return 0;
}

/* Inflate up to n bytes into buf; *got says how many came (fewer only at the end
 * of the stream). */
static int gz_read(idx_src *s, unsigned char *buf, size_t n, size_t *got)
{
    s->z.next_out = buf;
    s->z.avail_out = (uInt)n;
    while (s->z.avail_out > 0 && !s->z_done) {
        bool eof = false;
        if (s->z.avail_in == 0 && gz_refill(s, &eof) != 0)
            return -1;
        if (eof)
            return io_file_err(s->path, "truncated gzip stream (the file ends inside it)");
        int rc = inflate(&s->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            if (gz_member_end(s) != 0)
                return -1;
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return io_file_err(s->path, "corrupt gzip data: %s",
                               s->z.msg ? s->z.msg : "inflate failed");
        }
    }
    *got = n - s->z.avail_out;
    return 0;
}

/* --- reading through the source --- */

/* Exactly n bytes of the (decompressed) content into buf; what names the part
 * being read in a truncation error. */
static int src_read(idx_src *s, void *buf, size_t n, const char *what)
{
    if (!s->gz) {
        if (n > s->file_size - s->pos)
            return io_file_err(s->path, "truncated: the file ends inside the %s", what);
        if (io_file_read_at(s->fd, s->path, buf, n, s->pos) != 0)
            return -1;
        s->pos += n;
        return 0;
    }
    for (size_t done = 0; done < n;) {
        size_t part = n - done < IDX_CHUNK ? n - done : IDX_CHUNK, got = 0;
        if (gz_read(s, (unsigned char *)buf + done, part, &got) != 0)
            return -1;
        if (got < part)
            return io_file_err(s->path, "truncated: the decompressed data ends inside the %s",
                               what);
        done += got;
    }
    return 0;
}

/* Check that nothing follows the data: a longer file means the header is wrong. */
static int src_check_end(idx_src *s)
{
    if (!s->gz) {
        if (s->pos != s->file_size)
            return io_file_err(s->path, "%" PRIu64 " unexpected bytes after the data (the header "
                               "declares fewer elements than the file holds)",
                               s->file_size - s->pos);
        return 0;
    }
    unsigned char extra[64];
    size_t got = 0;
    if (gz_read(s, extra, sizeof extra, &got) != 0)
        return -1;
    if (got > 0)
        return io_file_err(s->path, "unexpected bytes after the data (the header declares fewer "
                           "elements than the decompressed file holds)");
    return 0;
}

/* Release the source's file and zlib state. */
static void src_close(idx_src *s)
{
    if (s->z_ready)
        inflateEnd(&s->z);
    free(s->in);
    if (s->fd >= 0)
        close(s->fd);
}

/* --- the header --- */

/* What the header declares. */
typedef struct {
    int type;     /* the type byte */
    size_t esize; /* bytes per element in the file */
    dtype_t dt;   /* the tensor's type */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t numel, bytes;
} idx_info;

/* The element size and tensor type of an IDX type byte; -1 for an unknown one. */
static int idx_type(idx_info *in, const char *path)
{
    switch (in->type) {
    case 0x08: in->esize = 1; in->dt = DT_U8; return 0;
    case 0x09: in->esize = 1; in->dt = DT_I64; return 0;
    case 0x0B: in->esize = 2; in->dt = DT_I64; return 0;
    case 0x0C: in->esize = 4; in->dt = DT_I64; return 0;
    case 0x0D: in->esize = 4; in->dt = DT_F32; return 0;
    case 0x0E: in->esize = 8; in->dt = DT_F64; return 0;
    default:
        return io_file_err(path, "unknown IDX data type 0x%02X (known: 0x08 ubyte, 0x09 byte, "
                           "0x0B short, 0x0C int, 0x0D float, 0x0E double)", in->type);
    }
}

/* Read the dims and check them: none zero, the total within the cap. */
static int idx_dims(idx_src *s, idx_info *in)
{
    unsigned char b[4 * TENSOR_MAX_DIMS];
    if (src_read(s, b, 4 * (size_t)in->ndim, "header's dims") != 0)
        return -1;
    uint64_t n = 1;
    for (int i = 0; i < in->ndim; i++) {
        uint64_t d = (uint64_t)b[4 * i] << 24 | (uint64_t)b[4 * i + 1] << 16
                     | (uint64_t)b[4 * i + 2] << 8 | b[4 * i + 3];
        if (d == 0)
            return io_file_err(s->path, "dim %d is 0 (empty IDX arrays are not accepted)", i + 1);
        in->shape[i] = (int64_t)d;
        if (n > IDX_MAX_BYTES / d)
            return io_file_err(s->path, "declared size is too large (over %" PRIu64 " bytes)",
                               IDX_MAX_BYTES);
        n *= d;
    }
    in->numel = n;
    in->bytes = n * in->esize;
    if (in->bytes > IDX_MAX_BYTES)
        return io_file_err(s->path, "declared size %" PRIu64 " bytes is over the %" PRIu64
                           "-byte limit", in->bytes, IDX_MAX_BYTES);
    return 0;
}

/* Check the declared data against what the file can hold, before allocating. */
static int idx_check_capacity(const idx_src *s, const idx_info *in)
{
    if (!s->gz) {
        uint64_t avail = s->file_size - s->pos;
        if (in->bytes > avail)
            return io_file_err(s->path, "truncated: the header declares %" PRIu64 " bytes of "
                               "data, the file has %" PRIu64, in->bytes, avail);
        return 0;
    }
    uint64_t most = s->file_size * IDX_GZ_RATIO + IDX_GZ_SLACK;
    if (in->bytes > most)
        return io_file_err(s->path, "the header declares %" PRIu64 " bytes of data, more than "
                           "a %" PRIu64 "-byte gzip file can hold", in->bytes, s->file_size);
    return 0;
}

/* The magic (two zero bytes, type, ndim) and the dims. */
static int idx_header(idx_src *s, idx_info *in)
{
    unsigned char m[4];
    if (!s->gz && s->file_size < 4)
        return io_file_err(s->path, "not an IDX file (only %" PRIu64 " bytes)", s->file_size);
    if (src_read(s, m, 4, "magic number") != 0)
        return -1;
    if (m[0] != 0 || m[1] != 0)
        return io_file_err(s->path, "not an IDX file (bad magic %02X %02X %02X %02X)", m[0], m[1],
                           m[2], m[3]);
    in->type = m[2];
    in->ndim = m[3];
    if (idx_type(in, s->path) != 0)
        return -1;
    if (in->ndim == 0)
        return io_file_err(s->path, "the header declares 0 dims");
    if (in->ndim > TENSOR_MAX_DIMS)
        return io_file_err(s->path, "%d dims declared; at most %d are supported", in->ndim,
                           TENSOR_MAX_DIMS);
    if (idx_dims(s, in) != 0)
        return -1;
    return idx_check_capacity(s, in);
}

/* --- the data --- */

/* Convert n big-endian elements at src into the tensor's data from element first. */
static void idx_convert(const idx_info *in, const unsigned char *src, void *dst, uint64_t first,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + i * in->esize;
        uint64_t u = 0;
        for (size_t k = 0; k < in->esize; k++)
            u = u << 8 | p[k];
        uint64_t j = first + i;
        if (in->dt == DT_F32) {
            uint32_t b = (uint32_t)u;
            memcpy((float *)dst + j, &b, 4);
        } else if (in->dt == DT_F64) {
            memcpy((double *)dst + j, &u, 8);
        } else {
            unsigned bits = (unsigned)(8 * in->esize);
            if ((u >> (bits - 1)) & 1)
                u |= ~(uint64_t)0 << bits; /* sign-extend (bits < 64 here) */
            memcpy((int64_t *)dst + j, &u, 8);
        }
    }
}

/* Read the data into t: straight for bytes, through a converting buffer else. */
static int idx_data(idx_src *s, const idx_info *in, tensor *t)
{
    if (in->type == 0x08)
        return src_read(s, tensor_data(t), (size_t)in->bytes, "data");
    unsigned char *buf = malloc(IDX_CHUNK);
    if (!buf)
        return io_file_err(s->path, "out of memory");
    size_t per = IDX_CHUNK / in->esize;
    int rc = 0;
    for (uint64_t done = 0; rc == 0 && done < in->numel;) {
        size_t k = in->numel - done < per ? (size_t)(in->numel - done) : per;
        rc = src_read(s, buf, k * in->esize, "data");
        if (rc == 0)
            idx_convert(in, buf, tensor_data(t), done, k);
        done += k;
    }
    free(buf);
    return rc;
}

/* Parse, allocate and fill: the body of io_idx_load with the source open. */
static tensor *idx_read(idx_src *s)
{
    idx_info in;
    memset(&in, 0, sizeof in);
    if (src_init_gz(s) != 0 || idx_header(s, &in) != 0)
        return NULL;
    tensor *t = tensor_empty(in.dt, in.ndim, in.shape, DEVICE_CPU);
    if (!t) {
        err_prefix(s->path);
        return NULL;
    }
    if (idx_data(s, &in, t) != 0 || src_check_end(s) != 0) {
        tensor_decref(t);
        return NULL;
    }
    return t;
}

tensor *io_idx_load(const char *path)
{
    idx_src s;
    memset(&s, 0, sizeof s);
    s.path = path;
    s.fd = -1;
    tensor *t = idx_open(&s) == 0 ? idx_read(&s) : NULL;
    src_close(&s);
    return t;
}
