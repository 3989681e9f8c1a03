/* The MILES decision (Guerra-Manzanares and Shamout, Sec. III, Eq. 4-5 and
 * Algorithm 1; docs/BASELINES.md "MILES"): from one epoch's metrics, the
 * conditional utilization rate of every modality, their difference, and the
 * learning-rate scale of every modality's parameter group for the next epoch
 * (group i trains at scale[i] * alpha; the fusion head keeps alpha).
 *
 * A pure function: no state is kept in C. The rule's state (the scales in force)
 * lives with the caller, which passes them back as `prev` the next epoch.
 *
 * Two modalities (A = 0, B = 1), exactly Algorithm 1:
 *   u_A = (M_AB - M_B) / M_AB,  u_B = (M_AB - M_A) / M_AB,  delta = |u_A - u_B|
 *   delta <= tau                 -> no action ("none_balanced"), every scale 1
 *   u_A < 0 and u_B < 0          -> no action ("none_both_negative"), every scale 1
 *   else u_A > 0 and u_B < 0     -> slow A
 *   else u_A < 0 and u_B > 0     -> slow B
 *   else                         -> slow B if u_A < u_B, else slow A
 * The slowed modality's scale is mu (assigned, never compounded); the other keeps
 * its previous scale (reset_other = false, Algorithm 1 as printed) or is reset to
 * 1 (reset_other = true). M_AB = 0 makes u undefined: no action
 * ("none_fused_zero"), every scale 1, u and delta reported as NaN.
 *
 * More than two modalities (our extension of Sec. VII): u_i = (M_fused - mean
 * over j != i of M_j) / M_fused (Eq. 4 for two); the two-modality decision is
 * applied to every pair (i, j), i < j, with i as A and j as B and
 * delta_ij = |u_i - u_j|; a modality slowed by any pair gets mu, the others
 * follow reset_other; when no pair acts every scale is 1. The reported delta is
 * the largest pairwise delta (max u - min u). The no-action reason is
 * "none_balanced" when every pair has delta_ij <= tau, else "none_both_negative"
 * (some pair was over tau but had both rates negative); for two modalities this
 * is the same as testing line 8's two conditions in the printed order.
 *
 * Modalities are numbered from 1 in error messages and reasons (as in the paper
 * and on the Lua side); arrays are 0-based. */
#ifndef MILES_MILES_H
#define MILES_MILES_H

#include <stdbool.h>
#include <stddef.h>

/* More modalities than this are refused (the binding keeps its arrays on the stack). */
#define MILES_MAX_MODALITIES 64

typedef enum {
    MILES_NONE_BALANCED = 0,   /* delta <= tau (every pair, for n > 2) */
    MILES_NONE_BOTH_NEGATIVE,  /* over tau, but both rates negative */
    MILES_NONE_FUSED_ZERO,     /* M_fused == 0: u undefined */
    MILES_SLOW                 /* at least one modality slowed to mu */
} miles_action;

/* The hyper-parameters: 0 <= tau <= 1, 0 < mu <= 1. */
typedef struct {
    double tau, mu;
    bool reset_other; /* reset the modalities not slowed to 1 (default false) */
} miles_opts;

/* The decision's summary; the per-modality values go to the caller's arrays. */
typedef struct {
    miles_action action;
    double delta; /* |u_A - u_B|; the largest pairwise delta for n > 2; NaN if M_fused == 0 */
    int n_slowed; /* how many modalities were slowed (0 for the no-action cases) */
} miles_result;

/* Decide for one epoch. m_fused: the fused head's metric; m[0..n-1]: each
 * modality head's metric; prev[0..n-1]: the scales in force (NULL: all 1).
 * Writes u[n], scale[n] and slowed[n] (true for each modality slowed) and *r.
 * Returns 0, or -1 with the message set ("miles.decide: tau must be in [0, 1],
 * got 1.5") and nothing written. */
int miles_decide(double m_fused, const double *m, int n, const double *prev,
                 const miles_opts *o, double *u, double *scale, bool *slowed, miles_result *r);

/* The conditional utilization rates alone (Eq. 4 and its n-modality form);
 * NaN for every u when m_fused == 0. Arguments are not checked. */
void miles_utilization(double m_fused, const double *m, int n, double *u);

/* The action's name for the no-action cases ("none_balanced",
 * "none_both_negative", "none_fused_zero") and "slow" for MILES_SLOW (the caller
 * appends the slowed modalities: "slow_1", "slow_1_3"). */
const char *miles_action_name(miles_action a);

/* A one-sentence explanation of the decision, for logs, into buf (always
 * terminated). u, slowed: the arrays miles_decide wrote. */
void miles_reason(const miles_result *r, const double *u, const bool *slowed, int n,
                  const miles_opts *o, char *buf, size_t size);

/* The paper's Delta between unimodal heads (Sec. IV, Tables II-III), for
 * reporting: |M_A - M_B| for two modalities, max - min for more (the stronger
 * minus the weaker head, so never negative). n >= 2 finite metrics, else -1
 * with the message set ("miles.head_gap: ..."). */
int miles_head_gap(const double *m, int n, double *out);

#endif
