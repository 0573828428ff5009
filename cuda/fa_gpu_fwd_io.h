/*
 * Where a forward's tensors and sequence metadata are, as the leading fields of every CUDA-family forward kernel's
 * parameter block: kernels/fwd_sm80.cu and kernels/fwd_f32.cu (CUDA plugin), and fwd_f32.cu and
 * hip/kernels/fwd_mfma.hip (HIP plugin, both builds) declare the same fields in the same order. One struct and
 * one fill for both plugins, so a layout change cannot reach one kernel's host side and not the other's.
 * Plain host C over the public API types; no vendor header.
 */
#ifndef FA_GPU_FWD_IO_H
#define FA_GPU_FWD_IO_H

#include <stdint.h>

#include "fa_backend.h"

/* Strides in elements: batch, seq, head; varlen and paged layouts folded in (batch stride 0, page strides). */
typedef struct fa_gpu_fwd_io {
    const void *q, *k, *v;
    void *out;
    float *lse;
    const float *alibi;
    int64_t q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh, lse_sb, lse_sh, lse_ss;
    int64_t alibi_sb;
    const int32_t *cu_q, *cu_k, *seqused_k, *block_table;
    int64_t bt_stride, k_sp, v_sp;
    int page_size, num_pages;
    int total_q, total_k;
} fa_gpu_fwd_io;

/* Fills io from the call's arguments; who names the caller ("cuda fwd_sm80") in the error (alibi slopes not
   contiguous along heads). */
fa_status fa_gpu_fwd_io_fill(const fa_plan_info *plan, const fa_fwd_args *a, const char *who, fa_gpu_fwd_io *io);

/*
 * The -D defines the forward kernels of both plugins take from the plan (fwd_f32.cu, fwd_mfma.hip): FA_DQK, FA_DV,
 * FA_BQ, FA_BKV, FA_SOFTCAP, FA_ALIBI, FA_LOCAL, FA_VARLEN, FA_PAGED, FA_DROPOUT, FA_SPLIT, one per row of o, in
 * that order (the MFMA forward takes no dropout or split plan: its two are 0 there and unused).
 */
#define FA_GPU_FWD_DEFINES 11
void fa_gpu_fwd_defines(const fa_plan_info *plan, char (*o)[32]);

/*
 * The SIMT forward's (kernels/fwd_f32.cu) fields after the problem's: split-KV partials (FA_SPLIT) and the dropout
 * mask's Philox key (FA_DROPOUT, api/fa_philox.h). Field for field the tail of struct fa_cuda_fwd_f32_params.
 */
typedef struct fa_gpu_fwd_tail {
    float *o_part, *lse_part; /* (splits, part_rows, heads_q, dv), (splits, heads_q, part_rows) fp32 */
    int num_splits, part_rows;
    uint32_t drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
    int pad_;
} fa_gpu_fwd_tail;

/* Rows the split partials cover: total_q with varlen, else batch x seqlen_q. */
int64_t fa_gpu_simt_part_rows(const fa_attn_desc *d);
/* Workspace bytes of the SIMT forward's split partials (0 unsplit), a multiple of 16. */
int64_t fa_gpu_simt_split_bytes(const fa_attn_desc *d, int splits);
/*
 * The SIMT forward's split rule, for its family's valid hook in both plugins: a split count the caller asked for
 * (desc.num_splits) is taken as given; the planner's own splits only for decode-like problems, where the query
 * blocks alone cannot fill the device: one query block per sequence (seqlen_q <= block_q) and at least 8 key tiles
 * per split. Prefill keeps one split (the combine pass and the partials' traffic would cost more than the tail they
 * fill). Returns 1 if the candidate is valid, else 0 with the reason.
 */
int fa_gpu_simt_split_ok(const fa_attn_desc *d, const fa_tile_config *c, char *why, size_t why_size);
/* Fills the tail for a call: partials at the start of the workspace (16-byte aligned), the dropout key. */
fa_status fa_gpu_fwd_tail_fill(const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, const char *who,
                               fa_gpu_fwd_tail *t);

/*
 * KV-cache append with rotary (flash_attn_with_kvcache) before the forward, shared by the CUDA plugin
 * (cuda_append.c) and the HIP plugin (hip_fwd.c): the parameter block of kernels/append_sm80.cu, field for field
 * struct fa_cuda_append_params, and where its outputs go. Its area is at the end of the plan's workspace:
 *   int32 lens[batch], padded to 256 bytes; rotary: q_rot (batch, seqlen_q, heads_q, head_dim_qk) in the dtype.
 */
typedef struct fa_gpu_append_params {
    const void *k_new, *v_new, *q;
    void *k, *v;
    void *q_rot;
    int32_t *lens;
    const int32_t *seqused_k;
    const int32_t *block_table;
    const float *cos, *sin;
    int64_t kn_sb, kn_ss, kn_sh, vn_sb, vn_ss, vn_sh;
    int64_t q_sb, q_ss, q_sh;
    int64_t k_sb, k_ss, k_sh, v_sb, v_ss, v_sh;
    int64_t cos_s, sin_s;
    int64_t bt_stride;
    int batch, seqlen_new, seqlen_q, seqlen_k, heads_q, heads_kv, dqk, dv;
    int page_size, num_pages;
    int rotary_dim, interleaved, rotary_seqlen;
    int q_moving;
} fa_gpu_append_params;

/* What the forward reads after the append: q (as given, or the rotated copy) and the key counts. */
typedef struct fa_gpu_append_out {
    const void *q;
    int64_t q_sb, q_ss, q_sh;
    const int32_t *seqused_k; /* seqused_k[b] + seqlen_new, in the workspace */
} fa_gpu_append_out;

/* Bytes the append adds at the end of the plan's workspace (0 without seqlen_new; else a multiple of 256). */
int64_t fa_gpu_append_bytes(const fa_attn_desc *d);
/* A forward family's workspace: its own bytes (at the start), plus the append's area at the end. */
int64_t fa_gpu_append_workspace(const fa_attn_desc *d, int64_t own);
/*
 * Fills the append kernel's parameters and what the forward reads after it; *tasks = rows of 32 lanes the launch
 * covers (k/v rows, then rotary q rows). Fails where the workspace is missing or too small, or q is varlen.
 */
fa_status fa_gpu_append_fill(const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, const char *who,
                             fa_gpu_append_params *p, fa_gpu_append_out *out, int64_t *tasks);

#endif
