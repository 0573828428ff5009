/*
 * Exact FlashAttention-2 backward for OpenCL C 1.2 (PoCL, NVIDIA, any conformant device): dQ, dK and dV by
 * recomputation (nothing N x N is stored), fp32 arithmetic with fp32/fp16/bf16 storage, deterministic by
 * construction: no atomics (OpenCL 1.2 has no float atomics), every output element has one owner that sums in a
 * fixed order, so the gradients are the same bits run after run.
 *
 * With s = q.k, x = scale s (then softcap: x = c tanh(x / c); ALiBi: x -= slope |i + sk - sq - j|; masked: -inf):
 *   P = exp(x - LSE), dP = dO V^T, dS = P (dP M - D) softcap'(x), D_i = sum_d dO_id O_id,
 *   dV = (P M)^T dO, dK = scale dS^T Q, dQ = scale dS K, softcap' = 1 - tanh^2 (1 without a softcap),
 *   M = the dropout multipliers (0 dropped, 1 / (1 - p) kept; 1 without dropout), elementwise.
 *
 * The host prepends fa_cl_bwd_params.h (fa_cl_bwd_params, fa_cl_i64) and defines, always:
 *   FA_DTYPE        storage of q/k/v/out/dout/dq/dk/dv: 0 fp32, 1 fp16 (vload_half / vstore_half_rte, no
 *                   cl_khr_fp16 needed), 2 bf16 (ushort, round to nearest even), as fwd.cl
 *   FA_DQK, FA_DV   the tensors' head dims (1-256; they may differ)
 *   FA_BQ, FA_BKV   query rows per Q block, keys per K/V block (both kernels use the same two)
 *   FA_WG           work-items per work-group
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL   1: softcap / ALiBi / causal-or-window code compiled in (0: absent)
 *   FA_VARLEN       q-like tensors (total_q, heads, dim) with cu_q and lse (heads_q, total_q); k-like tensors
 *                   (total_k, heads, dim) with cu_k (has_cu_k)
 *   FA_L16          1 (16-bit storage only): the Q, K, V, dO tiles in local memory keep the 16-bit values (exact),
 *                   widened as they are read; the host sets it for head dims above 128, where fp32 tiles would
 *                   not fit 48 KB. 0: fp32 tiles (no conversion in the inner loops).
 *   FA_DROPOUT      1: dropout with the forward's mask (fa_dropout_keep, api/fa_philox.h); 0: no code
 * Paged KV and KV append are not taken (the selector declines them).
 *
 * Valid tiles (anything else is an #error):
 *   FA_WG in {64, 128, 256}: TY = FA_WG / 16 row groups of 16 lanes
 *   FA_BQ, FA_BKV in {16, 32, 64}, and FA_BQ / TY, FA_BKV / TY in {1, 2, 4, 8}
 *
 * Kernels, launched in this order on one queue:
 *   fa_bwd_pre_cl   one work-item per (query row, query head, batch): D and the row's LSE into the fp32
 *                   workspace (LSE -inf, a row that saw no key, is stored as +inf so that P = exp(x - LSE) = 0
 *                   without a test). NDRange (ceil(seqlen_q / 64) * 64, heads_q, batch), local (64, 1, 1).
 *   fa_bwd_dkdv_cl  one work-group per (KV block, KV head, batch): K and V of the block stay in local memory; it
 *                   walks every query head of the KV head's group and every Q block that sees the block (Q, dO
 *                   staged per step), so GQA/MQA sums happen inside the work-group (one owner per dK/dV element).
 *                   Keys past seqused_k but inside the sequence's rows get dK = dV = 0.
 *                   NDRange (ceil(seqlen_k / FA_BKV) * FA_WG, heads_kv, batch), local (FA_WG, 1, 1).
 *   fa_bwd_dq_cl    one work-group per (Q block, query head, batch): Q, dO and the rows' LSE and D stay; it
 *                   walks the visible K/V blocks and sums dS K in registers.
 *                   NDRange (ceil(seqlen_q / FA_BQ) * FA_WG, heads_q, batch), local (FA_WG, 1, 1).
 *
 * Work-items (ty, tx) = (lid / 16, lid % 16). The dK/dV kernel: work-item (ty, tx) computes S^T = K Q^T and
 * dP^T = V dO^T for keys ty + TY i (i < KPT = FA_BKV / TY) and queries tx + 16 c (c < FA_BQ / 16), writes P^T
 * and dS^T to local memory, then accumulates dV and dK for the same keys and columns 4 tx + 64 c (float4s;
 * P^T and dS^T rows broadcast across the row group). The dQ kernel is the same with rows and keys swapped: S and
 * dP for rows ty + TY i (i < RPT = FA_BQ / TY) and keys tx + 16 c, dS to local memory, dQ for rows ty + TY i and
 * columns 4 tx + 64 c. Tiles are staged zero-filled past the sequence and the head dims, so padding adds 0.
 * Dropout: one Philox call gives four consecutive keys of one query row, so the work-group draws a step's (or
 * tile's) multipliers together into the P^T (dQ kernel: dS) buffer while Q and dO (K and V) are staged; after
 * the barrier each work-item reads its own elements' multipliers and overwrites them with P M (dS).
 *
 * Local memory, bytes (static; cl_bwd_local_bytes on the host computes the same):
 *   DQK4 = 4 ceil(FA_DQK / 4), DV4 likewise
 *   KSTR = DQK4 + (DQK4 / 4 even ? 4 : 0), VSTR likewise: rows read only by dot products (odd float4 count)
 *   QWSTR = 64 ceil(FA_DQK / 64) + 4, VWSTR = 64 ceil(FA_DV / 64) + 4: rows also read as columns 4 tx + 64 c
 *   E = 2 with FA_L16, else 4 (bytes per staged element; P^T, dS^T and dS are always fp32)
 *   dK/dV kernel: E (FA_BKV KSTR + FA_BKV VSTR + FA_BQ QWSTR + FA_BQ VWSTR) + 4 (2 FA_BKV (FA_BQ + 4))
 *   dQ kernel:    E (FA_BQ KSTR + FA_BQ VSTR + FA_BKV QWSTR + FA_BKV VSTR) + 4 (FA_BQ (FA_BKV + 4))
 *   e.g. fp32 tiles: d64 16x16 19968 / 18688, d128 16x16 36352 / 35072, d160 16x16 48640 / 45312; 16-bit tiles
 *   (FA_L16): d256 16x16 35840 / 34560. NVIDIA's OpenCL gives a work-group 48 KB (49152), so there fp32 takes head
 *   dims up to 160 and fp16/bf16 up to 256.
 *
 * PoCL 3.1 (see fwd.cl): no early return before barriers (work-groups with nothing to do run empty loops), and
 * no helper function touches local memory (every local access is in the kernel bodies).
 */

/* fa_t, ld1/ld4/st1/st4/load4, bf16_rne, comp and drop_philox: common.cl, which the host puts before this file */

#define TY (FA_WG / 16)
#define KPT (FA_BKV / TY)            /* dK/dV kernel: keys per work-item */
#define NQ (FA_BQ / 16)              /* dK/dV kernel: queries per work-item in S^T */
#define RPT (FA_BQ / TY)             /* dQ kernel: rows per work-item */
#define NC (FA_BKV / 16)             /* dQ kernel: keys per work-item in S */
#define DQK4 ((FA_DQK + 3) / 4 * 4)
#define DV4 ((FA_DV + 3) / 4 * 4)
#define NDK ((FA_DQK + 63) / 64)     /* float4 column groups of dK / dQ per work-item */
#define NDV ((FA_DV + 63) / 64)      /* of dV */
#define KSTR (DQK4 + ((DQK4 / 4) % 2 ? 0 : 4))
#define VSTR (DV4 + ((DV4 / 4) % 2 ? 0 : 4))
#define QWSTR (64 * NDK + 4)
#define VWSTR (64 * NDV + 4)
#define PTSTR (FA_BQ + 4)
#define DSSTR (FA_BKV + 4)
#define KSTR4 (KSTR / 4)
#define VSTR4 (VSTR / 4)
#define QWSTR4 (QWSTR / 4)
#define VWSTR4 (VWSTR / 4)
#define PTSTR4 (PTSTR / 4)
#define DSSTR4 (DSSTR / 4)
#define NEG_INF (-INFINITY)
#define POS_INF (INFINITY)

#if FA_WG != 64 && FA_WG != 128 && FA_WG != 256
#error "FA_WG must be 64, 128 or 256"
#endif
#if (FA_BQ != 16 && FA_BQ != 32 && FA_BQ != 64) || (FA_BKV != 16 && FA_BKV != 32 && FA_BKV != 64)
#error "FA_BQ and FA_BKV must be 16, 32 or 64"
#endif
#if FA_BKV % TY || (KPT != 1 && KPT != 2 && KPT != 4 && KPT != 8)
#error "FA_BKV must be FA_WG / 16 times 1, 2, 4 or 8"
#endif
#if FA_BQ % TY || (RPT != 1 && RPT != 2 && RPT != 4 && RPT != 8)
#error "FA_BQ must be FA_WG / 16 times 1, 2, 4 or 8"
#endif
#if FA_DQK < 1 || FA_DQK > 256 || FA_DV < 1 || FA_DV > 256
#error "head dims must be 1-256"
#endif

/*
 * Local tiles of Q, K, V and dO: fp32 (float4), or with FA_L16 the 16-bit storage values themselves (ushort4 of
 * raw fp16/bf16 bits: exact, half the bytes), widened to fp32 as they are read (LD_L). Reads are macros and
 * every local access is in the kernel bodies (see tile_raw).
 */
#if FA_L16 && FA_DTYPE == 0
#error "FA_L16 is for 16-bit storage"
#endif
#if FA_L16
typedef ushort4 lt4;
#if FA_DTYPE == 1
#define LD_L(arr, i) vload_half4((i), (__local const half *)(arr))
#else
#define LD_L(arr, i) as_float4(convert_uint4((arr)[i]) << 16)
#endif
#else
typedef float4 lt4;
#define LD_L(arr, i) ((arr)[i])
#endif

/*
 * Element group c of a tile of rows [r0, r0 + n) of a (seq, dim) slice, as local tiles hold it: row c / cols4,
 * column group c % cols4; zeros past `valid` rows and `real` columns. Returns the value and the kernel stores
 * it: helpers never touch local memory, because PoCL 3.1 keeps a helper that is not inlined as a call and, once
 * LLVM has folded a __local array into it as a constant, the helper accesses a static copy of the array instead
 * of the work-group's local memory (fwd.cl).
 */
static inline lt4 tile_raw(int c, int cols4, int real, __global const fa_t *base, long stride, int r0, int valid)
{
    const int r = c / cols4, x = (c % cols4) * 4;
#if FA_L16
    if (r0 + r >= valid || x >= real) return (ushort4)(0);
    __global const ushort *row = (__global const ushort *)(base + (long)(r0 + r) * stride);
    if (x + 4 <= real) return vload4(0, row + x);
    ushort4 v = (ushort4)(0);
    v.x = row[x];
    if (x + 1 < real) v.y = row[x + 1];
    if (x + 2 < real) v.z = row[x + 2];
    return v;
#else
    if (r0 + r >= valid || x >= real) return (float4)(0.0f);
    return load4(base + (long)(r0 + r) * stride, x, real);
#endif
}

#if FA_DROPOUT
/* Multipliers of keys 4 j4 .. 4 j4 + 3 for query row i of (batch b, query head h): 0 or keep_scale. */
static inline float4 drop_mul4(uint j4, uint i, uint b, uint h, uint ctr3, uint k0, uint k1, uint threshold,
                               float keep)
{
    const uint4 w = drop_philox((uint4)(j4, i, (b << 16) + h, ctr3), k0, k1);
    return (float4)(w.x < threshold ? 0.0f : keep, w.y < threshold ? 0.0f : keep, w.z < threshold ? 0.0f : keep,
                    w.w < threshold ? 0.0f : keep);
}
#endif

static inline float dot4(float4 a, float4 b, float acc)
{
    acc = fma(a.x, b.x, acc);
    acc = fma(a.y, b.y, acc);
    acc = fma(a.z, b.z, acc);
    return fma(a.w, b.w, acc);
}

/*
 * One sequence's lengths and first rows (device metadata clamped, not trusted), as fwd.cl and bwd_sm80.cu:
 * sq query rows from qrow0; sk keys used from krow0; nk >= sk k/v rows that get dK/dV (rows in [sk, nk), past
 * seqused_k, get zeros). Declares sq, sk, nk, qrow0, krow0 in the kernel's scope.
 */
#define SEQ_INFO(b)                                                                                             \
    int sq = p.seqlen_q, sk = p.seqlen_k, nk;                                                                   \
    long qrow0 = 0, krow0 = 0;                                                                                  \
    if (FA_VARLEN) {                                                                                            \
        __global const int *cq_ = cu_q + p.cu_q_off;                                                            \
        qrow0 = min(max(cq_[b], 0), p.total_q);                                                                 \
        sq = min(min(max(cq_[(b) + 1] - cq_[b], 0), p.seqlen_q), p.total_q - (int)qrow0);                       \
    }                                                                                                           \
    if (p.has_cu_k) {                                                                                           \
        __global const int *ck_ = cu_k + p.cu_k_off;                                                            \
        krow0 = min(max(ck_[b], 0), p.total_k);                                                                 \
        sk = min(min(max(ck_[(b) + 1] - ck_[b], 0), p.seqlen_k), p.total_k - (int)krow0);                       \
    }                                                                                                           \
    nk = sk;                                                                                                    \
    if (p.has_seqused) {                                                                                        \
        sk = min(max(seqused_k[p.seqused_off + (b)], 0), p.seqlen_k);                                           \
        if (p.has_cu_k) sk = min(sk, p.total_k - (int)krow0);                                                   \
        nk = max(nk, sk);                                                                                       \
    }

/* Workspace row of query row 0 of (sequence b, query head h): dense (b, h, i), varlen (h, qrow0 + i). */
#define WS_ROW0(b, h) (FA_VARLEN ? (long)(h) * p.total_q + qrow0 : ((long)(b) * p.heads_q + (h)) * p.seqlen_q)

/*
 * x from the raw dot product s of query row i (diagonal key diag = i + sk - sq) and key j: scale, softcap
 * (dfac = its derivative factor), ALiBi, mask. As fwd.cl's score code.
 */
#if FA_SOFTCAP
#define SOFTCAP_(x, dfac)                                                                                       \
    if (p.softcap > 0.0f) {                                                                                     \
        const float th_ = tanh((x) / p.softcap);                                                                \
        x = p.softcap * th_;                                                                                    \
        dfac = 1.0f - th_ * th_;                                                                                \
    }
#else
#define SOFTCAP_(x, dfac)
#endif
#if FA_ALIBI
#define ALIBI_(x, slope, diag, j) if ((slope) != 0.0f) x -= (slope) * fabs((float)((diag) - (j)));
#else
#define ALIBI_(x, slope, diag, j)
#endif
#if FA_LOCAL
#define WINDOW_MASKED(diag, j)                                                                                  \
    ((p.window_left >= 0 && (diag) - (j) > p.window_left) || (p.window_right >= 0 && (j) - (diag) > p.window_right))
#else
#define WINDOW_MASKED(diag, j) 0
#endif

/* ------------------------------------------------------------------ D and LSE */

__kernel __attribute__((reqd_work_group_size(64, 1, 1))) void
fa_bwd_pre_cl(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global const fa_t *out,
              __global const fa_t *dout, __global const float *lse, __global fa_t *dq, __global fa_t *dk,
              __global fa_t *dv, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
              __global const int *seqused_k, __global float *ws, const fa_cl_bwd_params p)
{
    const int i = (int)get_global_id(0), h = (int)get_group_id(1), b = (int)get_group_id(2);
    SEQ_INFO(b)
    if (i < sq) {
        __global const fa_t *o = out + p.o_off + (FA_VARLEN ? 0 : b * p.o_sb) + (qrow0 + i) * p.o_ss + h * p.o_sh;
        __global const fa_t *g = dout + p.do_off + (FA_VARLEN ? 0 : b * p.do_sb) + (qrow0 + i) * p.do_ss + h * p.do_sh;
        float acc = 0.0f;
        for (int x = 0; x < FA_DV; x += 4) acc = dot4(load4(o, x, FA_DV), load4(g, x, FA_DV), acc);
        const float l = lse[p.lse_off + (FA_VARLEN ? 0 : b * p.lse_sb) + (qrow0 + i) * p.lse_ss + h * p.lse_sh];
        const long row = p.ws_off + WS_ROW0(b, h) + i;
        ws[row] = acc;
        ws[row + p.ws_rows] = l == NEG_INF ? POS_INF : l;
    }
}

/* ------------------------------------------------------------------ dK, dV */

__kernel __attribute__((reqd_work_group_size(FA_WG, 1, 1))) void
fa_bwd_dkdv_cl(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global const fa_t *out,
               __global const fa_t *dout, __global const float *lse, __global fa_t *dq, __global fa_t *dk,
               __global fa_t *dv, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
               __global const int *seqused_k, __global float *ws, const fa_cl_bwd_params p)
{
    __local lt4 ks4[FA_BKV * KSTR4];   /* K of the block: FA_BKV x KSTR */
    __local lt4 vs4[FA_BKV * VSTR4];   /* V of the block: FA_BKV x VSTR */
    __local lt4 qs4[FA_BQ * QWSTR4];   /* Q of the step: FA_BQ x QWSTR */
    __local lt4 dos4[FA_BQ * VWSTR4];  /* dO of the step: FA_BQ x VWSTR */
    __local float4 pt4[FA_BKV * PTSTR4];  /* P^T of the step: FA_BKV x PTSTR */
    __local float4 dst4[FA_BKV * PTSTR4]; /* dS^T of the step */
    __local float *pt = (__local float *)pt4;
    __local float *dst = (__local float *)dst4;

    const int kb = (int)get_group_id(0), hk = (int)get_group_id(1), b = (int)get_group_id(2);
    const int group = p.heads_q / p.heads_kv;
    const int lid = (int)get_local_id(0), tx = lid % 16, ty = lid / 16;
    SEQ_INFO(b)
    const int offset = sk - sq, j0 = kb * FA_BKV;

    /*
     * Query rows that see any key of this block ([j0, min(j0 + FA_BKV, sk))); whole Q blocks outside are never
     * loaded. A block past the used keys (seqused_k) or past the sequence runs no step: it only writes its
     * zeros (rows < nk). No early return (PoCL 3.1, see the header).
     */
    const int jlast = min(j0 + FA_BKV, sk) - 1;
    long lo = 0, hi = sq;
    if (FA_LOCAL && p.window_right >= 0) lo = max(0L, (long)j0 - offset - p.window_right);
    if (FA_LOCAL && p.window_left >= 0) hi = min((long)sq, (long)jlast - offset + p.window_left + 1);
    lo = lo / FA_BQ * FA_BQ;
    const int nqb = j0 < sk && hi > lo ? (int)((hi - lo + FA_BQ - 1) / FA_BQ) : 0;
    const int steps = nqb * group; /* step = (query head of the group, Q block), head-major */

    __global const fa_t *kg = k + p.k_off + (p.has_cu_k ? 0 : b * p.k_sb) + krow0 * p.k_ss + hk * p.k_sh;
    __global const fa_t *vg = v + p.v_off + (p.has_cu_k ? 0 : b * p.v_sb) + krow0 * p.v_ss + hk * p.v_sh;
    if (steps > 0) {
        for (int c = lid; c < FA_BKV * (DQK4 / 4); c += FA_WG)
            ks4[c / (DQK4 / 4) * KSTR4 + c % (DQK4 / 4)] = tile_raw(c, DQK4 / 4, FA_DQK, kg, p.k_ss, j0, sk);
        for (int c = lid; c < FA_BKV * (DV4 / 4); c += FA_WG)
            vs4[c / (DV4 / 4) * VSTR4 + c % (DV4 / 4)] = tile_raw(c, DV4 / 4, FA_DV, vg, p.v_ss, j0, sk);
    }

    float4 dka[KPT][NDK], dva[KPT][NDV];
#pragma unroll
    for (int i = 0; i < KPT; i++) {
#pragma unroll
        for (int c = 0; c < NDK; c++) dka[i][c] = (float4)(0.0f);
#pragma unroll
        for (int c = 0; c < NDV; c++) dva[i][c] = (float4)(0.0f);
    }

    for (int it = 0; it < steps; it++) {
        const int h = hk * group + it / nqb, i0 = (int)lo + (it % nqb) * FA_BQ;
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous step's Q, dO, P^T, dS^T are no longer read */
        {
            __global const fa_t *qg = q + p.q_off + (FA_VARLEN ? 0 : b * p.q_sb) + qrow0 * p.q_ss + h * p.q_sh;
            __global const fa_t *gg = dout + p.do_off + (FA_VARLEN ? 0 : b * p.do_sb) + qrow0 * p.do_ss + h * p.do_sh;
            for (int c = lid; c < FA_BQ * 16 * NDK; c += FA_WG)
                qs4[c / (16 * NDK) * QWSTR4 + c % (16 * NDK)] = tile_raw(c, 16 * NDK, FA_DQK, qg, p.q_ss, i0, sq);
            for (int c = lid; c < FA_BQ * 16 * NDV; c += FA_WG)
                dos4[c / (16 * NDV) * VWSTR4 + c % (16 * NDV)] = tile_raw(c, 16 * NDV, FA_DV, gg, p.do_ss, i0, sq);
        }
#if FA_DROPOUT
        /* the step's multipliers into P^T: query r, keys 4 j4 .. + 3 (j0 is a multiple of 16: no straddling) */
        for (int c = lid; c < FA_BQ * (FA_BKV / 4); c += FA_WG) {
            const int r = c / (FA_BKV / 4), j4 = c % (FA_BKV / 4);
            float4 mul = (float4)(0.0f);
            if (i0 + r < sq)
                mul = drop_mul4((uint)(j0 / 4 + j4), (uint)(i0 + r), (uint)b, (uint)h, p.drop_ctr3, p.drop_k0,
                                p.drop_k1, p.drop_threshold, p.keep_scale);
            pt[(4 * j4) * PTSTR + r] = mul.x;
            pt[(4 * j4 + 1) * PTSTR + r] = mul.y;
            pt[(4 * j4 + 2) * PTSTR + r] = mul.z;
            pt[(4 * j4 + 3) * PTSTR + r] = mul.w;
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE); /* Q and dO (and, the first time, K and V) visible */

        /* S^T = K Q^T and dP^T = V dO^T for keys ty + TY i, queries tx + 16 c */
        float s[KPT][NQ], dp[KPT][NQ];
#pragma unroll
        for (int i = 0; i < KPT; i++)
#pragma unroll
            for (int c = 0; c < NQ; c++) s[i][c] = dp[i][c] = 0.0f;
#pragma unroll 4
        for (int k4 = 0; k4 < DQK4 / 4; k4++) {
            float4 kv[KPT], qv[NQ];
#pragma unroll
            for (int i = 0; i < KPT; i++) kv[i] = LD_L(ks4, (ty + TY * i) * KSTR4 + k4);
#pragma unroll
            for (int c = 0; c < NQ; c++) qv[c] = LD_L(qs4, (tx + 16 * c) * QWSTR4 + k4);
#pragma unroll
            for (int i = 0; i < KPT; i++)
#pragma unroll
                for (int c = 0; c < NQ; c++) s[i][c] = dot4(kv[i], qv[c], s[i][c]);
        }
#pragma unroll 4
        for (int k4 = 0; k4 < DV4 / 4; k4++) {
            float4 vv[KPT], gv[NQ];
#pragma unroll
            for (int i = 0; i < KPT; i++) vv[i] = LD_L(vs4, (ty + TY * i) * VSTR4 + k4);
#pragma unroll
            for (int c = 0; c < NQ; c++) gv[c] = LD_L(dos4, (tx + 16 * c) * VWSTR4 + k4);
#pragma unroll
            for (int i = 0; i < KPT; i++)
#pragma unroll
                for (int c = 0; c < NQ; c++) dp[i][c] = dot4(vv[i], gv[c], dp[i][c]);
        }

        /* P and dS; rows past the sequence have LSE +inf and D 0 (their Q and dO are zeros): P = dS = 0 */
        float slope = 0.0f;
#if FA_ALIBI
        if (p.has_alibi) slope = alibi[p.alibi_off + b * p.alibi_sb + h];
#endif
        const long wrow = p.ws_off + WS_ROW0(b, h);
#pragma unroll
        for (int c = 0; c < NQ; c++) {
            const int qi = i0 + tx + 16 * c, diag = qi + offset;
            const float lrow = qi < sq ? ws[wrow + p.ws_rows + qi] : POS_INF;
            const float drow = qi < sq ? ws[wrow + qi] : 0.0f;
#pragma unroll
            for (int i = 0; i < KPT; i++) {
                const int j = j0 + ty + TY * i;
                float x = s[i][c] * p.scale, dfac = 1.0f;
                SOFTCAP_(x, dfac)
                ALIBI_(x, slope, diag, j)
                if (j >= sk || WINDOW_MASKED(diag, j)) x = NEG_INF;
                const float pv = exp(x - lrow);
                const int at = (ty + TY * i) * PTSTR + tx + 16 * c;
#if FA_DROPOUT
                const float mul = pt[at]; /* drawn above; this work-item's own element */
                pt[at] = pv * mul;
                dst[at] = pv * (dp[i][c] * mul - drow) * dfac;
#else
                pt[at] = pv;
                dst[at] = pv * (dp[i][c] - drow) * dfac;
#endif
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* P^T and dS^T visible */

        /* dV += P^T dO, dK += dS^T Q for keys ty + TY i and columns 4 tx + 64 c */
#pragma unroll 2
        for (int q4 = 0; q4 < FA_BQ / 4; q4++) {
            float4 pv[KPT], sv[KPT];
#pragma unroll
            for (int i = 0; i < KPT; i++) {
                pv[i] = pt4[(ty + TY * i) * PTSTR4 + q4];
                sv[i] = dst4[(ty + TY * i) * PTSTR4 + q4];
            }
#pragma unroll
            for (int e = 0; e < 4; e++) {
#pragma unroll
                for (int c = 0; c < NDV; c++) {
                    const float4 g = LD_L(dos4, (4 * q4 + e) * VWSTR4 + tx + 16 * c);
#pragma unroll
                    for (int i = 0; i < KPT; i++) dva[i][c] = fma((float4)(comp(pv[i], e)), g, dva[i][c]);
                }
#pragma unroll
                for (int c = 0; c < NDK; c++) {
                    const float4 qq = LD_L(qs4, (4 * q4 + e) * QWSTR4 + tx + 16 * c);
#pragma unroll
                    for (int i = 0; i < KPT; i++) dka[i][c] = fma((float4)(comp(sv[i], e)), qq, dka[i][c]);
                }
            }
        }
    }

    /* dK = scale * sum, dV = sum for rows < nk (rows in [sk, nk) and blocks that ran no step: zeros) */
    __global fa_t *dkg = dk + p.dk_off + (p.has_cu_k ? 0 : b * p.dk_sb) + krow0 * p.dk_ss + hk * p.dk_sh;
    __global fa_t *dvg = dv + p.dv_off + (p.has_cu_k ? 0 : b * p.dv_sb) + krow0 * p.dv_ss + hk * p.dv_sh;
#pragma unroll
    for (int i = 0; i < KPT; i++) {
        const int j = j0 + ty + TY * i;
        if (j >= nk) continue;
#pragma unroll
        for (int c = 0; c < NDK; c++) {
            const int x = 4 * tx + 64 * c;
            if (x < FA_DQK) st4(dkg + (long)j * p.dk_ss + x, dka[i][c] * p.scale, FA_DQK - x);
        }
#pragma unroll
        for (int c = 0; c < NDV; c++) {
            const int x = 4 * tx + 64 * c;
            if (x < FA_DV) st4(dvg + (long)j * p.dv_ss + x, dva[i][c], FA_DV - x);
        }
    }
}

/* ------------------------------------------------------------------ dQ */

__kernel __attribute__((reqd_work_group_size(FA_WG, 1, 1))) void
fa_bwd_dq_cl(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global const fa_t *out,
             __global const fa_t *dout, __global const float *lse, __global fa_t *dq, __global fa_t *dk,
             __global fa_t *dv, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
             __global const int *seqused_k, __global float *ws, const fa_cl_bwd_params p)
{
    __local lt4 qs4[FA_BQ * KSTR4];    /* Q of the block: FA_BQ x KSTR */
    __local lt4 dos4[FA_BQ * VSTR4];   /* dO of the block: FA_BQ x VSTR */
    __local lt4 ks4[FA_BKV * QWSTR4];  /* K tile: FA_BKV x QWSTR */
    __local lt4 vs4[FA_BKV * VSTR4];   /* V tile: FA_BKV x VSTR */
    __local float4 ds4[FA_BQ * DSSTR4];   /* dS of the tile: FA_BQ x DSSTR */
    __local float *ds = (__local float *)ds4;

    /* last query blocks first: under a causal mask they have the most tiles */
    const int qb = (int)(get_num_groups(0) - 1 - get_group_id(0));
    const int h = (int)get_group_id(1), b = (int)get_group_id(2), hk = h / (p.heads_q / p.heads_kv);
    const int lid = (int)get_local_id(0), tx = lid % 16, ty = lid / 16;
    SEQ_INFO(b)
    const int offset = sk - sq, q0 = qb * FA_BQ;
    const int live = q0 < sq;
    const int pos_first = q0, pos_last = min(q0 + FA_BQ, sq) - 1;

    /* keys any row of this block can see (as fwd.cl); a block past the sequence runs no tile, writes nothing */
    long lo = 0, hi = sk;
    if (FA_LOCAL && p.window_left >= 0) lo = max(0L, (long)pos_first + offset - p.window_left);
    if (FA_LOCAL && p.window_right >= 0) hi = min((long)sk, (long)pos_last + offset + p.window_right + 1);
    lo = lo / FA_BKV * FA_BKV;
    const int ntiles = live && hi > lo ? (int)((hi - lo + FA_BKV - 1) / FA_BKV) : 0;

    if (ntiles > 0) {
        __global const fa_t *qg = q + p.q_off + (FA_VARLEN ? 0 : b * p.q_sb) + qrow0 * p.q_ss + h * p.q_sh;
        __global const fa_t *gg = dout + p.do_off + (FA_VARLEN ? 0 : b * p.do_sb) + qrow0 * p.do_ss + h * p.do_sh;
        for (int c = lid; c < FA_BQ * (DQK4 / 4); c += FA_WG)
            qs4[c / (DQK4 / 4) * KSTR4 + c % (DQK4 / 4)] = tile_raw(c, DQK4 / 4, FA_DQK, qg, p.q_ss, q0, sq);
        for (int c = lid; c < FA_BQ * (DV4 / 4); c += FA_WG)
            dos4[c / (DV4 / 4) * VSTR4 + c % (DV4 / 4)] = tile_raw(c, DV4 / 4, FA_DV, gg, p.do_ss, q0, sq);
    }

    /* the rows' LSE (+inf: P = 0) and D; rows past the sequence likewise */
    float lrow[RPT], drow[RPT];
    const long wrow = p.ws_off + WS_ROW0(b, h);
#pragma unroll
    for (int i = 0; i < RPT; i++) {
        const int qi = q0 + ty + TY * i;
        lrow[i] = qi < sq ? ws[wrow + p.ws_rows + qi] : POS_INF;
        drow[i] = qi < sq ? ws[wrow + qi] : 0.0f;
    }
    float slope = 0.0f;
#if FA_ALIBI
    if (p.has_alibi) slope = alibi[p.alibi_off + b * p.alibi_sb + h];
#endif

    float4 acc[RPT][NDK];
#pragma unroll
    for (int i = 0; i < RPT; i++)
#pragma unroll
        for (int c = 0; c < NDK; c++) acc[i][c] = (float4)(0.0f);

    __global const fa_t *kg = k + p.k_off + (p.has_cu_k ? 0 : b * p.k_sb) + krow0 * p.k_ss + hk * p.k_sh;
    __global const fa_t *vg = v + p.v_off + (p.has_cu_k ? 0 : b * p.v_sb) + krow0 * p.v_ss + hk * p.v_sh;
    for (int t = 0; t < ntiles; t++) {
        const int j0 = (int)lo + t * FA_BKV;
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's K and dS are no longer read */
        for (int c = lid; c < FA_BKV * 16 * NDK; c += FA_WG)
            ks4[c / (16 * NDK) * QWSTR4 + c % (16 * NDK)] = tile_raw(c, 16 * NDK, FA_DQK, kg, p.k_ss, j0, sk);
        for (int c = lid; c < FA_BKV * (DV4 / 4); c += FA_WG)
            vs4[c / (DV4 / 4) * VSTR4 + c % (DV4 / 4)] = tile_raw(c, DV4 / 4, FA_DV, vg, p.v_ss, j0, sk);
#if FA_DROPOUT
        /* the tile's multipliers into dS: row r, keys 4 j4 .. + 3 */
        for (int c = lid; c < FA_BQ * (FA_BKV / 4); c += FA_WG) {
            const int r = c / (FA_BKV / 4), j4 = c % (FA_BKV / 4);
            float4 mul = (float4)(0.0f);
            if (q0 + r < sq)
                mul = drop_mul4((uint)(j0 / 4 + j4), (uint)(q0 + r), (uint)b, (uint)h, p.drop_ctr3, p.drop_k0,
                                p.drop_k1, p.drop_threshold, p.keep_scale);
            ds4[r * DSSTR4 + j4] = mul;
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE); /* K and V (and, the first time, Q and dO) visible */

        /* S = Q K^T and dP = dO V^T for rows ty + TY i, keys tx + 16 c */
        float s[RPT][NC], dp[RPT][NC];
#pragma unroll
        for (int i = 0; i < RPT; i++)
#pragma unroll
            for (int c = 0; c < NC; c++) s[i][c] = dp[i][c] = 0.0f;
#pragma unroll 4
        for (int k4 = 0; k4 < DQK4 / 4; k4++) {
            float4 qv[RPT], kv[NC];
#pragma unroll
            for (int i = 0; i < RPT; i++) qv[i] = LD_L(qs4, (ty + TY * i) * KSTR4 + k4);
#pragma unroll
            for (int c = 0; c < NC; c++) kv[c] = LD_L(ks4, (tx + 16 * c) * QWSTR4 + k4);
#pragma unroll
            for (int i = 0; i < RPT; i++)
#pragma unroll
                for (int c = 0; c < NC; c++) s[i][c] = dot4(qv[i], kv[c], s[i][c]);
        }
#pragma unroll 4
        for (int k4 = 0; k4 < DV4 / 4; k4++) {
            float4 gv[RPT], vv[NC];
#pragma unroll
            for (int i = 0; i < RPT; i++) gv[i] = LD_L(dos4, (ty + TY * i) * VSTR4 + k4);
#pragma unroll
            for (int c = 0; c < NC; c++) vv[c] = LD_L(vs4, (tx + 16 * c) * VSTR4 + k4);
#pragma unroll
            for (int i = 0; i < RPT; i++)
#pragma unroll
                for (int c = 0; c < NC; c++) dp[i][c] = dot4(gv[i], vv[c], dp[i][c]);
        }

#pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int diag = q0 + ty + TY * i + offset;
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const int j = j0 + tx + 16 * c;
                float x = s[i][c] * p.scale, dfac = 1.0f;
                SOFTCAP_(x, dfac)
                ALIBI_(x, slope, diag, j)
                if (j >= sk || WINDOW_MASKED(diag, j)) x = NEG_INF;
                const float pv = exp(x - lrow[i]);
                const int at = (ty + TY * i) * DSSTR + tx + 16 * c;
#if FA_DROPOUT
                ds[at] = pv * (dp[i][c] * ds[at] - drow[i]) * dfac; /* ds[at]: this element's multiplier */
#else
                ds[at] = pv * (dp[i][c] - drow[i]) * dfac;
#endif
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* dS visible */

        /* dQ += dS K for rows ty + TY i and columns 4 tx + 64 c */
#pragma unroll 2
        for (int j4 = 0; j4 < FA_BKV / 4; j4++) {
            float4 sv[RPT];
#pragma unroll
            for (int i = 0; i < RPT; i++) sv[i] = ds4[(ty + TY * i) * DSSTR4 + j4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
#pragma unroll
                for (int c = 0; c < NDK; c++) {
                    const float4 kk = LD_L(ks4, (4 * j4 + e) * QWSTR4 + tx + 16 * c);
#pragma unroll
                    for (int i = 0; i < RPT; i++) acc[i][c] = fma((float4)(comp(sv[i], e)), kk, acc[i][c]);
                }
            }
        }
    }

    /* dQ = scale * sum for the block's rows of the sequence (a row that sees no key: 0) */
    __global fa_t *dqg = dq + p.dq_off + (FA_VARLEN ? 0 : b * p.dq_sb) + qrow0 * p.dq_ss + h * p.dq_sh;
#pragma unroll
    for (int i = 0; i < RPT; i++) {
        const int qi = q0 + ty + TY * i;
        if (qi >= sq) continue;
#pragma unroll
        for (int c = 0; c < NDK; c++) {
            const int x = 4 * tx + 64 * c;
            if (x < FA_DQK) st4(dqg + (long)qi * p.dq_ss + x, acc[i][c] * p.scale, FA_DQK - x);
        }
    }
}
