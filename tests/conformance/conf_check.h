/*
 * Conformance suite: FlashAttention's acceptance rule, applied to one library result.
 *
 *   max|out - ref64| <= 2 * max|naive - ref64| + floor,   floor = 2 * max|dt(dt(dt(ref64) + 0.3) - 0.3) - dt(ref64)|
 *
 * (each term of the floor's max at least half an ulp of ref64 in dt: see rounding_noise() in conf_check.c)
 * naive is the same-precision naive implementation (conf_reference.h), dt rounds to the output dtype (fp32 for
 * LSE). The floor is flash_attn's fwd_atol: the rounding noise of the dtype at the output's magnitude, so that
 * an exact naive (say, one query and one key) does not demand a bit-exact kernel. On top of the rule: no NaN
 * or inf anywhere, rows that see no key are exactly 0 with LSE exactly -inf, and no other row's LSE is -inf.
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
} conf_refs;

conf_tolerance conf_tolerance_compute(const conf_problem *p, const conf_refs *refs);

typedef struct conf_check_result {
    double out_err, lse_err; /* max|lib - ref64| */
    double ratio;            /* worst of err / (2 * naive + floor) over out and LSE; <= 1 passes */
    char msg[1024];          /* why it failed */
} conf_check_result;

/* Reads the library's outputs from p's buffers. Returns 0 on pass, -1 on failure (r->msg says why). */
int conf_check_outputs(const conf_problem *p, const conf_refs *refs, const conf_tolerance *tol,
                       conf_check_result *r);

#endif
