/*
 * The MFMA backward's kernel family (hip/kernels/bwd_mfma.hip) and when the selector takes it: fp16/bf16 on CDNA
 * devices with the _1k bf16 MFMA instructions (gfx90a, gfx94x), head dims multiples of 32 up to 128 (dqk and dv
 * may differ), causal or sliding window or neither, GQA/MQA, dense or varlen k/v. Everything else keeps the SIMT
 * backward (hip_bwd.c's hip_bwd_simt family: fp32, other head dims, softcap, ALiBi, dropout, per-sequence cache
 * lengths). The NVIDIA verification build never takes it.
 *
 * The path is compiled (hipcc and hiprtc) and its phases are emulated on the CPU, never run on AMD hardware.
 */
#include <stdio.h>

#include "fa_gpu_bwd_io.h" /* cuda/: the workspace (D, LSE) and the dK/dV block count, shared with the SIMT backward */
#include "hip_backend.h"

enum { MFMA_PAD = 4, MFMA_WAVE = 64, MFMA_COLS = 32 /* keys or queries per wave: the 32x32x8 instructions' N */ };

int hip_bwd_mfma_rows(const fa_attn_desc *d) { return d->head_dim_qk + d->head_dim_v <= 128 ? 64 : 32; }

/* Static LDS per block (bwd_mfma.hip): a Q/K tile and a dO/V tile of `rows` padded 16-bit rows, and the fp32 LSE
   and D of the tile's rows (dK/dV) or of the block's queries (dQ); the larger kernel. */
static int64_t mfma_bwd_smem(const fa_attn_desc *d, const fa_tile_config *c)
{
    const int64_t rows = hip_bwd_mfma_rows(d);
    const int64_t tiles = 2 * rows * (d->head_dim_qk + MFMA_PAD + d->head_dim_v + MFMA_PAD);
    const int64_t per_row = 8 * (rows > c->block_q ? rows : c->block_q);
    return tiles + per_row;
}

/*
 * Architectural VGPRs per lane, an estimate for the dK/dV kernel (the larger): K^T and V^T fragments ((dqk + dv) / 4
 * registers), S and dP of a tile (rows / 2 fp32 each), P and dS rounded (rows / 4 each), addressing. dK^T and dV^T
 * ((dqk + dv) / 2 fp32) are the compiler's to place in AccVGPRs. tests/hip/check_mfma_bwd_compile.sh prints the
 * real counts (gfx90a, d128, 32 rows: 256 arch + 154 acc).
 */
static int mfma_bwd_regs(const fa_attn_desc *d, const fa_tile_config *c)
{
    (void)c;
    const int rows = hip_bwd_mfma_rows(d);
    return (int)((d->head_dim_qk + d->head_dim_v) / 4) + rows + rows / 2 + 64;
}

/* One wave per 32 keys (dK/dV block) and per 32 queries (dQ block): block_kv = block_q = 32 x waves. */
static int mfma_bwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                          size_t why_size)
{
    (void)d;
    if (dev->simd_width != MFMA_WAVE || c->block_q != MFMA_COLS * c->warps || c->block_kv != c->block_q) {
        snprintf(why, why_size, "the MFMA backward runs wavefronts of 64, 32 keys (dK/dV) and 32 queries (dQ) each");
        return 0;
    }
    return 1;
}

const fa_kernel_family hip_bwd_mfma_family = {
    .name = "hip_bwd_mfma",
    .pass = FA_PASS_BWD,
    .id = HIP_KERNEL_BWD_MFMA,
    /* keys of a dK/dV block = queries of a dQ block = 32 x waves */
    .block_q = {32, 64, 128},
    .block_kv = {32, 64, 128},
    .warps = {1, 2, 4},
    .stages = {1},
    .max_splits = 1,
    .smem_bytes = mfma_bwd_smem,
    .regs_per_thread = mfma_bwd_regs,
    .valid = mfma_bwd_valid,
    .workspace_bytes = fa_gpu_bwd_workspace, /* D and LSE log2 e per query row and head, the SIMT layout */
    .work_items = fa_gpu_bwd_work_items,
};

int hip_mfma_bwd_takes(const hip_ctx *c, int device, const fa_attn_desc *d, char *why, size_t why_size)
{
    if (!hip_mfma_device_takes(c, device, d, "backward", why, why_size)) return 0;
    /* not in fa_wave_bwd_tile.h's phases: the SIMT backward keeps them (the selector logs this reason) */
    if (d->softcap > 0.0f || d->alibi != FA_ALIBI_NONE || d->dropout_p > 0.0f) {
        snprintf(why, why_size, "softcap, ALiBi and dropout are not in the MFMA backward (the SIMT backward has them)");
        return 0;
    }
    if (d->kv_cache_lengths) {
        snprintf(why, why_size, "per-sequence cache lengths (seqused_k) are not in the MFMA backward (the SIMT "
                 "backward zeroes dK/dV past them)");
        return 0;
    }
    return 1;
}
