/*
 * The HIP backend's MFMA backward for CDNA (gfx90a, gfx94x): fp16/bf16 in and out, fp32 accumulation in the matrix
 * cores (v_mfma_f32_32x32x8{f16,bf16_1k}). Compiled per plan by hiprtc (hip/hip_bwd.c) for one specialisation;
 * the host defines:
 *   FA_DQK, FA_DV   head dims, multiples of 32 up to 128 (fa_wave_bwd_tile.h's register arrays)
 *   FA_WAVES        waves (of 64) per block: a dK/dV block owns 32 FA_WAVES keys, a dQ block 32 FA_WAVES queries
 *   FA_TR           rows per staged tile: 32 or 64 (queries in the dK/dV pass, keys in the dQ pass)
 *   FA_STORAGE      1 fp16, 2 bf16 (every tensor, and the MFMA input type)
 *   FA_LOCAL        1: causal / sliding-window code compiled in
 *   FA_VARLEN       q-like tensors (total_q, heads, dim) with cu_q, as the SIMT backward
 * The parameters are the SIMT backward's struct (cuda/fa_gpu_bwd_io.h), field for field: hip_bwd.c fills it with
 * fa_gpu_bwd_fill for both kernel families, and the workspace is the same (D, then LSE, per query row and head).
 *
 * Kernels, launched in this order on one stream:
 *   fa_bwd_pre_mfma   grid (ceil(seqlen_q / (THREADS / 16)), heads_q, batch): 16 lanes per query row sum dO o O;
 *                     D and LSE log2 e (the phases' units) go to the workspace.
 *   fa_bwd_dkdv_mfma  grid (ceil(seqlen_k / (32 FA_WAVES)), heads_kv, batch): each wave owns 32 keys, their K^T
 *                     and V^T B fragments in registers (fa_wb_load_cols) and dK^T, dV^T in (Acc)VGPRs; the block
 *                     walks every query head of the KV head's group and every query tile that sees its keys (Q,
 *                     dO, LSE and D staged in LDS), so GQA sums happen inside the block: one owner per element.
 *   fa_bwd_dq_mfma    grid (ceil(seqlen_q / (32 FA_WAVES)), heads_q, batch): each wave owns 32 queries (Q^T, dO^T
 *                     fragments in registers, dQ^T accumulating); the block walks the visible K/V tiles.
 * Each runs fa_wave_bwd_tile.h's phases in the order documented there; tests/hip/test_mfma_emulation.c runs the
 * same drivers on an emulator of the instructions. No atomics: the gradients are the same bits run after run.
 * LDS: one tile pair of FA_TR rows, 16-bit, rows padded by 4 elements (8 bytes, as fwd_mfma.hip): at d128 and
 * 64 rows 2 x 64 x 132 x 2 B = 33.8 KB, inside CDNA's 64 KiB. Two barriers per tile (no double buffer).
 */
#if !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h>
#endif

#include "fa_mfma_device.h"
#include "fa_wave_bwd_tile.h"

typedef long long i64;

#ifndef FA_DQK
#define FA_DQK 128
#endif
#ifndef FA_DV
#define FA_DV FA_DQK
#endif
#ifndef FA_WAVES
#define FA_WAVES 4
#endif
#ifndef FA_TR
#define FA_TR 32
#endif
#ifndef FA_STORAGE
#define FA_STORAGE 1
#endif
#ifndef FA_LOCAL
#define FA_LOCAL 0
#endif
#ifndef FA_VARLEN
#define FA_VARLEN 0
#endif

#if FA_DQK % 32 || FA_DV % 32 || FA_DQK > FA_WB_D_MAX || FA_DV > FA_WB_D_MAX
#error "bwd_mfma.hip: head dims are multiples of 32 up to 128"
#endif
#if (FA_TR != 32 && FA_TR != 64) || FA_WAVES < 1 || FA_WAVES > 4
#error "bwd_mfma.hip: FA_TR 32 or 64, FA_WAVES 1 to 4"
#endif
#if FA_STORAGE != 1 && FA_STORAGE != 2
#error "bwd_mfma.hip: FA_STORAGE 1 (fp16) or 2 (bf16)"
#endif

#define INSTR (FA_STORAGE == 2 ? FA_MFMA_32X32X8_BF16 : FA_MFMA_32X32X8_F16)
#define THREADS (FA_WAVES * FA_WAVE)
#define COLS (32 * FA_WAVES) /* keys of a dK/dV block, queries of a dQ block */
#define KSTR (FA_DQK + 4)    /* LDS row strides in elements: Q or K tiles, dO or V tiles */
#define VSTR (FA_DV + 4)

/* Field for field struct fa_gpu_bwd_params of cuda/fa_gpu_bwd_io.h with 16-bit elements. */
struct fa_gpu_bwd_params {
    const uint16_t *q, *k, *v, *out, *dout;
    uint16_t *dq, *dk, *dv;
    const float *lse, *alibi;
    float *ws; /* D at ws, LSE log2 e at ws + ws_rows */
    const int *cu_q, *cu_k, *seqused_k;
    i64 q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh, do_sb, do_ss, do_sh;
    i64 dq_sb, dq_ss, dq_sh, dk_sb, dk_ss, dk_sh, dv_sb, dv_ss, dv_sh;
    i64 lse_sb, lse_sh, lse_ss;
    i64 alibi_sb, ws_rows;
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int total_q, total_k;
    int window_left, window_right;
    float scale, softcap;
    unsigned drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
    int vec_qk, vec_v;
    int pad0;
};

struct seq_info {
    int sq, sk;
    i64 qrow0, krow0;
};

/* This sequence's lengths and first rows; metadata in device memory is clamped, not trusted (as bwd_f32.cu). The
   selector declines seqused_k, so the keys are cu_k's or seqlen_k. */
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
    return s;
}

/* The workspace row of (batch, head)'s first query (bwd_f32.cu's ws_row0). */
static __device__ __forceinline__ i64 ws_row0(const fa_gpu_bwd_params &p, const seq_info &s, int b, int h)
{
    return FA_VARLEN ? (i64)h * p.total_q + s.qrow0 : ((i64)b * p.heads_q + h) * p.seqlen_q;
}

static __device__ __forceinline__ float to_f32(uint16_t x)
{
#if FA_STORAGE == 2
    return __uint_as_float((unsigned)x << 16);
#else
    _Float16 h;
    __builtin_memcpy(&h, &x, sizeof h);
    return (float)h;
#endif
}

/* FA_TR rows of D columns from row0 of base (row stride `stride`) into an LDS tile of row stride STR: 8-byte
   chunks, one load where aligned (vec), zeros past n. */
template <int D, int STR>
static __device__ __forceinline__ void stage(uint16_t *dst, const uint16_t *base, i64 stride, int row0, int n, int vec)
{
    for (int c = threadIdx.x; c < FA_TR * D / 4; c += THREADS) {
        const int row = c / (D / 4), x = c % (D / 4) * 4;
        uint2 w = make_uint2(0u, 0u);
        if (row0 + row < n) {
            const uint16_t *src = base + (i64)(row0 + row) * stride + x;
            if (vec) w = *(const uint2 *)src;
            else w = make_uint2(src[0] | (unsigned)src[1] << 16, src[2] | (unsigned)src[3] << 16);
        }
        *(uint2 *)(dst + row * STR + x) = w;
    }
}

static __device__ __forceinline__ void desc_of(fa_wb_desc &d, const fa_gpu_bwd_params &p, const seq_info &s,
                                               int rows_are_queries)
{
    d.instr = INSTR, d.dqk = FA_DQK, d.dv = FA_DV, d.rows = FA_TR, d.rows_are_queries = rows_are_queries;
    d.scale_log2 = p.scale * FA_WB_LOG2E;
    d.sq = s.sq, d.sk = s.sk;
    d.window_left = FA_LOCAL ? p.window_left : -1, d.window_right = FA_LOCAL ? p.window_right : -1;
    d.col0 = 0;
}

/* ------------------------------------------------------------------ D and LSE */

extern "C" __global__ void __launch_bounds__(THREADS) fa_bwd_pre_mfma(const struct fa_gpu_bwd_params p)
{
    const int h = blockIdx.y, b = blockIdx.z, tx = threadIdx.x % 16;
    const seq_info s = seq_of(p, b);
    const int i = blockIdx.x * (THREADS / 16) + threadIdx.x / 16;
    if ((int)blockIdx.x * (THREADS / 16) >= s.sq) return; /* the whole block is past this sequence */
    float acc = 0.0f;
    if (i < s.sq) {
        const uint16_t *o = p.out + (FA_VARLEN ? 0 : b * p.o_sb) + (s.qrow0 + i) * p.o_ss + h * p.o_sh;
        const uint16_t *g = p.dout + (FA_VARLEN ? 0 : b * p.do_sb) + (s.qrow0 + i) * p.do_ss + h * p.do_sh;
        for (int x = tx; x < FA_DV; x += 16) acc += to_f32(o[x]) * to_f32(g[x]);
    }
    /* the 16 lanes of a row, aligned to 16: a fixed order, the same bits every run (every lane shuffles) */
    acc += __shfl_xor(acc, 8);
    acc += __shfl_xor(acc, 4);
    acc += __shfl_xor(acc, 2);
    acc += __shfl_xor(acc, 1);
    if (i < s.sq && tx == 0) {
        const float l = p.lse[(FA_VARLEN ? 0 : b * p.lse_sb) + (s.qrow0 + i) * p.lse_ss + h * p.lse_sh];
        const i64 row = ws_row0(p, s, b, h) + i;
        p.ws[row] = acc;
        p.ws[row + p.ws_rows] = l * FA_WB_LOG2E; /* -inf (no key seen) is never read: every pair of the row is masked */
    }
}

/* ------------------------------------------------------------------ dK, dV */

extern "C" __global__ void __launch_bounds__(THREADS) fa_bwd_dkdv_mfma(const struct fa_gpu_bwd_params p)
{
    __shared__ __attribute__((aligned(16))) uint16_t qs[FA_TR * KSTR];
    __shared__ __attribute__((aligned(16))) uint16_t dos[FA_TR * VSTR];
    __shared__ float lse2s[FA_TR], dsums[FA_TR];

    const int hk = blockIdx.y, b = blockIdx.z, group = p.heads_q / p.heads_kv;
    const int wave = threadIdx.x / FA_WAVE, lane = threadIdx.x % FA_WAVE;
    const seq_info s = seq_of(p, b);
    const int k0 = blockIdx.x * COLS;
    if (k0 >= s.sk) return; /* the grid covers the longest sequence */

    fa_wb_desc d;
    desc_of(d, p, s, 1);
    int lo, hi, wlo, whi; /* the queries that see the block's keys; those that see the wave's */
    fa_wb_query_range(&d, k0, min(k0 + COLS, s.sk) - 1, &lo, &hi);
    lo = lo / FA_TR * FA_TR;
    d.col0 = k0 + wave * 32;
    const int live = d.col0 < s.sk;
    fa_wb_query_range(&d, d.col0, min(d.col0 + 32, s.sk) - 1, &wlo, &whi);

    const uint16_t *kg = p.k + (p.cu_k ? 0 : b * p.k_sb) + (s.krow0 + d.col0) * p.k_ss + hk * p.k_sh;
    const uint16_t *vg = p.v + (p.cu_k ? 0 : b * p.v_sb) + (s.krow0 + d.col0) * p.v_ss + hk * p.v_sh;
    uint16_t kf[FA_WB_CF_MAX], vf[FA_WB_CF_MAX];
    fa_wb_load_cols(&d, lane, kg, p.k_ss, FA_DQK, kf);
    fa_wb_load_cols(&d, lane, vg, p.v_ss, FA_DV, vf);
    float dka[FA_WB_ACC_MAX], dva[FA_WB_ACC_MAX];
    fa_wb_acc_init(&d, dka, FA_DQK);
    fa_wb_acc_init(&d, dva, FA_DV);
    fa_wb_lane st;

    for (int hg = 0; hg < group; hg++) {
        const int h = hk * group + hg;
        const uint16_t *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + s.qrow0 * p.q_ss + h * p.q_sh;
        const uint16_t *gg = p.dout + (FA_VARLEN ? 0 : b * p.do_sb) + s.qrow0 * p.do_ss + h * p.do_sh;
        const i64 wrow = ws_row0(p, s, b, h);
        for (int row0 = lo; row0 < hi; row0 += FA_TR) {
            __syncthreads(); /* every wave is done with the previous tile */
            stage<FA_DQK, KSTR>(qs, qg, p.q_ss, row0, s.sq, p.vec_qk);
            stage<FA_DV, VSTR>(dos, gg, p.do_ss, row0, s.sq, p.vec_v);
            for (int i = threadIdx.x; i < FA_TR; i += THREADS) {
                const int ok = row0 + i < s.sq;
                lse2s[i] = ok ? p.ws[wrow + row0 + i + p.ws_rows] : 0.0f;
                dsums[i] = ok ? p.ws[wrow + row0 + i] : 0.0f;
            }
            __syncthreads();
            if (!live || row0 + FA_TR <= wlo || row0 >= whi) continue; /* wave-uniform: no pair of the tile visible */
            fa_wb_tile_begin(&d, &st);
#pragma unroll
            for (int rb = 0; rb < FA_TR / 32; rb++) {
#pragma unroll
                for (int ks = 0; ks < FA_DQK / 8; ks++) { /* S = Q K^T */
                    uint16_t a[4];
                    fa_wb_frag_rows(&d, lane, qs, KSTR, rb, ks, a);
                    fa_mfma(INSTR, a, kf + FA_MFMA_AB_SLOTS * ks, fa_wb_s_acc(&d, &st, rb));
                }
#pragma unroll
                for (int ks = 0; ks < FA_DV / 8; ks++) { /* dP = dO V^T */
                    uint16_t a[4];
                    fa_wb_frag_rows(&d, lane, dos, VSTR, rb, ks, a);
                    fa_mfma(INSTR, a, vf + FA_MFMA_AB_SLOTS * ks, fa_wb_dp_acc(&d, &st, rb));
                }
            }
            fa_wb_probs(&d, lane, &st, row0, lse2s, row0);
            fa_wb_dsoft(&d, lane, &st, row0, dsums, row0);
#pragma unroll
            for (int c = 0; c < FA_TR / 8; c++) {
#pragma unroll
                for (int db = 0; db < FA_DV / 32; db++) { /* dV^T += dO^T P */
                    uint16_t a[4];
                    fa_wb_frag_rows_t(&d, lane, dos, VSTR, db, c, a);
                    fa_mfma(INSTR, a, fa_wb_p_frag(&st, c), fa_wb_acc(&d, dva, db));
                }
#pragma unroll
                for (int db = 0; db < FA_DQK / 32; db++) { /* dK^T += Q^T dS */
                    uint16_t a[4];
                    fa_wb_frag_rows_t(&d, lane, qs, KSTR, db, c, a);
                    fa_mfma(INSTR, a, fa_wb_ds_frag(&st, c), fa_wb_acc(&d, dka, db));
                }
            }
        }
    }
    if (!live) return;
    uint16_t *dkg = p.dk + (p.cu_k ? 0 : b * p.dk_sb) + (s.krow0 + d.col0) * p.dk_ss + hk * p.dk_sh;
    uint16_t *dvg = p.dv + (p.cu_k ? 0 : b * p.dv_sb) + (s.krow0 + d.col0) * p.dv_ss + hk * p.dv_sh;
    fa_wb_store(&d, lane, dka, FA_DQK, p.scale, dkg, p.dk_ss);
    fa_wb_store(&d, lane, dva, FA_DV, 1.0f, dvg, p.dv_ss);
}

/* ------------------------------------------------------------------ dQ */

extern "C" __global__ void __launch_bounds__(THREADS) fa_bwd_dq_mfma(const struct fa_gpu_bwd_params p)
{
    __shared__ __attribute__((aligned(16))) uint16_t ks_[FA_TR * KSTR];
    __shared__ __attribute__((aligned(16))) uint16_t vs[FA_TR * VSTR];
    __shared__ float lse2s[COLS], dsums[COLS];

    /* last query blocks first: under a causal mask they have the most tiles */
    const int qb = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (p.heads_q / p.heads_kv);
    const int wave = threadIdx.x / FA_WAVE, lane = threadIdx.x % FA_WAVE;
    const seq_info s = seq_of(p, b);
    const int q0 = qb * COLS;
    if (q0 >= s.sq) return;

    const i64 wrow = ws_row0(p, s, b, h);
    for (int i = threadIdx.x; i < COLS; i += THREADS) { /* the block's rows' LSE and D (the first barrier below) */
        const int ok = q0 + i < s.sq;
        lse2s[i] = ok ? p.ws[wrow + q0 + i + p.ws_rows] : 0.0f;
        dsums[i] = ok ? p.ws[wrow + q0 + i] : 0.0f;
    }
    fa_wb_desc d;
    desc_of(d, p, s, 0);
    int lo, hi, wlo, whi; /* the keys the block's queries see; those the wave's see */
    fa_wb_key_range(&d, q0, min(q0 + COLS, s.sq) - 1, &lo, &hi);
    lo = lo / FA_TR * FA_TR;
    d.col0 = q0 + wave * 32;
    const int live = d.col0 < s.sq;
    fa_wb_key_range(&d, d.col0, min(d.col0 + 32, s.sq) - 1, &wlo, &whi);

    const uint16_t *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + (s.qrow0 + d.col0) * p.q_ss + h * p.q_sh;
    const uint16_t *gg = p.dout + (FA_VARLEN ? 0 : b * p.do_sb) + (s.qrow0 + d.col0) * p.do_ss + h * p.do_sh;
    uint16_t qf[FA_WB_CF_MAX], gf[FA_WB_CF_MAX];
    fa_wb_load_cols(&d, lane, qg, p.q_ss, FA_DQK, qf);
    fa_wb_load_cols(&d, lane, gg, p.do_ss, FA_DV, gf);
    float dqa[FA_WB_ACC_MAX];
    fa_wb_acc_init(&d, dqa, FA_DQK);
    fa_wb_lane st;

    const uint16_t *kg = p.k + (p.cu_k ? 0 : b * p.k_sb) + s.krow0 * p.k_ss + hk * p.k_sh;
    const uint16_t *vg = p.v + (p.cu_k ? 0 : b * p.v_sb) + s.krow0 * p.v_ss + hk * p.v_sh;
    for (int row0 = lo; row0 < hi; row0 += FA_TR) {
        __syncthreads(); /* every wave is done with the previous tile */
        stage<FA_DQK, KSTR>(ks_, kg, p.k_ss, row0, s.sk, p.vec_qk);
        stage<FA_DV, VSTR>(vs, vg, p.v_ss, row0, s.sk, p.vec_v);
        __syncthreads();
        if (!live || row0 + FA_TR <= wlo || row0 >= whi) continue; /* wave-uniform */
        fa_wb_tile_begin(&d, &st);
#pragma unroll
        for (int rb = 0; rb < FA_TR / 32; rb++) {
#pragma unroll
            for (int ks = 0; ks < FA_DQK / 8; ks++) { /* S^T = K Q^T */
                uint16_t a[4];
                fa_wb_frag_rows(&d, lane, ks_, KSTR, rb, ks, a);
                fa_mfma(INSTR, a, qf + FA_MFMA_AB_SLOTS * ks, fa_wb_s_acc(&d, &st, rb));
            }
#pragma unroll
            for (int ks = 0; ks < FA_DV / 8; ks++) { /* dP^T = V dO^T */
                uint16_t a[4];
                fa_wb_frag_rows(&d, lane, vs, VSTR, rb, ks, a);
                fa_mfma(INSTR, a, gf + FA_MFMA_AB_SLOTS * ks, fa_wb_dp_acc(&d, &st, rb));
            }
        }
        fa_wb_probs(&d, lane, &st, row0, lse2s, q0);
        fa_wb_dsoft(&d, lane, &st, row0, dsums, q0);
#pragma unroll
        for (int c = 0; c < FA_TR / 8; c++)
#pragma unroll
            for (int db = 0; db < FA_DQK / 32; db++) { /* dQ^T += K^T dS^T */
                uint16_t a[4];
                fa_wb_frag_rows_t(&d, lane, ks_, KSTR, db, c, a);
                fa_mfma(INSTR, a, fa_wb_ds_frag(&st, c), fa_wb_acc(&d, dqa, db));
            }
    }
    if (!live) return;
    uint16_t *dqg = p.dq + (FA_VARLEN ? 0 : b * p.dq_sb) + (s.qrow0 + d.col0) * p.dq_ss + h * p.dq_sh;
    fa_wb_store(&d, lane, dqa, FA_DQK, p.scale, dqg, p.dq_ss);
}
