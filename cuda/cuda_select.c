/*
 * The CUDA selector and its kernel families. The sm80 forward (kernels/fwd_sm80.cu) covers fp16/bf16 with
 * head dims 1-256 (padded to multiples of 16 in the kernel), causal, sliding window, softcap, ALiBi, GQA/MQA,
 * dv != dqk and LSE over dense, varlen and paged tensors
 * with per-sequence cache lengths; its decode form packs a KV head's query heads and splits the keys. The
 * sm80 backward (kernels/bwd_sm80.cu) covers fp16/bf16 dense and varlen tensors (with per-sequence key counts, not
 * paged or appended) with head dims that are multiples of 16 up to 256; the SIMT backward (kernels/bwd_f32.cu,
 * cuda_bwd_f32.c) the same problems in fp32, the other 16-bit head dims up to 256, and those whose smallest
 * sm80 tile does not fit the device's shared memory. Everything else is
 * declined with the reason, so fa_plan_create names what is missing.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_backend.h"

int cuda_fwd_ptx_arch(const cuda_device *dev)
{
    const char *env = getenv("FLASHPORT_CUDA_ARCH");
    if (env && *env) {
        int xy = 0;
        char tail;
        if (sscanf(env, "compute_%d%c", &xy, &tail) != 1 || xy < 75) return -1;
        return xy;
    }
    return dev->cc_major == 7 ? 75 : 0; /* Turing: the forward's compute_75 form (fwd_sm80.cu) */
}

int64_t cuda_fwd_pad_dim(int64_t dim) { return (dim + 15) / 16 * 16; }

int64_t cuda_fwd_smem_bytes(const fa_attn_desc *d, const fa_tile_config *c)
{
    /*
     * Q tile, and `stages` K and V tiles (cp.async fills the others while one is used), as 16-bit values of
     * the padded head dims; rows padded by 8 more elements so ldmatrix rows fall in different banks.
     */
    int64_t stages = c->stages > 1 ? c->stages : 2;
    int64_t dqk = cuda_fwd_pad_dim(d->head_dim_qk), dv = cuda_fwd_pad_dim(d->head_dim_v);
    int64_t tiles = 2 * ((int64_t)c->block_q * (dqk + 8) + stages * (int64_t)c->block_kv * (dqk + 8) +
                         stages * (int64_t)c->block_kv * (dv + 8));
    /* decode with the keys split across warps: warps 1.. leave m, l and O per lane there to be merged */
    int64_t merge = 4 * (int64_t)(cuda_fwd_key_warps(c) - 1) * 32 * cuda_fwd_m_tiles(c) * (4 + dv / 8 * 4);
    return tiles > merge ? tiles : merge;
}

/*
 * Warps that share each tile's keys: 1, or in the decode family with block_q = 16 and more warps, all of them
 * (each takes its share of the keys; fwd_sm80.cu FA_KSPLIT).
 */
int cuda_fwd_key_warps(const fa_tile_config *c) { return c->block_q < 16 * c->warps ? c->warps : 1; }

/* Each warp owns 16 or 32 query rows (one or two m-tiles, FA_MT). */
int cuda_fwd_m_tiles(const fa_tile_config *c) { return c->block_q * cuda_fwd_key_warps(c) / (16 * c->warps); }

static int fwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                     size_t why_size)
{
    (void)d;
    (void)dev;
    int mt = cuda_fwd_m_tiles(c);
    if (c->block_q != 16 * mt * c->warps || mt < 1 || mt > 2) {
        snprintf(why, why_size, "block_q=%d must be 16 or 32 rows per warp (warps=%d)", c->block_q, c->warps);
        return 0;
    }
    return 1;
}

/*
 * Registers per thread: S and O accumulators of each m-tile, plus fragments and addressing (about 56).
 * Checked against ptxas (sm_90): d128 with two m-tiles and 64-key tiles (248 here) uses 255 and spills
 * 12-44 bytes, as FlashAttention-2's own d128 kernel does; d256 with two m-tiles (344) spills ~1 KB.
 */
static int fwd_regs(const fa_attn_desc *d, const fa_tile_config *c)
{
    return (int)(cuda_fwd_m_tiles(c) * (c->block_kv / 8 * 4 + cuda_fwd_pad_dim(d->head_dim_v) / 8 * 4) + 56);
}

/*
 * The forward's FA_MIN_BLOCKS: as many resident blocks as the planner counted. Left to itself ptxas spends
 * registers on fragments it loads early (d128, one m-tile, 64-key tiles: 185 where the formula above says 152),
 * and a tile the planner ranked for two blocks per SM would run one.
 */
int cuda_fwd_min_blocks(const fa_device_props *dev, const fa_attn_desc *d, const fa_tile_config *c)
{
    int n = fa_planner_blocks_per_cu(dev, cuda_fwd_smem_bytes(d, c), c->warps * 32, fwd_regs(d, c));
    return n < 1 ? 1 : n;
}

/* none of its own: only KV-cache append's key counts and rotated q (cuda_append.c) */
static int64_t fwd_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    (void)c;
    return cuda_append_workspace(d, 0);
}

static const fa_kernel_family fwd_sm80 = {
    .name = "cuda_fwd_sm80",
    .pass = FA_PASS_FWD,
    .id = CUDA_KERNEL_FWD_SM80,
    .block_q = {64, 128, 256},
    /* 128-key tiles measured 2x slower on an H100 (bench/NOTES.md section 4): 64 S accumulators per thread */
    .block_kv = {32, 64},
    .warps = {4, 8},
    .stages = {2},
    .max_splits = 1,
    .smem_bytes = cuda_fwd_smem_bytes,
    .regs_per_thread = fwd_regs,
    .valid = fwd_valid,
    .workspace_bytes = fwd_workspace,
    /*
     * H100, bf16, s2k/s8k (bench/NOTES.md 4k): two blocks of 128 rows and 4 warps per SM beat one block of 256
     * rows and 8 warps by 4-13 % at d64 and d128 (the same warps per SM, half the K/V reuse per block); at d256
     * one 128-row block of 8 warps stays 5-12 % ahead of two of 64 rows. 1.25 outweighs the 0.83 that the
     * smaller block costs in tile efficiency (128x64 against 256x64), not the 0.5 of 64x32 against 128x64.
     */
    .multi_block_gain = 1.25,
};

/*
 * Decode: few query rows per KV head. The query heads of a KV head are packed into one block's rows, so K and
 * V are read once per group, and the key range is split across blocks (FA_SPLIT) so that a batch of a few
 * sequences still fills the GPU; a combine kernel merges the normalised partials by their LSE.
 */
static int decode_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                        size_t why_size)
{
    (void)dev;
    /*
     * Two forms. Rows across warps: 16 rows per warp (block_q = 16 warps). More warps than rows is allowed:
     * every thread issues the cp.async loads of the K/V tiles, and one warp alone could not keep enough bytes in
     * flight (bench/NOTES.md section 4e); but only the warps with rows compute. Keys across warps (block_q = 16,
     * warps > 1, for at most 16 rows per KV head): every warp takes block_kv / warps keys of each tile for the
     * same rows and the warps' results are merged at the end (fwd_sm80.cu FA_KSPLIT), so all of them compute.
     */
    int64_t rows = d->seqlen_q * (d->heads_q / d->heads_kv);
    if (c->block_q == 16 && c->warps > 1) {
        if (rows > 16 || c->block_kv % (16 * c->warps) != 0) {
            snprintf(why, why_size, "keys across %d warps: at most 16 rows per KV head (%lld) and %d keys per warp",
                     c->warps, (long long)rows, c->block_kv / c->warps);
            return 0;
        }
        return 1;
    }
    if (c->block_q != 16 * c->warps) {
        snprintf(why, why_size, "block_q=%d must be 16 rows per warp (warps=%d)", c->block_q, c->warps);
        return 0;
    }
    return 1;
}

static int64_t decode_work_items(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t rows = d->seqlen_q * (d->heads_q / d->heads_kv);
    return d->batch * d->heads_kv * ((rows + c->block_q - 1) / c->block_q) * c->num_splits;
}

int64_t cuda_fwd_part_rows(const fa_attn_desc *d) { return d->varlen ? d->total_q : d->batch * d->seqlen_q; }

/* fp32 partial outputs (rows of the padded dv) and LSEs of every split */
static int64_t decode_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t own = c->num_splits <= 1 ? 0 : 4 * (int64_t)c->num_splits * cuda_fwd_part_rows(d) * d->heads_q *
                                         (cuda_fwd_pad_dim(d->head_dim_v) + 1);
    return cuda_append_workspace(d, own); /* + KV-cache append's area (cuda_append.c) */
}

static const fa_kernel_family fwd_sm80_decode = {
    .name = "cuda_fwd_sm80_decode",
    .pass = FA_PASS_FWD,
    .id = CUDA_KERNEL_FWD_SM80_DECODE,
    .block_q = {16, 32, 64},
    .block_kv = {64, 128},
    .warps = {1, 2, 4},
    /* a decode block streams keys: more tiles in flight keep more bytes in flight (bench/NOTES.md 4e) */
    .stages = {2, 3, 4},
    .max_splits = 128,
    .smem_bytes = cuda_fwd_smem_bytes,
    .regs_per_thread = fwd_regs,
    .valid = decode_valid,
    .workspace_bytes = decode_workspace,
    .work_items = decode_work_items,
    /*
     * Every K/V byte is read once whatever the tile, so tile size does not rank candidates (ranked by
     * 1 / block_q + 1 / block_kv, 64-row blocks of 4 real rows won, where 16-row blocks that split the keys
     * across their warps measured 1-17 % faster on an H100; bench/RESULTS.md eighth session), and splits,
     * which fill the device, cost a fifth of the general penalty.
     */
    .streaming = 1,
};

/*
 * The backward family (kernels/bwd_sm80.cu). block_kv = keys per dK/dV block, 16 per warp (per pair of warps
 * with head dims over 128, cuda_bwd_dsplit); block_q = query rows per step of its loop. The deterministic dQ
 * kernel reuses the two transposed: block_kv query rows per block, block_q keys per K/V tile.
 */
int cuda_bwd_dsplit(const fa_attn_desc *d) { return d->head_dim_qk > 128 || d->head_dim_v > 128 ? 2 : 1; }

int64_t cuda_bwd_sq_pad(const fa_attn_desc *d) { return (d->seqlen_q + 127) / 128 * 128; }

/*
 * Workspace rows per query head: dense batch * sq_pad; varlen round4(total_q) + 132 per sequence, so that
 * every sequence starts 16-byte aligned with at least 128 rows of padding after it (seq_of in bwd_sm80.cu).
 */
int64_t cuda_bwd_ws_rows(const fa_attn_desc *d)
{
    return d->varlen ? (d->total_q + 3) / 4 * 4 + 132 * d->batch : d->batch * cuda_bwd_sq_pad(d);
}

int64_t cuda_bwd_smem_dkdv(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t kstr = d->head_dim_qk + 8, vstr = d->head_dim_v + 8, bq = c->block_q, bkv = c->block_kv;
    /* K and V tiles; two Q and dO tiles (cp.async fills one pair while the other is used); their LSE and D
       rows; atomic mode: dS^T of one step for dQ = dS K. 16-bit values, rows padded as in the forward. */
    int64_t bytes = 2 * (bkv * kstr + bkv * vstr + 2 * bq * kstr + 2 * bq * vstr) + 2 * 2 * bq * 4;
    if (!d->deterministic) bytes += 2 * bkv * (bq + 8);
    return bytes;
}

int64_t cuda_bwd_smem_dq(const fa_attn_desc *d, const fa_tile_config *c)
{
    if (!d->deterministic) return 0;
    int64_t kstr = d->head_dim_qk + 8, vstr = d->head_dim_v + 8, rows = c->block_kv, keys = c->block_q;
    /* Q and dO of the block; two K and two V tiles */
    return 2 * (rows * kstr + rows * vstr + 2 * keys * kstr + 2 * keys * vstr);
}

static int64_t bwd_smem(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t a = cuda_bwd_smem_dkdv(d, c), b = cuda_bwd_smem_dq(d, c);
    return a > b ? a : b;
}

/*
 * Registers per thread of the dK/dV kernel (the larger one): dK and dV accumulators of 16 keys, S^T and dP^T
 * of 16 keys x block_q, plus fragments and addressing. ptxas on sm_90 (d128, block_q 64: 232 here) gives 255
 * with 36 bytes spilled; block_q 128 at d128 (296) would spill heavily and is pruned by the planner. Head dims
 * over 128: a warp holds its part of the columns (pairs of n-tiles, the first part rounded up), so d256 with
 * block_q 64 is 232 again (ptxas 13, sm_90: 255 and 254, no spills; block_q 32: 244/242).
 */
static int bwd_regs(const fa_attn_desc *d, const fa_tile_config *c)
{
    const int split = cuda_bwd_dsplit(d);
    const int64_t kt = (d->head_dim_qk / 16 + split - 1) / split * 2, vt = (d->head_dim_v / 16 + split - 1) / split * 2;
    return (int)(4 * (kt + vt) + c->block_q + 40);
}

static int bwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                     size_t why_size)
{
    (void)dev;
    const int split = cuda_bwd_dsplit(d);
    if (c->block_kv * split != 16 * c->warps) {
        if (split > 1)
            snprintf(why, why_size, "block_kv=%d must be 16 keys per pair of warps (warps=%d, head dims over 128)",
                     c->block_kv, c->warps);
        else
            snprintf(why, why_size, "block_kv=%d must be 16 keys per warp (warps=%d)", c->block_kv, c->warps);
        return 0;
    }
    /*
     * Pairs of warps with 128 query rows a step: S^T and dP^T take 128 registers next to the dK/dV parts, and
     * ptxas 13 (sm_90, d160, softcap + ALiBi + dropout) spills ~250 bytes where block_q 64 spills none.
     */
    if (split > 1 && c->block_q > 64) {
        snprintf(why, why_size, "block_q=%d: at most 64 query rows a step with head dims over 128 (registers)",
                 c->block_q);
        return 0;
    }
    return 1;
}

/* fp32 per query row (padded per sequence): D, LSE * log2e, and without desc.deterministic the dQ accumulator. */
static int64_t bwd_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    (void)c;
    int64_t rows = d->heads_q * cuda_bwd_ws_rows(d);
    return 4 * rows * (2 + (d->deterministic ? 0 : d->head_dim_qk));
}

/* Blocks of the dK/dV kernel: one per (KV block, KV head, batch). */
static int64_t bwd_work_items(const fa_attn_desc *d, const fa_tile_config *c)
{
    return d->batch * d->heads_kv * ((d->seqlen_k + c->block_kv - 1) / c->block_kv);
}

static const fa_kernel_family bwd_sm80 = {
    .name = "cuda_bwd_sm80",
    .pass = FA_PASS_BWD,
    .id = CUDA_KERNEL_BWD_SM80,
    .block_q = {32, 64, 128},
    /* 32: only with head dims over 128 (4 warps in pairs), where it is the tile that fits 99 KB (sm_86/89) */
    .block_kv = {32, 64, 128},
    .warps = {4, 8},
    .stages = {2},
    .max_splits = 1,
    .smem_bytes = bwd_smem,
    .regs_per_thread = bwd_regs,
    .valid = bwd_valid,
    .workspace_bytes = bwd_workspace,
    .work_items = bwd_work_items,
};

#define DECLINE(...)                                                                                            \
    do {                                                                                                        \
        snprintf(why, why_size, __VA_ARGS__);                                                                   \
        return FA_ERR_UNSUPPORTED;                                                                              \
    } while (0)

fa_status cuda_select(void *vctx, int device, const fa_attn_desc *d, fa_pass pass, const fa_kernel_family **family,
                      char *why, size_t why_size)
{
    const cuda_ctx *c = vctx;
    const cuda_device *dev = &c->dev[device];
    const int cc = dev->cc_major * 10 + dev->cc_minor;
    if (cc < 75)
        DECLINE("the CUDA kernels need sm_75 (fp16 forward) or sm_80 and newer; this device is sm_%d%d", dev->cc_major,
                dev->cc_minor);
    if (pass == FA_PASS_BWD) {
        if (d->paged_kv) DECLINE("the backward pass takes dense k/v, not a paged KV cache");
        if (d->seqlen_new > 0) DECLINE("the backward pass does not take KV-cache append (seqlen_new > 0)");
        if (d->dtype != FA_DTYPE_F32 && d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16)
            DECLINE("dtype %s: the CUDA backward takes fp32, fp16 or bf16", fa_dtype_name(d->dtype));
        if (d->head_dim_qk > 256 || d->head_dim_v > 256)
            DECLINE("head dims %lld/%lld: the CUDA backward takes head dims up to 256", (long long)d->head_dim_qk,
                    (long long)d->head_dim_v);
        /*
         * fp16/bf16 with head dims that are multiples of 16 (up to 256, checked above) on sm_80+: the mma.sync
         * backward (above 128 two warps share each 16 keys, each with part of the dK/dV columns). It has no
         * padded-dim form, and its smallest tile must fit the device's shared memory (d256: 102 KB with 32x32
         * tiles, more than sm_86/89's 99 KB); those, fp32 and Turing take the SIMT backward (fp32 arithmetic,
         * exact for fp32, and for 16-bit storage closer to the reference than the mma one, which rounds P and dS
         * to 16 bits).
         */
        const fa_tile_config smallest = {32, 64 / cuda_bwd_dsplit(d), 4, 2, 1};
        /* fp16 dropout over 0.99, which the mma backward declines below, stays on the SIMT path above 128 as before */
        const int f16_drop = d->dtype == FA_DTYPE_F16 && d->dropout_p > 0.99f;
        const int mma = d->dtype != FA_DTYPE_F32 && cc >= 80 && d->head_dim_qk % 16 == 0 && d->head_dim_v % 16 == 0 &&
                        bwd_smem(d, &smallest) <= dev->props.shared_mem_per_block_optin &&
                        !(cuda_bwd_dsplit(d) > 1 && f16_drop);
        if (!mma) {
            *family = &cuda_bwd_f32_family;
            return FA_OK;
        }
        if (d->dropout_p > 0.0f && d->dtype == FA_DTYPE_F16 && d->dropout_p > 0.99f)
            DECLINE("dropout_p=%g with fp16: P / (1 - p) would overflow fp16 (up to 0.99 is taken)", (double)d->dropout_p);
        *family = &bwd_sm80;
        return FA_OK;
    }
    if (d->dtype == FA_DTYPE_F32) {
        /* exact fp32 on CUDA cores (cuda_fwd_f32.c): dropout, split-KV and KV-cache append included */
        if (d->head_dim_qk > 256 || d->head_dim_v > 256)
            DECLINE("head dims %lld/%lld: the CUDA fp32 forward takes head dims up to 256",
                    (long long)d->head_dim_qk, (long long)d->head_dim_v);
        *family = &cuda_fwd_f32_family;
        return FA_OK;
    }
    if (d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16)
        DECLINE("dtype %s: the CUDA forward takes fp16, bf16 or fp32", fa_dtype_name(d->dtype));
    /* the forward as PTX for a virtual architecture: FLASHPORT_CUDA_ARCH, or compute_75 on Turing */
    const int ptx = cuda_fwd_ptx_arch(dev);
    const char *arch_env = getenv("FLASHPORT_CUDA_ARCH");
    if (ptx < 0) DECLINE("FLASHPORT_CUDA_ARCH=%s: expected compute_XY with XY >= 75 (e.g. compute_75)", arch_env);
    if (ptx > cc)
        DECLINE("FLASHPORT_CUDA_ARCH=compute_%d: newer than this device (sm_%d%d), the driver could not load it", ptx,
                dev->cc_major, dev->cc_minor);
    if (ptx > 0 && ptx < 80 && d->dtype == FA_DTYPE_BF16) {
        if (arch_env && *arch_env)
            DECLINE("bf16 with FLASHPORT_CUDA_ARCH=compute_%d: the forward's compute_75 form is fp16 only (no bf16 "
                    "mma before sm_80)", ptx);
        DECLINE("bf16 on sm_%d%d: Turing has no bf16 mma; the CUDA forward takes fp16 there", dev->cc_major,
                dev->cc_minor);
    }
    /* head dims other than multiples of 16 run padded to one inside the kernel (zeros; fwd_sm80.cu) */
    if (d->head_dim_qk > 256 || d->head_dim_v > 256)
        DECLINE("head dims %lld/%lld: the CUDA forward takes head dims up to 256 (more than 256 is not "
                "written yet)", (long long)d->head_dim_qk, (long long)d->head_dim_v);
    if (d->dropout_p > 0.0f && d->dtype == FA_DTYPE_F16 && d->dropout_p > 0.99f)
        DECLINE("dropout_p=%g with fp16: P / (1 - p) would overflow fp16 (up to 0.99 is taken)", (double)d->dropout_p);
    /* a KV head's query rows (positions x its query heads) few enough for one small block: decode */
    *family = d->seqlen_q * (d->heads_q / d->heads_kv) <= 64 || d->num_splits > 1 ? &fwd_sm80_decode : &fwd_sm80;
    return FA_OK;
}
