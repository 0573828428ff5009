/* Rotary embedding and KV-cache append (flash_attn_with_kvcache semantics; see fa_attn_desc). */
#ifndef CPU_ROTARY_H
#define CPU_ROTARY_H

#include "cpu_layout.h"

/* Rotates the first rotary_dim entries of x (fp32) to position pos with the fp32 cos/sin tables. */
void cpu_rotary_row(const fa_attn_desc *d, const fa_tensor *cos, const fa_tensor *sin, int64_t pos, float *x);

/* Position of query row i of sequence b when rotary is on. */
int64_t cpu_rotary_q_position(const fa_plan_info *p, const cpu_layout *l, int64_t b, int64_t i);

/*
 * Writes k_new (rotated) and v_new into the cache at seqused_k[b] onwards, for every sequence and kv head.
 * pool holds stride >= head_dim_qk floats per OpenMP thread.
 */
void cpu_append_kv(const fa_plan_info *p, const cpu_layout *l, const fa_fwd_args *a, float *pool, int64_t stride);

#endif
