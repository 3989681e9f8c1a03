/* Element types of tensors and the promotion rules between them. */
#ifndef MILES_DTYPE_H
#define MILES_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ordered by promotion rank: the result of mixing two types is the larger one. */
typedef enum {
    DT_BOOL = 0,
    DT_U8,
    DT_I64,
    DT_BF16, /* bfloat16: float32's top 16 bits (storage; arithmetic is float32's) */
    DT_F32,
    DT_F64,
    DT_COUNT
} dtype_t;

size_t dtype_size(dtype_t t);
const char *dtype_name(dtype_t t);
/* Parse a name ("float32", "float", "float64", "double", "bfloat16", "bf16",
 * "int64", "long", "uint8", "byte", "bool"); returns -1 for an unknown name. */
int dtype_parse(const char *name);
bool dtype_is_float(dtype_t t);
dtype_t dtype_promote(dtype_t a, dtype_t b);

/* float32 <-> bfloat16 bits: to nearest, ties to even; a NaN stays a quiet NaN. */
uint16_t bf16_from_f32(float f);
float bf16_to_f32(uint16_t h);

/* Read element i of a buffer of type t as a double, and write one (a bfloat16
 * is written from the double rounded to float32, then to bfloat16). */
double dtype_load(dtype_t t, const void *base, int64_t i);
void dtype_store(dtype_t t, void *base, int64_t i, double v);

#endif
