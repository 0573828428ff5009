/*
 * CPU FlashAttention forward. Work item = (batch, query head, block of block_q query rows, KV split).
 * Each item streams its visible KV range in block_kv tiles: S = Q K^T, softcap / ALiBi / masks, online
 * softmax (running max m and sum l per row, rescaling the accumulator when m grows), dropout on P, O += P V.
 * Nothing larger than one tile of scores exists at any time. Splits write normalised partial outputs and
 * LSEs to the workspace and are merged by the combine step.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.h"
#include "cpu_convert.h"
#include "cpu_layout.h"
#include "fa_philox.h"
#include "simd/cpu_simd.h"

typedef struct fwd_ctx {
    const fa_plan_info *p;
    const fa_fwd_args *a;
    const cpu_simd *simd;
    cpu_layout lay;
    int64_t bq, bkv, dqk, dv, dvp, hq, group, nqb; /* dvp: dv padded for the SIMD kernels */
    int splits;
    float keep_scale;          /* 1 / (1 - dropout_p) */
    uint32_t drop_threshold;
    float *part_out, *part_lse; /* split partials in the workspace */
} fwd_ctx;

typedef struct scratch {
    float *q, *kt, *v, *s, *o, *m, *l;
} scratch;

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

static int64_t scratch_floats(const fwd_ctx *c)
{
    return round16(c->bq * c->dqk) + round16(c->dqk * c->bkv) + round16(c->bkv * c->dvp) + round16(c->bq * c->bkv) +
           round16(c->bq * c->dvp) + 2 * round16(c->bq) + round16(c->dvp);
}

static scratch carve(const fwd_ctx *c, float *base)
{
    scratch w;
    w.q = base;
    w.kt = w.q + round16(c->bq * c->dqk);
    w.v = w.kt + round16(c->dqk * c->bkv);
    w.s = w.v + round16(c->bkv * c->dvp);
    w.o = w.s + round16(c->bq * c->bkv);
    w.m = w.o + round16(c->bq * c->dvp);
    w.l = w.m + round16(c->bq);
    /* V's padding columns are never loaded into: zero them once so P V keeps the padding of O finite. */
    memset(w.v, 0, sizeof(float) * (size_t)(c->bkv * c->dvp));
    return w;
}

/*
 * K tile transposed (kt[d][col]) so Q K^T is a plain row-major GEMM; V tile row-major with rows padded to dvp.
 * Keys past the end of a short tile are zero, so their scores are finite until the mask sets them to -inf.
 */
static void load_kv_tile(const fwd_ctx *c, scratch *w, int64_t b, int64_t hk, int64_t j0, int64_t nc)
{
    const fa_tensor *k = &c->a->k, *v = &c->a->v;
    for (int64_t col = 0; col < nc; col++) {
        const void *krow = cpu_elem_ptr(k, cpu_kv_offset(&c->lay, k, b, j0 + col, hk));
        float *kt = w->kt + col;
        if (k->dtype == FA_DTYPE_F32) {
            const float *kr = krow;
            for (int64_t d = 0; d < c->dqk; d++) kt[d * c->bkv] = kr[d];
        } else {
            for (int64_t d = 0; d < c->dqk; d++) kt[d * c->bkv] = fa_load_elem(krow, d, k->dtype);
        }
        const void *vrow = cpu_elem_ptr(v, cpu_kv_offset(&c->lay, v, b, j0 + col, hk));
        fa_load_row(vrow, v->dtype, c->dv, 1.0f, w->v + col * c->dvp);
    }
    if (nc < c->bkv)
        for (int64_t d = 0; d < c->dqk; d++) memset(w->kt + d * c->bkv + nc, 0, sizeof(float) * (size_t)(c->bkv - nc));
}

static void scores(const fwd_ctx *c, scratch *w, int64_t rows)
{
    memset(w->s, 0, sizeof(float) * (size_t)(rows * c->bkv));
    c->simd->gemm(rows, c->bkv, c->dqk, w->q, c->dqk, w->kt, c->bkv, w->s, c->bkv);
}

/* Softcap, ALiBi and the causal/window mask on one score tile; columns past the tile's keys become -inf. */
static void bias_and_mask(const fwd_ctx *c, scratch *w, int64_t rows, int64_t nc, int64_t i0, int64_t j0,
                          int64_t offset, float slope, int need_mask)
{
    const fa_plan_info *p = c->p;
    const float cap = p->desc.softcap;
    for (int64_t r = 0; r < rows; r++) {
        float *srow = w->s + r * c->bkv;
        int64_t diag = i0 + r + offset; /* key index aligned with this query row */
        if (cap > 0.0f)
            for (int64_t col = 0; col < nc; col++) srow[col] = cap * tanhf(srow[col] / cap);
        if (slope != 0.0f)
            for (int64_t col = 0; col < nc; col++) srow[col] -= slope * (float)llabs(diag - (j0 + col));
        for (int64_t col = nc; col < c->bkv; col++) srow[col] = -INFINITY;
        if (!need_mask) continue;
        for (int64_t col = 0; col < nc; col++) {
            int64_t j = j0 + col;
            if ((p->window_left >= 0 && j < diag - p->window_left) || (p->window_right >= 0 && j > diag + p->window_right))
                srow[col] = -INFINITY;
        }
    }
}

/* Online softmax update for one tile, then O = alpha * O + dropout(P) V. */
static void softmax_and_accumulate(const fwd_ctx *c, scratch *w, int64_t rows, int64_t nc, int64_t b, int64_t h,
                                   int64_t i0, int64_t j0)
{
    const int dropout = c->p->desc.dropout_p > 0.0f;
    for (int64_t r = 0; r < rows; r++) {
        float *srow = w->s + r * c->bkv;
        float m_new = fmaxf(w->m[r], c->simd->max(srow, c->bkv));
        if (m_new == -INFINITY) {
            /* every key so far masked: this tile adds nothing (its P row must be 0 for the GEMM) */
            memset(srow, 0, sizeof(float) * (size_t)c->bkv);
            continue;
        }
        float alpha = expf(w->m[r] - m_new);
        float sum = c->simd->exp_sum(srow, c->bkv, m_new);
        w->l[r] = w->l[r] * alpha + sum; /* LSE is that of the undropped softmax */
        w->m[r] = m_new;
        if (dropout) {
            uint64_t seed = c->a->dropout_seed, off = c->a->dropout_offset;
            fa_u32x4 draw = {0, 0, 0, 0};
            for (int64_t col = 0; col < nc; col++) {
                int64_t j = j0 + col;
                if (col == 0 || (j & 3) == 0)
                    draw = fa_dropout_draw4(seed, off, (uint32_t)b, (uint32_t)h, (uint32_t)(i0 + r), (uint32_t)(j >> 2));
                if (fa_u32x4_get(draw, (int)(j & 3)) < c->drop_threshold) srow[col] = 0.0f;
            }
        }
        if (alpha != 1.0f) c->simd->scale(w->o + r * c->dvp, c->dvp, alpha);
    }
    c->simd->gemm(rows, c->dvp, nc, w->s, c->bkv, w->v, c->dvp, w->o, c->dvp);
}

/* Writes rows of one item: straight to out/lse, or to the split partials. */
static void finish(const fwd_ctx *c, scratch *w, int64_t rows, int64_t b, int64_t h, int64_t i0, int split)
{
    const fa_fwd_args *a = c->a;
    const fa_attn_desc *d = &c->p->desc;
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = i0 + r;
        float *orow = w->o + r * c->dvp;
        int empty = w->l[r] == 0.0f;
        float lse = empty ? -INFINITY : w->m[r] + logf(w->l[r]);
        float mul = empty ? 0.0f : c->keep_scale / w->l[r];
        if (empty)
            for (int64_t x = 0; x < c->dv; x++) orow[x] = 0.0f;
        if (c->splits > 1) {
            int64_t row = (((int64_t)split * d->batch + b) * d->seqlen_q + i) * c->hq + h;
            float *dst = c->part_out + row * c->dv;
            for (int64_t x = 0; x < c->dv; x++) dst[x] = orow[x] * mul;
            c->part_lse[(((int64_t)split * d->batch + b) * c->hq + h) * d->seqlen_q + i] = lse;
        } else {
            char *dst = (char *)a->out.data + cpu_q_offset(&c->lay, &a->out, b, i, h) * fa_dtype_size(a->out.dtype);
            fa_store_row(dst, a->out.dtype, c->dv, mul, orow);
            if (d->return_lse) ((float *)a->lse.data)[cpu_lse_offset(&c->lay, &a->lse, b, h, i)] = lse;
        }
    }
}

static void run_item(const fwd_ctx *c, scratch *w, int64_t item)
{
    const fa_plan_info *p = c->p;
    int split = (int)(item % c->splits);
    int64_t t = item / c->splits;
    int64_t qb = t % c->nqb;
    t /= c->nqb;
    int64_t h = t % c->hq, b = t / c->hq, hk = h / c->group;
    int64_t sq = cpu_seqlen_q(&c->lay, b), sk = cpu_seqlen_k(&c->lay, b);
    int64_t i0 = qb * c->bq;
    if (i0 >= sq) return;
    int64_t rows = sq - i0 < c->bq ? sq - i0 : c->bq;
    int64_t offset = sk - sq; /* bottom-right alignment */

    /* Keys any row of this block can see; whole tiles outside are never touched. */
    int64_t lo = 0, hi = sk;
    if (p->window_left >= 0 && i0 + offset - p->window_left > lo) lo = i0 + offset - p->window_left;
    if (p->window_right >= 0 && i0 + rows - 1 + offset + p->window_right + 1 < hi)
        hi = i0 + rows - 1 + offset + p->window_right + 1;
    if (hi < lo) hi = lo;
    int64_t ntiles = (hi - lo + c->bkv - 1) / c->bkv;
    int64_t per_split = (ntiles + c->splits - 1) / c->splits;
    int64_t jlo = lo + split * per_split * c->bkv;
    int64_t jhi = lo + (split + 1) * per_split * c->bkv;
    if (jhi > hi) jhi = hi;

    const fa_tensor *q = &c->a->q;
    for (int64_t r = 0; r < rows; r++) {
        const void *qrow = cpu_elem_ptr(q, cpu_q_offset(&c->lay, q, b, i0 + r, h));
        fa_load_row(qrow, q->dtype, c->dqk, p->scale, w->q + r * c->dqk);
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
    }
    memset(w->o, 0, sizeof(float) * (size_t)(rows * c->dvp));
    float slope = cpu_alibi_slope(&p->desc, &c->a->alibi_slopes, b, h);

    for (int64_t j0 = jlo; j0 < jhi; j0 += c->bkv) {
        int64_t nc = jhi - j0 < c->bkv ? jhi - j0 : c->bkv;
        /* The mask is needed only where the tile crosses a window edge. */
        int need_mask = (p->window_left >= 0 && j0 < i0 + rows - 1 + offset - p->window_left) ||
                        (p->window_right >= 0 && j0 + nc - 1 > i0 + offset + p->window_right);
        load_kv_tile(c, w, b, hk, j0, nc);
        scores(c, w, rows);
        bias_and_mask(c, w, rows, nc, i0, j0, offset, slope, need_mask);
        softmax_and_accumulate(c, w, rows, nc, b, h, i0, j0);
    }
    finish(c, w, rows, b, h, i0, split);
}

static void combine_splits(const fwd_ctx *c, float *acc_all)
{
    const fa_attn_desc *d = &c->p->desc;
    const fa_fwd_args *a = c->a;
    int64_t rows = d->batch * d->seqlen_q * c->hq;
    int64_t out_split = d->batch * d->seqlen_q * c->hq * c->dv, lse_split = d->batch * c->hq * d->seqlen_q;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
#ifdef _OPENMP
        float *acc = acc_all + omp_get_thread_num() * round16(c->dvp);
#else
        float *acc = acc_all;
#endif
        int64_t b = r / (d->seqlen_q * c->hq), i = (r / c->hq) % d->seqlen_q, h = r % c->hq;
        if (i >= cpu_seqlen_q(&c->lay, b)) continue;
        char *dst = (char *)a->out.data + cpu_q_offset(&c->lay, &a->out, b, i, h) * fa_dtype_size(a->out.dtype);
        float *lse = d->return_lse ? (float *)a->lse.data + cpu_lse_offset(&c->lay, &a->lse, b, h, i) : NULL;
        cpu_combine_row(c->part_out + ((b * d->seqlen_q + i) * c->hq + h) * c->dv, out_split,
                        c->part_lse + (b * c->hq + h) * d->seqlen_q + i, lse_split, c->splits, c->dv, dst,
                        a->out.dtype, lse, acc);
    }
}

fa_status cpu_fwd(const fa_plan_info *p, const fa_fwd_args *a, void *workspace)
{
    const fa_attn_desc *d = &p->desc;
    fwd_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.a = a;
    c.lay.d = d;
    c.lay.cu_q = a->cu_seqlens_q;
    c.lay.cu_k = a->cu_seqlens_k;
    c.lay.seqused_k = a->seqused_k;
    c.lay.block_table = a->block_table;
    c.lay.bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
    c.bq = p->fwd_config.block_q;
    c.bkv = p->fwd_config.block_kv;
    c.splits = p->fwd_config.num_splits;
    c.dqk = d->head_dim_qk;
    c.dv = d->head_dim_v;
    c.dvp = cpu_pad(d->head_dim_v);
    c.simd = p->backend_state;
    c.hq = d->heads_q;
    c.group = d->heads_q / d->heads_kv;
    c.nqb = (d->seqlen_q + c.bq - 1) / c.bq;
    c.keep_scale = d->dropout_p > 0.0f ? 1.0f / (1.0f - d->dropout_p) : 1.0f;
    c.drop_threshold = fa_dropout_threshold(d->dropout_p);
    if (c.splits > 1) {
        c.part_out = workspace;
        c.part_lse = c.part_out + (int64_t)c.splits * d->batch * d->seqlen_q * c.hq * c.dv;
    }

#ifdef _OPENMP
    int threads = omp_get_max_threads();
#else
    int threads = 1;
#endif
    /* All scratch is taken before any output is touched, so running out of memory writes nothing. */
    int64_t per_thread = scratch_floats(&c);
    float *pool = aligned_alloc(64, sizeof(float) * (size_t)(per_thread * threads));
    if (!pool) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cpu forward: no memory for %d threads' tiles", threads);

    int64_t items = d->batch * c.hq * c.nqb * c.splits;
#pragma omp parallel
    {
#ifdef _OPENMP
        scratch w = carve(&c, pool + omp_get_thread_num() * per_thread);
#else
        scratch w = carve(&c, pool);
#endif
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) run_item(&c, &w, item);
    }
    if (c.splits > 1) combine_splits(&c, pool);
    free(pool);
    return FA_OK;
}
