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
    int dense_varlen_k = d->varlen && !d->paged_kv && a->cu_seqlens_k;
    s.kcap = dense_varlen_k ? (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b] : d->seqlen_k;
    s.k_row0 = dense_varlen_k ? (int64_t)a->cu_seqlens_k[b] : b * d->seqlen_k;
    if (d->kv_cache_lengths)
        s.cached = a->seqused_k[b];
    else if (d->varlen)
        s.cached = (int64_t)a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
    else
        s.cached = d->seqlen_k;
    s.sk = s.cached + (d->seqlen_new > 0 ? d->seqlen_new : 0);
    return s;
}

int64_t conf_ref_rows(const fa_attn_desc *d, const fa_fwd_args *a) {
    return d->varlen ? (int64_t)a->cu_seqlens_q[d->batch] : d->batch * d->seqlen_q;
}

int64_t conf_ref_key_rows(const fa_attn_desc *d, const fa_fwd_args *a) {
    return d->varlen ? (int64_t)a->cu_seqlens_k[d->batch] : d->batch * d->seqlen_k;
}

int64_t conf_ref_rotary_q_pos(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t i) {
    /* flash_attn_with_kvcache: queries move along with the keys only when causal or local */
    int moving = d->causal || d->window_left >= 0 || d->window_right >= 0;
    return (int64_t)a->seqused_k[b] + (moving ? i : 0);
}

int64_t conf_ref_rotary_k_pos(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t t) {
    (void)d;
    return (int64_t)a->seqused_k[b] + t;
}

void conf_ref_rotate(const fa_attn_desc *d, const fa_fwd_args *a, int64_t pos, double *x, double *mag) {
    int64_t half = d->rotary_dim / 2;
    const float *cs = (const float *)a->rotary_cos.data, *sn = (const float *)a->rotary_sin.data;
    const int64_t *sc = a->rotary_cos.stride, *ss = a->rotary_sin.stride;
    for (int64_t i = 0; i < half; i++) {
        double c = cs[pos * sc[0] + i * sc[1]], s = sn[pos * ss[0] + i * ss[1]];
        /* interleaved (GPT-J): pairs (2i, 2i + 1); halves (GPT-NeoX): pairs (i, i + rotary_dim / 2) */
        int64_t i1 = d->rotary_interleaved ? 2 * i : i, i2 = d->rotary_interleaved ? 2 * i + 1 : i + half;
        double x1 = x[i1], x2 = x[i2];
        x[i1] = x1 * c - x2 * s;
        x[i2] = x1 * s + x2 * c;
        if (mag) {
            mag[i1] = fabs(x1 * c) + fabs(x2 * s);
            mag[i2] = fabs(x1 * s) + fabs(x2 * c);
        }
    }
}

void conf_ref_appended_row(const fa_attn_desc *d, const fa_fwd_args *a, int is_v, int64_t b, int64_t t, int64_t h,
                           double *row, double *mag) {
    const fa_tensor *n = is_v ? &a->v_new : &a->k_new;
    int64_t dim = is_v ? d->head_dim_v : d->head_dim_qk;
    for (int64_t e = 0; e < dim; e++) {
        row[e] = conf_load(d->dtype, n->data, b * n->stride[0] + t * n->stride[1] + h * n->stride[2] + e * n->stride[3]);
        if (mag) mag[e] = 0.0;
    }
    if (is_v || d->rotary_dim <= 0) return;
    conf_ref_rotate(d, a, conf_ref_rotary_k_pos(d, a, b, t), row, mag);
    for (int64_t e = 0; e < dim; e++) row[e] = conf_round_to(d->dtype, row[e]); /* the cache holds the dtype */
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
    conf_ref_mode mode;
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
    t->s = malloc(sizeof(double) * (size_t)(2 * sk + 1));
    if (!t->q || !t->k || !t->v || !t->s) return -1;
    for (int64_t i = 0; i < sq; i++) {
        double *qi = t->q + i * dqk;
        for (int64_t e = 0; e < dqk; e++)
            qi[e] = conf_load(d->dtype, a->q.data, conf_ref_q_offset(d, a, &a->q, t->b, i, t->h, e));
        if (d->rotary_dim > 0) {
            conf_ref_rotate(d, a, conf_ref_rotary_q_pos(d, a, t->b, i), qi, NULL);
            if (t->mode == CONF_REF_NAIVE) /* a framework materialises the rotated q in the dtype */
                for (int64_t e = 0; e < dqk; e++) qi[e] = conf_round_to(d->dtype, qi[e]);
        }
    }
    for (int64_t j = 0; j < t->seq.cached; j++) {
        for (int64_t e = 0; e < dqk; e++)
            t->k[j * dqk + e] = conf_load(d->dtype, a->k.data, conf_ref_kv_offset(d, a, &a->k, t->b, j, t->hk, e));
        for (int64_t e = 0; e < dv; e++)
            t->v[j * dv + e] = conf_load(d->dtype, a->v.data, conf_ref_kv_offset(d, a, &a->v, t->b, j, t->hk, e));
    }
    for (int64_t j = t->seq.cached; j < sk; j++) { /* appended rows: written into the cache, then attended */
        conf_ref_appended_row(d, a, 0, t->b, j - t->seq.cached, t->hk, t->k + j * dqk, NULL);
        conf_ref_appended_row(d, a, 1, t->b, j - t->seq.cached, t->hk, t->v + j * dv, NULL);
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

/* Exact row: s, softmax, dropout, PV, all in double; *mag as conf_reference_fwd's lse_mag. */
static void row_f64(const task *t, int64_t i, int64_t lo, int64_t hi, double *o, double *lse, double *mag) {
    const fa_attn_desc *d = t->d;
    int64_t dqk = d->head_dim_qk, dv = d->head_dim_v, diag = i + t->seq.sk - t->seq.sq;
    double m = -INFINITY, *tmag = t->s + t->seq.sk; /* second row of scratch: per key term size */
    for (int64_t j = lo; j <= hi; j++) {
        double acc = 0.0, abs_acc = 0.0;
        for (int64_t e = 0; e < dqk; e++) {
            acc += t->q[i * dqk + e] * t->k[j * dqk + e];
            abs_acc += fabs(t->q[i * dqk + e] * t->k[j * dqk + e]);
        }
        tmag[j] = abs_acc * t->scale + t->slope * fabs((double)(diag - j));
        double s = acc * t->scale;
        if (d->softcap > 0.0f) s = (double)d->softcap * tanh(s / (double)d->softcap);
        s -= t->slope * fabs((double)(diag - j));
        t->s[j] = s;
        if (s > m) m = s;
    }
    double sum = 0.0, msum = 0.0;
    for (int64_t j = lo; j <= hi; j++) {
        t->s[j] = exp(t->s[j] - m);
        sum += t->s[j];
        msum += t->s[j] * tmag[j];
    }
    *mag = msum / sum;
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
                    double *out, double *lse, double *lse_mag) {
    task t = {0};
    t.d = d;
    t.a = a;
    t.mode = mode;
    t.b = b;
    t.h = h;
    t.hk = h / (d->heads_q / d->heads_kv); /* GQA: query head h reads kv head h / group */
    t.seq = conf_ref_seq(d, a, b);
    t.scale = d->softmax_scale != 0.0f ? (double)d->softmax_scale : 1.0 / sqrt((double)d->head_dim_qk);
    t.slope = alibi_slope(d, a, b, h);
    int rc = gather(&t);
    for (int64_t i = 0; rc == 0 && i < t.seq.sq; i++) {
        int64_t r = t.seq.q_row0 + i, lo, hi;
        double *o = out + (r * d->heads_q + h) * d->head_dim_v, l = -INFINITY, mag = 0.0;
        conf_ref_window(d, i, t.seq.sq, t.seq.sk, &lo, &hi);
        if (lo > hi) { /* sees no key */
            for (int64_t e = 0; e < d->head_dim_v; e++) o[e] = 0.0;
        } else if (mode == CONF_REF_F64) {
            row_f64(&t, i, lo, hi, o, &l, &mag);
        } else {
            row_naive(&t, i, lo, hi, o, &l);
        }
        if (lse) lse[r * d->heads_q + h] = l;
        if (lse_mag) lse_mag[r * d->heads_q + h] = mag;
    }
    free(t.q);
    free(t.k);
    free(t.v);
    free(t.s);
    return rc;
}

int conf_reference_fwd(const fa_attn_desc *d, const fa_fwd_args *a, conf_ref_mode mode, double *out, double *lse,
                       double *lse_mag) {
    if (d->head_dim_v > 1024 || d->heads_kv <= 0 || d->heads_q % d->heads_kv) return -1;
    int64_t ntasks = d->batch * d->heads_q;
    int failed = 0;
    CONF_OMP_PARALLEL_FOR
    for (int64_t n = 0; n < ntasks; n++) {
        if (run_task(d, a, mode, n / d->heads_q, n % d->heads_q, out, lse, mode == CONF_REF_F64 ? lse_mag : NULL) != 0) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
    }
    return failed ? -1 : 0;
}
