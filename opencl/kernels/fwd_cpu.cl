/*
 * The forward shaped for an OpenCL CPU device (PoCL): fwd.cl is GPU-shaped (16-lane row groups, local tiles,
 * barriers, per-row reductions across work-items) and PoCL cannot vectorise it across work-items, so on a CPU it
 * ran at 0.14-0.21x of flashport's own CPU backend. Here one work-item (work-group of 1) does what one thread of
 * cpu/cpu_fwd.c does: it owns FA_BQ query rows of one head and walks the K/V tiles with the online softmax, and
 * both products are register-blocked with explicit OpenCL vectors (FA_VW floats: 16 is one AVX-512 register),
 * so the vectorisation does not depend on PoCL's work-group vectoriser at all.
 *
 * Two kernels, the same arguments as fa_fwd_cl (the host binds the workspace as o_part, at part_o_off):
 *   fa_fwd_cpu_pack  NDRange (ntk, heads_kv, batch), ntk = ceil(seqlen_k / FA_BKV), work-groups of 1: converts
 *                    one K/V tile of one (sequence, KV head) to fp32 panels in the workspace: K transposed
 *                    (FA_DQK x FA_BKV, so a key vector is one contiguous load) then V (FA_BKV x DVP, DVP = FA_DV
 *                    padded to 2 vectors), zeros past the sequence's keys. Every query block of every query head
 *                    of the group reads these panels, so converting and transposing once per forward instead of
 *                    once per block costs one pass over K and V (the CPU backend caches its packed tiles for the
 *                    same reason).
 *   fa_fwd_cpu       NDRange (ceil(seqlen_q / FA_BQ), heads_q, batch), work-groups of 1.
 * Workspace floats: batch * heads_kv * ntk * TILE_FLOATS (cl_fwd_cpu_workspace computes the same).
 *
 * Defines from the host: FA_DTYPE, FA_DQK, FA_DV, FA_BQ, FA_BKV, FA_SOFTCAP, FA_ALIBI, FA_LOCAL, FA_VARLEN (as
 * fwd.cl), FA_PAGED (k/v page pools read through the block table, by the pack only), FA_VW (4, 8 or 16: the
 * device's preferred float vector width). Not here (the selector declines them to fwd.cl): split-KV, dropout,
 * KV-cache append, the packed decode.
 * Semantics as fwd.cl: scores in base 2 (scale * log2(e) folded into Q unless softcap), bottom-right causal /
 * window, a row that sees no key writes 0 and LSE -inf, the output is o / l (a division), LSE in natural log.
 */

/* FA_VW_HOST is the host's choice; a -DFA_VW in FLASHPORT_OPENCL_DEFINE overrides it for A/B runs */
#ifndef FA_VW
#define FA_VW FA_VW_HOST
#endif
#if FA_VW == 16
typedef float16 vf;
typedef int16 vi;
#define VLOAD vload16
#define convert_vf convert_float16
#define convert_vi convert_int16
#define as_vf as_float16
#define as_vi as_int16
#define IOTA ((vi)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#elif FA_VW == 8
typedef float8 vf;
typedef int8 vi;
#define VLOAD vload8
#define convert_vf convert_float8
#define convert_vi convert_int8
#define as_vf as_float8
#define as_vi as_int8
#define IOTA ((vi)(0, 1, 2, 3, 4, 5, 6, 7))
#elif FA_VW == 4
typedef float4 vf;
typedef int4 vi;
#define VLOAD vload4
#define convert_vf convert_float4
#define convert_vi convert_int4
#define as_vf as_float4
#define as_vi as_int4
#define IOTA ((vi)(0, 1, 2, 3))
#else
#error "FA_VW must be 4, 8 or 16"
#endif

/* Lane max and lane sum: OP over the halves of the vector down to one lane (float16 -> 8 -> 4 -> 2 -> 1). */
#if FA_VW == 16
#define HALVE_TO_8(OP, v) OP((v).lo, (v).hi)
#else
#define HALVE_TO_8(OP, v) (v)
#endif
#if FA_VW >= 8
#define HALVE_TO_4(OP, v8) OP((v8).lo, (v8).hi)
#else
#define HALVE_TO_4(OP, v8) (v8)
#endif
#define ADD(a, b) ((a) + (b))
#define LANE_REDUCE(NAME, OP)                                                                                    \
    static inline float NAME(vf v)                                                                              \
    {                                                                                                           \
        const float4 v4 = HALVE_TO_4(OP, HALVE_TO_8(OP, v));                                                    \
        const float2 v2 = OP(v4.lo, v4.hi);                                                                     \
        return OP(v2.x, v2.y);                                                                                  \
    }
LANE_REDUCE(hmax, fmax)
LANE_REDUCE(hsum, ADD)

/*
 * 2^x for the softmax (x <= 0 after the row max is taken off), as cpu/simd/cpu_simd_impl.c vexp2_nonpos: r =
 * rint(x), 2^(x - r) by a degree-6 polynomial (under 1 ulp), times 2^r built in the exponent bits. Lanes below
 * 2^-125 (masked scores, -inf) are exactly 0 and never subnormal; a NaN stays NaN. PoCL's exp2 (SLEEF) handles
 * the whole range and costs more vector ops; the softmax is a sixth of the arithmetic at d64.
 */
static inline vf vexp2_nonpos(vf x)
{
    const vi keep = ~(x < (vf)(-125.0f)); /* all ones where kept: x >= -125 or NaN */
    x = select(x, (vf)(-125.0f), x < (vf)(-125.0f));
    /* round to nearest by the 1.5 * 2^23 trick (exact for |x| < 2^22): PoCL's rint is not one instruction */
    const vf r = (x + (vf)(12582912.0f)) - (vf)(12582912.0f), g = x - r;
    vf e = (vf)(1.5345803694799542e-04f);
    e = fma(e, g, (vf)(1.3399930903688073e-03f));
    e = fma(e, g, (vf)(9.6184890717267990e-03f));
    e = fma(e, g, (vf)(5.5503286421298980e-02f));
    e = fma(e, g, (vf)(2.4022646248340607e-01f));
    e = fma(e, g, (vf)(6.9314718246459960e-01f));
    e = fma(e, g, (vf)(1.0f));
    e *= as_vf((convert_vi(r) + 127) << 23);
    return as_vf(as_vi(e) & keep);
}

/*
 * Register blocks: RB rows x 2 vectors of accumulators (S: 2 key vectors; O: 2 value-column vectors), i.e. 16
 * zmm accumulators at RB 8, plus 2 loads and a broadcast, inside AVX-512's 32 registers.
 */
#ifndef FA_RB
#define FA_RB 8
#endif
#define RB FA_RB
#define CW (2 * FA_VW)                            /* columns of one register block */
#define DVP ((FA_DV + CW - 1) / CW * CW)          /* V and O columns, padded to whole blocks */
#define TILE_FLOATS (FA_DQK * FA_BKV + FA_BKV * DVP) /* one packed tile: K^T panel, then V */
#define NEG_INF (-INFINITY)
/* a whole vector of a private tile (offsets are multiples of FA_VW floats from a vf array: aligned) */
#define PLD(ptr) (*(const vf *)(ptr))
#define PST(ptr, x) (*(vf *)(ptr) = (x))

#if FA_BQ % RB
#error "FA_BQ must be a multiple of FA_RB"
#endif
#if FA_BKV % CW
#error "FA_BKV must be a multiple of 2 * FA_VW"
#endif

#if FA_SOFTCAP
#define QSCALE 1.0f
#else
#define QSCALE (p.scale * M_LOG2E_F)
#endif

/* This sequence's lengths and first rows (metadata clamped, not trusted), as fwd.cl. */
#define SEQ_BOUNDS()                                                                                             \
    int sq = p.seqlen_q, sk = p.seqlen_k;                                                                       \
    long qrow0 = 0, krow0 = 0;                                                                                  \
    if (FA_VARLEN) {                                                                                            \
        __global const int *cq = cu_q + p.cu_q_off;                                                             \
        qrow0 = min(max(cq[b], 0), p.total_q);                                                                  \
        sq = min(min(max(cq[b + 1] - cq[b], 0), p.seqlen_q), p.total_q - (int)qrow0);                           \
    }                                                                                                           \
    if (p.has_cu_k) {                                                                                           \
        __global const int *ck = cu_k + p.cu_k_off;                                                             \
        sk = min(max(ck[b + 1] - ck[b], 0), p.seqlen_k);                                                        \
        if (!FA_PAGED) krow0 = min(max(ck[b], 0), p.total_k), sk = min(sk, p.total_k - (int)krow0);             \
    }                                                                                                           \
    if (p.has_seqused) sk = min(max(seqused_k[p.seqused_off + b], 0), p.seqlen_k);                              \
    if (!FA_PAGED && p.has_seqused && p.has_cu_k) sk = min(sk, p.total_k - (int)krow0);

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
fa_fwd_cpu_pack(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global fa_t *out,
                __global float *lse, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
                __global const int *seqused_k, __global const int *block_table, __global float *o_part,
                __global float *lse_part, const fa_cl_fwd_params p)
{
    const int t = (int)get_group_id(0), hk = (int)get_group_id(1), b = (int)get_group_id(2);
    SEQ_BOUNDS();
    const int j0 = t * FA_BKV;
    if (j0 >= sk) return; /* the forward never reads a tile past the keys */
    const int ntk = (int)get_num_groups(0);
    __global float *kt = o_part + p.part_o_off + (((long)b * p.heads_kv + hk) * ntk + t) * TILE_FLOATS;
    __global float *vp = kt + FA_DQK * FA_BKV;
#if FA_PAGED
    /* pages (pages, page_size, heads, dim) through this sequence's block-table row, as key_row in fwd.cl */
    __global const int *pages = block_table + p.bt_off + (long)b * p.bt_stride;
    __global const fa_t *kg = k + p.k_off + hk * p.k_sh, *vg = v + p.v_off + hk * p.v_sh;
#else
    __global const fa_t *kg = k + p.k_off + (p.has_cu_k ? 0 : b * p.k_sb) + krow0 * p.k_ss + hk * p.k_sh;
    __global const fa_t *vg = v + p.v_off + (p.has_cu_k ? 0 : b * p.v_sb) + krow0 * p.v_ss + hk * p.v_sh;
#endif
    for (int r = 0; r < FA_BKV; r++) {
        const int j = j0 + r, in = j < sk;
#if FA_PAGED
        /* a bad table entry reads a real page, never out of bounds; keys past the sequence read no entry */
        const int page = in ? min(max(pages[j / p.page_size], 0), p.num_pages - 1) : 0;
        __global const fa_t *krow = kg + (long)page * p.k_sp + (long)(j % p.page_size) * p.k_ss;
        __global const fa_t *vrow = vg + (long)page * p.v_sp + (long)(j % p.page_size) * p.v_ss;
#else
        __global const fa_t *krow = kg + (long)j * p.k_ss, *vrow = vg + (long)j * p.v_ss;
#endif
        for (int d = 0; d < FA_DQK; d++) kt[d * FA_BKV + r] = in ? ld1(krow, d) : 0.0f;
        for (int d = 0; d < DVP; d++) vp[r * DVP + d] = in && d < FA_DV ? ld1(vrow, d) : 0.0f;
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
fa_fwd_cpu(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global fa_t *out,
           __global float *lse, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
           __global const int *seqused_k, __global const int *block_table, __global float *o_part,
           __global float *lse_part, const fa_cl_fwd_params p)
{
    /* last query blocks first: under a causal mask they have the most tiles, so the short ones fill the tail */
    const int qb = (int)(get_num_groups(0) - 1 - get_group_id(0));
    const int h = (int)get_group_id(1), hk = h / (p.heads_q / p.heads_kv), b = (int)get_group_id(2);
    SEQ_BOUNDS();
    const int q0 = qb * FA_BQ;
    if (q0 >= sq) return; /* the grid covers the longest sequence (one work-item: no barrier to skip) */
    const int nr = min(FA_BQ, sq - q0), offset = sk - sq;
    const int ntk = (p.seqlen_k + FA_BKV - 1) / FA_BKV;
    __global const float *packed = o_part + p.part_o_off + ((long)b * p.heads_kv + hk) * ntk * TILE_FLOATS;

    /* keys any row of this block can see (long: a huge window cannot wrap) */
    int lo = 0, hi = sk;
    if (FA_LOCAL && p.window_left >= 0) lo = (int)max(0L, (long)q0 + offset - p.window_left);
    if (FA_LOCAL && p.window_right >= 0) hi = (int)min((long)sk, (long)q0 + nr - 1 + offset + p.window_right + 1);
    lo = lo / FA_BKV * FA_BKV;

    /*
     * Private, on a CPU device the work-item's stack. The score and output tiles are vector arrays, read and
     * written through PLD / PST: PoCL 5's vstore16 to a private float pointer became four 128-bit stores.
     */
    float qs[FA_BQ * FA_DQK] __attribute__((aligned(64)));
    vf sv[FA_BQ * FA_BKV / FA_VW], ov[FA_BQ * DVP / FA_VW];
    float *s = (float *)sv, *o = (float *)ov; /* scalar views: P broadcasts, the output */
    float m[FA_BQ], l[FA_BQ];

    __global const fa_t *qg = q + p.q_off + (FA_VARLEN ? 0 : b * p.q_sb) + qrow0 * p.q_ss + (long)h * p.q_sh;
    const float qscale = QSCALE;
    for (int r = 0; r < FA_BQ; r++) {
        for (int d = 0; d < FA_DQK; d++)
            qs[r * FA_DQK + d] = r < nr ? ld1(qg + (long)(q0 + r) * p.q_ss, d) * qscale : 0.0f;
        for (int d = 0; d < DVP; d += FA_VW) PST(o + r * DVP + d, (vf)(0.0f));
        m[r] = NEG_INF;
        l[r] = 0.0f;
    }
    float slope = 0.0f; /* base-2 units, as the scores */
#if FA_ALIBI
    if (p.has_alibi) slope = alibi[p.alibi_off + b * p.alibi_sb + h] * M_LOG2E_F;
#endif
    const int nrb = (nr + RB - 1) / RB; /* register blocks holding a row of the sequence */

    for (int j0 = lo; j0 < hi; j0 += FA_BKV) {
        __global const float *kt = packed + (long)(j0 / FA_BKV) * TILE_FLOATS;
        __global const float *vp = kt + FA_DQK * FA_BKV;
        /* whether any (row, key) of this tile is masked: a tile inside every row's window skips the tests */
        int need_mask = j0 + FA_BKV > sk;
#if FA_LOCAL
        need_mask = need_mask || (p.window_right >= 0 && (long)j0 + FA_BKV - 1 - (q0 + offset) > p.window_right) ||
                    (p.window_left >= 0 && (long)(q0 + nr - 1 + offset) - j0 > p.window_left);
#endif
        for (int rb = 0; rb < nrb; rb++) {
            const int r0 = rb * RB;
            /*
             * The key blocks this register block can see: under a causal mask the diagonal tile's upper rows see
             * only its first keys, so blocks past them are neither multiplied (S set to -inf) nor read in P V.
             */
            int cb_hi = FA_BKV / CW, cb_lo = 0;
#if FA_LOCAL
            if (p.window_right >= 0) {
                const long last = (long)q0 + r0 + RB - 1 + offset + p.window_right; /* last key the block sees */
                cb_hi = (int)clamp((last - j0) / CW + 1, 0L, (long)(FA_BKV / CW));
                if (last < j0) cb_hi = 0;
            }
            if (p.window_left >= 0) {
                const long first = (long)q0 + r0 + offset - p.window_left; /* first key the block sees */
                cb_lo = (int)clamp(first > j0 ? (first - j0) / CW : 0L, 0L, (long)cb_hi);
            }
#endif
            /* S = Q K^T: RB rows x 2 key vectors, FA_DQK rank-1 updates from the K^T panel */
            for (int cb = 0; cb < FA_BKV / CW; cb++) {
                vf a[RB][2];
#pragma unroll
                for (int i = 0; i < RB; i++) a[i][0] = a[i][1] = (vf)(0.0f);
                if (cb >= cb_lo && cb < cb_hi) {
                    __global const float *kc = kt + cb * CW;
                    for (int d = 0; d < FA_DQK; d++) {
                        const vf k0 = VLOAD(0, kc + d * FA_BKV), k1 = VLOAD(0, kc + d * FA_BKV + FA_VW);
#pragma unroll
                        for (int i = 0; i < RB; i++) {
                            const vf qv = (vf)(qs[(r0 + i) * FA_DQK + d]);
                            a[i][0] = fma(qv, k0, a[i][0]);
                            a[i][1] = fma(qv, k1, a[i][1]);
                        }
                    }
                } else {
#pragma unroll
                    for (int i = 0; i < RB; i++) a[i][0] = a[i][1] = (vf)(NEG_INF);
                }
#pragma unroll
                for (int i = 0; i < RB; i++) {
                    PST(s + (r0 + i) * FA_BKV + cb * CW, a[i][0]);
                    PST(s + (r0 + i) * FA_BKV + cb * CW + FA_VW, a[i][1]);
                }
            }

            /* softcap, ALiBi, mask (base 2), then the online softmax step, row by row */
            for (int i = 0; i < RB; i++) {
                const int r = r0 + i, diag = q0 + r + offset;
                float *sr = s + r * FA_BKV;
                vf mxv = (vf)(NEG_INF);
                for (int c = cb_lo * CW; c < cb_hi * CW; c += FA_VW) {
                    vf x = PLD(sr + c);
#if FA_SOFTCAP
                    /* natural units for the cap, then base 2 (Q is unscaled) */
                    x *= p.scale;
                    if (p.softcap > 0.0f) x = p.softcap * tanh(x / p.softcap);
                    x *= M_LOG2E_F;
#endif
                    const vi jv = (vi)(j0 + c) + IOTA, dj = (vi)(diag) - jv;
#if FA_ALIBI
                    if (slope != 0.0f) x -= slope * fabs(convert_vf(dj));
#endif
                    if (need_mask) {
                        vi masked = jv >= (vi)(sk);
#if FA_LOCAL
                        if (p.window_left >= 0) masked |= dj > (vi)(p.window_left);
                        if (p.window_right >= 0) masked |= -dj > (vi)(p.window_right);
#endif
                        x = select(x, (vf)(NEG_INF), masked);
                    }
                    PST(sr + c, x);
                    mxv = fmax(mxv, x);
                }
                const float mnew = fmax(m[r], hmax(mxv));
                /* an old max of -inf had nothing accumulated: factor 1 (no -inf - -inf) */
                const float alpha = m[r] == NEG_INF ? 1.0f : exp2(m[r] - mnew);
                /* a row with every key so far masked keeps max -inf: exponentiate against 0 so P stays 0 */
                const vf base = (vf)(mnew == NEG_INF ? 0.0f : mnew);
                vf sumv = (vf)(0.0f);
                for (int c = cb_lo * CW; c < cb_hi * CW; c += FA_VW) {
                    const vf pv = vexp2_nonpos(PLD(sr + c) - base);
                    sumv += pv;
                    PST(sr + c, pv);
                }
                l[r] = l[r] * alpha + hsum(sumv);
                m[r] = mnew;
                if (alpha != 1.0f)
                    for (int d = 0; d < DVP; d += FA_VW) PST(o + r * DVP + d, PLD(o + r * DVP + d) * alpha);
            }

            /* O += P V: RB rows x 2 value vectors, one rank-1 update per key this block can see */
            const int jlo = cb_lo * CW, jhi = cb_hi * CW;
            for (int dc = 0; dc < DVP; dc += CW) {
                vf a[RB][2];
#pragma unroll
                for (int i = 0; i < RB; i++) {
                    a[i][0] = PLD(o + (r0 + i) * DVP + dc);
                    a[i][1] = PLD(o + (r0 + i) * DVP + dc + FA_VW);
                }
                for (int j = jlo; j < jhi; j++) {
                    const vf v0 = VLOAD(0, vp + j * DVP + dc), v1 = VLOAD(0, vp + j * DVP + dc + FA_VW);
#pragma unroll
                    for (int i = 0; i < RB; i++) {
                        const vf pv = (vf)(s[(r0 + i) * FA_BKV + j]);
                        a[i][0] = fma(pv, v0, a[i][0]);
                        a[i][1] = fma(pv, v1, a[i][1]);
                    }
                }
#pragma unroll
                for (int i = 0; i < RB; i++) {
                    PST(o + (r0 + i) * DVP + dc, a[i][0]);
                    PST(o + (r0 + i) * DVP + dc + FA_VW, a[i][1]);
                }
            }
        }
    }

    __global fa_t *og = out + p.o_off + (FA_VARLEN ? 0 : b * p.o_sb) + qrow0 * p.o_ss + (long)h * p.o_sh;
    for (int r = 0; r < nr; r++) {
        const float sum = l[r];
        __global fa_t *orow = og + (long)(q0 + r) * p.o_ss;
        /* a division, not a reciprocal times o: one rounding, as fwd.cl; a row that saw no key writes 0 */
        for (int d = 0; d < FA_DV; d++) st1(orow + d, sum > 0.0f ? o[r * DVP + d] / sum : 0.0f);
        if (p.has_lse)
            lse[p.lse_off + (FA_VARLEN ? 0 : b * p.lse_sb) + (qrow0 + q0 + r) * p.lse_ss + h * p.lse_sh] =
                sum > 0.0f ? m[r] * M_LN2_F + log(sum) : NEG_INF; /* m is in base 2 */
    }
}
