/* The tiling planner: enumerate a kernel family's candidate space, prune, rank. Vendor-neutral. */
#include "fa_planner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int list_len(const int *list)
{
    int n = 0;
    while (n < FA_PLANNER_MAX_CHOICES && list[n] > 0) n++;
    return n;
}

int64_t fa_planner_work_items(const fa_kernel_family *family, const fa_attn_desc *desc,
                              const fa_tile_config *config)
{
    if (family->work_items) return family->work_items(desc, config);
    return desc->batch * desc->heads_q * ceil_div(desc->seqlen_q, config->block_q) * config->num_splits;
}

/* Fraction of a tiled extent that is real work rather than padding of the last tile. */
static double fill_fraction(int64_t n, int tile)
{
    if (n <= 0) return 1.0;
    return (double)n / (double)(ceil_div(n, tile) * tile);
}

static void note_reason(char *why, size_t why_size, int *have_reason, const char *fmt, const char *detail,
                        const fa_tile_config *c)
{
    if (*have_reason || !why || why_size == 0) return;
    snprintf(why, why_size, fmt, c->block_q, c->block_kv, c->warps, c->stages, c->num_splits, detail);
    *have_reason = 1;
}

/* Resident blocks per compute unit, limited by shared memory, threads and registers. */
int fa_planner_blocks_per_cu(const fa_device_props *dev, int64_t smem, int threads, int regs)
{
    int64_t n = 64;
    if (dev->shared_mem_per_cu > 0 && smem > 0) n = dev->shared_mem_per_cu / smem;
    if (dev->max_threads_per_cu > 0 && threads > 0 && dev->max_threads_per_cu / threads < n)
        n = dev->max_threads_per_cu / threads;
    if (regs > 0 && dev->registers_per_block > 0 && threads > 0) {
        /* Register file of one CU is taken to be the per-block maximum (true for every NVIDIA/AMD part). */
        int64_t by_regs = (int64_t)dev->registers_per_block / ((int64_t)regs * threads);
        if (by_regs < n) n = by_regs;
    }
    return n < 1 ? 0 : (int)n;
}

static int cmp_planned(const void *a, const void *b)
{
    const fa_planned *x = a, *y = b;
    if (x->score > y->score) return -1;
    if (x->score < y->score) return 1;
    return 0;
}

int fa_planner_enumerate(const fa_kernel_family *family, const fa_device_props *dev, const fa_attn_desc *desc,
                         fa_planned *out, int max, char *why, size_t why_size)
{
    int nq = list_len(family->block_q), nkv = list_len(family->block_kv);
    int nw = list_len(family->warps), ns = list_len(family->stages);
    int max_splits = family->max_splits > 0 ? family->max_splits : 1;
    int have_reason = 0;
    if (why && why_size) why[0] = 0;

    /* The whole space is at most 8^4 * log2(max_splits) entries: rank it in a scratch array. */
    size_t cap = (size_t)nq * nkv * nw * ns * 16 + 1;
    fa_planned *all = calloc(cap, sizeof(*all));
    if (!all) {
        if (why && why_size) snprintf(why, why_size, "out of memory while planning");
        return 0;
    }
    int64_t smem_limit = dev->shared_mem_per_block_optin > dev->shared_mem_per_block
                             ? dev->shared_mem_per_block_optin
                             : dev->shared_mem_per_block;
    int simd = dev->simd_width > 0 ? dev->simd_width : 1;
    int cus = dev->compute_units > 0 ? dev->compute_units : 1;
    size_t n = 0;
    double best_intensity = 0.0;

    for (int iq = 0; iq < nq; iq++)
    for (int ikv = 0; ikv < nkv; ikv++)
    for (int iw = 0; iw < nw; iw++)
    for (int is = 0; is < ns; is++)
    /*
     * Each split needs a KV tile of its own. A split count the user fixed is clamped to the tiles there are
     * (as flash_attn treats num_splits: a hint); otherwise powers of two up to the family's limit are tried.
     */
    for (int splits = 1, tiles = (int)ceil_div(desc->seqlen_k, family->block_kv[ikv]); splits <= max_splits;
         splits *= 2) {
        if (desc->num_splits > 0) {
            if (splits > 1) break;
            splits = desc->num_splits < tiles ? desc->num_splits : tiles;
            if (splits > max_splits) splits = max_splits;
        } else if (splits > 1 && splits > tiles) {
            break;
        }
        fa_tile_config c = {family->block_q[iq], family->block_kv[ikv], family->warps[iw], family->stages[is],
                            splits};
        int threads = dev->max_threads_per_block > 1 ? c.warps * simd : 1;
        if (dev->max_threads_per_block > 0 && threads > dev->max_threads_per_block) {
            note_reason(why, why_size, &have_reason,
                        "block_q=%d block_kv=%d warps=%d stages=%d splits=%d: %s", "too many threads per block",
                        &c);
            continue;
        }
        int64_t smem = family->smem_bytes ? family->smem_bytes(desc, &c) : 0;
        if (smem > smem_limit) {
            char detail[96];
            snprintf(detail, sizeof detail, "needs %lld B of shared/local memory, device allows %lld B",
                     (long long)smem, (long long)smem_limit);
            note_reason(why, why_size, &have_reason, "block_q=%d block_kv=%d warps=%d stages=%d splits=%d: %s",
                        detail, &c);
            continue;
        }
        int regs = family->regs_per_thread ? family->regs_per_thread(desc, &c) : 0;
        if (regs > 255) {
            note_reason(why, why_size, &have_reason, "block_q=%d block_kv=%d warps=%d stages=%d splits=%d: %s",
                        "needs more than 255 registers per thread", &c);
            continue;
        }
        char vwhy[160] = "";
        if (family->valid && !family->valid(desc, dev, &c, vwhy, sizeof vwhy)) {
            note_reason(why, why_size, &have_reason, "block_q=%d block_kv=%d warps=%d stages=%d splits=%d: %s",
                        vwhy, &c);
            continue;
        }
        int bpcu = dev->max_threads_per_block > 1 ? fa_planner_blocks_per_cu(dev, smem, threads, regs) : 1;
        if (bpcu < 1) {
            note_reason(why, why_size, &have_reason, "block_q=%d block_kv=%d warps=%d stages=%d splits=%d: %s",
                        "no block of this size can be resident", &c);
            continue;
        }
        fa_planned *p = &all[n++];
        p->config = c;
        p->smem_bytes = smem;
        p->blocks_per_cu = bpcu;
        p->work_items = fa_planner_work_items(family, desc, &c);
        int64_t slots = (int64_t)cus * bpcu;
        int64_t waves = ceil_div(p->work_items, slots);
        p->wave_efficiency = (double)p->work_items / (double)(waves * slots);
        /* Loads per flop fall as 1/block_q + 1/block_kv: that is what a bigger tile buys. */
        p->tile_efficiency = family->streaming ? 1.0 : 1.0 / (1.0 / c.block_q + 1.0 / c.block_kv);
        if (p->tile_efficiency > best_intensity) best_intensity = p->tile_efficiency;
        double occupancy = 1.0;
        if (dev->max_threads_per_cu > 1) {
            double resident = (double)bpcu * threads;
            /*
             * Matrix-unit kernels hide latency with instruction-level parallelism: 8 resident warps of an H100
             * (1/8 of its 2048 threads) is what FlashAttention-2 runs at, and our d64-d128 kernels measured
             * fastest there (bench/NOTES.md section 4d). Fewer resident threads than that cost in proportion.
             */
            occupancy = fmin(1.0, resident / (0.125 * dev->max_threads_per_cu));
        }
        /* Padding of the last tile; a family that packs rows (work_items set) fills its rows itself. */
        double pad = (family->work_items ? 1.0 : fill_fraction(desc->seqlen_q, c.block_q)) *
                     fill_fraction(desc->seqlen_k, c.block_kv);
        /*
         * A split costs its partial output's write and the combine's read. A streaming kernel's splits are what
         * fill the device (its blocks hold few rows each), and next to the cache it streams the partials are small:
         * a fifth of the general penalty (H100 OpenCL decode: the 5 % one stopped at 4 splits where 16 measured 2.6x
         * faster; seventh session, bench/RESULTS.md).
         */
        double split_cost = 1.0 / (1.0 + (family->streaming ? 0.01 : 0.05) * (splits - 1));
        double stage_gain = 1.0 + 0.05 * (c.stages > 3 ? 2 : c.stages - 1);
        double blocks_gain = bpcu >= 2 && family->multi_block_gain > 0.0 ? family->multi_block_gain : 1.0;
        p->score = p->wave_efficiency * occupancy * pad * split_cost * stage_gain * blocks_gain;
    }
    for (size_t i = 0; i < n; i++) {
        all[i].tile_efficiency /= best_intensity;
        all[i].score *= all[i].tile_efficiency;
    }
    /* qsort is not stable; enumeration order breaks ties so plans are reproducible. */
    for (size_t i = 0; i < n; i++) all[i].score -= (double)i * 1e-12;
    qsort(all, n, sizeof(*all), cmp_planned);
    if (out)
        for (size_t i = 0; i < n && (int)i < max; i++) out[i] = all[i];
    free(all);
    if (n == 0 && why && why_size && !have_reason)
        snprintf(why, why_size, "kernel family %s has no candidate for this problem", family->name);
    return (int)n;
}
