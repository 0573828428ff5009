/*
 * CPU FlashAttention forward. Work item = (batch, query head, block of block_q query rows, KV split).
 * Each item streams its visible KV range in block_kv tiles: S = Q K^T (register-blocked SIMD GEMM over a
 * transposed K tile), softcap / ALiBi / mask, online softmax (running max m and sum l per row, rescaling the
 * accumulator when m grows), dropout on P, O += P V. Nothing larger than one tile of scores ever exists.
 * Splits write normalised partial outputs and LSEs to the workspace and are merged by the combine step.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.h"
#include "cpu_convert.h"
#include "cpu_rotary.h"
#include "cpu_tile.h"
#include "fa_philox.h"
#include "simd/cpu_simd.h"

typedef struct fwd_ctx {
    const fa_plan_info *p;
    int gqa_packed;            /* rows of a tile are the query heads sharing one KV head (decode) */
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
    int64_t *row_head, *row_pos;
    float *row_slope;
    cpu_rows rows;
} scratch;

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

static int64_t scratch_floats(const fwd_ctx *c)
{
    return round16(c->bq * c->dqk) + round16(c->dqk * c->bkv) + round16(c->bkv * c->dvp) + round16(c->bq * c->bkv) +
           round16(c->bq * c->dvp) + 7 * round16(c->bq) + round16(c->dvp) + round16(c->dqk);
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
    w.row_head = (int64_t *)(w.l + round16(c->bq));
    w.row_pos = w.row_head + round16(c->bq);
    w.row_slope = (float *)(w.row_pos + round16(c->bq));
    w.rows.head = w.row_head;
    w.rows.pos = w.row_pos;
    w.rows.slope = w.row_slope;
    return w;
}

/* Q rows, scaled (and rotated to their positions when rotary is on; rounded to the dtype as flash_attn does). */
static void load_q(const fwd_ctx *c, scratch *w, int64_t b)
{
    const fa_plan_info *p = c->p;
    for (int64_t r = 0; r < w->rows.n; r++) {
        float *x = w->q + r * c->dqk;
        int64_t h = w->row_head[r], i = w->row_pos[r];
        if (p->desc.rotary_dim == 0) {
            cpu_pack_q_rows(&c->lay, &c->a->q, b, h, i, 1, c->dqk, p->scale, x, c->dqk);
            continue;
        }
        cpu_pack_q_rows(&c->lay, &c->a->q, b, h, i, 1, c->dqk, 1.0f, x, c->dqk);
        cpu_rotary_row(&p->desc, &c->a->rotary_cos, &c->a->rotary_sin, cpu_rotary_q_position(p, &c->lay, b, i), x);
        for (int64_t d = 0; d < c->dqk; d++) x[d] = fa_round_to_dtype(x[d], p->desc.dtype) * p->scale;
    }
}

/* Online softmax update for one tile, then O = alpha * O + dropout(P) V. */
static void softmax_and_accumulate(const fwd_ctx *c, scratch *w, int64_t nc, int64_t b, int64_t j0)
{
    const int64_t rows = w->rows.n;
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
        if (alpha != 1.0f) c->simd->scale(w->o + r * c->dvp, c->dvp, alpha);
    }
    if (c->p->desc.dropout_p > 0.0f)
        cpu_dropout_apply(w->s, c->bkv, &w->rows, nc, c->a->dropout_seed, c->a->dropout_offset, c->drop_threshold, b,
                          j0, 1.0f);
    c->simd->gemm(rows, c->dvp, nc, w->s, c->bkv, w->v, c->dvp, w->o, c->dvp);
}

/* Writes the rows of one item: straight to out/lse, or to the split partials. */
static void finish(const fwd_ctx *c, scratch *w, int64_t b, int split)
{
    const fa_fwd_args *a = c->a;
    const fa_attn_desc *d = &c->p->desc;
    for (int64_t r = 0; r < w->rows.n; r++) {
        int64_t i = w->row_pos[r], h = w->row_head[r];
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
            cpu_store_q_rows(&c->lay, &a->out, b, h, i, 1, c->dv, mul, orow, c->dvp);
            if (d->return_lse) ((float *)a->lse.data)[cpu_lse_offset(&c->lay, &a->lse, b, h, i)] = lse;
        }
    }
}

/*
 * The rows of work item `item` and the query positions [*i0, *i0 + *npos) they span. Unpacked: block qb of one
 * head. GQA-packed: every query row of every head sharing KV head hk (group x seqlen_q <= block_q).
 */
static int64_t item_rows(const fwd_ctx *c, scratch *w, int64_t item, int *split, int64_t *i0, int64_t *npos)
{
    const fa_attn_desc *d = &c->p->desc;
    *split = (int)(item % c->splits);
    int64_t t = item / c->splits, b;
    if (c->gqa_packed) {
        int64_t hk = t % d->heads_kv;
        b = t / d->heads_kv;
        int64_t sq = cpu_seqlen_q(&c->lay, b);
        w->rows.n = c->group * sq;
        for (int64_t g = 0; g < c->group; g++)
            for (int64_t i = 0; i < sq; i++) {
                w->row_head[g * sq + i] = hk * c->group + g;
                w->row_pos[g * sq + i] = i;
            }
        *i0 = 0;
        *npos = sq;
    } else {
        int64_t qb = t % c->nqb;
        t /= c->nqb;
        int64_t h = t % c->hq;
        b = t / c->hq;
        int64_t sq = cpu_seqlen_q(&c->lay, b);
        *i0 = qb * c->bq;
        w->rows.n = *i0 >= sq ? 0 : sq - *i0 < c->bq ? sq - *i0 : c->bq;
        for (int64_t r = 0; r < w->rows.n; r++) {
            w->row_head[r] = h;
            w->row_pos[r] = *i0 + r;
        }
        *npos = w->rows.n;
    }
    for (int64_t r = 0; r < w->rows.n; r++)
        w->row_slope[r] = cpu_alibi_slope(d, &c->a->alibi_slopes, b, w->row_head[r]);
    return b;
}

static void run_item(const fwd_ctx *c, scratch *w, int64_t item)
{
    const fa_plan_info *p = c->p;
    int split;
    int64_t i0, npos;
    int64_t b = item_rows(c, w, item, &split, &i0, &npos);
    if (w->rows.n == 0) return;
    int64_t hk = w->row_head[0] / c->group;
    int64_t sq = cpu_seqlen_q(&c->lay, b), sk = cpu_seqlen_k(&c->lay, b);
    cpu_mask m = cpu_mask_for(p, sq, sk);

    /* Keys any row of this item can see, divided among the splits; whole tiles outside are never touched. */
    int64_t lo, hi;
    cpu_visible_keys(&m, sk, i0, npos, &lo, &hi);
    int64_t ntiles = (hi - lo + c->bkv - 1) / c->bkv;
    int64_t per_split = (ntiles + c->splits - 1) / c->splits;
    int64_t jlo = lo + split * per_split * c->bkv;
    int64_t jhi = lo + (split + 1) * per_split * c->bkv;
    if (jhi > hi) jhi = hi;

    const int64_t rows = w->rows.n;
    load_q(c, w, b);
    for (int64_t r = 0; r < rows; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
    }
    memset(w->o, 0, sizeof(float) * (size_t)(rows * c->dvp));

    for (int64_t j0 = jlo; j0 < jhi; j0 += c->bkv) {
        int64_t nc = jhi - j0 < c->bkv ? jhi - j0 : c->bkv;
        cpu_pack_kv_cols(&c->lay, &c->a->k, b, hk, j0, nc, c->dqk, w->kt, c->bkv);
        cpu_pack_kv_rows(&c->lay, &c->a->v, b, hk, j0, nc, c->dv, w->v, c->dvp);
        memset(w->s, 0, sizeof(float) * (size_t)(rows * c->bkv));
        c->simd->gemm(rows, c->bkv, c->dqk, w->q, c->dqk, w->kt, c->bkv, w->s, c->bkv);
        cpu_scores_epilogue(&m, w->s, c->bkv, &w->rows, nc, j0, cpu_tile_needs_mask(&m, i0, npos, j0, nc), NULL);
        softmax_and_accumulate(c, w, nc, b, j0);
    }
    finish(c, w, b, split);
}

static void combine_splits(const fwd_ctx *c, float *pool, int64_t per_thread)
{
    const fa_attn_desc *d = &c->p->desc;
    const fa_fwd_args *a = c->a;
    int64_t rows = d->batch * d->seqlen_q * c->hq;
    int64_t out_split = d->batch * d->seqlen_q * c->hq * c->dv, lse_split = d->batch * c->hq * d->seqlen_q;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
#ifdef _OPENMP
        float *acc = pool + omp_get_thread_num() * per_thread;
#else
        float *acc = pool;
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
    c.simd = p->backend_state;
    c.lay = cpu_layout_for(d, a->cu_seqlens_q, a->cu_seqlens_k, a->seqused_k, a->block_table, a->block_table_stride);
    c.bq = p->fwd_config.block_q;
    c.bkv = p->fwd_config.block_kv;
    c.splits = p->fwd_config.num_splits;
    c.dqk = d->head_dim_qk;
    c.dv = d->head_dim_v;
    c.dvp = cpu_pad(d->head_dim_v);
    c.hq = d->heads_q;
    c.group = d->heads_q / d->heads_kv;
    c.nqb = (d->seqlen_q + c.bq - 1) / c.bq;
    c.gqa_packed = p->fwd_family->id == CPU_KERNEL_FWD_GQA_PACKED;
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

    if (d->seqlen_new > 0) cpu_append_kv(p, &c.lay, a, pool, per_thread);

    int64_t items = c.gqa_packed ? d->batch * d->heads_kv * c.splits : d->batch * c.hq * c.nqb * c.splits;
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
    if (c.splits > 1) combine_splits(&c, pool, per_thread);
    free(pool);
    return FA_OK;
}
