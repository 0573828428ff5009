/* The forward's tensor and metadata fields shared by the CUDA and HIP plugins' kernels (fa_gpu_fwd_io.h). */
#include "fa_gpu_fwd_io.h"

#include <stdio.h>
#include <string.h>

fa_status fa_gpu_fwd_io_fill(const fa_plan_info *plan, const fa_fwd_args *a, const char *who, fa_gpu_fwd_io *io)
{
    const fa_attn_desc *d = &plan->desc;
    memset(io, 0, sizeof *io);
    io->q = a->q.data, io->k = a->k.data, io->v = a->v.data, io->out = a->out.data;
    /* (batch, seq, heads, dim); varlen (total, heads, dim); paged k/v (pages, page_size, heads, dim) */
    const int qv = d->varlen ? 1 : 0, kv = d->varlen && !d->paged_kv ? 1 : 0;
    io->q_sb = qv ? 0 : a->q.stride[0], io->q_ss = a->q.stride[1 - qv], io->q_sh = a->q.stride[2 - qv];
    io->o_sb = qv ? 0 : a->out.stride[0], io->o_ss = a->out.stride[1 - qv], io->o_sh = a->out.stride[2 - qv];
    io->k_sb = kv ? 0 : a->k.stride[0], io->k_ss = a->k.stride[1 - kv], io->k_sh = a->k.stride[2 - kv];
    io->v_sb = kv ? 0 : a->v.stride[0], io->v_ss = a->v.stride[1 - kv], io->v_sh = a->v.stride[2 - kv];
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
        io->lse_sb = qv ? 0 : a->lse.stride[0], io->lse_sh = a->lse.stride[1 - qv], io->lse_ss = a->lse.stride[2 - qv];
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
}
