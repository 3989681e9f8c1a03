#include "dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[DT_COUNT] = {
    [DT_BOOL] = {"bool", 1},
    [DT_U8] = {"uint8", 1},
    [DT_I64] = {"int64", 8},
    [DT_BF16] = {"bfloat16", 2},
    [DT_F32] = {"float32", 4},
    [DT_F64] = {"float64", 8},
};

size_t dtype_size(dtype_t t)
{
    return dtype_info[t].size;
}

const char *dtype_name(dtype_t t)
{
    return dtype_info[t].name;
}

int dtype_parse(const char *name)
{
    static const struct {
        const char *alias;
        dtype_t t;
    } aliases[] = {
        {"float", DT_F32}, {"double", DT_F64}, {"bf16", DT_BF16}, {"long", DT_I64}, {"byte", DT_U8},
    };
    for (int t = 0; t < DT_COUNT; t++)
        if (strcmp(name, dtype_info[t].name) == 0)
            return t;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(name, aliases[i].alias) == 0)
            return (int)aliases[i].t;
    return -1;
}

bool dtype_is_float(dtype_t t)
{
    return t == DT_BF16 || t == DT_F32 || t == DT_F64;
}

dtype_t dtype_promote(dtype_t a, dtype_t b)
{
    return a > b ? a : b;
}

uint16_t bf16_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign, force quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1); /* to nearest, ties to even (overflow gives inf) */
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

double dtype_load(dtype_t t, const void *base, int64_t i)
{
    switch (t) {
    case DT_BOOL: return ((const uint8_t *)base)[i] != 0;
    case DT_U8: return ((const uint8_t *)base)[i];
    case DT_I64: return (double)((const int64_t *)base)[i];
    case DT_BF16: return bf16_to_f32(((const uint16_t *)base)[i]);
    case DT_F32: return ((const float *)base)[i];
    case DT_F64: return ((const double *)base)[i];
    default: return 0;
    }
}

void dtype_store(dtype_t t, void *base, int64_t i, double v)
{
    switch (t) {
    case DT_BOOL: ((uint8_t *)base)[i] = v != 0; break;
    case DT_U8: ((uint8_t *)base)[i] = (uint8_t)(int64_t)v; break;
    case DT_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    case DT_BF16: ((uint16_t *)base)[i] = bf16_from_f32((float)v); break;
    case DT_F32: ((float *)base)[i] = (float)v; break;
    case DT_F64: ((double *)base)[i] = v; break;
    default: break;
    }
}
