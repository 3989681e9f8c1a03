/* Resizing NCHW planes on the CPU (interpolate): bilinear and PyTorch's legacy
 * "nearest", forward and backward, for float32 and float64.
 *
 * Source positions follow PyTorch 1.13's CPU kernels exactly: the scale is
 * 1/scale_factor when the user gave one (else in/out), or (in-1)/(out-1) with
 * align_corners; bilinear clamps negative source positions to 0 and maps an axis
 * whose size does not change to itself; nearest takes floor(dst * scale) computed
 * in the data's precision and floored in float, clamped to the last pixel.
 * Each axis is described once by a table of taps, then every plane is a loop over
 * them. The backward passes scatter each output gradient into the input grid. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "cpu.h"
#include "iter.h"

/* Work below this many output elements runs on one thread. */
#define RESIZE_PARALLEL_MIN 32768

/* Where output index o of an axis reads: two source indices and their weights
 * (nearest: i0 only). */
typedef struct {
    int64_t i0, i1;
    double l0, l1;
} tap;

/* PyTorch's area_pixel_compute_scale, in the data's precision. */
double resize_linear_scale(int64_t in, int64_t out, double user_scale, bool align, bool f32)
{
    if (align)
        return out > 1 ? (f32 ? (double)((float)(in - 1) / (float)(out - 1))
                              : (double)(in - 1) / (double)(out - 1))
                       : 0;
    if (user_scale > 0)
        return f32 ? (double)(float)(1.0 / user_scale) : 1.0 / user_scale;
    return f32 ? (double)((float)in / (float)out) : (double)in / (double)out;
}

/* PyTorch's area_pixel_compute_source_index (non-cubic), in the data's precision. */
static double linear_source(double scale, int64_t o, bool align, bool f32)
{
    double r;
    if (f32)
        r = align ? (float)scale * (float)o : (float)scale * ((float)o + 0.5f) - 0.5f;
    else
        r = align ? scale * (double)o : scale * ((double)o + 0.5) - 0.5;
    return r < 0 ? 0 : r;
}

/* The bilinear taps of an axis of `in` pixels resized to `out`. */
static void linear_taps(tap *t, int64_t in, int64_t out, double user_scale, bool align, bool f32)
{
    double scale = resize_linear_scale(in, out, user_scale, align, f32);
    for (int64_t o = 0; o < out; o++) {
        if (in == out) { /* PyTorch copies an axis that keeps its size */
            t[o] = (tap){o, o, 1, 0};
            continue;
        }
        double r = linear_source(scale, o, align, f32);
        int64_t i0 = (int64_t)r;
        double l1 = fmin(fmax(r - (double)i0, 0), 1);
        t[o] = (tap){i0, i0 < in - 1 ? i0 + 1 : i0, 1 - l1, l1};
    }
}

double resize_nearest_scale(int64_t in, int64_t out, double user_scale, bool f32)
{
    if (f32)
        return user_scale > 0 ? (float)(1.0 / user_scale) : (float)in / (float)out;
    return user_scale > 0 ? 1.0 / user_scale : (double)in / (double)out;
}

/* The nearest taps of an axis (i0 only). */
static void nearest_taps(tap *t, int64_t in, int64_t out, double user_scale, bool f32)
{
    double s = resize_nearest_scale(in, out, user_scale, f32);
    for (int64_t o = 0; o < out; o++) {
        float r = f32 ? (float)o * (float)s : (float)((double)o * s);
        int64_t i = (int64_t)floorf(r);
        t[o] = (tap){i < in - 1 ? i : in - 1, 0, 1, 0};
    }
}

/* The taps of both axes: rows then columns, in one block the caller frees. */
static tap *make_taps(int64_t ih, int64_t iw, int64_t oh, int64_t ow, const resize_params *p,
                      dtype_t dt)
{
    tap *t = malloc(sizeof *t * (size_t)(oh + ow));
    if (!t) {
        err_set("interpolate: out of memory");
        return NULL;
    }
    bool f32 = dt == DT_F32;
    if (p->mode == RESIZE_NEAREST) {
        nearest_taps(t, ih, oh, p->scale_h, f32);
        nearest_taps(t + oh, iw, ow, p->scale_w, f32);
    } else {
        linear_taps(t, ih, oh, p->scale_h, p->align_corners, f32);
        linear_taps(t + oh, iw, ow, p->scale_w, p->align_corners, f32);
    }
    return t;
}

/* --- forward: one plane --- */

static void bilinear_plane_f32(const float *x, float *y, int64_t iw, const tap *ty,
                               int64_t oh, const tap *tx, int64_t ow)
{
    for (int64_t i = 0; i < oh; i++) {
        const float *r0 = x + ty[i].i0 * iw, *r1 = x + ty[i].i1 * iw;
        float a0 = (float)ty[i].l0, a1 = (float)ty[i].l1;
        for (int64_t j = 0; j < ow; j++) {
            float b0 = (float)tx[j].l0, b1 = (float)tx[j].l1;
            int64_t c0 = tx[j].i0, c1 = tx[j].i1;
            y[i * ow + j] = a0 * (b0 * r0[c0] + b1 * r0[c1]) + a1 * (b0 * r1[c0] + b1 * r1[c1]);
        }
    }
}

static void bilinear_plane_f64(const double *x, double *y, int64_t iw, const tap *ty,
                               int64_t oh, const tap *tx, int64_t ow)
{
    for (int64_t i = 0; i < oh; i++) {
        const double *r0 = x + ty[i].i0 * iw, *r1 = x + ty[i].i1 * iw;
        double a0 = ty[i].l0, a1 = ty[i].l1;
        for (int64_t j = 0; j < ow; j++) {
            double b0 = tx[j].l0, b1 = tx[j].l1;
            int64_t c0 = tx[j].i0, c1 = tx[j].i1;
            y[i * ow + j] = a0 * (b0 * r0[c0] + b1 * r0[c1]) + a1 * (b0 * r1[c0] + b1 * r1[c1]);
        }
    }
}

/* Nearest copies elements, so one byte-wise loop serves every dtype. */
static void nearest_plane(const char *x, char *y, size_t es, int64_t iw, const tap *ty,
                          int64_t oh, const tap *tx, int64_t ow)
{
    for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++)
            memcpy(y + (size_t)(i * ow + j) * es, x + (size_t)(ty[i].i0 * iw + tx[j].i0) * es, es);
}

/* --- backward: one plane (gin zeroed by the caller) --- */

/* Each output gradient goes to the (up to) four input pixels it was made from. */
static void bilinear_plane_backward(dtype_t dt, char *gin, const char *g, int64_t iw,
                                    const tap *ty, int64_t oh, const tap *tx, int64_t ow)
{
    for (int64_t i = 0; i < oh; i++) {
        for (int64_t j = 0; j < ow; j++) {
            double v = dtype_load(dt, g, i * ow + j);
            int64_t at[4] = {ty[i].i0 * iw + tx[j].i0, ty[i].i0 * iw + tx[j].i1,
                             ty[i].i1 * iw + tx[j].i0, ty[i].i1 * iw + tx[j].i1};
            double w[4] = {ty[i].l0 * tx[j].l0, ty[i].l0 * tx[j].l1, ty[i].l1 * tx[j].l0,
                           ty[i].l1 * tx[j].l1};
            for (int k = 0; k < 4; k++)
                dtype_store(dt, gin, at[k], dtype_load(dt, gin, at[k]) + w[k] * v);
        }
    }
}

/* Each output gradient goes to the one input pixel it was copied from. */
static void nearest_plane_backward(dtype_t dt, char *gin, const char *g, int64_t iw,
                                   const tap *ty, int64_t oh, const tap *tx, int64_t ow)
{
    for (int64_t i = 0; i < oh; i++) {
        for (int64_t j = 0; j < ow; j++) {
            int64_t at = ty[i].i0 * iw + tx[j].i0;
            dtype_store(dt, gin, at, dtype_load(dt, gin, at) + dtype_load(dt, g, i * ow + j));
        }
    }
}

/* --- the kernels of the dispatch table --- */

/* The sizes of a resize: planes = N*C, input planes ih x iw, output planes oh x ow. */
typedef struct {
    int64_t planes, ih, iw, oh, ow;
} resize_dims;

/* The sizes of a resize from `in` to `out`. */
static resize_dims dims_of(const tensor *in, const tensor *out)
{
    return (resize_dims){in->shape[0] * in->shape[1], in->shape[2], in->shape[3],
                         out->shape[2], out->shape[3]};
}

/* Threads for a resize: one unless there is enough work to share. */
static int threads_for(const resize_dims *d)
{
    return d->planes >= 2 && d->planes * d->oh * d->ow >= RESIZE_PARALLEL_MIN
               ? cpu_num_threads() : 1;
}

int cpu_interpolate2d(tensor *out, const tensor *x, const resize_params *p)
{
    resize_dims d = dims_of(x, out);
    dtype_t dt = x->dtype;
    tap *t = make_taps(d.ih, d.iw, d.oh, d.ow, p, dt);
    if (!t)
        return -1;
    const tap *ty = t, *tx = t + d.oh;
    size_t es = dtype_size(dt), isz = (size_t)(d.ih * d.iw), osz = (size_t)(d.oh * d.ow);
    const char *xs = tensor_data(x);
    char *ys = tensor_data(out);
    int nt = threads_for(&d);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < d.planes; k++) {
        const char *xp = xs + (size_t)k * isz * es;
        char *yp = ys + (size_t)k * osz * es;
        if (p->mode == RESIZE_NEAREST)
            nearest_plane(xp, yp, es, d.iw, ty, d.oh, tx, d.ow);
        else if (dt == DT_F32)
            bilinear_plane_f32((const float *)xp, (float *)yp, d.iw, ty, d.oh, tx, d.ow);
        else
            bilinear_plane_f64((const double *)xp, (double *)yp, d.iw, ty, d.oh, tx, d.ow);
    }
    free(t);
    return 0;
}

int cpu_interpolate2d_backward(tensor *gin, const tensor *gout, const resize_params *p)
{
    resize_dims d = dims_of(gin, gout);
    dtype_t dt = gin->dtype;
    tap *t = make_taps(d.ih, d.iw, d.oh, d.ow, p, dt);
    if (!t)
        return -1;
    const tap *ty = t, *tx = t + d.oh;
    size_t es = dtype_size(dt), isz = (size_t)(d.ih * d.iw), osz = (size_t)(d.oh * d.ow);
    const char *gs = tensor_data(gout);
    char *gi = tensor_data(gin);
    memset(gi, 0, (size_t)d.planes * isz * es);
    int nt = threads_for(&d);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < d.planes; k++) {
        char *gp = gi + (size_t)k * isz * es;
        const char *op = gs + (size_t)k * osz * es;
        if (p->mode == RESIZE_NEAREST)
            nearest_plane_backward(dt, gp, op, d.iw, ty, d.oh, tx, d.ow);
        else
            bilinear_plane_backward(dt, gp, op, d.iw, ty, d.oh, tx, d.ow);
    }
    free(t);
    return 0;
}
