/* Naive float64 and naive same-precision forward attention (see conf_reference.h for the contract). */
#include "conf_reference.h"

#include <math.h>
#include <stdlib.h>

#include "conf_dtype.h"

/* The reference dominates the suite's run time: spread its (batch, head) loop over the cores when OpenMP is
 * available. The pragma sits in a macro so that builds without -fopenmp see no unknown pragma. */
#ifdef _OPENMP
#define CONF_OMP_PARALLEL_FOR _Pragma("omp parallel for schedule(dynamic, 1)")
#else
#define CONF_OMP_PARALLEL_FOR
#endif

conf_seq conf_ref_seq(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b) {
    conf_seq s;
    if (d->varlen) {
        s.q_row0 = a->cu_seqlens_q[b];
        s.sq = (int64_t)a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
    } else {
        s.q_row0 = b * d->seqlen_q;
        s.sq = d->seqlen_q;
    }
    if (d->kv_cache_lengths)
        s.sk = a->seqused_k[b];
    else if (d->varlen)
        s.sk = (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
    else
        s.sk = d->seqlen_k;
    return s;
}

int64_t conf_ref_rows(const fa_attn_desc *d, const fa_fwd_args *a) {
    return d->varlen ? (int64_t)a->cu_seqlens_q[d->batch] : d->batch * d->seqlen_q;
}

void conf_ref_window(const fa_attn_desc *d, int64_t i, int64_t sq, int64_t sk, int64_t *lo, int64_t *hi) {
    /* Bottom-right alignment: query i sits on the diagonal at key i + sk - sq. causal is window_right = 0. */
    int64_t diag = i + sk - sq;
    int64_t wl = d->window_left, wr = d->causal ? 0 : d->window_right;
    *lo = wl >= 0 ? diag - wl : 0;
    *hi = wr >= 0 ? diag + wr : sk - 1;
    if (*lo < 0) *lo = 0;
    if (*hi > sk - 1) *hi = sk - 1;
}

int64_t conf_ref_q_offset(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *t, int64_t b,
                          int64_t i, int64_t h, int64_t e) {
    if (d->varlen) return ((int64_t)a->cu_seqlens_q[b] + i) * t->stride[0] + h * t->stride[1] + e * t->stride[2];
    return b * t->stride[0] + i * t->stride[1] + h * t->stride[2] + e * t->stride[3];
}

int64_t conf_ref_kv_offset(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *t, int64_t b,
                           int64_t j, int64_t h, int64_t e) {
    if (d->paged_kv) {
        /* Key j of sequence b: page block_table[b][j / page_size], slot j % page_size. */
        int64_t bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
        int64_t page = a->block_table[b * bt_stride + j / d->page_size];
        return page * t->stride[0] + (j % d->page_size) * t->stride[1] + h * t->stride[2] + e * t->stride[3];
    }
    if (d->varlen) return ((int64_t)a->cu_seqlens_k[b] + j) * t->stride[0] + h * t->stride[1] + e * t->stride[2];
    return b * t->stride[0] + j * t->stride[1] + h * t->stride[2] + e * t->stride[3];
}

int64_t conf_ref_lse_offset(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t i, int64_t h) {
    const fa_tensor *t = &a->lse;
    if (d->varlen) return h * t->stride[0] + ((int64_t)a->cu_seqlens_q[b] + i) * t->stride[1]; /* (hq, total_q) */
    return b * t->stride[0] + h * t->stride[1] + i * t->stride[2];                              /* (b, hq, sq) */
}

static double alibi_slope(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t h) {
    const fa_tensor *t = &a->alibi_slopes;
    const float *s = (const float *)t->data;
    if (d->alibi == FA_ALIBI_PER_HEAD) return s[h * t->stride[0]];
    if (d->alibi == FA_ALIBI_PER_BATCH_HEAD) return s[b * t->stride[0] + h * t->stride[1]];
    return 0.0;
}

/* Everything one (sequence, query head) task needs, inputs gathered dense (exact in both double and float:
 * the inputs are fp32/fp16/bf16 values). */
typedef struct task {
    const fa_attn_desc *d;
    const fa_fwd_args *a;
    int64_t b, h, hk;
    conf_seq seq;
    double scale, slope;
    double *q, *k, *v; /* sq x dqk, sk x dqk, sk x dv */
    double *s;         /* one row of scores, sk */
} task;

static int gather(task *t) {
    const fa_attn_desc *d = t->d;
    const fa_fwd_args *a = t->a;
    int64_t sq = t->seq.sq, sk = t->seq.sk, dqk = d->head_dim_qk, dv = d->head_dim_v;
    t->q = malloc(sizeof(double) * (size_t)(sq * dqk + 1));
    t->k = malloc(sizeof(double) * (size_t)(sk * dqk + 1));
    t->v = malloc(sizeof(double) * (size_t)(sk * dv + 1));
    t->s = malloc(sizeof(double) * (size_t)(sk + 1));
    if (!t->q || !t->k || !t->v || !t->s) return -1;
    for (int64_t i = 0; i < sq; i++)
        for (int64_t e = 0; e < dqk; e++)
            t->q[i * dqk + e] = conf_load(d->dtype, a->q.data, conf_ref_q_offset(d, a, &a->q, t->b, i, t->h, e));
    for (int64_t j = 0; j < sk; j++) {
        for (int64_t e = 0; e < dqk; e++)
            t->k[j * dqk + e] = conf_load(d->dtype, a->k.data, conf_ref_kv_offset(d, a, &a->k, t->b, j, t->hk, e));
        for (int64_t e = 0; e < dv; e++)
            t->v[j * dv + e] = conf_load(d->dtype, a->v.data, conf_ref_kv_offset(d, a, &a->v, t->b, j, t->hk, e));
    }
    return 0;
}

static double dropout_factor(const task *t, int64_t i, int64_t j) {
    const fa_attn_desc *d = t->d;
    if (d->dropout_p <= 0.0f) return 1.0;
    /* Row and column are positions inside the sequence; the head is the query head. */
    if (!fa_dropout_keep(t->a->dropout_seed, t->a->dropout_offset, t->b, t->h, i, j, d->dropout_p)) return 0.0;
    return 1.0 / (1.0 - (double)d->dropout_p);
}

/* Exact row: s, softmax, dropout, PV, all in double. */
static void row_f64(const task *t, int64_t i, int64_t lo, int64_t hi, double *o, double *lse) {
    const fa_attn_desc *d = t->d;
    int64_t dqk = d->head_dim_qk, dv = d->head_dim_v, diag = i + t->seq.sk - t->seq.sq;
    double m = -INFINITY;
    for (int64_t j = lo; j <= hi; j++) {
        double acc = 0.0;
        for (int64_t e = 0; e < dqk; e++) acc += t->q[i * dqk + e] * t->k[j * dqk + e];
        double s = acc * t->scale;
        if (d->softcap > 0.0f) s = (double)d->softcap * tanh(s / (double)d->softcap);
        s -= t->slope * fabs((double)(diag - j));
        t->s[j] = s;
        if (s > m) m = s;
    }
    double sum = 0.0;
    for (int64_t j = lo; j <= hi; j++) {
        t->s[j] = exp(t->s[j] - m);
        sum += t->s[j];
    }
    for (int64_t e = 0; e < dv; e++) o[e] = 0.0;
    for (int64_t j = lo; j <= hi; j++) {
        double p = t->s[j] / sum * dropout_factor(t, i, j);
        if (p == 0.0) continue;
        for (int64_t e = 0; e < dv; e++) o[e] += p * t->v[j * dv + e];
    }
    *lse = m + log(sum);
}

/* Naive framework row in the input dtype (see CONF_REF_NAIVE). float arithmetic on purpose. */
static void row_naive(const task *t, int64_t i, int64_t lo, int64_t hi, double *o, double *lse) {
    const fa_attn_desc *d = t->d;
    fa_dtype dt = d->dtype;
    int64_t dqk = d->head_dim_qk, dv = d->head_dim_v, diag = i + t->seq.sk - t->seq.sq;
    float scale = (float)t->scale, cap = d->softcap, slope = (float)t->slope, m = -INFINITY;
    for (int64_t j = lo; j <= hi; j++) {
        float acc = 0.0f;
        for (int64_t e = 0; e < dqk; e++) acc += (float)t->q[i * dqk + e] * (float)t->k[j * dqk + e];
        float s = (float)conf_round_to(dt, acc) * scale;
        if (cap > 0.0f) s = cap * tanhf(s / cap);
        s -= slope * (float)fabs((double)(diag - j));
        t->s[j] = s;
        if (s > m) m = s;
    }
    float sum = 0.0f;
    for (int64_t j = lo; j <= hi; j++) {
        float p = expf((float)t->s[j] - m);
        t->s[j] = p;
        sum += p;
    }
    float acc[1024]; /* head_dim_v is at most 256 in the suite; guarded by the caller */
    for (int64_t e = 0; e < dv; e++) acc[e] = 0.0f;
    for (int64_t j = lo; j <= hi; j++) {
        float p = (float)t->s[j] / sum;
        if (d->dropout_p > 0.0f) p = p * (float)dropout_factor(t, i, j);
        p = (float)conf_round_to(dt, p);
        for (int64_t e = 0; e < dv; e++) acc[e] += p * (float)t->v[j * dv + e];
    }
    for (int64_t e = 0; e < dv; e++) o[e] = conf_round_to(dt, acc[e]);
    *lse = m + logf(sum);
}

static int run_task(const fa_attn_desc *d, const fa_fwd_args *a, conf_ref_mode mode, int64_t b, int64_t h,
                    double *out, double *lse) {
    task t = {0};
    t.d = d;
    t.a = a;
    t.b = b;
    t.h = h;
    t.hk = h / (d->heads_q / d->heads_kv); /* GQA: query head h reads kv head h / group */
    t.seq = conf_ref_seq(d, a, b);
    t.scale = d->softmax_scale != 0.0f ? (double)d->softmax_scale : 1.0 / sqrt((double)d->head_dim_qk);
    t.slope = alibi_slope(d, a, b, h);
    int rc = gather(&t);
    for (int64_t i = 0; rc == 0 && i < t.seq.sq; i++) {
        int64_t r = t.seq.q_row0 + i, lo, hi;
        double *o = out + (r * d->heads_q + h) * d->head_dim_v, l = -INFINITY;
        conf_ref_window(d, i, t.seq.sq, t.seq.sk, &lo, &hi);
        if (lo > hi) { /* sees no key */
            for (int64_t e = 0; e < d->head_dim_v; e++) o[e] = 0.0;
        } else if (mode == CONF_REF_F64) {
            row_f64(&t, i, lo, hi, o, &l);
        } else {
            row_naive(&t, i, lo, hi, o, &l);
        }
        if (lse) lse[r * d->heads_q + h] = l;
    }
    free(t.q);
    free(t.k);
    free(t.v);
    free(t.s);
    return rc;
}

int conf_reference_fwd(const fa_attn_desc *d, const fa_fwd_args *a, conf_ref_mode mode, double *out,
                       double *lse) {
    if (d->head_dim_v > 1024 || d->heads_kv <= 0 || d->heads_q % d->heads_kv) return -1;
    int64_t ntasks = d->batch * d->heads_q;
    int failed = 0;
    CONF_OMP_PARALLEL_FOR
    for (int64_t n = 0; n < ntasks; n++) {
        if (run_task(d, a, mode, n / d->heads_q, n % d->heads_q, out, lse) != 0) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
    }
    return failed ? -1 : 0;
}
