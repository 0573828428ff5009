/*
 * The forward's parameter block, shared word for word by the host (opencl/cl_fwd.c, C11) and the kernels
 * (fwd.cl, OpenCL C 1.2): both compile this header, so the layout cannot drift. Every 8-byte field comes first
 * and the block's size is a multiple of 8, so C and OpenCL C lay it out alike.
 *
 * Buffers are passed as separate kernel arguments (cl_mem); a tensor is (buffer, element offset, strides in
 * elements). Metadata buffers that are absent (has_* = 0) are bound to a one-element dummy and never read.
 */
#ifndef FA_CL_PARAMS_H
#define FA_CL_PARAMS_H

#ifdef __OPENCL_C_VERSION__
typedef long fa_cl_i64;
#else
#include <stdint.h>
typedef int64_t fa_cl_i64;
#endif

typedef struct fa_cl_fwd_params {
    /* element offsets of each argument's data in its buffer */
    fa_cl_i64 q_off, k_off, v_off, o_off, lse_off, alibi_off;
    fa_cl_i64 cu_q_off, cu_k_off, seqused_off, bt_off, part_o_off, part_lse_off;
    fa_cl_i64 q_sb, q_ss, q_sh;      /* strides in elements: batch, seq, head */
    fa_cl_i64 k_sb, k_ss, k_sh;
    fa_cl_i64 v_sb, v_ss, v_sh;
    fa_cl_i64 o_sb, o_ss, o_sh;
    fa_cl_i64 lse_sb, lse_sh, lse_ss;
    fa_cl_i64 alibi_sb;              /* 0: slopes per head only */
    fa_cl_i64 bt_stride, k_sp, v_sp; /* paged: block-table row stride, page strides of k and v */
    int page_size, num_pages;
    int total_q, total_k;            /* varlen: rows of q/out and (not paged) of k/v */
    int num_splits, part_rows;       /* split: splits; rows = total_q (varlen) or batch * seqlen_q */
    int seqlen_q, seqlen_k, heads_q, heads_kv; /* varlen/paged: the largest lengths (capacities) */
    int window_left, window_right;   /* effective (causal folded in); -1 = unbounded */
    int has_lse, has_alibi, has_cu_k, has_seqused;
    float scale, softcap;            /* softmax scale; softcap 0 = off */
    /*
     * FA_DROPOUT (api/fa_philox.h): Philox key (seed lo, seed hi ^ offset hi) and counter word 3 (offset lo),
     * precomputed by the host as cuda_dropout_params does; a draw below drop_threshold drops the element, a kept
     * one is scaled by keep_scale = 1 / (1 - p). unsigned int, not uint: the header is C11 as well as OpenCL C.
     */
    unsigned int drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
    int pad0;                        /* the size stays a multiple of 8 */
} fa_cl_fwd_params;

#endif
