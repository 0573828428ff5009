/*
 * One wave's FlashAttention backward over tiles, as per-lane phases between cross-lane steps: the backward's form
 * of fa_wave_tile.h, shared the same way by the HIP kernels (hip/kernels/bwd_mfma.hip, cross-lane steps by
 * fa_mfma_device.h) and the CPU test (tests/hip/test_mfma_emulation.c, cross-lane steps by the emulator).
 *
 * A wave owns N "columns" (N = the instruction's N: 32 with 32x32x8, 16 with 16x16x16) and walks tiles of R
 * "rows" that the kernel has staged (LDS on the device: row-major 16-bit, zeros past the sequence). Per tile:
 *   S  = Rows_a Cols_a^T      (R x N)   recomputed scores, in log2 units on the way to P
 *   P  = 2^(S scale log2 e - LSE log2 e), 0 where the mask hides the pair       (per lane)
 *   dP = Rows_b Cols_b^T      (R x N)
 *   dS = P (dP - D)                                                            (per lane)
 *   and then one or two products that contract over the R rows: Out^T += X^T P or X^T dS (d x N).
 * Two passes, two orientations of the same phases (rows_are_queries):
 *   dK/dV pass (rows = queries, columns = the wave's keys):  S = Q K^T, dP = dO V^T,
 *       dV^T += dO^T P,  dK^T += Q^T dS      (dK, dV stay in the wave's registers over all query tiles)
 *   dQ pass (rows = keys, columns = the wave's queries):     S^T = K Q^T, dP^T = V dO^T,
 *       dQ^T += K^T dS^T                      (dQ stays in the wave's registers over all key tiles)
 * Each pass writes only what its block owns, so neither needs atomics and the result is deterministic.
 *
 * The layout trick (fa_mfma_layout.h's accumulator-is-B property, the one the forward uses for P^T): for any
 * X (R x N) computed in the accumulator, lane L's slots 4c..4c+3 hold rows c K + k of the column that lane L's B
 * slots 0..3 hold as rows k of a B operand with N columns. So X is, four slots at a time, the B operand of a
 * product that contracts over X's rows, with no data movement. Choosing the orientation so that the next
 * contraction is over the accumulator's rows makes every product of the backward take its score-shaped operand
 * straight from registers: P and dS feed dV^T, dK^T (pass 1) and dQ^T (pass 2) as B operands, rounded to the
 * input type in place (as FlashAttention rounds P and dS before its MMAs). The other operand of each product (Q,
 * K, V, dO, or a transpose) is an A fragment from the staged tile or a B fragment loaded once per wave
 * (fa_wb_load_cols). Computing both passes with S^T = K Q^T (a lane owning a query) would leave dV = P^T dO to
 * contract over the accumulator's columns, which the ISA cannot feed from the accumulator: P would have to go
 * through LDS.
 *
 * Per-row values: P needs the LSE and dS needs D = rowsum(dO o O) of each slot's query. In the dK/dV pass the
 * slots of a lane hold different queries (the tile's rows): the kernel stages the tile's LSE log2 e and D (LDS)
 * and the phases index them by query. In the dQ pass a lane's query is fixed: the same arrays, indexed the same
 * way, hold the wave's queries.
 *
 * Scope: causal (bottom-right), sliding window, the sequence ends (j < sk, i < sq). Softcap, ALiBi and dropout are
 * not in these phases (the SIMT backward keeps them); GQA is the kernel's loop over the group's heads. The softmax
 * scale is applied to dK and dQ when they are stored (FlashAttention's order): dS is unscaled.
 */
#ifndef FA_WAVE_BWD_TILE_H
#define FA_WAVE_BWD_TILE_H

#include "fa_half.h"
#include "fa_mfma_layout.h"

#if !defined(__HIPCC_RTC__)
#include <stdint.h>
#endif
#if !defined(__HIPCC__) && !defined(__HIPCC_RTC__)
#include <math.h>
#endif

#if defined(__HIPCC__) || defined(__HIPCC_RTC__)
#define FA_WB_UNROLL _Pragma("unroll")
#else
#define FA_WB_UNROLL
#endif

#define FA_WB_ROWS_MAX 64                            /* rows per tile */
#define FA_WB_D_MAX 128                              /* head dims */
#define FA_WB_S_MAX (FA_WB_ROWS_MAX * 32 / FA_WAVE)  /* score slots per lane: R N / 64 with N <= 32 */
#define FA_WB_ACC_MAX (FA_WB_D_MAX * 32 / FA_WAVE)   /* Out^T slots per lane: d N / 64 */
#define FA_WB_CF_MAX (FA_WB_D_MAX / 8 * FA_MFMA_AB_SLOTS) /* a column operand's B fragments: d / K steps x 4 */
#define FA_WB_LOG2E 1.44269504088896341f

typedef struct fa_wb_desc {
    fa_mfma_instr instr;           /* every product; its input type is Q's, K's, V's and dO's */
    int dqk, dv;                   /* head dims, multiples of 32 up to FA_WB_D_MAX */
    int rows;                      /* rows per tile: a multiple of M and K, at most FA_WB_ROWS_MAX */
    int rows_are_queries;          /* 1: the dK/dV pass (columns are keys); 0: the dQ pass (columns are queries) */
    float scale_log2;              /* softmax scale * log2(e) */
    int sq, sk;                    /* this sequence's query and key counts */
    int window_left, window_right; /* -1: unbounded; causal = window_right 0 */
    int col0;                      /* position of the wave's first column */
} fa_wb_desc;

/* One lane's registers for one tile (the Out^T accumulators are the caller's: one or two float[FA_WB_ACC_MAX]). */
typedef struct fa_wb_lane {
    float s[FA_WB_S_MAX];     /* S, then P in fp32: row block rb (M rows) is slots [rb C, rb C + C), C = M N / 64 */
    float dp[FA_WB_S_MAX];    /* dP, then dS in fp32, same slots */
    uint16_t p[FA_WB_S_MAX];  /* P rounded to 16 bits: row chunk c (K rows) is the B operand p[4c..4c+4) */
    uint16_t ds[FA_WB_S_MAX]; /* dS rounded, the same way */
} fa_wb_lane;

/*
 * fp32 -> the input type, nearest even. fp16 on the device is the hardware's v_cvt_f16_f32 (round to nearest even
 * in the default mode, overflow to inf, fp16 denormals kept: the same bits as fa_f32_to_f16 for every non-NaN): the
 * software rounding's dozen constants, hoisted into SGPRs across the unrolled slots, made the dK/dV kernel spill
 * SGPRs. bf16 (no conversion instruction on gfx90a) and the host keep fa_half.h's.
 */
FA_HD uint16_t fa_wb_round16(int bf16, float x)
{
#if defined(__HIP_DEVICE_COMPILE__)
    if (!bf16) {
        const _Float16 h = (_Float16)x;
        uint16_t u;
        __builtin_memcpy(&u, &h, sizeof u);
        return u;
    }
#endif
    return fa_f32_to_16(bf16, x);
}

FA_HD int fa_wb_cols(const fa_wb_desc *d) { return fa_mfma_n(d->instr); }
FA_HD int fa_wb_slots(const fa_wb_desc *d) { return d->rows * fa_mfma_n(d->instr) / FA_WAVE; }

/* The mask rule of the library (ARCHITECTURE.md), with both sequence ends. */
FA_HD int fa_wb_visible(const fa_wb_desc *d, int i, int j)
{
    const int diag = i + d->sk - d->sq;
    return i >= 0 && i < d->sq && j >= 0 && j < d->sk && (d->window_left < 0 || j >= diag - d->window_left) &&
           (d->window_right < 0 || j <= diag + d->window_right);
}

/* Queries that can see some key of [k_first, k_last]: [*lo, *hi) (empty: *hi <= *lo). The dK/dV pass's range. */
FA_HD void fa_wb_query_range(const fa_wb_desc *d, int k_first, int k_last, int *lo, int *hi)
{
    const int off = d->sk - d->sq; /* key j is on query i's diagonal where j = i + off */
    int a = 0, b = d->sq;
    if (d->window_right >= 0 && k_first - off - d->window_right > a) a = k_first - off - d->window_right;
    if (d->window_left >= 0 && k_last - off + d->window_left + 1 < b) b = k_last - off + d->window_left + 1;
    *lo = a, *hi = b;
}

/* Keys that some query of [q_first, q_last] can see: [*lo, *hi). The dQ pass's range. */
FA_HD void fa_wb_key_range(const fa_wb_desc *d, int q_first, int q_last, int *lo, int *hi)
{
    const int off = d->sk - d->sq;
    int a = 0, b = d->sk;
    if (d->window_left >= 0 && q_first + off - d->window_left > a) a = q_first + off - d->window_left;
    if (d->window_right >= 0 && q_last + off + d->window_right + 1 < b) b = q_last + off + d->window_right + 1;
    *lo = a, *hi = b;
}

/* (query, key) of slot r of lane L for a tile whose first row is at position row0. */
FA_HD fa_mfma_rc fa_wb_slot_qk(const fa_wb_desc *d, int lane, int r, int row0)
{
    const int c = fa_mfma_c_slots(d->instr);
    const fa_mfma_rc e = fa_mfma_c_elem(d->instr, lane, r % c);
    const int row = row0 + (r / c) * fa_mfma_m(d->instr) + e.row, col = d->col0 + e.col;
    fa_mfma_rc qk;
    qk.row = d->rows_are_queries ? row : col; /* query */
    qk.col = d->rows_are_queries ? col : row; /* key */
    return qk;
}

/*
 * Phase 0, once per wave (per head in a GQA loop): the B fragments of a column-side matrix for every dim step,
 * Cols^T (dims x the wave's N columns), from x (column position col0 + i at x + i * ldx, dims contiguous) into
 * registers for the whole tile loop: K^T and V^T in the dK/dV pass, Q^T and dO^T in the dQ pass. Columns at or
 * past the sequence end are zeros. Step ks's slot r is xf[4 ks + r].
 */
FA_HD void fa_wb_load_cols(const fa_wb_desc *d, int lane, const uint16_t *x, int64_t ldx, int dims,
                           uint16_t xf[FA_WB_CF_MAX])
{
    const int k = fa_mfma_k(d->instr), steps = dims / k, end = d->rows_are_queries ? d->sk : d->sq;
    FA_WB_UNROLL
    for (int ks = 0; ks < FA_WB_D_MAX / 8; ks++) {
        if (ks >= steps) continue;
        FA_WB_UNROLL
        for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
            const fa_mfma_rc e = fa_mfma_b_elem(d->instr, lane, r); /* (dim, column) */
            xf[FA_MFMA_AB_SLOTS * ks + r] = d->col0 + e.col < end ? x[e.col * ldx + ks * k + e.row] : (uint16_t)0;
        }
    }
}

/* Phase 1, each tile: S = dP = 0 (the accumulators the MFMAs of phase 2 start from). */
FA_HD void fa_wb_tile_begin(const fa_wb_desc *d, fa_wb_lane *st)
{
    const int ns = fa_wb_slots(d);
    FA_WB_UNROLL
    for (int r = 0; r < FA_WB_S_MAX; r++)
        if (r < ns) st->s[r] = 0.0f, st->dp[r] = 0.0f;
}

/*
 * Phase 2, for each row block rb < R / M and dim step ks: the A operand (tile rows rb M.., dims ks K..) of t (row
 * stride ld), then, cross-lane, MFMA(a, xf + 4 ks, acc(rb)): S with t = the row-side Q (or K) tile and the
 * column-side K^T (Q^T) fragments into fa_wb_s_acc; dP with the dO (V) tile and V^T (dO^T) into fa_wb_dp_acc.
 */
FA_HD void fa_wb_frag_rows(const fa_wb_desc *d, int lane, const uint16_t *t, int ld, int rb, int ks, uint16_t a[4])
{
    fa_mfma_frag_a(d->instr, lane, t, ld, rb, ks, a); /* (row, dim) */
}

FA_HD float *fa_wb_s_acc(const fa_wb_desc *d, fa_wb_lane *st, int rb) { return st->s + rb * fa_mfma_c_slots(d->instr); }
FA_HD float *fa_wb_dp_acc(const fa_wb_desc *d, fa_wb_lane *st, int rb)
{
    return st->dp + rb * fa_mfma_c_slots(d->instr);
}

/*
 * Phase 3, after the S MFMAs of the tile whose first row is at row0: P = 2^(S scale log2 e - lse2[query - qbase])
 * where the pair is visible, else exactly 0; fp32 in s, rounded into p. lse2 holds LSE log2 e per query from
 * position qbase (the tile's rows in the dK/dV pass, the wave's columns in the dQ pass); a query that sees no key
 * has LSE -inf and every one of its slots is masked, so no inf - inf is formed.
 */
FA_HD void fa_wb_probs(const fa_wb_desc *d, int lane, fa_wb_lane *st, int row0, const float *lse2, int qbase)
{
    const int ns = fa_wb_slots(d), bf16 = fa_mfma_is_bf16(d->instr);
    FA_WB_UNROLL
    for (int r = 0; r < FA_WB_S_MAX; r++) {
        if (r >= ns) continue;
        const fa_mfma_rc qk = fa_wb_slot_qk(d, lane, r, row0);
        const int vis = fa_wb_visible(d, qk.row, qk.col);
        const float p = vis ? exp2f(st->s[r] * d->scale_log2 - lse2[qk.row - qbase]) : 0.0f;
        st->s[r] = p;
        st->p[r] = fa_wb_round16(bf16, p);
    }
}

/*
 * Phase 4, after the dP MFMAs: dS = P (dP - D[query - qbase]) in fp32 (P unrounded, as FlashAttention), rounded into
 * ds. Masked slots have P = 0 and so dS = 0 (D and dP are finite: staged rows past the sequence are zeros).
 */
FA_HD void fa_wb_dsoft(const fa_wb_desc *d, int lane, fa_wb_lane *st, int row0, const float *dsum, int qbase)
{
    const int ns = fa_wb_slots(d), bf16 = fa_mfma_is_bf16(d->instr);
    FA_WB_UNROLL
    for (int r = 0; r < FA_WB_S_MAX; r++) {
        if (r >= ns) continue;
        const fa_mfma_rc qk = fa_wb_slot_qk(d, lane, r, row0);
        const float ds = st->s[r] == 0.0f ? 0.0f : st->s[r] * (st->dp[r] - dsum[qk.row - qbase]);
        st->dp[r] = ds;
        st->ds[r] = fa_wb_round16(bf16, ds);
    }
}

/*
 * Phase 5, for each dim block db < dims / M and row chunk c < R / K: the A operand X^T (dims db M.., tile rows
 * c K..) of the staged tile t (row stride ld), then, cross-lane, MFMA(a, fa_wb_p_frag(c) or fa_wb_ds_frag(c),
 * fa_wb_acc(acc, db)): dV^T with X = dO and P, dK^T with X = Q and dS (dK/dV pass); dQ^T with X = K and dS (dQ pass).
 */
FA_HD void fa_wb_frag_rows_t(const fa_wb_desc *d, int lane, const uint16_t *t, int ld, int db, int c, uint16_t a[4])
{
    fa_mfma_frag_a_t(d->instr, lane, t, ld, db, c, a); /* (dim, row) */
}

FA_HD const uint16_t *fa_wb_p_frag(const fa_wb_lane *st, int c) { return st->p + FA_MFMA_AB_SLOTS * c; }
FA_HD const uint16_t *fa_wb_ds_frag(const fa_wb_lane *st, int c) { return st->ds + FA_MFMA_AB_SLOTS * c; }
FA_HD float *fa_wb_acc(const fa_wb_desc *d, float *acc, int db) { return acc + db * fa_mfma_c_slots(d->instr); }

/* Phase 0b, once per wave: an Out^T accumulator of `dims` dims at 0. */
FA_HD void fa_wb_acc_init(const fa_wb_desc *d, float acc[FA_WB_ACC_MAX], int dims)
{
    const int n = dims * fa_mfma_n(d->instr) / FA_WAVE;
    FA_WB_UNROLL
    for (int r = 0; r < FA_WB_ACC_MAX; r++)
        if (r < n) acc[r] = 0.0f;
}

/*
 * Phase 6, after the last tile (and, in GQA, the last head of the group): Out = scale Out^T rounded to 16 bits into
 * out (column position col0 + i at out + i * ldo, dims contiguous); columns past the sequence end are not written.
 * scale is the softmax scale for dK and dQ, 1 for dV.
 */
FA_HD void fa_wb_store(const fa_wb_desc *d, int lane, const float *acc, int dims, float scale, uint16_t *out,
                       int64_t ldo)
{
    const int m = fa_mfma_m(d->instr), c = fa_mfma_c_slots(d->instr), n = dims * fa_mfma_n(d->instr) / FA_WAVE;
    const int bf16 = fa_mfma_is_bf16(d->instr), end = d->rows_are_queries ? d->sk : d->sq;
    FA_WB_UNROLL
    for (int r = 0; r < FA_WB_ACC_MAX; r++) {
        if (r >= n) continue;
        const fa_mfma_rc e = fa_mfma_c_elem(d->instr, lane, r % c); /* (dim in block r / c, column) */
        if (d->col0 + e.col < end) out[e.col * ldo + (r / c) * m + e.row] = fa_wb_round16(bf16, acc[r] * scale);
    }
}

#endif
