/*
 * Conformance suite: FlashAttention's acceptance rule, applied to one library result.
 *
 *   max|out - ref64| <= 2 * max|naive - ref64| + floor,   floor = 2 * max|dt(dt(dt(ref64) + 0.3) - 0.3) - dt(ref64)|
 *
 * (each term of the floor's max at least half an ulp of ref64 in dt: see rounding_noise() in conf_check.c)
 * naive is the same-precision naive implementation (conf_reference.h), dt rounds to the output dtype (fp32 for
 * LSE). The floor is flash_attn's fwd_atol: the rounding noise of the dtype at the output's magnitude, so that
 * an exact naive (say, one query and one key) does not demand a bit-exact kernel. LSE's floor adds fp32 noise,
 * max over rows of (head_dim_qk + 4) * 2^-24 * (lse_mag + |lse|) (lse_mag: conf_reference.h): with few keys the
 * naive LSE error is one fp32 dot product's, small or large by luck, and a kernel's cannot be held to 2x that.
 * On top of the rule: no NaN
 * or inf anywhere, rows that see no key are exactly 0 with LSE exactly -inf, and no other row's LSE is -inf.
 *
 * Gradients (dq, dk, dv of a backward case), each on its own:
 *   max|grad - ref64| <= 3 * max|naive - ref64| + floor,
 *   floor = 2 * max|rounding noise of dt at ref64| + (head_dim + 4 * max(1, max|lse|)) * 2^-24 * mag
 * naive being autograd through the naive same-precision forward (conf_reference.h). mag is the size of the terms
 * each gradient sums (dS = P (dP - Delta) cancels): the second term is fp32 noise (dot products of head_dim terms
 * for dP and Delta, exp(s - LSE) relative to |LSE|), which matters only where the naive happens to be exact (one
 * key, say: dS is then exactly 0) while a kernel that takes O and LSE from the forward cannot be. head_dim is the
 * larger of head_dim_qk and head_dim_v. Exact values on top: the dq rows of queries that see no key, and the dk / dv rows of keys that no query
 * sees (KV cache slots past seqused_k included), must be exactly 0.
 *
 * The cache after an append: appended k rows equal the reference's rotated k_new rounded to dt within one unit of
 * dt plus fp32 noise of the rotation (exactly where no rotation applies), v rows equal v_new exactly, and every
 * other byte of the cache is unchanged (conf_problem_check_memory).
 */
#ifndef CONF_CHECK_H
#define CONF_CHECK_H

#include <stddef.h>

#include "conf_problem.h"

/* Multiples of the naive error allowed: 2x for forward outputs (flash_attn's tests); gradients, when backward
 * cases land, get 3x, as flash_attn allows for dq, dk, dv. */
#define CONF_FWD_NAIVE_FACTOR 2.0
#define CONF_BWD_NAIVE_FACTOR 3.0

typedef struct conf_tolerance {
    double out_naive, out_floor; /* max|naive - ref64| and the floor, for out */
    double lse_naive, lse_floor; /* the same for LSE */
} conf_tolerance;

/* Logical arrays (see conf_reference.h) of the float64 and naive references. */
typedef struct conf_refs {
    double *out64, *lse64, *out_naive, *lse_naive;
    double *lse_mag; /* conf_reference_fwd's lse_mag (float64 reference) */
} conf_refs;

conf_tolerance conf_tolerance_compute(const conf_problem *p, const conf_refs *refs);

typedef struct conf_check_result {
    double out_err, lse_err; /* max|lib - ref64| */
    double grad_err[3];      /* dq, dk, dv: max|lib - ref64| */
    double ratio;            /* worst of err / (factor * naive + floor) over the outputs checked; <= 1 passes */
    char msg[1024];          /* why it failed */
} conf_check_result;

/* Reads the library's outputs from p's buffers. Returns 0 on pass, -1 on failure (r->msg says why). */
int conf_check_outputs(const conf_problem *p, const conf_refs *refs, const conf_tolerance *tol,
                       conf_check_result *r);

/* Reference gradients in the logical layouts of conf_reference.h. */
typedef struct conf_grad_refs {
    double *g64[3], *gnaive[3]; /* dq, dk, dv */
    double mag[3];
    unsigned char *key_seen;
} conf_grad_refs;

typedef struct conf_grad_tolerance {
    double naive[3], floor[3];
} conf_grad_tolerance;

conf_grad_tolerance conf_grad_tolerance_compute(const conf_problem *p, const conf_refs *refs,
                                                const conf_grad_refs *g);

/* Reads dq, dk, dv from p's buffers after fa_bwd. Returns 0 on pass, -1 on failure (r->msg says why). */
int conf_check_grads(const conf_problem *p, const conf_refs *refs, const conf_grad_refs *g,
                     const conf_grad_tolerance *tol, conf_check_result *r);

/* The appended rows of the cache after fa_fwd with desc.seqlen_new > 0. Returns 0, or -1 with a message. */
int conf_check_append(const conf_problem *p, char *msg, size_t len);

#endif
