/* FlashAttention's error rule and the exact-value checks (see conf_check.h). */
#include "conf_check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
        double fp32 = ((double)d->head_dim_qk + 4.0) * 0x1.0p-24 * (refs->lse_mag[i] + fabs(refs->lse64[i]));
        if (e > t.lse_naive) t.lse_naive = e;
        if (fp32 / 2.0 > f) f = fp32 / 2.0; /* the floor is doubled below */
        if (f > t.lse_floor) t.lse_floor = f;
    }
    t.out_floor *= 2.0;
    t.lse_floor *= 2.0;
    return t;
}

static double ratio_factor(double err, double naive, double floor, double factor) {
    double allowed = factor * naive + floor;
    if (allowed > 0.0) return err / allowed;
    return err > 0.0 ? INFINITY : 0.0;
}

static double ratio_of(double err, double naive, double floor) {
    return ratio_factor(err, naive, floor, CONF_FWD_NAIVE_FACTOR);
}

int conf_check_outputs(const conf_problem *p, const conf_refs *refs, const conf_tolerance *tol,
                       conf_check_result *r) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    int64_t hq = d->heads_q, dv = d->head_dim_v;
    int64_t wb = -1, wi = 0, wh = 0, we = 0; /* where the worst out error is */
    double wlib = 0.0, wref = 0.0;
    r->out_err = r->lse_err = r->ratio = 0.0;
    r->grad_err[0] = r->grad_err[1] = r->grad_err[2] = 0.0;
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

/* ------------------------------------------------------------------ gradients */

static const char *const grad_names[3] = {"dq", "dk", "dv"};

static int64_t grad_count(const conf_problem *p, int g) {
    const fa_attn_desc *d = &p->desc;
    if (g == 0) return p->rows * d->heads_q * d->head_dim_qk;
    return p->key_rows * d->heads_kv * (g == 1 ? d->head_dim_qk : d->head_dim_v);
}

conf_grad_tolerance conf_grad_tolerance_compute(const conf_problem *p, const conf_refs *refs,
                                                const conf_grad_refs *g) {
    const fa_attn_desc *d = &p->desc;
    conf_grad_tolerance t;
    memset(&t, 0, sizeof t);
    double max_lse = 1.0;
    for (int64_t i = 0; i < p->rows * d->heads_q; i++)
        if (isfinite(refs->lse64[i]) && fabs(refs->lse64[i]) > max_lse) max_lse = fabs(refs->lse64[i]);
    for (int k = 0; k < 3; k++) {
        int64_t n = grad_count(p, k);
        double noise = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs(g->gnaive[k][i] - g->g64[k][i]), f = rounding_noise(d->dtype, g->g64[k][i]);
            if (e > t.naive[k]) t.naive[k] = e;
            if (f > noise) noise = f;
        }
        /* fp32 noise: dot products of head_dim terms (dP, Delta), and P = exp(s - LSE) relative to |LSE| */
        double dots = (double)(d->head_dim_qk > d->head_dim_v ? d->head_dim_qk : d->head_dim_v);
        t.floor[k] = 2.0 * noise + (dots + 4.0 * max_lse) * 0x1.0p-24 * g->mag[k];
    }
    return t;
}

int conf_check_grads(const conf_problem *p, const conf_refs *refs, const conf_grad_refs *g,
                     const conf_grad_tolerance *tol, conf_check_result *r) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    const fa_bwd_args *ba = &p->bargs;
    const fa_tensor *ts[3] = {&ba->dq, &ba->dk, &ba->dv};
    int64_t hq = d->heads_q, hk = d->heads_kv, dims[3] = {d->head_dim_qk, d->head_dim_qk, d->head_dim_v};
    r->ratio = 0.0;
    r->msg[0] = '\0';
    double worst_lib[3] = {0}, worst_ref[3] = {0};
    int64_t where[3][4] = {{-1}, {-1}, {-1}};
    for (int k = 0; k < 3; k++) r->grad_err[k] = 0.0;
    for (int64_t b = 0; b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        for (int k = 0; k < 3; k++) {
            int64_t nrow = k == 0 ? s.sq : s.kcap, nh = k == 0 ? hq : hk;
            for (int64_t i = 0; i < nrow; i++)
                for (int64_t h = 0; h < nh; h++) {
                    int64_t lrow = k == 0 ? (s.q_row0 + i) * hq + h : (s.k_row0 + i) * hk + h;
                    /* structurally zero: a query that sees no key, a key that no query sees */
                    int zero = k == 0 ? isinf(refs->lse64[lrow]) : !g->key_seen[s.k_row0 + i];
                    for (int64_t e = 0; e < dims[k]; e++) {
                        int64_t off = k == 0 ? conf_ref_q_offset(d, a, ts[k], b, i, h, e)
                                             : conf_ref_kv_offset(d, a, ts[k], b, i, h, e);
                        const char *what = k == 0 ? "query" : "key";
                        if (conf_is_nonfinite(d->dtype, ts[k]->data, off)) {
                            snprintf(r->msg, sizeof r->msg, "%s[b=%lld, %s=%lld, h=%lld, e=%lld] is NaN/inf%s",
                                     grad_names[k], (long long)b, what, (long long)i, (long long)h, (long long)e,
                                     !zero      ? ""
                                     : k == 0   ? " (the query sees no key: expected 0)"
                                     : i >= s.sk ? " (the key is past seqused_k: expected 0)"
                                                 : " (no query sees the key: expected 0)");
                            r->ratio = INFINITY;
                            return -1;
                        }
                        double lib = conf_load(d->dtype, ts[k]->data, off), ref = g->g64[k][lrow * dims[k] + e];
                        if (zero && lib != 0.0) {
                            snprintf(r->msg, sizeof r->msg, "%s[b=%lld, %s=%lld, h=%lld, e=%lld] = %g, but %s: expected 0",
                                     grad_names[k], (long long)b, what, (long long)i, (long long)h, (long long)e, lib,
                                     k == 0 ? "the query sees no key"
                                            : i >= s.sk ? "the key is past seqused_k" : "no query sees the key");
                            r->ratio = INFINITY;
                            return -1;
                        }
                        if (fabs(lib - ref) > r->grad_err[k] || where[k][0] < 0) {
                            r->grad_err[k] = fabs(lib - ref);
                            where[k][0] = b, where[k][1] = i, where[k][2] = h, where[k][3] = e;
                            worst_lib[k] = lib, worst_ref[k] = ref;
                        }
                    }
                }
        }
    }
    int bad = -1;
    for (int k = 0; k < 3; k++) {
        double rk = ratio_factor(r->grad_err[k], tol->naive[k], tol->floor[k], CONF_BWD_NAIVE_FACTOR);
        if (rk > r->ratio) r->ratio = rk;
        if (rk > 1.0 && bad < 0) bad = k;
    }
    if (bad >= 0) {
        int k = bad;
        snprintf(r->msg, sizeof r->msg,
                 "%s error %.3g > 3 * naive %.3g + floor %.3g (ratio %.2f); worst at b=%lld %s=%lld h=%lld e=%lld: "
                 "got %.7g, float64 reference %.7g",
                 grad_names[k], r->grad_err[k], tol->naive[k], tol->floor[k],
                 ratio_factor(r->grad_err[k], tol->naive[k], tol->floor[k], CONF_BWD_NAIVE_FACTOR),
                 (long long)where[k][0], k == 0 ? "query" : "key", (long long)where[k][1], (long long)where[k][2],
                 (long long)where[k][3], worst_lib[k], worst_ref[k]);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ the cache after an append */

int conf_check_append(const conf_problem *p, char *msg, size_t len) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    double want[1024], mag[1024];
    for (int64_t b = 0; b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        for (int64_t t = 0; t < d->seqlen_new; t++)
            for (int64_t h = 0; h < d->heads_kv; h++)
                for (int is_v = 0; is_v < 2; is_v++) {
                    const fa_tensor *c = is_v ? &a->v : &a->k;
                    int64_t dim = is_v ? d->head_dim_v : d->head_dim_qk;
                    conf_ref_appended_row(d, a, is_v, b, t, h, want, mag);
                    for (int64_t e = 0; e < dim; e++) {
                        int64_t off = conf_ref_kv_offset(d, a, c, b, s.cached + t, h, e);
                        double got = conf_load(d->dtype, c->data, off);
                        /* one unit of the dtype for the rounding of an fp32 rotation, plus that rotation's noise */
                        double tol = mag[e] > 0.0 ? conf_ulp(d->dtype, want[e]) + 0x1.0p-21 * mag[e] : 0.0;
                        if (conf_is_nonfinite(d->dtype, c->data, off) || !(fabs(got - want[e]) <= tol)) {
                            snprintf(msg, len,
                                     "cache %s[b=%lld, key=%lld (appended row %lld), h=%lld, e=%lld] = %.9g, expected "
                                     "%s%.9g (%s)",
                                     is_v ? "v" : "k", (long long)b, (long long)(s.cached + t), (long long)t,
                                     (long long)h, (long long)e, got, tol > 0.0 ? "" : "exactly ", want[e],
                                     is_v ? "v_new copied"
                                     : d->rotary_dim > e ? "k_new rotated, rounded to the dtype"
                                     : d->rotary_dim > 0 ? "k_new, past rotary_dim: copied"
                                                         : "k_new copied");
                            return -1;
                        }
                    }
                }
    }
    return 0;
}
