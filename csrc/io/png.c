/* PNG reading and writing with libpng.
 *
 * libpng reports errors by longjmp to a setjmp point. Each entry point here sets
 * that point in one small function (png_decode, png_encode) whose only state is
 * a context struct reached through a pointer, so nothing is clobbered by the
 * jump; the caller then frees whatever the struct holds, on success and failure
 * alike. The longjmp never crosses a Lua frame: the bindings call these
 * functions, which return normally. */
#include "png.h"

#include <errno.h>
#include <inttypes.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../error.h"
#include "io_file.h"

/* The largest decoded image: 1 GiB of pixels. */
#define PNG_MAX_BYTES ((uint64_t)1 << 30)
/* deflate expands at most ~1032:1; the slack covers tiny files. */
#define PNG_ZLIB_RATIO 1040u
#define PNG_ZLIB_SLACK 4096u

/* libpng's messages: the error, and the last warning before it (which often says
 * why, as "Image width is zero in IHDR" before "Invalid IHDR data"). */
typedef struct {
    char error[256];
    char warning[160];
} png_msgs;

/* What a read needs, and everything it must free. */
typedef struct {
    const char *path;
    int fd;
    uint64_t file_size, pos;
    png_msgs msg;
    png_structp png;
    png_infop info;
    unsigned char *pixels; /* the decoded image, row after row (H, W, C) */
    png_bytep *rows;
    tensor *t;
} png_reader;

/* libpng's error callback: keep the message and jump back to the setjmp point. */
static void png_on_error(png_structp png, png_const_charp msg)
{
    png_msgs *m = png_get_error_ptr(png);
    snprintf(m->error, sizeof m->error, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

/* libpng's warning callback: warnings (a bad ancillary chunk) are not errors, but
 * the last one is kept for the message of an error that may follow. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    png_msgs *m = png_get_error_ptr(png);
    snprintf(m->warning, sizeof m->warning, "%s", msg ? msg : "");
}

/* Report libpng's error (with the warning before it, if any) for path. */
static int png_fail(const char *path, const char *what, const png_msgs *m)
{
    if (m->warning[0])
        return io_file_err(path, "%s%s (after the warning: %s)", what, m->error, m->warning);
    return io_file_err(path, "%s%s", what, m->error);
}

/* --- reading --- */

/* libpng's read callback: the next n bytes of the file, or a libpng error when
 * the file ends first (so a truncated PNG fails inside libpng's own checks). */
static void png_read_fd(png_structp png, png_bytep out, size_t n)
{
    png_reader *r = png_get_io_ptr(png);
    if (n > r->file_size - r->pos)
        png_error(png, "truncated: the file ends inside a chunk");
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(r->fd, out + got, n - got, (off_t)(r->pos + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            png_error(png, k < 0 ? "read error" : "truncated: the file ended while reading");
        got += (size_t)k;
    }
    r->pos += n;
}

/* Open the file and check the 8-byte PNG signature. */
static int png_open(png_reader *r)
{
    r->fd = io_file_open(r->path, &r->file_size);
    if (r->fd < 0)
        return -1;
    unsigned char sig[8];
    if (r->file_size < 8 || io_file_read_at(r->fd, r->path, sig, 8, 0) != 0
        || png_sig_cmp(sig, 0, 8) != 0)
        return io_file_err(r->path, "not a PNG file (bad signature)");
    r->pos = 8;
    return 0;
}

/* Bound what libpng allocates for chunks: no chunk can be longer than the file,
 * and the text, ICC and Exif chunks (which we do not use, and whose compressed
 * forms could expand without bound) are skipped unread. */
static void png_limits(png_reader *r)
{
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf"; /* 5 bytes each */
    png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
    png_set_chunk_malloc_max(r->png, (png_alloc_size_t)r->file_size);
    png_set_chunk_cache_max(r->png, 1000);
}

/* Ask libpng for 8-bit (or, for float output, 16-bit) gray, GA, RGB or RGBA. */
static void png_transforms(png_reader *r, dtype_t dt)
{
    png_structp png = r->png;
    int type = png_get_color_type(png, r->info);
    int depth = png_get_bit_depth(png, r->info);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, r->info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (depth == 16 && dt == DT_U8)
        png_set_scale_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, r->info);
}

/* The bytes of filtered rows the file's IHDR declares (before our expansions):
 * deflate produced them from at most ratio * size bytes of the file. */
static uint64_t png_raw_bytes(const png_reader *r)
{
    uint64_t w = png_get_image_width(r->png, r->info), h = png_get_image_height(r->png, r->info);
    uint64_t bits = (uint64_t)png_get_channels(r->png, r->info)
                    * png_get_bit_depth(r->png, r->info);
    return h * ((w * bits + 7) / 8 + 1);
}

/* Refuse images that the file could not hold, or whose decoded rows or tensor
 * would pass the cap: a hostile IHDR must not make us allocate. */
static int png_check_size(png_reader *r, uint64_t raw, size_t rowbytes, dtype_t dt)
{
    uint32_t w = png_get_image_width(r->png, r->info), h = png_get_image_height(r->png, r->info);
    uint64_t out = (uint64_t)w * h * (uint64_t)png_get_channels(r->png, r->info) * dtype_size(dt);
    if (raw > r->file_size * PNG_ZLIB_RATIO + PNG_ZLIB_SLACK)
        return io_file_err(r->path, "a %" PRIu32 "x%" PRIu32 " image cannot fit in %" PRIu64
                           " bytes (truncated or hostile file)", w, h, r->file_size);
    if ((uint64_t)rowbytes * h > PNG_MAX_BYTES || out > PNG_MAX_BYTES)
        return io_file_err(r->path, "a %" PRIu32 "x%" PRIu32 " image is over the %" PRIu64
                           "-byte limit", w, h, PNG_MAX_BYTES);
    return 0;
}

/* The row buffer and row pointers for png_read_image. */
static int png_alloc_rows(png_reader *r, uint32_t h, size_t rowbytes)
{
    r->pixels = malloc(rowbytes * h);
    r->rows = malloc(sizeof *r->rows * h);
    if (!r->pixels || !r->rows)
        return io_file_err(r->path, "out of memory for a %zu-byte image", rowbytes * h);
    for (uint32_t y = 0; y < h; y++)
        r->rows[y] = r->pixels + (size_t)y * rowbytes;
    return 0;
}

/* Scatter the interleaved rows (H, W, C) into the [C,H,W] tensor, as uint8 or as
 * float32 in [0,1] (16-bit samples are big-endian pairs). */
static void png_to_chw(const png_reader *r, int c, uint32_t h, uint32_t w, int depth)
{
    size_t plane = (size_t)h * w, bps = depth == 16 ? 2 : 1;
    float scale = depth == 16 ? 1.0f / 65535.0f : 1.0f / 255.0f;
    uint8_t *u8 = r->t->dtype == DT_U8 ? tensor_data(r->t) : NULL;
    float *f32 = u8 ? NULL : tensor_data(r->t);
    for (size_t i = 0; i < plane; i++) {
        const unsigned char *px = r->pixels + i * (size_t)c * bps;
        for (int k = 0; k < c; k++) {
            unsigned v = bps == 2 ? (unsigned)px[2 * k] << 8 | px[2 * k + 1] : px[k];
            if (u8)
                u8[(size_t)k * plane + i] = (uint8_t)v;
            else
                f32[(size_t)k * plane + i] = (float)v * scale;
        }
    }
}

/* The decoding itself, from the IHDR to the IEND; libpng errors land here. */
static int png_decode(png_reader *r, dtype_t dt)
{
    if (setjmp(png_jmpbuf(r->png)))
        return png_fail(r->path, "", &r->msg);
    png_set_read_fn(r->png, r, png_read_fd);
    png_set_sig_bytes(r->png, 8);
    png_limits(r);
    png_read_info(r->png, r->info);
    uint32_t w = png_get_image_width(r->png, r->info);
    uint32_t h = png_get_image_height(r->png, r->info);
    uint64_t raw = png_raw_bytes(r);
    png_transforms(r, dt);
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    int c = png_get_channels(r->png, r->info);
    int depth = png_get_bit_depth(r->png, r->info);
    if (png_check_size(r, raw, rowbytes, dt) != 0 || png_alloc_rows(r, h, rowbytes) != 0)
        return -1;
    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL);
    int64_t shape[3] = {c, h, w};
    r->t = tensor_empty(dt, 3, shape, DEVICE_CPU);
    if (!r->t)
        return err_prefix(r->path);
    png_to_chw(r, c, h, w, depth);
    return 0;
}

tensor *io_png_load(const char *path, dtype_t dt)
{
    if (dt != DT_U8 && dt != DT_F32) {
        io_file_err(path, "read as %s is not supported (uint8 or float32)", dtype_name(dt));
        return NULL;
    }
    png_reader r = {.path = path, .fd = -1};
    int rc = png_open(&r);
    if (rc == 0) {
        r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r.msg, png_on_error,
                                       png_on_warning);
        r.info = r.png ? png_create_info_struct(r.png) : NULL;
        rc = r.info ? png_decode(&r, dt) : io_file_err(path, "out of memory (libpng)");
    }
    png_destroy_read_struct(r.png ? &r.png : NULL, r.info ? &r.info : NULL, NULL);
    free(r.rows);
    free(r.pixels);
    if (r.fd >= 0)
        close(r.fd);
    if (rc != 0) {
        tensor_decref(r.t);
        return NULL;
    }
    return r.t;
}

/* --- writing --- */

/* What a write needs, and everything it must free. */
typedef struct {
    const char *path;
    png_msgs msg;
    png_structp png;
    png_infop info;
    unsigned char *row;
    const tensor *t; /* contiguous uint8 [C,H,W] */
    int c;
    uint32_t h, w;
} png_writer;

/* The channel count, height and width of a tensor we can write, or an error. */
static int png_check_tensor(png_writer *wr, const tensor *t)
{
    char shp[64];
    if (!device_eq(tensor_device(t), DEVICE_CPU))
        return io_file_err(wr->path, "write: move the tensor to the cpu first");
    if (t->dtype != DT_U8)
        return io_file_err(wr->path, "write: expected a uint8 tensor, got %s (scale to 0..255 "
                           "and convert with :to(\"uint8\"))", dtype_name(t->dtype));
    bool hw = t->ndim == 2, chw = t->ndim == 3 && t->shape[0] >= 1 && t->shape[0] <= 4;
    if (!hw && !chw)
        return io_file_err(wr->path, "write: expected a [H,W] or [C,H,W] tensor with C = 1, 2, "
                           "3 or 4, got shape %s", tensor_shape_str(t, shp, sizeof shp));
    int64_t h = t->shape[t->ndim - 2], w = t->shape[t->ndim - 1];
    if (h < 1 || w < 1 || h > 0x7fffffff || w > 0x7fffffff)
        return io_file_err(wr->path, "write: cannot write an image of shape %s",
                           tensor_shape_str(t, shp, sizeof shp));
    wr->c = hw ? 1 : (int)t->shape[0];
    wr->h = (uint32_t)h;
    wr->w = (uint32_t)w;
    return 0;
}

/* Gather row y of every channel into one interleaved row. */
static void png_gather_row(png_writer *wr, uint32_t y)
{
    const uint8_t *src = tensor_data(wr->t);
    size_t plane = (size_t)wr->h * wr->w;
    for (uint32_t x = 0; x < wr->w; x++)
        for (int k = 0; k < wr->c; k++)
            wr->row[(size_t)x * wr->c + k] = src[k * plane + (size_t)y * wr->w + x];
}

/* The encoding into f; libpng errors (a failed write) land at the setjmp point,
 * with the message kept in wr->msg. */
static bool png_encode(png_writer *wr, FILE *f)
{
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    if (setjmp(png_jmpbuf(wr->png)))
        return false;
    png_init_io(wr->png, f);
    png_set_IHDR(wr->png, wr->info, wr->w, wr->h, 8, types[wr->c], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(wr->png, wr->info);
    for (uint32_t y = 0; y < wr->h; y++) {
        png_gather_row(wr, y);
        png_write_row(wr->png, wr->row);
    }
    png_write_end(wr->png, NULL);
    return true;
}

/* io_file_write_atomic's writer: libpng's state, then the encoding into f. */
static bool png_write_file(FILE *f, const void *ctx)
{
    png_writer *wr = (png_writer *)ctx;
    wr->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &wr->msg, png_on_error,
                                      png_on_warning);
    wr->info = wr->png ? png_create_info_struct(wr->png) : NULL;
    if (!wr->info) {
        snprintf(wr->msg.error, sizeof wr->msg.error, "out of memory (libpng)");
        return false;
    }
    return png_encode(wr, f);
}

int io_png_save(const char *path, const tensor *t)
{
    png_writer wr = {.path = path};
    if (png_check_tensor(&wr, t) != 0)
        return -1;
    /* tensor_contiguous only takes a reference or copies; t itself is not changed. */
    tensor *c = tensor_contiguous((tensor *)t);
    if (!c)
        return err_prefix(path);
    wr.t = c;
    wr.row = malloc((size_t)wr.w * (size_t)wr.c);
    int rc = wr.row ? io_file_write_atomic(path, png_write_file, &wr)
                    : io_file_err(path, "write: out of memory");
    /* A libpng error says more than the errno io_file_write_atomic reports. */
    if (rc != 0 && wr.msg.error[0])
        png_fail(path, "write: ", &wr.msg);
    png_destroy_write_struct(wr.png ? &wr.png : NULL, wr.info ? &wr.info : NULL);
    free(wr.row);
    tensor_decref(c);
    return rc;
}
