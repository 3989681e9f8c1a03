/* PNG images through libpng: a reader for every PNG colour type and a writer
 * for 8-bit gray, gray+alpha, RGB and RGBA.
 *
 * Reading gives a [C,H,W] tensor with C = 1 (gray), 2 (gray+alpha), 3 (RGB) or
 * 4 (RGBA). Palette images are expanded to RGB (RGBA when they carry a tRNS
 * chunk), gray images of 1, 2 or 4 bits are scaled to 8 bits (a 1-bit 1 is
 * 255), and a tRNS colour key on a gray or RGB image becomes an alpha channel.
 * Interlaced images are de-interlaced.
 *
 * 16-bit images: with dt = DT_U8 (the default of the binding) each sample is
 * scaled to 8 bits with rounding, v8 = round(v16 * 255 / 65535) (libpng's
 * png_set_scale_16, not a truncation to the high byte). With dt = DT_F32 the
 * result is float32 in [0,1]: v16 / 65535 for 16-bit images, v8 / 255 for the
 * others, so no precision is lost.
 *
 * A file whose declared pixels need more than 1 GiB, or more than its size
 * could hold after deflate's largest expansion, is refused before anything is
 * allocated, and no chunk may claim more bytes than the file has. Text, ICC,
 * Exif and suggested-palette chunks are skipped unread. A PNG must be complete up
 * to its IEND chunk; CRC errors in critical chunks are errors, in ancillary
 * chunks the chunk is skipped.
 *
 * Every error message starts with the file's path and says what was wrong;
 * libpng's longjmp never leaves this module. */
#ifndef MILES_IO_PNG_H
#define MILES_IO_PNG_H

#include "../tensor.h"

/* A new uint8 (dt = DT_U8) or float32 (dt = DT_F32) CPU tensor [C,H,W] with
 * the image at path, or NULL. */
tensor *io_png_load(const char *path, dtype_t dt);

/* Write a uint8 CPU tensor [H,W] (gray) or [C,H,W] with C = 1 (gray), 2
 * (gray+alpha), 3 (RGB) or 4 (RGBA) as an 8-bit PNG. The file is written next to
 * path and renamed over it, so path holds the old file or the whole new one.
 * Returns 0 or -1. */
int io_png_save(const char *path, const tensor *t);

#endif
