/*
 * One wave's FlashAttention forward over K/V tiles, as per-lane phases between cross-lane steps. Plain C shared
 * by the HIP kernels and the CPU test (tests/hip/test_mfma_emulation.c): a kernel's thread runs every phase for
 * its own lane, with real cross-lane steps between them (__builtin_amdgcn_mfma_*, __shfl_xor: fa_mfma_device.h);
 * the test runs each phase for the 64 lanes in a loop and an emulator of the instructions does the cross-lane
 * steps (tests/hip/mfma_emulator.c). The driver (the order of the steps) is written out in both places; the phase
 * comments below give it.
 *
 * The wave owns N query rows (N = 32 with the 32x32x8 instructions, 16 with 16x16x16 for short query blocks)
 * and walks K/V tiles of bkv keys that the kernel has staged (in LDS on the device: row-major 16-bit rows,
 * zero-filled past the last key).
 *
 * The layout trick for P. The wave computes S^T = K Q^T (keys x queries), not S = Q K^T: K is the A operand (M
 * keys x K dims), Q^T the B operand (K dims x N queries). In the accumulator a lane then holds one query column
 * (lane % N) and M N / 64 of its keys, so
 *   - the softmax's row max and row sum are per-lane loops plus one (32x32) or two (16x16) xor shuffles across
 *     the lanes of that column (fa_mfma_col_lane_stride), instead of reductions across 32 or 16 lanes;
 *   - O is kept as O^T = V^T P^T (dv x queries), whose accumulator again gives each lane one query column, so the
 *     rescale by exp(m_old - m_new) is a per-lane scalar;
 *   - P^T, the B operand of O^T's MFMAs, needs no data movement: accumulator slots 4c..4c+3 of lane L hold
 *     exactly the keys (rows) c K + k and the query (column) that B slots 0..3 of lane L must hold for the key
 *     chunk c (fa_mfma_layout.h states and the test checks it). P is rounded to 16 bits in place.
 * A pass of P through LDS (S = Q K^T, then re-read as the A operand) would cost a write, a barrier and a read per
 * tile, and 32-lane row reductions; the transposed products cost nothing.
 *
 * The scores are kept in log2 units (scale * log2(e) folded in), so exp2 is the only transcendental; the mask is
 * the library's one rule (ARCHITECTURE.md): key j is visible to query i iff j < sk and
 * i + sk - sq - window_left <= j <= i + sk - sq + window_right (each side optional, causal = window_right 0).
 */
#ifndef FA_WAVE_TILE_H
#define FA_WAVE_TILE_H

#include "fa_half.h"
#include "fa_mfma_layout.h"

#if !defined(__HIPCC_RTC__) /* hiprtc has the fixed-width types and the math functions built in */
#include <stdint.h>
#endif
#if !defined(__HIPCC__) && !defined(__HIPCC_RTC__)
#include <math.h>
#endif

/* Unrolled on the device (register arrays indexed by loop counters must be, or they go to scratch). */
#if defined(__HIPCC__) || defined(__HIPCC_RTC__)
#define FA_UNROLL _Pragma("unroll")
#else
#define FA_UNROLL
#endif

#define FA_WT_BKV_MAX 64                           /* keys per K/V tile */
#define FA_WT_DV_MAX 128                           /* head dim of V */
#define FA_WT_S_MAX (FA_WT_BKV_MAX * 32 / FA_WAVE) /* S^T slots per lane: bkv N / 64 with N <= 32 */
#define FA_WT_O_MAX (FA_WT_DV_MAX * 32 / FA_WAVE)  /* O^T slots per lane: dv N / 64 */
#define FA_WT_NEG_INF (-__builtin_inff())
#define FA_WT_LN2 0.693147180559945309f
#define FA_WT_LOG2E 1.44269504088896341f

typedef struct fa_wt_desc {
    fa_mfma_instr instr;           /* both products; its input type (fp16 or bf16) is Q's, K's, V's and O's */
    int dqk, dv;                   /* head dims: dqk a multiple of the instruction's K, dv of its M */
    int bkv;                       /* keys per tile: a multiple of M, at most FA_WT_BKV_MAX */
    float scale_log2;              /* softmax scale * log2(e) */
    int sq, sk;                    /* this sequence's query and key counts */
    int window_left, window_right; /* -1: unbounded */
    int q0;                        /* position of the wave's first query row */
    /* The score transforms, in natural units before the change to log2 units (as the SIMT forward applies them):
       x = s scale; x = softcap tanh(x / softcap) if softcap > 0; x -= alibi_slope |i + sk - sq - j|. With
       neither, the scores take scale_log2 in one multiply. */
    float scale, softcap, alibi_slope;
} fa_wt_desc;

/* One lane's registers. */
typedef struct fa_wt_lane {
    float s[FA_WT_S_MAX];    /* S^T of the current tile: S block sb (M keys) is slots [sb C, sb C + C), C = M N / 64 */
    uint16_t p[FA_WT_S_MAX]; /* P^T rounded to 16 bits, same slots: key chunk c (K keys) is the B operand p[4c..4c+4) */
    float o[FA_WT_O_MAX];    /* O^T, unnormalised: dv block db (M dims) is slots [db C, db C + C) */
    float m;                 /* running max of this lane's query row, log2 units (equal in all lanes of the row) */
    float l;                 /* this lane's share of the row sum (the row's lanes add theirs at the end) */
} fa_wt_lane;

FA_HD int fa_wt_rows(const fa_wt_desc *d) { return fa_mfma_n(d->instr); }

/* Phase 0, once: empty O, max -inf, sum 0. */
FA_HD void fa_wt_init(const fa_wt_desc *d, fa_wt_lane *st)
{
    const int no = d->dv * fa_mfma_n(d->instr) / FA_WAVE;
    FA_UNROLL
    for (int r = 0; r < FA_WT_O_MAX; r++)
        if (r < no) st->o[r] = 0.0f;
    st->m = FA_WT_NEG_INF;
    st->l = 0.0f;
}

/* Phase 1, each tile: S^T = 0 (the accumulator the MFMAs of phase 2 start from). */
FA_HD void fa_wt_tile_begin(const fa_wt_desc *d, fa_wt_lane *st)
{
    const int ns = d->bkv * fa_mfma_n(d->instr) / FA_WAVE;
    FA_UNROLL
    for (int r = 0; r < FA_WT_S_MAX; r++)
        if (r < ns) st->s[r] = 0.0f;
}

/*
 * Phase 2, for each S block sb < bkv / M and dim step ks < dqk / K: the A operand (K rows sb M.., dims ks K..)
 * and the B operand (Q^T: dims ks K.., the wave's queries), then, cross-lane,
 * MFMA(a, b, fa_wt_s_acc(sb)). kt: the tile's key rows, row stride ldk; qt: the wave's query rows, stride ldq.
 */
FA_HD void fa_wt_frag_k(const fa_wt_desc *d, int lane, const uint16_t *kt, int ldk, int sb, int ks, uint16_t a[4])
{
    fa_mfma_frag_a(d->instr, lane, kt, ldk, sb, ks, a); /* (key, dim) */
}

/*
 * Phase 0b, once (the forward kernel's form of the B operand of phase 2): every dim step's Q^T fragment of the
 * wave's query rows, straight from q (row q0 + i at q + i * ldq, any row stride), into registers for the whole K/V
 * loop; rows at or past sq are zeros. Slot r of step ks is qf[4 ks + r]; the same values fa_wt_frag_q takes from a
 * staged copy.
 */
#define FA_WT_DQK_MAX 128
#define FA_WT_QF_MAX (FA_WT_DQK_MAX / 8 * FA_MFMA_AB_SLOTS) /* dqk / K steps x 4 slots, K >= 8 */
FA_HD void fa_wt_load_q(const fa_wt_desc *d, int lane, const uint16_t *q, int64_t ldq, uint16_t qf[FA_WT_QF_MAX])
{
    const int k = fa_mfma_k(d->instr), steps = d->dqk / k;
    FA_UNROLL
    for (int ks = 0; ks < FA_WT_DQK_MAX / 8; ks++) {
        if (ks >= steps) continue;
        FA_UNROLL
        for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
            const fa_mfma_rc e = fa_mfma_b_elem(d->instr, lane, r); /* (dim, query) */
            qf[FA_MFMA_AB_SLOTS * ks + r] = d->q0 + e.col < d->sq ? q[e.col * ldq + ks * k + e.row] : (uint16_t)0;
        }
    }
}

FA_HD void fa_wt_frag_q(const fa_wt_desc *d, int lane, const uint16_t *qt, int ldq, int ks, uint16_t b[4])
{
    const int k = fa_mfma_k(d->instr);
    FA_UNROLL
    for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
        const fa_mfma_rc e = fa_mfma_b_elem(d->instr, lane, r); /* (dim, query) */
        b[r] = qt[e.col * ldq + ks * k + e.row];
    }
}

FA_HD float *fa_wt_s_acc(const fa_wt_desc *d, fa_wt_lane *st, int sb) { return st->s + sb * fa_mfma_c_slots(d->instr); }

FA_HD int fa_wt_visible(const fa_wt_desc *d, int i, int j)
{
    const int diag = i + d->sk - d->sq;
    return j < d->sk && (d->window_left < 0 || j >= diag - d->window_left) &&
           (d->window_right < 0 || j <= diag + d->window_right);
}

/*
 * The K/V tiles a block (or one wave) needs: query positions first..last see keys [lo, hi) at most, so tiles of
 * bkv keys from lo (rounded down to a tile) to hi are walked and every other tile, wholly masked, is never
 * loaded. Returns the tile count; *lo0 gets the first tile's first key. The forward kernel walks the block's
 * range (all its waves share the staged tiles) and each wave skips the tiles outside its own rows' range
 * (fa_wt_tile_needed): a wholly masked tile would leave O, m and l as they are (P = 0, alpha = 1).
 */
FA_HD int fa_wt_tile_range(const fa_wt_desc *d, int first, int last, int *lo0)
{
    int lo = 0, hi = d->sk;
    if (d->window_left >= 0 && first + d->sk - d->sq - d->window_left > lo) lo = first + d->sk - d->sq - d->window_left;
    if (d->window_right >= 0 && last + d->sk - d->sq + d->window_right + 1 < hi)
        hi = last + d->sk - d->sq + d->window_right + 1;
    lo = lo / d->bkv * d->bkv;
    *lo0 = lo;
    return hi > lo ? (hi - lo + d->bkv - 1) / d->bkv : 0;
}

/* 1 if the wave's rows (q0 .. q0 + N - 1, those below sq) see any key of the tile starting at kv0. */
FA_HD int fa_wt_tile_needed(const fa_wt_desc *d, int kv0)
{
    const int last = d->q0 + fa_mfma_n(d->instr) - 1 < d->sq - 1 ? d->q0 + fa_mfma_n(d->instr) - 1 : d->sq - 1;
    int lo = 0;
    const int n = d->q0 < d->sq ? fa_wt_tile_range(d, d->q0, last, &lo) : 0;
    return kv0 >= lo && kv0 < lo + n * d->bkv;
}

/*
 * Phase 3, after the S MFMAs of the tile whose first key is kv0: scores to log2 units (softcap and ALiBi on the
 * way), masked ones to -inf.
 * Returns this lane's max; the cross-lane step takes the max over the row's lanes (xor butterfly over
 * fa_mfma_col_lane_stride, .., 32) and hands it to phase 4.
 */
FA_HD float fa_wt_scores(const fa_wt_desc *d, int lane, fa_wt_lane *st, int kv0)
{
    const int m = fa_mfma_m(d->instr), c = fa_mfma_c_slots(d->instr), ns = d->bkv * fa_mfma_n(d->instr) / FA_WAVE;
    float mx = FA_WT_NEG_INF;
    FA_UNROLL
    for (int r = 0; r < FA_WT_S_MAX; r++) {
        if (r >= ns) continue;
        const fa_mfma_rc e = fa_mfma_c_elem(d->instr, lane, r % c); /* (key in the S block, query) */
        const int key = kv0 + (r / c) * m + e.row, qi = d->q0 + e.col;
        float x = st->s[r] * d->scale_log2;
        if (d->softcap > 0.0f || d->alibi_slope != 0.0f) {
            x = st->s[r] * d->scale;
            if (d->softcap > 0.0f) x = d->softcap * tanhf(x / d->softcap);
            x -= d->alibi_slope * fabsf((float)(qi + d->sk - d->sq - key));
            x *= FA_WT_LOG2E;
        }
        x = fa_wt_visible(d, qi, key) ? x : FA_WT_NEG_INF;
        st->s[r] = x;
        mx = fmaxf(mx, x);
    }
    return mx;
}

/*
 * Phase 4, with the row's max over this tile: the new running max, O and the partial sum rescaled, P = 2^(s - max)
 * summed in fp32 and rounded to 16 bits as the B operand of O's MFMAs. A row that has seen no visible key yet
 * keeps max -inf and exponentiates against 0, so its P is 0, not NaN.
 */
FA_HD void fa_wt_softmax(const fa_wt_desc *d, fa_wt_lane *st, float row_max)
{
    const int ns = d->bkv * fa_mfma_n(d->instr) / FA_WAVE, no = d->dv * fa_mfma_n(d->instr) / FA_WAVE;
    const int bf16 = fa_mfma_is_bf16(d->instr);
    const float m_new = fmaxf(st->m, row_max), base = m_new == FA_WT_NEG_INF ? 0.0f : m_new;
    const float alpha = exp2f(st->m - base); /* 0 while the old max is -inf (O and l are 0 then) */
    float sum = 0.0f;
    FA_UNROLL
    for (int r = 0; r < FA_WT_S_MAX; r++) {
        if (r >= ns) continue;
        const float p = exp2f(st->s[r] - base);
        sum += p;
        st->p[r] = fa_f32_to_16(bf16, p);
    }
    st->m = m_new;
    st->l = st->l * alpha + sum;
    FA_UNROLL
    for (int r = 0; r < FA_WT_O_MAX; r++)
        if (r < no) st->o[r] *= alpha;
}

/*
 * Phase 5, for each dv block db < dv / M and key chunk c < bkv / K: the A operand V^T (dims db M.., keys c K..),
 * then, cross-lane, MFMA(a, fa_wt_p_frag(c), fa_wt_o_acc(db)). vt: the tile's value rows, stride ldv.
 */
FA_HD void fa_wt_frag_v(const fa_wt_desc *d, int lane, const uint16_t *vt, int ldv, int db, int c, uint16_t a[4])
{
    fa_mfma_frag_a_t(d->instr, lane, vt, ldv, db, c, a); /* (dim, key) */
}

FA_HD const uint16_t *fa_wt_p_frag(const fa_wt_lane *st, int c) { return st->p + FA_MFMA_AB_SLOTS * c; }
FA_HD float *fa_wt_o_acc(const fa_wt_desc *d, fa_wt_lane *st, int db) { return st->o + db * fa_mfma_c_slots(d->instr); }

/*
 * Phase 6, after the last tile and the cross-lane sum of l over the row's lanes: O = O^T / l rounded to 16 bits
 * into ot (the wave's query rows, row stride ldo, dims contiguous) and the row's LSE (natural log) into
 * lse[query * lse_stride] by the row's first lane (lse NULL: none). Rows past sq are not written; a row that saw
 * no key gets O = 0 and LSE = -inf.
 */
FA_HD void fa_wt_store(const fa_wt_desc *d, int lane, const fa_wt_lane *st, float row_sum, uint16_t *ot, int64_t ldo,
                       float *lse, int64_t lse_stride)
{
    const int m = fa_mfma_m(d->instr), c = fa_mfma_c_slots(d->instr), no = d->dv * fa_mfma_n(d->instr) / FA_WAVE;
    const int bf16 = fa_mfma_is_bf16(d->instr);
    const float inv = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
    FA_UNROLL
    for (int r = 0; r < FA_WT_O_MAX; r++) {
        if (r >= no) continue;
        const fa_mfma_rc e = fa_mfma_c_elem(d->instr, lane, r % c); /* (dim in the dv block, query) */
        if (d->q0 + e.col < d->sq) ot[e.col * ldo + (r / c) * m + e.row] = fa_f32_to_16(bf16, st->o[r] * inv);
    }
    const fa_mfma_rc e0 = fa_mfma_c_elem(d->instr, lane, 0);
    if (lse && lane < fa_mfma_col_lane_stride(d->instr) && d->q0 + e0.col < d->sq)
        lse[e0.col * lse_stride] = row_sum > 0.0f ? (st->m + log2f(row_sum)) * FA_WT_LN2 : FA_WT_NEG_INF;
}

#endif
