/* The MILES decision: Algorithm 1 of the paper as a pure function, with the
 * pairwise extension to more than two modalities (see miles.h for the rule and
 * docs/BASELINES.md "MILES" for where each choice comes from). */
#include "miles.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* Which member of a pair Algorithm 1 acts on. */
typedef enum { PAIR_NONE_BALANCED, PAIR_NONE_NEGATIVE, PAIR_SLOW_A, PAIR_SLOW_B } pair_decision;

/* ------------------------------------------------------------------------------
 * Checks */

/* tau, mu, n and every metric and previous scale, in that order; the first bad
 * value is named in the message. NaN fails every range test. */
static int check_args(double m_fused, const double *m, int n, const double *prev,
                      const miles_opts *o)
{
    if (n < 2 || n > MILES_MAX_MODALITIES)
        return err_set("miles.decide: the number of modalities must be in [2, %d], got %d",
                       MILES_MAX_MODALITIES, n);
    if (!(o->tau >= 0 && o->tau <= 1))
        return err_set("miles.decide: tau must be in [0, 1], got %g", o->tau);
    if (!(o->mu > 0 && o->mu <= 1))
        return err_set("miles.decide: mu must be in (0, 1], got %g", o->mu);
    if (!isfinite(m_fused))
        return err_set("miles.decide: the fused metric must be finite, got %g", m_fused);
    for (int i = 0; i < n; i++)
        if (!isfinite(m[i]))
            return err_set("miles.decide: the metric of modality %d must be finite, got %g",
                           i + 1, m[i]);
    for (int i = 0; prev && i < n; i++)
        if (!(isfinite(prev[i]) && prev[i] > 0))
            return err_set("miles.decide: prev[%d] (the scale in force) must be finite and "
                           "> 0, got %g", i + 1, prev[i]);
    return 0;
}

/* ------------------------------------------------------------------------------
 * Utilization (Eq. 4) */

/* u_i = (M_fused - mean over j != i of M_j) / M_fused. The mean is summed in
 * index order, so for two modalities it is exactly the other modality's metric
 * and u is Eq. 4 to the last bit. */
void miles_utilization(double m_fused, const double *m, int n, double *u)
{
    for (int i = 0; i < n; i++) {
        if (m_fused == 0) {
            u[i] = NAN;
            continue;
        }
        double sum = 0;
        for (int j = 0; j < n; j++)
            if (j != i)
                sum += m[j];
        u[i] = (m_fused - sum / (n - 1)) / m_fused;
    }
}

/* ------------------------------------------------------------------------------
 * Algorithm 1, lines 8-21, for one pair (A, B) */

/* The decision of Algorithm 1 for the pair with rates ua (as A) and ub (as B). */
static pair_decision decide_pair(double ua, double ub, double tau)
{
    double delta = fabs(ua - ub);
    if (delta <= tau)
        return PAIR_NONE_BALANCED;
    if (ua < 0 && ub < 0)
        return PAIR_NONE_NEGATIVE;
    if (ua > 0 && ub < 0)
        return PAIR_SLOW_A;
    if (ua < 0 && ub > 0)
        return PAIR_SLOW_B;
    return ua < ub ? PAIR_SLOW_B : PAIR_SLOW_A;
}

/* Run the pair decision over every pair i < j, marking the slowed modalities.
 * Returns the action: SLOW when any pair acted, else the no-action reason. */
static miles_action decide_pairs(const double *u, int n, double tau, bool *slowed)
{
    bool acted = false, any_negative = false;
    for (int i = 0; i < n; i++)
        slowed[i] = false;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            pair_decision d = decide_pair(u[i], u[j], tau);
            if (d == PAIR_NONE_NEGATIVE)
                any_negative = true;
            else if (d == PAIR_SLOW_A || d == PAIR_SLOW_B) {
                slowed[d == PAIR_SLOW_A ? i : j] = true;
                acted = true;
            }
        }
    if (acted)
        return MILES_SLOW;
    return any_negative ? MILES_NONE_BOTH_NEGATIVE : MILES_NONE_BALANCED;
}

/* The largest |u_i - u_j| over the pairs (max u - min u). */
static double max_pair_delta(const double *u, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (fabs(u[i] - u[j]) > d)
                d = fabs(u[i] - u[j]);
    return d;
}

/* The scales for the next epoch: 1 for every modality when nothing was slowed;
 * else mu for the slowed ones (assigned, not multiplied into prev) and, for the
 * others, 1 with reset_other or the scale in force without it. */
static void new_scales(miles_action a, const bool *slowed, int n, const double *prev,
                       const miles_opts *o, double *scale)
{
    for (int i = 0; i < n; i++) {
        if (a != MILES_SLOW)
            scale[i] = 1;
        else if (slowed[i])
            scale[i] = o->mu;
        else
            scale[i] = o->reset_other || !prev ? 1 : prev[i];
    }
}

/* Algorithm 1 for one epoch (see miles.h): check, u, the pair decisions, scales. */
int miles_decide(double m_fused, const double *m, int n, const double *prev,
                 const miles_opts *o, double *u, double *scale, bool *slowed, miles_result *r)
{
    if (check_args(m_fused, m, n, prev, o) != 0)
        return -1;
    miles_utilization(m_fused, m, n, u);
    if (m_fused == 0) {
        for (int i = 0; i < n; i++)
            slowed[i] = false;
        r->action = MILES_NONE_FUSED_ZERO;
        r->delta = NAN;
    } else {
        r->action = decide_pairs(u, n, o->tau, slowed);
        r->delta = max_pair_delta(u, n);
    }
    new_scales(r->action, slowed, n, prev, o, scale);
    r->n_slowed = 0;
    for (int i = 0; i < n; i++)
        r->n_slowed += slowed[i];
    return 0;
}

/* The action's name for logs and the Lua result. */
const char *miles_action_name(miles_action a)
{
    switch (a) {
    case MILES_NONE_BALANCED: return "none_balanced";
    case MILES_NONE_BOTH_NEGATIVE: return "none_both_negative";
    case MILES_NONE_FUSED_ZERO: return "none_fused_zero";
    case MILES_SLOW: return "slow";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------------
 * Explanations */

/* Append printf-style text to buf at *len, never past size. */
__attribute__((format(printf, 4, 5)))
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (k > 0)
        *len = *len + (size_t)k < size ? *len + (size_t)k : size - 1;
}

/* "u_1 = 0.5, u_2 = -0.1" into buf. */
static void append_rates(char *buf, size_t size, size_t *len, const double *u, int n)
{
    for (int i = 0; i < n; i++)
        append(buf, size, len, "%su_%d = %.4g", i ? ", " : "", i + 1, u[i]);
}

/* One sentence saying what was decided and why, for logs. */
void miles_reason(const miles_result *r, const double *u, const bool *slowed, int n,
                  const miles_opts *o, char *buf, size_t size)
{
    size_t len = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
    switch (r->action) {
    case MILES_NONE_FUSED_ZERO:
        append(buf, size, &len, "the fused metric is 0, so u is undefined: no action, "
                                "every encoder at alpha");
        return;
    case MILES_NONE_BALANCED:
        append(buf, size, &len, "delta %.4g <= tau %.4g: balanced, every encoder at alpha",
               r->delta, o->tau);
        return;
    case MILES_NONE_BOTH_NEGATIVE:
        append(buf, size, &len, "delta %.4g > tau %.4g but the rates are negative (", r->delta,
               o->tau);
        append_rates(buf, size, &len, u, n);
        append(buf, size, &len, "; the unimodal heads beat the fused head): no action, "
                                "every encoder at alpha");
        return;
    case MILES_SLOW:
        append(buf, size, &len, "delta %.4g > tau %.4g (", r->delta, o->tau);
        append_rates(buf, size, &len, u, n);
        append(buf, size, &len, "): %s", r->n_slowed > 1 ? "modalities" : "modality");
        for (int i = 0, k = 0; i < n; i++)
            if (slowed[i])
                append(buf, size, &len, "%s%d", k++ ? ", " : " ", i + 1);
        append(buf, size, &len, " slowed to mu * alpha");
        append(buf, size, &len, "; the others %s", o->reset_other ? "reset to alpha"
                                                                   : "keep their rates");
        return;
    }
}

/* ------------------------------------------------------------------------------
 * The paper's Delta between unimodal heads */

/* The stronger head's metric minus the weaker one's (max - min). */
int miles_head_gap(const double *m, int n, double *out)
{
    if (n < 2)
        return err_set("miles.head_gap: at least 2 modalities are needed, got %d", n);
    double lo = m[0], hi = m[0];
    for (int i = 0; i < n; i++) {
        if (!isfinite(m[i]))
            return err_set("miles.head_gap: the metric of modality %d must be finite, got %g",
                           i + 1, m[i]);
        lo = m[i] < lo ? m[i] : lo;
        hi = m[i] > hi ? m[i] : hi;
    }
    *out = hi - lo;
    return 0;
}
