/*
 * The MFMA forward's kernel family (hip/kernels/fwd_mfma.hip) and when the selector takes it: fp16/bf16 on CDNA
 * devices with the _1k bf16 MFMA instructions (gfx90a, gfx94x), head dims that are multiples of 32 up to 128.
 * Everything else keeps the SIMT forward, which covers the rest of the API (fp32, other head dims, up to 256).
 * The NVIDIA verification build never takes it (no MFMA there; its devices say sm_XY).
 *
 * The path is compiled (hipcc and hiprtc) and its phases are emulated on the CPU, never run on AMD hardware.
 */
#include <stdio.h>
#include <string.h>

#include "hip_backend.h"

/* Elements of padding per LDS row (kernels/fwd_mfma.hip's KSTR/VSTR): 8 bytes, so K fragments' rows spread. */
enum { MFMA_PAD = 4, MFMA_WAVE = 64 };

int64_t hip_fwd_mfma_smem(const fa_attn_desc *d, const fa_tile_config *c)
{
    return 2 * (int64_t)c->stages * c->block_kv * (d->head_dim_qk + MFMA_PAD + d->head_dim_v + MFMA_PAD);
}

/*
 * Architectural VGPRs per lane, an estimate: Q^T fragments (dqk / 4 registers at 32 rows, dqk / 8 at 16), the
 * next tile's prefetch (2 per 8-byte chunk), S and P of a tile, and addressing. The accumulators of O (dv N / 64
 * fp32) are the compiler's to place in AccVGPRs, which gfx90a/gfx94x have besides these 256 (the planner's cap is
 * 255 per thread). tests/hip/check_mfma_fwd_compile.sh prints the real counts.
 */
static int mfma_regs(const fa_attn_desc *d, const fa_tile_config *c)
{
    const int rows = c->block_q / c->warps, threads = c->warps * MFMA_WAVE;
    const int64_t kch = (int64_t)c->block_kv * d->head_dim_qk / 4, vch = (int64_t)c->block_kv * d->head_dim_v / 4;
    const int prefetch = (int)(2 * ((kch + threads - 1) / threads + (vch + threads - 1) / threads));
    const int qf = (int)(rows == 32 ? d->head_dim_qk / 4 : d->head_dim_qk / 8), s = c->block_kv * rows / 64;
    return qf + prefetch + s + s / 2 + 48;
}

static int mfma_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                      size_t why_size)
{
    (void)d;
    const int rows = c->warps > 0 ? c->block_q / c->warps : 0;
    if (dev->simd_width != MFMA_WAVE || (rows != 32 && rows != 16) || rows * c->warps != c->block_q) {
        snprintf(why, why_size, "the MFMA forward runs wavefronts of 64 with 32 or 16 query rows each");
        return 0;
    }
    return 1;
}

const fa_kernel_family hip_fwd_mfma_family = {
    .name = "hip_fwd_mfma",
    .pass = FA_PASS_FWD,
    .id = HIP_KERNEL_FWD_MFMA,
    .block_q = {32, 64, 128, 256},
    .block_kv = {32, 64},
    .warps = {2, 4, 8}, /* waves of 64; mfma_valid keeps block_q / warps = 32 or 16 */
    /* 2: double-buffered K/V in LDS (d128 at 64 keys needs 67.6 KB, over CDNA's 64 KiB: 1 stage or 32 keys) */
    .stages = {1, 2},
    .max_splits = 1,
    .smem_bytes = hip_fwd_mfma_smem,
    .regs_per_thread = mfma_regs,
    .valid = mfma_valid,
};

int hip_mfma_device_takes(const hip_ctx *c, int device, const fa_attn_desc *d, const char *pass, char *why,
                          size_t why_size)
{
    if (FA_HIP_ON_NVIDIA) {
        snprintf(why, why_size, "the NVIDIA verification build has no MFMA instructions");
        return 0;
    }
    if (d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16) {
        snprintf(why, why_size, "dtype %s: the MFMA %s takes fp16 and bf16", fa_dtype_name(d->dtype), pass);
        return 0;
    }
    if (d->head_dim_qk % 32 || d->head_dim_v % 32 || d->head_dim_qk > 128 || d->head_dim_v > 128) {
        snprintf(why, why_size, "head dims %lld/%lld: the MFMA %s takes multiples of 32 up to 128 (its register "
                 "tiles hold dqk / 2 or dv / 2 fp32 accumulators per lane)", (long long)d->head_dim_qk,
                 (long long)d->head_dim_v, pass);
        return 0;
    }
    const char *arch = c->dev[device].props.arch;
    const int gfx94 = strncmp(arch, "gfx94", 5) == 0;
    if (strcmp(arch, "gfx90a") != 0 && !gfx94) {
        snprintf(why, why_size, "device arch %s: the MFMA %s is built for gfx90a and gfx94x (the _1k bf16 MFMA "
                 "instructions)", arch, pass);
        return 0;
    }
    /* ROCm 5.x's hiprtc aborts the process on a gfx94x target (its code object manager predates them) */
    int major = 0, minor = 0;
    if (gfx94 && (!c->api.rtcVersion || c->api.rtcVersion(&major, &minor) != 0 || major < 6)) {
        snprintf(why, why_size, "device arch %s needs hiprtc from ROCm 6 or later for the MFMA %s (this one is "
                 "%d.%d; ROCm 5's aborts on gfx94x targets)", arch, pass, major, minor);
        return 0;
    }
    return 1;
}

int hip_mfma_takes(const hip_ctx *c, int device, const fa_attn_desc *d, char *why, size_t why_size)
{
    if (!hip_mfma_device_takes(c, device, d, "forward", why, why_size)) return 0;
    /* not written in the MFMA kernel: the SIMT forward takes these (the selector logs this reason) */
    if (d->dropout_p > 0.0f) {
        snprintf(why, why_size, "dropout is not in the MFMA forward (the SIMT forward draws the Philox mask)");
        return 0;
    }
    if (d->seqlen_new > 0) {
        snprintf(why, why_size, "KV-cache append (seqlen_new > 0) is not in the MFMA forward's plan (the SIMT "
                 "forward's runs the shared append kernel first)");
        return 0;
    }
    return 1;
}
