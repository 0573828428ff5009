/*
 * The HIP backend's MFMA forward for CDNA (gfx90a, gfx94x): fp16/bf16 in and out, fp32 accumulation in the matrix
 * cores. Compiled per plan by hiprtc (hip/hip_fwd.c) for one specialisation; the host defines:
 *   FA_DQK, FA_DV     head dims, multiples of 32 up to 128 (fa_wave_tile.h's register arrays)
 *   FA_ROWS           query rows per wave: 32 (v_mfma_f32_32x32x8) or 16 (v_mfma_f32_16x16x16, short query blocks)
 *   FA_WAVES          waves (of 64) per block: the block's query rows are FA_ROWS x FA_WAVES
 *   FA_BKV            keys per K/V tile: 32 or 64 (a multiple of the instruction's M and K)
 *   FA_STAGES         K/V tiles in LDS: 2 (double buffer: one barrier per tile) or 1 (two barriers per tile)
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL, FA_VARLEN, FA_PAGED   as the SIMT forward (cuda/kernels/fwd_f32.cu)
 *   FA_STORAGE        1 fp16, 2 bf16 (q, k, v and out; also the MFMA input type)
 * The parameters are the SIMT forward's struct, field for field (hip_fwd.c fills one struct for both kernels).
 *
 * One block = (query block, query head, batch). Each wave owns FA_ROWS query rows and runs fa_wave_tile.h's
 * phases in the order documented there (the CPU test, tests/hip/test_mfma_emulation.c, runs the same driver over
 * the same phases on an emulator of the instructions): its Q^T fragments are loaded once from global memory into
 * registers (fa_wt_load_q), S^T = K Q^T and O^T += V^T P^T accumulate in (Acc)VGPRs, the softmax's row reductions
 * are xor shuffles. K and V tiles are staged in LDS by all the block's threads, row-major 16-bit with rows padded
 * by 4 elements (8 bytes: the 32 rows a K fragment reads start in distinct bank pairs), zeros past the keys.
 * Pipelining: tile t + 1 is loaded from global memory into registers before tile t is computed and written to
 * LDS after it, so the loads' latency hides behind the MFMAs; with FA_STAGES 2 it goes to the other LDS buffer.
 * Tiles outside the block's visible key range are never loaded; a wave skips the tiles its own rows cannot see.
 */
#if !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h>
#endif

#include "fa_mfma_device.h"
#include "fa_wave_tile.h"

typedef long long i64;

#ifndef FA_DQK
#define FA_DQK 128
#endif
#ifndef FA_DV
#define FA_DV FA_DQK
#endif
#ifndef FA_ROWS
#define FA_ROWS 32
#endif
#ifndef FA_WAVES
#define FA_WAVES 4
#endif
#ifndef FA_BKV
#define FA_BKV 64
#endif
#ifndef FA_STAGES
#define FA_STAGES 2
#endif
#ifndef FA_SOFTCAP
#define FA_SOFTCAP 0
#endif
#ifndef FA_ALIBI
#define FA_ALIBI 0
#endif
#ifndef FA_LOCAL
#define FA_LOCAL 0
#endif
#ifndef FA_VARLEN
#define FA_VARLEN 0
#endif
#ifndef FA_PAGED
#define FA_PAGED 0
#endif
#ifndef FA_STORAGE
#define FA_STORAGE 1
#endif

#if FA_DQK % 32 || FA_DV % 32 || FA_DQK > FA_WT_DQK_MAX || FA_DV > FA_WT_DV_MAX
#error "fwd_mfma.hip: head dims are multiples of 32 up to 128"
#endif
#if (FA_ROWS != 32 && FA_ROWS != 16) || FA_BKV % 32 || FA_BKV > FA_WT_BKV_MAX || (FA_STAGES != 1 && FA_STAGES != 2)
#error "fwd_mfma.hip: FA_ROWS 16 or 32, FA_BKV 32 or 64, FA_STAGES 1 or 2"
#endif
#if FA_STORAGE != 1 && FA_STORAGE != 2
#error "fwd_mfma.hip: FA_STORAGE 1 (fp16) or 2 (bf16)"
#endif

#define INSTR                                                                                                       \
    (FA_ROWS == 32 ? (FA_STORAGE == 2 ? FA_MFMA_32X32X8_BF16 : FA_MFMA_32X32X8_F16)                                 \
                   : (FA_STORAGE == 2 ? FA_MFMA_16X16X16_BF16 : FA_MFMA_16X16X16_F16))
#define THREADS (FA_WAVES * FA_WAVE)
#define BQ (FA_ROWS * FA_WAVES)
#define KSTR (FA_DQK + 4) /* LDS row strides in elements (see the padding above) */
#define VSTR (FA_DV + 4)
#define KCH (FA_BKV * FA_DQK / 4) /* 4-element (8-byte) chunks of a K tile and of a V tile */
#define VCH (FA_BKV * FA_DV / 4)
#define KPT ((KCH + THREADS - 1) / THREADS) /* chunks per thread */
#define VPT ((VCH + THREADS - 1) / THREADS)

/* Field for field struct fa_cuda_fwd_f32_params of cuda/kernels/fwd_f32.cu with 16-bit elements (hip_fwd.c). */
struct fa_hip_fwd_params {
    const uint16_t *q, *k, *v;
    uint16_t *out;
    float *lse;
    const float *alibi;
    i64 q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh, lse_sb, lse_sh, lse_ss;
    i64 alibi_sb;
    const int *cu_q, *cu_k, *seqused_k, *block_table;
    i64 bt_stride, k_sp, v_sp;
    int page_size, num_pages;
    int total_q, total_k;
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int window_left, window_right;
    float scale, softcap;
    int vec_qk, vec_v;
};

/* Where key row j of one (sequence, kv head) lives (as fwd_f32.cu's key_row). */
struct key_rows {
    const uint16_t *base;
    i64 stride;
    const int *pages;
    i64 page_stride;
    int page_size, num_pages;
};

static __device__ __forceinline__ const uint16_t *key_row(const key_rows &kr, int j)
{
#if FA_PAGED
    int page = kr.pages[j / kr.page_size];
    page = min(max(page, 0), kr.num_pages - 1); /* a bad table entry reads a real page, never out of bounds */
    return kr.base + (i64)page * kr.page_stride + (i64)(j % kr.page_size) * kr.stride;
#else
    return kr.base + (i64)j * kr.stride;
#endif
}

/* Chunk c (4 elements) of a tile of COLS columns from key row0: one 8-byte load where aligned, zeros past sk. */
template <int COLS, int PT>
static __device__ __forceinline__ void tile_load(uint2 (&r)[PT], const key_rows &src, int row0, int sk, int vec)
{
#pragma unroll
    for (int i = 0; i < PT; i++) {
        const int c = threadIdx.x + i * THREADS, row = c / (COLS / 4), x = c % (COLS / 4) * 4;
        uint2 w = make_uint2(0u, 0u);
        if (c < FA_BKV * COLS / 4 && row0 + row < sk) {
            const uint16_t *p = key_row(src, row0 + row) + x;
            if (vec) w = *(const uint2 *)p;
            else w = make_uint2(p[0] | (uint32_t)p[1] << 16, p[2] | (uint32_t)p[3] << 16);
        }
        r[i] = w;
    }
}

template <int COLS, int STR, int PT>
static __device__ __forceinline__ void tile_store(uint16_t *dst, const uint2 (&r)[PT])
{
#pragma unroll
    for (int i = 0; i < PT; i++) {
        const int c = threadIdx.x + i * THREADS;
        if (c < FA_BKV * COLS / 4) *(uint2 *)(dst + c / (COLS / 4) * STR + c % (COLS / 4) * 4) = r[i];
    }
}

extern "C" __global__ void __launch_bounds__(THREADS) fa_fwd_mfma(const struct fa_hip_fwd_params p)
{
    __shared__ __attribute__((aligned(16))) uint16_t ks[FA_STAGES][FA_BKV * KSTR];
    __shared__ __attribute__((aligned(16))) uint16_t vs[FA_STAGES][FA_BKV * VSTR];

    /* last query blocks first: under a causal mask they have the most tiles */
    const int qb = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, hk = h / (p.heads_q / p.heads_kv), b = blockIdx.z;
    const int wave = threadIdx.x / FA_WAVE, lane = threadIdx.x % FA_WAVE;
    /* this sequence's lengths (metadata in device memory is clamped, not trusted), as fwd_f32.cu */
    int sq = p.seqlen_q, sk = p.seqlen_k;
    i64 qrow0 = 0, krow0 = 0;
#if FA_VARLEN
    qrow0 = min(max(p.cu_q[b], 0), p.total_q);
    sq = min(min(max(p.cu_q[b + 1] - p.cu_q[b], 0), p.seqlen_q), p.total_q - (int)qrow0);
#endif
    if (p.cu_k) {
        sk = min(max(p.cu_k[b + 1] - p.cu_k[b], 0), p.seqlen_k);
        if (!FA_PAGED) krow0 = min(max(p.cu_k[b], 0), p.total_k), sk = min(sk, p.total_k - (int)krow0);
    }
    if (p.seqused_k) sk = min(max(p.seqused_k[b], 0), p.seqlen_k);
    if (p.seqused_k && p.cu_k && !FA_PAGED) sk = min(sk, p.total_k - (int)krow0);
    const int q0 = qb * BQ;
    if (q0 >= sq) return; /* the grid covers the longest sequence; the whole block leaves together */

    key_rows kg, vg;
#if FA_PAGED
    kg.base = p.k + hk * p.k_sh, vg.base = p.v + hk * p.v_sh;
    kg.pages = vg.pages = p.block_table + b * p.bt_stride;
    kg.page_stride = p.k_sp, vg.page_stride = p.v_sp;
    kg.page_size = vg.page_size = p.page_size;
    kg.num_pages = vg.num_pages = p.num_pages;
#else
    kg.base = p.k + (p.cu_k ? 0 : b * p.k_sb) + krow0 * p.k_ss + hk * p.k_sh;
    vg.base = p.v + (p.cu_k ? 0 : b * p.v_sb) + krow0 * p.v_ss + hk * p.v_sh;
#endif
    kg.stride = p.k_ss, vg.stride = p.v_ss;

    /* the wave's rows; everything but the positions is a compile-time constant, so the phases' loops unroll */
    fa_wt_desc d;
    d.instr = INSTR, d.dqk = FA_DQK, d.dv = FA_DV, d.bkv = FA_BKV;
    d.scale = p.scale, d.scale_log2 = p.scale * FA_WT_LOG2E;
    d.softcap = FA_SOFTCAP ? p.softcap : 0.0f;
    d.alibi_slope = FA_ALIBI && p.alibi ? p.alibi[b * p.alibi_sb + h] : 0.0f;
    d.sq = sq, d.sk = sk;
    d.window_left = FA_LOCAL ? p.window_left : -1, d.window_right = FA_LOCAL ? p.window_right : -1;
    d.q0 = q0;
    int lo;
    const int ntiles = fa_wt_tile_range(&d, q0, min(q0 + BQ, sq) - 1, &lo);
    d.q0 = q0 + wave * FA_ROWS;

    const uint16_t *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + (qrow0 + d.q0) * p.q_ss + h * p.q_sh;
    uint16_t qf[FA_WT_QF_MAX];
    fa_wt_load_q(&d, lane, qg, p.q_ss, qf);
    fa_wt_lane st;
    fa_wt_init(&d, &st);

    uint2 kr[KPT], vr[VPT];
    if (ntiles > 0) {
        tile_load<FA_DQK, KPT>(kr, kg, lo, sk, p.vec_qk);
        tile_load<FA_DV, VPT>(vr, vg, lo, sk, p.vec_v);
        tile_store<FA_DQK, KSTR, KPT>(ks[0], kr);
        tile_store<FA_DV, VSTR, VPT>(vs[0], vr);
        __syncthreads();
    }
    const int m = fa_mfma_m(INSTR), kk = fa_mfma_k(INSTR);
    for (int it = 0; it < ntiles; it++) {
        const int kv0 = lo + it * FA_BKV, buf = FA_STAGES == 2 ? it & 1 : 0;
        const int more = it + 1 < ntiles;
        if (more) { /* the next tile's loads in flight while this one is computed */
            tile_load<FA_DQK, KPT>(kr, kg, kv0 + FA_BKV, sk, p.vec_qk);
            tile_load<FA_DV, VPT>(vr, vg, kv0 + FA_BKV, sk, p.vec_v);
        }
        if (fa_wt_tile_needed(&d, kv0)) { /* wave-uniform */
            const uint16_t *kt = ks[buf], *vt = vs[buf];
            fa_wt_tile_begin(&d, &st);
#pragma unroll
            for (int sb = 0; sb < FA_BKV / m; sb++)
#pragma unroll
                for (int s = 0; s < FA_DQK / kk; s++) {
                    uint16_t a[4];
                    fa_wt_frag_k(&d, lane, kt, KSTR, sb, s, a);
                    fa_mfma(INSTR, a, qf + FA_MFMA_AB_SLOTS * s, fa_wt_s_acc(&d, &st, sb));
                }
            const float row_max = fa_col_max(INSTR, fa_wt_scores(&d, lane, &st, kv0));
            fa_wt_softmax(&d, &st, row_max);
#pragma unroll
            for (int db = 0; db < FA_DV / m; db++)
#pragma unroll
                for (int c = 0; c < FA_BKV / kk; c++) {
                    uint16_t a[4];
                    fa_wt_frag_v(&d, lane, vt, VSTR, db, c, a);
                    fa_mfma(INSTR, a, fa_wt_p_frag(&st, c), fa_wt_o_acc(&d, &st, db));
                }
        }
        if (more) {
            /* one buffer: every wave is done reading it before it is overwritten. Two: the other buffer was last
               read in tile it - 1, which every wave finished before the barrier that ended that iteration. */
            if (FA_STAGES == 1) __syncthreads();
            tile_store<FA_DQK, KSTR, KPT>(ks[FA_STAGES == 2 ? buf ^ 1 : 0], kr);
            tile_store<FA_DV, VSTR, VPT>(vs[FA_STAGES == 2 ? buf ^ 1 : 0], vr);
            __syncthreads();
        }
    }

    uint16_t *og = p.out + (FA_VARLEN ? 0 : b * p.o_sb) + (qrow0 + d.q0) * p.o_ss + h * p.o_sh;
    float *lse = p.lse ? p.lse + (FA_VARLEN ? 0 : b * p.lse_sb) + h * p.lse_sh + (qrow0 + d.q0) * p.lse_ss : 0;
    fa_wt_store(&d, lane, &st, fa_col_sum(INSTR, st.l), og, p.o_ss, lse, p.lse_ss);
}
