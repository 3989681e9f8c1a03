/* File access shared by the readers and writers of csrc/io: errors that start
 * with the file's path, reads bounded by the file's size, the byte order of the
 * data, and atomic writes (a temporary file renamed over the target). */
#ifndef MILES_IO_FILE_H
#define MILES_IO_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define IO_HOST_BIG true
#else
#define IO_HOST_BIG false
#endif

/* Set "<path>: <message>" as the error; returns -1. */
__attribute__((format(printf, 2, 3))) int io_file_err(const char *path, const char *fmt, ...);

/* Open a regular file for reading and take its size: returns the file
 * descriptor, or -1 with the error set (a directory, FIFO or device is refused
 * without waiting for a writer). */
int io_file_open(const char *path, uint64_t *size);

/* Read n bytes at off into buf, retrying short reads; a file that ends early (it
 * shrank since its size was taken) is reported as truncated. Returns 0 or -1. */
int io_file_read_at(int fd, const char *path, void *buf, size_t n, uint64_t off);

/* The n (at most 8) bytes at p as an unsigned integer, big- or little-endian. */
uint64_t io_file_uint(const unsigned char *p, size_t n, bool big);

/* Reverse the bytes of each of n elements of esize bytes (for big-endian hosts). */
void io_file_swap(void *p, size_t esize, size_t n);

/* Writes a file's contents to f; returns whether all of it was written. */
typedef bool (*io_file_writer)(FILE *f, const void *ctx);

/* Call write on a fresh temporary file next to path, flush it to disk and rename
 * it over path: readers of path see the old file or the whole new one, even if
 * the process is killed. Returns 0, or -1 with "<path>: save: <reason>" set. */
int io_file_write_atomic(const char *path, io_file_writer write, const void *ctx);

/* A piece of a file's contents: n bytes at data. */
typedef struct {
    const void *data;
    size_t n;
} io_file_piece;

/* io_file_write_atomic of a file made of n pieces, one after the other. */
int io_file_write_pieces(const char *path, size_t n, const io_file_piece *pieces);

#endif
