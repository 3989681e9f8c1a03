/* Optimizer updates over one parameter tensor: checks, the per-device route, and
 * the CPU loops. Each loop makes one pass over memory per step: Adam works in
 * blocks small enough for L1, updating the moments, taking the square roots and
 * updating the parameter while the block is still in cache, so that the loops
 * vectorise (`omp simd`) although sqrt may set errno, which keeps a plain loop
 * that calls it scalar. The arithmetic follows PyTorch 1.13's single-tensor code
 * operation by operation (same order, bias corrections in double), with the
 * scalars rounded to the parameter's dtype as PyTorch's CPU kernels do. */
#include "optim.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "cpu/iter.h"
#include "error.h"

/* Below this many elements an update runs on one thread: waking threads costs more. */
#define OPTIM_PARALLEL_MIN 32768
/* Elements per block of the Adam loops: five float64 operands of a block fit L1. */
#define OPTIM_BLOCK 512

/* ------------------------------------------------------------------------------
 * Hyper-parameters */

/* Is b a valid exponential-decay rate (0 <= b < 1; NaN is not)? */
static bool valid_beta(double b)
{
    return b >= 0 && b < 1;
}

/* Adam's and AdamW's values, checked as PyTorch's constructors check them (plus
 * weight_decay >= 0); NaN fails every test. */
int optim_adam_check(const optim_adam_opts *o, const char *who)
{
    if (!(o->lr >= 0))
        return err_set("%s: invalid learning rate %.10g (must be >= 0)", who, o->lr);
    if (!(o->eps >= 0))
        return err_set("%s: invalid eps %.10g (must be >= 0)", who, o->eps);
    if (!valid_beta(o->beta1))
        return err_set("%s: invalid beta1 %.10g (must be in [0, 1))", who, o->beta1);
    if (!valid_beta(o->beta2))
        return err_set("%s: invalid beta2 %.10g (must be in [0, 1))", who, o->beta2);
    if (!(o->weight_decay >= 0))
        return err_set("%s: invalid weight_decay %.10g (must be >= 0)", who, o->weight_decay);
    return 0;
}

/* SGD's values, with PyTorch's rule for Nesterov momentum. */
int optim_sgd_check(const optim_sgd_opts *o)
{
    if (!(o->lr >= 0))
        return err_set("sgd: invalid learning rate %.10g (must be >= 0)", o->lr);
    if (!(o->momentum >= 0))
        return err_set("sgd: invalid momentum %.10g (must be >= 0)", o->momentum);
    if (!isfinite(o->dampening))
        return err_set("sgd: invalid dampening %.10g (must be a finite number)", o->dampening);
    if (!(o->weight_decay >= 0))
        return err_set("sgd: invalid weight_decay %.10g (must be >= 0)", o->weight_decay);
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return err_set("sgd: nesterov needs momentum > 0 and dampening 0 (got momentum %.10g, "
                       "dampening %.10g)", o->momentum, o->dampening);
    return 0;
}

/* ------------------------------------------------------------------------------
 * Tensor checks, shared by the three updates */

/* The parameter itself: a contiguous float32 or float64 tensor. */
static int check_param(const char *who, const tensor *p)
{
    if (!p)
        return err_set("%s: the parameter is missing", who);
    if (p->dtype != DT_F32 && p->dtype != DT_F64)
        return err_set("%s: parameters must be float32 or float64, got %s", who,
                       dtype_name(p->dtype));
    if (!tensor_is_contiguous(p))
        return err_set("%s: the parameter must be contiguous", who);
    return 0;
}

/* A gradient or state tensor that goes with p: same dtype, shape and device,
 * contiguous. `what` names it in the message. */
static int check_like(const char *who, const char *what, const tensor *t, const tensor *p)
{
    char a[96], b[96], da[16], db[16];
    if (!t)
        return err_set("%s: %s is missing", who, what);
    if (t->dtype != p->dtype)
        return err_set("%s: %s is %s but the parameter is %s", who, what, dtype_name(t->dtype),
                       dtype_name(p->dtype));
    if (!tensor_same_shape(t, p))
        return err_set("%s: %s has shape %s but the parameter has %s", who, what,
                       tensor_shape_str(t, a, sizeof a), tensor_shape_str(p, b, sizeof b));
    if (!device_eq(tensor_device(t), tensor_device(p)))
        return err_set("%s: %s is on %s but the parameter is on %s", who, what,
                       device_str(tensor_device(t), da), device_str(tensor_device(p), db));
    if (!tensor_is_contiguous(t))
        return err_set("%s: %s must be contiguous", who, what);
    return 0;
}

/* Do the memory ranges of two contiguous tensors overlap? The loops write
 * through restrict pointers, so no operand may share memory with another. */
static bool overlap(const tensor *x, const tensor *y)
{
    if (x->st != y->st)
        return false;
    int64_t n = tensor_numel(x), m = tensor_numel(y);
    if (n == 0 || m == 0)
        return false;
    /* Offsets are in elements, and the operands all have p's dtype. */
    int64_t x0 = x->offset, x1 = x0 + n, y0 = y->offset, y1 = y0 + m;
    return x0 < y1 && y0 < x1;
}

/* Check that no two of the n named operands share memory. */
static int check_disjoint(const char *who, int n, const tensor *const *ts,
                          const char *const *names)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (ts[i] && ts[j] && overlap(ts[i], ts[j]))
                return err_set("%s: %s and %s share memory", who, names[i], names[j]);
    return 0;
}

/* The devices with an update loop. Only the CPU has one so far; a CUDA kernel
 * plugs in here, beside the CPU call of each update. */
static int check_device(const char *who, const tensor *p)
{
    if (tensor_device(p).type == DEV_CPU)
        return 0;
    return err_set("%s: cuda tensors are not supported by this build yet", who);
}

/* ------------------------------------------------------------------------------
 * Running a loop over [0, n) on the CPU threads */

typedef void (*range_fn)(const void *job, int64_t begin, int64_t end);

/* One chunk per thread when n pays for waking the threads (as csrc/cpu/iter.c
 * does); chunks start on 64-element boundaries so threads share no cache line. */
static void run_parallel(int64_t n, range_fn fn, const void *job)
{
    int nt = cpu_num_threads();
    if (n < OPTIM_PARALLEL_MIN || nt <= 1) {
        fn(job, 0, n);
        return;
    }
    int64_t chunk = ((n + nt - 1) / nt + 63) & ~(int64_t)63;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
        if (b < e)
            fn(job, b, e);
    }
}

/* x = sqrt(x) in packed instructions where there are some (the compiler keeps a
 * loop that calls sqrt scalar, since sqrt may set errno). Same results: IEEE
 * square roots are correctly rounded either way. */
static void sqrt_f32(float *x, int64_t n)
{
    int64_t i = 0;
#ifdef __SSE2__
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        x[i] = sqrtf(x[i]);
}

/* The float64 twin of sqrt_f32. */
static void sqrt_f64(double *x, int64_t n)
{
    int64_t i = 0;
#ifdef __SSE2__
    for (; i + 2 <= n; i += 2)
        _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
#endif
    for (; i < n; i++)
        x[i] = sqrt(x[i]);
}

/* ------------------------------------------------------------------------------
 * Adam and AdamW on the CPU */

/* One Adam update's operands and scalars (in double; each dtype's loop rounds
 * them once, as PyTorch passes Python floats to its kernels). */
typedef struct {
    void *p, *m, *v, *vmax;
    const void *g;
    double sgn;   /* -1 to maximize */
    double wd;    /* L2 weight decay added to the gradient (Adam) */
    double decay; /* 1 - lr * weight_decay (AdamW), or 1 */
    double b1, a1, b2, a2, bc2_sqrt, eps, neg_step_size;
    bool l2, amsgrad;
} adam_job;

/* The moment updates of n elements, leaving in s the second moment each element
 * is normalised by (the running maximum with amsgrad). l2 and ams are constants
 * at each call, so every combination becomes its own branch-free loop. */
static inline __attribute__((always_inline)) void
adam_moments_f32(const adam_job *j, int64_t n, const float *restrict p, const float *restrict g,
                 float *restrict m, float *restrict v, float *restrict vmax, float *restrict s,
                 bool l2, bool ams)
{
    const float sgn = (float)j->sgn, wd = (float)j->wd, b1 = (float)j->b1, a1 = (float)j->a1,
                b2 = (float)j->b2, a2 = (float)j->a2;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float gi = sgn * g[i];
        if (l2)
            gi = gi + wd * p[i];
        float mi = m[i] * b1;
        mi = mi + a1 * gi;
        float vi = v[i] * b2;
        vi = vi + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (ams) {
            float mx = vmax[i];
            vi = mx > vi ? mx : vi;
            vmax[i] = vi;
        }
        s[i] = vi;
    }
}

/* p = p * decay - step_size * m / (sqrt(s) / bc2_sqrt + eps), s holding sqrt(s). */
static void adam_apply_f32(const adam_job *j, int64_t n, float *restrict p,
                           const float *restrict m, const float *restrict s)
{
    const float decay = (float)j->decay, bc = (float)j->bc2_sqrt, eps = (float)j->eps,
                ns = (float)j->neg_step_size;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float denom = s[i] / bc + eps;
        float pi = p[i] * decay;
        p[i] = pi + ns * m[i] / denom;
    }
}

/* Adam over elements [b, e) of float32 operands, block by block. */
static void adam_range_f32(const void *job, int64_t b, int64_t e)
{
    const adam_job *j = job;
    float s[OPTIM_BLOCK];
    for (int64_t o = b; o < e; o += OPTIM_BLOCK) {
        int64_t n = e - o < OPTIM_BLOCK ? e - o : OPTIM_BLOCK;
        float *p = (float *)j->p + o, *m = (float *)j->m + o, *v = (float *)j->v + o;
        const float *g = (const float *)j->g + o;
        float *vmax = j->amsgrad ? (float *)j->vmax + o : NULL;
        if (j->amsgrad && j->l2)
            adam_moments_f32(j, n, p, g, m, v, vmax, s, true, true);
        else if (j->amsgrad)
            adam_moments_f32(j, n, p, g, m, v, vmax, s, false, true);
        else if (j->l2)
            adam_moments_f32(j, n, p, g, m, v, vmax, s, true, false);
        else
            adam_moments_f32(j, n, p, g, m, v, vmax, s, false, false);
        sqrt_f32(s, n);
        adam_apply_f32(j, n, p, m, s);
    }
}

/* The float64 twin of adam_moments_f32. */
static inline __attribute__((always_inline)) void
adam_moments_f64(const adam_job *j, int64_t n, const double *restrict p,
                 const double *restrict g, double *restrict m, double *restrict v,
                 double *restrict vmax, double *restrict s, bool l2, bool ams)
{
    const double sgn = j->sgn, wd = j->wd, b1 = j->b1, a1 = j->a1, b2 = j->b2, a2 = j->a2;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        double gi = sgn * g[i];
        if (l2)
            gi = gi + wd * p[i];
        double mi = m[i] * b1;
        mi = mi + a1 * gi;
        double vi = v[i] * b2;
        vi = vi + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (ams) {
            double mx = vmax[i];
            vi = mx > vi ? mx : vi;
            vmax[i] = vi;
        }
        s[i] = vi;
    }
}

/* The float64 twin of adam_apply_f32. */
static void adam_apply_f64(const adam_job *j, int64_t n, double *restrict p,
                           const double *restrict m, const double *restrict s)
{
    const double decay = j->decay, bc = j->bc2_sqrt, eps = j->eps, ns = j->neg_step_size;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        double denom = s[i] / bc + eps;
        double pi = p[i] * decay;
        p[i] = pi + ns * m[i] / denom;
    }
}

/* The float64 twin of adam_range_f32. */
static void adam_range_f64(const void *job, int64_t b, int64_t e)
{
    const adam_job *j = job;
    double s[OPTIM_BLOCK];
    for (int64_t o = b; o < e; o += OPTIM_BLOCK) {
        int64_t n = e - o < OPTIM_BLOCK ? e - o : OPTIM_BLOCK;
        double *p = (double *)j->p + o, *m = (double *)j->m + o, *v = (double *)j->v + o;
        const double *g = (const double *)j->g + o;
        double *vmax = j->amsgrad ? (double *)j->vmax + o : NULL;
        if (j->amsgrad && j->l2)
            adam_moments_f64(j, n, p, g, m, v, vmax, s, true, true);
        else if (j->amsgrad)
            adam_moments_f64(j, n, p, g, m, v, vmax, s, false, true);
        else if (j->l2)
            adam_moments_f64(j, n, p, g, m, v, vmax, s, true, false);
        else
            adam_moments_f64(j, n, p, g, m, v, vmax, s, false, false);
        sqrt_f64(s, n);
        adam_apply_f64(j, n, p, m, s);
    }
}

/* Check everything, then run one Adam (decoupled: AdamW) update. */
static int adam_common(const char *who, bool decoupled, tensor *p, const tensor *grad,
                       tensor *m, tensor *v, tensor *vmax, int64_t step,
                       const optim_adam_opts *o)
{
    if (optim_adam_check(o, who) != 0 || check_param(who, p) != 0 ||
        check_device(who, p) != 0 || check_like(who, "grad", grad, p) != 0 ||
        check_like(who, "exp_avg", m, p) != 0 || check_like(who, "exp_avg_sq", v, p) != 0 ||
        (o->amsgrad && check_like(who, "max_exp_avg_sq (amsgrad)", vmax, p) != 0))
        return -1;
    if (step < 1)
        return err_set("%s: step must be >= 1 (the update's number), got %lld", who,
                       (long long)step);
    const tensor *ops[] = {p, grad, m, v, o->amsgrad ? vmax : NULL};
    const char *names[] = {"the parameter", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    if (check_disjoint(who, 5, ops, names) != 0)
        return -1;

    double bc1 = 1 - pow(o->beta1, (double)step), bc2 = 1 - pow(o->beta2, (double)step);
    adam_job j = {
        .p = tensor_data(p), .m = tensor_data(m), .v = tensor_data(v),
        .vmax = o->amsgrad ? tensor_data(vmax) : NULL, .g = tensor_data(grad),
        .sgn = o->maximize ? -1.0 : 1.0,
        .wd = decoupled ? 0.0 : o->weight_decay,
        .decay = decoupled ? 1 - o->lr * o->weight_decay : 1.0,
        .b1 = o->beta1, .a1 = 1 - o->beta1, .b2 = o->beta2, .a2 = 1 - o->beta2,
        .bc2_sqrt = sqrt(bc2), .eps = o->eps, .neg_step_size = -(o->lr / bc1),
        .l2 = !decoupled && o->weight_decay != 0, .amsgrad = o->amsgrad,
    };
    run_parallel(tensor_numel(p), p->dtype == DT_F32 ? adam_range_f32 : adam_range_f64, &j);
    tensor_bump_version(p);
    tensor_bump_version(m);
    tensor_bump_version(v);
    if (o->amsgrad)
        tensor_bump_version(vmax);
    return 0;
}

/* Adam: L2 weight decay, added to the gradient. */
int optim_adam_step(tensor *p, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                    tensor *max_exp_avg_sq, int64_t step, const optim_adam_opts *o)
{
    return adam_common("adam", false, p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, o);
}

/* AdamW: decoupled weight decay, applied to the parameter. */
int optim_adamw_step(tensor *p, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                     tensor *max_exp_avg_sq, int64_t step, const optim_adam_opts *o)
{
    return adam_common("adamw", true, p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, o);
}

/* ------------------------------------------------------------------------------
 * SGD on the CPU */

typedef struct {
    void *p, *buf;
    const void *g;
    double sgn, wd, mom;
    /* buf = buf * buf_mom + a * d: (momentum, 1 - dampening), or (0, 1) on the first
     * step, when buf has been zeroed: then buf = 0 + 1 * d = d, PyTorch's clone. */
    double buf_mom, a;
    double neg_lr;
    bool l2, nesterov;
} sgd_job;

/* d = sgn * g (+ wd * p); buf = buf * buf_mom + a * d; d = nesterov ? d + mom *
 * buf : buf; p += -lr * d. The flags are constants at each call, so that every
 * combination is its own branch-free loop (a loop that tests them stays scalar). */
static inline __attribute__((always_inline)) void
sgd_loop_f32(const sgd_job *j, int64_t n, float *restrict p, const float *restrict g,
             float *restrict buf, bool l2, bool with_buf, bool nesterov)
{
    const float sgn = (float)j->sgn, wd = (float)j->wd, mom = (float)j->mom,
                bm = (float)j->buf_mom, a = (float)j->a, nlr = (float)j->neg_lr;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i];
        float d = sgn * g[i];
        if (l2)
            d = d + wd * pi;
        if (with_buf) {
            float bi = buf[i] * bm;
            bi = bi + a * d;
            buf[i] = bi;
            d = nesterov ? d + mom * bi : bi;
        }
        p[i] = pi + nlr * d;
    }
}

/* SGD over elements [b, e) of float32 operands. */
static void sgd_range_f32(const void *job, int64_t b, int64_t e)
{
    const sgd_job *j = job;
    int64_t n = e - b;
    float *p = (float *)j->p + b, *buf = j->buf ? (float *)j->buf + b : NULL;
    const float *g = (const float *)j->g + b;
    if (!buf)
        j->l2 ? sgd_loop_f32(j, n, p, g, buf, true, false, false)
              : sgd_loop_f32(j, n, p, g, buf, false, false, false);
    else if (j->nesterov)
        j->l2 ? sgd_loop_f32(j, n, p, g, buf, true, true, true)
              : sgd_loop_f32(j, n, p, g, buf, false, true, true);
    else
        j->l2 ? sgd_loop_f32(j, n, p, g, buf, true, true, false)
              : sgd_loop_f32(j, n, p, g, buf, false, true, false);
}

/* The float64 twin of sgd_loop_f32. */
static inline __attribute__((always_inline)) void
sgd_loop_f64(const sgd_job *j, int64_t n, double *restrict p, const double *restrict g,
             double *restrict buf, bool l2, bool with_buf, bool nesterov)
{
    const double sgn = j->sgn, wd = j->wd, mom = j->mom, bm = j->buf_mom, a = j->a,
                 nlr = j->neg_lr;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        double pi = p[i];
        double d = sgn * g[i];
        if (l2)
            d = d + wd * pi;
        if (with_buf) {
            double bi = buf[i] * bm;
            bi = bi + a * d;
            buf[i] = bi;
            d = nesterov ? d + mom * bi : bi;
        }
        p[i] = pi + nlr * d;
    }
}

/* The float64 twin of sgd_range_f32. */
static void sgd_range_f64(const void *job, int64_t b, int64_t e)
{
    const sgd_job *j = job;
    int64_t n = e - b;
    double *p = (double *)j->p + b, *buf = j->buf ? (double *)j->buf + b : NULL;
    const double *g = (const double *)j->g + b;
    if (!buf)
        j->l2 ? sgd_loop_f64(j, n, p, g, buf, true, false, false)
              : sgd_loop_f64(j, n, p, g, buf, false, false, false);
    else if (j->nesterov)
        j->l2 ? sgd_loop_f64(j, n, p, g, buf, true, true, true)
              : sgd_loop_f64(j, n, p, g, buf, false, true, true);
    else
        j->l2 ? sgd_loop_f64(j, n, p, g, buf, true, true, false)
              : sgd_loop_f64(j, n, p, g, buf, false, true, false);
}

/* Check everything, then run one SGD update; on the first step the buffer is
 * zeroed so that the loop's buf * 0 + 1 * d gives PyTorch's clone of d. */
int optim_sgd_step(tensor *p, const tensor *grad, tensor *buf, bool first,
                   const optim_sgd_opts *o)
{
    const char *who = "sgd";
    bool with_buf = o->momentum != 0;
    if (optim_sgd_check(o) != 0 || check_param(who, p) != 0 || check_device(who, p) != 0 ||
        check_like(who, "grad", grad, p) != 0 ||
        (with_buf && check_like(who, "momentum_buffer", buf, p) != 0))
        return -1;
    const tensor *ops[] = {p, grad, with_buf ? buf : NULL};
    const char *names[] = {"the parameter", "grad", "momentum_buffer"};
    if (check_disjoint(who, 3, ops, names) != 0)
        return -1;
    if (with_buf && first)
        memset(tensor_data(buf), 0, (size_t)tensor_numel(buf) * dtype_size(buf->dtype));
    sgd_job j = {
        .p = tensor_data(p), .buf = with_buf ? tensor_data(buf) : NULL, .g = tensor_data(grad),
        .sgn = o->maximize ? -1.0 : 1.0, .wd = o->weight_decay, .mom = o->momentum,
        .buf_mom = first ? 0.0 : o->momentum, .a = first ? 1.0 : 1 - o->dampening,
        .neg_lr = -o->lr, .l2 = o->weight_decay != 0, .nesterov = o->nesterov,
    };
    run_parallel(tensor_numel(p), p->dtype == DT_F32 ? sgd_range_f32 : sgd_range_f64, &j);
    tensor_bump_version(p);
    if (with_buf)
        tensor_bump_version(buf);
    return 0;
}
