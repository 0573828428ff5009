/*
 * CPU FlashAttention backward by recomputation: P is rebuilt tile by tile from Q, K and the forward's LSE;
 * nothing N x N is stored.
 *
 *   D_i  = rowsum(dO_i * O_i)                          (pass 0, which also packs scale Q and dO, below)
 *   P    = exp(S - LSE), P~ = dropout(P) / (1 - p)
 *   dV  += P~^T dO,  dP = dropout(dO V^T) / (1 - p),  dS = P * (dP - D) * softcap'(S)
 *   dK  += dS^T (scale Q)                              (pass 1: one work item per (batch, kv head, KV block))
 *   dQ  += scale * dS K                                (pass 2, or in pass 1 when not deterministic)
 *
 * With desc.deterministic, every output element is owned by exactly one work item and accumulated in a fixed
 * order (pass 2: one work item per (batch, query head, Q block) recomputes S and dP), so the gradients are
 * bit-identical run after run and for any thread count; the price is 7 tile GEMMs instead of 5. Without it
 * (flash_attn's default), pass 1 also adds each tile's dS K into an fp32 dQ accumulator in the workspace, one
 * lock per Q tile, as FlashAttention-2 does with atomic adds: 5 GEMMs, and the order of the adds may vary.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_convert.h"
#include "cpu_scratch.h"
#include "cpu_tile.h"
#include "fa_philox.h"
#include "simd/cpu_simd.h"

typedef struct bwd_ctx {
    const fa_plan_info *p;
    const fa_bwd_args *a;
    const cpu_simd *simd;
    cpu_layout lay;
    int64_t bq, bkv, dqk, dv, dqkp, dvp, hq, hk, group;
    float keep_scale;
    uint32_t drop_threshold;
    float *delta; /* D, (batch, heads_q, seqlen_q) */
    /*
     * scale * Q and dO as padded fp32 rows, (batch, heads_q, seqlen_q, dqkp / dvp), packed once in pass 0:
     * every KV block of pass 1 reads every Q tile, and repacking them per pair cost a fifth of the backward.
     */
    float *q_pack, *do_pack;
    float *dq_acc; /* not deterministic: fp32 dQ, (batch, heads_q, seqlen_q, dqkp); else NULL */
    atomic_flag *locks; /* guards dq_acc: Q tile t takes locks[t % BWD_LOCKS] */
} bwd_ctx;

enum { BWD_LOCKS = 64 };

/* Per-thread tiles. Row-major unless named ...t (transposed). */
typedef struct bwd_scratch {
    const float *q;   /* bq x dqkp: scale * Q (in q_pack) */
    const float *dout;/* bq x dvp (in do_pack) */
    float *kt;  /* dqk x bkv: K^T */
    float *vt;  /* dv x bkv: V^T */
    float *k;   /* bkv x dqkp: K (pass 2) */
    float *s;   /* bq x bkv: S, then P */
    float *pd;  /* bq x bkv: dropped P~ (with dropout) */
    const float *pt; /* P~ of the last tile: pd, or s when nothing is dropped */
    float *dp;  /* bq x bkv: dP, then dS */
    float *th;  /* bq x bkv: tanh(S / softcap) */
    float *dqt; /* bq x dqkp: one tile's dS K before it is added to dq_acc */
    float *acc1;/* bkv x dqkp (pass 1: dK) or bq x dqkp (pass 2: dQ) */
    float *acc2;/* bkv x dvp (pass 1: dV) */
    float *lse, *delta; /* bq */
    int64_t *row_head, *row_pos; /* bq: the tile's rows for the epilogue and dropout */
    float *row_slope;
    cpu_rows rows;
    int64_t loaded_row0; /* workspace row of the first query row loaded (with rows.n of them); -1: none */
} bwd_scratch;

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

static int64_t scratch_floats(const bwd_ctx *c)
{
    int64_t acc1 = (c->bkv > c->bq ? c->bkv : c->bq) * (c->dvp > c->dqkp ? c->dvp : c->dqkp);
    return round16(c->dqk * c->bkv) + round16(c->dv * c->bkv) +
           round16(c->bkv * c->dqkp) + 4 * round16(c->bq * c->bkv) + round16(c->bq * c->dqkp) +
           round16(acc1) + round16(c->bkv * c->dvp) + 7 * round16(c->bq);
}

static bwd_scratch carve(const bwd_ctx *c, float *x)
{
    int64_t acc1 = (c->bkv > c->bq ? c->bkv : c->bq) * (c->dvp > c->dqkp ? c->dvp : c->dqkp);
    bwd_scratch w;
    w.q = w.dout = NULL;
    w.kt = x, x += round16(c->dqk * c->bkv);
    w.vt = x, x += round16(c->dv * c->bkv);
    w.k = x, x += round16(c->bkv * c->dqkp);
    w.s = x, x += round16(c->bq * c->bkv);
    w.pd = x, x += round16(c->bq * c->bkv);
    w.dp = x, x += round16(c->bq * c->bkv);
    w.th = x, x += round16(c->bq * c->bkv);
    w.dqt = x, x += round16(c->bq * c->dqkp);
    w.acc1 = x, x += round16(acc1);
    w.acc2 = x, x += round16(c->bkv * c->dvp);
    w.lse = x, x += round16(c->bq);
    w.delta = x, x += round16(c->bq);
    w.row_head = (int64_t *)x, x += 2 * round16(c->bq);
    w.row_pos = (int64_t *)x, x += 2 * round16(c->bq);
    w.row_slope = x;
    w.rows.head = w.row_head;
    w.rows.pos = w.row_pos;
    w.rows.slope = w.row_slope;
    w.loaded_row0 = -1;
    return w;
}

/* Pass 0: D_i = sum_d dO_id O_id, in fp32 from the stored dtype; scale * Q and dO rows packed. */
static void prepare_rows(const bwd_ctx *c)
{
    const fa_attn_desc *d = &c->p->desc;
    int64_t rows = d->batch * c->hq * d->seqlen_q;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / (c->hq * d->seqlen_q), h = (r / d->seqlen_q) % c->hq, i = r % d->seqlen_q;
        if (i >= cpu_seqlen_q(&c->lay, b)) continue;
        cpu_pack_q_rows(&c->lay, &c->a->q, b, h, i, 1, c->dqk, c->p->scale, c->q_pack + r * c->dqkp, c->dqkp);
        cpu_pack_q_rows(&c->lay, &c->a->dout, b, h, i, 1, c->dv, 1.0f, c->do_pack + r * c->dvp, c->dvp);
        const void *o = cpu_elem_ptr(&c->a->out, cpu_q_offset(&c->lay, &c->a->out, b, i, h));
        const void *g = cpu_elem_ptr(&c->a->dout, cpu_q_offset(&c->lay, &c->a->dout, b, i, h));
        float acc = 0.0f;
        for (int64_t x = 0; x < c->dv; x++) acc += fa_load_elem(o, x, d->dtype) * fa_load_elem(g, x, d->dtype);
        c->delta[r] = acc;
    }
}

/*
 * Q (scaled), dO, LSE and D rows of one query tile (or sub-block of one). The dQ pass walks every K/V tile with
 * the same rows: they are loaded again only when the rows change.
 */
static void load_q_tile(const bwd_ctx *c, bwd_scratch *w, int64_t b, int64_t h, int64_t i0, int64_t rows)
{
    const fa_attn_desc *d = &c->p->desc;
    int64_t row0 = (b * c->hq + h) * d->seqlen_q + i0;
    if (row0 == w->loaded_row0 && rows == w->rows.n) return;
    w->loaded_row0 = row0;
    w->q = c->q_pack + row0 * c->dqkp;
    w->dout = c->do_pack + row0 * c->dvp;
    float slope = cpu_alibi_slope(d, &c->a->alibi_slopes, b, h);
    w->rows.n = rows;
    for (int64_t r = 0; r < rows; r++) {
        w->lse[r] = ((const float *)c->a->lse.data)[cpu_lse_offset(&c->lay, &c->a->lse, b, h, i0 + r)];
        w->delta[r] = c->delta[(b * c->hq + h) * d->seqlen_q + i0 + r];
        w->row_head[r] = h;
        w->row_pos[r] = i0 + r;
        w->row_slope[r] = slope;
    }
}

/*
 * For one (query rows, KV tile) pair with K^T and V^T packed, over the tile's first nc keys (padded to the
 * SIMD width; a block on the causal diagonal passes only the keys it sees): w->s = P, w->pt = P~ (dropped and
 * scaled), w->dp = dS (softcap derivative applied). Rows with LSE -inf (they saw no key) get P = 0.
 */
static void tile_grads(const bwd_ctx *c, bwd_scratch *w, const cpu_mask *m, int64_t b, int64_t i0, int64_t rows,
                       int64_t j0, int64_t nc)
{
    const fa_attn_desc *d = &c->p->desc;
    const int64_t ld = c->bkv, width = cpu_pad(nc);
    c->simd->gemm_set(rows, width, c->dqk, w->q, c->dqkp, w->kt, c->dqk * CPU_SIMD_PAD, w->s, ld);
    int softcap = d->softcap > 0.0f;
    cpu_scores_epilogue(m, w->s, ld, width, &w->rows, nc, j0, cpu_tile_needs_mask(m, i0, rows, j0, nc),
                        softcap ? w->th : NULL);
    for (int64_t r = 0; r < rows; r++) {
        float *srow = w->s + r * ld;
        if (w->lse[r] == -INFINITY)
            memset(srow, 0, sizeof(float) * (size_t)width);
        else
            c->simd->exp_sum(srow, width, w->lse[r]);
    }
    c->simd->gemm_set(rows, width, c->dv, w->dout, c->dvp, w->vt, c->dv * CPU_SIMD_PAD, w->dp, ld);
    int dropout = d->dropout_p > 0.0f;
    w->pt = w->s;
    if (dropout) {
        for (int64_t r = 0; r < rows; r++)
            memcpy(w->pd + r * ld, w->s + r * ld, sizeof(float) * (size_t)width);
        w->pt = w->pd;
        uint64_t seed = c->a->dropout_seed, off = c->a->dropout_offset;
        cpu_dropout_apply(w->pd, ld, &w->rows, nc, seed, off, c->drop_threshold, b, j0, c->keep_scale);
        cpu_dropout_apply(w->dp, ld, &w->rows, nc, seed, off, c->drop_threshold, b, j0, c->keep_scale);
    }
    for (int64_t r = 0; r < rows; r++) {
        float *ds = w->dp + r * ld;
        const float *pr = w->s + r * ld, *t = w->th + r * ld;
        const float delta = w->delta[r];
        for (int64_t col = 0; col < width; col++) ds[col] = pr[col] * (ds[col] - delta);
        if (softcap)
            for (int64_t col = 0; col < nc; col++) ds[col] *= 1.0f - t[col] * t[col];
    }
}

/*
 * Query rows [i0, i0 + rows) of head h against the packed tile at j0 (nc keys): loads them and runs tile_grads
 * over the keys they see (cpu_keys_seen). Returns that key count, 0 (and nothing done) when they see none.
 */
static int64_t block_grads(const bwd_ctx *c, bwd_scratch *w, const cpu_mask *m, int64_t b, int64_t h, int64_t sk,
                           int64_t i0, int64_t rows, int64_t j0, int64_t nc)
{
    int64_t seen = cpu_keys_seen(m, sk, i0, rows, j0, nc);
    if (seen == 0) return 0;
    load_q_tile(c, w, b, h, i0, rows);
    tile_grads(c, w, m, b, i0, rows, j0, seen);
    return seen;
}

/*
 * Not deterministic: dQ rows [i0, i0 + rows) of head h += dS K of this tile, under the lock of the Q tile
 * (block_q rows) that holds them, whichever sub-block of it they are.
 */
static void add_dq_tile(const bwd_ctx *c, bwd_scratch *w, int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t nc)
{
    c->simd->gemm_set(rows, c->dqkp, nc, w->dp, c->bkv, w->k, c->bkv * CPU_SIMD_PAD, w->dqt, c->dqkp);
    int64_t head = b * c->hq + h, row0 = head * c->p->desc.seqlen_q + i0;
    float *dst = c->dq_acc + row0 * c->dqkp;
    atomic_flag *lock = &c->locks[(head * (c->p->desc.seqlen_q / c->bq + 1) + i0 / c->bq) % BWD_LOCKS];
    while (atomic_flag_test_and_set_explicit(lock, memory_order_acquire)) {
    }
    c->simd->add(dst, w->dqt, rows * c->dqkp);
    atomic_flag_clear_explicit(lock, memory_order_release);
}

/* Pass 1: dK and dV of one KV block, summed over every query head of its group and every visible Q tile. */
static void dkdv_item(const bwd_ctx *c, bwd_scratch *w, int64_t item)
{
    const fa_plan_info *p = c->p;
    int64_t nkb = (p->desc.seqlen_k + c->bkv - 1) / c->bkv;
    int64_t kb = item % nkb, hk = (item / nkb) % c->hk, b = item / (nkb * c->hk);
    int64_t sq = cpu_seqlen_q(&c->lay, b), sk = cpu_seqlen_k(&c->lay, b);
    int64_t j0 = kb * c->bkv;
    if (j0 >= sk) return;
    int64_t nc = sk - j0 < c->bkv ? sk - j0 : c->bkv;
    cpu_pack_kv_cols(&c->lay, &c->a->k, b, hk, j0, nc, c->dqk, w->kt, c->bkv);
    cpu_pack_kv_cols(&c->lay, &c->a->v, b, hk, j0, nc, c->dv, w->vt, c->bkv);
    if (c->dq_acc) cpu_pack_kv_rows(&c->lay, &c->a->k, b, hk, j0, nc, c->dqk, w->k, c->dqkp, c->bkv * CPU_SIMD_PAD);
    memset(w->acc1, 0, sizeof(float) * (size_t)(c->bkv * c->dqkp));
    memset(w->acc2, 0, sizeof(float) * (size_t)(c->bkv * c->dvp));
    for (int64_t g = 0; g < c->group; g++) {
        int64_t h = hk * c->group + g;
        cpu_mask m = cpu_mask_for(p, sq, sk);
        int64_t lo, hi;
        cpu_visible_rows(&m, sq, j0, nc, &lo, &hi);
        /* Q tiles aligned to block_q so pass 1 and pass 2 see identical tiles. */
        for (int64_t i0 = lo / c->bq * c->bq; i0 < hi; i0 += c->bq) {
            int64_t rows = sq - i0 < c->bq ? sq - i0 : c->bq;
            /* a tile the mask edge crosses in sub-blocks over the keys they see (cpu_edge_step) */
            int64_t step = cpu_edge_step(&m, i0, rows, j0, nc);
            for (int64_t s0 = i0; s0 < i0 + rows; s0 += step) {
                int64_t n = i0 + rows - s0 < step ? i0 + rows - s0 : step;
                int64_t seen = block_grads(c, w, &m, b, h, sk, s0, n, j0, nc);
                if (seen == 0) continue;
                /* dV += P~^T dO ; dK += dS^T (scale Q), over the keys these rows see */
                c->simd->gemm_tn(seen, c->dvp, n, w->pt, c->bkv, w->dout, c->dvp, w->acc2, c->dvp);
                c->simd->gemm_tn(seen, c->dqkp, n, w->dp, c->bkv, w->q, c->dqkp, w->acc1, c->dqkp);
                if (c->dq_acc) add_dq_tile(c, w, b, h, s0, n, seen);
            }
        }
    }
    cpu_store_kv_rows(&c->lay, &c->a->dk, b, hk, j0, nc, c->dqk, 1.0f, w->acc1, c->dqkp);
    cpu_store_kv_rows(&c->lay, &c->a->dv, b, hk, j0, nc, c->dv, 1.0f, w->acc2, c->dvp);
}

/* k/v rows past a sequence's used keys (seqused_k) but inside its rows get no gradient: written as zeros. */
static void zero_unused_keys(const bwd_ctx *c, bwd_scratch *w, int64_t item)
{
    const fa_attn_desc *d = &c->p->desc;
    int64_t nkb = (d->seqlen_k + c->bkv - 1) / c->bkv;
    int64_t kb = item % nkb, hk = (item / nkb) % c->hk, b = item / (nkb * c->hk);
    int64_t rows = d->varlen ? (int64_t)c->lay.cu_k[b + 1] - c->lay.cu_k[b] : d->seqlen_k;
    int64_t from = cpu_seqlen_k(&c->lay, b), to = (kb + 1) * c->bkv;
    if (from < kb * c->bkv) from = kb * c->bkv;
    if (to > rows) to = rows;
    if (from >= to) return;
    int64_t width = c->dqkp > c->dvp ? c->dqkp : c->dvp;
    memset(w->acc1, 0, sizeof(float) * (size_t)(c->bkv * width));
    cpu_store_kv_rows(&c->lay, &c->a->dk, b, hk, from, to - from, c->dqk, 1.0f, w->acc1, width);
    cpu_store_kv_rows(&c->lay, &c->a->dv, b, hk, from, to - from, c->dv, 1.0f, w->acc1, width);
}

/* Pass 2: dQ of one query tile over every visible KV tile. */
/* The Q tile of a dQ work item (batch, query head, Q block): its rows [*i0, *i0 + return); 0 = past the end. */
static int64_t q_tile(const bwd_ctx *c, int64_t item, int64_t *b, int64_t *h, int64_t *i0)
{
    int64_t nqb = (c->p->desc.seqlen_q + c->bq - 1) / c->bq;
    *h = (item / nqb) % c->hq;
    *b = item / (nqb * c->hq);
    *i0 = item % nqb * c->bq;
    int64_t sq = cpu_seqlen_q(&c->lay, *b);
    return *i0 >= sq ? 0 : sq - *i0 < c->bq ? sq - *i0 : c->bq;
}

static void dq_item(const bwd_ctx *c, bwd_scratch *w, int64_t item)
{
    const fa_plan_info *p = c->p;
    int64_t b, h, i0, rows = q_tile(c, item, &b, &h, &i0);
    if (rows == 0) return;
    int64_t hk = h / c->group, sq = cpu_seqlen_q(&c->lay, b), sk = cpu_seqlen_k(&c->lay, b);
    cpu_mask m = cpu_mask_for(p, sq, sk);
    memset(w->acc1, 0, sizeof(float) * (size_t)(c->bq * c->dqkp));
    int64_t lo, hi;
    cpu_visible_keys(&m, sk, i0, rows, &lo, &hi);
    for (int64_t j0 = lo / c->bkv * c->bkv; j0 < hi; j0 += c->bkv) {
        int64_t nc = sk - j0 < c->bkv ? sk - j0 : c->bkv;
        cpu_pack_kv_cols(&c->lay, &c->a->k, b, hk, j0, nc, c->dqk, w->kt, c->bkv);
        cpu_pack_kv_cols(&c->lay, &c->a->v, b, hk, j0, nc, c->dv, w->vt, c->bkv);
        cpu_pack_kv_rows(&c->lay, &c->a->k, b, hk, j0, nc, c->dqk, w->k, c->dqkp, c->bkv * CPU_SIMD_PAD);
        int64_t step = cpu_edge_step(&m, i0, rows, j0, nc);
        for (int64_t s0 = i0; s0 < i0 + rows; s0 += step) {
            int64_t n = i0 + rows - s0 < step ? i0 + rows - s0 : step;
            int64_t seen = block_grads(c, w, &m, b, h, sk, s0, n, j0, nc);
            if (seen == 0) continue;
            c->simd->gemm(n, c->dqkp, seen, w->dp, c->bkv, w->k, c->bkv * CPU_SIMD_PAD, w->acc1 + (s0 - i0) * c->dqkp,
                          c->dqkp);
        }
    }
    cpu_store_q_rows(&c->lay, &c->a->dq, b, h, i0, rows, c->dqk, p->scale, w->acc1, c->dqkp);
}

/* Not deterministic: dQ of one query tile from the accumulator pass 1 filled. */
static void dq_store_item(const bwd_ctx *c, int64_t item)
{
    int64_t b, h, i0, rows = q_tile(c, item, &b, &h, &i0);
    if (rows == 0) return;
    const float *src = c->dq_acc + ((b * c->hq + h) * c->p->desc.seqlen_q + i0) * c->dqkp;
    cpu_store_q_rows(&c->lay, &c->a->dq, b, h, i0, rows, c->dqk, c->p->scale, src, c->dqkp);
}

fa_status cpu_bwd(const fa_plan_info *p, const fa_bwd_args *a, void *workspace)
{
    const fa_attn_desc *d = &p->desc;
    bwd_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.a = a;
    c.simd = p->backend_state;
    c.lay = cpu_layout_for(d, a->cu_seqlens_q, a->cu_seqlens_k, a->seqused_k, NULL, 0);
    c.bq = p->bwd_config.block_q;
    c.bkv = p->bwd_config.block_kv;
    c.dqk = d->head_dim_qk;
    c.dv = d->head_dim_v;
    c.dqkp = cpu_pad(c.dqk);
    c.dvp = cpu_pad(c.dv);
    c.hq = d->heads_q;
    c.hk = d->heads_kv;
    c.group = d->heads_q / d->heads_kv;
    c.keep_scale = d->dropout_p > 0.0f ? 1.0f / (1.0f - d->dropout_p) : 1.0f;
    c.drop_threshold = fa_dropout_threshold(d->dropout_p);
    int64_t rows = d->batch * c.hq * d->seqlen_q;
    c.delta = workspace;
    c.q_pack = c.delta + rows;
    c.do_pack = c.q_pack + rows * c.dqkp;
    atomic_flag locks[BWD_LOCKS];
    if (!d->deterministic) {
        c.dq_acc = c.do_pack + rows * c.dvp;
        c.locks = locks;
        for (int i = 0; i < BWD_LOCKS; i++) atomic_flag_clear(&locks[i]);
    }

    int threads = cpu_threads();
    /* All scratch is taken before any output is touched, so running out of memory writes nothing. */
    int64_t per_thread = scratch_floats(&c);
    float *pool = cpu_scratch(sizeof(float) * (size_t)(per_thread * threads));
    if (!pool) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cpu backward: no memory for %d threads' tiles", threads);

    prepare_rows(&c);
    if (c.dq_acc) {
        int64_t n = d->batch * c.hq * d->seqlen_q * c.dqkp;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i += 4096)
            memset(c.dq_acc + i, 0, sizeof(float) * (size_t)(n - i < 4096 ? n - i : 4096));
    }
    int64_t kv_items = d->batch * c.hk * ((d->seqlen_k + c.bkv - 1) / c.bkv);
    int64_t q_items = d->batch * c.hq * ((d->seqlen_q + c.bq - 1) / c.bq);
#pragma omp parallel
    {
        bwd_scratch w = carve(&c, pool + cpu_thread() * per_thread);
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < kv_items; item++) {
            dkdv_item(&c, &w, item);
            zero_unused_keys(&c, &w, item);
        }
        if (c.dq_acc) {
#pragma omp for schedule(static)
            for (int64_t item = 0; item < q_items; item++) dq_store_item(&c, item);
        } else {
#pragma omp for schedule(dynamic, 1)
            for (int64_t item = 0; item < q_items; item++) dq_item(&c, &w, item);
        }
    }
    return FA_OK;
}
