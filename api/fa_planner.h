/*
 * The tiling planner: pure C, knows no vendor. A backend declares each kernel family's candidate space,
 * constraints and memory formula; the planner enumerates the space, prunes what does not fit the device,
 * ranks the rest and returns them best first. The tuner and the conformance suite see the whole list.
 */
#ifndef FA_PLANNER_H
#define FA_PLANNER_H

#include "flashport.h"

typedef enum fa_pass { FA_PASS_FWD = 0, FA_PASS_BWD = 1 } fa_pass;

#define FA_PLANNER_MAX_CHOICES 8

typedef struct fa_kernel_family fa_kernel_family;
struct fa_kernel_family {
    const char *name;     /* "cpu_fwd_tiled", "sm80_fwd", ... */
    fa_pass pass;
    int id;               /* backend-private kernel id */

    /* Candidate space: the cartesian product of these lists (0-terminated, at most 8 entries each). */
    int block_q[FA_PLANNER_MAX_CHOICES + 1];
    int block_kv[FA_PLANNER_MAX_CHOICES + 1];
    int warps[FA_PLANNER_MAX_CHOICES + 1];
    int stages[FA_PLANNER_MAX_CHOICES + 1];
    int max_splits;       /* splits tried: 1, 2, 4, ... <= max_splits */

    /* Bytes of shared/local memory (CPU: cache working set) one block needs. */
    int64_t (*smem_bytes)(const fa_attn_desc *desc, const fa_tile_config *config);
    /* Registers per thread (0 = unknown); pruned against registers_per_block. May be NULL. */
    int (*regs_per_thread)(const fa_attn_desc *desc, const fa_tile_config *config);
    /* Extra constraints. Returns 1 if valid; else 0 with the reason in why. May be NULL. */
    int (*valid)(const fa_attn_desc *desc, const fa_device_props *dev, const fa_tile_config *config,
                 char *why, size_t why_size);
    /* Workspace bytes for a config (split-KV partials, dQ accumulators). May be NULL (= 0). */
    int64_t (*workspace_bytes)(const fa_attn_desc *desc, const fa_tile_config *config);
    /* Blocks launched, when not batch x heads_q x ceil(seqlen_q / block_q) x splits. May be NULL. */
    int64_t (*work_items)(const fa_attn_desc *desc, const fa_tile_config *config);
    /*
     * Score factor for a candidate of which two or more blocks are resident per compute unit (0 = none). Their
     * barriers are independent: while one block's warps wait at __syncthreads the other's keep the matrix
     * units busy, which one block of twice the warps cannot do.
     */
    double multi_block_gain;
    /*
     * 1: the kernel streams its inputs once whatever the tile (a packed decode: every K/V byte is read once per
     * KV head), so the tile's loads per flop do not rank candidates; only filling the device (waves, resident
     * blocks, splits) does, and a split costs a fifth of the usual. 0: bigger tiles score higher
     * (1 / (1/block_q + 1/block_kv)).
     */
    int streaming;
};

/* One ranked candidate with the numbers that ranked it (the plan's description prints them). */
typedef struct fa_planned {
    fa_tile_config config;
    int64_t smem_bytes;
    int blocks_per_cu;     /* resident blocks per compute unit */
    int64_t work_items;    /* blocks launched */
    double wave_efficiency; /* work_items / (waves * slots), 1 = no idle tail */
    double tile_efficiency; /* arithmetic intensity of the tile relative to the largest candidate */
    double score;
} fa_planned;

/*
 * Enumerates the family's candidates for the problem on the device, best first. Writes up to max entries
 * to out (out may be NULL when max is 0) and returns how many are valid. If none fits, returns 0 and
 * explains why (the first pruning reason) in why.
 */
FA_API int fa_planner_enumerate(const fa_kernel_family *family, const fa_device_props *dev,
                                const fa_attn_desc *desc, fa_planned *out, int max, char *why,
                                size_t why_size);

/*
 * Resident blocks per compute unit for a block of `threads` threads using smem bytes and regs registers per
 * thread (0 = unknown), as the ranking counts them; a backend compiles its kernel so that this many fit.
 */
FA_API int fa_planner_blocks_per_cu(const fa_device_props *dev, int64_t smem, int threads, int regs);

/* Rank inputs exposed for tests: number of blocks a config launches for a problem. */
FA_API int64_t fa_planner_work_items(const fa_kernel_family *family, const fa_attn_desc *desc,
                                     const fa_tile_config *config);

#endif
