/*
 * Tile helpers shared by the CPU forward and backward: which keys a block of queries sees (and the reverse),
 * the score epilogue (softcap, ALiBi, mask), dropout, and packing rows of any layout into padded fp32 tiles.
 */
#ifndef CPU_TILE_H
#define CPU_TILE_H

#include "cpu_layout.h"
#include "simd/cpu_simd.h"

typedef struct cpu_mask {
    int64_t window_left, window_right; /* effective, causal folded in; -1 = unbounded */
    int64_t offset;                    /* sk - sq of this sequence: bottom-right alignment */
    float softcap;                     /* 0 = off */
    /*
     * Units the scores are in: 1 (natural, the backward), or log2(e) when the softmax scale folded into Q
     * carries it (the forward, whose softmax is in base 2); softcap and ALiBi act in these units.
     */
    float units;
} cpu_mask;

cpu_mask cpu_mask_for(const fa_plan_info *p, int64_t sq, int64_t sk);

/* Keys [*lo, *hi) that any query row in [i0, i0 + rows) can see (empty: *lo == *hi). */
void cpu_visible_keys(const cpu_mask *m, int64_t sk, int64_t i0, int64_t rows, int64_t *lo, int64_t *hi);
/* Query rows [*lo, *hi) that can see any key in [j0, j0 + cols). */
void cpu_visible_rows(const cpu_mask *m, int64_t sq, int64_t j0, int64_t cols, int64_t *lo, int64_t *hi);
/* Whether some (row, key) pair of the tile is masked (window edges cross it). */
int cpu_tile_needs_mask(const cpu_mask *m, int64_t i0, int64_t rows, int64_t j0, int64_t cols);

/*
 * A block of query rows takes a K/V tile whole, or, where the mask edge crosses the tile (the causal
 * diagonal), in sub-blocks of CPU_EDGE_ROWS that each compute only the keys they see: a 128-row block on the
 * diagonal computed twice the scores it kept (bench/NOTES.md section 11). cpu_edge_step is the rows per step
 * for rows [i0, i0 + rows) against keys [j0, j0 + cols); cpu_keys_seen the tile's first keys such a step needs
 * (none of its rows sees a key past them), 0 when it sees none of the tile.
 */
enum { CPU_EDGE_ROWS = 32 };
int64_t cpu_edge_step(const cpu_mask *m, int64_t i0, int64_t rows, int64_t j0, int64_t cols);
int64_t cpu_keys_seen(const cpu_mask *m, int64_t sk, int64_t i0, int64_t rows, int64_t j0, int64_t cols);

/*
 * The query rows of a tile. Usually rows i0, i0 + 1, ... of one head; with GQA packing (decode) the rows of
 * several query heads sharing a KV head, so each row carries its own head, position and ALiBi slope.
 */
typedef struct cpu_rows {
    int64_t n;
    const int64_t *head; /* query head per row */
    const int64_t *pos;  /* query position per row */
    const float *slope;  /* ALiBi slope per row (0 = none) */
} cpu_rows;

/*
 * Score epilogue on raw scores s = scale * q.k of a tile (rows.n rows of width columns, ld apart): softcap,
 * ALiBi, window mask; columns [nc, width) become -inf. If tanh_out is not NULL it receives tanh(s / softcap)
 * for the backward.
 */
void cpu_scores_epilogue(const cpu_mask *m, float *s, int64_t ld, int64_t width, const cpu_rows *rows, int64_t nc,
                         int64_t j0, int need_mask, float *tanh_out);

/* x[r][c] = kept ? x[r][c] * keep_value : 0 with the shared Philox mask of (b, head, pos, key j0 + c). */
void cpu_dropout_apply(float *x, int64_t ld, const cpu_rows *rows, int64_t nc, uint64_t seed, uint64_t offset,
                       uint32_t threshold, int64_t b, int64_t j0, float keep_value);

/* Rows [i0, i0 + n) of a q-like tensor (q, out, dout) for head h, times mul, into dst (n x ld, zero padded). */
void cpu_pack_q_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i0, int64_t n,
                     int64_t dim, float mul, float *dst, int64_t ld);
/*
 * Packed K/V tiles are the B operands of the SIMD gemm, stored in column panels of CPU_SIMD_PAD (cpu_simd.h):
 * element (r, x) at dst[(x / CPU_SIMD_PAD) * panel_stride + r * CPU_SIMD_PAD + x % CPU_SIMD_PAD].
 *
 * Keys [j0, j0 + n) of k or v for kv head hk as rows (key r, dim x), zero padded to width (a multiple of
 * CPU_SIMD_PAD); panel_stride is at least n * CPU_SIMD_PAD.
 */
void cpu_pack_kv_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t hk, int64_t j0, int64_t n,
                      int64_t dim, float *dst, int64_t width, int64_t panel_stride);
/* The same keys transposed (dim x row, key c column), zero for n <= c < width; panel stride dim * CPU_SIMD_PAD. */
void cpu_pack_kv_cols(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t hk, int64_t j0, int64_t n,
                      int64_t dim, float *dst, int64_t width);
/*
 * Keys [j0, j0 + n) of every KV head, read in address order (a dense or paged cache row holds all heads side
 * by side): K of head x row-major to k_out + x * k_head (n x ld_k, zero padded past dim); V of head x to
 * v_out + x * v_head in column panels as cpu_pack_kv_rows writes them (width v_width, stride v_panel_stride).
 */
void cpu_pack_kv_all_heads(const cpu_layout *l, const fa_tensor *k, const fa_tensor *v, int64_t b, int64_t heads,
                           int64_t j0, int64_t n, int64_t dim, int64_t dim_v, float *k_out, int64_t ld_k,
                           int64_t k_head, float *v_out, int64_t v_width, int64_t v_panel_stride, int64_t v_head);

/*
 * Asks for keys [j0, j0 + n) of k and v (heads [h0, h0 + heads)) to be brought towards the core, so the next
 * tile's rows arrive while this one computes: rows of one head sit a whole cache row apart, a stride the
 * hardware prefetchers do not follow across pages.
 */
void cpu_prefetch_kv(const cpu_layout *l, const fa_tensor *k, const fa_tensor *v, int64_t b, int64_t h0,
                     int64_t heads, int64_t j0, int64_t n, int64_t dim, int64_t dim_v);

/*
 * Asks for rows [i0, i0 + n) of a q-like tensor (q, out) for head h: read (for_write 0) or about to be
 * written whole (1). Rows of one head sit a token apart in memory, a stride the hardware prefetchers do not
 * follow, so without this each row's lines missed on use (packing Q and storing out: 2.5 % of a forward).
 */
void cpu_prefetch_q_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i0, int64_t n,
                         int64_t dim, int for_write);

/* fp32 rows (n x ld) times mul into a q-like tensor / a k-like tensor in its dtype. */
void cpu_store_q_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i0, int64_t n,
                      int64_t dim, float mul, const float *src, int64_t ld);
void cpu_store_kv_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t hk, int64_t j0, int64_t n,
                       int64_t dim, float mul, const float *src, int64_t ld);

#endif
