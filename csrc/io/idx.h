/* IDX files: the format of MNIST, Fashion-MNIST and their kin.
 *
 * The layout: two zero bytes, a type byte, the number of dims (1..8), one
 * big-endian uint32 size per dim, then the elements in C order, big-endian.
 * Types: 0x08 unsigned byte -> uint8; 0x09 signed byte, 0x0B int16, 0x0C int32
 * -> int64; 0x0D float32 -> float32; 0x0E float64 -> float64.
 *
 * A file that starts with the gzip magic (1f 8b) is decompressed on the fly
 * (the files are usually distributed as *-ubyte.gz); concatenated gzip members
 * are accepted. The data must end exactly where the header says: a short file,
 * extra bytes, a zero dim, more than 8 dims, an unknown type or a declared size
 * over the file's capacity (or over 2 GiB) is an error.
 *
 * Every error message starts with the file's path and says what was wrong. */
#ifndef MILES_IO_IDX_H
#define MILES_IO_IDX_H

#include "../tensor.h"

/* A new CPU tensor with the array stored in the IDX file at path, or NULL. */
tensor *io_idx_load(const char *path);

#endif
