/*
 * API basics: status/dtype/backend strings, tensor helpers, descriptor defaults, device properties,
 * the shared dropout mask, plan description and candidates, and fa_combine on the CPU against a
 * float64 reference.
 *
 * Random inputs are seeded from the clock; the seed is printed at start. Set FA_TEST_SEED=<n> to
 * reproduce a run.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flashport.h"
#include "test_random.h"

/* ---------------------------------------------------------------- helpers */


#define FAILF(...)                                                                                   \
    do {                                                                                             \
        print_error("seed=%llu (FA_TEST_SEED to reproduce)\n", (unsigned long long)g_seed);          \
        fail_msg(__VA_ARGS__);                                                                       \
    } while (0)

/* case-insensitive substring search */
static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return 1;
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

static fa_attn_desc small_desc(void)
{
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = FA_DTYPE_F32;
    d.batch = 2;
    d.seqlen_q = 37;
    d.seqlen_k = 53;
    d.heads_q = 4;
    d.heads_kv = 2;
    d.head_dim_qk = 40;
    d.head_dim_v = 24;
    d.return_lse = 1;
    return d;
}

static fa_plan *make_plan(const fa_attn_desc *d)
{
    fa_plan *plan = NULL;
    fa_status st = fa_plan_create(&plan, 0, d);
    if (st != FA_OK)
        FAILF("fa_plan_create on the CPU failed: status %d, last_error=\"%s\"", (int)st, fa_last_error());
    assert_non_null(plan);
    return plan;
}

/* ---------------------------------------------------------------- strings */

static const fa_status k_all_status[] = {FA_OK,          FA_ERR_INVALID_ARGUMENT, FA_ERR_UNSUPPORTED,
                                         FA_ERR_OUT_OF_MEMORY, FA_ERR_NO_DEVICE,  FA_ERR_BACKEND,
                                         FA_ERR_INTERNAL};
#define N_STATUS ((int)(sizeof k_all_status / sizeof k_all_status[0]))

static void test_status_strings(void **state)
{
    (void)state;
    char copies[N_STATUS][256];
    for (int i = 0; i < N_STATUS; i++) {
        const char *s = fa_status_string(k_all_status[i]);
        if (!s || !s[0])
            FAILF("fa_status_string(%d) is NULL or empty", (int)k_all_status[i]);
        snprintf(copies[i], sizeof copies[i], "%s", s);
    }
    for (int i = 0; i < N_STATUS; i++)
        for (int j = i + 1; j < N_STATUS; j++)
            if (strcmp(copies[i], copies[j]) == 0)
                FAILF("fa_status_string(%d) and (%d) are both \"%s\"", i, j, copies[i]);

    const int bad[] = {7, 8, -1, 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = fa_status_string((fa_status)bad[i]);
        if (!s || !s[0])
            FAILF("fa_status_string(%d) (out of range) is NULL or empty", bad[i]);
        if (strcmp(s, copies[0]) == 0)
            FAILF("fa_status_string(%d) (out of range) reads like success: \"%s\"", bad[i], s);
    }
}

static void test_version_string(void **state)
{
    (void)state;
    const char *v = fa_version_string();
    assert_non_null(v);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", FLASHPORT_VERSION_MAJOR, FLASHPORT_VERSION_MINOR,
             FLASHPORT_VERSION_PATCH);
    if (!strstr(v, want))
        FAILF("fa_version_string() = \"%s\" does not contain \"%s\"", v, want);
}

static void test_last_error_is_string(void **state)
{
    (void)state;
    const char *e = fa_last_error();
    assert_non_null(e);
    /* a failing call sets a non-empty message */
    fa_status st = fa_plan_create(NULL, 0, NULL);
    assert_int_equal(st, FA_ERR_INVALID_ARGUMENT);
    e = fa_last_error();
    assert_non_null(e);
    assert_true(e[0] != '\0');
}

static void test_dtype_names_and_sizes(void **state)
{
    (void)state;
    const struct {
        fa_dtype t;
        int size;
    } all[] = {{FA_DTYPE_F32, 4}, {FA_DTYPE_F16, 2}, {FA_DTYPE_BF16, 2}, {FA_DTYPE_F8_E4M3, 1}, {FA_DTYPE_F8_E5M2, 1}};
    const int n = (int)(sizeof all / sizeof all[0]);
    assert_int_equal(n, FA_DTYPE_COUNT);
    char names[FA_DTYPE_COUNT][128];
    for (int i = 0; i < n; i++) {
        int sz = fa_dtype_size(all[i].t);
        if (sz != all[i].size)
            FAILF("fa_dtype_size(%d) = %d, want %d", (int)all[i].t, sz, all[i].size);
        const char *s = fa_dtype_name(all[i].t);
        if (!s || !s[0])
            FAILF("fa_dtype_name(%d) is NULL or empty", (int)all[i].t);
        snprintf(names[i], sizeof names[i], "%s", s);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) == 0)
                FAILF("fa_dtype_name(%d) and (%d) are both \"%s\"", i, j, names[i]);
    if (!contains_ci(names[FA_DTYPE_BF16], "bf16"))
        FAILF("fa_dtype_name(BF16) = \"%s\" does not mention bf16", names[FA_DTYPE_BF16]);

    const int bad[] = {FA_DTYPE_COUNT, -1, 99, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (fa_dtype_size((fa_dtype)bad[i]) != 0)
            FAILF("fa_dtype_size(%d) (out of range) = %d, want 0", bad[i], fa_dtype_size((fa_dtype)bad[i]));
        if (!fa_dtype_name((fa_dtype)bad[i]))
            FAILF("fa_dtype_name(%d) (out of range) returned NULL", bad[i]);
    }
}

static void test_backend_names(void **state)
{
    (void)state;
    const char *want[FA_BACKEND_COUNT] = {"cpu", "cuda", "hip", "opencl"};
    char names[FA_BACKEND_COUNT][128];
    for (int i = 0; i < FA_BACKEND_COUNT; i++) {
        const char *s = fa_backend_name((fa_backend_kind)i);
        if (!s || !s[0])
            FAILF("fa_backend_name(%d) is NULL or empty", i);
        if (!contains_ci(s, want[i]))
            FAILF("fa_backend_name(%d) = \"%s\", expected it to mention %s", i, s, want[i]);
        snprintf(names[i], sizeof names[i], "%s", s);
    }
    for (int i = 0; i < FA_BACKEND_COUNT; i++)
        for (int j = i + 1; j < FA_BACKEND_COUNT; j++)
            if (strcmp(names[i], names[j]) == 0)
                FAILF("fa_backend_name(%d) and (%d) are both \"%s\"", i, j, names[i]);
    const int bad[] = {FA_BACKEND_COUNT, -1, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!fa_backend_name((fa_backend_kind)bad[i]))
            FAILF("fa_backend_name(%d) (out of range) returned NULL", bad[i]);
}

/* ---------------------------------------------------------------- tensors and descriptors */

static void check_row_major(const fa_tensor *t, void *data, fa_dtype dtype, int rank, const int64_t *shape)
{
    if (t->data != data)
        FAILF("tensor helper: data %p, want %p", t->data, data);
    if (t->dtype != dtype)
        FAILF("tensor helper: dtype %d, want %d", (int)t->dtype, (int)dtype);
    if (t->rank != rank)
        FAILF("tensor helper: rank %d, want %d", t->rank, rank);
    int64_t st = 1;
    for (int i = rank - 1; i >= 0; i--) {
        if (t->shape[i] != shape[i])
            FAILF("tensor helper rank %d: shape[%d]=%lld, want %lld", rank, i, (long long)t->shape[i],
                  (long long)shape[i]);
        if (t->stride[i] != st)
            FAILF("tensor helper rank %d: stride[%d]=%lld, want %lld (row-major)", rank, i,
                  (long long)t->stride[i], (long long)st);
        st *= shape[i];
    }
}

static void test_tensor_helpers(void **state)
{
    (void)state;
    float dummy[4];
    {
        const int64_t s[4] = {2, 3, 5, 7};
        fa_tensor t = fa_tensor_4d(dummy, FA_DTYPE_BF16, 2, 3, 5, 7);
        check_row_major(&t, dummy, FA_DTYPE_BF16, 4, s);
    }
    {
        const int64_t s[3] = {4, 6, 8};
        fa_tensor t = fa_tensor_3d(dummy, FA_DTYPE_F32, 4, 6, 8);
        check_row_major(&t, dummy, FA_DTYPE_F32, 3, s);
    }
    {
        const int64_t s[4] = {1, 1, 1, 128};
        fa_tensor t = fa_tensor_4d(dummy, FA_DTYPE_F16, 1, 1, 1, 128);
        check_row_major(&t, dummy, FA_DTYPE_F16, 4, s);
    }
    {
        /* large dimensions: strides need 64 bits */
        const int64_t s[4] = {(int64_t)1 << 20, (int64_t)1 << 12, 64, 128};
        fa_tensor t = fa_tensor_4d(dummy, FA_DTYPE_F32, s[0], s[1], s[2], s[3]);
        check_row_major(&t, dummy, FA_DTYPE_F32, 4, s);
    }
    const int64_t shape[FA_MAX_RANK] = {3, 4, 5, 6, 7};
    for (int r = 1; r <= FA_MAX_RANK; r++) {
        fa_tensor t = fa_tensor_contiguous(dummy, FA_DTYPE_F32, r, shape);
        check_row_major(&t, dummy, FA_DTYPE_F32, r, shape);
    }
    /* bad arguments must not crash (the resulting tensors are rejected later) */
    const int64_t shape6[FA_MAX_RANK + 1] = {2, 2, 2, 2, 2, 2};
    (void)fa_tensor_contiguous(dummy, FA_DTYPE_F32, 0, shape6);
    (void)fa_tensor_contiguous(dummy, FA_DTYPE_F32, -1, shape6);
    (void)fa_tensor_contiguous(dummy, FA_DTYPE_F32, FA_MAX_RANK + 1, shape6);
    (void)fa_tensor_contiguous(dummy, FA_DTYPE_F32, 4, NULL);
}

static void test_desc_init_defaults(void **state)
{
    (void)state;
    fa_attn_desc d;
    memset(&d, 0x5A, sizeof d);
    fa_attn_desc_init(&d);
    assert_int_equal(d.window_left, -1);
    assert_int_equal(d.window_right, -1);
    assert_true(d.softmax_scale == 0.0f);
    assert_true(d.softcap == 0.0f);
    assert_true(d.dropout_p == 0.0f);
    assert_int_equal(d.causal, 0);
    assert_int_equal(d.alibi, FA_ALIBI_NONE);
    assert_int_equal(d.varlen, 0);
    assert_int_equal(d.paged_kv, 0);
    assert_int_equal(d.kv_cache_lengths, 0);
    assert_int_equal(d.return_lse, 0);
    assert_int_equal(d.num_splits, 0);
    assert_int_equal(d.with_backward, 0);
    assert_int_equal(d.deterministic, 0);
    assert_true((int)d.dtype >= 0 && (int)d.dtype < FA_DTYPE_COUNT);
    /* every size field is initialised (not left at the 0x5A fill) */
    const int64_t pattern = (int64_t)0x5A5A5A5A5A5A5A5Aull;
    const int64_t sizes[] = {d.batch,     d.seqlen_q, d.seqlen_k,  d.heads_q,   d.heads_kv,
                             d.head_dim_qk, d.head_dim_v, d.total_q, d.total_k, d.page_size,
                             d.num_pages,  d.max_pages_per_seq};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i] == pattern)
            FAILF("fa_attn_desc_init left size field #%zu uninitialised", i);
    fa_attn_desc_init(NULL); /* must not crash */
}

/* ---------------------------------------------------------------- devices */

static void check_props(int dev, const fa_device_props *p)
{
    if ((int)p->backend < 0 || (int)p->backend >= FA_BACKEND_COUNT)
        FAILF("device %d: backend %d out of range", dev, (int)p->backend);
    if (p->index_in_backend < 0)
        FAILF("device %d: index_in_backend %d", dev, p->index_in_backend);
    if (!memchr(p->name, '\0', sizeof p->name) || !p->name[0])
        FAILF("device %d: name empty or not NUL-terminated", dev);
    if (!memchr(p->arch, '\0', sizeof p->arch) || !p->arch[0])
        FAILF("device %d (%s): arch empty or not NUL-terminated", dev, p->name);
    if (p->compute_units < 1)
        FAILF("device %d (%s): compute_units=%d", dev, p->name, p->compute_units);
    if (p->simd_width < 1)
        FAILF("device %d (%s): simd_width=%d", dev, p->name, p->simd_width);
    if (p->max_threads_per_block < 1)
        FAILF("device %d (%s): max_threads_per_block=%d", dev, p->name, p->max_threads_per_block);
    if (p->registers_per_block < 0)
        FAILF("device %d (%s): registers_per_block=%d", dev, p->name, p->registers_per_block);
    if (p->memory_bytes <= 0)
        FAILF("device %d (%s): memory_bytes=%lld", dev, p->name, (long long)p->memory_bytes);
    if (p->shared_mem_per_block <= 0)
        FAILF("device %d (%s): shared_mem_per_block=%lld", dev, p->name, (long long)p->shared_mem_per_block);
    if (p->shared_mem_per_block_optin < p->shared_mem_per_block)
        FAILF("device %d (%s): shared_mem_per_block_optin=%lld < shared_mem_per_block=%lld", dev, p->name,
              (long long)p->shared_mem_per_block_optin, (long long)p->shared_mem_per_block);
    if (p->l1_cache_bytes < 0 || p->l2_cache_bytes < 0 || p->l3_cache_bytes < 0)
        FAILF("device %d (%s): negative cache size", dev, p->name);
}

static void test_device_count_and_props(void **state)
{
    (void)state;
    int n = fa_device_count();
    if (n < 1 || n > 4096)
        FAILF("fa_device_count() = %d", n);
    assert_int_equal(fa_device_count(), n); /* stable */

    fa_device_props p;
    memset(&p, 0x5A, sizeof p);
    fa_status st = fa_device_get(0, &p);
    if (st != FA_OK)
        FAILF("fa_device_get(0) = %d, last_error=\"%s\"", (int)st, fa_last_error());
    if (p.backend != FA_BACKEND_CPU)
        FAILF("device 0 backend is %d, want FA_BACKEND_CPU", (int)p.backend);
    check_props(0, &p);
    print_message("device 0: %s [%s] units=%d simd=%d smem=%lld/%lld mem=%lld\n", p.name, p.arch,
                  p.compute_units, p.simd_width, (long long)p.shared_mem_per_block,
                  (long long)p.shared_mem_per_block_optin, (long long)p.memory_bytes);
    for (int i = 1; i < n; i++) {
        memset(&p, 0x5A, sizeof p);
        st = fa_device_get(i, &p);
        if (st != FA_OK)
            FAILF("fa_device_get(%d) = %d, last_error=\"%s\"", i, (int)st, fa_last_error());
        check_props(i, &p);
    }
}

static void test_device_best(void **state)
{
    (void)state;
    int n = fa_device_count();
    int best = fa_device_best();
    if (best < 0 || best >= n)
        FAILF("fa_device_best() = %d with %d devices", best, n);
    int first_gpu = -1;
    for (int i = 0; i < n && first_gpu < 0; i++) {
        fa_device_props p;
        assert_int_equal(fa_device_get(i, &p), FA_OK);
        if (p.backend != FA_BACKEND_CPU && !strstr(p.arch, "-cpu")) /* PoCL's OpenCL CPU device is not GPU-class */
            first_gpu = i;
    }
    if (first_gpu >= 0) {
        if (best != first_gpu)
            FAILF("fa_device_best() = %d, but the first GPU-class device is %d", best, first_gpu);
    } else {
        fa_device_props p;
        assert_int_equal(fa_device_get(best, &p), FA_OK);
        assert_int_equal(p.backend, FA_BACKEND_CPU);
    }
}

/* ---------------------------------------------------------------- dropout mask */

static void test_dropout_deterministic(void **state)
{
    (void)state;
    const uint64_t seed = rng_u64(), off = rng_u64();
    enum { N = 20000 };
    static unsigned char first[N];
    for (int pass = 0; pass < 2; pass++) {
        uint64_t r = g_seed ^ 0x1234;
        for (int i = 0; i < N; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int64_t b = (int64_t)((r >> 10) % 8), h = (int64_t)((r >> 20) % 64), row = (int64_t)((r >> 30) % 100000),
                    col = (int64_t)((r >> 47) % 100000);
            int k = fa_dropout_keep(seed, off, b, h, row, col, 0.37f);
            if (k != 0 && k != 1)
                FAILF("fa_dropout_keep returned %d (want 0 or 1)", k);
            if (pass == 0)
                first[i] = (unsigned char)k;
            else if (first[i] != k)
                FAILF("fa_dropout_keep not deterministic at draw %d (b=%lld h=%lld row=%lld col=%lld)", i,
                      (long long)b, (long long)h, (long long)row, (long long)col);
        }
    }
}

static void test_dropout_zero_p_keeps_all(void **state)
{
    (void)state;
    const uint64_t seed = rng_u64(), off = rng_u64();
    for (int64_t b = 0; b < 2; b++)
        for (int64_t h = 0; h < 4; h++)
            for (int64_t r = 0; r < 128; r++)
                for (int64_t c = 0; c < 128; c++)
                    if (fa_dropout_keep(seed, off, b, h, r, c, 0.0f) != 1)
                        FAILF("p=0 dropped b=%lld h=%lld row=%lld col=%lld", (long long)b, (long long)h,
                              (long long)r, (long long)c);
}

/* 1e6 draws over (2, 4, 250, 500) */
static void test_dropout_keep_rate(void **state)
{
    (void)state;
    const float ps[] = {0.1f, 0.5f, 0.9f};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
        const uint64_t seed = rng_u64(), off = rng_u64();
        const double p = ps[pi];
        long n = 0, kept = 0;
        long kept_even_col = 0, n_even_col = 0;
        for (int64_t b = 0; b < 2; b++)
            for (int64_t h = 0; h < 4; h++)
                for (int64_t r = 0; r < 250; r++)
                    for (int64_t c = 0; c < 500; c++) {
                        int k = fa_dropout_keep(seed, off, b, h, r, c, (float)p);
                        kept += k;
                        n++;
                        if ((c & 1) == 0) {
                            kept_even_col += k;
                            n_even_col++;
                        }
                    }
        const double rate = (double)kept / (double)n;
        const double sigma = sqrt(p * (1 - p) / (double)n);
        if (fabs(rate - (1 - p)) > 6 * sigma + 1e-4)
            FAILF("p=%.2f: keep rate %.5f over %ld draws, want %.5f +- %.5f", p, rate, n, 1 - p, 6 * sigma);
        /* also on a sub-lattice (catches masks that alternate with the column) */
        const double rate2 = (double)kept_even_col / (double)n_even_col;
        const double sigma2 = sqrt(p * (1 - p) / (double)n_even_col);
        if (fabs(rate2 - (1 - p)) > 6 * sigma2 + 1e-4)
            FAILF("p=%.2f: keep rate on even columns %.5f, want %.5f +- %.5f", p, rate2, 1 - p, 6 * sigma2);
    }
}

enum { SHIFT_SEED, SHIFT_SEED_RANDOM, SHIFT_OFFSET, SHIFT_BATCH, SHIFT_HEAD, SHIFT_ROW, SHIFT_COL, SHIFT_SWAP_RC,
       SHIFT_COUNT };
static const char *const k_shift_names[SHIFT_COUNT] = {"seed+1", "another seed", "offset+1", "batch+1",
                                                       "head+1", "row+1",        "col+1",    "row<->col"};

static void test_dropout_decorrelated(void **state)
{
    (void)state;
    const float ps[] = {0.1f, 0.5f};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
        const double p = ps[pi];
        const double want = p * p + (1 - p) * (1 - p);
        for (int s = 0; s < SHIFT_COUNT; s++) {
            const uint64_t seed = rng_u64(), off = rng_u64();
            uint64_t seed2 = seed + 1;
            if (s == SHIFT_SEED_RANDOM)
                seed2 = rng_u64() | 1;
            long n = 0, agree = 0;
            for (int64_t b = 0; b < 2; b++)
                for (int64_t h = 0; h < 2; h++)
                    for (int64_t r = 0; r < 250; r++)
                        for (int64_t c = 0; c < 250; c++) {
                            int k1 = fa_dropout_keep(seed, off, b, h, r, c, (float)p);
                            int k2;
                            switch (s) {
                            case SHIFT_SEED:
                            case SHIFT_SEED_RANDOM: k2 = fa_dropout_keep(seed2, off, b, h, r, c, (float)p); break;
                            case SHIFT_OFFSET: k2 = fa_dropout_keep(seed, off + 1, b, h, r, c, (float)p); break;
                            case SHIFT_BATCH: k2 = fa_dropout_keep(seed, off, b + 1, h, r, c, (float)p); break;
                            case SHIFT_HEAD: k2 = fa_dropout_keep(seed, off, b, h + 1, r, c, (float)p); break;
                            case SHIFT_ROW: k2 = fa_dropout_keep(seed, off, b, h, r + 1, c, (float)p); break;
                            case SHIFT_COL: k2 = fa_dropout_keep(seed, off, b, h, r, c + 1, (float)p); break;
                            default:
                                if (r == c)
                                    continue;
                                k2 = fa_dropout_keep(seed, off, b, h, c, r, (float)p);
                                break;
                            }
                            agree += (k1 == k2);
                            n++;
                        }
            const double rate = (double)agree / (double)n;
            const double sigma = sqrt(want * (1 - want) / (double)n);
            if (fabs(rate - want) > 6 * sigma + 1e-3)
                FAILF("p=%.2f, %s: masks agree at rate %.5f over %ld draws, want %.5f +- %.5f (correlated mask)", p,
                      k_shift_names[s], rate, n, want, 6 * sigma + 1e-3);
        }
    }
}

/* ---------------------------------------------------------------- plans */

static void test_plan_describe(void **state)
{
    (void)state;
    fa_attn_desc d = small_desc();
    fa_plan *plan = make_plan(&d);
    char buf[8192];
    size_t len = fa_plan_describe(plan, buf, sizeof buf);
    fa_tile_config cfg;
    fa_status st = fa_plan_config(plan, &cfg);
    fa_device_props props;
    fa_status st2 = fa_device_get(0, &props);
    size_t len_null = fa_plan_describe(plan, NULL, 0);
    fa_plan_destroy(plan);

    assert_int_equal(st, FA_OK);
    assert_int_equal(st2, FA_OK);
    if (len == 0 || len >= sizeof buf)
        FAILF("fa_plan_describe returned %zu", len);
    if (strlen(buf) != len)
        FAILF("fa_plan_describe returned %zu but wrote a string of length %zu", len, strlen(buf));
    if (len_null != len)
        FAILF("fa_plan_describe(plan, NULL, 0) = %zu, want %zu", len_null, len);
    print_message("plan: %s\n", buf);
    if (!contains_ci(buf, props.name) && !contains_ci(buf, "cpu"))
        FAILF("plan description does not mention the device (\"%s\" or cpu): \"%s\"", props.name, buf);
    char num[32];
    snprintf(num, sizeof num, "%d", cfg.block_q);
    if (!strstr(buf, num))
        FAILF("plan description does not mention block_q=%d: \"%s\"", cfg.block_q, buf);
    snprintf(num, sizeof num, "%d", cfg.block_kv);
    if (!strstr(buf, num))
        FAILF("plan description does not mention block_kv=%d: \"%s\"", cfg.block_kv, buf);
}

static void test_plan_describe_truncation(void **state)
{
    (void)state;
    fa_attn_desc d = small_desc();
    fa_plan *plan = make_plan(&d);
    char full[8192];
    size_t len = fa_plan_describe(plan, full, sizeof full);
    if (len == 0 || len >= sizeof full) {
        fa_plan_destroy(plan);
        FAILF("fa_plan_describe returned %zu", len);
    }
    const size_t sizes[] = {0, 1, 2, 10, len, len + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t n = sizes[i];
        enum { PAD = 64 };
        char *buf = malloc(n + PAD);
        assert_non_null(buf);
        memset(buf, '#', n + PAD);
        size_t r = fa_plan_describe(plan, buf, n);
        char err[256] = "";
        if (r != len)
            snprintf(err, sizeof err, "size %zu: returned %zu, want the full length %zu", n, r, len);
        if (!err[0] && n > 0) {
            size_t k = len < n - 1 ? len : n - 1;
            if (memcmp(buf, full, k) != 0)
                snprintf(err, sizeof err, "size %zu: prefix differs from the full text", n);
            else if (buf[k] != '\0')
                snprintf(err, sizeof err, "size %zu: no NUL at %zu", n, k);
        }
        for (size_t j = n; !err[0] && j < n + PAD; j++)
            if (buf[j] != '#')
                snprintf(err, sizeof err, "size %zu: wrote byte %zu beyond the buffer", n, j);
        free(buf);
        if (err[0]) {
            fa_plan_destroy(plan);
            FAILF("fa_plan_describe truncation: %s", err);
        }
    }
    fa_plan_destroy(plan);
}

static int config_equal(const fa_tile_config *a, const fa_tile_config *b)
{
    return a->block_q == b->block_q && a->block_kv == b->block_kv && a->warps == b->warps &&
           a->stages == b->stages && a->num_splits == b->num_splits;
}

static void test_plan_candidates(void **state)
{
    (void)state;
    fa_attn_desc d = small_desc();
    int count = -7;
    fa_status st = fa_plan_candidates(0, &d, NULL, 0, &count);
    if (st != FA_OK)
        FAILF("fa_plan_candidates(max=0) = %d, last_error=\"%s\"", (int)st, fa_last_error());
    if (count < 1 || count > 100000)
        FAILF("fa_plan_candidates: count=%d", count);
    const int cap = count + 4;
    fa_tile_config *cfg = malloc(sizeof *cfg * (size_t)cap);
    assert_non_null(cfg);
    memset(cfg, 0x6B, sizeof *cfg * (size_t)cap);
    fa_tile_config sentinel;
    memset(&sentinel, 0x6B, sizeof sentinel);

    int count2 = -7;
    st = fa_plan_candidates(0, &d, cfg, cap, &count2);
    assert_int_equal(st, FA_OK);
    assert_int_equal(count2, count);
    for (int i = count; i < cap; i++)
        if (memcmp(&cfg[i], &sentinel, sizeof sentinel) != 0)
            FAILF("fa_plan_candidates wrote config %d beyond count=%d", i, count);
    for (int i = 0; i < count; i++) {
        const fa_tile_config *c = &cfg[i];
        if (c->block_q < 1 || c->block_kv < 1 || c->warps < 1 || c->stages < 1 || c->num_splits < 1)
            FAILF("candidate %d is not sane: block_q=%d block_kv=%d warps=%d stages=%d splits=%d", i, c->block_q,
                  c->block_kv, c->warps, c->stages, c->num_splits);
        if (c->warps != 1)
            FAILF("candidate %d on the CPU has warps=%d (header: CPU: 1)", i, c->warps);
        for (int j = 0; j < i; j++)
            if (config_equal(&cfg[j], c))
                FAILF("candidates %d and %d are the same configuration", j, i);
    }

    /* max=1 writes exactly one */
    fa_tile_config two[2];
    memset(two, 0x6B, sizeof two);
    count2 = -7;
    st = fa_plan_candidates(0, &d, two, 1, &count2);
    assert_int_equal(st, FA_OK);
    assert_int_equal(count2, count);
    if (!config_equal(&two[0], &cfg[0]))
        FAILF("fa_plan_candidates(max=1) gave a different first config");
    if (memcmp(&two[1], &sentinel, sizeof sentinel) != 0)
        FAILF("fa_plan_candidates(max=1) wrote a second config");

    /* the planner's choice is a candidate */
    fa_plan *plan = make_plan(&d);
    fa_tile_config chosen;
    st = fa_plan_config(plan, &chosen);
    fa_plan_destroy(plan);
    assert_int_equal(st, FA_OK);
    int found = 0;
    for (int i = 0; i < count; i++)
        found |= config_equal(&chosen, &cfg[i]);
    if (!found)
        FAILF("the plan's config (block_q=%d block_kv=%d warps=%d stages=%d splits=%d) is not among the %d "
              "candidates",
              chosen.block_q, chosen.block_kv, chosen.warps, chosen.stages, chosen.num_splits, count);

    /* every candidate can be planned explicitly and is reported back */
    for (int i = 0; i < count && i < 64; i++) {
        fa_plan *p = NULL;
        st = fa_plan_create_with_config(&p, 0, &d, &cfg[i]);
        if (st != FA_OK)
            FAILF("fa_plan_create_with_config(candidate %d: block_q=%d block_kv=%d) = %d, last_error=\"%s\"", i,
                  cfg[i].block_q, cfg[i].block_kv, (int)st, fa_last_error());
        fa_tile_config got;
        st = fa_plan_config(p, &got);
        fa_plan_destroy(p);
        assert_int_equal(st, FA_OK);
        if (!config_equal(&got, &cfg[i]))
            FAILF("plan created with candidate %d reports a different config", i);
    }
    free(cfg);

    /* desc.num_splits = 1 means no split: every candidate has num_splits 1 */
    d.num_splits = 1;
    fa_tile_config many[256];
    st = fa_plan_candidates(0, &d, many, 256, &count2);
    assert_int_equal(st, FA_OK);
    assert_true(count2 >= 1);
    for (int i = 0; i < count2 && i < 256; i++)
        if (many[i].num_splits != 1)
            FAILF("desc.num_splits=1 but candidate %d has num_splits=%d", i, many[i].num_splits);
}

/* ---------------------------------------------------------------- fa_combine */

enum { COMB_PLAIN = 0, COMB_NEG_INF = 1 };

static void run_combine(int S, int B, int SQ, int H, int DV, int with_lse, int strided, int special)
{
    /* padded strides when strided: last dim stays contiguous */
    const int64_t dvp = DV + (strided ? 3 : 0), sqp = SQ + (strided ? 2 : 0);
    const int64_t dvo = DV + (strided ? 5 : 0), sqo = SQ + (strided ? 3 : 0);
    const size_t n_op = (size_t)S * B * SQ * H * dvp, n_lp = (size_t)S * B * H * sqp;
    const size_t n_o = (size_t)B * SQ * H * dvo, n_l = (size_t)B * H * sqo;
    float *op = malloc(n_op * sizeof(float)), *lp = malloc(n_lp * sizeof(float));
    float *o = malloc(n_o * sizeof(float)), *l = malloc(n_l * sizeof(float));
    float *op_copy = malloc(n_op * sizeof(float)), *lp_copy = malloc(n_lp * sizeof(float));
    assert_true(op && lp && o && l && op_copy && lp_copy);

    const int64_t op_st[5] = {B * SQ * H * dvp, SQ * H * dvp, H * dvp, dvp, 1};
    const int64_t lp_st[4] = {B * H * sqp, H * sqp, sqp, 1};
    const int64_t o_st[4] = {SQ * H * dvo, H * dvo, dvo, 1};
    const int64_t l_st[3] = {H * sqo, sqo, 1};
#define OP(s, b, q, h, d) op[(s)*op_st[0] + (b)*op_st[1] + (q)*op_st[2] + (h)*op_st[3] + (d)]
#define LP(s, b, h, q) lp[(s)*lp_st[0] + (b)*lp_st[1] + (h)*lp_st[2] + (q)]

    for (size_t i = 0; i < n_op; i++)
        op[i] = (float)rng_range(-1, 1);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int q = 0; q < SQ; q++) {
                /* large magnitudes: a merge without max-subtraction overflows fp32 */
                const double base = rng_range(-100, 100);
                for (int s = 0; s < S; s++) {
                    float v = (float)(base + rng_range(-5, 5));
                    if (special == COMB_NEG_INF) {
                        if (S > 1 && s == 1)
                            v = -INFINITY; /* a whole split with -inf LSE */
                        if ((b == 0 && h == 0 && q == 1 % SQ) || (b == B - 1 && h == H - 1 && q == SQ - 1))
                            v = -INFINITY; /* rows where every split is -inf */
                        if (rng_unit() < 0.1)
                            v = -INFINITY;
                    }
                    LP(s, b, h, q) = v;
                }
            }
    memcpy(op_copy, op, n_op * sizeof(float));
    memcpy(lp_copy, lp, n_lp * sizeof(float));
    /* sentinel fill of the outputs (a NaN bit pattern) so gaps and misses are visible */
    const uint32_t sent_bits = 0x7FC0BEEFu;
    float sent;
    memcpy(&sent, &sent_bits, sizeof sent);
    for (size_t i = 0; i < n_o; i++)
        o[i] = sent;
    for (size_t i = 0; i < n_l; i++)
        l[i] = sent;

    fa_combine_args a;
    memset(&a, 0, sizeof a);
    a.out_partial.data = op;
    a.out_partial.dtype = FA_DTYPE_F32;
    a.out_partial.rank = 5;
    const int64_t op_sh[5] = {S, B, SQ, H, DV};
    memcpy(a.out_partial.shape, op_sh, sizeof op_sh);
    memcpy(a.out_partial.stride, op_st, sizeof op_st);
    a.lse_partial.data = lp;
    a.lse_partial.dtype = FA_DTYPE_F32;
    a.lse_partial.rank = 4;
    const int64_t lp_sh[4] = {S, B, H, SQ};
    memcpy(a.lse_partial.shape, lp_sh, sizeof lp_sh);
    memcpy(a.lse_partial.stride, lp_st, sizeof lp_st);
    a.out.data = o;
    a.out.dtype = FA_DTYPE_F32;
    a.out.rank = 4;
    const int64_t o_sh[4] = {B, SQ, H, DV};
    memcpy(a.out.shape, o_sh, sizeof o_sh);
    memcpy(a.out.stride, o_st, sizeof o_st);
    if (with_lse) {
        a.lse.data = l;
        a.lse.dtype = FA_DTYPE_F32;
        a.lse.rank = 3;
        const int64_t l_sh[3] = {B, H, SQ};
        memcpy(a.lse.shape, l_sh, sizeof l_sh);
        memcpy(a.lse.stride, l_st, sizeof l_st);
    }

    fa_status st = fa_combine(0, &a, NULL);
    char err[512] = "";
    if (st != FA_OK)
        snprintf(err, sizeof err, "fa_combine = %d, last_error=\"%s\"", (int)st, fa_last_error());
    if (!err[0] && (memcmp(op, op_copy, n_op * sizeof(float)) || memcmp(lp, lp_copy, n_lp * sizeof(float))))
        snprintf(err, sizeof err, "fa_combine modified its inputs");

    double max_err_o = 0, max_err_l = 0;
    for (int b = 0; b < B && !err[0]; b++)
        for (int h = 0; h < H && !err[0]; h++)
            for (int q = 0; q < SQ && !err[0]; q++) {
                double m = -INFINITY;
                for (int s = 0; s < S; s++)
                    m = fmax(m, (double)LP(s, b, h, q));
                const float got_l = l[b * l_st[0] + h * l_st[1] + q];
                if (m == -INFINITY) {
                    if (with_lse && !(isinf(got_l) && got_l < 0))
                        snprintf(err, sizeof err, "b=%d h=%d q=%d: all splits -inf, lse=%g, want -inf", b, h, q,
                                 (double)got_l);
                    for (int dd = 0; dd < DV && !err[0]; dd++) {
                        const float g = o[b * o_st[0] + q * o_st[1] + h * o_st[2] + dd];
                        if (g != 0.0f)
                            snprintf(err, sizeof err, "b=%d h=%d q=%d d=%d: all splits -inf, out=%g, want 0", b, h,
                                     q, dd, (double)g);
                    }
                    continue;
                }
                double sum = 0;
                for (int s = 0; s < S; s++)
                    sum += exp((double)LP(s, b, h, q) - m);
                const double lse = m + log(sum);
                if (with_lse) {
                    const double e = fabs((double)got_l - lse);
                    max_err_l = fmax(max_err_l, e);
                    if (!(e <= 1e-5 * fmax(1.0, fabs(lse))))
                        snprintf(err, sizeof err, "b=%d h=%d q=%d: lse=%.9g, want %.9g", b, h, q, (double)got_l,
                                 lse);
                }
                for (int dd = 0; dd < DV && !err[0]; dd++) {
                    double ref = 0, mag = 0;
                    for (int s = 0; s < S; s++) {
                        const double w = exp((double)LP(s, b, h, q) - lse);
                        ref += w * OP(s, b, q, h, dd);
                        mag += w * fabs((double)OP(s, b, q, h, dd));
                    }
                    const float g = o[b * o_st[0] + q * o_st[1] + h * o_st[2] + dd];
                    const double e = fabs((double)g - ref);
                    max_err_o = fmax(max_err_o, e);
                    if (!(e <= 1e-5 * fmax(mag, fabs(ref)) + 1e-30))
                        snprintf(err, sizeof err, "b=%d h=%d q=%d d=%d: out=%.9g, want %.9g (tol %.3g)", b, h, q,
                                 dd, (double)g, ref, 1e-5 * fmax(mag, fabs(ref)));
                }
            }
    /* padding between rows is untouched; with no lse, the lse buffer is untouched */
    for (size_t i = 0; i < n_o && !err[0]; i++) {
        const int64_t dd = (int64_t)i % dvo;
        if (dd >= DV && memcmp(&o[i], &sent, sizeof sent) != 0)
            snprintf(err, sizeof err, "out padding element %zu was written", i);
    }
    for (size_t i = 0; i < n_l && !err[0]; i++) {
        const int64_t q = (int64_t)i % sqo;
        if ((!with_lse || q >= SQ) && memcmp(&l[i], &sent, sizeof sent) != 0)
            snprintf(err, sizeof err, "lse element %zu was written (%s)", i, with_lse ? "padding" : "no lse given");
    }
#undef OP
#undef LP
    free(op);
    free(lp);
    free(o);
    free(l);
    free(op_copy);
    free(lp_copy);
    if (err[0])
        FAILF("fa_combine S=%d B=%d SQ=%d H=%d DV=%d lse=%d strided=%d special=%d: %s", S, B, SQ, H, DV, with_lse,
              strided, special, err);
    print_message("combine S=%d B=%d SQ=%d H=%d DV=%d: max |err| out %.3g lse %.3g\n", S, B, SQ, H, DV, max_err_o,
                  max_err_l);
}

static void test_combine_random(void **state)
{
    (void)state;
    run_combine(4, 2, 7, 3, 24, 1, 0, COMB_PLAIN);
    run_combine(2, 1, 1, 1, 64, 1, 0, COMB_PLAIN);
}

static void test_combine_neg_inf(void **state)
{
    (void)state;
    run_combine(4, 2, 7, 3, 24, 1, 0, COMB_NEG_INF);
    run_combine(16, 3, 5, 2, 40, 1, 0, COMB_NEG_INF);
}

static void test_combine_single_split(void **state)
{
    (void)state;
    run_combine(1, 2, 9, 2, 32, 1, 0, COMB_PLAIN);
    run_combine(1, 2, 9, 2, 32, 1, 0, COMB_NEG_INF);
}

static void test_combine_without_lse(void **state)
{
    (void)state;
    run_combine(3, 2, 6, 4, 16, 0, 0, COMB_NEG_INF);
}

static void test_combine_strided(void **state)
{
    (void)state;
    run_combine(3, 2, 6, 4, 16, 1, 1, COMB_NEG_INF);
    run_combine(5, 1, 11, 3, 128, 1, 1, COMB_PLAIN);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    rng_seed_from_env();
    printf("test_api_basics: seed=%llu (set FA_TEST_SEED to reproduce)\n", (unsigned long long)g_seed);
    fflush(stdout);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_version_string),
        cmocka_unit_test(test_last_error_is_string),
        cmocka_unit_test(test_dtype_names_and_sizes),
        cmocka_unit_test(test_backend_names),
        cmocka_unit_test(test_tensor_helpers),
        cmocka_unit_test(test_desc_init_defaults),
        cmocka_unit_test(test_device_count_and_props),
        cmocka_unit_test(test_device_best),
        cmocka_unit_test(test_dropout_deterministic),
        cmocka_unit_test(test_dropout_zero_p_keeps_all),
        cmocka_unit_test(test_dropout_keep_rate),
        cmocka_unit_test(test_dropout_decorrelated),
        cmocka_unit_test(test_plan_describe),
        cmocka_unit_test(test_plan_describe_truncation),
        cmocka_unit_test(test_plan_candidates),
        cmocka_unit_test(test_combine_random),
        cmocka_unit_test(test_combine_neg_inf),
        cmocka_unit_test(test_combine_single_split),
        cmocka_unit_test(test_combine_without_lse),
        cmocka_unit_test(test_combine_strided),
    };
    int failed = cmocka_run_group_tests_name("api_basics", tests, NULL, NULL);
    if (failed)
        printf("test_api_basics: %d failed; seed=%llu\n", failed, (unsigned long long)g_seed);
    return failed ? 1 : 0;
}
