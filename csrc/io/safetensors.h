/* safetensors files (Hugging Face's format, read by Python's `safetensors` and
 * PyTorch): the checkpoint format of miles.
 *
 * The layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * (padded with spaces), then the tensors' raw little-endian bytes, each at
 * [begin, end) counted from the end of the header. Types read and written: F32,
 * F64, I64, U8 and BOOL (miles' dtypes); any other is rejected by name.
 *
 * The reader checks everything before it trusts it: the header length against
 * the file's size, the JSON's syntax (a small parser just for this header, that
 * never reads past its end), the dtype, the shape against the byte range, and
 * that the ranges lie inside the data and do not overlap. Every error message
 * starts with the file's path and says what was wrong. */
#ifndef MILES_IO_SAFETENSORS_H
#define MILES_IO_SAFETENSORS_H

#include <stddef.h>

#include "../tensor.h"

/* One named tensor of a file. */
typedef struct {
    char *name;
    tensor *t;
} io_st_entry;

/* The contents of a file: its tensors (in the header's order) and metadata. */
typedef struct {
    io_st_entry *entries;
    size_t n;
    char **meta_keys, **meta_vals;
    size_t n_meta;
} io_st_file;

/* Read the file at path into out (which the caller zeroes first; on failure it
 * is left empty). Returns 0, or -1 with the error set. */
int io_st_load(const char *path, io_st_file *out);

/* Release what io_st_load put in f and empty it; safe to call twice, and on a
 * file whose entries were partly taken (names or tensors set to NULL). */
void io_st_free(io_st_file *f);

/* Write n CPU tensors (any layout) under names, with n_meta metadata strings,
 * as a safetensors file: tensors sorted by name, data contiguous, the header
 * padded with spaces so the data starts at a multiple of 8. The file is written
 * to a temporary file in the same directory, flushed to disk and renamed over
 * path, so path holds the old file or the whole new one, even if the process is
 * killed. Returns 0, or -1 with the error set. */
int io_st_save(const char *path, size_t n, const char *const *names, tensor *const *tensors,
               size_t n_meta, const char *const *meta_keys, const char *const *meta_vals);

/* Write n bytes to path atomically in the same way (for checkpoints' sidecar
 * files). Returns 0, or -1 with the error set. */
int io_st_write_atomic(const char *path, const void *data, size_t n);

#endif
