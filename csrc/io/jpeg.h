/* JPEG images through libjpeg-turbo (the libjpeg API).
 *
 * Reading gives a uint8 [C,H,W] tensor: C = 1 for grayscale files, 3 for every
 * other colour space (YCbCr and RGB files decode to RGB). CMYK and YCCK files
 * (Adobe, Photoshop) are converted to RGB by R = (255 - C) * (255 - K) / 255 (G
 * from M, B from Y, rounded), after undoing the inverted storage of files with an
 * Adobe marker; no ICC profile is applied, so such colours are approximate.
 *
 * Errors: libjpeg's error_exit is replaced by one that formats the message and
 * longjmps back into the reader (never through a caller). Warnings that mean the
 * data is corrupt or truncated ("Premature end of JPEG file", bad Huffman or
 * arithmetic codes, a premature end of a data segment, broken progression) are
 * errors too; harmless ones (extraneous bytes before a marker, an unknown JFIF
 * revision, a bad ICC marker) are ignored. Images over 1 GiB of pixels are
 * refused before decoding, and libjpeg's own memory is capped likewise.
 *
 * Every error message starts with the file's path and says what was wrong. */
#ifndef MILES_IO_JPEG_H
#define MILES_IO_JPEG_H

#include "../tensor.h"

/* A new uint8 CPU tensor [C,H,W] with the image at path, or NULL. */
tensor *io_jpeg_load(const char *path);

#endif
