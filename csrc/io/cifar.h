/* CIFAR-10 and CIFAR-100 binary batches (data_batch_*.bin, test_batch.bin,
 * train.bin, test.bin).
 *
 * A batch is a sequence of records with no header: CIFAR-10 records are 1 label
 * byte (0..9) then 3072 pixel bytes; CIFAR-100 records are 2 label bytes (coarse
 * 0..19, fine 0..99) then 3072 pixel bytes. The pixels are the red, green and
 * blue 32x32 planes, row-major, which is exactly a [3,32,32] uint8 image.
 *
 * Labels come back 1-based (as every index in miles): CIFAR-10 labels 1..10,
 * CIFAR-100 fine 1..100 and coarse 1..20. A file whose size is not a positive
 * multiple of the record size, a label out of range, or a file over 2 GiB is an
 * error whose message starts with the file's path. */
#ifndef MILES_IO_CIFAR_H
#define MILES_IO_CIFAR_H

#include "../tensor.h"

/* Read the batch at path; variant is 10 or 100. On success sets *images (uint8
 * [N,3,32,32]), *labels (int64 [N]: the label, or the fine label for CIFAR-100)
 * and, when coarse is not NULL, *coarse (int64 [N] coarse labels for CIFAR-100,
 * NULL for CIFAR-10), and returns 0; else returns -1 and sets nothing. */
int io_cifar_load(const char *path, int variant, tensor **images, tensor **labels,
                  tensor **coarse);

#endif
