/*
 * The HIP selector's backward rule (hip/hip_select.c, hip_select_mfma_bwd.c) without a device: on a CDNA device
 * (props as a gfx90a reports them) the problems the MFMA backward covers get the hip_bwd_mfma family and every
 * other one the hip_bwd_simt family, never a refusal; and the planner finds tiles for the MFMA family (block_q =
 * block_kv = 32 x waves, inside 64 KiB of LDS and 255 registers), so a plan that selects it can be made.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fa_planner.h"
#include "hip_backend.h"

static int fake_rtc_version6(int *major, int *minor)
{
    *major = 6, *minor = 2;
    return 0;
}

static void cdna_ctx(hip_ctx *c, const char *arch)
{
    memset(c, 0, sizeof *c);
    c->ndev = 1;
    fa_device_props *p = &c->dev[0].props;
    p->backend = FA_BACKEND_HIP;
    snprintf(p->arch, sizeof p->arch, "%s", arch);
    snprintf(c->dev[0].target, sizeof c->dev[0].target, "%s", arch);
    p->shared_mem_per_block = p->shared_mem_per_block_optin = p->shared_mem_per_cu = 65536;
    p->compute_units = 104, p->simd_width = 64, p->max_threads_per_block = 1024, p->max_threads_per_cu = 2048;
    p->registers_per_block = 65536, p->memory_bytes = (int64_t)64 << 30;
}

static fa_attn_desc problem(fa_dtype dt, int dqk, int dv)
{
    fa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = dt, d.batch = 2, d.seqlen_q = 1024, d.seqlen_k = 1024, d.heads_q = 8, d.heads_kv = 2;
    d.head_dim_qk = dqk, d.head_dim_v = dv, d.causal = 1, d.window_left = d.window_right = -1;
    d.with_backward = 1;
    return d;
}

static const char *selected(hip_ctx *c, const fa_attn_desc *d)
{
    const fa_kernel_family *fam = NULL;
    char why[256] = "";
    if (hip_select(c, 0, d, FA_PASS_BWD, &fam, why, sizeof why) != FA_OK) fail_msg("declined: %s", why);
    return fam->name;
}

static void test_mfma_takes(void **state)
{
    (void)state;
    hip_ctx c;
    cdna_ctx(&c, "gfx90a");
    const int dims[][2] = {{128, 128}, {64, 64}, {32, 32}, {96, 96}, {128, 64}, {32, 96}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        for (int bf = 0; bf < 2; bf++) {
            fa_attn_desc d = problem(bf ? FA_DTYPE_BF16 : FA_DTYPE_F16, dims[i][0], dims[i][1]);
            assert_string_equal(selected(&c, &d), "hip_bwd_mfma");
            fa_planned best[8];
            char why[256] = "";
            const int n = fa_planner_enumerate(&hip_bwd_mfma_family, &c.dev[0].props, &d, best, 8, why, sizeof why);
            if (n < 1) fail_msg("d%d/%d: no tile for the MFMA backward: %s", dims[i][0], dims[i][1], why);
            for (int k = 0; k < (n < 8 ? n : 8); k++) {
                const fa_tile_config *t = &best[k].config;
                assert_int_equal(t->block_q, 32 * t->warps);
                assert_int_equal(t->block_kv, t->block_q);
                assert_true(best[k].smem_bytes <= 65536);
            }
        }
    fa_attn_desc d = problem(FA_DTYPE_F16, 128, 128);
    d.causal = 0, d.window_left = 64, d.window_right = 16, d.varlen = 1, d.total_q = d.total_k = 1500;
    assert_string_equal(selected(&c, &d), "hip_bwd_mfma");
    cdna_ctx(&c, "gfx942");
    c.api.rtcVersion = fake_rtc_version6;
    d = problem(FA_DTYPE_BF16, 64, 64);
    assert_string_equal(selected(&c, &d), "hip_bwd_mfma");
}

static void test_simt_keeps_the_rest(void **state)
{
    (void)state;
    hip_ctx c;
    cdna_ctx(&c, "gfx90a");
    fa_attn_desc d = problem(FA_DTYPE_F32, 128, 128);
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    const int dims[][2] = {{80, 80}, {256, 256}, {128, 160}, {16, 16}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        d = problem(FA_DTYPE_F16, dims[i][0], dims[i][1]);
        assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    }
    d = problem(FA_DTYPE_BF16, 128, 128), d.softcap = 30.0f;
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    d = problem(FA_DTYPE_BF16, 128, 128), d.alibi = FA_ALIBI_PER_HEAD;
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    d = problem(FA_DTYPE_BF16, 128, 128), d.dropout_p = 0.1f;
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    d = problem(FA_DTYPE_F16, 64, 64), d.varlen = 1, d.total_q = d.total_k = 1500, d.kv_cache_lengths = 1;
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    /* another arch, and gfx94x on a hiprtc older than ROCm 6 (ROCm 5's aborts on gfx94x targets) */
    d = problem(FA_DTYPE_F16, 128, 128);
    cdna_ctx(&c, "gfx908");
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
    cdna_ctx(&c, "gfx942");
    assert_string_equal(selected(&c, &d), "hip_bwd_simt");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mfma_takes),
        cmocka_unit_test(test_simt_keeps_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
