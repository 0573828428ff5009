/*
 * flashport-tune --quick on the CPU backend, as CI runs it: its JSON must list every bucket as tuned with a
 * conformance-checked config, the tuned time at most the heuristic's (on the tuner's own measurement; a small
 * allowance for the printed rounding), and a plan created afterwards must take the cached configs, saying so in
 * its description. The tool's path is argv[1]; it writes into a temporary FLASHPORT_TUNE_DIR.
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

#define NOISE_ALLOWANCE 0.001 /* tuned <= heuristic holds by construction; %.6g printing rounds */

static const char *tool;
static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/flashport_tune_tool_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    setenv("FLASHPORT_TUNE_DIR", dir, 1);
    setenv("FLASHPORT_TUNE_INSTALL_DIR", "off", 1);
    unsetenv("FLASHPORT_TILE");
    unsetenv("FLASHPORT_TUNE");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static double number_after(const char *line, const char *key)
{
    const char *at = strstr(line, key);
    assert_non_null(at);
    return strtod(at + strlen(key), NULL);
}

/* The "tuned" config of the pass object named key ("\"fwd\": {"). */
static void tuned_of(const char *line, const char *key, fa_tile_config *c)
{
    const char *at = strstr(line, key);
    assert_non_null(at);
    char tuned[64];
    assert_int_equal(sscanf(at + strlen(key), "\"heuristic\": \"%*[^\"]\", \"tuned\": \"%63[^\"]\"", tuned), 1);
    assert_int_equal(fa_tile_parse(tuned, c), 0);
    at = strstr(at, "\"tuned_passed\": ");
    assert_non_null(at);
    assert_true(!strncmp(at + strlen("\"tuned_passed\": "), "true", 4));
}

static void test_quick_cpu(void **state)
{
    (void)state;
    char cmd[1024], out[400];
    snprintf(out, sizeof out, "%s/out.json", dir);
    snprintf(cmd, sizeof cmd, "'%s' --quick --device 0 --budget 20 --max-candidates 6 --json > '%s'", tool, out);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[8192];
    int buckets = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "{\"bucket\": ", 11)) continue;
        buckets++;
        print_message("%s", line);
        assert_non_null(strstr(line, "\"status\": \"tuned\""));
        assert_non_null(strstr(line, "\"tuned_checked\": true"));
        assert_non_null(strstr(line, "\"plan_picks_tuned\": true"));
        double h = number_after(line, "\"bucket_heuristic_ms\": "), t = number_after(line, "\"bucket_tuned_ms\": ");
        assert_true(h > 0 && t > 0);
        assert_true(t <= h * (1.0 + NOISE_ALLOWANCE));

        /* the representative problem, planned again here: the cache must choose */
        fa_attn_desc d;
        fa_attn_desc_init(&d);
        const char *p = strstr(line, "\"problem\": {");
        assert_non_null(p);
        int dtype, causal, kvlen, bwd;
        long long b, sq, sk, hq, hk, hd;
        assert_int_equal(sscanf(p, "\"problem\": {\"dtype\": %d, \"batch\": %lld, \"seqlen_q\": %lld, \"seqlen_k\": %lld, "
                                   "\"heads_q\": %lld, \"heads_kv\": %lld, \"head_dim\": %lld, \"causal\": %d, "
                                   "\"kv_cache_lengths\": %d, \"with_backward\": %d",
                                &dtype, &b, &sq, &sk, &hq, &hk, &hd, &causal, &kvlen, &bwd),
                         10);
        d.dtype = (fa_dtype)dtype, d.batch = b, d.seqlen_q = sq, d.seqlen_k = sk, d.heads_q = hq, d.heads_kv = hk;
        d.head_dim_qk = d.head_dim_v = hd, d.causal = causal, d.kv_cache_lengths = kvlen;
        d.with_backward = d.return_lse = bwd;
        fa_tile_config want_f, want_b, got;
        tuned_of(line, "\"fwd\": {", &want_f);
        if (bwd) tuned_of(line, "\"bwd\": {", &want_b);
        fa_plan *plan = NULL;
        assert_int_equal(fa_plan_create(&plan, 0, &d), FA_OK);
        assert_int_equal(fa_plan_config(plan, &got), FA_OK);
        assert_memory_equal(&got, &want_f, sizeof got);
        if (bwd) {
            assert_int_equal(fa_plan_bwd_config(plan, &got), FA_OK);
            assert_memory_equal(&got, &want_b, sizeof got);
        }
        char text[4096];
        fa_plan_describe(plan, text, sizeof text);
        assert_non_null(strstr(text, "chosen by tuning cache"));
        fa_plan_destroy(plan);
    }
    fclose(f);
    assert_true(buckets >= 4); /* fwd, causal fwd, decode, bwd */

    /* the file is there and valid for this device */
    fa_tune_ident id;
    assert_int_equal(fa_tune_device_ident(0, &id), FA_OK);
    char name[512], path[1024], why[512];
    fa_tune_file_name(&id, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fa_tune_file tf;
    assert_int_equal(fa_tune_load(path, &id, &tf, why, sizeof why), FA_TUNE_LOADED);
    assert_int_equal(tf.count, buckets);
    fa_tune_file_free(&tf);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_tune_tool /path/to/flashport-tune\n");
        return 2;
    }
    tool = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_quick_cpu)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
