/*
 * The backward's parameter block, shared word for word by the host (opencl/cl_bwd.c, C11) and the kernels
 * (bwd.cl, OpenCL C 1.2): both compile this header, so the layout cannot drift. Every 8-byte field comes first
 * and the block's size is a multiple of 8, so C and OpenCL C lay it out alike.
 *
 * Buffers are separate kernel arguments (cl_mem); a tensor is (buffer, element offset, strides in elements).
 * Metadata buffers that are absent (has_* = 0, FA_VARLEN 0) are bound to a small dummy and never read.
 */
#ifndef FA_CL_BWD_PARAMS_H
#define FA_CL_BWD_PARAMS_H

#ifndef FA_CL_PARAMS_H /* fa_cl_params.h (the forward's) defines the same type */
#ifdef __OPENCL_C_VERSION__
typedef long fa_cl_i64;
#else
#include <stdint.h>
typedef int64_t fa_cl_i64;
#endif
#endif

typedef struct fa_cl_bwd_params {
    /* element offsets of each argument's data in its buffer (ws: floats) */
    fa_cl_i64 q_off, k_off, v_off, o_off, do_off, lse_off, dq_off, dk_off, dv_off, alibi_off;
    fa_cl_i64 cu_q_off, cu_k_off, seqused_off, ws_off;
    fa_cl_i64 q_sb, q_ss, q_sh;      /* strides in elements: batch, seq, head (varlen: batch stride 0) */
    fa_cl_i64 k_sb, k_ss, k_sh;
    fa_cl_i64 v_sb, v_ss, v_sh;
    fa_cl_i64 o_sb, o_ss, o_sh;
    fa_cl_i64 do_sb, do_ss, do_sh;
    fa_cl_i64 dq_sb, dq_ss, dq_sh;
    fa_cl_i64 dk_sb, dk_ss, dk_sh;
    fa_cl_i64 dv_sb, dv_ss, dv_sh;
    fa_cl_i64 lse_sb, lse_sh, lse_ss;
    fa_cl_i64 alibi_sb;              /* 0: slopes per head only */
    fa_cl_i64 ws_rows;               /* workspace: D at ws_off, LSE at ws_off + ws_rows (heads_q x query rows) */
    int seqlen_q, seqlen_k, heads_q, heads_kv; /* varlen: the largest lengths */
    int total_q, total_k;            /* varlen: rows of q-like and k-like tensors */
    int window_left, window_right;   /* effective (causal folded in); -1 = unbounded */
    int has_alibi, has_cu_k, has_seqused, unused;
    float scale, softcap;            /* softmax scale; softcap 0 = off */
    /*
     * FA_DROPOUT (api/fa_philox.h): Philox key (seed lo, seed hi ^ offset hi) and counter word 3 (offset lo), as
     * cuda_dropout_params; a draw below drop_threshold drops the element, a kept one is scaled by keep_scale =
     * 1 / (1 - p). unsigned int, not uint: the header is C11 as well as OpenCL C.
     */
    unsigned int drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
    int pad0;                        /* the size stays a multiple of 8 */
} fa_cl_bwd_params;

#endif
