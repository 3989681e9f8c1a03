/* CIFAR binary batches: the record count from the file's size, then the records
 * read in blocks, pixels copied into the images and labels checked and made
 * 1-based. Nothing is allocated before the size has been checked, and every read
 * lies inside the file. */
#include "cifar.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"

#define CIFAR_PIXELS 3072 /* 3 x 32 x 32 */
#define CIFAR_MAX_BYTES ((uint64_t)1 << 31)
#define CIFAR_BLOCK 256 /* records per read */

/* The batch being read. */
typedef struct {
    const char *path;
    int fd;
    int variant;
    size_t nlab;   /* label bytes per record: 1 or 2 */
    size_t rec;    /* bytes per record */
    int64_t n;     /* records */
    tensor *images, *labels, *coarse;
} cifar_batch;

/* Set "<path>: <message>" as the error; returns -1. */
__attribute__((format(printf, 2, 3))) static int cifar_err(const char *path, const char *fmt,
                                                           ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set("%s: %s", path, msg);
}

/* Read n bytes at off, retrying short reads; a file that shrank is truncated. */
static int cifar_pread(const cifar_batch *b, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(b->fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return cifar_err(b->path, "read error: %s", strerror(errno));
        if (r == 0)
            return cifar_err(b->path, "truncated: the file ended while reading");
        got += (size_t)r;
    }
    return 0;
}

/* Open the file, and derive the record count from its size. */
static int cifar_open(cifar_batch *b)
{
    b->fd = open(b->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (b->fd < 0)
        return cifar_err(b->path, "%s", strerror(errno));
    struct stat sb;
    if (fstat(b->fd, &sb) != 0)
        return cifar_err(b->path, "%s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return cifar_err(b->path, "%s", S_ISDIR(sb.st_mode) ? "is a directory"
                                                              : "not a regular file");
    uint64_t size = (uint64_t)sb.st_size;
    if (size == 0)
        return cifar_err(b->path, "empty file (no CIFAR-%d records)", b->variant);
    if (size > CIFAR_MAX_BYTES)
        return cifar_err(b->path, "file of %" PRIu64 " bytes is over the %" PRIu64
                         "-byte limit", size, CIFAR_MAX_BYTES);
    if (size % b->rec != 0)
        return cifar_err(b->path, "size %" PRIu64 " is not a multiple of the CIFAR-%d record "
                         "size %zu (truncated, or another variant?)", size, b->variant, b->rec);
    b->n = (int64_t)(size / b->rec);
    return 0;
}

/* The output tensors, allocated once the count is known. */
static int cifar_alloc(cifar_batch *b)
{
    int64_t ishape[4] = {b->n, 3, 32, 32};
    b->images = tensor_empty(DT_U8, 4, ishape, DEVICE_CPU);
    b->labels = b->images ? tensor_empty(DT_I64, 1, &b->n, DEVICE_CPU) : NULL;
    if (b->labels && b->variant == 100)
        b->coarse = tensor_empty(DT_I64, 1, &b->n, DEVICE_CPU);
    if (!b->labels || (b->variant == 100 && !b->coarse))
        return err_prefix(b->path);
    return 0;
}

/* Check one record's labels and store them 1-based; i is its 0-based index. */
static int cifar_labels(cifar_batch *b, const unsigned char *r, int64_t i)
{
    int64_t *lab = tensor_data(b->labels);
    if (b->variant == 10) {
        if (r[0] > 9)
            return cifar_err(b->path, "record %" PRId64 ": label %d is out of range 0..9 "
                             "(a CIFAR-100 file?)", i + 1, r[0]);
        lab[i] = r[0] + 1;
        return 0;
    }
    if (r[0] > 19 || r[1] > 99)
        return cifar_err(b->path, "record %" PRId64 ": labels (coarse %d, fine %d) are out "
                         "of range 0..19, 0..99 (a CIFAR-10 file?)", i + 1, r[0], r[1]);
    ((int64_t *)tensor_data(b->coarse))[i] = r[0] + 1;
    lab[i] = r[1] + 1;
    return 0;
}

/* Read every record, a block at a time. */
static int cifar_records(cifar_batch *b)
{
    unsigned char *buf = malloc(CIFAR_BLOCK * b->rec);
    if (!buf)
        return cifar_err(b->path, "out of memory");
    uint8_t *img = tensor_data(b->images);
    int rc = 0;
    for (int64_t i = 0; rc == 0 && i < b->n;) {
        int64_t k = b->n - i < CIFAR_BLOCK ? b->n - i : CIFAR_BLOCK;
        rc = cifar_pread(b, buf, (size_t)k * b->rec, (uint64_t)i * b->rec);
        for (int64_t j = 0; rc == 0 && j < k; j++) {
            const unsigned char *r = buf + (size_t)j * b->rec;
            rc = cifar_labels(b, r, i + j);
            if (rc == 0)
                memcpy(img + (size_t)(i + j) * CIFAR_PIXELS, r + b->nlab, CIFAR_PIXELS);
        }
        i += k;
    }
    free(buf);
    return rc;
}

int io_cifar_load(const char *path, int variant, tensor **images, tensor **labels,
                  tensor **coarse)
{
    if (variant != 10 && variant != 100)
        return cifar_err(path, "unknown CIFAR variant %d (10 or 100)", variant);
    size_t nlab = variant == 10 ? 1 : 2;
    cifar_batch b = {path, -1, variant, nlab, nlab + CIFAR_PIXELS, 0, NULL, NULL, NULL};
    int rc = cifar_open(&b);
    if (rc == 0)
        rc = cifar_alloc(&b);
    if (rc == 0)
        rc = cifar_records(&b);
    if (b.fd >= 0)
        close(b.fd);
    if (rc != 0) {
        tensor_decref(b.images);
        tensor_decref(b.labels);
        tensor_decref(b.coarse);
        return -1;
    }
    *images = b.images;
    *labels = b.labels;
    if (coarse)
        *coarse = b.coarse;
    else
        tensor_decref(b.coarse);
    return 0;
}
