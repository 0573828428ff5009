/*
 * The CUDA backward against the CPU backend's backward on the same inputs, on the first CUDA device. Exit 77
 * (skipped) where there is no CUDA device.
 *
 * Each case: fresh random q, k, v, dout; the CUDA forward gives out and LSE; the CUDA backward runs into dq,
 * dk, dv buffers poisoned with all-ones bytes (NaN in fp16/bf16) with canaries around them; the CPU backward
 * (itself checked by the conformance suite) runs on the same q, k, v, dout and the GPU's out and LSE. Checks:
 *   max |gpu - cpu| <= 4 ulp of the dtype at the gradient's scale + 1e-4 (P and dS are rounded to the dtype
 *   for the tensor cores, as in FlashAttention-2; the CPU keeps them in fp32), relative RMS error <= 1 ulp,
 *   no NaN, canaries intact; deterministic cases: 50 more runs bit-equal to the first.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_convert.h"
#include "cuda_driver.h"
#include "flashport.h"
#include "test_random.h"

typedef struct bcase {
    fa_dtype dt;
    int b, sq, sk, hq, hk, d, dv, causal, wl, wr;
    float softcap;
    int alibi, deterministic;
} bcase;

enum { CANARY = 4096, REPEATS = 50 };

/* Dropout of the cases being run (0 = off), with one (seed, offset) for the forward and both backward passes. */
static float g_dropout;
static const uint64_t DROP_SEED = 0x1234567890abcdefull, DROP_OFFSET = 0x0000000500000abcull;

static cuda_api api;

#define CK(call)                                                                                                \
    do {                                                                                                        \
        CUresult r_ = (call);                                                                                   \
        if (r_) {                                                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cuda_error_string(&api, r_));         \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)
#define FK(call)                                                                                                \
    do {                                                                                                        \
        fa_status s_ = (call);                                                                                  \
        if (s_ != FA_OK) {                                                                                      \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, fa_status_string(s_), fa_last_error()); \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

static void fill(uint16_t *x, int64_t n, fa_dtype dt)
{
    for (int64_t i = 0; i < n; i++) fa_store_elem(x, i, dt, (float)rng_range(-1.0, 1.0));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu B)\n", n);
        exit(1);
    }
    return p;
}

static CUdeviceptr up(const void *h, size_t n)
{
    CUdeviceptr p;
    CK(api.cuMemAlloc(&p, n));
    CK(api.cuMemcpyHtoD(p, h, n));
    return p;
}

static void desc_for(const bcase *c, fa_attn_desc *d)
{
    fa_attn_desc_init(d);
    d->dtype = c->dt;
    d->batch = c->b, d->seqlen_q = c->sq, d->seqlen_k = c->sk, d->heads_q = c->hq, d->heads_kv = c->hk;
    d->head_dim_qk = c->d, d->head_dim_v = c->dv;
    d->causal = c->causal, d->window_left = c->wl, d->window_right = c->wr;
    d->softcap = c->softcap;
    d->alibi = c->alibi ? FA_ALIBI_PER_HEAD : FA_ALIBI_NONE;
    d->return_lse = 1;
    d->with_backward = 1;
    d->deterministic = c->deterministic;
    d->dropout_p = g_dropout;
}

/* The tensors of one backward call: q k v out dout lse dq dk dv (host or device pointers alike). */
static void bwd_args_for(const bcase *c, fa_bwd_args *a, void *const *t, float *slopes)
{
    memset(a, 0, sizeof *a);
    a->q = fa_tensor_4d(t[0], c->dt, c->b, c->sq, c->hq, c->d);
    a->k = fa_tensor_4d(t[1], c->dt, c->b, c->sk, c->hk, c->d);
    a->v = fa_tensor_4d(t[2], c->dt, c->b, c->sk, c->hk, c->dv);
    a->out = fa_tensor_4d(t[3], c->dt, c->b, c->sq, c->hq, c->dv);
    a->dout = fa_tensor_4d(t[4], c->dt, c->b, c->sq, c->hq, c->dv);
    a->lse = fa_tensor_3d(t[5], FA_DTYPE_F32, c->b, c->hq, c->sq);
    a->dq = fa_tensor_4d(t[6], c->dt, c->b, c->sq, c->hq, c->d);
    a->dk = fa_tensor_4d(t[7], c->dt, c->b, c->sk, c->hk, c->d);
    a->dv = fa_tensor_4d(t[8], c->dt, c->b, c->sk, c->hk, c->dv);
    a->dropout_seed = DROP_SEED, a->dropout_offset = DROP_OFFSET;
    if (c->alibi) {
        int64_t shape[1] = {c->hq};
        a->alibi_slopes = fa_tensor_contiguous(slopes, FA_DTYPE_F32, 1, shape);
    }
}

typedef struct gstat {
    double maxerr, scale, rms_err, rms_ref, tol;
    int nan, canary, fail;
} gstat;

/* gpu: the downloaded buffer with its canaries; ref: the CPU's gradient of n elements. */
static gstat compare(const uint16_t *gpu, const uint16_t *ref, int64_t n, fa_dtype dt)
{
    gstat g;
    memset(&g, 0, sizeof g);
    for (int64_t i = 0; i < CANARY; i++)
        if (gpu[i] != 0xffff || gpu[CANARY + n + i] != 0xffff) g.canary = 1;
    double se = 0, sr = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = fa_load_elem(gpu, CANARY + i, dt), y = fa_load_elem(ref, i, dt);
        if (isnan(x)) {
            g.nan++;
            continue;
        }
        double e = fabs(x - y);
        g.maxerr = fmax(g.maxerr, e);
        g.scale = fmax(g.scale, fabs(y));
        se += e * e, sr += y * y;
    }
    g.rms_err = sqrt(se / (double)n), g.rms_ref = sqrt(sr / (double)n);
    double eps = dt == FA_DTYPE_BF16 ? 1.0 / 128 : 1.0 / 1024;
    g.tol = 4 * eps * g.scale + 1e-4;
    g.fail = g.canary || g.nan || g.maxerr > g.tol || g.rms_err > eps * g.rms_ref + 1e-5;
    return g;
}

/* Returns the number of failures. */
static int run_case(int gpu, const bcase *c, int repeat)
{
    const int64_t nq = (int64_t)c->b * c->sq * c->hq * c->d, nk = (int64_t)c->b * c->sk * c->hk * c->d;
    const int64_t nv = (int64_t)c->b * c->sk * c->hk * c->dv, no = (int64_t)c->b * c->sq * c->hq * c->dv;
    const int64_t nl = (int64_t)c->b * c->hq * c->sq;
    const int64_t ng[3] = {nq, nk, nv}; /* dq, dk, dv */
    uint16_t *q = xmalloc(2 * nq), *k = xmalloc(2 * nk), *v = xmalloc(2 * nv), *dout = xmalloc(2 * no);
    uint16_t *out = xmalloc(2 * no), *ref[3], *got[3], *again = xmalloc(2 * (nq > nk ? (nq > nv ? nq : nv) : (nk > nv ? nk : nv)));
    float *lse = xmalloc(4 * nl), slopes[64];
    for (int i = 0; i < 3; i++) ref[i] = xmalloc(2 * ng[i]), got[i] = xmalloc(2 * (ng[i] + 2 * CANARY));
    fill(q, nq, c->dt), fill(k, nk, c->dt), fill(v, nv, c->dt), fill(dout, no, c->dt);
    for (int h = 0; h < c->hq && h < 64; h++) slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / c->hq);

    fa_attn_desc d;
    desc_for(c, &d);
    fa_plan *pg;
    if (fa_plan_create(&pg, gpu, &d) != FA_OK) {
        printf("  UNSUP %s\n", fa_last_error());
        return 1;
    }
    char text[4096];
    fa_plan_describe(pg, text, sizeof text);

    /* forward on the GPU: out and LSE for both backward passes */
    CUdeviceptr dq_ = up(q, 2 * nq), dk_ = up(k, 2 * nk), dv_ = up(v, 2 * nv), ddo = up(dout, 2 * no);
    CUdeviceptr dsl = up(slopes, sizeof slopes), dout_o, dl;
    CK(api.cuMemAlloc(&dout_o, 2 * no));
    CK(api.cuMemAlloc(&dl, 4 * nl));
    fa_fwd_args f;
    memset(&f, 0, sizeof f);
    f.q = fa_tensor_4d((void *)dq_, c->dt, c->b, c->sq, c->hq, c->d);
    f.k = fa_tensor_4d((void *)dk_, c->dt, c->b, c->sk, c->hk, c->d);
    f.v = fa_tensor_4d((void *)dv_, c->dt, c->b, c->sk, c->hk, c->dv);
    f.out = fa_tensor_4d((void *)dout_o, c->dt, c->b, c->sq, c->hq, c->dv);
    f.lse = fa_tensor_3d((void *)dl, FA_DTYPE_F32, c->b, c->hq, c->sq);
    f.dropout_seed = DROP_SEED, f.dropout_offset = DROP_OFFSET;
    if (c->alibi) {
        int64_t shape[1] = {c->hq};
        f.alibi_slopes = fa_tensor_contiguous((void *)dsl, FA_DTYPE_F32, 1, shape);
    }
    FK(fa_fwd(pg, &f, NULL));
    CK(api.cuCtxSynchronize());
    CK(api.cuMemcpyDtoH(out, dout_o, 2 * no));
    CK(api.cuMemcpyDtoH(lse, dl, 4 * nl));

    /* backward on the GPU into poisoned buffers with canaries */
    CUdeviceptr gbuf[3];
    for (int i = 0; i < 3; i++) {
        memset(got[i], 0xff, 2 * (ng[i] + 2 * CANARY));
        gbuf[i] = up(got[i], 2 * (ng[i] + 2 * CANARY));
    }
    void *gt[9] = {(void *)dq_, (void *)dk_, (void *)dv_, (void *)dout_o, (void *)ddo, (void *)dl,
                   (void *)(gbuf[0] + 2 * CANARY), (void *)(gbuf[1] + 2 * CANARY), (void *)(gbuf[2] + 2 * CANARY)};
    fa_bwd_args g;
    bwd_args_for(c, &g, gt, (float *)dsl);
    FK(fa_bwd(pg, &g, NULL));
    CK(api.cuCtxSynchronize());
    for (int i = 0; i < 3; i++) CK(api.cuMemcpyDtoH(got[i], gbuf[i], 2 * (ng[i] + 2 * CANARY)));

    /* the CPU backward on the same inputs and the GPU's out and LSE */
    fa_plan *pc;
    FK(fa_plan_create(&pc, 0, &d));
    void *ct[9] = {q, k, v, out, dout, lse, ref[0], ref[1], ref[2]};
    fa_bwd_args a;
    bwd_args_for(c, &a, ct, slopes);
    FK(fa_bwd(pc, &a, NULL));
    fa_plan_destroy(pc);

    int fails = 0;
    gstat s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = compare(got[i], ref[i], ng[i], c->dt);
        fails += s[i].fail;
    }
    int bitdiff = 0;
    for (int r = 0; r < repeat && !bitdiff; r++) {
        FK(fa_bwd(pg, &g, NULL));
        CK(api.cuCtxSynchronize());
        for (int i = 0; i < 3 && !bitdiff; i++) {
            CK(api.cuMemcpyDtoH(again, gbuf[i] + 2 * CANARY, 2 * ng[i]));
            if (memcmp(again, got[i] + CANARY, 2 * ng[i]) != 0) {
                bitdiff = 1;
                printf("    repeat %d: d%s differs from the first run\n", r + 1, i == 0 ? "q" : i == 1 ? "k" : "v");
            }
        }
    }
    fails += bitdiff;
    const char *nm[3] = {"dq", "dk", "dv"};
    printf("%-4s %-4s b%d sq%-4d sk%-4d h%d/%d d%d/%d causal=%d win=%d/%d cap=%g alibi=%d det=%d dropout=%g",
           fails ? "FAIL" : "PASS", c->dt == FA_DTYPE_BF16 ? "bf16" : "fp16", c->b, c->sq, c->sk, c->hq, c->hk, c->d,
           c->dv, c->causal, c->wl, c->wr, c->softcap, c->alibi, c->deterministic, (double)g_dropout);
    if (repeat) printf(bitdiff ? "  repeats DIFFER" : "  %d repeats bit-equal", repeat);
    printf("\n");
    for (int i = 0; i < 3; i++)
        printf("       %s: max|gpu-cpu| %.2e (tol %.2e, max|cpu| %.2e), rms err/ref %.2e%s%s%s\n", nm[i], s[i].maxerr,
               s[i].tol, s[i].scale, s[i].rms_ref > 0 ? s[i].rms_err / s[i].rms_ref : 0.0, s[i].nan ? ", NaN" : "",
               s[i].canary ? ", CANARY OVERWRITTEN" : "", s[i].fail ? "  <-- FAIL" : "");
    if (fails) printf("    %s\n", text);

    api.cuMemFree(dq_), api.cuMemFree(dk_), api.cuMemFree(dv_), api.cuMemFree(ddo), api.cuMemFree(dsl);
    api.cuMemFree(dout_o), api.cuMemFree(dl);
    for (int i = 0; i < 3; i++) api.cuMemFree(gbuf[i]), free(ref[i]), free(got[i]);
    fa_plan_destroy(pg);
    free(q), free(k), free(v), free(dout), free(out), free(again), free(lse);
    return fails;
}

int main(void)
{
    int gpu = -1;
    fa_device_props props;
    for (int i = 0; i < fa_device_count(); i++)
        if (fa_device_get(i, &props) == FA_OK && props.backend == FA_BACKEND_CUDA) {
            gpu = i;
            break;
        }
    char why[512];
    if (gpu < 0 || cuda_api_open(&api, 1, why, sizeof why) != 0) {
        printf("skipped: no CUDA device (FLASHPORT_LOG=1 says why)\n");
        return 77;
    }
    printf("seed %llu (FA_TEST_SEED reproduces the inputs)\n", (unsigned long long)rng_seed_from_env());
    printf("device %d: %s, %s, %d SMs\n", gpu, props.name, props.arch, props.compute_units);
    CUcontext ctx;
    CUdevice dev;
    CK(api.cuInit(0));
    CK(api.cuDeviceGet(&dev, props.index_in_backend));
    CK(api.cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(api.cuCtxPushCurrent(ctx));

    static const bcase cases[] = {
        /* dt, b, sq, sk, hq, hk, d, dv, causal, wl, wr, softcap, alibi, deterministic */
        {FA_DTYPE_BF16, 2, 256, 256, 4, 4, 128, 128, 0, -1, -1, 0.0f, 0, 0},
        {FA_DTYPE_F16, 2, 256, 256, 4, 4, 128, 128, 1, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_BF16, 1, 300, 517, 8, 2, 64, 64, 1, -1, -1, 0.0f, 0, 0},  /* GQA 4:1, sq != sk */
        {FA_DTYPE_F16, 1, 517, 300, 8, 1, 64, 64, 1, -1, -1, 0.0f, 0, 1},   /* MQA; rows that see no key */
        {FA_DTYPE_F16, 1, 333, 333, 4, 4, 128, 64, 0, 64, 32, 0.0f, 0, 0},  /* window, dv < dqk */
        {FA_DTYPE_BF16, 1, 129, 257, 4, 4, 96, 96, 0, -1, -1, 30.0f, 1, 0}, /* softcap + ALiBi */
        {FA_DTYPE_F16, 2, 77, 77, 2, 2, 32, 32, 1, -1, -1, 50.0f, 0, 1},    /* softcap, deterministic */
        {FA_DTYPE_BF16, 1, 200, 333, 4, 2, 64, 128, 0, 100, 20, 0.0f, 1, 0}, /* dv > dqk, ALiBi, window */
        {FA_DTYPE_F16, 3, 1, 1000, 8, 2, 128, 128, 0, -1, -1, 0.0f, 0, 0},  /* one query row */
        {FA_DTYPE_BF16, 1, 1000, 1000, 8, 2, 128, 128, 1, -1, -1, 0.0f, 1, 1}, /* GQA + ALiBi, deterministic */
        {FA_DTYPE_F16, 2, 190, 190, 4, 4, 64, 64, 0, 37, -1, 0.0f, 0, 0},   /* left window only */
    };
    int fails = 0, n = (int)(sizeof cases / sizeof *cases);
    /* FA_CHECK_REPEATS=0 skips the bit-equality repeats (for compute-sanitizer, which is slow) */
    const char *rep_env = getenv("FA_CHECK_REPEATS");
    int repeats = rep_env && *rep_env ? atoi(rep_env) : REPEATS;
    for (int i = 0; i < n; i++) fails += run_case(gpu, &cases[i], cases[i].deterministic ? repeats : 0);
    /* dropout: the backward must use the forward's mask (the CPU's, fa_dropout_keep) for dV and dP */
    static const struct {
        bcase c;
        float p;
    } dcases[] = {
        {{FA_DTYPE_BF16, 2, 256, 256, 4, 4, 128, 128, 0, -1, -1, 0.0f, 0, 0}, 0.1f},
        {{FA_DTYPE_F16, 2, 256, 256, 4, 4, 128, 128, 1, -1, -1, 0.0f, 0, 1}, 0.3f},   /* deterministic */
        {{FA_DTYPE_BF16, 1, 300, 517, 8, 2, 64, 64, 1, -1, -1, 0.0f, 0, 0}, 0.3f},    /* GQA 4:1, sq != sk */
        {{FA_DTYPE_F16, 1, 517, 300, 8, 1, 64, 64, 1, -1, -1, 0.0f, 0, 1}, 0.1f},     /* MQA, deterministic */
        {{FA_DTYPE_BF16, 1, 129, 257, 4, 4, 96, 96, 0, -1, -1, 30.0f, 1, 1}, 0.2f},   /* softcap + ALiBi */
        {{FA_DTYPE_F16, 2, 190, 190, 4, 4, 64, 64, 0, 37, -1, 0.0f, 0, 0}, 0.3f},     /* left window */
    };
    int nd = (int)(sizeof dcases / sizeof *dcases);
    for (int i = 0; i < nd; i++) {
        g_dropout = dcases[i].p;
        fails += run_case(gpu, &dcases[i].c, dcases[i].c.deterministic ? repeats : 0);
    }
    g_dropout = 0.0f;
    n += nd;
    printf("%d case(s), %d failure(s)\n", n, fails);
    CK(api.cuCtxPopCurrent(&ctx));
    return fails ? 1 : 0;
}
