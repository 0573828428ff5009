/*
 * The HIP selector and its kernel families. The SIMT forward is shared with the CUDA backend
 * (cuda/kernels/fwd_f32.cu through the vendor mapping cuda/kernels/fa_vendor.cuh), fp32 arithmetic on fp32,
 * fp16 or bf16 storage, 256 threads a block whatever the wave size: 4 wavefronts of 64 on AMD, 8 warps of 32 in
 * the NVIDIA verification build. It covers causal/window, softcap, ALiBi, GQA/MQA, dv != dqk, head dims 1-256
 * (as far as the device's shared memory allows: 64 KiB of LDS on CDNA holds d256 at 16 rows), LSE, varlen,
 * paged KV and per-sequence cache lengths, dropout (the library's Philox mask), split-KV with its combine kernel
 * (a num_splits hint, or the planner's own splits for decode: fa_gpu_simt_split_ok) and KV-cache append with
 * rotary (cuda/kernels/append_sm80.cu, shared). The MFMA forward (hip/kernels/fwd_mfma.hip, hip_select_mfma.c)
 * takes fp16/bf16 on gfx90a and gfx94x where its head dims fit and the problem has no dropout or append (it runs
 * a num_splits hint unsplit: the same result). The backward: the MFMA backward (hip/kernels/bwd_mfma.hip,
 * hip_select_mfma_bwd.c) takes fp16/bf16 on gfx90a and gfx94x with head dims multiples of 32 up to 128 and no
 * softcap, ALiBi, dropout or per-sequence cache lengths; everything else runs the SIMT backward shared
 * with the CUDA backend (cuda/kernels/bwd_f32.cu, hip_bwd.c): fp32/fp16/bf16, head dims 1-256 (fp32 above d192
 * does not fit CDNA's 64 KiB of LDS: the planner finds no tile there), dense or varlen k/v, dropout with the
 * forward's mask. Paged KV and KV-cache append are declined in the backward with the reason.
 */
#include <stdio.h>

#include "fa_gpu_fwd_io.h" /* cuda/: the SIMT forward's split rule and workspace, shared with CUDA */
#include "hip_backend.h"

/* The kernel's staged widths in floats (fwd_f32.cu: QSTR = DQK4 (+4 for an even count of float4s), VSTR, PSTR). */
static int64_t qstr(int64_t dqk)
{
    int64_t d4 = (dqk + 3) / 4 * 4;
    return d4 + ((d4 / 4) % 2 ? 0 : 4);
}

int64_t hip_fwd_simt_smem(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t q = qstr(d->head_dim_qk), v = 64 * ((d->head_dim_v + 63) / 64);
    return 4 * ((int64_t)c->block_q * q + (int64_t)c->block_kv * q + (int64_t)c->block_kv * v +
                (int64_t)c->block_q * (c->block_kv + 4));
}

/* O (rows x float4 groups x 4, twice over in flight), S, addressing: the CUDA backend's estimate from ptxas, which
   gfx90a's 164 VGPRs at d128 64x32 (hipcc, no scratch) stay under. */
static int simt_regs(const fa_attn_desc *d, const fa_tile_config *c)
{
    int rpt = c->block_q / 16, nc = c->block_kv / 16, nd4 = (int)((d->head_dim_v + 63) / 64);
    return rpt * nd4 * 8 + rpt * nc + 56;
}

/* Wave-size generic: the warps entry is the wave count that makes 256 threads on this device. */
static int simt_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                      size_t why_size)
{
    if (c->warps * dev->simd_width != HIP_SIMT_THREADS || c->block_q % 16 || c->block_kv % 16) {
        snprintf(why, why_size, "the SIMT forward runs %d threads (%d waves of %d here) and multiples of 16 rows and "
                 "keys", HIP_SIMT_THREADS, dev->simd_width > 0 ? HIP_SIMT_THREADS / dev->simd_width : 0,
                 dev->simd_width);
        return 0;
    }
    return fa_gpu_simt_split_ok(d, c, why, why_size); /* the planner's own splits: decode only */
}

/* fp32 split partials at the start (fa_gpu_fwd_io.c), KV-cache append's area at the end */
static int64_t simt_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    return fa_gpu_append_workspace(d, fa_gpu_simt_split_bytes(d, c->num_splits));
}

const fa_kernel_family hip_fwd_simt_family = {
    .name = "hip_fwd_simt",
    .pass = FA_PASS_FWD,
    .id = HIP_KERNEL_FWD_SIMT,
    /* 16 rows: d256 in CDNA's 64 KiB of LDS (32 rows need 67 KB there) */
    .block_q = {16, 32, 64},
    .block_kv = {16, 32, 64},
    .warps = {4, 8}, /* wavefronts of 64 / warps of 32: simt_valid keeps the one that makes 256 threads */
    .stages = {1},
    .max_splits = 128,
    .smem_bytes = hip_fwd_simt_smem,
    .regs_per_thread = simt_regs,
    .valid = simt_valid,
    .workspace_bytes = simt_workspace,
};

#define DECLINE(...)                                                                                            \
    do {                                                                                                        \
        snprintf(why, why_size, __VA_ARGS__);                                                                   \
        return FA_ERR_UNSUPPORTED;                                                                              \
    } while (0)

fa_status hip_select(void *vctx, int device, const fa_attn_desc *d, fa_pass pass, const fa_kernel_family **family,
                     char *why, size_t why_size)
{
    if (pass == FA_PASS_BWD) {
        /* the MFMA backward (hip/kernels/bwd_mfma.hip) where it takes the problem, else the SIMT backward
           (cuda/kernels/bwd_f32.cu through fa_vendor.cuh); both hip_bwd.c */
        if (d->dtype != FA_DTYPE_F32 && d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16)
            DECLINE("dtype %s: the %s backward takes fp32, fp16 or bf16", fa_dtype_name(d->dtype), HIP_LABEL);
        if (d->head_dim_qk > 256 || d->head_dim_v > 256)
            DECLINE("head dims %lld/%lld: the %s backward takes head dims up to 256", (long long)d->head_dim_qk,
                    (long long)d->head_dim_v, HIP_LABEL);
        if (d->paged_kv) DECLINE("the backward pass takes dense k/v, not a paged KV cache");
        if (d->seqlen_new > 0) DECLINE("the backward pass does not take KV-cache append (seqlen_new > 0)");
        const hip_ctx *c = vctx;
        char mwhy[256];
        if (hip_mfma_bwd_takes(c, device, d, mwhy, sizeof mwhy)) {
            *family = &hip_bwd_mfma_family;
            return FA_OK;
        }
        if ((d->dtype == FA_DTYPE_F16 || d->dtype == FA_DTYPE_BF16) && !FA_HIP_ON_NVIDIA)
            fa_log("%s: the SIMT backward, not the MFMA one: %s", HIP_LABEL, mwhy);
        *family = &hip_bwd_simt_family;
        return FA_OK;
    }
    if (d->dtype != FA_DTYPE_F32 && d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16)
        DECLINE("dtype %s: the %s forward takes fp32, fp16 or bf16", fa_dtype_name(d->dtype), HIP_LABEL);
    if (d->head_dim_qk > 256 || d->head_dim_v > 256)
        DECLINE("head dims %lld/%lld: the %s forward takes head dims up to 256", (long long)d->head_dim_qk,
                (long long)d->head_dim_v, HIP_LABEL);
    /* dropout, split-KV and KV-cache append: the SIMT forward takes them (the MFMA one declines the first and last) */
    const hip_ctx *c = vctx;
    char mwhy[256];
    if (hip_mfma_takes(c, device, d, mwhy, sizeof mwhy)) {
        *family = &hip_fwd_mfma_family;
        return FA_OK;
    }
    /* every other problem runs the SIMT forward; why not the MFMA one is worth a line where the MFMA one could
       have been expected (a 16-bit problem on a CDNA device) */
    if ((d->dtype == FA_DTYPE_F16 || d->dtype == FA_DTYPE_BF16) && !FA_HIP_ON_NVIDIA)
        fa_log("%s: the SIMT forward, not the MFMA one: %s", HIP_LABEL, mwhy);
    *family = &hip_fwd_simt_family;
    return FA_OK;
}
