/* CIFAR binary batches: the record count from the file's size, then the records
 * read in blocks, pixels copied into the images and labels checked and made
 * 1-based. Nothing is allocated before the size has been checked, and every read
 * lies inside the file. */
#include "cifar.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../error.h"
#include "io_file.h"

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

/* Open the file, and derive the record count from its size. */
static int cifar_open(cifar_batch *b)
{
    uint64_t size = 0;
    b->fd = io_file_open(b->path, &size);
    if (b->fd < 0)
        return -1;
    if (size == 0)
        return io_file_err(b->path, "empty file (no CIFAR-%d records)", b->variant);
    if (size > CIFAR_MAX_BYTES)
        return io_file_err(b->path, "file of %" PRIu64 " bytes is over the %" PRIu64
                           "-byte limit", size, CIFAR_MAX_BYTES);
    if (size % b->rec != 0)
        return io_file_err(b->path, "size %" PRIu64 " is not a multiple of the CIFAR-%d "
                           "record size %zu (truncated, or another variant?)", size, b->variant,
                           b->rec);
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
            return io_file_err(b->path, "record %" PRId64 ": label %d is out of range 0..9 "
                               "(a CIFAR-100 file?)", i + 1, r[0]);
        lab[i] = r[0] + 1;
        return 0;
    }
    if (r[0] > 19 || r[1] > 99)
        return io_file_err(b->path, "record %" PRId64 ": labels (coarse %d, fine %d) are out "
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
        return io_file_err(b->path, "out of memory");
    uint8_t *img = tensor_data(b->images);
    int rc = 0;
    for (int64_t i = 0; rc == 0 && i < b->n;) {
        int64_t k = b->n - i < CIFAR_BLOCK ? b->n - i : CIFAR_BLOCK;
        rc = io_file_read_at(b->fd, b->path, buf, (size_t)k * b->rec, (uint64_t)i * b->rec);
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
        return io_file_err(path, "unknown CIFAR variant %d (10 or 100)", variant);
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
