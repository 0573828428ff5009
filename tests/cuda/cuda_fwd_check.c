/*
 * The CUDA forward against the CPU backend on the same inputs, on the first CUDA device; then, with
 * --bench, its speed on the bench's headline shapes; --point HDIM SEQLEN CAUSAL, one of them (for ncu).
 * Exit 77 (skipped) where there is no CUDA device.
 *
 * Each case: fresh random inputs, a CPU reference (itself checked by the conformance suite against float64),
 * the GPU output buffer poisoned (all-ones bytes, NaN in fp16/bf16) with canary rows around it, then
 *   max |gpu - cpu| <= 2 ulp of the dtype at the output's scale + 1e-3, no NaN, canaries intact;
 *   LSE within 1e-3 (when asked for); 250 repeated runs bit-equal (first cases only).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_convert.h"
#include "cuda_driver.h"
#include "flashport.h"
#include "test_random.h"

typedef struct fcase {
    fa_dtype dt;
    int b, sq, sk, hq, hk, d, dv, causal, wl, wr;
    float softcap;
    int alibi, lse;
} fcase;

static cuda_api api;

static void fill(uint16_t *x, int64_t n, fa_dtype dt)
{
    for (int64_t i = 0; i < n; i++) fa_store_elem(x, i, dt, (float)rng_range(-1.0, 1.0));
}

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

static void desc_for(const fcase *c, fa_attn_desc *d)
{
    fa_attn_desc_init(d);
    d->dtype = c->dt;
    d->batch = c->b, d->seqlen_q = c->sq, d->seqlen_k = c->sk, d->heads_q = c->hq, d->heads_kv = c->hk;
    d->head_dim_qk = c->d, d->head_dim_v = c->dv;
    d->causal = c->causal, d->window_left = c->wl, d->window_right = c->wr;
    d->softcap = c->softcap;
    d->alibi = c->alibi ? FA_ALIBI_PER_HEAD : FA_ALIBI_NONE;
    d->return_lse = c->lse;
}

static void args_for(const fcase *c, fa_fwd_args *a, void *q, void *k, void *v, void *o, float *lse, float *slopes)
{
    memset(a, 0, sizeof *a);
    a->q = fa_tensor_4d(q, c->dt, c->b, c->sq, c->hq, c->d);
    a->k = fa_tensor_4d(k, c->dt, c->b, c->sk, c->hk, c->d);
    a->v = fa_tensor_4d(v, c->dt, c->b, c->sk, c->hk, c->dv);
    a->out = fa_tensor_4d(o, c->dt, c->b, c->sq, c->hq, c->dv);
    if (c->lse) a->lse = fa_tensor_3d(lse, FA_DTYPE_F32, c->b, c->hq, c->sq);
    if (c->alibi) {
        int64_t shape[1] = {c->hq};
        a->alibi_slopes = fa_tensor_contiguous(slopes, FA_DTYPE_F32, 1, shape);
    }
}

static CUdeviceptr up(const void *h, size_t n)
{
    CUdeviceptr p;
    CK(api.cuMemAlloc(&p, n));
    CK(api.cuMemcpyHtoD(p, h, n));
    return p;
}

static float *lse_or_null(const fcase *c, float *l) { return c->lse ? l : NULL; }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Returns the number of failures. */
static int run_case(int gpu, const fcase *c, int repeat)
{
    int64_t nq = (int64_t)c->b * c->sq * c->hq * c->d, nk = (int64_t)c->b * c->sk * c->hk * c->d;
    int64_t nv = (int64_t)c->b * c->sk * c->hk * c->dv, no = (int64_t)c->b * c->sq * c->hq * c->dv;
    int64_t nl = (int64_t)c->b * c->hq * c->sq, canary = 4096;
    uint16_t *q = malloc(2 * nq), *k = malloc(2 * nk), *v = malloc(2 * nv), *oc = malloc(2 * no);
    uint16_t *og = malloc(2 * (no + 2 * canary)), *og2 = malloc(2 * no);
    float *lc = malloc(4 * nl), *lg = malloc(4 * nl), slopes[64];
    fill(q, nq, c->dt), fill(k, nk, c->dt), fill(v, nv, c->dt);
    for (int h = 0; h < c->hq && h < 64; h++) slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / c->hq);

    fa_attn_desc d;
    desc_for(c, &d);
    fa_plan *pc, *pg;
    FK(fa_plan_create(&pc, 0, &d));
    fa_fwd_args a;
    args_for(c, &a, q, k, v, oc, lse_or_null(c, lc), slopes);
    FK(fa_fwd(pc, &a, NULL));
    fa_plan_destroy(pc);

    fa_status st = fa_plan_create(&pg, gpu, &d);
    if (st != FA_OK) {
        printf("  UNSUP %s\n", fa_last_error());
        return 1;
    }
    char text[2048];
    fa_plan_describe(pg, text, sizeof text);
    CUdeviceptr dq = up(q, 2 * nq), dk = up(k, 2 * nk), dv = up(v, 2 * nv), dsl = up(slopes, sizeof slopes);
    memset(og, 0xff, 2 * (no + 2 * canary));
    CUdeviceptr dob = up(og, 2 * (no + 2 * canary)), dl = 0;
    if (c->lse) {
        memset(lg, 0xff, 4 * nl);
        dl = up(lg, 4 * nl);
    }
    CUdeviceptr dout = dob + 2 * canary;
    fa_fwd_args g;
    args_for(c, &g, (void *)dq, (void *)dk, (void *)dv, (void *)dout, (float *)dl, (float *)dsl);
    FK(fa_fwd(pg, &g, NULL));
    CK(api.cuCtxSynchronize());
    CK(api.cuMemcpyDtoH(og, dob, 2 * (no + 2 * canary)));
    if (c->lse) CK(api.cuMemcpyDtoH(lg, dl, 4 * nl));

    int fails = 0;
    double maxerr = 0, scale = 0, lerr = 0;
    for (int64_t i = 0; i < canary; i++)
        if (og[i] != 0xffff || og[canary + no + i] != 0xffff) {
            fails++;
            printf("  canary overwritten at %lld\n", (long long)i);
            break;
        }
    for (int64_t i = 0; i < no; i++) {
        float x = fa_load_elem(og, canary + i, c->dt), y = fa_load_elem(oc, i, c->dt);
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
        double e = fabs((double)lg[i] - lc[i]);
        if (!(e <= 1e30)) e = 1e30;
        lerr = fmax(lerr, e);
    }
    double eps = c->dt == FA_DTYPE_BF16 ? 1.0 / 128 : 1.0 / 1024;
    double tol = 2 * eps * fmax(scale, 1e-3) + 1e-3;
    if (maxerr > tol || lerr > 1e-3) fails++;
    int bitdiff = 0;
    for (int r = 0; r < repeat && !bitdiff; r++) {
        FK(fa_fwd(pg, &g, NULL));
        CK(api.cuCtxSynchronize());
        CK(api.cuMemcpyDtoH(og2, dout, 2 * no));
        bitdiff = memcmp(og2, og + canary, 2 * no) != 0;
    }
    if (bitdiff) fails++;
    printf("  %s %s b%d sq%d sk%d h%d/%d d%d/%d causal=%d win=%d/%d softcap=%g alibi=%d lse=%d: max|gpu-cpu| %.2e "
           "(tol %.2e), lse %.1e%s\n",
           fails ? "FAIL" : "PASS", c->dt == FA_DTYPE_BF16 ? "bf16" : "fp16", c->b, c->sq, c->sk, c->hq, c->hk, c->d,
           c->dv, c->causal, c->wl, c->wr, c->softcap, c->alibi, c->lse, maxerr, tol, lerr,
           repeat ? (bitdiff ? ", repeats DIFFER" : ", repeats bit-equal") : "");
    if (fails) printf("    %s\n", text);
    api.cuMemFree(dq), api.cuMemFree(dk), api.cuMemFree(dv), api.cuMemFree(dsl), api.cuMemFree(dob);
    if (dl) api.cuMemFree(dl);
    fa_plan_destroy(pg);
    free(q), free(k), free(v), free(oc), free(og), free(og2), free(lc), free(lg);
    return fails;
}

/* Forward TFLOP/s (FlashAttention's count: 4 b h s^2 d, halved when causal), median of 10 timed calls. */
static void bench_point(int gpu, fa_dtype dt, int b, int s, int h, int d, int causal, const fa_tile_config *force)
{
    fcase c = {dt, b, s, s, h, h, d, d, causal, -1, causal ? 0 : -1, 0.0f, 0, 0};
    int64_t n = (int64_t)b * s * h * d;
    CUdeviceptr q, k, v, o;
    CK(api.cuMemAlloc(&q, 2 * n));
    CK(api.cuMemAlloc(&k, 2 * n));
    CK(api.cuMemAlloc(&v, 2 * n));
    CK(api.cuMemAlloc(&o, 2 * n));
    uint16_t *hbuf = malloc(2 * n);
    fill(hbuf, n, dt);
    CK(api.cuMemcpyHtoD(q, hbuf, 2 * n));
    CK(api.cuMemcpyHtoD(k, hbuf, 2 * n));
    CK(api.cuMemcpyHtoD(v, hbuf, 2 * n));
    free(hbuf);
    fa_attn_desc desc;
    desc_for(&c, &desc);
    fa_plan *p;
    double t0 = now();
    if (force)
        FK(fa_plan_create_with_config(&p, gpu, &desc, force));
    else
        FK(fa_plan_create(&p, gpu, &desc));
    double plan_ms = (now() - t0) * 1e3;
    fa_tile_config cfg;
    fa_plan_config(p, &cfg);
    fa_fwd_args a;
    args_for(&c, &a, (void *)q, (void *)k, (void *)v, (void *)o, NULL, NULL);
    for (int i = 0; i < 3; i++) FK(fa_fwd(p, &a, NULL));
    CK(api.cuCtxSynchronize());
    double ms[10];
    for (int i = 0; i < 10; i++) {
        t0 = now();
        FK(fa_fwd(p, &a, NULL));
        CK(api.cuCtxSynchronize());
        ms[i] = (now() - t0) * 1e3;
    }
    for (int i = 0; i < 10; i++)
        for (int j = i + 1; j < 10; j++)
            if (ms[j] < ms[i]) {
                double t = ms[i];
                ms[i] = ms[j], ms[j] = t;
            }
    double med = (ms[4] + ms[5]) / 2, flop = 4.0 * b * h * (double)s * s * d * (causal ? 0.5 : 1.0);
    printf("bench fwd %s d%d s%d b%d h%d causal=%d tile %dx%d w%d: %.3f ms, %.1f TFLOP/s (plan %.0f ms)\n",
           dt == FA_DTYPE_BF16 ? "bf16" : "fp16", d, s, b, h, causal, cfg.block_q, cfg.block_kv, cfg.warps, med,
           flop / med * 1e-9, plan_ms);
    fa_plan_destroy(p);
    api.cuMemFree(q), api.cuMemFree(k), api.cuMemFree(v), api.cuMemFree(o);
}

/* Host time per fa_fwd call once warm: enqueue only, a tiny problem. */
static void bench_overhead(int gpu)
{
    fcase c = {FA_DTYPE_BF16, 1, 128, 128, 2, 2, 64, 64, 0, -1, -1, 0.0f, 0, 0};
    int64_t n = 128 * 2 * 64;
    CUdeviceptr q, o;
    CK(api.cuMemAlloc(&q, 2 * n));
    CK(api.cuMemAlloc(&o, 2 * n));
    fa_attn_desc desc;
    desc_for(&c, &desc);
    fa_plan *p;
    FK(fa_plan_create(&p, gpu, &desc));
    fa_fwd_args a;
    args_for(&c, &a, (void *)q, (void *)q, (void *)q, (void *)o, NULL, NULL);
    for (int i = 0; i < 100; i++) FK(fa_fwd(p, &a, NULL));
    CK(api.cuCtxSynchronize());
    double t0 = now();
    for (int i = 0; i < 1000; i++) FK(fa_fwd(p, &a, NULL));
    double us = (now() - t0) * 1e3;
    CK(api.cuCtxSynchronize());
    printf("host overhead per fa_fwd call (warm, enqueue only): %.2f us\n", us);
    fa_plan_destroy(p);
    api.cuMemFree(q), api.cuMemFree(o);
}

int main(int argc, char **argv)
{
    int do_bench = argc > 1 && !strcmp(argv[1], "--bench");
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
    printf("device %d: %s, %s, %d SMs, %lld B shared/block opt-in, %lld MiB\n", gpu, props.name, props.arch,
           props.compute_units, (long long)props.shared_mem_per_block_optin, (long long)(props.memory_bytes >> 20));
    CUcontext ctx;
    CUdevice dev;
    CK(api.cuInit(0));
    CK(api.cuDeviceGet(&dev, props.index_in_backend));
    CK(api.cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(api.cuCtxPushCurrent(ctx));

    static const fcase cases[] = {
        {FA_DTYPE_BF16, 2, 256, 256, 4, 4, 128, 128, 0, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_F16, 2, 256, 256, 4, 4, 128, 128, 1, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_BF16, 1, 300, 517, 8, 2, 64, 64, 1, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_F16, 1, 517, 300, 8, 1, 64, 64, 1, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_BF16, 2, 200, 333, 4, 2, 256, 256, 0, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_F16, 1, 333, 333, 4, 4, 128, 64, 0, 64, 32, 0.0f, 0, 1},
        {FA_DTYPE_BF16, 1, 129, 257, 4, 4, 96, 96, 0, -1, -1, 30.0f, 1, 1},
        {FA_DTYPE_F16, 3, 1, 1000, 8, 2, 128, 128, 0, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_BF16, 1, 1024, 1024, 16, 16, 128, 128, 1, -1, -1, 0.0f, 1, 0},
        {FA_DTYPE_F16, 2, 77, 77, 2, 2, 32, 32, 1, -1, -1, 50.0f, 0, 1},
    };
    int fails = 0, n = (int)(sizeof cases / sizeof *cases), point = argc > 4 && !strcmp(argv[1], "--point");
    for (int i = 0; i < n && !point; i++) fails += run_case(gpu, &cases[i], i < 2 ? 250 : 0);
    if (!point) printf("%d case(s), %d failure(s)\n", n, fails);
    if (do_bench) {
        bench_overhead(gpu);
        static const int dims[][2] = {{64, 32}, {128, 16}, {256, 8}};
        for (int di = 0; di < 3; di++)
            for (int s = 2048; s <= 16384; s *= 2)
                for (int causal = 0; causal < 2; causal++)
                    bench_point(gpu, FA_DTYPE_BF16, 16384 / s, s, dims[di][1], dims[di][0], causal, NULL);
    }
    if (point) {
        /* one bench point (for a profiler): --point HDIM SEQLEN CAUSAL, 16k tokens, hidden 2048 */
        int d = atoi(argv[2]), s = atoi(argv[3]);
        if (d > 0 && s > 0 && s <= 16384) bench_point(gpu, FA_DTYPE_BF16, 16384 / s, s, 2048 / d, d, atoi(argv[4]), NULL);
    }
    if (argc > 1 && !strcmp(argv[1], "--tiles")) {
        /* every planner candidate at seqlen 8k, non-causal: what the tuner will search */
        static const int dims[][2] = {{64, 32}, {128, 16}, {256, 8}};
        for (int di = 0; di < 3; di++) {
            fcase c = {FA_DTYPE_BF16, 2, 8192, 8192, dims[di][1], dims[di][1], dims[di][0], dims[di][0], 0, -1, -1, 0.0f, 0, 0};
            fa_attn_desc desc;
            desc_for(&c, &desc);
            fa_tile_config cands[64];
            int count = 0;
            FK(fa_plan_candidates(gpu, &desc, cands, 64, &count));
            for (int i = 0; i < count && i < 64; i++)
                bench_point(gpu, FA_DTYPE_BF16, 2, 8192, dims[di][1], dims[di][0], 0, &cands[i]);
        }
    }
    CK(api.cuCtxPopCurrent(&ctx));
    return fails ? 1 : 0;
}
