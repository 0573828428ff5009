/*
 * Reference gradients of attention (see conf_reference.h for the contract), written from the forward semantics
 * in flashport.h by the chain rule, sharing no code with the library.
 *
 * For one (sequence, query head), with s = scale * q.k, optional softcap s' = cap * tanh(s / cap), ALiBi and the
 * mask, P = softmax(s'), dropout D = keep / (1 - p) (0 where dropped), Pd = P o D and O = Pd V:
 *   dV   = Pd^T dO                          (summed over the query heads that share a kv head)
 *   dPd  = dO V^T,  dP = dPd o D            (the gradient reaching the undropped P)
 *   dS'  = P o (dP - Delta),  Delta_i = sum_j P_ij dP_ij = dO_i . O_i
 *   dS   = dS' o (1 - tanh^2(s / cap))      (softcap; ALiBi and the mask are constants)
 *   dQ   = scale * dS K,   dK = scale * dS^T Q
 * The work is spread over the cores inside each (sequence, head): rows of the score matrix first (P, dS, dQ),
 * then its columns (dK, dV), so the sums run in a fixed order and the reference is deterministic.
 */
#include "conf_reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conf_dtype.h"

#ifdef _OPENMP
#include <omp.h>
#define CONF_OMP_FOR _Pragma("omp parallel for schedule(dynamic, 4)")
#else
#define CONF_OMP_FOR
#endif

typedef struct bwd_task {
    const fa_attn_desc *d;
    const fa_fwd_args *a;
    const fa_tensor *dout;
    conf_ref_mode mode;
    int64_t b, h, hk, dqk, dv;
    conf_seq seq;
    double scale, slope, cap, keep_scale;
    double *q, *k, *v, *dO;  /* gathered: sq x dqk, sk x dqk, sk x dv, sq x dv */
    double *P, *Pd, *dS;     /* sq x sk: softmax, dropped softmax, gradient of scale * q.k (naive: of q.k) */
    double *rowA, *colA;     /* magnitudes (float64 only): per row / per key, sum of |terms| of dS */
    double *colPd;           /* per key: sum_i |Pd_ij| */
} bwd_task;

static double dropout_mult(const bwd_task *t, int64_t i, int64_t j) {
    const fa_attn_desc *d = t->d;
    if (d->dropout_p <= 0.0f) return 1.0;
    return fa_dropout_keep(t->a->dropout_seed, t->a->dropout_offset, t->b, t->h, i, j, d->dropout_p) ? t->keep_scale
                                                                                                      : 0.0;
}

static void gather(bwd_task *t) {
    const fa_attn_desc *d = t->d;
    const fa_fwd_args *a = t->a;
    int64_t sq = t->seq.sq, sk = t->seq.sk, dqk = t->dqk, dv = t->dv;
    for (int64_t i = 0; i < sq; i++) {
        for (int64_t e = 0; e < dqk; e++)
            t->q[i * dqk + e] = conf_load(d->dtype, a->q.data, conf_ref_q_offset(d, a, &a->q, t->b, i, t->h, e));
        for (int64_t e = 0; e < dv; e++)
            t->dO[i * dv + e] =
                conf_load(d->dtype, t->dout->data, conf_ref_q_offset(d, a, t->dout, t->b, i, t->h, e));
    }
    for (int64_t j = 0; j < sk; j++) {
        for (int64_t e = 0; e < dqk; e++)
            t->k[j * dqk + e] = conf_load(d->dtype, a->k.data, conf_ref_kv_offset(d, a, &a->k, t->b, j, t->hk, e));
        for (int64_t e = 0; e < dv; e++)
            t->v[j * dv + e] = conf_load(d->dtype, a->v.data, conf_ref_kv_offset(d, a, &a->v, t->b, j, t->hk, e));
    }
}

/* Row i in float64: P, Pd, dS (w.r.t. scale * q.k) and dq. scratch: 2 * sk + dv doubles. */
static void row_f64(bwd_task *t, int64_t i, double *dq, double *scratch) {
    const fa_attn_desc *d = t->d;
    int64_t sk = t->seq.sk, dqk = t->dqk, dv = t->dv, diag = i + sk - t->seq.sq, lo, hi;
    double *P = t->P + i * sk, *Pd = t->Pd + i * sk, *dS = t->dS + i * sk;
    double *cf = scratch, *o = scratch + sk, *dpabs = scratch + sk + dv;
    memset(P, 0, sizeof(double) * (size_t)sk);
    memset(Pd, 0, sizeof(double) * (size_t)sk);
    memset(dS, 0, sizeof(double) * (size_t)sk);
    memset(dq, 0, sizeof(double) * (size_t)dqk);
    if (t->rowA) t->rowA[i] = 0.0;
    conf_ref_window(d, i, t->seq.sq, sk, &lo, &hi);
    if (lo > hi) return; /* sees no key: every gradient of the row is 0 */
    const double *qi = t->q + i * dqk, *dOi = t->dO + i * dv;
    double m = -INFINITY;
    for (int64_t j = lo; j <= hi; j++) {
        double acc = 0.0;
        for (int64_t e = 0; e < dqk; e++) acc += qi[e] * t->k[j * dqk + e];
        double s = acc * t->scale;
        cf[j] = 1.0;
        if (t->cap > 0.0) {
            double th = tanh(s / t->cap);
            s = t->cap * th;
            cf[j] = 1.0 - th * th;
        }
        s -= t->slope * fabs((double)(diag - j));
        P[j] = s;
        if (s > m) m = s;
    }
    double sum = 0.0;
    for (int64_t j = lo; j <= hi; j++) sum += (P[j] = exp(P[j] - m));
    for (int64_t e = 0; e < dv; e++) o[e] = 0.0;
    for (int64_t j = lo; j <= hi; j++) {
        P[j] /= sum;
        Pd[j] = P[j] * dropout_mult(t, i, j);
        for (int64_t e = 0; e < dv; e++) o[e] += Pd[j] * t->v[j * dv + e];
    }
    double delta = 0.0, delta_abs = 0.0;
    for (int64_t e = 0; e < dv; e++) {
        delta += dOi[e] * o[e];
        delta_abs += fabs(dOi[e] * o[e]);
    }
    double row_a = 0.0;
    for (int64_t j = lo; j <= hi; j++) {
        double dpd = 0.0, dpd_abs = 0.0;
        for (int64_t e = 0; e < dv; e++) {
            dpd += dOi[e] * t->v[j * dv + e];
            dpd_abs += fabs(dOi[e] * t->v[j * dv + e]);
        }
        double mult = dropout_mult(t, i, j), dp = dpd * mult;
        dS[j] = P[j] * (dp - delta) * cf[j];
        dpabs[j] = P[j] * (dpd_abs * mult + delta_abs) * cf[j];
        row_a += dpabs[j];
    }
    for (int64_t j = lo; j <= hi; j++) {
        if (dS[j] == 0.0) continue;
        for (int64_t e = 0; e < dqk; e++) dq[e] += dS[j] * t->k[j * dqk + e];
    }
    for (int64_t e = 0; e < dqk; e++) dq[e] *= t->scale;
    if (t->rowA) {
        t->rowA[i] = row_a;
        for (int64_t j = lo; j <= hi; j++) t->colA[i * sk + j] = dpabs[j]; /* transposed sums in phase 2 */
    }
}

/* Row i as autograd through the naive same-precision forward gives it (float arithmetic on purpose). */
static void row_naive(bwd_task *t, int64_t i, double *dq, double *scratch) {
    const fa_attn_desc *d = t->d;
    fa_dtype dt = d->dtype;
    int64_t sk = t->seq.sk, dqk = t->dqk, dv = t->dv, diag = i + sk - t->seq.sq, lo, hi;
    double *P = t->P + i * sk, *Pd = t->Pd + i * sk, *dS = t->dS + i * sk, *cf = scratch;
    memset(P, 0, sizeof(double) * (size_t)sk);
    memset(Pd, 0, sizeof(double) * (size_t)sk);
    memset(dS, 0, sizeof(double) * (size_t)sk);
    memset(dq, 0, sizeof(double) * (size_t)dqk);
    conf_ref_window(d, i, t->seq.sq, sk, &lo, &hi);
    if (lo > hi) return;
    const double *qi = t->q + i * dqk, *dOi = t->dO + i * dv;
    float scale = (float)t->scale, cap = (float)t->cap, slope = (float)t->slope, m = -INFINITY;
    for (int64_t j = lo; j <= hi; j++) { /* S = QK^T in the dtype, the rest of the forward in fp32 */
        float acc = 0.0f;
        for (int64_t e = 0; e < dqk; e++) acc += (float)qi[e] * (float)t->k[j * dqk + e];
        float s = (float)conf_round_to(dt, acc) * scale;
        cf[j] = 1.0;
        if (cap > 0.0f) {
            float th = tanhf(s / cap);
            s = cap * th;
            cf[j] = 1.0f - th * th;
        }
        s -= slope * (float)fabs((double)(diag - j));
        P[j] = s;
        if (s > m) m = s;
    }
    float sum = 0.0f;
    for (int64_t j = lo; j <= hi; j++) {
        float p = expf((float)P[j] - m);
        P[j] = p;
        sum += p;
    }
    for (int64_t j = lo; j <= hi; j++) {
        float p = (float)P[j] / sum;
        P[j] = conf_round_to(dt, p);                                   /* softmax output, kept for its backward */
        Pd[j] = conf_round_to(dt, d->dropout_p > 0.0f ? p * (float)dropout_mult(t, i, j) : p); /* as the forward */
    }
    float delta = 0.0f;
    for (int64_t j = lo; j <= hi; j++) {
        float acc = 0.0f;
        for (int64_t e = 0; e < dv; e++) acc += (float)dOi[e] * (float)t->v[j * dv + e];
        float dp = (float)conf_round_to(dt, acc); /* dPd = dO V^T */
        if (d->dropout_p > 0.0f) dp = (float)conf_round_to(dt, dp * (float)dropout_mult(t, i, j));
        dS[j] = dp; /* dP for now */
        delta += (float)P[j] * dp;
    }
    for (int64_t j = lo; j <= hi; j++) {
        float g = (float)conf_round_to(dt, (float)P[j] * ((float)dS[j] - delta)); /* softmax backward */
        if (cap > 0.0f) g = (float)conf_round_to(dt, g * (float)cf[j]);             /* tanh backward */
        dS[j] = conf_round_to(dt, g * scale);                                        /* gradient of S = QK^T */
    }
    float acc[1024];
    for (int64_t e = 0; e < dqk; e++) acc[e] = 0.0f;
    for (int64_t j = lo; j <= hi; j++) {
        float g = (float)dS[j];
        if (g == 0.0f) continue;
        for (int64_t e = 0; e < dqk; e++) acc[e] += g * (float)t->k[j * dqk + e];
    }
    for (int64_t e = 0; e < dqk; e++) dq[e] = conf_round_to(dt, acc[e]);
}

/* Key j: this head's share of dk and dv, added to the group's sums (naive: rounded per head, fp32 sums). */
static void col(bwd_task *t, int64_t j, double *dk, double *dv) {
    int64_t sq = t->seq.sq, sk = t->seq.sk, dqk = t->dqk, dvd = t->dv;
    int naive = t->mode == CONF_REF_NAIVE;
    fa_dtype dt = t->d->dtype;
    double kacc[1024], vacc[1024], col_a = 0.0, col_pd = 0.0;
    for (int64_t e = 0; e < dqk; e++) kacc[e] = 0.0;
    for (int64_t e = 0; e < dvd; e++) vacc[e] = 0.0;
    if (naive) {
        float fk[1024], fv[1024];
        for (int64_t e = 0; e < dqk; e++) fk[e] = 0.0f;
        for (int64_t e = 0; e < dvd; e++) fv[e] = 0.0f;
        for (int64_t i = 0; i < sq; i++) {
            float g = (float)t->dS[i * sk + j], p = (float)t->Pd[i * sk + j];
            if (g != 0.0f)
                for (int64_t e = 0; e < dqk; e++) fk[e] += g * (float)t->q[i * dqk + e];
            if (p != 0.0f)
                for (int64_t e = 0; e < dvd; e++) fv[e] += p * (float)t->dO[i * dvd + e];
        }
        for (int64_t e = 0; e < dqk; e++) dk[e] = (float)((float)dk[e] + (float)conf_round_to(dt, fk[e]));
        for (int64_t e = 0; e < dvd; e++) dv[e] = (float)((float)dv[e] + (float)conf_round_to(dt, fv[e]));
        return;
    }
    for (int64_t i = 0; i < sq; i++) {
        double g = t->dS[i * sk + j], p = t->Pd[i * sk + j];
        if (g != 0.0)
            for (int64_t e = 0; e < dqk; e++) kacc[e] += g * t->q[i * dqk + e];
        if (p != 0.0)
            for (int64_t e = 0; e < dvd; e++) vacc[e] += p * t->dO[i * dvd + e];
        if (t->colA) {
            col_a += t->colA[i * sk + j];
            col_pd += fabs(p);
        }
    }
    for (int64_t e = 0; e < dqk; e++) dk[e] += t->scale * kacc[e];
    for (int64_t e = 0; e < dvd; e++) dv[e] += vacc[e];
    if (t->colA) {
        t->rowA[sq + j] += col_a; /* per key, summed over the group's heads (see the caller) */
        t->colPd[j] += col_pd;
    }
}

static double max_abs(const double *x, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

int conf_reference_bwd(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *dout, conf_ref_mode mode,
                       double *dq, double *dk, double *dv, double *mag, unsigned char *key_seen) {
    if (d->head_dim_v > 1024 || d->head_dim_qk > 1024 || d->heads_kv <= 0 || d->heads_q % d->heads_kv ||
        d->paged_kv || d->seqlen_new > 0)
        return -1;
    int64_t hq = d->heads_q, hkv = d->heads_kv, group = hq / hkv, dqk = d->head_dim_qk, dvd = d->head_dim_v;
    int64_t rows = conf_ref_rows(d, a), krows = conf_ref_key_rows(d, a);
    int64_t max_sq = 1, max_sk = 1;
    for (int64_t b = 0; b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        if (s.sq > max_sq) max_sq = s.sq;
        if (s.sk > max_sk) max_sk = s.sk;
    }
    memset(dq, 0, sizeof(double) * (size_t)(rows * hq * dqk));
    memset(dk, 0, sizeof(double) * (size_t)(krows * hkv * dqk));
    memset(dv, 0, sizeof(double) * (size_t)(krows * hkv * dvd));
    if (key_seen) memset(key_seen, 0, (size_t)krows);
    int want_mag = mode == CONF_REF_F64 && mag;
    size_t mat = (size_t)(max_sq * max_sk);
    bwd_task t;
    memset(&t, 0, sizeof t);
    t.q = malloc(sizeof(double) * (size_t)(max_sq * dqk));
    t.dO = malloc(sizeof(double) * (size_t)(max_sq * dvd));
    t.k = malloc(sizeof(double) * (size_t)(max_sk * dqk));
    t.v = malloc(sizeof(double) * (size_t)(max_sk * dvd));
    t.P = malloc(sizeof(double) * mat);
    t.Pd = malloc(sizeof(double) * mat);
    t.dS = malloc(sizeof(double) * mat);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    double *scratch = malloc(sizeof(double) * (size_t)(2 * max_sk + dvd) * (size_t)threads); /* per thread */
    int ok = t.q && t.dO && t.k && t.v && t.P && t.Pd && t.dS && scratch;
    double *rowA = NULL, *colA = NULL, *colPd = NULL;
    if (ok && want_mag) {
        rowA = malloc(sizeof(double) * (size_t)(max_sq + max_sk));
        colA = calloc(mat, sizeof(double));
        colPd = malloc(sizeof(double) * (size_t)max_sk);
        ok = rowA && colA && colPd;
    }
    double mag_dq = 0.0, mag_dk = 0.0, mag_dv = 0.0;
    double max_q = 0.0, max_k = 0.0, max_do = 0.0;
    for (int64_t b = 0; ok && b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        if (key_seen)
            for (int64_t i = 0; i < s.sq; i++) {
                int64_t lo, hi;
                conf_ref_window(d, i, s.sq, s.sk, &lo, &hi);
                for (int64_t j = lo; j <= hi; j++) key_seen[s.k_row0 + j] = 1;
            }
        if (s.sq == 0 || s.sk == 0) continue; /* all of this sequence's gradients are 0 */
        for (int64_t hk = 0; hk < hkv; hk++) {
            if (want_mag) {
                for (int64_t j = 0; j < s.sk; j++) rowA[s.sq + j] = 0.0, colPd[j] = 0.0;
            }
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                t.d = d, t.a = a, t.dout = dout, t.mode = mode, t.b = b, t.h = h, t.hk = hk, t.seq = s;
                t.dqk = dqk, t.dv = dvd;
                t.scale = d->softmax_scale != 0.0f ? (double)d->softmax_scale : 1.0 / sqrt((double)dqk);
                t.cap = d->softcap > 0.0f ? (double)d->softcap : 0.0;
                t.keep_scale = 1.0 / (1.0 - (double)d->dropout_p);
                t.slope = 0.0;
                if (d->alibi == FA_ALIBI_PER_HEAD)
                    t.slope = ((const float *)a->alibi_slopes.data)[h * a->alibi_slopes.stride[0]];
                else if (d->alibi == FA_ALIBI_PER_BATCH_HEAD)
                    t.slope = ((const float *)a->alibi_slopes.data)[b * a->alibi_slopes.stride[0] +
                                                                     h * a->alibi_slopes.stride[1]];
                t.rowA = rowA, t.colA = colA, t.colPd = colPd;
                gather(&t);
                if (want_mag) {
                    double mq = max_abs(t.q, s.sq * dqk), mk = max_abs(t.k, s.sk * dqk), mo = max_abs(t.dO, s.sq * dvd);
                    if (mq > max_q) max_q = mq;
                    if (mk > max_k) max_k = mk;
                    if (mo > max_do) max_do = mo;
                }
                /* phase 1: rows (P, dS, dq) */
                CONF_OMP_FOR
                for (int64_t i = 0; i < s.sq; i++) {
                    int th = 0;
#ifdef _OPENMP
                    th = omp_get_thread_num() % threads;
#endif
                    double *sc = scratch + (size_t)th * (size_t)(2 * max_sk + dvd);
                    double *out = dq + ((s.q_row0 + i) * hq + h) * dqk;
                    if (mode == CONF_REF_F64) row_f64(&t, i, out, sc);
                    else row_naive(&t, i, out, sc);
                }
                if (want_mag)
                    for (int64_t i = 0; i < s.sq; i++)
                        if (rowA[i] * t.scale * max_k > mag_dq) mag_dq = rowA[i] * t.scale * max_k;
                /* phase 2: columns (this head's dk, dv added to its kv head's) */
                CONF_OMP_FOR
                for (int64_t j = 0; j < s.sk; j++)
                    col(&t, j, dk + ((s.k_row0 + j) * hkv + hk) * dqk, dv + ((s.k_row0 + j) * hkv + hk) * dvd);
                if (want_mag) memset(colA, 0, sizeof(double) * mat);
            }
            if (want_mag)
                for (int64_t j = 0; j < s.sk; j++) {
                    if (rowA[s.sq + j] * t.scale * max_q > mag_dk) mag_dk = rowA[s.sq + j] * t.scale * max_q;
                    if (colPd[j] * max_do > mag_dv) mag_dv = colPd[j] * max_do;
                }
        }
    }
    if (ok && mode == CONF_REF_NAIVE) { /* the group sum, rounded once (no-op when a kv head has one query head) */
        for (int64_t n = 0; n < krows * hkv * dqk; n++) dk[n] = conf_round_to(d->dtype, dk[n]);
        for (int64_t n = 0; n < krows * hkv * dvd; n++) dv[n] = conf_round_to(d->dtype, dv[n]);
    }
    if (want_mag) mag[0] = mag_dq, mag[1] = mag_dk, mag[2] = mag_dv;
    free(t.q);
    free(t.dO);
    free(t.k);
    free(t.v);
    free(t.P);
    free(t.Pd);
    free(t.dS);
    free(scratch);
    free(rowA);
    free(colA);
    free(colPd);
    return ok ? 0 : -1;
}
