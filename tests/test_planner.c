/*
 * The tiling planner on synthetic devices: GPU-like ones with 16..227 KB of shared memory and CPU-like ones
 * with small and large caches. Every plan must fit its device; the ranking must behave as documented.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "cpu_backend.h"
#include "fa_planner.h"

/* A FlashAttention-2 style GPU forward: Q tile resident, `stages` K/V tiles in flight, 16-bit elements. */
static int64_t gpu_smem(const fa_attn_desc *d, const fa_tile_config *c)
{
    return 2 * ((int64_t)c->block_q * d->head_dim_qk + (int64_t)c->stages * c->block_kv * (d->head_dim_qk + d->head_dim_v));
}

static int gpu_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why, size_t n)
{
    (void)d;
    (void)dev;
    if (c->block_q % (16 * c->warps) != 0) {
        snprintf(why, n, "each warp owns 16 rows");
        return 0;
    }
    return 1;
}

static const fa_kernel_family gpu_family = {
    .name = "synthetic_gpu_fwd",
    .pass = FA_PASS_FWD,
    .block_q = {64, 128, 192},
    .block_kv = {32, 64, 128},
    .warps = {4, 8},
    .stages = {1, 2, 3},
    .max_splits = 32,
    .smem_bytes = gpu_smem,
    .valid = gpu_valid,
};

static fa_device_props gpu_device(int smem_kb)
{
    fa_device_props p;
    memset(&p, 0, sizeof p);
    p.backend = FA_BACKEND_CUDA;
    p.shared_mem_per_block = smem_kb < 48 ? smem_kb * 1024 : 48 * 1024;
    p.shared_mem_per_block_optin = smem_kb * 1024;
    p.shared_mem_per_cu = (smem_kb + 1) * 1024;
    p.compute_units = 132;
    p.simd_width = 32;
    p.max_threads_per_block = 1024;
    p.max_threads_per_cu = 2048;
    p.registers_per_block = 65536;
    return p;
}

static fa_device_props cpu_device(int64_t l2_kb, int cores)
{
    fa_device_props p;
    memset(&p, 0, sizeof p);
    p.backend = FA_BACKEND_CPU;
    p.l1_cache_bytes = 32 * 1024;
    p.l2_cache_bytes = l2_kb * 1024;
    p.shared_mem_per_block = p.shared_mem_per_block_optin = l2_kb * 1024 / 2;
    p.shared_mem_per_cu = l2_kb * 1024;
    p.compute_units = cores;
    p.simd_width = 8;
    p.max_threads_per_block = 1;
    p.max_threads_per_cu = 1;
    return p;
}

static fa_attn_desc problem(int64_t b, int64_t sq, int64_t sk, int64_t h, int64_t d)
{
    fa_attn_desc desc;
    fa_attn_desc_init(&desc);
    desc.dtype = FA_DTYPE_BF16;
    desc.batch = b;
    desc.seqlen_q = sq;
    desc.seqlen_k = sk;
    desc.heads_q = desc.heads_kv = h;
    desc.head_dim_qk = desc.head_dim_v = d;
    return desc;
}

static fa_planned cands[4096];

static void assert_all_fit(const fa_kernel_family *fam, const fa_device_props *dev, const fa_attn_desc *d, int n)
{
    int64_t limit = dev->shared_mem_per_block_optin;
    for (int i = 0; i < n; i++) {
        const fa_planned *p = &cands[i];
        assert_true(p->smem_bytes <= limit);
        assert_int_equal(p->smem_bytes, fam->smem_bytes(d, &p->config));
        if (dev->max_threads_per_block > 1)
            assert_true(p->config.warps * dev->simd_width <= dev->max_threads_per_block);
        assert_true(p->blocks_per_cu >= 1);
        assert_true(p->wave_efficiency > 0.0 && p->wave_efficiency <= 1.0 + 1e-9);
        if (i > 0) assert_true(cands[i - 1].score >= p->score);
    }
}

static void every_gpu_plan_fits(void **state)
{
    (void)state;
    const int sizes[] = {16, 32, 48, 64, 100, 164, 227};
    const int64_t dims[] = {32, 64, 128, 256};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
            fa_device_props dev = gpu_device(sizes[s]);
            fa_attn_desc d = problem(4, 4096, 4096, 16, dims[k]);
            char why[256];
            int n = fa_planner_enumerate(&gpu_family, &dev, &d, cands, 4096, why, sizeof why);
            /* The smallest candidate (64 x d Q tile, one 32-key stage) needs 2*(64d + 64d) bytes. */
            int64_t smallest = 2 * (64 * dims[k] + 32 * 2 * dims[k]);
            if (smallest <= (int64_t)sizes[s] * 1024) {
                assert_true(n > 0);
                assert_all_fit(&gpu_family, &dev, &d, n);
            } else {
                assert_int_equal(n, 0);
                assert_non_null(strstr(why, "shared/local memory"));
            }
        }
}

static void more_memory_never_means_fewer_candidates(void **state)
{
    (void)state;
    fa_attn_desc d = problem(2, 2048, 2048, 8, 128);
    int prev = 0;
    const int sizes[] = {16, 32, 48, 64, 100, 164, 227};
    for (size_t s = 0; s < 7; s++) {
        fa_device_props dev = gpu_device(sizes[s]);
        int n = fa_planner_enumerate(&gpu_family, &dev, &d, NULL, 0, NULL, 0);
        assert_true(n >= prev);
        prev = n;
    }
    assert_true(prev > 0);
}

static void decode_gets_kv_splits(void **state)
{
    (void)state;
    fa_device_props dev = gpu_device(227);
    /* One query row, one head: without splits 131 of 132 SMs idle. */
    fa_attn_desc d = problem(1, 1, 65536, 1, 128);
    int n = fa_planner_enumerate(&gpu_family, &dev, &d, cands, 4096, NULL, 0);
    assert_true(n > 0);
    assert_true(cands[0].config.num_splits >= 16);
    /* Plenty of parallel work: splitting only adds combine traffic. */
    fa_attn_desc big = problem(16, 4096, 4096, 16, 128);
    n = fa_planner_enumerate(&gpu_family, &dev, &big, cands, 4096, NULL, 0);
    assert_true(n > 0);
    assert_int_equal(cands[0].config.num_splits, 1);
}

static void fixed_split_count_is_respected(void **state)
{
    (void)state;
    fa_device_props dev = gpu_device(227);
    fa_attn_desc d = problem(1, 1, 65536, 1, 128);
    d.num_splits = 3;
    int n = fa_planner_enumerate(&gpu_family, &dev, &d, cands, 4096, NULL, 0);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) assert_int_equal(cands[i].config.num_splits, 3);
    /* More splits than KV tiles: clamped per tile size (flash_attn treats num_splits as a hint). */
    d = problem(1, 1, 96, 1, 128);
    d.num_splits = 8;
    n = fa_planner_enumerate(&gpu_family, &dev, &d, cands, 4096, NULL, 0);
    assert_true(n > 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(cands[i].config.num_splits, (96 + cands[i].config.block_kv - 1) / cands[i].config.block_kv);
}

static void wave_quantisation_is_counted(void **state)
{
    (void)state;
    fa_device_props dev = gpu_device(227);
    fa_attn_desc d = problem(1, 128 * 133, 4096, 1, 64);
    fa_tile_config c = {128, 64, 8, 2, 1};
    assert_int_equal(fa_planner_work_items(&gpu_family, &d, &c), 133);
    int n = fa_planner_enumerate(&gpu_family, &dev, &d, cands, 4096, NULL, 0);
    for (int i = 0; i < n; i++) {
        const fa_planned *p = &cands[i];
        int64_t slots = (int64_t)dev.compute_units * p->blocks_per_cu;
        int64_t waves = (p->work_items + slots - 1) / slots;
        assert_true(fabs(p->wave_efficiency - (double)p->work_items / (double)(waves * slots)) < 1e-12);
    }
}

static void invalid_configs_are_pruned_with_reason(void **state)
{
    (void)state;
    fa_kernel_family fam = gpu_family;
    memset(fam.warps, 0, sizeof fam.warps);
    fam.warps[0] = 16; /* 16 warps need block_q % 256 == 0: never */
    fa_device_props dev = gpu_device(227);
    fa_attn_desc d = problem(1, 1024, 1024, 8, 64);
    char why[256] = "";
    assert_int_equal(fa_planner_enumerate(&fam, &dev, &d, cands, 4096, why, sizeof why), 0);
    assert_non_null(strstr(why, "16 rows"));
}

static void every_cpu_plan_fits(void **state)
{
    (void)state;
    const fa_kernel_family *fam;
    char why[256];
    const int64_t l2[] = {256, 512, 1024, 2048};
    const int64_t dims[] = {32, 64, 128, 256};
    for (size_t s = 0; s < 4; s++)
        for (size_t k = 0; k < 4; k++)
            for (int cores = 1; cores <= 64; cores *= 4) {
                fa_device_props dev = cpu_device(l2[s], cores);
                fa_attn_desc d = problem(1, 4096, 4096, 16, dims[k]);
                assert_int_equal(cpu_select(&d, FA_PASS_FWD, &fam, why, sizeof why), FA_OK);
                int n = fa_planner_enumerate(fam, &dev, &d, cands, 4096, why, sizeof why);
                assert_true(n > 0);
                assert_all_fit(fam, &dev, &d, n);
            }
}

static void cpu_selector_declines_with_reason(void **state)
{
    (void)state;
    const fa_kernel_family *fam = NULL;
    char why[256] = "";
    fa_attn_desc d = problem(1, 16, 16, 1, 64);
    d.dtype = FA_DTYPE_F8_E4M3;
    assert_int_equal(cpu_select(&d, FA_PASS_FWD, &fam, why, sizeof why), FA_ERR_UNSUPPORTED);
    assert_non_null(strstr(why, "fp8"));
    d.dtype = FA_DTYPE_F32;
    assert_int_equal(cpu_select(&d, FA_PASS_BWD, &fam, why, sizeof why), FA_OK);
    d.paged_kv = 1;
    assert_int_equal(cpu_select(&d, FA_PASS_BWD, &fam, why, sizeof why), FA_ERR_UNSUPPORTED);
    assert_non_null(strstr(why, "paged"));
}

static void small_problems_prefer_small_tiles(void **state)
{
    (void)state;
    const fa_kernel_family *fam;
    char why[256];
    fa_device_props dev = cpu_device(1024, 2);
    fa_attn_desc d = problem(1, 1, 1, 1, 64);
    assert_int_equal(cpu_select(&d, FA_PASS_FWD, &fam, why, sizeof why), FA_OK);
    int n = fa_planner_enumerate(fam, &dev, &d, cands, 4096, why, sizeof why);
    assert_true(n > 0);
    /* One row and one key: any tile beyond the smallest is padding. */
    assert_int_equal(cands[0].config.block_q, 16);
    assert_int_equal(cands[0].config.block_kv, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_gpu_plan_fits),
        cmocka_unit_test(more_memory_never_means_fewer_candidates),
        cmocka_unit_test(decode_gets_kv_splits),
        cmocka_unit_test(fixed_split_count_is_respected),
        cmocka_unit_test(wave_quantisation_is_counted),
        cmocka_unit_test(invalid_configs_are_pruned_with_reason),
        cmocka_unit_test(every_cpu_plan_fits),
        cmocka_unit_test(cpu_selector_declines_with_reason),
        cmocka_unit_test(small_problems_prefer_small_tiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
