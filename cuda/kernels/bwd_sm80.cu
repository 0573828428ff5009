/*
 * FlashAttention-2 backward for sm_80 and later, compiled at run time by NVRTC for one specialisation. Plain
 * CUDA C, no headers (NVRTC has no standard library here). The host defines:
 *   FA_BF16      0: fp16 tensors, 1: bf16
 *   FA_DQK       head dim of q and k, a multiple of 16 (at most 256)
 *   FA_DV        head dim of v, out and dout, a multiple of 16 (at most 256)
 *   FA_DSPLIT    1, or 2 where a head dim exceeds 128 (the host's cuda_bwd_dsplit): the warps that share 16 keys
 *                (dK/dV kernel) or 16 query rows (dQ kernel); each owns one part of the columns of dK and dV (dQ).
 *                16 keys x (FA_DQK + FA_DV) fp32 accumulators are 4 * (FA_DQK + FA_DV) / 8 registers per lane,
 *                256 at d256: more than a thread has. The warps of a pair both compute the whole S^T and dP^T of
 *                their 16 keys (the contraction over the head dims is not split: no partial sums to exchange
 *                through shared memory and no extra barrier, at the cost of computing those two products twice).
 *   FA_WARPS     warps per block
 *   FA_BKV       keys per dK/dV block, 16 * FA_WARPS / FA_DSPLIT (each pair of warps owns 16 keys)
 *   FA_BQ        query rows per step of the dK/dV loop, a multiple of 16 dividing 128
 *   FA_DQ_ATOMIC 1: dQ is added into an fp32 accumulator with atomics (fast, order varies);
 *                0: deterministic, dQ has its own kernel that owns each Q block (no shared sums)
 *   FA_DROPOUT   1: dropout with the forward's mask (api/fa_philox.h): P~ = dropped P / (1 - p) for dV,
 *                dP dropped and scaled likewise before dS = P (dP - D)
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL  1 where the problem has a softcap, ALiBi slopes, a causal or sliding
 *                window (as in the forward); 0 compiles the feature out. The general score code, unrolled over
 *                every element of a step, made the kernel outgrow the instruction cache (ncu: 15 % of stalls
 *                "no instruction" at d128) and cost registers even when the feature was off.
 *   FA_VARLEN    1: q/out/dout/dq are (total_q, heads, dim) with cu_q (lse (heads_q, total_q)); k/v/dk/dv are
 *                (total_k, heads, dim) when cu_k is given. seqused_k (runtime) gives per-sequence key counts:
 *                keys past it (rows of the sequence or of the dense cache) get dK = dV = 0, as on the CPU.
 *
 * Gradients by recomputation (nothing N x N is stored), with s = scale * q.k (softcap applied after):
 *   P = exp2(s * log2e - LSE * log2e), dV = P^T dO, dP = dO V^T, dS = P (dP - D) softcap'(s),
 *   dK = scale dS^T Q, dQ = scale dS K, D_i = sum_d dO_id O_id.
 *
 * Kernels, launched in this order on one stream:
 *   fa_bwd_pre_sm80   one warp per query row: D and LSE * log2e into the workspace (each sequence's rows padded
 *                     to a multiple of 128; see ws_rows below; pad rows and rows whose LSE is -inf get +inf there, so P = 0 without a test); zeroes
 *                     the row's fp32 dQ accumulator (atomic mode).
 *   fa_bwd_dkdv_sm80  one block per (KV block, KV head, batch): K and V stay in shared memory; the block walks
 *                     every query head of the KV head's group and every visible Q block (Q, dO, LSE, D
 *                     double-buffered with cp.async). Each warp owns 16 keys and computes S^T = K Q^T and
 *                     dP^T = V dO^T, so P^T and dS^T sit in accumulators already laid out as the A operand of
 *                     dV += P^T dO and dK += dS^T Q. GQA sums the group inside the block: one owner per dK/dV
 *                     element, no atomics and no per-query-head partials to reduce. In atomic mode dS^T also
 *                     goes to shared memory and the block adds dS K into the dQ accumulator.
 *   fa_bwd_post_sm80  (atomic mode) dQ = scale * accumulator in the tensors' dtype.
 *   fa_bwd_dq_sm80    (deterministic mode) one block per (Q block of FA_BKV rows, query head, batch), walking
 *                     the visible K/V tiles (FA_BQ keys each) in order: dQ += dS K in registers.
 */
#include "common_sm80.cuh" /* types and instruction wrappers shared with fwd_sm80.cu */

struct fa_cuda_bwd_params {
    const u16 *q, *k, *v, *out, *dout;
    const float *lse;                   /* natural log: (batch, heads_q, seqlen_q); varlen (heads_q, total_q) */
    u16 *dq, *dk, *dv;
    const float *alibi;                 /* NULL: none */
    float *delta, *lse2;                /* workspace rows (ws_row), one float each */
    float *dq_acc;                      /* workspace rows of FA_DQK floats; NULL when deterministic */
    i64 q_sb, q_ss, q_sh;               /* strides in elements: batch, seq, head */
    i64 k_sb, k_ss, k_sh;
    i64 v_sb, v_ss, v_sh;
    i64 o_sb, o_ss, o_sh;
    i64 do_sb, do_ss, do_sh;
    i64 dq_sb, dq_ss, dq_sh;
    i64 dk_sb, dk_ss, dk_sh;
    i64 dv_sb, dv_ss, dv_sh;
    i64 lse_sb, lse_sh, lse_ss;
    i64 alibi_sb;                       /* 0: slopes per head only */
    i64 sq_pad;                         /* seqlen_q padded to 128: rows per (batch, head) of a dense workspace */
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int window_left, window_right;      /* effective (causal folded in); -1 = unbounded */
    float scale_log2;                   /* softmax scale * log2(e) */
    float scale;                        /* softmax scale */
    float softcap;                      /* 0 = off */
    u32 drop_k0, drop_k1, drop_ctr3;    /* FA_DROPOUT: Philox key (seed lo, seed hi ^ offset hi), counter word 3 (offset lo) */
    u32 drop_threshold;                 /* FA_DROPOUT: a draw below it drops the element */
    float keep_scale;                   /* FA_DROPOUT: 1 / (1 - dropout_p) */
    const int *cu_q;                    /* FA_VARLEN: batch + 1 row offsets of q/out/dout/dq */
    const int *cu_k;                    /* NULL, or batch + 1 row offsets of k/v/dk/dv */
    const int *seqused_k;               /* NULL, or keys used per sequence (overrides cu_k's counts) */
    i64 ws_head;                        /* workspace rows between query heads: sq_pad, or varlen ws_rows */
    int total_q, total_k;               /* varlen: rows of q and (with cu_k) of k/v */
};

#ifndef FA_VARLEN
#define FA_VARLEN 0
#endif

#ifndef FA_DROPOUT
#define FA_DROPOUT 0
#endif

#ifndef FA_DSPLIT
#define FA_DSPLIT 1
#endif
#if FA_DSPLIT != 1 && FA_DSPLIT != 2
#error "FA_DSPLIT must be 1 or 2"
#endif
#define FA_KWARPS (FA_WARPS / FA_DSPLIT) /* warps of distinct keys (dK/dV kernel) or query rows (dQ kernel) */
#if FA_BKV != 16 * FA_KWARPS
#error "FA_BKV must be 16 * FA_WARPS / FA_DSPLIT: each warp (pair of warps) owns 16 keys"
#endif
#if FA_BQ % 16 || 128 % FA_BQ
#error "FA_BQ must be a multiple of 16 dividing 128 (the workspace pads rows to 128)"
#endif

#define KSTR (FA_DQK + 8) /* shared-memory row strides in u16: +16 bytes keeps ldmatrix rows off one bank */
#define VSTR (FA_DV + 8)
#define QSTR KSTR
#define DOSTR VSTR
#define DSSTR (FA_BQ + 8)
#define NT_Q (FA_BQ / 8)  /* n-tiles of a warp's S^T / dP^T (dK/dV kernel), of S / dP (dQ kernel) */
#define NT_K (FA_DQK / 8) /* n-tiles of dK (and dQ) */
#define NT_V (FA_DV / 8)  /* n-tiles of dV */
/*
 * n-tiles of dK (dQ) and dV a warp owns: the columns in pairs of n-tiles (one ldmatrix.x4 each), part `half`
 * of them starting at column half * KH_NT * 8; with an odd count of pairs the second part is one pair short and
 * skips it (HAS_K / HAS_V). FA_DSPLIT 1: all of them, and the tests are constant.
 */
#define KH_NT ((FA_DQK / 16 + FA_DSPLIT - 1) / FA_DSPLIT * 2)
#define VH_NT ((FA_DV / 16 + FA_DSPLIT - 1) / FA_DSPLIT * 2)
#define HAS_K(t) (kc0 + (t) * 8 < FA_DQK)
#define HAS_V(t) (vc0 + (t) * 8 < FA_DV)
#define DQ_CHUNK (FA_DQK % 32 ? 16 : 32) /* dQ columns a warp sums at a time in atomic mode (few registers) */
#define POS_INF (__int_as_float(0x7f800000))

/* One 16-bit value of the dtype to fp32. */
static __device__ __forceinline__ float to_f32(u32 x)
{
#if FA_BF16
    return __uint_as_float((x & 0xffffu) << 16);
#else
    float f;
    unsigned short h = (unsigned short)(x & 0xffffu);
    asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
    return f;
#endif
}

#if FA_DROPOUT
/* The draws of keys 4 * col4 .. 4 * col4 + 3 for (batch b, query head h, query row i). */
static __device__ __forceinline__ drop_u4 drop_draw4(const struct fa_cuda_bwd_params &p, int b, int h, int i, int col4)
{
    return drop_philox((u32)col4, (u32)i, ((u32)b << 16) + (u32)h, p.drop_ctr3, p.drop_k0, p.drop_k1);
}
#endif

/*
 * One sequence's lengths and places; device metadata is clamped, not trusted, as in the forward. Workspace rows
 * (D, LSE * log2e, dQ accumulator) of query row i, head h: ws0 + h * ws_head + i. Dense: ws0 = b * heads_q *
 * sq_pad, ws_head = sq_pad. Varlen: each head holds ws_rows = round4(total_q) + 132 * batch rows and sequence b
 * starts at round4(qrow0) + 132 * b, which leaves at least 128 rows past its end before the next sequence's
 * (the kernels read whole blocks of up to 128 rows) and keeps 16-byte alignment for cp.async.
 */
struct seq_info {
    int sq, sk, nk;   /* query rows; keys used; k/v rows that get dK/dV (>= sk: rows past sk get zeros) */
    i64 qrow0, krow0; /* first row of the sequence in q-like and in k-like tensors (0 when dense) */
    i64 ws0;          /* workspace row of the sequence's first query row in head 0 */
};
static __device__ __forceinline__ seq_info seq_of(const struct fa_cuda_bwd_params &p, int b)
{
    seq_info s;
    s.sq = p.seqlen_q, s.sk = p.seqlen_k, s.qrow0 = 0, s.krow0 = 0;
#if FA_VARLEN
    s.qrow0 = min(max(p.cu_q[b], 0), p.total_q);
    s.sq = min(min(max(p.cu_q[b + 1] - p.cu_q[b], 0), p.seqlen_q), p.total_q - (int)s.qrow0);
    s.ws0 = (s.qrow0 + 3) / 4 * 4 + 132 * (i64)b;
#else
    s.ws0 = (i64)b * p.heads_q * p.sq_pad;
#endif
    if (p.cu_k) {
        s.krow0 = min(max(p.cu_k[b], 0), p.total_k);
        s.sk = min(min(max(p.cu_k[b + 1] - p.cu_k[b], 0), p.seqlen_k), p.total_k - (int)s.krow0);
    }
    s.nk = s.sk;
    if (p.seqused_k) {
        s.sk = min(max(p.seqused_k[b], 0), p.seqlen_k);
        if (p.cu_k) s.sk = min(s.sk, p.total_k - (int)s.krow0);
        s.nk = max(s.nk, s.sk);
    }
    return s;
}

static __device__ __forceinline__ void cp_wait_all_but_newest(void) { CP_WAIT(1); }

/*
 * dQ accumulator += (a, b) at an 8-byte aligned address. sm_90 adds both in one vector reduction: with two
 * scalar atomics a warp's request used half of each 32-byte sector it sent (ncu), twice over.
 */
static __device__ __forceinline__ void red_add2(float *addr, float a, float b)
{
#if __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(addr), "f"(a), "f"(b) : "memory");
#else
    atomicAdd(addr, a);
    atomicAdd(addr + 1, b);
#endif
}

/*
 * Rows [row0, row0 + rows) of a (seq, dim) slice into shared memory (stride sstr), asynchronously; rows past
 * `valid` are zero-filled (their source address stays in bounds), so padded rows add nothing to any product.
 */
static __device__ __forceinline__ void stage_async(u16 *dst, int sstr, const u16 *src, i64 row_stride, int row0,
                                                   int rows, int valid, int dim)
{
    const int chunks = dim / 8, threads = FA_WARPS * 32; /* every kernel here runs FA_WARPS warps */
    if (threads % chunks == 0) {
        copy_rows_async(dst, sstr, src, row_stride, row0, rows, valid, chunks, dim, threads);
        return;
    }
    for (int c = threadIdx.x; c < rows * chunks; c += threads) {
        int r = c / chunks, x = (c % chunks) * 8;
        int ok = row0 + r < valid;
        cp_async16(dst + r * sstr + x, src + (ok ? (i64)(row0 + r) * row_stride + x : 0), ok ? 16 : 0);
    }
}

/* ldmatrix row addresses of a lane (see ldsm4), as in the forward: */
#define A_ROW(l) (((l) & 7) + (((l) >> 3) & 1) * 8) /* A operand, row-major 16x16: row */
#define A_COL(l) (((l) >> 4) * 8)                   /*   and column */
#define B_ROW(l) (((l) & 7) + ((l) >> 4) * 8)       /* B operand stored n-major (rows = n): two n-tiles */
#define B_COL(l) ((((l) >> 3) & 1) * 8)
#define T_ROW(l) (((l) & 7) + (((l) >> 3) & 1) * 8) /* B operand stored k-major, read with .trans */
#define T_COL(l) (((l) >> 4) * 8)

/*
 * log2 P of one (query i, key j) element: its score in log2 units from the raw q.k, as the forward computes
 * it (a plain score is one FFMA in both), minus the row's LSE * log2e (lse2); -inf where masked. *dfac
 * receives softcap's derivative factor 1 - tanh^2.
 */
static __device__ __forceinline__ float score_log2(const struct fa_cuda_bwd_params &p, float s, float lse2, int i,
                                                   int j, int offset, int sk, float slope, int plain, int need_mask,
                                                   float *dfac)
{
    float x;
    *dfac = 1.0f;
    if (!(FA_SOFTCAP || FA_ALIBI) || plain) {
        x = fmaf(s, p.scale_log2, -lse2); /* one FFMA; a multiply, the mask's select, then a subtract before */
    } else if (FA_SOFTCAP && p.softcap > 0.0f) {
        float th = tanhf(s * p.scale / p.softcap);
        *dfac = 1.0f - th * th;
        x = p.softcap * th;
        x -= slope * fabsf((float)(i + offset - j));
        x = x * LOG2E - lse2;
    } else {
        x = (s * p.scale - slope * fabsf((float)(i + offset - j))) * LOG2E - lse2;
    }
    if (need_mask) {
        int diag = i + offset;
        if (j >= sk || (FA_LOCAL && p.window_left >= 0 && j < diag - p.window_left) ||
            (FA_LOCAL && p.window_right >= 0 && j > diag + p.window_right))
            x = NEG_INF;
    }
    return x;
}

/* Whether any (row, key) of the tile [i0, i0 + rows) x [j0, j0 + keys) is masked. */
static __device__ __forceinline__ int tile_needs_mask(const struct fa_cuda_bwd_params &p, int i0, int rows, int j0,
                                                      int keys, int offset, int sk)
{
    return j0 + keys > sk || (FA_LOCAL && p.window_right >= 0 && j0 + keys - 1 > i0 + offset + p.window_right) ||
           (FA_LOCAL && p.window_left >= 0 && j0 < i0 + rows - 1 + offset - p.window_left);
}

extern "C" __global__ void __launch_bounds__(128) fa_bwd_pre_sm80(const struct fa_cuda_bwd_params p)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i = blockIdx.x * 4 + warp, h = blockIdx.y, b = blockIdx.z;
    const seq_info s = seq_of(p, b);
    if (i >= (s.sq + 127) / 128 * 128) return; /* the sequence's rows padded to 128 (dense: sq_pad) */
    const i64 row = s.ws0 + h * p.ws_head + i;
    float acc = 0.0f, l2 = POS_INF;
    if (i < s.sq) {
        const u16 *o = p.out + b * p.o_sb + (s.qrow0 + i) * p.o_ss + h * p.o_sh;
        const u16 *g = p.dout + b * p.do_sb + (s.qrow0 + i) * p.do_ss + h * p.do_sh;
        for (int x = lane * 2; x < FA_DV; x += 64) {
            u32 ov = *(const u32 *)(o + x), gv = *(const u32 *)(g + x);
            acc += to_f32(ov) * to_f32(gv) + to_f32(ov >> 16) * to_f32(gv >> 16);
        }
        #pragma unroll
        for (int m = 16; m >= 1; m /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, m);
        float lse = p.lse[b * p.lse_sb + h * p.lse_sh + (s.qrow0 + i) * p.lse_ss];
        /* a row that saw no key has LSE -inf and P = 0: +inf here makes exp2(x - lse2) = 0 */
        l2 = lse == NEG_INF ? POS_INF : lse * LOG2E;
    }
    if (lane == 0) {
        p.delta[row] = acc;
        p.lse2[row] = l2;
    }
    if (p.dq_acc)
        for (int x = lane; x < FA_DQK; x += 32) p.dq_acc[row * FA_DQK + x] = 0.0f;
}

/* Q, dO rows [i0, i0 + FA_BQ) of head h and their LSE * log2e and D, asynchronously (one cp.async group). */
static __device__ __forceinline__ void load_q_block(const struct fa_cuda_bwd_params &p, const seq_info &s, u16 *qd,
                                                    u16 *dod, float *rows, int b, int h, int i0)
{
    stage_async(qd, QSTR, p.q + b * p.q_sb + s.qrow0 * p.q_ss + h * p.q_sh, p.q_ss, i0, FA_BQ, s.sq, FA_DQK);
    stage_async(dod, DOSTR, p.dout + b * p.do_sb + s.qrow0 * p.do_ss + h * p.do_sh, p.do_ss, i0, FA_BQ, s.sq, FA_DV);
    const i64 r0 = s.ws0 + h * p.ws_head + i0; /* i0 + FA_BQ within the sequence's padded rows: no bound to check */
    for (int c = threadIdx.x; c < FA_BQ / 2; c += blockDim.x) {
        int which = c / (FA_BQ / 4), x = (c % (FA_BQ / 4)) * 4;
        cp_async16(rows + which * FA_BQ + x, (which ? p.delta : p.lse2) + r0 + x, 16);
    }
}

extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, 1) fa_bwd_dkdv_sm80(const struct fa_cuda_bwd_params p)
{
    extern __shared__ __align__(16) u16 smem[];
    u16 *ks = smem;                                        /* FA_BKV x KSTR */
    u16 *vs = ks + FA_BKV * KSTR;                          /* FA_BKV x VSTR */
    u16 *qbuf = vs + FA_BKV * VSTR;                        /* 2 x FA_BQ x QSTR */
    u16 *dobuf = qbuf + 2 * FA_BQ * QSTR;                  /* 2 x FA_BQ x DOSTR */
    float *rowbuf = (float *)(dobuf + 2 * FA_BQ * DOSTR);  /* 2 x (lse2[FA_BQ], delta[FA_BQ]) */
#if FA_DQ_ATOMIC
    u16 *dss = (u16 *)(rowbuf + 4 * FA_BQ);                /* FA_BKV x DSSTR: dS^T of the current step */
#endif

    const int kb = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
    const int group = p.heads_q / p.heads_kv;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const seq_info sqi = seq_of(p, b);
    const int sq = sqi.sq, sk = sqi.sk, offset = sk - sq;
    /* the warp's part of the columns (FA_DSPLIT) and its 16 keys; 0 and warp * 16 when FA_DSPLIT is 1 */
    const int half = FA_DSPLIT > 1 ? warp / FA_KWARPS : 0;
    const int kc0 = half * KH_NT * 8, vc0 = half * VH_NT * 8;
    const int j0 = kb * FA_BKV, kw = (FA_DSPLIT > 1 ? warp % FA_KWARPS : warp) * 16; /* block's first key; warp's */
    const int g4 = lane / 4, ca = (lane % 4) * 2;
    if (j0 >= sqi.nk) return; /* the grid covers the longest sequence */

    stage_async(ks, KSTR, p.k + b * p.k_sb + sqi.krow0 * p.k_ss + hk * p.k_sh, p.k_ss, j0, FA_BKV, sk, FA_DQK);
    stage_async(vs, VSTR, p.v + b * p.v_sb + sqi.krow0 * p.v_ss + hk * p.v_sh, p.v_ss, j0, FA_BKV, sk, FA_DV);

    /* Query rows that see any key of this block; whole Q blocks outside are never loaded. */
    const int jlast = min(j0 + FA_BKV, sk) - 1;
    int lo = 0, hi = sq;
    if (p.window_right >= 0) lo = max(0, j0 - offset - p.window_right);
    if (p.window_left >= 0) hi = min(sq, jlast - offset + p.window_left + 1);
    lo = lo / FA_BQ * FA_BQ;
    /* a block wholly past the used keys (seqused_k) only writes its zeros */
    const int nqb = hi > lo && j0 < sk ? (hi - lo + FA_BQ - 1) / FA_BQ : 0;
    const int steps = nqb * group; /* step = (query head of the group, Q block), head-major */

    float dka[KH_NT][4], dva[VH_NT][4];
    #pragma unroll
    for (int t = 0; t < KH_NT; t++) dka[t][0] = dka[t][1] = dka[t][2] = dka[t][3] = 0.0f;
    #pragma unroll
    for (int t = 0; t < VH_NT; t++) dva[t][0] = dva[t][1] = dva[t][2] = dva[t][3] = 0.0f;

    if (steps > 0) load_q_block(p, sqi, qbuf, dobuf, rowbuf, b, hk * group, lo);
    cp_commit(); /* with K and V */
    /* step (query head h, block at row i0) and the next one, counted forward: no division per step */
    int h = hk * group, i0 = lo;
    #pragma unroll 1
    for (int it = 0; it < steps; it++) {
        const int cur = it & 1;
        const int next_last = i0 + FA_BQ >= lo + nqb * FA_BQ; /* the next step starts the next head */
        const int h_next = next_last ? h + 1 : h, i0_next = next_last ? lo : i0 + FA_BQ;
        const u16 *qs = qbuf + cur * FA_BQ * QSTR, *dos = dobuf + cur * FA_BQ * DOSTR;
        const float *lse_s = rowbuf + cur * 2 * FA_BQ, *del_s = lse_s + FA_BQ;
        CP_WAIT(0); /* step it has landed (the first time K and V too) */
        /*
         * One barrier opens a step: step it is visible to every warp, and every warp is done with step it - 1 (its
         * buffers and dss), so the other buffer can take step it + 1 now. A second barrier closing each step,
         * which a refill issued before this one needed, was 5 % of stall samples (ncu, d128).
         */
        __syncthreads();
        if (it + 1 < steps)
            load_q_block(p, sqi, qbuf + (cur ^ 1) * FA_BQ * QSTR, dobuf + (cur ^ 1) * FA_BQ * DOSTR,
                         rowbuf + (cur ^ 1) * 2 * FA_BQ, b, h_next, i0_next);
        cp_commit();

        /* S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys x FA_BQ query rows */
        float s[NT_Q][4], dp[NT_Q][4];
        #pragma unroll
        for (int t = 0; t < NT_Q; t++) {
            s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
            dp[t][0] = dp[t][1] = dp[t][2] = dp[t][3] = 0.0f;
        }
        #pragma unroll
        for (int kk = 0; kk < FA_DQK / 16; kk++) {
            u32 ka[4];
            ldsm4(ka, ks + (kw + A_ROW(lane)) * KSTR + kk * 16 + A_COL(lane));
            #pragma unroll
            for (int t = 0; t < NT_Q; t += 2) {
                u32 bq[4];
                ldsm4(bq, qs + (t * 8 + B_ROW(lane)) * QSTR + kk * 16 + B_COL(lane));
                mma16816(s[t], ka, bq[0], bq[1]);
                mma16816(s[t + 1], ka, bq[2], bq[3]);
            }
        }
        #pragma unroll
        for (int kk = 0; kk < FA_DV / 16; kk++) {
            u32 va[4];
            ldsm4(va, vs + (kw + A_ROW(lane)) * VSTR + kk * 16 + A_COL(lane));
            #pragma unroll
            for (int t = 0; t < NT_Q; t += 2) {
                u32 bo[4];
                ldsm4(bo, dos + (t * 8 + B_ROW(lane)) * DOSTR + kk * 16 + B_COL(lane));
                mma16816(dp[t], va, bo[0], bo[1]);
                mma16816(dp[t + 1], va, bo[2], bo[3]);
            }
        }

        /* P^T into s, dS^T into dp. Element e of n-tile t: key j0+kw+g4 (+8 for e >= 2), query i0+t*8+ca (+1 odd e) */
        const float slope = FA_ALIBI && p.alibi ? p.alibi[b * p.alibi_sb + h] : 0.0f;
        const int plain = !(FA_SOFTCAP && p.softcap > 0.0f) && slope == 0.0f;
        const int need_mask = tile_needs_mask(p, i0, FA_BQ, j0 + kw, 16, offset, sk);
        #pragma unroll
        for (int t = 0; t < NT_Q; t++) {
            const float2 l2 = *(const float2 *)(lse_s + t * 8 + ca), dl = *(const float2 *)(del_s + t * 8 + ca);
#if FA_DROPOUT
            /*
             * The draws of this lane's 4 elements. Lanes m = g4 % 4 = 0..3 of one (ca, g4 / 4) hold keys 4c + m
             * (c = (j0 + kw + g4) / 4 and c + 2) of rows i, i + 1: all four need the same four Philox results
             * (row i + (e & 1), group c + 2 * (e >> 1)) and take word m of each. Lane m draws element e = m,
             * then in round r sends word (m + r) % 4 and takes its element (m - r) % 4 from lane m - r.
             */
            u32 dw[4];
            {
                const int m = g4 & 3;
                const drop_u4 d = drop_draw4(p, b, h, i0 + t * 8 + ca + (m & 1), ((j0 + kw + g4 - m) >> 2) + 2 * (m >> 1));
                #pragma unroll
                for (int r = 0; r < 4; r++) {
                    const u32 got = __shfl_sync(0xffffffffu, drop_word(d, (m + r) & 3), (lane & ~12) | (((m - r) & 3) << 2));
                    #pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (e == ((m - r) & 3)) dw[e] = got;
                }
            }
#endif
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = i0 + t * 8 + ca + (e & 1), j = j0 + kw + g4 + (e >> 1) * 8;
                float dfac;
                float pr = ex2(score_log2(p, s[t][e], (e & 1) ? l2.y : l2.x, i, j, offset, sk, slope, plain, need_mask, &dfac));
#if FA_DROPOUT
                /* dV takes P~ = dropped P / (1 - p); dS = P (dP~ - D) with dP~ dropped and scaled likewise */
                const int keep = dw[e] >= p.drop_threshold;
                const float dpv = keep ? dp[t][e] * p.keep_scale : 0.0f;
                s[t][e] = keep ? pr * p.keep_scale : 0.0f;
                dp[t][e] = pr * (dpv - ((e & 1) ? dl.y : dl.x)) * (FA_SOFTCAP ? dfac : 1.0f);
#else
                s[t][e] = pr;
                dp[t][e] = pr * (dp[t][e] - ((e & 1) ? dl.y : dl.x)) * (FA_SOFTCAP ? dfac : 1.0f);
#endif
            }
        }

        /* dV += P^T dO, dK += dS^T Q: accumulators of n-tiles 2kk, 2kk+1 form the A fragment of query step kk */
        #pragma unroll
        for (int kk = 0; kk < FA_BQ / 16; kk++) {
            u32 pa[4], da[4];
            pa[0] = pack2(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            da[0] = pack2(dp[2 * kk][0], dp[2 * kk][1]);
            da[1] = pack2(dp[2 * kk][2], dp[2 * kk][3]);
            da[2] = pack2(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
            da[3] = pack2(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
            #pragma unroll
            for (int t = 0; t < VH_NT; t += 2) {
                if (!HAS_V(t)) continue;
                u32 bo[4];
                ldsm4t(bo, dos + (kk * 16 + T_ROW(lane)) * DOSTR + vc0 + t * 8 + T_COL(lane));
                mma16816(dva[t], pa, bo[0], bo[1]);
                mma16816(dva[t + 1], pa, bo[2], bo[3]);
            }
            #pragma unroll
            for (int t = 0; t < KH_NT; t += 2) {
                if (!HAS_K(t)) continue;
                u32 bq[4];
                ldsm4t(bq, qs + (kk * 16 + T_ROW(lane)) * QSTR + kc0 + t * 8 + T_COL(lane));
                mma16816(dka[t], da, bq[0], bq[1]);
                mma16816(dka[t + 1], da, bq[2], bq[3]);
            }
#if FA_DQ_ATOMIC
            /* dS^T to shared memory, for dQ = dS K below (the same 16-bit values dK used); of a pair of warps
               (FA_DSPLIT), which hold the same dS^T, the first writes it */
            if (FA_DSPLIT == 1 || half == 0) {
                *(u32 *)(dss + (kw + g4) * DSSTR + kk * 16 + ca) = da[0];
                *(u32 *)(dss + (kw + g4 + 8) * DSSTR + kk * 16 + ca) = da[1];
                *(u32 *)(dss + (kw + g4) * DSSTR + kk * 16 + 8 + ca) = da[2];
                *(u32 *)(dss + (kw + g4 + 8) * DSSTR + kk * 16 + 8 + ca) = da[3];
            }
#endif
        }

#if FA_DQ_ATOMIC
        __syncthreads(); /* every warp's dS^T rows are in dss */
        {
            /*
             * dQ[i0 .., :] += dS K over the block's keys. Units of (16 rows, DQ_CHUNK columns) go round the
             * warps; dS (query-major) is read from dS^T with ldmatrix.trans, K (key-major) likewise.
             */
            float *dqg = p.dq_acc + (sqi.ws0 + h * p.ws_head + i0) * FA_DQK;
            const int units = (FA_BQ / 16) * (FA_DQK / DQ_CHUNK);
            #pragma unroll 1
            for (int u = warp; u < units; u += FA_WARPS) {
                const int m0 = (u % (FA_BQ / 16)) * 16, n0 = (u / (FA_BQ / 16)) * DQ_CHUNK;
                float acc[DQ_CHUNK / 8][4];
                #pragma unroll
                for (int t = 0; t < DQ_CHUNK / 8; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
                #pragma unroll
                for (int kk = 0; kk < FA_BKV / 16; kk++) {
                    u32 a[4];
                    ldsm4t(a, dss + (kk * 16 + B_ROW(lane)) * DSSTR + m0 + B_COL(lane));
                    #pragma unroll
                    for (int t = 0; t < DQ_CHUNK / 8; t += 2) {
                        u32 bk[4];
                        ldsm4t(bk, ks + (kk * 16 + T_ROW(lane)) * KSTR + n0 + t * 8 + T_COL(lane));
                        mma16816(acc[t], a, bk[0], bk[1]);
                        mma16816(acc[t + 1], a, bk[2], bk[3]);
                    }
                }
                /* rows past seqlen_q are workspace padding: their (zero) sums land there harmlessly */
                #pragma unroll
                for (int t = 0; t < DQ_CHUNK / 8; t++) {
                    float *r0 = dqg + (i64)(m0 + g4) * FA_DQK + n0 + t * 8 + ca, *r1 = r0 + 8 * FA_DQK;
                    red_add2(r0, acc[t][0], acc[t][1]);
                    red_add2(r1, acc[t][2], acc[t][3]);
                }
            }
        }
#endif
        h = h_next, i0 = i0_next;
    }
    CP_WAIT(0); /* nothing in flight into shared memory past here (K and V when no step ran) */

    /*
     * dK = scale * dS^T Q (Q was not pre-scaled), dV as summed. Rows past the sequence's k/v rows are not
     * written; rows in [sk, nk) (past seqused_k) were staged as zeros and fully masked, so they hold zeros.
     */
    const int r0 = j0 + kw + g4, r1 = r0 + 8, nk = sqi.nk;
    u16 *dkg = p.dk + b * p.dk_sb + sqi.krow0 * p.dk_ss + hk * p.dk_sh;
    u16 *dvg = p.dv + b * p.dv_sb + sqi.krow0 * p.dv_ss + hk * p.dv_sh;
    #pragma unroll
    for (int t = 0; t < KH_NT; t++) {
        if (!HAS_K(t)) continue;
        if (r0 < nk) *(u32 *)(dkg + (i64)r0 * p.dk_ss + kc0 + t * 8 + ca) = pack2(dka[t][0] * p.scale, dka[t][1] * p.scale);
        if (r1 < nk) *(u32 *)(dkg + (i64)r1 * p.dk_ss + kc0 + t * 8 + ca) = pack2(dka[t][2] * p.scale, dka[t][3] * p.scale);
    }
    #pragma unroll
    for (int t = 0; t < VH_NT; t++) {
        if (!HAS_V(t)) continue;
        if (r0 < nk) *(u32 *)(dvg + (i64)r0 * p.dv_ss + vc0 + t * 8 + ca) = pack2(dva[t][0], dva[t][1]);
        if (r1 < nk) *(u32 *)(dvg + (i64)r1 * p.dv_ss + vc0 + t * 8 + ca) = pack2(dva[t][2], dva[t][3]);
    }
}

#if FA_DQ_ATOMIC
/* dQ = scale * accumulator, one warp per query row. */
extern "C" __global__ void __launch_bounds__(128) fa_bwd_post_sm80(const struct fa_cuda_bwd_params p)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i = blockIdx.x * 4 + warp, h = blockIdx.y, b = blockIdx.z;
    const seq_info s = seq_of(p, b);
    if (i >= s.sq) return;
    const float *src = p.dq_acc + (s.ws0 + h * p.ws_head + i) * FA_DQK;
    u16 *dst = p.dq + b * p.dq_sb + (s.qrow0 + i) * p.dq_ss + h * p.dq_sh;
    for (int x = lane * 2; x < FA_DQK; x += 64) {
        const float2 v = *(const float2 *)(src + x);
        *(u32 *)(dst + x) = pack2(v.x * p.scale, v.y * p.scale);
    }
}
#else
/*
 * Deterministic dQ: one block per (FA_BKV query rows, query head, batch); each warp (with FA_DSPLIT each pair of
 * warps, one part of the columns of dQ each) owns 16 rows and walks the
 * visible K/V tiles of FA_BQ keys front to back (double-buffered with cp.async), recomputing S and dP:
 * dQ += dS K in registers, with dS straight from the accumulators. No shared sums, so bit-identical results.
 */
#define DQ_ROWS FA_BKV
#define DQ_KEYS FA_BQ
extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, 1) fa_bwd_dq_sm80(const struct fa_cuda_bwd_params p)
{
    extern __shared__ __align__(16) u16 smem[];
    u16 *qs = smem;                           /* DQ_ROWS x QSTR */
    u16 *dos = qs + DQ_ROWS * QSTR;           /* DQ_ROWS x DOSTR */
    u16 *kbuf = dos + DQ_ROWS * DOSTR;        /* 2 x DQ_KEYS x KSTR */
    u16 *vbuf = kbuf + 2 * DQ_KEYS * KSTR;    /* 2 x DQ_KEYS x VSTR */

    const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (p.heads_q / p.heads_kv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const seq_info sqi = seq_of(p, b);
    const int sq = sqi.sq, sk = sqi.sk, offset = sk - sq;
    const int half = FA_DSPLIT > 1 ? warp / FA_KWARPS : 0, kc0 = half * KH_NT * 8; /* the warp's dQ columns */
    const int q0 = qb * DQ_ROWS, wrow = (FA_DSPLIT > 1 ? warp % FA_KWARPS : warp) * 16;
    const int g4 = lane / 4, ca = (lane % 4) * 2;
    if (q0 >= sq) return; /* the grid covers the longest sequence */
    const u16 *kg = p.k + b * p.k_sb + sqi.krow0 * p.k_ss + hk * p.k_sh;
    const u16 *vg = p.v + b * p.v_sb + sqi.krow0 * p.v_ss + hk * p.v_sh;

    stage_async(qs, QSTR, p.q + b * p.q_sb + sqi.qrow0 * p.q_ss + h * p.q_sh, p.q_ss, q0, DQ_ROWS, sq, FA_DQK);
    stage_async(dos, DOSTR, p.dout + b * p.do_sb + sqi.qrow0 * p.do_ss + h * p.do_sh, p.do_ss, q0, DQ_ROWS, sq, FA_DV);
    /* this thread's two rows (q0 + wrow + g4, + 8): the sequence's padded workspace rows cover them */
    const i64 wr0 = sqi.ws0 + h * p.ws_head + q0 + wrow + g4;
    const float lse_0 = p.lse2[wr0], lse_1 = p.lse2[wr0 + 8], del_0 = p.delta[wr0], del_1 = p.delta[wr0 + 8];
    const float slope = FA_ALIBI && p.alibi ? p.alibi[b * p.alibi_sb + h] : 0.0f;
    const int plain = !(FA_SOFTCAP && p.softcap > 0.0f) && slope == 0.0f;

    int lo = 0, hi = sk;
    if (p.window_left >= 0) lo = max(0, q0 + offset - p.window_left);
    if (p.window_right >= 0) hi = min(sk, min(q0 + DQ_ROWS, sq) - 1 + offset + p.window_right + 1);
    lo = lo / DQ_KEYS * DQ_KEYS;
    const int ntiles = hi > lo ? (hi - lo + DQ_KEYS - 1) / DQ_KEYS : 0;

    float dqa[KH_NT][4];
    #pragma unroll
    for (int t = 0; t < KH_NT; t++) dqa[t][0] = dqa[t][1] = dqa[t][2] = dqa[t][3] = 0.0f;

    if (ntiles > 0) {
        stage_async(kbuf, KSTR, kg, p.k_ss, lo, DQ_KEYS, sk, FA_DQK);
        stage_async(vbuf, VSTR, vg, p.v_ss, lo, DQ_KEYS, sk, FA_DV);
    }
    cp_commit();
    #pragma unroll 1
    for (int it = 0; it < ntiles; it++) {
        const int j0 = lo + it * DQ_KEYS, cur = it & 1;
        const u16 *ks = kbuf + cur * DQ_KEYS * KSTR, *vs = vbuf + cur * DQ_KEYS * VSTR;
        if (it + 1 < ntiles) {
            stage_async(kbuf + (cur ^ 1) * DQ_KEYS * KSTR, KSTR, kg, p.k_ss, j0 + DQ_KEYS, DQ_KEYS, sk, FA_DQK);
            stage_async(vbuf + (cur ^ 1) * DQ_KEYS * VSTR, VSTR, vg, p.v_ss, j0 + DQ_KEYS, DQ_KEYS, sk, FA_DV);
        }
        cp_commit();
        cp_wait_all_but_newest();
        __syncthreads();

        /* S = Q K^T, dP = dO V^T: this warp's 16 rows x DQ_KEYS keys */
        float s[NT_Q][4], dp[NT_Q][4];
        #pragma unroll
        for (int t = 0; t < NT_Q; t++) {
            s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
            dp[t][0] = dp[t][1] = dp[t][2] = dp[t][3] = 0.0f;
        }
        #pragma unroll
        for (int kk = 0; kk < FA_DQK / 16; kk++) {
            u32 qa[4];
            ldsm4(qa, qs + (wrow + A_ROW(lane)) * QSTR + kk * 16 + A_COL(lane));
            #pragma unroll
            for (int t = 0; t < NT_Q; t += 2) {
                u32 bk[4];
                ldsm4(bk, ks + (t * 8 + B_ROW(lane)) * KSTR + kk * 16 + B_COL(lane));
                mma16816(s[t], qa, bk[0], bk[1]);
                mma16816(s[t + 1], qa, bk[2], bk[3]);
            }
        }
        #pragma unroll
        for (int kk = 0; kk < FA_DV / 16; kk++) {
            u32 oa[4];
            ldsm4(oa, dos + (wrow + A_ROW(lane)) * DOSTR + kk * 16 + A_COL(lane));
            #pragma unroll
            for (int t = 0; t < NT_Q; t += 2) {
                u32 bv[4];
                ldsm4(bv, vs + (t * 8 + B_ROW(lane)) * VSTR + kk * 16 + B_COL(lane));
                mma16816(dp[t], oa, bv[0], bv[1]);
                mma16816(dp[t + 1], oa, bv[2], bv[3]);
            }
        }

        /* element e of n-tile t: row q0+wrow+g4 (+8 for e >= 2), key j0+t*8+ca (+1 for odd e) */
        const int need_mask = tile_needs_mask(p, q0, DQ_ROWS, j0, DQ_KEYS, offset, sk);
        #pragma unroll
        for (int t = 0; t < NT_Q; t++) {
#if FA_DROPOUT
            /*
             * As in the forward: lanes 2q, 2q + 1 hold keys ca, ca + 1 of one group of four in rows g4, g4 + 8;
             * the even lane draws the group for row g4, the odd one for g4 + 8, and they trade halves.
             */
            u32 dw[4];
            {
                const int odd = lane & 1;
                const drop_u4 d = drop_draw4(p, b, h, q0 + wrow + g4 + odd * 8, (j0 + t * 8 + ca) >> 2);
                const u32 own0 = odd ? d.z : d.x, own1 = odd ? d.w : d.y;
                const u32 give0 = odd ? d.x : d.z, give1 = odd ? d.y : d.w;
                const u32 got0 = __shfl_xor_sync(0xffffffffu, give0, 1), got1 = __shfl_xor_sync(0xffffffffu, give1, 1);
                dw[0] = odd ? got0 : own0, dw[1] = odd ? got1 : own1;
                dw[2] = odd ? own0 : got0, dw[3] = odd ? own1 : got1;
            }
#endif
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = q0 + wrow + g4 + (e >> 1) * 8, j = j0 + t * 8 + ca + (e & 1);
                float dfac;
                float pr = ex2(score_log2(p, s[t][e], e < 2 ? lse_0 : lse_1, i, j, offset, sk, slope, plain, need_mask, &dfac));
#if FA_DROPOUT
                const float dpv = dw[e] >= p.drop_threshold ? dp[t][e] * p.keep_scale : 0.0f;
                dp[t][e] = pr * (dpv - (e < 2 ? del_0 : del_1)) * (FA_SOFTCAP ? dfac : 1.0f);
#else
                dp[t][e] = pr * (dp[t][e] - (e < 2 ? del_0 : del_1)) * (FA_SOFTCAP ? dfac : 1.0f);
#endif
            }
        }

        /* dQ += dS K: dS accumulators of n-tiles 2kk, 2kk+1 are the A fragment of key step kk */
        #pragma unroll
        for (int kk = 0; kk < DQ_KEYS / 16; kk++) {
            u32 da[4];
            da[0] = pack2(dp[2 * kk][0], dp[2 * kk][1]);
            da[1] = pack2(dp[2 * kk][2], dp[2 * kk][3]);
            da[2] = pack2(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
            da[3] = pack2(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
            #pragma unroll
            for (int t = 0; t < KH_NT; t += 2) {
                if (!HAS_K(t)) continue;
                u32 bk[4];
                ldsm4t(bk, ks + (kk * 16 + T_ROW(lane)) * KSTR + kc0 + t * 8 + T_COL(lane));
                mma16816(dqa[t], da, bk[0], bk[1]);
                mma16816(dqa[t + 1], da, bk[2], bk[3]);
            }
        }
        __syncthreads(); /* the next iteration refills this buffer */
    }

    const int i0 = q0 + wrow + g4, i1 = i0 + 8;
    u16 *dqg = p.dq + b * p.dq_sb + sqi.qrow0 * p.dq_ss + h * p.dq_sh;
    #pragma unroll
    for (int t = 0; t < KH_NT; t++) {
        if (!HAS_K(t)) continue;
        if (i0 < sq) *(u32 *)(dqg + (i64)i0 * p.dq_ss + kc0 + t * 8 + ca) = pack2(dqa[t][0] * p.scale, dqa[t][1] * p.scale);
        if (i1 < sq) *(u32 *)(dqg + (i64)i1 * p.dq_ss + kc0 + t * 8 + ca) = pack2(dqa[t][2] * p.scale, dqa[t][3] * p.scale);
    }
}
#endif
