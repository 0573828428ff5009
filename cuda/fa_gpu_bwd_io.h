/*
 * The SIMT backward (kernels/bwd_f32.cu) on the host, the part both plugins share: the CUDA plugin runs it for
 * fp32 (and 16-bit head dims the mma.sync backward does not take), the HIP plugins (hip/, both builds) for every
 * dtype they take. One parameter block, one fill, one set of defines and one shared-memory / register / workspace
 * formula, so neither plugin can drift from the kernel alone. Plain host C over the public API types.
 */
#ifndef FA_GPU_BWD_IO_H
#define FA_GPU_BWD_IO_H

#include <stdint.h>

#include "fa_backend.h"

/* Field for field struct fa_gpu_bwd_params of kernels/bwd_f32.cu; strides in elements (varlen: batch stride 0). */
typedef struct fa_gpu_bwd_params {
    const void *q, *k, *v, *out, *dout;
    void *dq, *dk, *dv;
    const float *lse, *alibi;
    float *ws; /* D at ws, LSE at ws + ws_rows */
    const int32_t *cu_q, *cu_k, *seqused_k;
    int64_t q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh, do_sb, do_ss, do_sh;
    int64_t dq_sb, dq_ss, dq_sh, dk_sb, dk_ss, dk_sh, dv_sb, dv_ss, dv_sh;
    int64_t lse_sb, lse_sh, lse_ss;
    int64_t alibi_sb, ws_rows;
    int32_t seqlen_q, seqlen_k, heads_q, heads_kv;
    int32_t total_q, total_k;
    int32_t window_left, window_right;
    float scale, softcap;
    uint32_t drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
    int32_t vec_qk, vec_v;
    int32_t pad0;
} fa_gpu_bwd_params;

/* Threads per block of every kernel of bwd_f32.cu: 8 warps of 32 or 4 wavefronts of 64. */
enum { FA_GPU_BWD_THREADS = 256 };

/* 1 where the kernel keeps its Q/K/V/dO tiles 16-bit in shared memory (FA_L16): 16-bit storage above d128. */
int fa_gpu_bwd_l16(const fa_attn_desc *d);
/* Dynamic shared memory of the dK/dV and the dQ kernel, and the larger of the two (the family's formula). */
int64_t fa_gpu_bwd_smem_dkdv(const fa_attn_desc *d, const fa_tile_config *t);
int64_t fa_gpu_bwd_smem_dq(const fa_attn_desc *d, const fa_tile_config *t);
int64_t fa_gpu_bwd_smem(const fa_attn_desc *d, const fa_tile_config *t);
/* Registers per thread, estimated (the larger kernel's accumulators, scores and addressing). */
int fa_gpu_bwd_regs(const fa_attn_desc *d, const fa_tile_config *t);
/* 1 if the kernel takes the tile (block_q, block_kv 16/32/64; accumulators per thread within 64 fp32 values), else
   0 with the reason. The thread count is each plugin's own check. */
int fa_gpu_bwd_tile_ok(const fa_attn_desc *d, const fa_tile_config *t, char *why, size_t why_size);
/* Workspace bytes: D and LSE, one fp32 per query row and head each. */
int64_t fa_gpu_bwd_workspace(const fa_attn_desc *d, const fa_tile_config *t);
/* Blocks of the dK/dV kernel: one per (KV block, KV head, batch). */
int64_t fa_gpu_bwd_work_items(const fa_attn_desc *d, const fa_tile_config *t);

/*
 * The -D defines of a plan's specialisation, one per row of o: FA_DQK, FA_DV, FA_BQ, FA_BKV, FA_STORAGE, FA_L16,
 * FA_SOFTCAP, FA_ALIBI, FA_LOCAL, FA_VARLEN, FA_DROPOUT.
 */
#define FA_GPU_BWD_DEFINES 11
void fa_gpu_bwd_defines(const fa_plan_info *plan, char (*o)[32]);

/*
 * Fills p for one call: every tensor's pointer and strides, metadata, the resolved mask and scale, the dropout key
 * (fa_dropout_key_for, the forward's mask), the workspace. Checks what the kernel needs beyond fa_validate: element
 * alignment, ALiBi slopes contiguous along heads, a workspace where there are query rows; `who` names the caller
 * in the error.
 */
fa_status fa_gpu_bwd_fill(const fa_plan_info *plan, const fa_bwd_args *a, void *workspace, const char *who,
                          fa_gpu_bwd_params *p);

/* Grids of the three kernels (pre, dK/dV, dQ) as (x, y, z); a kernel with x or z 0 has nothing to do. */
void fa_gpu_bwd_grids(const fa_plan_info *plan, unsigned grid[3][3]);
/* The kernels' names in launch order. */
extern const char *const fa_gpu_bwd_kernels[3];

#endif
