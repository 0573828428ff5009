/*
 * The CPU selector and the kernel families it declares to the planner. The forward kernel is one tiled
 * FlashAttention loop; its tile is sized so Q, K^T, V, the score tile and the output accumulator of one
 * work item stay in cache.
 */
#include "cpu_backend.h"
#include "simd/cpu_simd.h"

#include <stdio.h>


static int64_t fwd_working_set(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t bq = c->block_q, bkv = c->block_kv, rows = bq < CPU_FWD_BLOCK_ROWS ? bq : CPU_FWD_BLOCK_ROWS;
    /* fp32: Q rows, K^T tile, V tile, one row block's scores, output accumulator, row max/sum */
    return 4 * (bq * d->head_dim_qk + bkv * d->head_dim_qk + bkv * d->head_dim_v + rows * bkv +
                bq * d->head_dim_v) +
           8 * bq;
}

static int64_t fwd_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    if (c->num_splits <= 1) return 0;
    /* Partial outputs (splits, batch, seqlen_q, heads, dv) and LSEs (splits, batch, heads, seqlen_q), fp32. */
    int64_t rows = (int64_t)c->num_splits * d->batch * d->seqlen_q * d->heads_q;
    return rows * (d->head_dim_v + 1) * 4;
}

static int64_t bwd_working_set(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t bq = c->block_q, bkv = c->block_kv, dq = d->head_dim_qk, dv = d->head_dim_v;
    /* fp32: Q, dO, K^T, V^T, K tiles; S, P~, dS, tanh and one transposed score tile; dK/dV (or dQ) accumulators */
    return 4 * (bq * (dq + dv) + bkv * (2 * dq + dv) + 5 * bq * bkv + bkv * (dq + dv) + 2 * bq);
}

static int64_t bwd_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    (void)c;
    int64_t rows = d->batch * d->heads_q * d->seqlen_q, dq = cpu_pad(d->head_dim_qk), dv = cpu_pad(d->head_dim_v);
    /*
     * fp32 per query row: D = rowsum(dO * O), scale * Q and dO packed once (rows padded for SIMD), and without
     * desc.deterministic the dQ accumulator.
     */
    return 4 * rows * (1 + dq + dv + (d->deterministic ? 0 : dq));
}

static const fa_kernel_family cpu_bwd_family = {
    .name = "cpu_bwd_tiled",
    .pass = FA_PASS_BWD,
    .id = CPU_KERNEL_BWD_TILED,
    .block_q = {16, 32, 64, 128},
    .block_kv = {32, 64, 128},
    .warps = {1},
    .stages = {1},
    .max_splits = 1,
    .smem_bytes = bwd_working_set,
    .workspace_bytes = bwd_workspace,
};

static const fa_kernel_family cpu_fwd_family = {
    .name = "cpu_fwd_tiled",
    .pass = FA_PASS_FWD,
    .id = CPU_KERNEL_FWD_TILED,
    .block_q = {16, 32, 64, 128, 256, 512},
    .block_kv = {32, 64, 128, 256},
    .warps = {1},
    .stages = {1},
    .max_splits = 16,
    .smem_bytes = fwd_working_set,
    .workspace_bytes = fwd_workspace,
};

/* Decode holds every query row of a sequence (heads_q x seqlen_q) in one work item. */
static int decode_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                        size_t why_size)
{
    (void)dev;
    int64_t rows = d->heads_q * d->seqlen_q;
    if (c->block_q < rows) {
        snprintf(why, why_size, "block_q=%d cannot hold the %lld query rows of a sequence", c->block_q, (long long)rows);
        return 0;
    }
    return 1;
}

static int64_t decode_work_items(const fa_attn_desc *d, const fa_tile_config *c)
{
    return d->batch * c->num_splits;
}

/*
 * Rows of every head are resident, plus one K and one V tile of every KV head, packed in address order and
 * then read once per head. That tile is charged at a quarter: it is streamed (written once, read right after)
 * and may spill into the rest of L2; block_kv=128 (1 MB for 8 heads x 128 dims, fp32) measured about twice
 * as fast as block_kv=32 on a 1 MB-L2 Zen 4 (bench/NOTES.md).
 */
static int64_t decode_working_set(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t rows = d->heads_q * d->seqlen_q, group_rows = d->heads_q / d->heads_kv * d->seqlen_q;
    return 4 * (rows * (d->head_dim_qk + d->head_dim_v + 2) +
                d->heads_kv * (int64_t)c->block_kv * (d->head_dim_qk + d->head_dim_v) / 4 + group_rows * c->block_kv);
}

static const fa_kernel_family cpu_fwd_decode_family = {
    .name = "cpu_fwd_decode",
    .pass = FA_PASS_FWD,
    .id = CPU_KERNEL_FWD_DECODE,
    .block_q = {32, 64, 128, 256, 512},
    .block_kv = {32, 64, 128, 256},
    .warps = {1},
    .stages = {1},
    .max_splits = 64,
    .smem_bytes = decode_working_set,
    .valid = decode_valid,
    .workspace_bytes = fwd_workspace,
    .work_items = decode_work_items,
};

/* Decode: a few query rows against a long cache, read in order once for every query head. */
static int is_decode(const fa_attn_desc *d)
{
    return d->seqlen_q <= 16 && d->heads_q * d->seqlen_q <= 512 && d->seqlen_k >= 256;
}

fa_status cpu_select(const fa_attn_desc *d, fa_pass pass, const fa_kernel_family **family, char *why,
                     size_t why_size)
{
    if (d->dtype != FA_DTYPE_F32 && d->dtype != FA_DTYPE_F16 && d->dtype != FA_DTYPE_BF16) {
        snprintf(why, why_size, "dtype %s is not supported on the CPU (fp32, fp16, bf16; fp8 is for Hopper)",
                 fa_dtype_name(d->dtype));
        return FA_ERR_UNSUPPORTED;
    }
    if (pass == FA_PASS_BWD && d->paged_kv) {
        snprintf(why, why_size, "the backward pass takes dense or varlen k/v, not a paged cache");
        return FA_ERR_UNSUPPORTED;
    }
    if (pass == FA_PASS_BWD && d->seqlen_new > 0) {
        snprintf(why, why_size, "the backward pass does not append to a KV cache (desc.seqlen_new must be 0)");
        return FA_ERR_UNSUPPORTED;
    }
    if (pass == FA_PASS_BWD)
        *family = &cpu_bwd_family;
    else
        *family = is_decode(d) ? &cpu_fwd_decode_family : &cpu_fwd_family;
    return FA_OK;
}
