/*
 * CPU FlashAttention forward. Work item = (batch, query head, block of block_q query rows, KV split), or for
 * decode (few query rows, long cache) = (batch, KV split) holding every query head's rows.
 * Each item streams its visible KV range in block_kv tiles: S = Q K^T (register-blocked SIMD GEMM over a
 * transposed K tile), softcap / ALiBi / mask, online softmax (running max m and sum l per row, rescaling the
 * accumulator when m grows), dropout on P, O += P V. Nothing larger than one tile of scores ever exists.
 * Splits write normalised partial outputs and LSEs to the workspace and are merged by the combine step.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_convert.h"
#include "cpu_scratch.h"
#include "cpu_rotary.h"
#include "cpu_tile.h"
#include "fa_philox.h"
#include "simd/cpu_simd.h"

typedef struct fwd_ctx {
    const fa_plan_info *p;
    const fa_fwd_args *a;
    const cpu_simd *simd;
    cpu_layout lay;
    int decode;                /* one item = a key range of every KV head (see run_item) */
    int64_t bq, bkv, dqk, dv, dvp, hq, hk, group, nqb; /* dvp: dv padded for the SIMD kernels */
    int64_t ldq, ldk;          /* row strides of the Q tile and the decode K tile (padded dqk when decoding) */
    /*
     * Decode over a dense fp32 cache: K and V are read where they are, every head of one key after another,
     * i.e. the cache front to back (cpu_simd decode_scores / decode_pv). Nothing is packed, so the loads are
     * the products' own and the prefetchers stream the cache under the arithmetic. 0: packed tiles instead.
     */
    int kv_in_place;
    int64_t s_rows;            /* rows of the score tile: block_rows, or every row of the item in place */
    int bf16;                  /* bf16 inputs through the CPU's bf16 dot products (prefill) */
    int64_t dq2, bkv2;         /* bf16 pairs per Q row, per score row */
    int64_t rows_cap;          /* query rows an item holds: block_q, or heads_q x seqlen_q when decoding */
    int64_t kv_heads_packed;   /* KV heads whose tiles are packed at once: 1, or heads_kv when decoding */
    int64_t block_rows;        /* rows sharing one K/V tile: block_q, or group x seqlen_q when decoding */
    int splits;
    /*
     * Prefill, fp32 products: every query block of a head reads the same K/V tiles, so each thread keeps the
     * tiles it packed for its current (batch, KV head) and reuses them for that head's next blocks. Packing
     * strided rows (and transposing K) then happens about once per thread and head instead of once per block,
     * and the reuse reads contiguous memory the prefetchers follow. cache_tiles = 0: off (too large).
     */
    int64_t cache_tiles;
    /*
     * The softmax scale times log2(e), folded into Q: scores come out in log2 units and the softmax runs in
     * base 2 (exp2 is three vector ops cheaper than exp); the LSE goes back to natural log when stored.
     */
    float qscale;
    float keep_scale;          /* 1 / (1 - dropout_p) */
    uint32_t drop_threshold;
    float *part_out, *part_lse; /* split partials in the workspace */
} fwd_ctx;

/* Per-thread state: the item's query rows with their accumulators, and one K/V tile. */
typedef struct scratch {
    float *q, *kt, *v, *s, *o, *m, *l; /* kt: K^T, or row-major K when decoding */
    uint32_t *q2, *kt2, *p2, *v2;      /* bf16 pairs: Q rows, K^T, P rows, V (bf16 path) */
    int64_t *row_head, *row_pos;
    float *row_slope;
    float *m_new, *sums; /* one softmax step's new running max and tile sum per row of its row block */
    int64_t n; /* rows in the current item */
    float *cache;           /* cache_tiles x (K^T tile, V tile) */
    unsigned char *cached;  /* per tile: packed for (cache_b, cache_hk) */
    int64_t cache_b, cache_hk;
} scratch;

/* A run of rows of the item that share one K/V head: the unit one K/V tile is applied to. */
typedef struct row_block {
    cpu_rows rows;
    float *q, *o, *m, *l;
} row_block;

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

static int64_t kt_tile(const fwd_ctx *c) { return round16(c->ldk * c->bkv); }
static int64_t v_tile(const fwd_ctx *c) { return round16(c->bkv * c->dvp); }
static int64_t cache_floats(const fwd_ctx *c)
{
    return c->cache_tiles * (kt_tile(c) + v_tile(c)) + round16(c->cache_tiles / 4 + 1);
}

static int64_t scratch_floats(const fwd_ctx *c)
{
    int64_t h = c->kv_heads_packed;
    return round16(c->rows_cap * c->ldq) + h * round16(c->ldk * c->bkv) + h * round16(c->bkv * c->dvp) +
           round16(c->s_rows * c->bkv) + round16(c->rows_cap * c->dvp) + 9 * round16(c->rows_cap) +
           round16(c->dvp) + round16(c->dqk) +
           (c->bf16 ? round16(c->rows_cap * c->dq2) + round16(c->dq2 * c->bkv) + round16(c->block_rows * c->bkv2) +
                          round16(c->bkv2 * c->dvp)
                    : 0) +
           cache_floats(c);
}

static scratch carve(const fwd_ctx *c, float *base)
{
    scratch w;
    w.q = base;
    w.kt = w.q + round16(c->rows_cap * c->ldq);
    w.v = w.kt + c->kv_heads_packed * round16(c->ldk * c->bkv);
    w.s = w.v + c->kv_heads_packed * round16(c->bkv * c->dvp);
    w.o = w.s + round16(c->s_rows * c->bkv);
    w.m = w.o + round16(c->rows_cap * c->dvp);
    w.l = w.m + round16(c->rows_cap);
    w.row_head = (int64_t *)(w.l + round16(c->rows_cap));
    w.row_pos = w.row_head + round16(c->rows_cap);
    w.row_slope = (float *)(w.row_pos + round16(c->rows_cap));
    w.m_new = w.row_slope + round16(c->rows_cap);
    w.sums = w.m_new + round16(c->rows_cap);
    w.q2 = (uint32_t *)(w.sums + round16(c->rows_cap));
    w.kt2 = w.q2 + round16(c->rows_cap * c->dq2);
    w.p2 = w.kt2 + round16(c->dq2 * c->bkv);
    w.v2 = w.p2 + round16(c->block_rows * c->bkv2);
    w.n = 0;
    /* the bf16 buffers exist (and are counted by scratch_floats) only on the bf16 path */
    w.cache = c->bf16 ? (float *)(w.v2 + round16(c->bkv2 * c->dvp)) : (float *)w.q2;
    w.cached = (unsigned char *)(w.cache + c->cache_tiles * (kt_tile(c) + v_tile(c)));
    w.cache_b = w.cache_hk = -1; /* tiles of an earlier call are stale */
    return w;
}

static row_block block_of(const fwd_ctx *c, scratch *w, int64_t r0, int64_t n)
{
    row_block blk = {{n, w->row_head + r0, w->row_pos + r0, w->row_slope + r0},
                     w->q + r0 * c->ldq, w->o + r0 * c->dvp, w->m + r0, w->l + r0};
    return blk;
}

/* Q rows, scaled (and rotated to their positions when rotary is on; rounded to the dtype as flash_attn does). */
static void load_q(const fwd_ctx *c, scratch *w, int64_t b)
{
    const fa_plan_info *p = c->p;
    for (int64_t r = 0; r < w->n; r++) {
        float *x = w->q + r * c->ldq;
        int64_t h = w->row_head[r], i = w->row_pos[r];
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
        if (p->desc.rotary_dim == 0 && !c->bf16) {
            cpu_pack_q_rows(&c->lay, &c->a->q, b, h, i, 1, c->dqk, c->qscale, x, c->ldq);
            continue;
        }
        cpu_pack_q_rows(&c->lay, &c->a->q, b, h, i, 1, c->dqk, 1.0f, x, c->ldq);
        if (p->desc.rotary_dim > 0)
            cpu_rotary_row(&p->desc, &c->a->rotary_cos, &c->a->rotary_sin, cpu_rotary_q_position(p, &c->lay, b, i), x);
        if (c->bf16) {
            /* exact bf16 (inputs are bf16; rotated q is rounded to it as flash_attn does); scaled after Q K^T */
            uint32_t *q2 = w->q2 + r * c->dq2;
            for (int64_t k = 0; k < c->dq2; k++)
                q2[k] = (uint32_t)fa_f32_to_bf16(x[2 * k]) |
                        (2 * k + 1 < c->dqk ? (uint32_t)fa_f32_to_bf16(x[2 * k + 1]) << 16 : 0u);
            continue;
        }
        for (int64_t d = 0; d < c->dqk; d++) x[d] = fa_round_to_dtype(x[d], p->desc.dtype) * c->qscale;
    }
    memset(w->o, 0, sizeof(float) * (size_t)(w->n * c->dvp));
}

static void softmax_step(const fwd_ctx *c, scratch *w, row_block *blk, float *s, const cpu_mask *m, int64_t b,
                         int64_t j0, int64_t nc, int64_t width, int need_mask);

/*
 * One K/V tile (packed in w->kt, w->v) applied to one row block: S = Q K^T, epilogue, online softmax update
 * (rescaling O when the running max grows), dropout, O += P V. Only the tile's first nc keys are computed
 * (padded to the SIMD width): a block that sees fewer keys than the tile holds (the causal diagonal, the last
 * tile) passes just those.
 */
static void tile_step(const fwd_ctx *c, scratch *w, row_block *blk, const float *kt, const float *v,
                      const cpu_mask *m, int64_t b, int64_t j0, int64_t nc, int need_mask)
{
    const int64_t rows = blk->rows.n;
    const int64_t width = c->bf16 || c->decode ? c->bkv : cpu_pad(nc);
    if (c->bf16) {
        memset(w->s, 0, sizeof(float) * (size_t)(rows * c->bkv));
        c->simd->gemm_bf16(rows, c->bkv, c->dq2, w->q2 + (blk->q - w->q) / c->ldq * c->dq2, c->dq2, w->kt2, c->bkv,
                           w->s, c->bkv);
        c->simd->scale(w->s, rows * c->bkv, c->qscale);
    } else if (c->decode) {
        memset(w->s, 0, sizeof(float) * (size_t)(rows * c->bkv));
        c->simd->gemm_nt(rows, nc, c->ldk, blk->q, c->ldq, kt, c->ldk, w->s, c->bkv);
    } else {
        c->simd->gemm_set(rows, width, c->dqk, blk->q, c->ldq, kt, c->dqk * CPU_SIMD_PAD, w->s, c->bkv);
    }
    softmax_step(c, w, blk, w->s, m, b, j0, nc, width, need_mask);
    if (c->bf16) {
        /* P rounded to bf16 pairs along keys, as a GPU FlashAttention rounds P before its P V product */
        for (int64_t r = 0; r < rows; r++) {
            const float *pr = w->s + r * c->bkv;
            uint32_t *p2 = w->p2 + r * c->bkv2;
            for (int64_t k = 0; k < c->bkv2; k++)
                p2[k] = (uint32_t)fa_f32_to_bf16(pr[2 * k]) | (uint32_t)fa_f32_to_bf16(pr[2 * k + 1]) << 16;
        }
        c->simd->gemm_bf16(rows, c->dvp, (nc + 1) / 2, w->p2, c->bkv2, w->v2, c->dvp, blk->o, c->dvp);
        return;
    }
    c->simd->gemm(rows, c->dvp, nc, w->s, c->bkv, v, c->bkv * CPU_SIMD_PAD, blk->o, c->dvp);
}

/*
 * Scores s (blk rows x block_kv) of one tile to P: epilogue (softcap, ALiBi, mask), online softmax update
 * (rescaling O when the running max grows), dropout.
 */
static void softmax_step(const fwd_ctx *c, scratch *w, row_block *blk, float *s, const cpu_mask *m, int64_t b,
                         int64_t j0, int64_t nc, int64_t width, int need_mask)
{
    const int64_t rows = blk->rows.n;
    cpu_scores_epilogue(m, s, c->bkv, width, &blk->rows, nc, j0, need_mask, NULL);
    /* rows whose keys so far are all masked come back 0 (this tile adds nothing) with their max still -inf */
    c->simd->softmax2_rows(s, rows, width, c->bkv, blk->m, w->m_new, w->sums);
    for (int64_t r = 0; r < rows; r++) {
        float m_new = w->m_new[r];
        if (m_new == -INFINITY) continue;
        float alpha = m_new == blk->m[r] ? 1.0f : exp2f(blk->m[r] - m_new); /* the max settles: most tiles skip */
        blk->l[r] = blk->l[r] * alpha + w->sums[r]; /* LSE is that of the undropped softmax */
        blk->m[r] = m_new;
        if (alpha != 1.0f) c->simd->scale(blk->o + r * c->dvp, c->dvp, alpha);
    }
    if (c->p->desc.dropout_p > 0.0f)
        cpu_dropout_apply(s, c->bkv, &blk->rows, nc, c->a->dropout_seed, c->a->dropout_offset, c->drop_threshold, b,
                          j0, 1.0f);
}

/* Decode, cache read in place: one key tile against every KV head's rows (per_blk rows per head). */
static void decode_tile_in_place(const fwd_ctx *c, scratch *w, const cpu_mask *m, int64_t b, int64_t j0, int64_t nc,
                                 int64_t per_blk, int need_mask)
{
    const fa_tensor *k = &c->a->k, *v = &c->a->v;
    int seq = c->p->desc.varlen ? 0 : 1; /* (batch, seq, heads, dim) or varlen (tokens, heads, dim) */
    const float *k0 = (const float *)cpu_elem_ptr(k, cpu_kv_offset(&c->lay, k, b, j0, 0));
    const float *v0 = (const float *)cpu_elem_ptr(v, cpu_kv_offset(&c->lay, v, b, j0, 0));
    memset(w->s, 0, sizeof(float) * (size_t)(w->n * c->bkv));
    c->simd->decode_scores(c->hk, per_blk, w->q, c->ldq, k0, k->stride[seq + 1], k->stride[seq], nc, c->dqk, w->s,
                           c->bkv);
    for (int64_t x = 0; x < c->hk; x++) {
        row_block blk = block_of(c, w, x * per_blk, per_blk);
        softmax_step(c, w, &blk, w->s + x * per_blk * c->bkv, m, b, j0, nc, c->bkv, need_mask);
    }
    c->simd->decode_pv(c->hk, per_blk, w->s, c->bkv, v0, v->stride[seq + 1], v->stride[seq], nc, c->dv, w->o, c->dvp);
}

/* K^T and V of one head's tile as bf16 pairs: kt2[k][c] = (K[c][2k], K[c][2k+1]), v2[k][x] = (V[2k][x], V[2k+1][x]). */
static void pack_kv_bf16(const fwd_ctx *c, scratch *w, int64_t b, int64_t hk, int64_t j0, int64_t nc)
{
    const fa_tensor *k = &c->a->k, *v = &c->a->v;
    memset(w->kt2, 0, sizeof(uint32_t) * (size_t)(c->dq2 * c->bkv));
    memset(w->v2, 0, sizeof(uint32_t) * (size_t)(c->bkv2 * c->dvp));
    for (int64_t col = 0; col < nc; col++) {
        const uint16_t *kr = (const uint16_t *)cpu_elem_ptr(k, cpu_kv_offset(&c->lay, k, b, j0 + col, hk));
        for (int64_t x = 0; x < c->dqk; x++) ((uint16_t *)(w->kt2 + (x / 2) * c->bkv + col))[x & 1] = kr[x];
        const uint16_t *vr = (const uint16_t *)cpu_elem_ptr(v, cpu_kv_offset(&c->lay, v, b, j0 + col, hk));
        uint16_t *dst = (uint16_t *)(w->v2 + (col / 2) * c->dvp) + (col & 1);
        for (int64_t x = 0; x < c->dv; x++) dst[2 * x] = vr[x];
    }
}

/* Writes the rows of one item: straight to out/lse, or to the split partials. */
static void finish(const fwd_ctx *c, scratch *w, int64_t b, int split)
{
    const fa_fwd_args *a = c->a;
    const fa_attn_desc *d = &c->p->desc;
    for (int64_t r = 0; r < w->n; r++) {
        int64_t i = w->row_pos[r], h = w->row_head[r];
        float *orow = w->o + r * c->dvp;
        int empty = w->l[r] == 0.0f;
        float lse = empty ? -INFINITY : w->m[r] * (float)M_LN2 + logf(w->l[r]); /* m in log2 units */
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

/* Prefill block t (item / splits): its batch (returned), query head, first row and row count (0 past the end). */
static int64_t prefill_block(const fwd_ctx *c, int64_t t, int64_t *h, int64_t *i0, int64_t *n)
{
    int64_t qb = t % c->nqb, b = t / c->nqb / c->hq, sq = cpu_seqlen_q(&c->lay, b);
    *h = t / c->nqb % c->hq;
    *i0 = qb * c->bq;
    *n = *i0 >= sq ? 0 : sq - *i0 < c->bq ? sq - *i0 : c->bq;
    return b;
}

/*
 * The rows of work item `item` and the query positions [*i0, *i0 + *npos) they span. Prefill: block qb of one
 * query head. Decode: every query row of every head, ordered so that the heads sharing a KV head are adjacent.
 */
static int64_t item_rows(const fwd_ctx *c, scratch *w, int64_t item, int *split, int64_t *i0, int64_t *npos)
{
    const fa_attn_desc *d = &c->p->desc;
    *split = (int)(item % c->splits);
    int64_t t = item / c->splits, b;
    if (c->decode) {
        b = t;
        int64_t sq = cpu_seqlen_q(&c->lay, b);
        w->n = c->hq * sq;
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < sq; i++) {
                w->row_head[h * sq + i] = h;
                w->row_pos[h * sq + i] = i;
            }
        *i0 = 0;
        *npos = sq;
    } else {
        int64_t h;
        b = prefill_block(c, t, &h, i0, &w->n);
        for (int64_t r = 0; r < w->n; r++) {
            w->row_head[r] = h;
            w->row_pos[r] = *i0 + r;
        }
        *npos = w->n;
    }
    for (int64_t r = 0; r < w->n; r++) w->row_slope[r] = cpu_alibi_slope(d, &c->a->alibi_slopes, b, w->row_head[r]);
    return b;
}

/*
 * Prefill: the next item's query rows (usually this thread's next item: a head's blocks are handed out
 * together) and this item's output rows are asked for a slice per K/V tile over the item's last
 * PREFETCH_EDGE_TILES tiles (tile `t` of `nt`), so they arrive while those tiles compute instead of missing
 * row by row when Q is packed and out is stored. Asked for earlier, the K/V tiles streaming through L2 evicted
 * them again.
 */
enum { PREFETCH_EDGE_TILES = 4 };

static void prefetch_item_edges(const fwd_ctx *c, const scratch *w, int64_t item, int64_t b, int64_t i0, int64_t t,
                                int64_t nt)
{
    if (c->decode || c->splits > 1) return;
    int64_t first = nt > PREFETCH_EDGE_TILES ? nt - PREFETCH_EDGE_TILES : 0;
    if (t < first) return;
    t -= first;
    nt -= first;
    int64_t lo = t * w->n / nt, hi = (t + 1) * w->n / nt;
    cpu_prefetch_q_rows(&c->lay, &c->a->out, b, w->row_head[0], i0 + lo, hi - lo, c->dv, 1);
    if (item + 1 >= c->p->desc.batch * c->hq * c->nqb) return;
    int64_t h, ni0, n, nb = prefill_block(c, item + 1, &h, &ni0, &n); /* splits == 1: items are blocks */
    lo = t * n / nt;
    hi = (t + 1) * n / nt;
    cpu_prefetch_q_rows(&c->lay, &c->a->q, nb, h, ni0 + lo, hi - lo, c->dqk, 0);
}

static void run_item(const fwd_ctx *c, scratch *w, int64_t item)
{
    const fa_plan_info *p = c->p;
    int split;
    int64_t i0, npos;
    int64_t b = item_rows(c, w, item, &split, &i0, &npos);
    if (w->n == 0) return;
    int64_t sq = cpu_seqlen_q(&c->lay, b), sk = cpu_seqlen_k(&c->lay, b);
    cpu_mask m = cpu_mask_for(p, sq, sk);
    m.units = (float)M_LOG2E;

    /* Keys any row of this item can see, divided among the splits; whole tiles outside are never touched. */
    int64_t lo, hi;
    cpu_visible_keys(&m, sk, i0, npos, &lo, &hi);
    if (!c->decode) lo = lo / c->bkv * c->bkv; /* tiles on a fixed grid, so a cached tile fits every block */
    int64_t ntiles = (hi - lo + c->bkv - 1) / c->bkv;
    int64_t per_split = (ntiles + c->splits - 1) / c->splits;
    int64_t jlo = lo + split * per_split * c->bkv;
    int64_t jhi = lo + (split + 1) * per_split * c->bkv;
    if (jhi > hi) jhi = hi;

    load_q(c, w, b);
    /*
     * Decode walks each key tile across every KV head before moving on, so the cache (batch, seq, heads, dim)
     * streams through memory in order; per KV head it applies the tile to that head's group of query rows.
     */
    /*
     * Prefill splits the item's rows into blocks of block_rows that each take every K/V tile in turn: one
     * packed tile then serves block_q rows, while the score tile stays at block_rows x block_kv. Each block
     * skips the tiles it cannot see and masks only the tiles its window edges cross.
     */
    int64_t nblk = c->decode ? c->hk : (w->n + c->block_rows - 1) / c->block_rows;
    int64_t per_blk = c->decode ? c->group * sq : c->block_rows;
    int64_t kt_head = kt_tile(c), v_head = v_tile(c);
    int64_t hk = w->row_head[0] / c->group;
    if (c->cache_tiles && (w->cache_b != b || w->cache_hk != hk)) {
        memset(w->cached, 0, (size_t)c->cache_tiles);
        w->cache_b = b;
        w->cache_hk = hk;
    }
    for (int64_t j0 = jlo; j0 < jhi; j0 += c->bkv) {
        int64_t nc = jhi - j0 < c->bkv ? jhi - j0 : c->bkv;
        float *kt = w->kt, *v = w->v;
        prefetch_item_edges(c, w, item, b, i0, (j0 - jlo) / c->bkv, (jhi - jlo + c->bkv - 1) / c->bkv);
        if (c->kv_in_place) {
            decode_tile_in_place(c, w, &m, b, j0, nc, per_blk, cpu_tile_needs_mask(&m, i0, npos, j0, nc));
            continue;
        }
        if (c->decode) {
            cpu_pack_kv_all_heads(&c->lay, &c->a->k, &c->a->v, b, c->hk, j0, nc, c->dqk, c->dv, w->kt, c->ldk, kt_head,
                                  w->v, c->dvp, c->bkv * CPU_SIMD_PAD, v_head);
        } else if (c->bf16) {
            pack_kv_bf16(c, w, b, hk, j0, nc);
        } else if (c->cache_tiles) {
            int64_t t = j0 / c->bkv, full = sk - j0 < c->bkv ? sk - j0 : c->bkv;
            kt = w->cache + t * (kt_head + v_head);
            v = kt + kt_head;
            if (!w->cached[t]) {
                cpu_pack_kv_cols(&c->lay, &c->a->k, b, hk, j0, full, c->dqk, kt, c->bkv);
                cpu_pack_kv_rows(&c->lay, &c->a->v, b, hk, j0, full, c->dv, v, c->dvp, c->bkv * CPU_SIMD_PAD);
                w->cached[t] = 1;
            }
        } else {
            cpu_pack_kv_cols(&c->lay, &c->a->k, b, hk, j0, nc, c->dqk, w->kt, c->bkv);
            cpu_pack_kv_rows(&c->lay, &c->a->v, b, hk, j0, nc, c->dv, w->v, c->dvp, c->bkv * CPU_SIMD_PAD);
        }
        int next_cached = c->cache_tiles && j0 + c->bkv < jhi && w->cached[j0 / c->bkv + 1];
        int64_t next = j0 + c->bkv >= jhi || next_cached ? 0 : jhi - (j0 + c->bkv) < c->bkv ? jhi - (j0 + c->bkv) : c->bkv;
        /*
         * Prefill reads one head's rows, a cache row apart: the hardware prefetchers do not follow that stride,
         * so the next tile is asked for. Decode reads every head of consecutive keys, one contiguous run that
         * they do follow; asking for it too measured slower (bench/NOTES.md section 3).
         */
        if (next && !c->decode) cpu_prefetch_kv(&c->lay, &c->a->k, &c->a->v, b, hk, 1, j0 + c->bkv, next, c->dqk, c->dv);
        for (int64_t x = 0; x < nblk; x++) {
            if (c->decode) {
                row_block blk = block_of(c, w, x * per_blk, per_blk);
                tile_step(c, w, &blk, w->kt + x * kt_head, w->v + x * v_head, &m, b, j0, nc,
                          cpu_tile_needs_mask(&m, i0, npos, j0, nc));
                continue;
            }
            int64_t r0 = x * per_blk, n = w->n - r0 < per_blk ? w->n - r0 : per_blk;
            /*
             * A tile the block's mask edge crosses goes in sub-blocks over the keys they see (cpu_edge_step);
             * bf16 computes whole tiles of bf16 pairs, so its blocks would only shrink.
             */
            int64_t step = c->bf16 ? n : cpu_edge_step(&m, i0 + r0, n, j0, nc);
            for (int64_t s0 = r0; s0 < r0 + n; s0 += step) {
                int64_t rows = r0 + n - s0 < step ? r0 + n - s0 : step;
                int64_t seen = cpu_keys_seen(&m, sk, i0 + s0, rows, j0, nc);
                if (seen == 0) continue;
                row_block blk = block_of(c, w, s0, rows);
                tile_step(c, w, &blk, kt, v, &m, b, j0, seen, cpu_tile_needs_mask(&m, i0 + s0, rows, j0, seen));
            }
        }
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
        float *acc = pool + cpu_thread() * per_thread;
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
    c.hk = d->heads_kv;
    c.decode = p->fwd_family->id == CPU_KERNEL_FWD_DECODE;
    c.rows_cap = c.decode ? c.hq * d->seqlen_q : c.bq;
    c.block_rows = c.decode ? c.group * d->seqlen_q : c.bq < CPU_FWD_BLOCK_ROWS ? c.bq : CPU_FWD_BLOCK_ROWS;
    c.kv_heads_packed = c.decode ? c.hk : 1;
    c.ldq = c.decode ? cpu_pad(c.dqk) : c.dqk;
    c.ldk = c.decode ? cpu_pad(c.dqk) : c.dqk;
    c.kv_in_place = c.decode && !d->paged_kv && d->dtype == FA_DTYPE_F32;
    c.s_rows = c.kv_in_place ? c.rows_cap : c.block_rows;
    c.bf16 = !c.decode && d->dtype == FA_DTYPE_BF16 && c.simd->gemm_bf16 != NULL;
    c.dq2 = (c.dqk + 1) / 2;
    c.bkv2 = c.bkv / 2;
    int threads = cpu_threads();
    if (!c.decode && !c.bf16) {
        c.cache_tiles = (d->seqlen_k + c.bkv - 1) / c.bkv;
        int64_t bytes = 4 * cache_floats(&c);
        if (bytes > CPU_FWD_TILE_CACHE_BYTES || bytes * threads > 16 * (int64_t)CPU_FWD_TILE_CACHE_BYTES)
            c.cache_tiles = 0;
    }
    c.qscale = p->scale * (float)M_LOG2E;
    c.keep_scale = d->dropout_p > 0.0f ? 1.0f / (1.0f - d->dropout_p) : 1.0f;
    c.drop_threshold = fa_dropout_threshold(d->dropout_p);
    if (c.splits > 1) {
        c.part_out = workspace;
        c.part_lse = c.part_out + (int64_t)c.splits * d->batch * d->seqlen_q * c.hq * c.dv;
    }

    /* All scratch is taken before any output is touched, so running out of memory writes nothing. */
    int64_t per_thread = scratch_floats(&c);
    float *pool = cpu_scratch(sizeof(float) * (size_t)(per_thread * threads));
    if (!pool) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cpu forward: no memory for %d threads' tiles", threads);

    if (d->seqlen_new > 0) cpu_append_kv(p, &c.lay, a, pool, per_thread);

    int64_t items = c.decode ? d->batch * c.splits : d->batch * c.hq * c.nqb * c.splits;
    /*
     * Items run in (batch, head, block, split) order. With the tile cache, a thread should take a head's
     * blocks one after another: they are handed out a whole head at a time when there are enough heads to
     * keep every thread busy (4 per thread); every head then costs the same, causal or not.
     */
    int64_t heads_total = c.decode ? 0 : d->batch * c.hq;
    int64_t chunk = c.cache_tiles && heads_total >= 4 * (int64_t)threads ? c.nqb * c.splits : 1;
#pragma omp parallel
    {
        scratch w = carve(&c, pool + cpu_thread() * per_thread);
#pragma omp for schedule(dynamic, chunk)
        for (int64_t item = 0; item < items; item++) run_item(&c, &w, item);
    }
    if (c.splits > 1) combine_splits(&c, pool, per_thread);
    return FA_OK;
}
