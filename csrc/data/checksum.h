/* Checksums of files and buffers: XXH64 (xxHash's 64-bit hash, seed 0), fast
 * enough to check a data set's cached arrays each time they are opened. */
#ifndef MILES_DATA_CHECKSUM_H
#define MILES_DATA_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* The hash of n bytes. */
uint64_t checksum_bytes(const void *data, size_t n);

/* The hash of a file's bytes into *hash and its size into *size: 0, or -1 with an
 * error message naming the file. */
int checksum_file(const char *path, uint64_t *hash, int64_t *size);

#endif
