/* Optimizer updates over a parameter group's tensors: checks, the per-device
 * route, and the CPU loops. On the CPU the tensors are updated one after the
 * other; on a GPU one fused kernel (kernels/optim.cu) updates them all at once,
 * with the same arithmetic element by element. Each CPU loop makes one pass over
 * memory per step: Adam works in blocks small enough for L1, updating the
 * moments, taking the square roots and updating the parameter while the block is
 * still in cache, so that the loops vectorise (`omp simd`) although sqrt may set
 * errno, which keeps a plain loop that calls it scalar. The arithmetic follows
 * PyTorch 1.13's single-tensor code operation by operation (same order, bias
 * corrections in double), with the scalars rounded to the parameter's dtype as
 * PyTorch's CPU kernels do. */
#include "optim.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "cpu/iter.h"
#include "cuda/optim_cuda.h"
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

/* The devices with an update: the CPU's loops, and CUDA's fused kernel in a
 * build with the CUDA backend (MILES_CUDA). */
static int check_device(const char *who, const tensor *p)
{
    device d = tensor_device(p);
    if (d.type == DEV_CPU)
        return 0;
    if (d.type != DEV_CUDA) {
        char ds[16];
        return err_set("%s: parameters on %s are not supported", who, device_str(d, ds));
    }
#ifdef MILES_CUDA
    return 0;
#else
    return err_set("%s: miles was built without CUDA", who);
#endif
}

/* After a failed check of the group's tensor i (of n): say which tensor it was,
 * as " (tensor i of n)" at the end of the message (lua/miles/optim.lua turns it
 * into the group's and the parameter's names). Returns -1. */
static int at_tensor(int i, int n)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err_msg());
    return err_set("%s (tensor %d of %d)", msg, i + 1, n);
}

#ifdef MILES_CUDA
/* One operand's memory, for the check across a group's tensors. */
typedef struct {
    const storage *st;
    int64_t b, e; /* elements [b, e) of the storage */
    int tensor, op;
    bool write;
} span;

static int span_cmp(const void *x, const void *y)
{
    const span *a = x, *b = y;
    if (a->st != b->st)
        return (uintptr_t)a->st < (uintptr_t)b->st ? -1 : 1;
    return a->b < b->b ? -1 : a->b > b->b;
}

/* The fused GPU kernel updates a group's tensors at the same time, where the CPU
 * updates them one after the other: so, among the group's GPU tensors, nothing
 * one tensor's update writes may share memory with another tensor's operands
 * (gradients, only read, may be shared). ops[i * nops + k] is operand k of tensor
 * i (NULL: none), named names[k], written unless k is read_op. Each tensor's own
 * operands are already known disjoint (check_disjoint). Sorts the spans by start
 * and sweeps them, keeping the span that reaches furthest, and the written span
 * that does: an overlap with any earlier span shows as one with these. */
static int check_fused_disjoint(const char *who, int n, int nops, const tensor *const *ops,
                                const char *const *names, int read_op)
{
    int ncuda = 0;
    for (int i = 0; i < n; i++)
        ncuda += tensor_device(ops[i * nops]).type == DEV_CUDA;
    if (ncuda < 2)
        return 0;
    span *sp = malloc((size_t)ncuda * (size_t)nops * sizeof *sp);
    if (!sp)
        return err_set("%s: out of memory", who);
    int ns = 0;
    for (int i = 0; i < n; i++) {
        if (tensor_device(ops[i * nops]).type != DEV_CUDA)
            continue;
        for (int k = 0; k < nops; k++) {
            const tensor *t = ops[i * nops + k];
            int64_t len = t ? tensor_numel(t) : 0;
            if (len > 0)
                sp[ns++] = (span){t->st, t->offset, t->offset + len, i, k, k != read_op};
        }
    }
    qsort(sp, (size_t)ns, sizeof *sp, span_cmp);
    const span *far = NULL, *far_w = NULL; /* of the current storage */
    int rc = 0;
    for (int s = 0; s < ns && rc == 0; s++) {
        const span *c = &sp[s];
        if (far && far->st != c->st)
            far = far_w = NULL;
        const span *hit = far_w && c->b < far_w->e ? far_w
                          : c->write && far && c->b < far->e ? far : NULL;
        if (hit)
            rc = err_set("%s: %s of tensor %d and %s of tensor %d (of %d) share memory: on "
                         "the GPU a group's tensors are updated together, so they must not "
                         "overlap", who, names[hit->op], hit->tensor + 1, names[c->op],
                         c->tensor + 1, n);
        if (!far || c->e > far->e)
            far = c;
        if (c->write && (!far_w || c->e > far_w->e))
            far_w = c;
    }
    free(sp);
    return rc;
}

/* The next fused launch of a group: the indices (into idx, in order; returns how
 * many, 0 when none is left) of the GPU tensors of ps not done yet that share
 * the first such tensor's GPU and dtype, which are marked done. */
static int next_launch(int n, tensor *const *ps, bool *done, int *idx)
{
    int m = 0;
    for (int j = 0; j < n; j++) {
        if (done[j] || tensor_device(ps[j]).type != DEV_CUDA)
            continue;
        if (m > 0 && (!device_eq(tensor_device(ps[idx[0]]), tensor_device(ps[j])) ||
                      ps[idx[0]]->dtype != ps[j]->dtype))
            continue;
        done[j] = true;
        idx[m++] = j;
    }
    return m;
}

/* What a fused GPU update of n tensors works with: each tensor's `per` operands
 * for the disjointness check, the tensors already launched, one launch's indices
 * into the group, and its table of `entry`-byte tensor entries. */
typedef struct {
    const tensor **ops;
    bool *done;
    int *idx;
    void *table;
} fused_scratch;

static void fused_scratch_free(fused_scratch *f)
{
    free(f->ops);
    free(f->done);
    free(f->idx);
    free(f->table);
}

static int fused_scratch_new(fused_scratch *f, int n, int per, size_t entry, const char *who)
{
    *f = (fused_scratch){malloc((size_t)n * (size_t)per * sizeof *f->ops),
                         calloc((size_t)n, sizeof *f->done), malloc((size_t)n * sizeof *f->idx),
                         malloc((size_t)n * entry)};
    if (f->ops && f->done && f->idx && f->table)
        return 0;
    fused_scratch_free(f);
    return err_set("%s: out of memory", who);
}
#endif

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
 * Adam and AdamW */

/* The operands of an Adam update, in messages: p, grad, m, v, vmax. */
static const char *const ADAM_NAMES[] = {"the parameter", "grad", "exp_avg", "exp_avg_sq",
                                         "max_exp_avg_sq"};

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

/* The scalars of the Adam update number `step` (the pointers left NULL), in
 * double: the CPU loops and the GPU kernel round the same values. */
static adam_job adam_scalars(bool decoupled, const optim_adam_opts *o, int64_t step)
{
    double bc1 = 1 - pow(o->beta1, (double)step), bc2 = 1 - pow(o->beta2, (double)step);
    return (adam_job){
        .sgn = o->maximize ? -1.0 : 1.0,
        .wd = decoupled ? 0.0 : o->weight_decay,
        .decay = decoupled ? 1 - o->lr * o->weight_decay : 1.0,
        .b1 = o->beta1, .a1 = 1 - o->beta1, .b2 = o->beta2, .a2 = 1 - o->beta2,
        .bc2_sqrt = sqrt(bc2), .eps = o->eps, .neg_step_size = -(o->lr / bc1),
        .l2 = !decoupled && o->weight_decay != 0, .amsgrad = o->amsgrad,
    };
}

/* Check one parameter's tensors for an Adam update (the group's values are
 * checked already). vmax is looked at only with amsgrad. */
static int adam_check_tensors(const char *who, const tensor *p, const tensor *grad,
                              const tensor *m, const tensor *v, const tensor *vmax,
                              int64_t step, const optim_adam_opts *o)
{
    if (check_param(who, p) != 0 || check_device(who, p) != 0 ||
        check_like(who, "grad", grad, p) != 0 || check_like(who, "exp_avg", m, p) != 0 ||
        check_like(who, "exp_avg_sq", v, p) != 0 ||
        (o->amsgrad && check_like(who, "max_exp_avg_sq (amsgrad)", vmax, p) != 0))
        return -1;
    if (step < 1)
        return err_set("%s: step must be >= 1 (the update's number), got %lld", who,
                       (long long)step);
    const tensor *ops[] = {p, grad, m, v, o->amsgrad ? vmax : NULL};
    return check_disjoint(who, 5, ops, ADAM_NAMES);
}

#ifdef MILES_CUDA
/* The group's GPU tensors: after the check across them, one fused launch (or a
 * few, for a long group) per GPU and dtype, the CPU tensors left alone. */
static int adam_cuda(const char *who, bool decoupled, int n, tensor *const *ps,
                     const tensor *const *gs, tensor *const *ms, tensor *const *vs,
                     tensor *const *vmaxs, const int64_t *steps, const optim_adam_opts *o)
{
    fused_scratch f;
    if (fused_scratch_new(&f, n, 5, sizeof(optim_cuda_adam_tensor), who) != 0)
        return -1;
    const tensor **ops = f.ops;
    optim_cuda_adam_tensor *ts = f.table;
    for (int i = 0; i < n; i++) {
        ops[i * 5] = ps[i], ops[i * 5 + 1] = gs[i], ops[i * 5 + 2] = ms[i];
        ops[i * 5 + 3] = vs[i], ops[i * 5 + 4] = o->amsgrad ? vmaxs[i] : NULL;
    }
    int rc = check_fused_disjoint(who, n, 5, ops, ADAM_NAMES, 1);
    adam_job g = adam_scalars(decoupled, o, 1); /* the group-wide values */
    optim_cuda_adam_hp hp = {
        .sgn = g.sgn, .wd = g.wd, .decay = g.decay, .b1 = g.b1, .a1 = g.a1, .b2 = g.b2,
        .a2 = g.a2, .eps = g.eps, .l2 = g.l2, .amsgrad = g.amsgrad,
    };
    int m;
    while (rc == 0 && (m = next_launch(n, ps, f.done, f.idx)) > 0) {
        for (int k = 0; k < m; k++) {
            int j = f.idx[k];
            adam_job s = adam_scalars(decoupled, o, steps[j]);
            ts[k] = (optim_cuda_adam_tensor){
                .p = tensor_data(ps[j]), .m = tensor_data(ms[j]), .v = tensor_data(vs[j]),
                .vmax = o->amsgrad ? tensor_data(vmaxs[j]) : NULL, .g = tensor_data(gs[j]),
                .numel = tensor_numel(ps[j]), .bc2_sqrt = s.bc2_sqrt,
                .neg_step_size = s.neg_step_size,
            };
        }
        const tensor *p0 = ps[f.idx[0]];
        rc = optim_cuda_adam(who, tensor_device(p0).index, p0->dtype, m, ts, &hp);
    }
    fused_scratch_free(&f);
    return rc;
}
#endif

/* Check every tensor of the group, then update them: the GPU ones by the fused
 * kernel (launched first: it runs while the CPU loops do), the CPU ones one after
 * the other. label: name the tensor in a failed check's message (the group API). */
static int adam_group(const char *who, bool decoupled, bool label, int n, tensor *const *ps,
                      const tensor *const *gs, tensor *const *ms, tensor *const *vs,
                      tensor *const *vmaxs, const int64_t *steps, const optim_adam_opts *o)
{
    if (optim_adam_check(o, who) != 0)
        return -1;
    if (n < 0 || (n > 0 && (!ps || !gs || !ms || !vs || !steps)))
        return err_set("%s: invalid tensor lists (%d tensors)", who, n);
    bool any_cuda = false;
    for (int i = 0; i < n; i++) {
        if (adam_check_tensors(who, ps[i], gs[i], ms[i], vs[i], vmaxs ? vmaxs[i] : NULL,
                               steps[i], o) != 0)
            return label ? at_tensor(i, n) : -1;
        any_cuda = any_cuda || tensor_device(ps[i]).type == DEV_CUDA;
    }
#ifdef MILES_CUDA
    if (any_cuda && adam_cuda(who, decoupled, n, ps, gs, ms, vs, vmaxs, steps, o) != 0)
        return -1;
#endif
    for (int i = 0; i < n; i++) {
        tensor *p = ps[i];
        if (tensor_device(p).type == DEV_CPU) {
            adam_job j = adam_scalars(decoupled, o, steps[i]);
            j.p = tensor_data(p), j.m = tensor_data(ms[i]), j.v = tensor_data(vs[i]);
            j.vmax = o->amsgrad ? tensor_data(vmaxs[i]) : NULL, j.g = tensor_data(gs[i]);
            run_parallel(tensor_numel(p), p->dtype == DT_F32 ? adam_range_f32 : adam_range_f64,
                         &j);
        }
        tensor_bump_version(p);
        tensor_bump_version(ms[i]);
        tensor_bump_version(vs[i]);
        if (o->amsgrad)
            tensor_bump_version(vmaxs[i]);
    }
    (void)any_cuda;
    return 0;
}

/* Adam: L2 weight decay, added to the gradient. */
int optim_adam_step(tensor *p, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                    tensor *max_exp_avg_sq, int64_t step, const optim_adam_opts *o)
{
    return adam_group("adam", false, false, 1, &p, &grad, &exp_avg, &exp_avg_sq,
                      &max_exp_avg_sq, &step, o);
}

/* AdamW: decoupled weight decay, applied to the parameter. */
int optim_adamw_step(tensor *p, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                     tensor *max_exp_avg_sq, int64_t step, const optim_adam_opts *o)
{
    return adam_group("adamw", true, false, 1, &p, &grad, &exp_avg, &exp_avg_sq,
                      &max_exp_avg_sq, &step, o);
}

int optim_adam_group_step(int n, tensor *const *params, const tensor *const *grads,
                          tensor *const *exp_avgs, tensor *const *exp_avg_sqs,
                          tensor *const *max_exp_avg_sqs, const int64_t *steps,
                          const optim_adam_opts *o)
{
    return adam_group("adam", false, true, n, params, grads, exp_avgs, exp_avg_sqs,
                      max_exp_avg_sqs, steps, o);
}

int optim_adamw_group_step(int n, tensor *const *params, const tensor *const *grads,
                           tensor *const *exp_avgs, tensor *const *exp_avg_sqs,
                           tensor *const *max_exp_avg_sqs, const int64_t *steps,
                           const optim_adam_opts *o)
{
    return adam_group("adamw", true, true, n, params, grads, exp_avgs, exp_avg_sqs,
                      max_exp_avg_sqs, steps, o);
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

/* The operands of an SGD update, in messages. */
static const char *const SGD_NAMES[] = {"the parameter", "grad", "momentum_buffer"};

/* The scalars of an SGD update (the pointers left NULL); first: the buffer holds
 * nothing yet (zeroed on the CPU, read as zero on the GPU), so that the loop's
 * buf * 0 + 1 * d gives PyTorch's clone of d. */
static sgd_job sgd_scalars(bool first, const optim_sgd_opts *o)
{
    return (sgd_job){
        .sgn = o->maximize ? -1.0 : 1.0, .wd = o->weight_decay, .mom = o->momentum,
        .buf_mom = first ? 0.0 : o->momentum, .a = first ? 1.0 : 1 - o->dampening,
        .neg_lr = -o->lr, .l2 = o->weight_decay != 0, .nesterov = o->nesterov,
    };
}

/* Check one parameter's tensors for an SGD update (the buffer only with momentum). */
static int sgd_check_tensors(const char *who, const tensor *p, const tensor *grad,
                             const tensor *buf, const optim_sgd_opts *o)
{
    bool with_buf = o->momentum != 0;
    if (check_param(who, p) != 0 || check_device(who, p) != 0 ||
        check_like(who, "grad", grad, p) != 0 ||
        (with_buf && check_like(who, "momentum_buffer", buf, p) != 0))
        return -1;
    const tensor *ops[] = {p, grad, with_buf ? buf : NULL};
    return check_disjoint(who, 3, ops, SGD_NAMES);
}

#ifdef MILES_CUDA
/* The SGD twin of adam_cuda. */
static int sgd_cuda(int n, tensor *const *ps, const tensor *const *gs, tensor *const *bufs,
                    const bool *firsts, const optim_sgd_opts *o)
{
    const char *who = "sgd";
    bool with_buf = o->momentum != 0;
    fused_scratch f;
    if (fused_scratch_new(&f, n, 3, sizeof(optim_cuda_sgd_tensor), who) != 0)
        return -1;
    const tensor **ops = f.ops;
    optim_cuda_sgd_tensor *ts = f.table;
    for (int i = 0; i < n; i++)
        ops[i * 3] = ps[i], ops[i * 3 + 1] = gs[i], ops[i * 3 + 2] = with_buf ? bufs[i] : NULL;
    int rc = check_fused_disjoint(who, n, 3, ops, SGD_NAMES, 1);
    sgd_job g = sgd_scalars(false, o); /* the group-wide values */
    optim_cuda_sgd_hp hp = {
        .sgn = g.sgn, .wd = g.wd, .mom = g.mom, .neg_lr = g.neg_lr, .l2 = g.l2,
        .with_buf = with_buf, .nesterov = g.nesterov,
    };
    int m;
    while (rc == 0 && (m = next_launch(n, ps, f.done, f.idx)) > 0) {
        for (int k = 0; k < m; k++) {
            int j = f.idx[k];
            bool first = with_buf && firsts && firsts[j];
            sgd_job s = sgd_scalars(first, o);
            ts[k] = (optim_cuda_sgd_tensor){
                .p = tensor_data(ps[j]), .buf = with_buf ? tensor_data(bufs[j]) : NULL,
                .g = tensor_data(gs[j]), .numel = tensor_numel(ps[j]), .buf_mom = s.buf_mom,
                .a = s.a, .first = first,
            };
        }
        const tensor *p0 = ps[f.idx[0]];
        rc = optim_cuda_sgd(tensor_device(p0).index, p0->dtype, m, ts, &hp);
    }
    fused_scratch_free(&f);
    return rc;
}
#endif

/* The SGD twin of adam_group. firsts may be NULL (no buffer is new). */
static int sgd_group(bool label, int n, tensor *const *ps, const tensor *const *gs,
                     tensor *const *bufs, const bool *firsts, const optim_sgd_opts *o)
{
    const char *who = "sgd";
    bool with_buf = o->momentum != 0;
    if (optim_sgd_check(o) != 0)
        return -1;
    if (n < 0 || (n > 0 && (!ps || !gs)))
        return err_set("%s: invalid tensor lists (%d tensors)", who, n);
    bool any_cuda = false;
    for (int i = 0; i < n; i++) {
        if (sgd_check_tensors(who, ps[i], gs[i], bufs ? bufs[i] : NULL, o) != 0)
            return label ? at_tensor(i, n) : -1;
        any_cuda = any_cuda || tensor_device(ps[i]).type == DEV_CUDA;
    }
#ifdef MILES_CUDA
    if (any_cuda && sgd_cuda(n, ps, gs, bufs, firsts, o) != 0)
        return -1;
#endif
    for (int i = 0; i < n; i++) {
        tensor *p = ps[i], *buf = with_buf ? bufs[i] : NULL;
        if (tensor_device(p).type == DEV_CPU) {
            bool first = firsts && firsts[i];
            if (with_buf && first)
                memset(tensor_data(buf), 0, (size_t)tensor_numel(buf) * dtype_size(buf->dtype));
            sgd_job j = sgd_scalars(first, o);
            j.p = tensor_data(p), j.buf = with_buf ? tensor_data(buf) : NULL;
            j.g = tensor_data(gs[i]);
            run_parallel(tensor_numel(p), p->dtype == DT_F32 ? sgd_range_f32 : sgd_range_f64,
                         &j);
        }
        tensor_bump_version(p);
        if (with_buf)
            tensor_bump_version(buf);
    }
    (void)any_cuda;
    return 0;
}

int optim_sgd_step(tensor *p, const tensor *grad, tensor *buf, bool first,
                   const optim_sgd_opts *o)
{
    return sgd_group(false, 1, &p, &grad, &buf, &first, o);
}

int optim_sgd_group_step(int n, tensor *const *params, const tensor *const *grads,
                         tensor *const *bufs, const bool *firsts, const optim_sgd_opts *o)
{
    return sgd_group(true, n, params, grads, bufs, firsts, o);
}
