/*
 * The CUDA fp32 forward ("fp32 SIMT", kernels/fwd_f32.cu) against the CPU backend on the same fp32 inputs, on
 * the first CUDA device; --bench adds a timing of a few shapes. Exit 77 (skipped) where there is no CUDA device.
 *
 * Each case: fresh random inputs, the CPU reference (checked by the conformance suite against float64), the
 * GPU output poisoned (NaN bytes) with canaries around it, then
 *   max |gpu - cpu| <= 1e-5 * max(|cpu|, 1) (both exact fp32: a few ulp of summation order), no NaN, canaries
 *   intact; LSE within 1e-5 (relative); also the plan's description names the fp32 SIMT kernel.
 * Then the selector's answers: fp32 with dropout and with KV-cache append declined, with their reasons.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_check_util.h"
#include "cuda_driver.h"
#include "flashport.h"
#include "test_random.h"

typedef struct fcase {
    int b, sq, sk, hq, hk, d, dv, causal, wl, wr;
    float softcap;
    int alibi, lse;
    int layout;    /* LAYOUT_*; sq/sk are then the longest lengths (sequence x has sq - 7x, sk - 13x) */
    int page_size; /* LAYOUT_PAGED */
    int splits;    /* desc.num_splits hint */
} fcase;

enum { LAYOUT_DENSE, LAYOUT_VARLEN, LAYOUT_PAGED /* varlen q, paged k/v with per-sequence cache lengths */ };

typedef struct seqmeta {
    int32_t *cu_q, *cu_k, *used, *table;
    int total_q, total_k, num_pages, pages_per_seq;
    CUdeviceptr d_cu_q, d_cu_k, d_used, d_table;
} seqmeta;

static int len_q(const fcase *c, int x) { return c->layout ? (c->sq - 7 * x > 1 ? c->sq - 7 * x : 1) : c->sq; }
static int len_k(const fcase *c, int x) { return c->layout ? (c->sk - 13 * x > 1 ? c->sk - 13 * x : 1) : c->sk; }

static void fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_range(-1.0, 1.0);
}

static void seqmeta_make(const fcase *c, seqmeta *m)
{
    memset(m, 0, sizeof *m);
    if (!c->layout) return;
    m->cu_q = calloc((size_t)c->b + 1, 4), m->cu_k = calloc((size_t)c->b + 1, 4), m->used = calloc((size_t)c->b, 4);
    for (int x = 0; x < c->b; x++) {
        m->cu_q[x + 1] = m->cu_q[x] + len_q(c, x);
        m->cu_k[x + 1] = m->cu_k[x] + len_k(c, x);
        m->used[x] = len_k(c, x);
    }
    m->total_q = m->cu_q[c->b], m->total_k = m->cu_k[c->b];
    m->d_cu_q = up(m->cu_q, 4 * ((size_t)c->b + 1)), m->d_cu_k = up(m->cu_k, 4 * ((size_t)c->b + 1));
    m->d_used = up(m->used, 4 * (size_t)c->b);
    if (c->layout != LAYOUT_PAGED) return;
    m->pages_per_seq = (c->sk + c->page_size - 1) / c->page_size;
    m->num_pages = c->b * m->pages_per_seq + 3;
    m->table = malloc(4 * (size_t)c->b * m->pages_per_seq);
    int *perm = malloc(sizeof(int) * (size_t)m->num_pages);
    for (int i = 0; i < m->num_pages; i++) perm[i] = i;
    for (int i = m->num_pages - 1; i > 0; i--) {
        int j = (int)(rng_u64() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < c->b * m->pages_per_seq; i++) m->table[i] = perm[i];
    free(perm);
    m->d_table = up(m->table, 4 * (size_t)c->b * m->pages_per_seq);
}

static void seqmeta_free(seqmeta *m)
{
    free(m->cu_q), free(m->cu_k), free(m->used), free(m->table);
    if (m->d_cu_q) api.cuMemFree(m->d_cu_q), api.cuMemFree(m->d_cu_k), api.cuMemFree(m->d_used);
    if (m->d_table) api.cuMemFree(m->d_table);
}

static void desc_for(const fcase *c, fa_attn_desc *d, const seqmeta *m)
{
    fa_attn_desc_init(d);
    if (c->layout) d->varlen = 1, d->total_q = m->total_q, d->total_k = m->total_k;
    if (c->layout == LAYOUT_PAGED) {
        d->paged_kv = 1, d->kv_cache_lengths = 1;
        d->page_size = c->page_size, d->num_pages = m->num_pages, d->max_pages_per_seq = m->pages_per_seq;
    }
    d->dtype = FA_DTYPE_F32;
    d->batch = c->b, d->seqlen_q = c->sq, d->seqlen_k = c->sk, d->heads_q = c->hq, d->heads_kv = c->hk;
    d->head_dim_qk = c->d, d->head_dim_v = c->dv;
    d->causal = c->causal, d->window_left = c->wl, d->window_right = c->wr;
    d->softcap = c->softcap;
    d->alibi = c->alibi ? FA_ALIBI_PER_HEAD : FA_ALIBI_NONE;
    d->return_lse = c->lse;
    d->num_splits = c->splits;
}

static void args_for(const fcase *c, fa_fwd_args *a, void *q, void *k, void *v, void *o, void *lse, void *slopes,
                     const seqmeta *m, int gpu)
{
    const fa_dtype f = FA_DTYPE_F32;
    memset(a, 0, sizeof *a);
    if (c->layout) {
        a->q = fa_tensor_3d(q, f, m->total_q, c->hq, c->d);
        a->out = fa_tensor_3d(o, f, m->total_q, c->hq, c->dv);
        if (c->lse) {
            int64_t shape[2] = {c->hq, m->total_q};
            a->lse = fa_tensor_contiguous(lse, f, 2, shape);
        }
        a->cu_seqlens_q = gpu ? (const int32_t *)m->d_cu_q : m->cu_q;
        a->cu_seqlens_k = gpu ? (const int32_t *)m->d_cu_k : m->cu_k;
    } else {
        a->q = fa_tensor_4d(q, f, c->b, c->sq, c->hq, c->d);
        a->out = fa_tensor_4d(o, f, c->b, c->sq, c->hq, c->dv);
        if (c->lse) a->lse = fa_tensor_3d(lse, f, c->b, c->hq, c->sq);
    }
    if (c->layout == LAYOUT_PAGED) {
        a->k = fa_tensor_4d(k, f, m->num_pages, c->page_size, c->hk, c->d);
        a->v = fa_tensor_4d(v, f, m->num_pages, c->page_size, c->hk, c->dv);
        a->seqused_k = gpu ? (const int32_t *)m->d_used : m->used;
        a->block_table = gpu ? (const int32_t *)m->d_table : m->table;
    } else if (c->layout == LAYOUT_VARLEN) {
        a->k = fa_tensor_3d(k, f, m->total_k, c->hk, c->d);
        a->v = fa_tensor_3d(v, f, m->total_k, c->hk, c->dv);
    } else {
        a->k = fa_tensor_4d(k, f, c->b, c->sk, c->hk, c->d);
        a->v = fa_tensor_4d(v, f, c->b, c->sk, c->hk, c->dv);
    }
    if (c->alibi) {
        int64_t shape[1] = {c->hq};
        a->alibi_slopes = fa_tensor_contiguous(slopes, f, 1, shape);
    }
}

/* Returns the number of failures; bench > 0 times that many runs and prints TFLOP/s. */
static int run_case(int gpu, const fcase *c, int bench)
{
    seqmeta m;
    seqmeta_make(c, &m);
    int64_t rows_q = c->layout ? m.total_q : (int64_t)c->b * c->sq;
    int64_t rows_k = c->layout == LAYOUT_PAGED ? (int64_t)m.num_pages * c->page_size
                     : c->layout                ? m.total_k
                                                : (int64_t)c->b * c->sk;
    int64_t nq = rows_q * c->hq * c->d, nk = rows_k * c->hk * c->d, nv = rows_k * c->hk * c->dv;
    int64_t no = rows_q * c->hq * c->dv, nl = rows_q * c->hq, canary = 1024;
    float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nv), *oc = malloc(4 * no);
    float *og = malloc(4 * (no + 2 * canary)), *lc = malloc(4 * nl), *lg = malloc(4 * nl), slopes[64];
    fill(q, nq), fill(k, nk), fill(v, nv);
    for (int h = 0; h < c->hq && h < 64; h++) slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / c->hq);

    fa_attn_desc d;
    desc_for(c, &d, &m);
    int fails = 0;
    fa_plan *pc, *pg;
    fa_fwd_args a;
    if (!bench) {
        FK(fa_plan_create(&pc, 0, &d));
        args_for(c, &a, q, k, v, oc, lc, slopes, &m, 0);
        FK(fa_fwd(pc, &a, NULL));
        fa_plan_destroy(pc);
    }
    if (fa_plan_create(&pg, gpu, &d) != FA_OK) {
        printf("  UNSUP %s\n", fa_last_error());
        seqmeta_free(&m);
        free(q), free(k), free(v), free(oc), free(og), free(lc), free(lg);
        return 1;
    }
    char text[2048];
    fa_plan_describe(pg, text, sizeof text);
    fa_tile_config used;
    fa_plan_config(pg, &used);
    if (!strstr(text, "fp32 SIMT")) {
        printf("  FAIL: the plan does not run the fp32 SIMT kernel: %s\n", text);
        fails++;
    }
    CUdeviceptr dq = up(q, 4 * nq), dk = up(k, 4 * nk), dv = up(v, 4 * nv), dsl = up(slopes, sizeof slopes);
    memset(og, 0xff, 4 * (no + 2 * canary)); /* NaN everywhere */
    CUdeviceptr dob = up(og, 4 * (no + 2 * canary)), dl = 0, dout = dob + 4 * canary;
    if (c->lse) memset(lg, 0xff, 4 * nl), dl = up(lg, 4 * nl);
    fa_fwd_args g;
    args_for(c, &g, (void *)dq, (void *)dk, (void *)dv, (void *)dout, (void *)dl, (void *)dsl, &m, 1);
    FK(fa_fwd(pg, &g, NULL));
    CK(api.cuCtxSynchronize());
    if (bench) {
        double t0 = now();
        for (int r = 0; r < bench; r++) FK(fa_fwd(pg, &g, NULL));
        CK(api.cuCtxSynchronize());
        double dt = (now() - t0) / bench;
        double flops = 2.0 * c->b * c->hq * (double)c->sq * c->sk * (c->d + c->dv) * (c->causal ? 0.5 : 1.0);
        printf("  bench b%d s%d h%d d%d causal=%d: %.3f ms, %.1f TFLOP/s (tile %dx%d)\n", c->b, c->sq, c->hq, c->d,
               c->causal, dt * 1e3, flops / dt * 1e-12, used.block_q, used.block_kv);
    } else {
        CK(api.cuMemcpyDtoH(og, dob, 4 * (no + 2 * canary)));
        if (c->lse) CK(api.cuMemcpyDtoH(lg, dl, 4 * nl));
        uint32_t bits;
        for (int64_t i = 0; i < canary; i++) {
            uint32_t b2;
            memcpy(&bits, &og[i], 4), memcpy(&b2, &og[canary + no + i], 4);
            if (bits != 0xffffffffu || b2 != 0xffffffffu) {
                fails++;
                printf("  canary overwritten at %lld\n", (long long)i);
                break;
            }
        }
        double maxerr = 0, scale = 0, lerr = 0;
        for (int64_t i = 0; i < no; i++) {
            float x = og[canary + i], y = oc[i];
            if (isnan(x)) {
                fails++;
                printf("  NaN at %lld\n", (long long)i);
                break;
            }
            maxerr = fmax(maxerr, fabs(x - y));
            scale = fmax(scale, fabs(y));
        }
        for (int64_t i = 0; c->lse && i < nl; i++) {
            if (isinf(lc[i]) && lg[i] == lc[i]) continue;
            double e = fabs((double)lg[i] - lc[i]) / fmax(1.0, fabs(lc[i]));
            if (!(e <= 1e30)) e = 1e30;
            lerr = fmax(lerr, e);
        }
        double tol = 1e-5 * fmax(scale, 1.0);
        if (maxerr > tol || lerr > 1e-5) fails++;
        static const char *const layouts[] = {"dense", "varlen", "paged"};
        printf("  %s fp32 %s%s%.0d b%d sq%d sk%d h%d/%d d%d/%d causal=%d win=%d/%d softcap=%g alibi=%d lse=%d "
               "splits=%d: max|gpu-cpu| %.2e (tol %.2e), lse %.1e, tile %dx%d\n",
               fails ? "FAIL" : "PASS", layouts[c->layout], c->layout == LAYOUT_PAGED ? " page " : "",
               c->layout == LAYOUT_PAGED ? c->page_size : 0, c->b, c->sq, c->sk, c->hq, c->hk, c->d, c->dv, c->causal,
               c->wl, c->wr, c->softcap, c->alibi, c->lse, c->splits, maxerr, tol, lerr, used.block_q, used.block_kv);
        if (fails) printf("    %s\n", text);
    }
    api.cuMemFree(dq), api.cuMemFree(dk), api.cuMemFree(dv), api.cuMemFree(dsl), api.cuMemFree(dob);
    if (dl) api.cuMemFree(dl);
    fa_plan_destroy(pg);
    seqmeta_free(&m);
    free(q), free(k), free(v), free(oc), free(og), free(lc), free(lg);
    return fails;
}

/* A plan the selector must decline, with a reason containing `word`. */
static int expect_unsupported(int gpu, fa_attn_desc *d, const char *word)
{
    fa_plan *p;
    fa_status st = fa_plan_create(&p, gpu, d);
    if (st == FA_OK) {
        fa_plan_destroy(p);
        printf("  FAIL: fp32 with %s was accepted\n", word);
        return 1;
    }
    int ok = st == FA_ERR_UNSUPPORTED && strstr(fa_last_error(), word);
    printf("  %s declined (%s): %s\n", ok ? "PASS" : "FAIL", word, fa_last_error());
    return !ok;
}

int main(int argc, char **argv)
{
    int do_bench = argc > 1 && !strcmp(argv[1], "--bench");
    fa_device_props props;
    const int gpu = first_cuda_device(&props);
    if (gpu < 0) return 77;
    printf("seed %llu (FA_TEST_SEED reproduces the inputs)\n", (unsigned long long)rng_seed_from_env());
    printf("device %d: %s, %s\n", gpu, props.name, props.arch);
    CUcontext ctx;
    CUdevice dev;
    CK(api.cuInit(0));
    CK(api.cuDeviceGet(&dev, props.index_in_backend));
    CK(api.cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(api.cuCtxPushCurrent(ctx));

    static const fcase cases[] = {
        /* b sq sk hq hk d dv causal wl wr softcap alibi lse layout page splits */
        {2, 256, 256, 4, 4, 128, 128, 0, -1, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},
        {2, 256, 256, 4, 4, 128, 128, 1, -1, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},
        {1, 300, 517, 8, 2, 64, 64, 1, -1, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},   /* GQA, causal sq < sk */
        {1, 517, 300, 8, 1, 64, 64, 1, -1, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},   /* MQA, rows that see no key */
        {2, 200, 333, 4, 2, 256, 256, 0, -1, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},
        {1, 333, 333, 4, 4, 128, 64, 0, 64, 32, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},  /* window, dv != dqk */
        {1, 129, 257, 4, 4, 96, 96, 0, -1, -1, 30.0f, 1, 1, LAYOUT_DENSE, 0, 0},  /* softcap + ALiBi */
        {3, 1, 1000, 8, 2, 128, 128, 0, -1, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 4},  /* decode, a num_splits hint */
        {2, 77, 77, 2, 2, 32, 32, 1, -1, -1, 50.0f, 0, 1, LAYOUT_DENSE, 0, 0},
        {1, 100, 150, 2, 1, 36, 100, 1, -1, -1, 0.0f, 1, 1, LAYOUT_DENSE, 0, 0},  /* dims not multiples of 4/8 */
        {1, 70, 90, 3, 3, 7, 130, 0, 20, -1, 0.0f, 0, 1, LAYOUT_DENSE, 0, 0},
        {1, 40, 40, 2, 2, 1, 1, 1, -1, -1, 0.0f, 0, 0, LAYOUT_DENSE, 0, 0},
        {4, 300, 400, 8, 2, 128, 128, 1, -1, -1, 0.0f, 0, 1, LAYOUT_VARLEN, 0, 0},
        {3, 200, 150, 4, 4, 64, 64, 0, 32, 16, 0.0f, 1, 1, LAYOUT_VARLEN, 0, 0},
        {3, 1, 1000, 8, 2, 128, 128, 0, -1, -1, 0.0f, 0, 1, LAYOUT_PAGED, 16, 0},
        {2, 40, 700, 8, 1, 64, 64, 1, -1, -1, 0.0f, 0, 1, LAYOUT_PAGED, 256, 0},
        {2, 33, 200, 4, 2, 200, 72, 1, -1, -1, 10.0f, 0, 1, LAYOUT_PAGED, 1, 0},
        {2, 50, 300, 4, 4, 80, 80, 0, 40, 8, 0.0f, 1, 1, LAYOUT_PAGED, 24, 0},
    };
    int fails = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) fails += run_case(gpu, &cases[i], 0);

    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = FA_DTYPE_F32, d.batch = 1, d.seqlen_q = d.seqlen_k = 64, d.heads_q = d.heads_kv = 2;
    d.head_dim_qk = d.head_dim_v = 64;
    d.dropout_p = 0.1f;
    fails += expect_unsupported(gpu, &d, "dropout");
    d.dropout_p = 0.0f, d.kv_cache_lengths = 1, d.seqlen_new = 4;
    fails += expect_unsupported(gpu, &d, "append");

    if (do_bench) {
        static const fcase bench[] = {
            {4, 2048, 2048, 16, 16, 64, 64, 0, -1, -1, 0.0f, 0, 0, LAYOUT_DENSE, 0, 0},
            {4, 2048, 2048, 16, 16, 128, 128, 0, -1, -1, 0.0f, 0, 0, LAYOUT_DENSE, 0, 0},
            {4, 2048, 2048, 16, 16, 128, 128, 1, -1, -1, 0.0f, 0, 0, LAYOUT_DENSE, 0, 0},
            {2, 2048, 2048, 16, 16, 256, 256, 0, -1, -1, 0.0f, 0, 0, LAYOUT_DENSE, 0, 0},
        };
        for (size_t i = 0; i < sizeof bench / sizeof bench[0]; i++) run_case(gpu, &bench[i], 20);
    }
    printf("%d/%d fp32 cases passed, %d failure(s)\n", n + 2 - fails, n + 2, fails);
    return fails ? 1 : 0;
}
