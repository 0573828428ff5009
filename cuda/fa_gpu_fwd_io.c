/* The forward's tensor and metadata fields shared by the CUDA and HIP plugins' kernels (fa_gpu_fwd_io.h). */
#include "fa_gpu_fwd_io.h"

#include <stdio.h>
#include <string.h>

#include "fa_philox.h" /* fa_dropout_key_for: the mask every backend draws */

fa_status fa_gpu_fwd_io_fill(const fa_plan_info *plan, const fa_fwd_args *a, const char *who, fa_gpu_fwd_io *io)
{
    const fa_attn_desc *d = &plan->desc;
    memset(io, 0, sizeof *io);
    io->q = a->q.data, io->k = a->k.data, io->v = a->v.data, io->out = a->out.data;
    /* (batch, seq, heads, dim); varlen (total, heads, dim); paged k/v (pages, page_size, heads, dim) */
    const int qv = d->varlen ? 1 : 0, kv = d->varlen && !d->paged_kv ? 1 : 0;
    FA_BSH_STRIDES(*io, q, a->q, qv);
    FA_BSH_STRIDES(*io, o, a->out, qv);
    FA_BSH_STRIDES(*io, k, a->k, kv);
    FA_BSH_STRIDES(*io, v, a->v, kv);
    if (d->paged_kv) {
        io->k_sp = a->k.stride[0], io->v_sp = a->v.stride[0];
        io->block_table = a->block_table;
        io->bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
        io->page_size = (int)d->page_size, io->num_pages = (int)d->num_pages;
    }
    if (d->varlen) io->cu_q = a->cu_seqlens_q, io->total_q = (int)d->total_q, io->total_k = (int)d->total_k;
    if (fa_uses_cu_seqlens_k(d)) io->cu_k = a->cu_seqlens_k;
    if (d->kv_cache_lengths) io->seqused_k = a->seqused_k;
    if (d->return_lse) {
        /* (batch, heads, seq); varlen (heads, total) */
        io->lse = a->lse.data;
        FA_LSE_STRIDES(*io, a->lse, qv);
    }
    if (d->alibi != FA_ALIBI_NONE) {
        io->alibi = a->alibi_slopes.data;
        io->alibi_sb = d->alibi == FA_ALIBI_PER_HEAD ? 0 : a->alibi_slopes.stride[0];
        if (a->alibi_slopes.stride[a->alibi_slopes.rank - 1] != 1)
            return fa_set_error(FA_ERR_UNSUPPORTED, "%s: alibi_slopes must be contiguous along heads", who);
    }
    return FA_OK;
}

void fa_gpu_fwd_defines(const fa_plan_info *plan, char (*o)[32])
{
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->fwd_config;
    snprintf(o[0], 32, "-DFA_DQK=%d", (int)d->head_dim_qk);
    snprintf(o[1], 32, "-DFA_DV=%d", (int)d->head_dim_v);
    snprintf(o[2], 32, "-DFA_BQ=%d", t->block_q);
    snprintf(o[3], 32, "-DFA_BKV=%d", t->block_kv);
    snprintf(o[4], 32, "-DFA_SOFTCAP=%d", d->softcap > 0.0f);
    snprintf(o[5], 32, "-DFA_ALIBI=%d", d->alibi != FA_ALIBI_NONE);
    snprintf(o[6], 32, "-DFA_LOCAL=%d", plan->window_left >= 0 || plan->window_right >= 0);
    snprintf(o[7], 32, "-DFA_VARLEN=%d", d->varlen != 0);
    snprintf(o[8], 32, "-DFA_PAGED=%d", d->paged_kv != 0);
    snprintf(o[9], 32, "-DFA_DROPOUT=%d", d->dropout_p > 0.0f);
    snprintf(o[10], 32, "-DFA_SPLIT=%d", t->num_splits > 1);
}

int64_t fa_gpu_simt_part_rows(const fa_attn_desc *d) { return d->varlen ? d->total_q : d->batch * d->seqlen_q; }

static int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

int64_t fa_gpu_simt_split_bytes(const fa_attn_desc *d, int splits)
{
    if (splits <= 1) return 0;
    const int64_t rows = (int64_t)splits * fa_gpu_simt_part_rows(d) * d->heads_q;
    return round16(4 * rows * d->head_dim_v) + round16(4 * rows);
}

int fa_gpu_simt_split_ok(const fa_attn_desc *d, const fa_tile_config *c, char *why, size_t why_size)
{
    if (c->num_splits <= 1 || d->num_splits > 0) return 1;
    if (d->seqlen_q > c->block_q) {
        snprintf(why, why_size, "split-KV is for decode (seqlen_q %lld > block_q %d: the query blocks fill the device)",
                 (long long)d->seqlen_q, c->block_q);
        return 0;
    }
    if ((int64_t)c->num_splits * 8 * c->block_kv > d->seqlen_k) {
        snprintf(why, why_size, "%d splits of %lld keys: fewer than 8 tiles of %d keys per split", c->num_splits,
                 (long long)d->seqlen_k, c->block_kv);
        return 0;
    }
    return 1;
}

fa_status fa_gpu_fwd_tail_fill(const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, const char *who,
                               fa_gpu_fwd_tail *t)
{
    const fa_attn_desc *d = &plan->desc;
    memset(t, 0, sizeof *t);
    const int splits = plan->fwd_config.num_splits > 1 ? plan->fwd_config.num_splits : 1;
    if (splits > 1) {
        if (!workspace || (uintptr_t)workspace % 16 || plan->workspace_bytes < fa_gpu_simt_split_bytes(d, splits))
            return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s: split-KV needs its workspace (16-byte aligned)", who);
        t->num_splits = splits;
        t->part_rows = (int)fa_gpu_simt_part_rows(d);
        t->o_part = workspace;
        /* partial outputs, then LSEs at the next 16 bytes */
        t->lse_part = (float *)((char *)workspace + round16(4 * (int64_t)splits * t->part_rows * d->heads_q *
                                                            d->head_dim_v));
    }
    if (d->dropout_p > 0.0f) {
        const fa_dropout_key k = fa_dropout_key_for(d->dropout_p, a->dropout_seed, a->dropout_offset);
        t->drop_k0 = k.k0, t->drop_k1 = k.k1, t->drop_ctr3 = k.ctr3, t->drop_threshold = k.threshold;
        t->keep_scale = k.keep_scale;
    }
    return FA_OK;
}

static int64_t round256(int64_t x) { return (x + 255) / 256 * 256; }

int64_t fa_gpu_append_bytes(const fa_attn_desc *d)
{
    if (d->seqlen_new <= 0) return 0;
    int64_t bytes = round256(4 * d->batch);
    /* the rotated q in the dtype (fp32: 4 bytes an element) */
    if (d->rotary_dim > 0) bytes += round256(fa_dtype_size(d->dtype) * d->batch * d->seqlen_q * d->heads_q * d->head_dim_qk);
    return bytes;
}

int64_t fa_gpu_append_workspace(const fa_attn_desc *d, int64_t own)
{
    int64_t extra = fa_gpu_append_bytes(d);
    return extra ? round256(own) + extra : own;
}

fa_status fa_gpu_append_fill(const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, const char *who,
                             fa_gpu_append_params *p, fa_gpu_append_out *out, int64_t *tasks)
{
    const fa_attn_desc *d = &plan->desc;
    const int64_t extra = fa_gpu_append_bytes(d);
    if (!workspace || (uintptr_t)workspace % 16 || plan->workspace_bytes < extra)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s: needs its %lld B at the end of the plan's workspace "
                                                     "(16-byte aligned)", who, (long long)extra);
    if (d->varlen) return fa_set_error(FA_ERR_UNSUPPORTED, "%s: varlen q is not supported with desc.seqlen_new", who);
    char *area = (char *)workspace + (plan->workspace_bytes - extra);

    memset(p, 0, sizeof *p);
    p->k_new = a->k_new.data, p->v_new = a->v_new.data, p->q = a->q.data;
    p->k = a->k.data, p->v = a->v.data;
    p->lens = (int32_t *)area;
    p->seqused_k = a->seqused_k;
    p->kn_sb = a->k_new.stride[0], p->kn_ss = a->k_new.stride[1], p->kn_sh = a->k_new.stride[2];
    p->vn_sb = a->v_new.stride[0], p->vn_ss = a->v_new.stride[1], p->vn_sh = a->v_new.stride[2];
    p->q_sb = a->q.stride[0], p->q_ss = a->q.stride[1], p->q_sh = a->q.stride[2];
    /* dense (batch, seqlen_k, heads_kv, dim), paged (num_pages, page_size, heads_kv, dim): the same strides */
    p->k_sb = a->k.stride[0], p->k_ss = a->k.stride[1], p->k_sh = a->k.stride[2];
    p->v_sb = a->v.stride[0], p->v_ss = a->v.stride[1], p->v_sh = a->v.stride[2];
    if (d->paged_kv) {
        p->block_table = a->block_table;
        p->bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
        p->page_size = (int)d->page_size, p->num_pages = (int)d->num_pages;
    }
    p->batch = (int)d->batch, p->seqlen_new = (int)d->seqlen_new, p->seqlen_q = (int)d->seqlen_q;
    p->seqlen_k = (int)d->seqlen_k, p->heads_q = (int)d->heads_q, p->heads_kv = (int)d->heads_kv;
    p->dqk = (int)d->head_dim_qk, p->dv = (int)d->head_dim_v;
    if (d->rotary_dim > 0) {
        p->q_rot = area + round256(4 * d->batch);
        p->cos = a->rotary_cos.data, p->sin = a->rotary_sin.data;
        p->cos_s = a->rotary_cos.stride[0], p->sin_s = a->rotary_sin.stride[0];
        p->rotary_dim = (int)d->rotary_dim, p->interleaved = d->rotary_interleaved != 0;
        p->rotary_seqlen = (int)d->rotary_seqlen;
        p->q_moving = d->causal || plan->window_left >= 0 || plan->window_right >= 0; /* as cpu_rotary_q_position */
    }
    /* one group of 32 lanes per k/v row and (rotary) per q row */
    *tasks = d->batch * d->seqlen_new * d->heads_kv + (d->rotary_dim > 0 ? d->batch * d->seqlen_q * d->heads_q : 0);

    out->seqused_k = p->lens;
    out->q = a->q.data;
    out->q_sb = a->q.stride[0], out->q_ss = a->q.stride[1], out->q_sh = a->q.stride[2];
    if (p->q_rot) {
        /* the rotated copy, contiguous (batch, seqlen_q, heads_q, head_dim_qk), 256-byte aligned */
        out->q = p->q_rot;
        out->q_sh = d->head_dim_qk, out->q_ss = d->heads_q * d->head_dim_qk, out->q_sb = d->seqlen_q * out->q_ss;
    }
    return FA_OK;
}
