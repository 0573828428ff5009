/*
 * The tuning cache file (autotune/fa_tune_cache.h): round trip, validators, corrupt and truncated files, and
 * concurrent writers (processes and threads) while readers load the same path: a reader must only ever see a
 * whole file.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fa_tune_cache.h"
#include "flashport.h"

static char tmpdir[256];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/flashport_tune_cache_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static fa_tune_ident sample_ident(void)
{
    fa_tune_ident id;
    memset(&id, 0, sizeof id);
    snprintf(id.version, sizeof id.version, "0.1.0");
    snprintf(id.backend, sizeof id.backend, "cuda");
    snprintf(id.kernel_hash, sizeof id.kernel_hash, "0123456789abcdef");
    snprintf(id.runtime, sizeof id.runtime, "driver 12040 nvrtc 12.4");
    snprintf(id.device, sizeof id.device, "NVIDIA H100 80GB HBM3");
    snprintf(id.arch, sizeof id.arch, "sm_90");
    id.shared_mem = 232448;
    return id;
}

/* A file with n entries whose values derive from n (so concurrent writers' files differ). */
static void sample_file(fa_tune_file *f, int n)
{
    fa_tune_ident id = sample_ident();
    fa_tune_file_init(f, &id);
    for (int i = 0; i < n; i++) {
        fa_tune_entry e;
        memset(&e, 0, sizeof e);
        e.bucket.pass = (fa_tune_pass)(i % 3);
        e.bucket.dtype = FA_DTYPE_BF16;
        e.bucket.dqk = e.bucket.dv = 64 * (1 + i % 4);
        e.bucket.mask = (fa_tune_mask)(i % 3);
        e.bucket.seq_class = 1 << (4 + i % 13);
        e.bucket.gqa_class = 1 << (i / 52);
        e.fwd = (fa_tile_config){128, 64, 4, 2, 1 + n % 4};
        e.has_bwd = e.bucket.pass == FA_TUNE_BWD;
        if (e.has_bwd) e.bwd = (fa_tile_config){64, 128, 8, 1, 1};
        e.tuned_ms = 0.5 + i;
        e.heuristic_ms = 0.75 + i;
        assert_int_equal(fa_tune_file_put(f, &e), 0);
    }
}

static void path_of(char *buf, size_t size, const char *name) { snprintf(buf, size, "%s/%s", tmpdir, name); }

static void test_bucket_and_tile_text(void **state)
{
    (void)state;
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = FA_DTYPE_BF16, d.batch = 2, d.seqlen_q = 1000, d.seqlen_k = 1500, d.heads_q = 32, d.heads_kv = 8;
    d.head_dim_qk = d.head_dim_v = 128, d.causal = 1;
    fa_tune_bucket b, back;
    fa_tune_bucket_of(&d, &b);
    char text[128];
    fa_tune_bucket_format(&b, text, sizeof text);
    assert_string_equal(text, "fwd/bf16/d128x128/causal/s2048/g4");
    assert_int_equal(fa_tune_bucket_parse(text, &back), 0);
    assert_true(fa_tune_bucket_equal(&b, &back));
    d.seqlen_q = 1, d.window_left = 100; /* decode, windowed */
    fa_tune_bucket_of(&d, &b);
    fa_tune_bucket_format(&b, text, sizeof text);
    assert_string_equal(text, "decode/bf16/d128x128/window/s2048/g4");
    const char *bad[] = {"", "fwd/bf16/d128x128/causal/s2048", "fwd/bf16/d128x128/causal/s2000/g4",
                         "fwd/bf16/d128/causal/s2048/g4", "up/bf16/d128x128/causal/s2048/g4",
                         "fwd/bf16/d128x128/causal/s2048/g4/x", "fwd/bf16/d0x128/causal/s2048/g4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_int_equal(fa_tune_bucket_parse(bad[i], &back), -1);

    fa_tile_config c;
    assert_int_equal(fa_tile_parse("128x64", &c), 0);
    assert_int_equal(c.block_q, 128), assert_int_equal(c.block_kv, 64), assert_int_equal(c.num_splits, 1);
    assert_int_equal(fa_tile_parse("128x64x4w8s3", &c), 0);
    assert_int_equal(c.num_splits, 4), assert_int_equal(c.warps, 8), assert_int_equal(c.stages, 3);
    fa_tile_format(&c, text, sizeof text);
    assert_string_equal(text, "128x64x4w8s3");
    const char *bad_tiles[] = {"", "128", "128x", "x64", "128x64x", "128x64w", "128x0", "128x64s2w4", "128x64 ", "-1x64"};
    for (size_t i = 0; i < sizeof bad_tiles / sizeof bad_tiles[0]; i++)
        assert_int_equal(fa_tile_parse(bad_tiles[i], &c), -1);
}

static void test_round_trip(void **state)
{
    (void)state;
    fa_tune_file f, g;
    sample_file(&f, 40);
    char path[512], why[512] = "";
    path_of(path, sizeof path, "round_trip.tune");
    assert_int_equal(fa_tune_write(path, &f, why, sizeof why), 0);
    fa_tune_ident want = sample_ident();
    assert_int_equal(fa_tune_load(path, &want, &g, why, sizeof why), FA_TUNE_LOADED);
    assert_int_equal(g.count, f.count);
    for (int i = 0; i < f.count; i++) {
        const fa_tune_entry *e = fa_tune_file_find(&g, &f.entries[i].bucket);
        assert_non_null(e);
        assert_memory_equal(&e->fwd, &f.entries[i].fwd, sizeof e->fwd);
        assert_int_equal(e->has_bwd, f.entries[i].has_bwd);
        if (e->has_bwd) assert_memory_equal(&e->bwd, &f.entries[i].bwd, sizeof e->bwd);
        assert_true(e->tuned_ms == f.entries[i].tuned_ms && e->heuristic_ms == f.entries[i].heuristic_ms);
    }
    /* the same text again: format is a function of the contents */
    char *a = fa_tune_format(&f), *b = fa_tune_format(&g);
    assert_string_equal(a, b);
    free(a), free(b);
    assert_true(access(path, R_OK) == 0);
    fa_tune_file_free(&f), fa_tune_file_free(&g);
    /* a missing file is missing, not invalid */
    path_of(path, sizeof path, "absent.tune");
    assert_int_equal(fa_tune_load(path, &want, &g, why, sizeof why), FA_TUNE_MISSING);
}

static void test_validator_mismatch(void **state)
{
    (void)state;
    fa_tune_file f, g;
    sample_file(&f, 3);
    char path[512], why[512];
    path_of(path, sizeof path, "validators.tune");
    assert_int_equal(fa_tune_write(path, &f, why, sizeof why), 0);
    for (int k = 0; k < 7; k++) {
        fa_tune_ident want = sample_ident();
        switch (k) {
        case 0: snprintf(want.version, sizeof want.version, "0.2.0"); break;
        case 1: snprintf(want.backend, sizeof want.backend, "opencl"); break;
        case 2: want.kernel_hash[15] = 'e'; break;
        case 3: snprintf(want.runtime, sizeof want.runtime, "driver 12050 nvrtc 12.4"); break;
        case 4: snprintf(want.device, sizeof want.device, "NVIDIA H200"); break;
        case 5: snprintf(want.arch, sizeof want.arch, "sm_80"); break;
        default: want.shared_mem = 101376; break;
        }
        why[0] = 0;
        assert_int_equal(fa_tune_load(path, &want, &g, why, sizeof why), FA_TUNE_INVALID);
        assert_non_null(strstr(why, "stale validators"));
        assert_int_equal(g.count, 0);
    }
    fa_tune_file_free(&f);
}

/* Writes text as the file's bytes (n of them) and loads it against the sample validators. */
static fa_tune_load_result load_text(const char *text, size_t n, char *why, size_t why_size)
{
    char path[512];
    path_of(path, sizeof path, "corrupt.tune");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, n, fp), n);
    fclose(fp);
    fa_tune_ident want = sample_ident();
    fa_tune_file g;
    fa_tune_load_result r = fa_tune_load(path, &want, &g, why, why_size);
    fa_tune_file_free(&g);
    return r;
}

static void test_corrupt_and_truncated(void **state)
{
    (void)state;
    fa_tune_file f;
    sample_file(&f, 5);
    char *good = fa_tune_format(&f);
    size_t len = strlen(good);
    char why[512];
    assert_int_equal(load_text(good, len, why, sizeof why), FA_TUNE_LOADED);
    /* every truncation (a writer that died, a copy cut short) is rejected */
    for (size_t n = 0; n < len; n++) {
        why[0] = 0;
        assert_int_equal(load_text(good, n, why, sizeof why), FA_TUNE_INVALID);
    }
    /* one line edited at a time */
    const char *from[] = {"flashport-tune 1", "shared_mem 232448", "fwd=128x64x2w4s2", "bwd=64x128x1w8s1",
                          "tuned_ms=0.5", "end 5", "bucket fwd/bf16", "s16/", "\nversion"};
    const char *to[] = {"flashport-tune 9", "shared_mem 23x448", "fwd=128x0x2w4s2", "bwd=64x128x1w8s",
                        "tuned_ms=-0.5", "end 6", "bucket fwd/bf17", "s17/", "\nversión"};
    for (size_t k = 0; k < sizeof from / sizeof from[0]; k++) {
        char *at = strstr(good, from[k]);
        assert_non_null(at);
        char edited[8192];
        snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - good), good, to[k], at + strlen(from[k]));
        assert_int_equal(load_text(edited, strlen(edited), why, sizeof why), FA_TUNE_INVALID);
    }
    /* a duplicated bucket line, trailing garbage, a NUL inside, binary junk */
    char edited[8192];
    char *first = strstr(good, "bucket "), *eol = strchr(first, '\n');
    snprintf(edited, sizeof edited, "%.*s%.*s", (int)(eol + 1 - good), good, (int)(strlen(good) - (size_t)(first - good)),
             first);
    assert_int_equal(load_text(edited, strlen(edited), why, sizeof why), FA_TUNE_INVALID);
    snprintf(edited, sizeof edited, "%sjunk\n", good);
    assert_int_equal(load_text(edited, strlen(edited), why, sizeof why), FA_TUNE_INVALID);
    memcpy(edited, good, len + 1);
    edited[len / 2] = 0;
    assert_int_equal(load_text(edited, len, why, sizeof why), FA_TUNE_INVALID);
    unsigned char junk[4096];
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)((s = s * 6364136223846793005ull + 1) >> 56);
    assert_int_equal(load_text((const char *)junk, sizeof junk, why, sizeof why), FA_TUNE_INVALID);
    free(good);
    fa_tune_file_free(&f);
}

/* ---------------------------------------------------------------- concurrency */

static volatile int stop_flag;
static char shared_path[512];

/* Returns the number of failed writes (no cmocka assertions: it also runs in forked children). */
static int write_loop(int seed, double seconds)
{
    int failures = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0;; i++) {
        fa_tune_file f;
        sample_file(&f, 1 + (seed * 31 + i * 7) % 120); /* sizes differ: a torn file would show */
        char why[256];
        if (fa_tune_write(shared_path, &f, why, sizeof why) != 0) {
            fprintf(stderr, "write failed: %s\n", why);
            failures++;
        }
        fa_tune_file_free(&f);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) > seconds || stop_flag) break;
    }
    return failures;
}

static void *writer_thread(void *arg)
{
    return (void *)(intptr_t)write_loop((int)(intptr_t)arg, 1.0);
}

static void *reader_thread(void *arg)
{
    int *loads = arg;
    fa_tune_ident want = sample_ident();
    while (!stop_flag) {
        fa_tune_file g;
        char why[512] = "";
        fa_tune_load_result r = fa_tune_load(shared_path, &want, &g, why, sizeof why);
        if (r == FA_TUNE_INVALID) {
            fprintf(stderr, "reader saw an invalid file: %s\n", why);
            loads[1]++;
        } else if (r == FA_TUNE_LOADED) {
            loads[0]++;
            /* the whole of one writer's file: every entry's split count matches the entry count's */
            for (int i = 1; i < g.count; i++)
                if (g.entries[i].fwd.num_splits != g.entries[0].fwd.num_splits) loads[1]++;
            if (g.count > 0 && g.entries[0].fwd.num_splits != 1 + g.count % 4) loads[1]++;
        }
        fa_tune_file_free(&g);
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    path_of(shared_path, sizeof shared_path, "shared.tune");
    stop_flag = 0;
    assert_int_equal(write_loop(0, 0.0), 0); /* the file exists before the readers start */
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            _exit(write_loop(100 + k, 1.0) ? 1 : 0);
        }
    }
    pthread_t w[2], r[2];
    int loads[2][2] = {{0, 0}, {0, 0}};
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_create(&r[k], NULL, reader_thread, loads[k]), 0);
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_create(&w[k], NULL, writer_thread, (void *)(intptr_t)(k + 1)), 0);
    for (int k = 0; k < 2; k++) {
        void *failed = NULL;
        pthread_join(w[k], &failed);
        assert_true(failed == NULL);
    }
    for (int k = 0; k < 2; k++) {
        int status = 0;
        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    stop_flag = 1;
    for (int k = 0; k < 2; k++) pthread_join(r[k], NULL);
    assert_int_equal(loads[0][1] + loads[1][1], 0);
    assert_true(loads[0][0] + loads[1][0] > 0);
    /* no temporary left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q 'shared.tune.'", tmpdir);
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_and_tile_text),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_validator_mismatch),
        cmocka_unit_test(test_corrupt_and_truncated),
        cmocka_unit_test(test_concurrent_writers),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
