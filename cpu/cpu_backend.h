/* The CPU backend's internal interface: device detection, the selector, and the kernels. */
#ifndef CPU_BACKEND_H
#define CPU_BACKEND_H

#include "fa_backend.h"

void cpu_detect(fa_device_props *props);

/* Kernel family ids (fa_kernel_family.id). */
enum { CPU_KERNEL_FWD_TILED = 1, CPU_KERNEL_BWD_TILED = 2, CPU_KERNEL_FWD_DECODE = 3 };

/*
 * A prefill work item of block_q rows applies each packed K/V tile to its rows in blocks of at most this many,
 * so packing is paid once per block_q rows while the score tile stays block_rows x block_kv.
 */
enum { CPU_FWD_BLOCK_ROWS = 128 };
/* Most bytes of packed K/V tiles a thread keeps for reuse across a head's query blocks (cpu_fwd.c), and 16x
 * that for all threads together; beyond, tiles are packed per block. */
#define CPU_FWD_TILE_CACHE_BYTES (16 << 20)

/* The selector: one function answers "supported?" and "which kernel family?". */
fa_status cpu_select(const fa_attn_desc *desc, fa_pass pass, const fa_kernel_family **family, char *why,
                     size_t why_size);

fa_status cpu_fwd(const fa_plan_info *plan, const fa_fwd_args *args, void *workspace);
fa_status cpu_bwd(const fa_plan_info *plan, const fa_bwd_args *args, void *workspace);
fa_status cpu_combine(const fa_combine_args *args);

/* Merge one row's split partials (fp32, already normalised) into out; lse_out may be NULL. */
void cpu_combine_row(const float *out_parts, int64_t out_split_stride, const float *lse_parts,
                     int64_t lse_split_stride, int splits, int64_t dv, void *out, fa_dtype out_dtype,
                     float *lse_out, float *scratch);

#endif
