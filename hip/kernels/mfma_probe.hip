/*
 * The compile probe of the HIP backend's MFMA code: kernels that use fa_mfma_layout.h and fa_wave_tile.h with the
 * MFMA builtins, one wave each. CI compiles this file for gfx90a and gfx940 (tests/hip/check_mfma_compile.sh)
 * and checks the code objects hold the four MFMA instructions and no scratch (register arrays that spilled or
 * were indexed at run time would show as scratch). No AMD GPU runs it here: the same phases run on the CPU in
 * tests/hip/test_mfma_emulation.c. They are also the first users of the phases a forward kernel will run.
 */
#include <hip/hip_runtime.h>

#include "fa_mfma_device.h"
#include "fa_mfma_layout.h"
#include "fa_wave_tile.h"

/*
 * C (M x N fp32, row-major) += A (M x K steps) B (K steps x N), 16-bit row-major: fragments and accumulator
 * through the layout functions, one MFMA per K step.
 */
static __device__ __forceinline__ void probe_product(fa_mfma_instr in, const uint16_t *a, const uint16_t *b,
                                                     float *c, int steps)
{
    const int lane = threadIdx.x, n = fa_mfma_n(in), k = fa_mfma_k(in), kt = k * steps;
    float acc[16];
#pragma unroll
    for (int r = 0; r < fa_mfma_c_slots(in); r++) {
        const fa_mfma_rc e = fa_mfma_c_elem(in, lane, r);
        acc[r] = c[e.row * n + e.col];
    }
    for (int s = 0; s < steps; s++) {
        uint16_t fa[4], fb[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const fa_mfma_rc ea = fa_mfma_a_elem(in, lane, r), eb = fa_mfma_b_elem(in, lane, r);
            fa[r] = a[ea.row * kt + s * k + ea.col];
            fb[r] = b[(s * k + eb.row) * n + eb.col];
        }
        fa_mfma(in, fa, fb, acc);
    }
#pragma unroll
    for (int r = 0; r < fa_mfma_c_slots(in); r++) {
        const fa_mfma_rc e = fa_mfma_c_elem(in, lane, r);
        c[e.row * n + e.col] = acc[r];
    }
}

#define PROBE_PRODUCT(name, instr)                                                                                 \
    extern "C" __global__ void __launch_bounds__(64) name(const uint16_t *a, const uint16_t *b, float *c, int steps) \
    {                                                                                                              \
        probe_product(instr, a, b, c, steps);                                                                      \
    }
PROBE_PRODUCT(fa_probe_product_32x32x8_f16, FA_MFMA_32X32X8_F16)
PROBE_PRODUCT(fa_probe_product_32x32x8_bf16, FA_MFMA_32X32X8_BF16)
PROBE_PRODUCT(fa_probe_product_16x16x16_f16, FA_MFMA_16X16X16_F16)
PROBE_PRODUCT(fa_probe_product_16x16x16_bf16, FA_MFMA_16X16X16_BF16)

/*
 * One wave's attention rows q0 .. q0 + N - 1 (q: sq x dqk, k: sk x dqk, v: sk x dv, row-major 16-bit; out: the
 * wave's N x dv rows; lse: N), driven through fa_wave_tile.h's phases in the order the CPU test runs them. K/V
 * tiles are staged in LDS by the wave itself (a real kernel pipelines this across waves).
 */
static __device__ __forceinline__ void probe_attention(const fa_wt_desc d, const uint16_t *q, const uint16_t *k,
                                                       const uint16_t *v, uint16_t *out, float *lse)
{
    __shared__ uint16_t qs[32 * 128], ks[FA_WT_BKV_MAX * 128], vs[FA_WT_BKV_MAX * 128];
    const int lane = threadIdx.x, n = fa_wt_rows(&d), m = fa_mfma_m(d.instr), kk = fa_mfma_k(d.instr);
    for (int x = lane; x < n * d.dqk; x += FA_WAVE) {
        const int row = x / d.dqk;
        qs[x] = d.q0 + row < d.sq ? q[(d.q0 + row) * d.dqk + x % d.dqk] : 0;
    }
    fa_wt_lane st;
    fa_wt_init(&d, &st);
    for (int kv0 = 0; kv0 < d.sk; kv0 += d.bkv) {
        __syncthreads(); /* the previous tile's reads are done */
        for (int x = lane; x < d.bkv * d.dqk; x += FA_WAVE)
            ks[x] = kv0 + x / d.dqk < d.sk ? k[kv0 * d.dqk + x] : 0;
        for (int x = lane; x < d.bkv * d.dv; x += FA_WAVE)
            vs[x] = kv0 + x / d.dv < d.sk ? v[kv0 * d.dv + x] : 0;
        __syncthreads();

        fa_wt_tile_begin(&d, &st);
#pragma unroll
        for (int sb = 0; sb < d.bkv / m; sb++)
#pragma unroll
            for (int s = 0; s < d.dqk / kk; s++) {
                uint16_t a[4], b[4];
                fa_wt_frag_k(&d, lane, ks, d.dqk, sb, s, a);
                fa_wt_frag_q(&d, lane, qs, d.dqk, s, b);
                fa_mfma(d.instr, a, b, fa_wt_s_acc(&d, &st, sb));
            }
        const float row_max = fa_col_max(d.instr, fa_wt_scores(&d, lane, &st, kv0));
        fa_wt_softmax(&d, &st, row_max);
#pragma unroll
        for (int db = 0; db < d.dv / m; db++)
#pragma unroll
            for (int c = 0; c < d.bkv / kk; c++) {
                uint16_t a[4];
                fa_wt_frag_v(&d, lane, vs, d.dv, db, c, a);
                fa_mfma(d.instr, a, fa_wt_p_frag(&st, c), fa_wt_o_acc(&d, &st, db));
            }
    }
    fa_wt_store(&d, lane, &st, fa_col_sum(d.instr, st.l), out, d.dv, lse, 1);
}

#define PROBE_ATTENTION(name, instr, dim)                                                                          \
    extern "C" __global__ void __launch_bounds__(64)                                                               \
        name(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out, float *lse, float scale_log2, \
             int sq, int sk, int window_left, int window_right, int q0)                                             \
    {                                                                                                              \
        const fa_wt_desc d = {instr, dim, dim, FA_WT_BKV_MAX, scale_log2, sq, sk, window_left, window_right, q0,   \
                              0.0f, 0.0f, 0.0f};                                                                   \
        probe_attention(d, q, k, v, out, lse);                                                                     \
    }
PROBE_ATTENTION(fa_probe_attn_32x32x8_bf16_d128, FA_MFMA_32X32X8_BF16, 128)
PROBE_ATTENTION(fa_probe_attn_32x32x8_f16_d64, FA_MFMA_32X32X8_F16, 64)
PROBE_ATTENTION(fa_probe_attn_16x16x16_bf16_d64, FA_MFMA_16X16X16_BF16, 64)
PROBE_ATTENTION(fa_probe_attn_16x16x16_f16_d128, FA_MFMA_16X16X16_F16, 128)
