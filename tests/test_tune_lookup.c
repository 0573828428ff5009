/*
 * fa_plan_create's lookup order on the CPU backend: FLASHPORT_TILE > user tuning cache > install tuning cache >
 * planner heuristic, each seen through fa_plan_config / fa_plan_bwd_config and the "chosen by" of
 * fa_plan_describe. Both cache directories are temporary ones named by FLASHPORT_TUNE_DIR and
 * FLASHPORT_TUNE_INSTALL_DIR. A config that is not a candidate, or a file with a stale validator, must be
 * skipped for the next source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fa_tune_cache.h"
#include "flashport.h"

static char root[256], user_dir[320], install_dir[320];

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/flashport_tune_lookup_XXXXXX");
    if (!mkdtemp(root)) return -1;
    snprintf(user_dir, sizeof user_dir, "%s/user", root);
    snprintf(install_dir, sizeof install_dir, "%s/install", root);
    if (fa_tune_make_dir(user_dir) || fa_tune_make_dir(install_dir)) return -1;
    setenv("FLASHPORT_TUNE_DIR", user_dir, 1);
    setenv("FLASHPORT_TUNE_INSTALL_DIR", install_dir, 1);
    unsetenv("FLASHPORT_TILE");
    unsetenv("FLASHPORT_TUNE");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static fa_attn_desc problem(int with_backward)
{
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = FA_DTYPE_F32;
    d.batch = 1, d.seqlen_q = d.seqlen_k = 256, d.heads_q = d.heads_kv = 2;
    d.head_dim_qk = d.head_dim_v = 64;
    d.with_backward = with_backward;
    d.return_lse = with_backward;
    return d;
}

/* Writes dir's tuning file for the CPU device with one entry for desc's bucket. */
static void write_file(const char *dir, const fa_attn_desc *d, const fa_tile_config *fwd, const fa_tile_config *bwd,
                       const char *stale_hash)
{
    fa_tune_ident id;
    assert_int_equal(fa_tune_device_ident(0, &id), FA_OK);
    if (stale_hash) snprintf(id.kernel_hash, sizeof id.kernel_hash, "%s", stale_hash);
    fa_tune_file f;
    fa_tune_file_init(&f, &id);
    fa_tune_entry e;
    memset(&e, 0, sizeof e);
    fa_tune_bucket_of(d, &e.bucket);
    e.fwd = *fwd;
    e.has_bwd = bwd != NULL;
    if (bwd) e.bwd = *bwd;
    e.tuned_ms = 1.0, e.heuristic_ms = 2.0;
    assert_int_equal(fa_tune_file_put(&f, &e), 0);
    char name[512], path[1024], why[512];
    fa_tune_file_name(&id, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(fa_tune_write(path, &f, why, sizeof why), 0);
    fa_tune_file_free(&f);
}

static void remove_files(void)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/*.tune '%s'/*.tune", user_dir, install_dir);
    assert_int_equal(system(cmd), 0);
}

static int same(const fa_tile_config *a, const fa_tile_config *b) { return !memcmp(a, b, sizeof *a); }

/* Plans desc and checks the forward config and that the description's "chosen by" names `by`. */
static void expect(const fa_attn_desc *d, const fa_tile_config *want, const char *by)
{
    fa_plan *plan = NULL;
    assert_int_equal(fa_plan_create(&plan, 0, d), FA_OK);
    fa_tile_config got;
    assert_int_equal(fa_plan_config(plan, &got), FA_OK);
    char text[4096], chosen[1200];
    fa_plan_describe(plan, text, sizeof text);
    snprintf(chosen, sizeof chosen, "chosen by %s", by);
    if (!same(&got, want) || !strstr(text, chosen)) print_error("want %s\n%s", chosen, text);
    assert_true(same(&got, want));
    assert_non_null(strstr(text, chosen));
    fa_plan_destroy(plan);
}

static void test_lookup_order(void **state)
{
    (void)state;
    fa_attn_desc d = problem(0);
    fa_tile_config c[16];
    int n = 0;
    assert_int_equal(fa_plan_candidates(0, &d, c, 16, &n), FA_OK);
    assert_true(n >= 4); /* heuristic + one config per source */
    remove_files();
    char user_file[1024], install_file[1024], name[512];
    fa_tune_ident id;
    assert_int_equal(fa_tune_device_ident(0, &id), FA_OK);
    fa_tune_file_name(&id, name, sizeof name);
    snprintf(user_file, sizeof user_file, "tuning cache %s/%s", user_dir, name);
    snprintf(install_file, sizeof install_file, "install tuning cache %s/%s", install_dir, name);

    expect(&d, &c[0], "planner heuristic");
    write_file(install_dir, &d, &c[2], NULL, NULL);
    expect(&d, &c[2], install_file);
    write_file(user_dir, &d, &c[1], NULL, NULL);
    expect(&d, &c[1], user_file);
    char tile[64], env[80];
    fa_tile_format(&c[3], tile, sizeof tile);
    setenv("FLASHPORT_TILE", tile, 1);
    snprintf(env, sizeof env, "FLASHPORT_TILE=%s", tile);
    expect(&d, &c[3], env);
    /* an explicit config beats everything and consults nothing */
    fa_plan *plan = NULL;
    assert_int_equal(fa_plan_create_with_config(&plan, 0, &d, &c[0]), FA_OK);
    char text[4096];
    fa_plan_describe(plan, text, sizeof text);
    assert_non_null(strstr(text, "chosen by explicit config"));
    fa_plan_destroy(plan);
    /* a malformed override is ignored */
    setenv("FLASHPORT_TILE", "128x", 1);
    expect(&d, &c[1], user_file);
    unsetenv("FLASHPORT_TILE");
    /* FLASHPORT_TUNE=off: both caches skipped */
    setenv("FLASHPORT_TUNE", "off", 1);
    expect(&d, &c[0], "planner heuristic");
    unsetenv("FLASHPORT_TUNE");
    /* a bucket of another problem does not apply */
    fa_attn_desc other = d;
    other.causal = 1;
    fa_tile_config oc[16];
    assert_int_equal(fa_plan_candidates(0, &other, oc, 16, &n), FA_OK);
    expect(&other, &oc[0], "planner heuristic");
}

static void test_unusable_sources_fall_through(void **state)
{
    (void)state;
    fa_attn_desc d = problem(0);
    fa_tile_config c[16];
    int n = 0;
    assert_int_equal(fa_plan_candidates(0, &d, c, 16, &n), FA_OK);
    remove_files();
    write_file(install_dir, &d, &c[2], NULL, NULL);
    /* not a candidate (no family has block_q 7): skipped for the install cache */
    fa_tile_config bogus = {7, 64, 1, 1, 1};
    write_file(user_dir, &d, &bogus, NULL, NULL);
    expect(&d, &c[2], "install tuning cache");
    /* a stale validator (kernel sources changed): the whole user file is ignored */
    write_file(user_dir, &d, &c[1], NULL, "00000000deadbeef");
    expect(&d, &c[2], "install tuning cache");
    /* corrupt user file: ignored, no crash */
    char name[512], path[1024];
    fa_tune_ident id;
    assert_int_equal(fa_tune_device_ident(0, &id), FA_OK);
    fa_tune_file_name(&id, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", user_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("flashport-tune 1\nversion", f);
    fclose(f);
    expect(&d, &c[2], "install tuning cache");
    /* the same config from a valid user file is taken again */
    write_file(user_dir, &d, &c[1], NULL, NULL);
    expect(&d, &c[1], "tuning cache");
}

static void test_backward_configs(void **state)
{
    (void)state;
    fa_attn_desc d = problem(1);
    fa_tile_config fc[16], bc[16];
    int nf = 0, nb = 0;
    assert_int_equal(fa_plan_candidates(0, &d, fc, 16, &nf), FA_OK);
    assert_int_equal(fa_plan_bwd_candidates(0, &d, bc, 16, &nb), FA_OK);
    assert_true(nf >= 2 && nb >= 2);
    remove_files();
    fa_plan *plan = NULL;
    fa_tile_config got;
    /* the explicit API forces both passes */
    assert_int_equal(fa_plan_create_with_configs(&plan, 0, &d, &fc[1], &bc[1]), FA_OK);
    assert_int_equal(fa_plan_config(plan, &got), FA_OK);
    assert_true(same(&got, &fc[1]));
    assert_int_equal(fa_plan_bwd_config(plan, &got), FA_OK);
    assert_true(same(&got, &bc[1]));
    fa_plan_destroy(plan);
    /* errors: a bwd config that is not a candidate; a bwd config for a plan without backward */
    fa_tile_config bogus = {7, 64, 1, 1, 1};
    assert_int_equal(fa_plan_create_with_configs(&plan, 0, &d, NULL, &bogus), FA_ERR_INVALID_ARGUMENT);
    fa_attn_desc fwd_only = problem(0);
    assert_int_equal(fa_plan_create_with_configs(&plan, 0, &fwd_only, NULL, &bc[0]), FA_ERR_INVALID_ARGUMENT);
    assert_int_equal(fa_plan_create(&plan, 0, &fwd_only), FA_OK);
    assert_int_equal(fa_plan_bwd_config(plan, &got), FA_ERR_INVALID_ARGUMENT);
    fa_plan_destroy(plan);
    /* the cache's backward bucket gives both */
    write_file(user_dir, &d, &fc[1], &bc[1], NULL);
    assert_int_equal(fa_plan_create(&plan, 0, &d), FA_OK);
    assert_int_equal(fa_plan_config(plan, &got), FA_OK);
    assert_true(same(&got, &fc[1]));
    assert_int_equal(fa_plan_bwd_config(plan, &got), FA_OK);
    assert_true(same(&got, &bc[1]));
    char text[4096];
    fa_plan_describe(plan, text, sizeof text);
    assert_non_null(strstr(text, "backward kernel"));
    assert_non_null(strstr(strstr(text, "backward kernel"), "chosen by tuning cache"));
    fa_plan_destroy(plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_order),
        cmocka_unit_test(test_unusable_sources_fall_through),
        cmocka_unit_test(test_backward_configs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
