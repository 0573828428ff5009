/* FlashAttention's error rule and the exact-value checks (see conf_check.h). */
#include "conf_check.h"

#include <math.h>
#include <stdio.h>

#include "conf_dtype.h"
#include "conf_reference.h"

/* flash_attn's fwd_atol term for one value: how far (x + 0.3) - 0.3 drifts in the dtype. Modelled on what
 * PyTorch does for `t + 0.3 - 0.3`: the scalar becomes 0.3f, each op computes in fp32 and rounds to the dtype.
 * That drift is 0 when x and x + 0.3 share a binade (LSE values, say), so the term is never allowed below half
 * an ulp of x: the rounding of the stored result itself, which no implementation can avoid and which a naive
 * result may dodge by luck when a case has few outputs. */
static double rounding_noise(fa_dtype dt, double x) {
    const float c = 0.3f;
    float r = (float)conf_round_to(dt, x);
    float up = (float)conf_round_to(dt, (double)(r + c));
    float down = (float)conf_round_to(dt, (double)(up - c));
    double drift = fabs((double)down - (double)r), half_ulp = 0.5 * conf_ulp(dt, x);
    return drift > half_ulp ? drift : half_ulp;
}

conf_tolerance conf_tolerance_compute(const conf_problem *p, const conf_refs *refs) {
    const fa_attn_desc *d = &p->desc;
    conf_tolerance t = {0, 0, 0, 0};
    int64_t n_out = p->rows * d->heads_q * d->head_dim_v, n_lse = p->rows * d->heads_q;
    for (int64_t i = 0; i < n_out; i++) {
        double e = fabs(refs->out_naive[i] - refs->out64[i]), f = rounding_noise(d->dtype, refs->out64[i]);
        if (e > t.out_naive) t.out_naive = e;
        if (f > t.out_floor) t.out_floor = f;
    }
    for (int64_t i = 0; i < n_lse; i++) {
        if (isinf(refs->lse64[i])) continue; /* rows that see no key: checked exactly */
        double e = fabs(refs->lse_naive[i] - refs->lse64[i]), f = rounding_noise(FA_DTYPE_F32, refs->lse64[i]);
        if (e > t.lse_naive) t.lse_naive = e;
        if (f > t.lse_floor) t.lse_floor = f;
    }
    t.out_floor *= 2.0;
    t.lse_floor *= 2.0;
    return t;
}

static double ratio_of(double err, double naive, double floor) {
    double allowed = CONF_FWD_NAIVE_FACTOR * naive + floor;
    if (allowed > 0.0) return err / allowed;
    return err > 0.0 ? INFINITY : 0.0;
}

int conf_check_outputs(const conf_problem *p, const conf_refs *refs, const conf_tolerance *tol,
                       conf_check_result *r) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    int64_t hq = d->heads_q, dv = d->head_dim_v;
    int64_t wb = -1, wi = 0, wh = 0, we = 0; /* where the worst out error is */
    double wlib = 0.0, wref = 0.0;
    r->out_err = r->lse_err = r->ratio = 0.0;
    r->msg[0] = '\0';
    for (int64_t b = 0; b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        for (int64_t i = 0; i < s.sq; i++)
            for (int64_t h = 0; h < hq; h++) {
                int64_t row = (s.q_row0 + i) * hq + h;
                int masked = isinf(refs->lse64[row]);
                for (int64_t e = 0; e < dv; e++) {
                    int64_t off = conf_ref_q_offset(d, a, &a->out, b, i, h, e);
                    if (conf_is_nonfinite(d->dtype, a->out.data, off)) {
                        snprintf(r->msg, sizeof r->msg, "out[b=%lld, i=%lld, h=%lld, e=%lld] is NaN/inf%s",
                                 (long long)b, (long long)i, (long long)h, (long long)e,
                                 masked ? " (row sees no key: expected 0)" : "");
                        r->ratio = INFINITY;
                        return -1;
                    }
                    double lib = conf_load(d->dtype, a->out.data, off), ref = refs->out64[row * dv + e];
                    if (masked && lib != 0.0) {
                        snprintf(r->msg, sizeof r->msg,
                                 "out[b=%lld, i=%lld, h=%lld, e=%lld] = %g, but the row sees no key: expected 0",
                                 (long long)b, (long long)i, (long long)h, (long long)e, lib);
                        r->ratio = INFINITY;
                        return -1;
                    }
                    if (fabs(lib - ref) > r->out_err || wb < 0) {
                        r->out_err = fabs(lib - ref);
                        wb = b, wi = i, wh = h, we = e, wlib = lib, wref = ref;
                    }
                }
                if (!d->return_lse) continue;
                float lib = ((const float *)a->lse.data)[conf_ref_lse_offset(d, a, b, i, h)];
                double ref = refs->lse64[row];
                if (isnan(lib) || (isinf(lib) && !(masked && lib < 0)) || (masked && !isinf(lib))) {
                    snprintf(r->msg, sizeof r->msg, "lse[b=%lld, h=%lld, i=%lld] = %g, expected %s%.9g",
                             (long long)b, (long long)h, (long long)i, (double)lib, masked ? "exactly " : "", ref);
                    r->ratio = INFINITY;
                    return -1;
                }
                if (!masked && fabs(lib - ref) > r->lse_err) r->lse_err = fabs(lib - ref);
            }
    }
    double ro = ratio_of(r->out_err, tol->out_naive, tol->out_floor);
    double rl = d->return_lse ? ratio_of(r->lse_err, tol->lse_naive, tol->lse_floor) : 0.0;
    r->ratio = ro > rl ? ro : rl;
    if (ro > 1.0)
        snprintf(r->msg, sizeof r->msg,
                 "out error %.3g > 2 * naive %.3g + floor %.3g (ratio %.2f); worst at b=%lld i=%lld h=%lld e=%lld: "
                 "got %.7g, float64 reference %.7g",
                 r->out_err, tol->out_naive, tol->out_floor, ro, (long long)wb, (long long)wi, (long long)wh,
                 (long long)we, wlib, wref);
    else if (rl > 1.0)
        snprintf(r->msg, sizeof r->msg, "lse error %.3g > 2 * naive %.3g + floor %.3g (ratio %.2f)", r->lse_err,
                 tol->lse_naive, tol->lse_floor, rl);
    return r->ratio <= 1.0 ? 0 : -1;
}
