/*
 * Exact SIMT backward ("fp32 SIMT"): dQ, dK, dV by recomputation with CUDA-core (VALU) FMAs only, fp32 arithmetic on
 * fp32, fp16 or bf16 storage. One source for both vendors, as fwd_f32.cu: compiled at run time by NVRTC for the
 * CUDA backend (cuda/cuda_bwd_f32.c: fp32, and fp16/bf16 head dims the mma.sync backward does not take) and by
 * hiprtc for the HIP backend (hip/hip_bwd.c; NVRTC in its NVIDIA verification build). The spellings that differ
 * come from fa_vendor.cuh; nothing depends on the warp/wavefront width: every cross-lane step is a shuffle inside
 * 16 aligned lanes or a block barrier, so a block of 256 threads is 8 warps of 32 or 4 wavefronts of 64 alike.
 *
 * Deterministic by construction: no atomics, every output element has one owner that sums in a fixed order, so
 * the gradients are the same bits run after run (the OpenCL backward, opencl/kernels/bwd.cl, is the same
 * algorithm; the host parameter block is cuda/fa_gpu_bwd_io.h, shared by both plugins).
 *
 * With s = q.k, x = scale s (then softcap: x = c tanh(x / c); ALiBi: x -= slope |i + sk - sq - j|; masked: -inf):
 *   P = exp(x - LSE), dP = dO V^T, dS = P (dP M - D) softcap'(x), D_i = sum_d dO_id O_id,
 *   dV = (P M)^T dO, dK = scale dS^T Q, dQ = scale dS K, softcap' = 1 - tanh^2 (1 without a softcap),
 *   M = the dropout multipliers (0 dropped, 1 / (1 - p) kept; 1 without dropout), elementwise.
 * LSE is the forward's (natural log); nothing N x N exists anywhere.
 *
 * The host defines:
 *   FA_DQK, FA_DV     head dims of q/k and of v/out (any, 1-256; they may differ)
 *   FA_BQ, FA_BKV     query rows per Q block / step, keys per K/V block / tile: 16, 32 or 64 each
 *   FA_STORAGE        q/k/v/out/dout/dq/dk/dv elements: 0 fp32, 1 fp16, 2 bf16 (rounded to nearest even when stored)
 *   FA_L16            1 (16-bit storage only): the Q, K, V, dO tiles in shared memory keep the 16-bit values (exact),
 *                     widened as they are read; halves the tiles, so d256 fits CDNA's 64 KiB of LDS. 0: fp32 tiles.
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL   1: softcap / ALiBi / causal-or-window code compiled in (0: absent)
 *   FA_VARLEN         q-like tensors (total_q, heads, dim) with cu_q, lse (heads, total_q)
 *   FA_DROPOUT        1: dropout with the forward's mask (api/fa_philox.h: fa_dropout_keep, bit for bit)
 * k-like tensors are (total_k, heads, dim) where cu_k is given (varlen); seqused_k caps the keys of a sequence.
 *
 * Kernels, launched in this order on one stream, 256 threads each = 16 row groups (ty) x 16 lanes (tx):
 *   fa_bwd_pre_f32   grid (ceil(seqlen_q / 16), heads_q, batch): a row group per query row sums dO o O over the
 *                    row's columns and reduces with shuffles; D and the row's LSE go to the fp32 workspace (LSE -inf,
 *                    a row that saw no key, is stored +inf so that P = exp(x - LSE) = 0 with no test).
 *   fa_bwd_dkdv_f32  grid (ceil(seqlen_k / FA_BKV), heads_kv, batch): K and V of the block stay in shared memory;
 *                    it walks every query head of the KV head's group and every Q block that sees the block (Q, dO
 *                    staged per step), so GQA/MQA sums happen inside the block (one owner per dK/dV element).
 *                    Thread (ty, tx) computes S^T and dP^T for keys ty + 16 i (i < KPT) and queries tx + 16 c,
 *                    writes P^T and dS^T to shared memory, then accumulates dV and dK for the same keys and columns
 *                    4 tx + 64 c (float4s; P^T, dS^T rows broadcast across the row group). Keys past seqused_k
 *                    but inside the sequence's rows get dK = dV = 0.
 *   fa_bwd_dq_f32    grid (ceil(seqlen_q / FA_BQ), heads_q, batch): Q, dO and the rows' LSE and D stay; it walks
 *                    the visible K/V tiles (S, dP for rows ty + 16 i and keys tx + 16 c; dS to shared memory) and
 *                    sums dS K in registers for rows ty + 16 i and columns 4 tx + 64 c.
 * Tiles are staged zero-filled past the sequence and the head dims, so padding adds 0. Dropout: one Philox call
 * gives four consecutive keys of one query row, so a block draws a step's (tile's) multipliers together into its
 * P^T (dS) buffer while Q and dO (K and V) are staged; after the barrier each thread reads its own elements'
 * multipliers and overwrites them with P M (dS).
 *
 * Shared memory, bytes (dynamic; fa_gpu_bwd_smem on the host computes the same):
 *   DQK4 = 4 ceil(FA_DQK / 4), DV4 likewise; KSTR = DQK4 (+ 4 where DQK4 / 4 is even), VSTR likewise (rows read
 *   only by dot products: an odd number of float4s); QWSTR = 64 ceil(FA_DQK / 64) + 4, VWSTR likewise (rows also
 *   read as columns 4 tx + 64 c); E = 2 with FA_L16, else 4
 *   dK/dV: E (FA_BKV KSTR + FA_BKV VSTR + FA_BQ QWSTR + FA_BQ VWSTR) + 4 (2 FA_BKV (FA_BQ + 4))
 *   dQ:    E (FA_BQ KSTR + FA_BQ VSTR + FA_BKV QWSTR + FA_BKV VSTR) + 4 (FA_BQ (FA_BKV + 4))
 */
#include "fa_vendor.cuh"

typedef long long i64;
typedef unsigned int u32;

/* fa_io_t, io_to_f32 and io_from_f32 (FA_STORAGE): fa_vendor.cuh */

/* Field for field fa_gpu_bwd_params of cuda/fa_gpu_bwd_io.h (14 pointers, 29 strides, 18 four-byte words). */
struct fa_gpu_bwd_params {
    const fa_io_t *q, *k, *v, *out, *dout;
    fa_io_t *dq, *dk, *dv;
    const float *lse;                   /* the forward's LSE (natural log) */
    const float *alibi;                 /* NULL: none */
    float *ws;                          /* D at ws, LSE at ws + ws_rows (heads_q x query rows each) */
    const int *cu_q;                    /* FA_VARLEN: batch + 1 row offsets of q-like tensors */
    const int *cu_k;                    /* NULL, or batch + 1 row offsets of k-like tensors (total_k, heads, dim) */
    const int *seqused_k;               /* NULL, or keys used per sequence */
    i64 q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh, do_sb, do_ss, do_sh;
    i64 dq_sb, dq_ss, dq_sh, dk_sb, dk_ss, dk_sh, dv_sb, dv_ss, dv_sh;
    i64 lse_sb, lse_sh, lse_ss;
    i64 alibi_sb;                       /* 0: slopes per head only */
    i64 ws_rows;
    int seqlen_q, seqlen_k, heads_q, heads_kv; /* varlen: the largest lengths */
    int total_q, total_k;
    int window_left, window_right;      /* effective (causal folded in); -1 = unbounded */
    float scale, softcap;               /* softcap 0 = off */
    u32 drop_k0, drop_k1, drop_ctr3, drop_threshold; /* FA_DROPOUT: fa_dropout_key_for (api/fa_philox.h) */
    float keep_scale;
    int vec_qk, vec_v;                  /* 1: q/k/dq/dk (v/out/dout/dv) rows are aligned runs of whole groups of 4 */
    int pad0;
};

#ifndef FA_BQ
#define FA_BQ 32
#endif
#ifndef FA_BKV
#define FA_BKV 32
#endif
#ifndef FA_L16
#define FA_L16 0
#endif
#ifndef FA_SOFTCAP
#define FA_SOFTCAP 1
#endif
#ifndef FA_ALIBI
#define FA_ALIBI 1
#endif
#ifndef FA_LOCAL
#define FA_LOCAL 1
#endif
#ifndef FA_VARLEN
#define FA_VARLEN 0
#endif
#ifndef FA_DROPOUT
#define FA_DROPOUT 0
#endif

#define THREADS 256
/*
 * CUDA: at least one block per SM stated outright; left to itself ptxas capped some tiles at 64 or 128 registers
 * and spilled (sm_90, d64 64x64: 128 registers and 36 bytes spilled, against 168 and none with the bound). HIP's
 * second argument means waves per execution unit: the plain bound.
 */
#if FA_VENDOR_HIP
#define FA_BOUNDS __launch_bounds__(THREADS)
#else
#define FA_BOUNDS __launch_bounds__(THREADS, 1)
#endif
#define KPT (FA_BKV / 16)            /* dK/dV kernel: keys per thread; dQ kernel: keys per thread in S */
#define RPT (FA_BQ / 16)             /* dQ kernel: rows per thread; dK/dV kernel: queries per thread in S^T */
#define DQK4 ((FA_DQK + 3) / 4 * 4)
#define DV4 ((FA_DV + 3) / 4 * 4)
#define NDK ((FA_DQK + 63) / 64)     /* float4 column groups of dK / dQ per thread */
#define NDV ((FA_DV + 63) / 64)      /* of dV */
#define KSTR (DQK4 + ((DQK4 / 4) % 2 ? 0 : 4))
#define VSTR (DV4 + ((DV4 / 4) % 2 ? 0 : 4))
#define QWSTR (64 * NDK + 4)
#define VWSTR (64 * NDV + 4)
#define PTSTR (FA_BQ + 4)
#define DSSTR (FA_BKV + 4)
#define NEG_INF (-__int_as_float(0x7f800000))
#define POS_INF (__int_as_float(0x7f800000))

#if (FA_BQ != 16 && FA_BQ != 32 && FA_BQ != 64) || (FA_BKV != 16 && FA_BKV != 32 && FA_BKV != 64)
#error "FA_BQ and FA_BKV must be 16, 32 or 64"
#endif
#if FA_DQK < 1 || FA_DQK > 256 || FA_DV < 1 || FA_DV > 256
#error "head dims must be 1-256"
#endif
#if FA_L16 && FA_STORAGE == 0
#error "FA_L16 is for 16-bit storage"
#endif

/*
 * A group of four staged elements in shared memory: a float4, or with FA_L16 the four raw 16-bit storage values
 * (exact, half the bytes), widened to fp32 as they are read (lt_get).
 */
#if FA_L16
typedef uint2 lt4;
static __device__ __forceinline__ float4 lt_get(const lt4 &w)
{
    return make_float4(io_to_f32((fa_io_t)(w.x & 0xffffu)), io_to_f32((fa_io_t)(w.x >> 16)),
                       io_to_f32((fa_io_t)(w.y & 0xffffu)), io_to_f32((fa_io_t)(w.y >> 16)));
}
#else
typedef float4 lt4;
static __device__ __forceinline__ float4 lt_get(const lt4 &w) { return w; }
#endif

/* Elements [x, x + 4) of a row with `real` elements as fp32, zeros past it (fwd_f32.cu's load4). */
static __device__ __forceinline__ float4 load4(const fa_io_t *row, int x, int real, int vec)
{
#if FA_STORAGE == 0
    if (vec && x + 4 <= real) return *(const float4 *)(row + x);
#else
    if (vec && x + 4 <= real) {
        const uint2 w = *(const uint2 *)(row + x);
        return make_float4(io_to_f32((fa_io_t)(w.x & 0xffffu)), io_to_f32((fa_io_t)(w.x >> 16)),
                           io_to_f32((fa_io_t)(w.y & 0xffffu)), io_to_f32((fa_io_t)(w.y >> 16)));
    }
#endif
    float4 v;
    v.x = x < real ? io_to_f32(row[x]) : 0.0f;
    v.y = x + 1 < real ? io_to_f32(row[x + 1]) : 0.0f;
    v.z = x + 2 < real ? io_to_f32(row[x + 2]) : 0.0f;
    v.w = x + 3 < real ? io_to_f32(row[x + 3]) : 0.0f;
    return v;
}

/* Elements [x, x + 4) of row r of a tile (rows r >= valid and columns >= real read as zeros), as staged. */
static __device__ __forceinline__ lt4 tile_get(const fa_io_t *base, i64 stride, int r, int valid, int x, int real,
                                               int vec)
{
#if FA_L16
    uint2 w;
    w.x = w.y = 0u; /* +0 in fp16 and bf16 */
    if (r >= valid || x >= real) return w;
    const fa_io_t *row = base + (i64)r * stride;
    if (vec && x + 4 <= real) return *(const uint2 *)(row + x);
    w.x = (u32)row[x] | (x + 1 < real ? (u32)row[x + 1] << 16 : 0u);
    if (x + 2 < real) w.y = (u32)row[x + 2] | (x + 3 < real ? (u32)row[x + 3] << 16 : 0u);
    return w;
#else
    if (r >= valid || x >= real) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    return load4(base + (i64)r * stride, x, real, vec);
#endif
}

/* Stages rows [r0, r0 + ROWS) x column groups [0, GROUPS) of a tile with STR4 lt4s a row; zeros past valid/REAL. */
template <int ROWS, int GROUPS, int STR4, int REAL>
static __device__ __forceinline__ void stage(lt4 *dst, const fa_io_t *base, i64 stride, int r0, int valid, int vec)
{
    for (int c = threadIdx.x; c < ROWS * GROUPS; c += THREADS) {
        const int r = c / GROUPS, g = c % GROUPS;
        dst[r * STR4 + g] = tile_get(base, stride, r0 + r, valid, 4 * g, REAL, vec);
    }
}

/* Elements [x, x + 4) of v into a row with `real` elements (only those below real are written). */
static __device__ __forceinline__ void store4(fa_io_t *row, int x, int real, int vec, float4 v)
{
    if (vec && x + 4 <= real) {
#if FA_STORAGE == 0
        *(float4 *)(row + x) = v;
#else
        uint2 w; /* four 16-bit elements in one 8-byte store */
        w.x = (u32)io_from_f32(v.x) | (u32)io_from_f32(v.y) << 16;
        w.y = (u32)io_from_f32(v.z) | (u32)io_from_f32(v.w) << 16;
        *(uint2 *)(row + x) = w;
#endif
        return;
    }
    row[x] = io_from_f32(v.x);
    if (x + 1 < real) row[x + 1] = io_from_f32(v.y);
    if (x + 2 < real) row[x + 2] = io_from_f32(v.z);
    if (x + 3 < real) row[x + 3] = io_from_f32(v.w);
}

static __device__ __forceinline__ float comp(const float4 &v, int e)
{
    return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

static __device__ __forceinline__ float dot4(const float4 &a, const float4 &b, float acc)
{
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
    acc = fmaf(a.z, b.z, acc);
    return fmaf(a.w, b.w, acc);
}

static __device__ __forceinline__ void fma4(float a, const float4 &b, float4 &acc)
{
    acc.x = fmaf(a, b.x, acc.x);
    acc.y = fmaf(a, b.y, acc.y);
    acc.z = fmaf(a, b.z, acc.z);
    acc.w = fmaf(a, b.w, acc.w);
}

static __device__ __forceinline__ float4 scale4(const float4 &v, float s)
{
    return make_float4(v.x * s, v.y * s, v.z * s, v.w * s);
}

#if FA_DROPOUT
/*
 * Multipliers of keys 4 j4 .. 4 j4 + 3 of query row i of (batch b, query head h): 0 (dropped) or keep_scale.
 * Philox4x32-10 of counter (j4, i, b << 16 | h, offset lo) under key (seed lo, seed hi ^ offset hi): word j % 4
 * is key j's draw, dropped below the threshold (api/fa_philox.h; common_sm80.cuh and common.cl hold the same).
 */
static __device__ __forceinline__ float4 drop_mul4(const fa_gpu_bwd_params &p, u32 j4, u32 i, u32 b, u32 h)
{
    const fa_u4 w = fa_philox(j4, i, (b << 16) + h, p.drop_ctr3, p.drop_k0, p.drop_k1);
    const u32 t = p.drop_threshold;
    const float keep = p.keep_scale;
    return make_float4(w.x < t ? 0.0f : keep, w.y < t ? 0.0f : keep, w.z < t ? 0.0f : keep, w.w < t ? 0.0f : keep);
}
#endif

/*
 * One sequence's lengths and first rows (device metadata clamped, never trusted), as fwd_f32.cu and bwd.cl: sq
 * query rows from qrow0; sk keys used from krow0; nk >= sk rows of k/v that get dK/dV (rows in [sk, nk), past
 * seqused_k, get zeros).
 */
struct seq_info {
    int sq, sk, nk;
    i64 qrow0, krow0;
};

static __device__ __forceinline__ seq_info seq_of(const fa_gpu_bwd_params &p, int b)
{
    seq_info s;
    s.sq = p.seqlen_q, s.sk = p.seqlen_k, s.qrow0 = 0, s.krow0 = 0;
#if FA_VARLEN
    s.qrow0 = min(max(p.cu_q[b], 0), p.total_q);
    s.sq = min(min(max(p.cu_q[b + 1] - p.cu_q[b], 0), p.seqlen_q), p.total_q - (int)s.qrow0);
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

/* Workspace row of query row 0 of (sequence b, query head h): dense (b, h, i), varlen (h, qrow0 + i). */
static __device__ __forceinline__ i64 ws_row0(const fa_gpu_bwd_params &p, const seq_info &s, int b, int h)
{
    return FA_VARLEN ? (i64)h * p.total_q + s.qrow0 : ((i64)b * p.heads_q + h) * p.seqlen_q;
}

/*
 * x from the raw dot product s of a query row whose diagonal key is diag (= i + sk - sq) and key j: scale, softcap
 * (dfac = its derivative factor), ALiBi, mask; as fwd_f32.cu's score code.
 */
static __device__ __forceinline__ float score(const fa_gpu_bwd_params &p, float s, float slope, int diag, int j,
                                              int sk, float &dfac)
{
    (void)diag; /* unused without ALiBi and a window */
    float x = s * p.scale;
    dfac = 1.0f;
#if FA_SOFTCAP
    if (p.softcap > 0.0f) {
        const float th = tanhf(x / p.softcap);
        x = p.softcap * th;
        dfac = 1.0f - th * th;
    }
#endif
#if FA_ALIBI
    if (slope != 0.0f) x -= slope * fabsf((float)(diag - j));
#else
    (void)slope;
#endif
    bool masked = j >= sk;
#if FA_LOCAL
    masked = masked || (p.window_left >= 0 && diag - j > p.window_left) ||
             (p.window_right >= 0 && j - diag > p.window_right);
#endif
    return masked ? NEG_INF : x;
}

static __device__ __forceinline__ float slope_of(const fa_gpu_bwd_params &p, int b, int h)
{
#if FA_ALIBI
    if (p.alibi) return p.alibi[b * p.alibi_sb + h];
#else
    (void)p, (void)b, (void)h;
#endif
    return 0.0f;
}

/* ------------------------------------------------------------------ D and LSE */

extern "C" __global__ void FA_BOUNDS fa_bwd_pre_f32(const struct fa_gpu_bwd_params p)
{
    const int h = blockIdx.y, b = blockIdx.z;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const seq_info s = seq_of(p, b);
    const int i = blockIdx.x * 16 + ty;
    if ((int)blockIdx.x * 16 >= s.sq) return; /* the whole block is past this sequence */
    float acc = 0.0f;
    if (i < s.sq) {
        const fa_io_t *o = p.out + (FA_VARLEN ? 0 : b * p.o_sb) + (s.qrow0 + i) * p.o_ss + h * p.o_sh;
        const fa_io_t *g = p.dout + (FA_VARLEN ? 0 : b * p.do_sb) + (s.qrow0 + i) * p.do_ss + h * p.do_sh;
        for (int x = 4 * tx; x < FA_DV; x += 64) acc = dot4(load4(o, x, FA_DV, p.vec_v), load4(g, x, FA_DV, p.vec_v), acc);
    }
    /* the 16 lanes of a row group, aligned to 16: a fixed order, the same bits every run (every lane shuffles) */
    acc += FA_SHFL_XOR(acc, 8);
    acc += FA_SHFL_XOR(acc, 4);
    acc += FA_SHFL_XOR(acc, 2);
    acc += FA_SHFL_XOR(acc, 1);
    if (i < s.sq && tx == 0) {
        const float l = p.lse[(FA_VARLEN ? 0 : b * p.lse_sb) + (s.qrow0 + i) * p.lse_ss + h * p.lse_sh];
        const i64 row = ws_row0(p, s, b, h) + i;
        p.ws[row] = acc;
        p.ws[row + p.ws_rows] = l == NEG_INF ? POS_INF : l;
    }
}

/* ------------------------------------------------------------------ dK, dV */

#define KSTR4 (KSTR / 4)
#define VSTR4 (VSTR / 4)
#define QWSTR4 (QWSTR / 4)
#define VWSTR4 (VWSTR / 4)
#define PTSTR4 (PTSTR / 4)
#define DSSTR4 (DSSTR / 4)

extern "C" __global__ void FA_BOUNDS fa_bwd_dkdv_f32(const struct fa_gpu_bwd_params p)
{
    extern __shared__ __align__(16) float smem[];
    lt4 *ks = (lt4 *)smem;                        /* K of the block: FA_BKV x KSTR */
    lt4 *vs = ks + FA_BKV * KSTR4;                /* V of the block: FA_BKV x VSTR */
    lt4 *qs = vs + FA_BKV * VSTR4;                /* Q of the step: FA_BQ x QWSTR */
    lt4 *dos = qs + FA_BQ * QWSTR4;               /* dO of the step: FA_BQ x VWSTR */
    float *pt = (float *)(dos + FA_BQ * VWSTR4);  /* P^T of the step: FA_BKV x PTSTR */
    float *dst = pt + FA_BKV * PTSTR;             /* dS^T of the step */
    const float4 *pt4 = (const float4 *)pt, *dst4 = (const float4 *)dst;

    const int kb = blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
    const int group = p.heads_q / p.heads_kv;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const seq_info s = seq_of(p, b);
    const int offset = s.sk - s.sq, j0 = kb * FA_BKV;
    if (j0 >= s.nk) return; /* no rows of this sequence: nothing to write */

    /*
     * Query rows that see any key of this block ([j0, min(j0 + FA_BKV, sk))); Q blocks outside are never loaded.
     * A block past the used keys (seqused_k) runs no step: it writes its zeros (rows < nk).
     */
    const int jlast = min(j0 + FA_BKV, s.sk) - 1;
    i64 lo = 0, hi = s.sq;
    if (FA_LOCAL && p.window_right >= 0) lo = max((i64)0, (i64)j0 - offset - p.window_right);
    if (FA_LOCAL && p.window_left >= 0) hi = min((i64)s.sq, (i64)jlast - offset + p.window_left + 1);
    lo = lo / FA_BQ * FA_BQ;
    const int nqb = j0 < s.sk && hi > lo ? (int)((hi - lo + FA_BQ - 1) / FA_BQ) : 0;
    const int steps = nqb * group; /* step = (query head of the group, Q block), head-major */

    const fa_io_t *kg = p.k + (p.cu_k ? 0 : b * p.k_sb) + s.krow0 * p.k_ss + hk * p.k_sh;
    const fa_io_t *vg = p.v + (p.cu_k ? 0 : b * p.v_sb) + s.krow0 * p.v_ss + hk * p.v_sh;
    if (steps > 0) {
        stage<FA_BKV, DQK4 / 4, KSTR4, FA_DQK>(ks, kg, p.k_ss, j0, s.sk, p.vec_qk);
        stage<FA_BKV, DV4 / 4, VSTR4, FA_DV>(vs, vg, p.v_ss, j0, s.sk, p.vec_v);
    }

    float4 dka[KPT][NDK], dva[KPT][NDV];
    #pragma unroll
    for (int i = 0; i < KPT; i++) {
        #pragma unroll
        for (int c = 0; c < NDK; c++) dka[i][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        #pragma unroll
        for (int c = 0; c < NDV; c++) dva[i][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }

    for (int it = 0; it < steps; it++) {
        const int h = hk * group + it / nqb, i0 = (int)lo + (it % nqb) * FA_BQ;
        __syncthreads(); /* the previous step's Q, dO, P^T, dS^T are no longer read */
        {
            const fa_io_t *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + s.qrow0 * p.q_ss + h * p.q_sh;
            const fa_io_t *gg = p.dout + (FA_VARLEN ? 0 : b * p.do_sb) + s.qrow0 * p.do_ss + h * p.do_sh;
            stage<FA_BQ, 16 * NDK, QWSTR4, FA_DQK>(qs, qg, p.q_ss, i0, s.sq, p.vec_qk);
            stage<FA_BQ, 16 * NDV, VWSTR4, FA_DV>(dos, gg, p.do_ss, i0, s.sq, p.vec_v);
        }
#if FA_DROPOUT
        /* the step's multipliers into P^T: query r, keys 4 j4 .. + 3 (j0 is a multiple of 16: no straddling) */
        for (int c = threadIdx.x; c < FA_BQ * (FA_BKV / 4); c += THREADS) {
            const int r = c / (FA_BKV / 4), j4 = c % (FA_BKV / 4);
            float4 mul = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i0 + r < s.sq) mul = drop_mul4(p, (u32)(j0 / 4 + j4), (u32)(i0 + r), (u32)b, (u32)h);
            pt[(4 * j4) * PTSTR + r] = mul.x;
            pt[(4 * j4 + 1) * PTSTR + r] = mul.y;
            pt[(4 * j4 + 2) * PTSTR + r] = mul.z;
            pt[(4 * j4 + 3) * PTSTR + r] = mul.w;
        }
#endif
        __syncthreads(); /* Q and dO (and, the first time, K and V) visible */

        /* S^T = K Q^T and dP^T = V dO^T for keys ty + 16 i, queries tx + 16 c */
        float st[KPT][RPT], dpt[KPT][RPT];
        #pragma unroll
        for (int i = 0; i < KPT; i++)
            #pragma unroll
            for (int c = 0; c < RPT; c++) st[i][c] = dpt[i][c] = 0.0f;
        #pragma unroll 4
        for (int k4 = 0; k4 < DQK4 / 4; k4++) {
            float4 kv[KPT], qv[RPT];
            #pragma unroll
            for (int i = 0; i < KPT; i++) kv[i] = lt_get(ks[(ty + 16 * i) * KSTR4 + k4]);
            #pragma unroll
            for (int c = 0; c < RPT; c++) qv[c] = lt_get(qs[(tx + 16 * c) * QWSTR4 + k4]);
            #pragma unroll
            for (int i = 0; i < KPT; i++)
                #pragma unroll
                for (int c = 0; c < RPT; c++) st[i][c] = dot4(kv[i], qv[c], st[i][c]);
        }
        #pragma unroll 4
        for (int k4 = 0; k4 < DV4 / 4; k4++) {
            float4 vv[KPT], gv[RPT];
            #pragma unroll
            for (int i = 0; i < KPT; i++) vv[i] = lt_get(vs[(ty + 16 * i) * VSTR4 + k4]);
            #pragma unroll
            for (int c = 0; c < RPT; c++) gv[c] = lt_get(dos[(tx + 16 * c) * VWSTR4 + k4]);
            #pragma unroll
            for (int i = 0; i < KPT; i++)
                #pragma unroll
                for (int c = 0; c < RPT; c++) dpt[i][c] = dot4(vv[i], gv[c], dpt[i][c]);
        }

        /* P and dS; rows past the sequence have LSE +inf and D 0 (their Q and dO are zeros): P = dS = 0 */
        const float slope = slope_of(p, b, h);
        const i64 wrow = ws_row0(p, s, b, h);
        #pragma unroll
        for (int c = 0; c < RPT; c++) {
            const int qi = i0 + tx + 16 * c, diag = qi + offset;
            const float lrow = qi < s.sq ? p.ws[wrow + p.ws_rows + qi] : POS_INF;
            const float drow = qi < s.sq ? p.ws[wrow + qi] : 0.0f;
            #pragma unroll
            for (int i = 0; i < KPT; i++) {
                const int j = j0 + ty + 16 * i;
                float dfac;
                const float x = score(p, st[i][c], slope, diag, j, s.sk, dfac);
                const float pv = expf(x - lrow);
                const int at = (ty + 16 * i) * PTSTR + tx + 16 * c;
#if FA_DROPOUT
                const float mul = pt[at]; /* drawn above; this thread's own element */
                pt[at] = pv * mul;
                dst[at] = pv * (dpt[i][c] * mul - drow) * dfac;
#else
                pt[at] = pv;
                dst[at] = pv * (dpt[i][c] - drow) * dfac;
#endif
            }
        }
        /* key row ty + 16 i of P^T and dS^T is written and read by row group ty alone (its 16 lanes cover every
           query), inside one warp/wavefront */
        FA_SYNC_WAVE();

        /* dV += P^T dO, dK += dS^T Q for keys ty + 16 i and columns 4 tx + 64 c */
        #pragma unroll 2
        for (int q4 = 0; q4 < FA_BQ / 4; q4++) {
            float4 pv[KPT], sv[KPT];
            #pragma unroll
            for (int i = 0; i < KPT; i++) {
                pv[i] = pt4[(ty + 16 * i) * PTSTR4 + q4];
                sv[i] = dst4[(ty + 16 * i) * PTSTR4 + q4];
            }
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                #pragma unroll
                for (int c = 0; c < NDV; c++) {
                    const float4 g = lt_get(dos[(4 * q4 + e) * VWSTR4 + tx + 16 * c]);
                    #pragma unroll
                    for (int i = 0; i < KPT; i++) fma4(comp(pv[i], e), g, dva[i][c]);
                }
                #pragma unroll
                for (int c = 0; c < NDK; c++) {
                    const float4 qq = lt_get(qs[(4 * q4 + e) * QWSTR4 + tx + 16 * c]);
                    #pragma unroll
                    for (int i = 0; i < KPT; i++) fma4(comp(sv[i], e), qq, dka[i][c]);
                }
            }
        }
    }

    /* dK = scale * sum, dV = sum for rows < nk (rows in [sk, nk) and blocks that ran no step: zeros) */
    fa_io_t *dkg = p.dk + (p.cu_k ? 0 : b * p.dk_sb) + s.krow0 * p.dk_ss + hk * p.dk_sh;
    fa_io_t *dvg = p.dv + (p.cu_k ? 0 : b * p.dv_sb) + s.krow0 * p.dv_ss + hk * p.dv_sh;
    #pragma unroll
    for (int i = 0; i < KPT; i++) {
        const int j = j0 + ty + 16 * i;
        if (j >= s.nk) continue;
        #pragma unroll
        for (int c = 0; c < NDK; c++) {
            const int x = 4 * tx + 64 * c;
            if (x < FA_DQK) store4(dkg + (i64)j * p.dk_ss, x, FA_DQK, p.vec_qk, scale4(dka[i][c], p.scale));
        }
        #pragma unroll
        for (int c = 0; c < NDV; c++) {
            const int x = 4 * tx + 64 * c;
            if (x < FA_DV) store4(dvg + (i64)j * p.dv_ss, x, FA_DV, p.vec_v, dva[i][c]);
        }
    }
}

/* ------------------------------------------------------------------ dQ */

extern "C" __global__ void FA_BOUNDS fa_bwd_dq_f32(const struct fa_gpu_bwd_params p)
{
    extern __shared__ __align__(16) float smem[];
    lt4 *qs = (lt4 *)smem;                        /* Q of the block: FA_BQ x KSTR */
    lt4 *dos = qs + FA_BQ * KSTR4;                /* dO of the block: FA_BQ x VSTR */
    lt4 *ks = dos + FA_BQ * VSTR4;                /* K tile: FA_BKV x QWSTR */
    lt4 *vs = ks + FA_BKV * QWSTR4;               /* V tile: FA_BKV x VSTR */
    float *ds = (float *)(vs + FA_BKV * VSTR4);   /* dS of the tile: FA_BQ x DSSTR */
    const float4 *ds4 = (const float4 *)ds;

    /* last query blocks first: under a causal mask they have the most tiles */
    const int qb = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (p.heads_q / p.heads_kv);
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const seq_info s = seq_of(p, b);
    const int offset = s.sk - s.sq, q0 = qb * FA_BQ;
    if (q0 >= s.sq) return; /* the grid covers the longest sequence */
    const int pos_first = q0, pos_last = min(q0 + FA_BQ, s.sq) - 1;

    /* keys any row of this block can see (as fwd_f32.cu); rows that see none get dQ = 0 */
    i64 lo = 0, hi = s.sk;
    if (FA_LOCAL && p.window_left >= 0) lo = max((i64)0, (i64)pos_first + offset - p.window_left);
    if (FA_LOCAL && p.window_right >= 0) hi = min((i64)s.sk, (i64)pos_last + offset + p.window_right + 1);
    lo = lo / FA_BKV * FA_BKV;
    const int ntiles = hi > lo ? (int)((hi - lo + FA_BKV - 1) / FA_BKV) : 0;

    const fa_io_t *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + s.qrow0 * p.q_ss + h * p.q_sh;
    const fa_io_t *gg = p.dout + (FA_VARLEN ? 0 : b * p.do_sb) + s.qrow0 * p.do_ss + h * p.do_sh;
    stage<FA_BQ, DQK4 / 4, KSTR4, FA_DQK>(qs, qg, p.q_ss, q0, s.sq, p.vec_qk);
    stage<FA_BQ, DV4 / 4, VSTR4, FA_DV>(dos, gg, p.do_ss, q0, s.sq, p.vec_v);

    /* the rows' LSE (+inf: P = 0) and D; rows past the sequence likewise */
    float lrow[RPT], drow[RPT];
    const i64 wrow = ws_row0(p, s, b, h);
    #pragma unroll
    for (int i = 0; i < RPT; i++) {
        const int qi = q0 + ty + 16 * i;
        lrow[i] = qi < s.sq ? p.ws[wrow + p.ws_rows + qi] : POS_INF;
        drow[i] = qi < s.sq ? p.ws[wrow + qi] : 0.0f;
    }
    const float slope = slope_of(p, b, h);

    float4 acc[RPT][NDK];
    #pragma unroll
    for (int i = 0; i < RPT; i++)
        #pragma unroll
        for (int c = 0; c < NDK; c++) acc[i][c] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

    const fa_io_t *kg = p.k + (p.cu_k ? 0 : b * p.k_sb) + s.krow0 * p.k_ss + hk * p.k_sh;
    const fa_io_t *vg = p.v + (p.cu_k ? 0 : b * p.v_sb) + s.krow0 * p.v_ss + hk * p.v_sh;
    for (int t = 0; t < ntiles; t++) {
        const int j0 = (int)lo + t * FA_BKV;
        __syncthreads(); /* the previous tile's K, V and dS are no longer read */
        stage<FA_BKV, 16 * NDK, QWSTR4, FA_DQK>(ks, kg, p.k_ss, j0, s.sk, p.vec_qk);
        stage<FA_BKV, DV4 / 4, VSTR4, FA_DV>(vs, vg, p.v_ss, j0, s.sk, p.vec_v);
#if FA_DROPOUT
        /* the tile's multipliers into dS: row r, keys 4 j4 .. + 3 */
        for (int c = threadIdx.x; c < FA_BQ * (FA_BKV / 4); c += THREADS) {
            const int r = c / (FA_BKV / 4), j4 = c % (FA_BKV / 4);
            float4 mul = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (q0 + r < s.sq) mul = drop_mul4(p, (u32)(j0 / 4 + j4), (u32)(q0 + r), (u32)b, (u32)h);
            *(float4 *)(ds + r * DSSTR + 4 * j4) = mul;
        }
#endif
        __syncthreads(); /* K and V (and, the first time, Q and dO) visible */

        /* S = Q K^T and dP = dO V^T for rows ty + 16 i, keys tx + 16 c */
        float sc[RPT][KPT], dp[RPT][KPT];
        #pragma unroll
        for (int i = 0; i < RPT; i++)
            #pragma unroll
            for (int c = 0; c < KPT; c++) sc[i][c] = dp[i][c] = 0.0f;
        #pragma unroll 4
        for (int k4 = 0; k4 < DQK4 / 4; k4++) {
            float4 qv[RPT], kv[KPT];
            #pragma unroll
            for (int i = 0; i < RPT; i++) qv[i] = lt_get(qs[(ty + 16 * i) * KSTR4 + k4]);
            #pragma unroll
            for (int c = 0; c < KPT; c++) kv[c] = lt_get(ks[(tx + 16 * c) * QWSTR4 + k4]);
            #pragma unroll
            for (int i = 0; i < RPT; i++)
                #pragma unroll
                for (int c = 0; c < KPT; c++) sc[i][c] = dot4(qv[i], kv[c], sc[i][c]);
        }
        #pragma unroll 4
        for (int k4 = 0; k4 < DV4 / 4; k4++) {
            float4 gv[RPT], vv[KPT];
            #pragma unroll
            for (int i = 0; i < RPT; i++) gv[i] = lt_get(dos[(ty + 16 * i) * VSTR4 + k4]);
            #pragma unroll
            for (int c = 0; c < KPT; c++) vv[c] = lt_get(vs[(tx + 16 * c) * VSTR4 + k4]);
            #pragma unroll
            for (int i = 0; i < RPT; i++)
                #pragma unroll
                for (int c = 0; c < KPT; c++) dp[i][c] = dot4(gv[i], vv[c], dp[i][c]);
        }

        #pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int diag = q0 + ty + 16 * i + offset;
            #pragma unroll
            for (int c = 0; c < KPT; c++) {
                const int j = j0 + tx + 16 * c;
                float dfac;
                const float x = score(p, sc[i][c], slope, diag, j, s.sk, dfac);
                const float pv = expf(x - lrow[i]);
                const int at = (ty + 16 * i) * DSSTR + tx + 16 * c;
#if FA_DROPOUT
                ds[at] = pv * (dp[i][c] * ds[at] - drow[i]) * dfac; /* ds[at]: this element's multiplier */
#else
                ds[at] = pv * (dp[i][c] - drow[i]) * dfac;
#endif
            }
        }
        /* a row group's dS row is written and read by its own 16 lanes, inside one warp/wavefront */
        FA_SYNC_WAVE();

        /* dQ += dS K for rows ty + 16 i and columns 4 tx + 64 c */
        #pragma unroll 2
        for (int j4 = 0; j4 < FA_BKV / 4; j4++) {
            float4 sv[RPT];
            #pragma unroll
            for (int i = 0; i < RPT; i++) sv[i] = ds4[(ty + 16 * i) * DSSTR4 + j4];
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                #pragma unroll
                for (int c = 0; c < NDK; c++) {
                    const float4 kk = lt_get(ks[(4 * j4 + e) * QWSTR4 + tx + 16 * c]);
                    #pragma unroll
                    for (int i = 0; i < RPT; i++) fma4(comp(sv[i], e), kk, acc[i][c]);
                }
            }
        }
    }

    /* dQ = scale * sum for the block's rows of the sequence (a row that sees no key: 0) */
    fa_io_t *dqg = p.dq + (FA_VARLEN ? 0 : b * p.dq_sb) + s.qrow0 * p.dq_ss + h * p.dq_sh;
    #pragma unroll
    for (int i = 0; i < RPT; i++) {
        const int qi = q0 + ty + 16 * i;
        if (qi >= s.sq) continue;
        #pragma unroll
        for (int c = 0; c < NDK; c++) {
            const int x = 4 * tx + 64 * c;
            if (x < FA_DQK) store4(dqg + (i64)qi * p.dq_ss, x, FA_DQK, p.vec_qk, scale4(acc[i][c], p.scale));
        }
    }
}
