/* JPEG reading with libjpeg-turbo: the file is read into memory (bounded by its
 * size), decoded a scanline at a time and scattered into a [C,H,W] tensor.
 *
 * libjpeg reports fatal errors through error_exit, which must not return. Ours
 * formats the message and longjmps to the setjmp point in jpeg_decode, a small
 * function whose state lives in a struct reached through a pointer (so nothing
 * is clobbered); io_jpeg_load then frees everything in that struct. */
#include "jpeg.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>

#include "../error.h"
#include "io_file.h"

#ifdef MILES_FUZZ
/* The fuzzing build lowers the cap so that a hostile header stays within the
 * fuzzer's memory limit; the checks are the same. */
#define JPEG_MAX_BYTES ((uint64_t)64 << 20)
#else
/* The largest decoded image (and the most memory libjpeg may use): 1 GiB. */
#define JPEG_MAX_BYTES ((uint64_t)1 << 30)
#endif
#define JPEG_MAX_FILE ((uint64_t)1 << 30)

/* libjpeg's error manager, extended with where to jump and the message. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_errmgr;

/* What a read needs, and everything it must free. */
typedef struct {
    const char *path;
    unsigned char *data; /* the whole file */
    size_t size;
    struct jpeg_decompress_struct cinfo;
    jpeg_errmgr err;
    unsigned char *row; /* one decoded scanline (W, C) */
    tensor *t;
} jpeg_reader;

/* --- libjpeg's callbacks --- */

/* Fatal errors: keep libjpeg's message and jump back into the reader. */
static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errmgr *e = (jpeg_errmgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings that mean the pixels are wrong: corrupt or missing entropy data. */
static bool jpeg_is_corruption(int code)
{
    return code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE
           || code == JWRN_ARITH_BAD_CODE || code == JWRN_MUST_RESYNC
           || code == JWRN_NOT_SEQUENTIAL || code == JWRN_BOGUS_PROGRESSION;
}

/* Messages: corruption warnings are fatal (a truncated file must not decode to
 * gray), other warnings are counted, trace messages are dropped. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return;
    if (jpeg_is_corruption(cinfo->err->msg_code))
        jpeg_on_error(cinfo);
    cinfo->err->num_warnings++;
}

/* --- the file --- */

/* Read the whole (regular) file into r->data; its size is capped. */
static int jpeg_slurp(jpeg_reader *r)
{
    uint64_t size = 0;
    int fd = io_file_open(r->path, &size);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (size > JPEG_MAX_FILE)
        rc = io_file_err(r->path, "file of %" PRIu64 " bytes is over the %" PRIu64
                         "-byte limit", size, JPEG_MAX_FILE);
    r->size = (size_t)size;
    if (rc == 0 && !(r->data = malloc(r->size ? r->size : 1)))
        rc = io_file_err(r->path, "out of memory");
    if (rc == 0)
        rc = io_file_read_at(fd, r->path, r->data, r->size, 0);
    close(fd);
    return rc;
}

/* --- decoding --- */

/* Choose the output colour space: gray stays gray, CMYK/YCCK come out as CMYK
 * (converted below), everything else as RGB. */
static void jpeg_pick_colors(struct jpeg_decompress_struct *ci)
{
    if (ci->jpeg_color_space == JCS_GRAYSCALE)
        ci->out_color_space = JCS_GRAYSCALE;
    else if (ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK)
        ci->out_color_space = JCS_CMYK;
    else
        ci->out_color_space = JCS_RGB;
}

/* Refuse images over the cap before libjpeg allocates for them. */
static int jpeg_check_size(jpeg_reader *r)
{
    struct jpeg_decompress_struct *ci = &r->cinfo;
    uint64_t c = ci->out_color_space == JCS_GRAYSCALE ? 1 : 4;
    uint64_t bytes = (uint64_t)ci->image_width * ci->image_height * c;
    if (ci->image_width == 0 || ci->image_height == 0)
        return io_file_err(r->path, "the image has a zero dimension");
    if (bytes > JPEG_MAX_BYTES)
        return io_file_err(r->path, "a %ux%u image is over the %" PRIu64 "-byte limit",
                           (unsigned)ci->image_width, (unsigned)ci->image_height, JPEG_MAX_BYTES);
    return 0;
}

/* One CMYK sample pair as the matching RGB value (see jpeg.h). */
static uint8_t jpeg_cmyk(unsigned v, unsigned k, bool inverted)
{
    if (!inverted) {
        v = 255 - v;
        k = 255 - k;
    }
    return (uint8_t)((v * k + 127) / 255);
}

/* Scatter scanline y into the [C,H,W] tensor, converting CMYK to RGB. */
static void jpeg_put_row(jpeg_reader *r, JDIMENSION y)
{
    struct jpeg_decompress_struct *ci = &r->cinfo;
    size_t w = ci->output_width, plane = w * ci->output_height;
    int nin = ci->output_components;
    bool cmyk = ci->out_color_space == JCS_CMYK, inv = ci->saw_Adobe_marker;
    uint8_t *dst = (uint8_t *)tensor_data(r->t) + (size_t)y * w;
    for (size_t x = 0; x < w; x++) {
        const unsigned char *px = r->row + x * (size_t)nin;
        if (cmyk)
            for (int k = 0; k < 3; k++)
                dst[k * plane + x] = jpeg_cmyk(px[k], px[3], inv);
        else
            for (int k = 0; k < nin; k++)
                dst[k * plane + x] = px[k];
    }
}

/* The decoding itself, from the header to the end of the image; libjpeg's
 * errors land at the setjmp point. */
static int jpeg_decode(jpeg_reader *r)
{
    struct jpeg_decompress_struct *ci = &r->cinfo;
    if (setjmp(r->err.jump))
        return io_file_err(r->path, "%s", r->err.msg);
    jpeg_create_decompress(ci);
    ci->mem->max_memory_to_use = (long)JPEG_MAX_BYTES;
    jpeg_mem_src(ci, r->data, (unsigned long)r->size);
    jpeg_read_header(ci, TRUE);
    jpeg_pick_colors(ci);
    if (jpeg_check_size(r) != 0)
        return -1;
    jpeg_start_decompress(ci);
    int64_t shape[3] = {ci->out_color_space == JCS_GRAYSCALE ? 1 : 3, ci->output_height,
                        ci->output_width};
    r->row = malloc((size_t)ci->output_width * (size_t)ci->output_components);
    if (!r->row)
        return io_file_err(r->path, "out of memory");
    r->t = tensor_empty(DT_U8, 3, shape, DEVICE_CPU);
    if (!r->t)
        return err_prefix(r->path);
    while (ci->output_scanline < ci->output_height) {
        JDIMENSION y = ci->output_scanline;
        JSAMPROW rows[1] = {r->row};
        if (jpeg_read_scanlines(ci, rows, 1) != 1)
            return io_file_err(r->path, "truncated: no data for row %u", (unsigned)y + 1);
        jpeg_put_row(r, y);
    }
    jpeg_finish_decompress(ci);
    return 0;
}

tensor *io_jpeg_load(const char *path)
{
    jpeg_reader *r = calloc(1, sizeof *r);
    if (!r) {
        io_file_err(path, "out of memory");
        return NULL;
    }
    r->path = path;
    int rc = jpeg_slurp(r);
    if (rc == 0 && (r->size < 2 || r->data[0] != 0xFF || r->data[1] != 0xD8))
        rc = io_file_err(path, "not a JPEG file (no SOI marker)");
    if (rc == 0) {
        r->cinfo.err = jpeg_std_error(&r->err.pub);
        r->err.pub.error_exit = jpeg_on_error;
        r->err.pub.emit_message = jpeg_on_message;
        rc = jpeg_decode(r);
    }
    /* Safe whether or not jpeg_create_decompress ran (cinfo.mem is NULL if not). */
    jpeg_destroy_decompress(&r->cinfo);
    tensor *t = rc == 0 ? r->t : NULL;
    if (rc != 0)
        tensor_decref(r->t);
    free(r->row);
    free(r->data);
    free(r);
    return t;
}
