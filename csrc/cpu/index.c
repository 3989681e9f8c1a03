/* Gather / scatter-add along the middle dim of [outer, *, inner] tensors, and
 * index_select / index_add with one index list. Indices were range-checked by the
 * op layer. Elements are moved by size, so every dtype works. */
#include <string.h>

#include "cpu.h"

int cpu_gather(tensor *out, const tensor *a, const tensor *idx, int64_t outer, int64_t na,
               int64_t m, int64_t inner)
{
    size_t es = dtype_size(a->dtype);
    const char *src = tensor_data(a);
    char *dst = tensor_data(out);
    const int64_t *ix = tensor_data(idx);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t p = (o * m + j) * inner + i;
                memcpy(dst + p * (int64_t)es, src + ((o * na + ix[p]) * inner + i) * (int64_t)es, es);
            }
    return 0;
}

/* out[..] += v, in out's float type (integer tensors are not differentiated). */
static void add_at(dtype_t dt, char *out, int64_t p, const char *src, int64_t q)
{
    if (dt == DT_F32)
        ((float *)out)[p] += ((const float *)src)[q];
    else if (dt == DT_F64)
        ((double *)out)[p] += ((const double *)src)[q];
    else
        dtype_store(dt, out, p, dtype_load(dt, out, p) + dtype_load(dt, src, q));
}

/* out[o, ix[..], i] += src[o, j, i] over [outer, m, inner]: the adjoint of
 * gather (one index per element, per_row false) or of index_select (one index
 * per j, per_row true). */
static void add_indexed(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                        int64_t na, int64_t m, int64_t inner, bool per_row)
{
    const char *s = tensor_data(src);
    char *d = tensor_data(out);
    const int64_t *ix = tensor_data(idx);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t p = (o * m + j) * inner + i;
                add_at(out->dtype, d, (o * na + ix[per_row ? j : p]) * inner + i, s, p);
            }
}

int cpu_scatter_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                    int64_t na, int64_t m, int64_t inner)
{
    add_indexed(out, src, idx, outer, na, m, inner, false);
    return 0;
}

int cpu_index_select(tensor *out, const tensor *a, const tensor *idx, int64_t outer,
                     int64_t na, int64_t m, int64_t inner)
{
    size_t row = dtype_size(a->dtype) * (size_t)inner;
    const char *src = tensor_data(a);
    char *dst = tensor_data(out);
    const int64_t *ix = tensor_data(idx);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            memcpy(dst + (size_t)(o * m + j) * row, src + (size_t)(o * na + ix[j]) * row, row);
    return 0;
}

int cpu_index_add(tensor *out, const tensor *src, const tensor *idx, int64_t outer,
                  int64_t na, int64_t m, int64_t inner)
{
    add_indexed(out, src, idx, outer, na, m, inner, true);
    return 0;
}
