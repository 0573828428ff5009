/*
 * The OpenCL selector and its kernel family. The forward (kernels/fwd.cl) covers fp32, fp16 and bf16 storage with
 * fp32 arithmetic, head dims 1-256, causal, sliding window, softcap, ALiBi, GQA/MQA, dv != dqk, LSE, dropout, varlen,
 * paged KV with per-sequence cache lengths, split-KV with its combine, and KV-cache append with rotary embedding
 * (kernels/append.cl, enqueued before it by cl_append.c; dense q only). The backward (kernels/bwd.cl, family
 * in cl_bwd.c) takes the same dtypes and head dims, masks, softcap, ALiBi, GQA, varlen, seqused_k and dropout,
 * not paged KV or append. Everything else is declined with the reason, so fa_plan_create names what is
 * missing. On a CPU device (PoCL) the forward is kernels/fwd_cpu.cl where it takes the problem (cpu_takes).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cl_backend.h"

static int64_t fwd_local(const fa_attn_desc *d, const fa_tile_config *c) { return cl_fwd_local_bytes(d, c); }

static int fwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                     size_t why_size)
{
    (void)d;
    /* the planner counts work-items as warps x the device's SIMD width; fwd.cl takes 64, 128 or 256 */
    const int wg = c->warps * dev->simd_width, rpt = c->block_q / (wg / 16);
    if (wg != 64 && wg != 128 && wg != 256) {
        snprintf(why, why_size, "warps=%d x simd width %d must be 64, 128 or 256 work-items", c->warps, dev->simd_width);
        return 0;
    }
    if (dev->max_threads_per_block > 0 && dev->max_threads_per_block < wg) {
        snprintf(why, why_size, "the device's largest work-group (%d) is under %d work-items", dev->max_threads_per_block, wg);
        return 0;
    }
    /* each work-item holds 1, 2, 4 or 8 rows of 16-lane row groups */
    if (c->block_q % (wg / 16) || (rpt != 1 && rpt != 2 && rpt != 4 && rpt != 8)) {
        snprintf(why, why_size, "block_q=%d must be 1, 2, 4 or 8 rows per work-item of %d row groups", c->block_q, wg / 16);
        return 0;
    }
    return 1;
}

/*
 * The forward family, listed twice with the work-group sizes in two orders: ties in the planner's score go to the
 * earlier entry, so the order is the heuristic's preference.
 *   fp32 storage: groups of 64 first. On an H100 (NVIDIA OpenCL) 256 work-items cap the kernel at 64 registers and
 *     it spills (d128 32x32: 18.0 TFLOP/s at 256, 23.7 at 128, 24.1 at 64; fifth session).
 *   fp16/bf16 storage: groups of 128 first. flashport-tune on the H100 picked 128 items in 33 of its 36 16-bit
 *     forward buckets, 1.04-1.49x faster than 64 (bench/RESULTS.md, sixth session; the other 3 kept 64 items,
 *     level within noise). Why 16-bit storage prefers the larger group is not measured.
 * On a device with a 16-wide SIMD (PoCL) 2 warps make 32 items, which fwd.cl does not take, so both orders start
 * at 64 items there.
 */
#define CL_FWD_FAMILY(...)                                                                                       \
    {                                                                                                           \
        .name = "opencl_fwd", .pass = FA_PASS_FWD, .id = CL_KERNEL_FWD,                                         \
        /* 16-row blocks let head dims 224-256 fit NVIDIA's 48 KB of local memory */                            \
        .block_q = {16, 32, 64}, .block_kv = {16, 32, 64}, .warps = {__VA_ARGS__}, .stages = {1},               \
        .max_splits = 64, .smem_bytes = fwd_local, .valid = fwd_valid, .workspace_bytes = cl_fwd_workspace,    \
    }

const fa_kernel_family cl_fwd_family = CL_FWD_FAMILY(2, 4, 8, 16);
static const fa_kernel_family cl_fwd_family_16bit = CL_FWD_FAMILY(4, 2, 8, 16);

/*
 * Decode (FA_PACK in fwd.cl): the query heads sharing a KV head are packed into one work-group's rows, so K and
 * V are read once per group instead of once per query head, and the keys are split over work-groups. Rows per
 * KV head = seqlen_q x group, at most CL_DECODE_ROWS (as the CUDA decode form). The planner's row padding does
 * not apply to packed rows (work_items is set), so valid() bounds the padding itself: one row per work-item, and
 * a block under twice the rows (or the smallest block of the smallest work-group when none is). The family is
 * `streaming`: every K/V byte is read once whatever the tile, so tile size does not rank candidates and the wave
 * model fills the device with small work-groups and splits. On an H100 (NVIDIA OpenCL, batch 16, GQA 32:8 and
 * 32:4, KV 8k-128k) flashport-tune's best were all one row per work-item, 64-128 items, 16-32 keys and 16-64
 * splits, 3.0-4.8x faster than 16x64 tiles of 256 items with 2-4 splits (bench/RESULTS.md, seventh session).
 * 64-key tiles are not offered: a split walks its tiles one after another, each a load, barriers and a short
 * product, so a shorter tile shortens that chain; the wave model cannot see it (it ranked 64-key tiles with 16
 * splits first, measured 2x slower than 16-key ones on the H100).
 */
#define CL_DECODE_ROWS 64

static int64_t decode_rows(const fa_attn_desc *d) { return d->seqlen_q * (d->heads_q / d->heads_kv); }

static int decode_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                        size_t why_size)
{
    if (!fwd_valid(d, dev, c, why, why_size)) return 0;
    const int wg = c->warps * dev->simd_width, smallest = 64 / 16; /* fwd.cl's smallest work-group is 64 items */
    if (c->block_q != wg / 16) {
        snprintf(why, why_size, "block_q=%d: decode takes one row per work-item (%d rows for %d items)", c->block_q,
                 wg / 16, wg);
        return 0;
    }
    if (c->block_q >= 2 * decode_rows(d) && c->block_q != smallest) {
        snprintf(why, why_size, "block_q=%d: twice the %lld packed rows or more", c->block_q, (long long)decode_rows(d));
        return 0;
    }
    return 1;
}

static int64_t decode_work_items(const fa_attn_desc *d, const fa_tile_config *c)
{
    return d->batch * d->heads_kv * ((decode_rows(d) + c->block_q - 1) / c->block_q) * c->num_splits;
}

#define CL_DECODE_FAMILY(...)                                                                                    \
    {                                                                                                           \
        .name = "opencl_fwd_decode", .pass = FA_PASS_FWD, .id = CL_KERNEL_FWD_DECODE,                           \
        .block_q = {4, 8, 16, 32, 64}, .block_kv = {16, 32}, .warps = {__VA_ARGS__}, .stages = {1},             \
        .max_splits = 64, .smem_bytes = fwd_local, .valid = decode_valid, .workspace_bytes = cl_fwd_workspace, \
        .work_items = decode_work_items, .streaming = 1,                                                        \
    }
static const fa_kernel_family cl_fwd_decode_family = CL_DECODE_FAMILY(2, 4, 8, 16);
static const fa_kernel_family cl_fwd_decode_family_16bit = CL_DECODE_FAMILY(4, 2, 8, 16);

/*
 * The CPU-shaped forward (kernels/fwd_cpu.cl), for OpenCL CPU devices (PoCL): one work-item per block of query
 * rows, so no local memory and no work-group size to plan; its private arrays hold the Q rows, their O and one
 * score tile, 64 rows of them up to head dims 128 and 32 rows above (kept near 100 KB of the work-item's stack).
 * Tiles of 64 keys: the K^T and V panels a register block walks then stay within the L2 at d128 (32 KB each).
 */
static int cpu_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                     size_t why_size)
{
    (void)dev;
    if (c->block_q > 32 && (d->head_dim_qk > 128 || d->head_dim_v > 128)) {
        snprintf(why, why_size, "block_q=%d: head dims over 128 take 32-row blocks (private arrays)", c->block_q);
        return 0;
    }
    return 1;
}

static int64_t cpu_local(const fa_attn_desc *d, const fa_tile_config *c)
{
    (void)d;
    (void)c;
    return 0; /* no local memory */
}

static const fa_kernel_family cl_fwd_cpu_family = {
    .name = "opencl_fwd_cpu", .pass = FA_PASS_FWD, .id = CL_KERNEL_FWD_CPU,
    .block_q = {64, 32}, .block_kv = {64}, .warps = {1}, .stages = {1},
    .max_splits = 1, .smem_bytes = cpu_local, .valid = cpu_valid, .workspace_bytes = cl_fwd_cpu_workspace,
};

/*
 * Whether the CPU-shaped forward serves the problem. It declines what it does not implement, which fwd.cl then
 * serves: dropout, KV-cache append (its q is rotated by cl_append.c into fwd.cl's layout), split-KV asked
 * for in the descriptor (num_splits > 1), and
 * decode shapes (the packed decode form reads K/V once per group; one query block per head would leave the
 * device's cores idle). FLASHPORT_OPENCL_CPU_FWD=0 turns it off (A/B runs against fwd.cl on the same device).
 */
static int cpu_takes(const cl_ctx *c, int device, const fa_attn_desc *d)
{
    const char *env = getenv("FLASHPORT_OPENCL_CPU_FWD");
    if (env && env[0] == '0') return 0;
    return (c->dev[device].type & CL_DEVICE_TYPE_CPU) && d->dropout_p == 0.0f &&
           d->seqlen_new == 0 && d->num_splits <= 1 && decode_rows(d) > CL_DECODE_ROWS;
}

#define DECLINE(...)                                                                                            \
    do {                                                                                                        \
        snprintf(why, why_size, __VA_ARGS__);                                                                   \
        return FA_ERR_UNSUPPORTED;                                                                              \
    } while (0)

fa_status cl_select(void *ctx, int device, const fa_attn_desc *d, fa_pass pass, const fa_kernel_family **family,
                    char *why, size_t why_size)
{
    if (pass == FA_PASS_BWD) {
        /* kernels/bwd.cl: dQ, dK, dV deterministic by construction (no atomics) */
        if (d->dtype != FA_DTYPE_F32 && d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16)
            DECLINE("dtype %s: the OpenCL backward takes fp32, fp16 or bf16", fa_dtype_name(d->dtype));
        if (d->head_dim_qk > 256 || d->head_dim_v > 256)
            DECLINE("head dims %lld/%lld: the OpenCL backward takes head dims up to 256", (long long)d->head_dim_qk,
                    (long long)d->head_dim_v);
        if (d->paged_kv) DECLINE("the backward pass takes dense k/v, not a paged KV cache");
        if (d->seqlen_new > 0) DECLINE("the backward pass does not take KV-cache append (seqlen_new > 0)");
        *family = &cl_bwd_family;
        return FA_OK;
    }
    if (d->dtype != FA_DTYPE_F32 && d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16)
        DECLINE("dtype %s: the OpenCL forward takes fp32, fp16 or bf16", fa_dtype_name(d->dtype));
    if (d->head_dim_qk > 256 || d->head_dim_v > 256)
        DECLINE("head dims %lld/%lld: the OpenCL forward takes head dims up to 256", (long long)d->head_dim_qk,
                (long long)d->head_dim_v);
    /*
     * Dropout (any dropout_p validation accepts, [0, 1)) is taken with every dtype: fwd.cl keeps P, its
     * multiplier 1 / (1 - p) (at most 2^24) and O in fp32, so nothing overflows on the way. CUDA declines fp16
     * above p = 0.99 because its P tile is fp16; here only the stored output is 16-bit, and it overflows
     * only where the exact result does.
     */
    /* KV-cache append (cl_append.c, kernels/append.cl) indexes dense q, as CUDA's; fa_validate refuses varlen too */
    if (d->seqlen_new > 0 && d->varlen) DECLINE("KV-cache append (seqlen_new) takes dense q, not varlen");
    if (cpu_takes(ctx, device, d))
        *family = &cl_fwd_cpu_family;
    else if (decode_rows(d) <= CL_DECODE_ROWS)
        *family = d->dtype == FA_DTYPE_F32 ? &cl_fwd_decode_family : &cl_fwd_decode_family_16bit;
    else
        *family = d->dtype == FA_DTYPE_F32 ? &cl_fwd_family : &cl_fwd_family_16bit;
    return FA_OK;
}
