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
 * FA_BQ, FA_BKV, FA_SOFTCAP, FA_ALIBI, FA_LOCAL, FA_VARLEN, FA_PAGED, one per row of o, in that order.
 */
#define FA_GPU_FWD_DEFINES 9
void fa_gpu_fwd_defines(const fa_plan_info *plan, char (*o)[32]);

#endif
