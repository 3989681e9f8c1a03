/* NPY files (NumPy's single-array format, versions 1.0, 2.0 and 3.0).
 *
 * Types read: '<f4' float32, '<f8' float64, '<i8' int64, '|u1' uint8, '|b1' bool
 * as they are; the other integer types ('|i1', '<i2', '<i4', '<u2', '<u4', '<u8')
 * are converted to int64 ('<u8' values above 2^63-1 are an error). Big-endian
 * ('>') data is byte-swapped on load. float16, complex, strings, objects and
 * structured dtypes are rejected, and so are Fortran-order arrays. Bytes after
 * the declared data are ignored, as NumPy does. Bool bytes other than 0 and 1
 * read as true (1).
 *
 * Every error message starts with the file's path and says what was wrong. */
#ifndef MILES_IO_NPY_H
#define MILES_IO_NPY_H

#include "../tensor.h"

/* A new CPU tensor with the array stored in the file at path, or NULL. */
tensor *io_npy_load(const char *path);

/* Write a CPU tensor (any layout) as a C-order NPY file (version 1.0, or 2.0
 * when the header needs it). The file is written next to path and renamed over
 * it, so path holds either the old file or the whole new one. Returns 0 or -1. */
int io_npy_save(const char *path, const tensor *t);

/* Like io_npy_load, but the tensor's memory is a private (copy-on-write) mapping
 * of the file: writes to the tensor never reach the file. Falls back to a copy
 * when the data needs converting or is not aligned for its type. The file must
 * not be truncated while the tensor lives (the OS would raise SIGBUS). */
tensor *io_npy_mmap(const char *path);

#endif
