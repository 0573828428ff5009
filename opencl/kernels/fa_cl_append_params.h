/*
 * The KV-cache append's parameter block, shared word for word by the host (opencl/cl_append.c, C11) and the
 * kernel (append.cl, OpenCL C 1.2): both compile this header, so the layout cannot drift. Every 8-byte field
 * comes first and the block's size is a multiple of 8, so C and OpenCL C lay it out alike.
 *
 * Buffers are separate kernel arguments (cl_mem); a tensor is (buffer, element offset, strides in elements).
 * An argument the problem lacks (no rotary: q, q_rot, cos, sin; dense cache: block_table) is bound to the
 * workspace's buffer and never read or written.
 */
#ifndef FA_CL_APPEND_PARAMS_H
#define FA_CL_APPEND_PARAMS_H

#if !defined(FA_CL_PARAMS_H) && !defined(FA_CL_BWD_PARAMS_H) /* they define the same type */
#ifdef __OPENCL_C_VERSION__
typedef long fa_cl_i64;
#else
#include <stdint.h>
typedef int64_t fa_cl_i64;
#endif
#endif

/* Work-items per row task (a head row of k/v or q); the host's NDRange and the kernel's lane loops both use it. */
#define FA_CL_APPEND_LANES 32

typedef struct fa_cl_append_params {
    /* element offsets of each argument's data in its buffer */
    fa_cl_i64 kn_off, vn_off, q_off, k_off, v_off, qrot_off, lens_off, seqused_off, bt_off, cos_off, sin_off;
    fa_cl_i64 kn_sb, kn_ss, kn_sh, vn_sb, vn_ss, vn_sh; /* strides in elements: batch, seq, head */
    fa_cl_i64 q_sb, q_ss, q_sh;
    fa_cl_i64 k_sb, k_ss, k_sh, v_sb, v_ss, v_sh;       /* dense: batch, seq, head; paged: page, row, head */
    fa_cl_i64 cos_s, sin_s;                             /* row strides of the rotary tables */
    fa_cl_i64 bt_stride;                                /* paged: the block table's row stride */
    int batch, seqlen_new, seqlen_q, seqlen_k, heads_q, heads_kv, dqk, dv;
    int paged, page_size, num_pages;
    int rotary_dim, interleaved, rotary_seqlen;
    int q_moving;                                       /* causal or windowed: q row i at seqused_k[b] + i */
    int pad0;                                           /* the size stays a multiple of 8 */
} fa_cl_append_params;

#endif
