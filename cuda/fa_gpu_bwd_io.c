/* The SIMT backward's host side shared by the CUDA and HIP plugins (fa_gpu_bwd_io.h, kernels/bwd_f32.cu). */
#include "fa_gpu_bwd_io.h"

#include <stdio.h>
#include <string.h>

#include "fa_philox.h" /* fa_dropout_key_for: the mask every backend draws */

/* 14 pointers, 29 strides, 18 four-byte words: no padding on x86-64, nvptx64 or amdgcn */
_Static_assert(sizeof(fa_gpu_bwd_params) == 14 * 8 + 29 * 8 + 18 * 4, "fa_gpu_bwd_params has padding");

const char *const fa_gpu_bwd_kernels[3] = {"fa_bwd_pre_f32", "fa_bwd_dkdv_f32", "fa_bwd_dq_f32"};

int fa_gpu_bwd_l16(const fa_attn_desc *d)
{
    return d->dtype != FA_DTYPE_F32 && (d->head_dim_qk > 128 || d->head_dim_v > 128);
}

static int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }
/* rows read only by dot products: an odd number of float4s (bwd_f32.cu's KSTR / VSTR) */
static int64_t dot_stride(int64_t dim) { return round4(dim) + (round4(dim) / 4 % 2 ? 0 : 4); }
/* rows also read as columns 4 tx + 64 c (QWSTR / VWSTR) */
static int64_t wide_stride(int64_t dim) { return 64 * ((dim + 63) / 64) + 4; }

int64_t fa_gpu_bwd_smem_dkdv(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t bq = t->block_q, bkv = t->block_kv, e = fa_gpu_bwd_l16(d) ? 2 : 4;
    return e * (bkv * dot_stride(d->head_dim_qk) + bkv * dot_stride(d->head_dim_v) + bq * wide_stride(d->head_dim_qk) +
                bq * wide_stride(d->head_dim_v)) +
           4 * 2 * bkv * (bq + 4);
}

int64_t fa_gpu_bwd_smem_dq(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t bq = t->block_q, bkv = t->block_kv, e = fa_gpu_bwd_l16(d) ? 2 : 4;
    return e * (bq * dot_stride(d->head_dim_qk) + bq * dot_stride(d->head_dim_v) + bkv * wide_stride(d->head_dim_qk) +
                bkv * dot_stride(d->head_dim_v)) +
           4 * bq * (bkv + 4);
}

int64_t fa_gpu_bwd_smem(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t a = fa_gpu_bwd_smem_dkdv(d, t), b = fa_gpu_bwd_smem_dq(d, t);
    return a > b ? a : b;
}

/* fp32 accumulators per thread: dK + dV of KPT keys (dK/dV kernel), dQ of RPT rows (dQ kernel) */
static int64_t acc_dkdv(const fa_attn_desc *d, const fa_tile_config *t)
{
    return (int64_t)(t->block_kv / 16) * 4 * ((d->head_dim_qk + 63) / 64 + (d->head_dim_v + 63) / 64);
}
static int64_t acc_dq(const fa_attn_desc *d, const fa_tile_config *t)
{
    return (int64_t)(t->block_q / 16) * 4 * ((d->head_dim_qk + 63) / 64);
}

/*
 * Accumulators, twice the scores (S and dP), and about 72 for fragments in flight and addressing: ptxas (sm_90,
 * no spills) gives the dK/dV kernel 230 at d128 64x64 with dropout (64 + 32 + 72 = 168 here, the dQ kernel 168),
 * 143 at d256 32x32 (136), 104 at d128 32x32 (112); hipcc gfx90a 159 VGPRs at d128 32x32.
 */
int fa_gpu_bwd_regs(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t scores = 2 * (int64_t)(t->block_q / 16) * (t->block_kv / 16);
    const int64_t a = acc_dkdv(d, t), b = acc_dq(d, t);
    return (int)((a > b ? a : b) + scores + 72);
}

int fa_gpu_bwd_tile_ok(const fa_attn_desc *d, const fa_tile_config *t, char *why, size_t why_size)
{
    const int bq = t->block_q, bkv = t->block_kv;
    if ((bq != 16 && bq != 32 && bq != 64) || (bkv != 16 && bkv != 32 && bkv != 64)) {
        snprintf(why, why_size, "block_q=%d and block_kv=%d must be 16, 32 or 64", bq, bkv);
        return 0;
    }
    /* above 64 accumulators a thread's registers (255 on NVIDIA at 256 threads, 256 VGPRs on CDNA) overflow */
    if (acc_dkdv(d, t) > 64 || acc_dq(d, t) > 64) {
        snprintf(why, why_size, "%lld dK/dV and %lld dQ accumulators per thread (at most 64)", (long long)acc_dkdv(d, t),
                 (long long)acc_dq(d, t));
        return 0;
    }
    return 1;
}

/* Query rows of the workspace per array (D, LSE): heads_q x (batch x seqlen_q | total_q). */
static int64_t ws_rows(const fa_attn_desc *d) { return d->heads_q * (d->varlen ? d->total_q : d->batch * d->seqlen_q); }

int64_t fa_gpu_bwd_workspace(const fa_attn_desc *d, const fa_tile_config *t)
{
    (void)t;
    return 2 * 4 * ws_rows(d);
}

int64_t fa_gpu_bwd_work_items(const fa_attn_desc *d, const fa_tile_config *t)
{
    return d->batch * d->heads_kv * ((d->seqlen_k + t->block_kv - 1) / t->block_kv);
}

static int storage(fa_dtype t) { return t == FA_DTYPE_F16 ? 1 : t == FA_DTYPE_BF16 ? 2 : 0; }

void fa_gpu_bwd_defines(const fa_plan_info *plan, char (*o)[32])
{
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->bwd_config;
    snprintf(o[0], 32, "-DFA_DQK=%d", (int)d->head_dim_qk);
    snprintf(o[1], 32, "-DFA_DV=%d", (int)d->head_dim_v);
    snprintf(o[2], 32, "-DFA_BQ=%d", t->block_q);
    snprintf(o[3], 32, "-DFA_BKV=%d", t->block_kv);
    snprintf(o[4], 32, "-DFA_STORAGE=%d", storage(d->dtype));
    snprintf(o[5], 32, "-DFA_L16=%d", fa_gpu_bwd_l16(d));
    snprintf(o[6], 32, "-DFA_SOFTCAP=%d", d->softcap > 0.0f);
    snprintf(o[7], 32, "-DFA_ALIBI=%d", d->alibi != FA_ALIBI_NONE);
    snprintf(o[8], 32, "-DFA_LOCAL=%d", plan->window_left >= 0 || plan->window_right >= 0);
    snprintf(o[9], 32, "-DFA_VARLEN=%d", d->varlen != 0);
    snprintf(o[10], 32, "-DFA_DROPOUT=%d", d->dropout_p > 0.0f);
}

/* 1: rows of this tensor are aligned runs of whole groups of 4 elements (one float4 / 8-byte access each). */
static int vec4(const fa_tensor *t, int64_t dim, int elem_bytes)
{
    if (dim % 4 || (uintptr_t)t->data % (uintptr_t)(4 * elem_bytes)) return 0;
    for (int i = 0; i < t->rank - 1; i++)
        if (t->stride[i] % 4) return 0;
    return 1;
}

fa_status fa_gpu_bwd_fill(const fa_plan_info *plan, const fa_bwd_args *a, void *workspace, const char *who,
                          fa_gpu_bwd_params *p)
{
    const fa_attn_desc *d = &plan->desc;
    memset(p, 0, sizeof *p);
    const int eb = d->dtype == FA_DTYPE_F32 ? 4 : 2;
    const fa_tensor *all[] = {&a->q, &a->k, &a->v, &a->out, &a->dout, &a->dq, &a->dk, &a->dv};
    static const char *const names[] = {"q", "k", "v", "out", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < 8; i++)
        if ((uintptr_t)all[i]->data % (uintptr_t)eb)
            return fa_set_error(FA_ERR_UNSUPPORTED, "%s: %s must be aligned to its element size (%d bytes)", who,
                                names[i], eb);
    p->q = a->q.data, p->k = a->k.data, p->v = a->v.data, p->out = a->out.data, p->dout = a->dout.data;
    p->dq = a->dq.data, p->dk = a->dk.data, p->dv = a->dv.data;
    p->lse = a->lse.data;
    /* (batch, seq, heads, dim); varlen (total, heads, dim) with batch stride 0 (rows found from cu_seqlens) */
    const int qv = d->varlen ? 1 : 0, kv = fa_uses_cu_seqlens_k(d) ? 1 : 0;
    FA_BWD_STRIDES(*p, *a, qv, kv);
    if (d->varlen) p->cu_q = a->cu_seqlens_q, p->total_q = (int32_t)d->total_q, p->total_k = (int32_t)d->total_k;
    if (kv) p->cu_k = a->cu_seqlens_k;
    if (d->kv_cache_lengths) p->seqused_k = a->seqused_k;
    if (d->alibi != FA_ALIBI_NONE) {
        const fa_tensor *sl = &a->alibi_slopes;
        if (sl->stride[sl->rank - 1] != 1)
            return fa_set_error(FA_ERR_UNSUPPORTED, "%s: alibi_slopes must be contiguous along heads", who);
        p->alibi = sl->data;
        p->alibi_sb = d->alibi == FA_ALIBI_PER_HEAD ? 0 : sl->stride[0];
    }
    p->ws_rows = ws_rows(d);
    if (p->ws_rows > 0 && (!workspace || (uintptr_t)workspace % 4))
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s: the backward needs its workspace (%lld bytes, 4-byte aligned)",
                            who, (long long)fa_gpu_bwd_workspace(d, &plan->bwd_config));
    p->ws = workspace;
    p->seqlen_q = (int32_t)d->seqlen_q, p->seqlen_k = (int32_t)d->seqlen_k;
    p->heads_q = (int32_t)d->heads_q, p->heads_kv = (int32_t)d->heads_kv;
    p->window_left = (int32_t)plan->window_left, p->window_right = (int32_t)plan->window_right;
    p->scale = plan->scale, p->softcap = d->softcap;
    if (d->dropout_p > 0.0f) {
        const fa_dropout_key k = fa_dropout_key_for(d->dropout_p, a->dropout_seed, a->dropout_offset);
        p->drop_k0 = k.k0, p->drop_k1 = k.k1, p->drop_ctr3 = k.ctr3, p->drop_threshold = k.threshold;
        p->keep_scale = k.keep_scale;
    }
    p->vec_qk = vec4(&a->q, d->head_dim_qk, eb) && vec4(&a->k, d->head_dim_qk, eb) && vec4(&a->dq, d->head_dim_qk, eb) &&
                vec4(&a->dk, d->head_dim_qk, eb);
    p->vec_v = vec4(&a->v, d->head_dim_v, eb) && vec4(&a->out, d->head_dim_v, eb) && vec4(&a->dout, d->head_dim_v, eb) &&
               vec4(&a->dv, d->head_dim_v, eb);
    return FA_OK;
}

void fa_gpu_bwd_grids(const fa_plan_info *plan, unsigned grid[3][3])
{
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->bwd_config;
    const unsigned hq = (unsigned)d->heads_q, hk = (unsigned)d->heads_kv, b = (unsigned)d->batch;
    grid[0][0] = (unsigned)((d->seqlen_q + 15) / 16), grid[0][1] = hq, grid[0][2] = b;
    grid[1][0] = (unsigned)((d->seqlen_k + t->block_kv - 1) / t->block_kv), grid[1][1] = hk, grid[1][2] = b;
    grid[2][0] = (unsigned)((d->seqlen_q + t->block_q - 1) / t->block_q), grid[2][1] = hq, grid[2][2] = b;
}
