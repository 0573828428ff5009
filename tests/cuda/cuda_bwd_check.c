/*
 * The CUDA backward against the CPU backend's backward on the same inputs, on the first CUDA device. Exit 77
 * (skipped) where there is no CUDA device.
 *
 * Each case: fresh random q, k, v, dout; the CUDA forward gives out and LSE; the CUDA backward runs into dq,
 * dk, dv buffers poisoned with all-ones bytes (NaN in fp16/bf16) with canaries around them; the CPU backward
 * (itself checked by the conformance suite) runs on the same q, k, v, dout and the GPU's out and LSE. Checks:
 *   max |gpu - cpu| <= 4 ulp of the dtype at the gradient's scale + 1e-4 (P and dS are rounded to the dtype
 *   for the tensor cores, as in FlashAttention-2; the CPU keeps them in fp32), relative RMS error <= 1 ulp
 *   (fp32, the SIMT backward: 2^-16 stands for the ulp, room for summation order only),
 *   no NaN, canaries intact; deterministic cases: 50 more runs bit-equal to the first.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_convert.h"
#include "cuda_check_util.h"
#include "cuda_driver.h"
#include "flashport.h"
#include "test_random.h"

typedef struct bcase {
    fa_dtype dt;
    int b, sq, sk, hq, hk, d, dv, causal, wl, wr;
    float softcap;
    int alibi, deterministic;
} bcase;

enum { CANARY = 4096, REPEATS = 50, MAXSEQ = 8 };

/*
 * Per-sequence metadata of a case (NULL: dense). lq/lk: varlen lengths of the c->b sequences (cu_seqlens are
 * their prefix sums; c->sq/sk must be the largest); used: seqused_k (kv_cache_lengths) on a dense cache or
 * varlen k. The GPU gets the metadata in device memory, the CPU on the host.
 */
typedef struct vspec {
    const int *lq, *lk, *used;
} vspec;

typedef struct seqmeta {
    int varlen, total_q, total_k;
    int32_t cu_q[MAXSEQ + 1], cu_k[MAXSEQ + 1], used[MAXSEQ];
    const int32_t *h_cu_q, *h_cu_k, *h_used; /* host pointers, NULL where absent */
    CUdeviceptr d_cu_q, d_cu_k, d_used;
} seqmeta;

/* Dropout of the cases being run (0 = off), with one (seed, offset) for the forward and both backward passes. */
static float g_dropout;
/* The backward tile of the cases being run (block_q 0: the planner's): forces forms the planner does not pick on
   the device at hand, e.g. the 32-key tile of pairs of warps that head dims over 128 take on sm_86/89 */
static fa_tile_config g_bwd_tile;
static const uint64_t DROP_SEED = 0x1234567890abcdefull, DROP_OFFSET = 0x0000000500000abcull;

static int64_t elem_size(fa_dtype dt) { return dt == FA_DTYPE_F32 ? 4 : 2; }

static void fill(void *x, int64_t n, fa_dtype dt)
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

static void desc_for(const bcase *c, fa_attn_desc *d, const seqmeta *m)
{
    fa_attn_desc_init(d);
    if (m->varlen) d->varlen = 1, d->total_q = m->total_q, d->total_k = m->total_k;
    if (m->h_used) d->kv_cache_lengths = 1;
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

/* q-like (rows of queries) and k-like tensors: (batch, seq, heads, dim), varlen (total, heads, dim). */
static fa_tensor qt(const bcase *c, const seqmeta *m, void *p, int heads, int dim)
{
    return m->varlen ? fa_tensor_3d(p, c->dt, m->total_q, heads, dim) : fa_tensor_4d(p, c->dt, c->b, c->sq, heads, dim);
}
static fa_tensor kt(const bcase *c, const seqmeta *m, void *p, int dim)
{
    return m->varlen ? fa_tensor_3d(p, c->dt, m->total_k, c->hk, dim) : fa_tensor_4d(p, c->dt, c->b, c->sk, c->hk, dim);
}
static fa_tensor lset(const bcase *c, const seqmeta *m, void *p)
{
    int64_t shape[2] = {c->hq, m->total_q};
    return m->varlen ? fa_tensor_contiguous(p, FA_DTYPE_F32, 2, shape) : fa_tensor_3d(p, FA_DTYPE_F32, c->b, c->hq, c->sq);
}

/* The tensors of one backward call: q k v out dout lse dq dk dv (host or device pointers alike). */
static void bwd_args_for(const bcase *c, const seqmeta *m, int on_gpu, fa_bwd_args *a, void *const *t, float *slopes)
{
    memset(a, 0, sizeof *a);
    a->q = qt(c, m, t[0], c->hq, c->d);
    a->k = kt(c, m, t[1], c->d);
    a->v = kt(c, m, t[2], c->dv);
    a->out = qt(c, m, t[3], c->hq, c->dv);
    a->dout = qt(c, m, t[4], c->hq, c->dv);
    a->lse = lset(c, m, t[5]);
    a->dq = qt(c, m, t[6], c->hq, c->d);
    a->dk = kt(c, m, t[7], c->d);
    a->dv = kt(c, m, t[8], c->dv);
    if (m->varlen) {
        a->cu_seqlens_q = on_gpu ? (const int32_t *)m->d_cu_q : m->h_cu_q;
        a->cu_seqlens_k = on_gpu ? (const int32_t *)m->d_cu_k : m->h_cu_k;
    }
    if (m->h_used) a->seqused_k = on_gpu ? (const int32_t *)m->d_used : m->h_used;
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
static gstat compare(const unsigned char *gpu, const unsigned char *ref, int64_t n, fa_dtype dt)
{
    gstat g;
    memset(&g, 0, sizeof g);
    const int64_t es = elem_size(dt);
    for (int64_t i = 0; i < es * CANARY; i++)
        if (gpu[i] != 0xff || gpu[es * (CANARY + n) + i] != 0xff) g.canary = 1;
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
    /* fp32: both sides sum in fp32 in different orders; 2^-16 of the scale leaves room for that and nothing more */
    double eps = dt == FA_DTYPE_BF16 ? 1.0 / 128 : dt == FA_DTYPE_F16 ? 1.0 / 1024 : 1.0 / 65536;
    g.tol = 4 * eps * g.scale + 1e-4;
    g.fail = g.canary || g.nan || g.maxerr > g.tol || g.rms_err > eps * g.rms_ref + 1e-5;
    return g;
}

/* Returns the number of failures. */
static int run_case(int gpu, const bcase *c, int repeat, const vspec *vs)
{
    const int64_t es = elem_size(c->dt);
    seqmeta m;
    memset(&m, 0, sizeof m);
    if (vs && vs->lq) {
        m.varlen = 1;
        for (int x = 0; x < c->b; x++) m.cu_q[x + 1] = m.cu_q[x] + vs->lq[x], m.cu_k[x + 1] = m.cu_k[x] + vs->lk[x];
        m.total_q = m.cu_q[c->b], m.total_k = m.cu_k[c->b];
        m.h_cu_q = m.cu_q, m.h_cu_k = m.cu_k;
        m.d_cu_q = up(m.cu_q, sizeof(int32_t) * (size_t)(c->b + 1));
        m.d_cu_k = up(m.cu_k, sizeof(int32_t) * (size_t)(c->b + 1));
    }
    if (vs && vs->used) {
        for (int x = 0; x < c->b; x++) m.used[x] = vs->used[x];
        m.h_used = m.used;
        m.d_used = up(m.used, sizeof(int32_t) * (size_t)c->b);
    }
    const int64_t rq = m.varlen ? m.total_q : (int64_t)c->b * c->sq, rk = m.varlen ? m.total_k : (int64_t)c->b * c->sk;
    const int64_t nq = rq * c->hq * c->d, nk = rk * c->hk * c->d;
    const int64_t nv = rk * c->hk * c->dv, no = rq * c->hq * c->dv;
    const int64_t nl = rq * c->hq;
    const int64_t ng[3] = {nq, nk, nv}; /* dq, dk, dv */
    unsigned char *q = xmalloc(es * nq), *k = xmalloc(es * nk), *v = xmalloc(es * nv), *dout = xmalloc(es * no);
    unsigned char *out = xmalloc(es * no), *ref[3], *got[3], *again = xmalloc(es * (nq > nk ? (nq > nv ? nq : nv) : (nk > nv ? nk : nv)));
    float *lse = xmalloc(4 * nl), slopes[64];
    for (int i = 0; i < 3; i++) ref[i] = xmalloc(es * ng[i]), got[i] = xmalloc(es * (ng[i] + 2 * CANARY));
    fill(q, nq, c->dt), fill(k, nk, c->dt), fill(v, nv, c->dt), fill(dout, no, c->dt);
    for (int h = 0; h < c->hq && h < 64; h++) slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / c->hq);

    fa_attn_desc d;
    desc_for(c, &d, &m);
    fa_plan *pg;
    if ((g_bwd_tile.block_q > 0 ? fa_plan_create_with_configs(&pg, gpu, &d, NULL, &g_bwd_tile)
                                : fa_plan_create(&pg, gpu, &d)) != FA_OK) {
        printf("  UNSUP %s\n", fa_last_error());
        return 1;
    }
    char text[4096];
    fa_plan_describe(pg, text, sizeof text);

    /* forward on the GPU: out and LSE for both backward passes */
    CUdeviceptr dq_ = up(q, es * nq), dk_ = up(k, es * nk), dv_ = up(v, es * nv), ddo = up(dout, es * no);
    CUdeviceptr dsl = up(slopes, sizeof slopes), dout_o, dl;
    CK(api.cuMemAlloc(&dout_o, es * no));
    CK(api.cuMemAlloc(&dl, 4 * nl));
    fa_fwd_args f;
    memset(&f, 0, sizeof f);
    f.q = qt(c, &m, (void *)dq_, c->hq, c->d);
    f.k = kt(c, &m, (void *)dk_, c->d);
    f.v = kt(c, &m, (void *)dv_, c->dv);
    f.out = qt(c, &m, (void *)dout_o, c->hq, c->dv);
    f.lse = lset(c, &m, (void *)dl);
    if (m.varlen) f.cu_seqlens_q = (const int32_t *)m.d_cu_q, f.cu_seqlens_k = (const int32_t *)m.d_cu_k;
    if (m.h_used) f.seqused_k = (const int32_t *)m.d_used;
    f.dropout_seed = DROP_SEED, f.dropout_offset = DROP_OFFSET;
    if (c->alibi) {
        int64_t shape[1] = {c->hq};
        f.alibi_slopes = fa_tensor_contiguous((void *)dsl, FA_DTYPE_F32, 1, shape);
    }
    FK(fa_fwd(pg, &f, NULL));
    CK(api.cuCtxSynchronize());
    CK(api.cuMemcpyDtoH(out, dout_o, es * no));
    CK(api.cuMemcpyDtoH(lse, dl, 4 * nl));

    /* backward on the GPU into poisoned buffers with canaries */
    CUdeviceptr gbuf[3];
    for (int i = 0; i < 3; i++) {
        memset(got[i], 0xff, es * (ng[i] + 2 * CANARY));
        gbuf[i] = up(got[i], es * (ng[i] + 2 * CANARY));
    }
    void *gt[9] = {(void *)dq_, (void *)dk_, (void *)dv_, (void *)dout_o, (void *)ddo, (void *)dl,
                   (void *)(gbuf[0] + es * CANARY), (void *)(gbuf[1] + es * CANARY), (void *)(gbuf[2] + es * CANARY)};
    fa_bwd_args g;
    bwd_args_for(c, &m, 1, &g, gt, (float *)dsl);
    FK(fa_bwd(pg, &g, NULL));
    CK(api.cuCtxSynchronize());
    for (int i = 0; i < 3; i++) CK(api.cuMemcpyDtoH(got[i], gbuf[i], es * (ng[i] + 2 * CANARY)));

    /* the CPU backward on the same inputs and the GPU's out and LSE */
    fa_plan *pc;
    FK(fa_plan_create(&pc, 0, &d));
    void *ct[9] = {q, k, v, out, dout, lse, ref[0], ref[1], ref[2]};
    fa_bwd_args a;
    bwd_args_for(c, &m, 0, &a, ct, slopes);
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
            CK(api.cuMemcpyDtoH(again, gbuf[i] + es * CANARY, es * ng[i]));
            if (memcmp(again, got[i] + es * CANARY, es * ng[i]) != 0) {
                bitdiff = 1;
                printf("    repeat %d: d%s differs from the first run\n", r + 1, i == 0 ? "q" : i == 1 ? "k" : "v");
            }
        }
    }
    fails += bitdiff;
    const char *nm[3] = {"dq", "dk", "dv"};
    printf("%-4s %-4s b%d sq%-4d sk%-4d h%d/%d d%d/%d causal=%d win=%d/%d cap=%g alibi=%d det=%d dropout=%g",
           fails ? "FAIL" : "PASS", c->dt == FA_DTYPE_BF16 ? "bf16" : c->dt == FA_DTYPE_F16 ? "fp16" : "fp32", c->b, c->sq,
           c->sk, c->hq, c->hk, c->d, c->dv, c->causal, c->wl, c->wr, c->softcap, c->alibi, c->deterministic, (double)g_dropout);
    if (m.varlen) {
        printf("\n       varlen lengths q/k:");
        for (int x = 0; x < c->b; x++) printf(" %d/%d", vs->lq[x], vs->lk[x]);
    }
    if (m.h_used) {
        printf("\n       seqused_k:");
        for (int x = 0; x < c->b; x++) printf(" %d", m.used[x]);
    }
    if (repeat) printf(bitdiff ? "  repeats DIFFER" : "  %d repeats bit-equal", repeat);
    fa_tile_config bt;
    if (fa_plan_bwd_config(pg, &bt) == FA_OK)
        printf("  bwd tile %dx%d %dw%s", bt.block_q, bt.block_kv, bt.warps, g_bwd_tile.block_q > 0 ? " (forced)" : "");
    printf("\n");
    for (int i = 0; i < 3; i++)
        printf("       %s: max|gpu-cpu| %.2e (tol %.2e, max|cpu| %.2e), rms err/ref %.2e%s%s%s\n", nm[i], s[i].maxerr,
               s[i].tol, s[i].scale, s[i].rms_ref > 0 ? s[i].rms_err / s[i].rms_ref : 0.0, s[i].nan ? ", NaN" : "",
               s[i].canary ? ", CANARY OVERWRITTEN" : "", s[i].fail ? "  <-- FAIL" : "");
    if (fails) printf("    %s\n", text);

    api.cuMemFree(dq_), api.cuMemFree(dk_), api.cuMemFree(dv_), api.cuMemFree(ddo), api.cuMemFree(dsl);
    api.cuMemFree(dout_o), api.cuMemFree(dl);
    if (m.d_cu_q) api.cuMemFree(m.d_cu_q), api.cuMemFree(m.d_cu_k);
    if (m.d_used) api.cuMemFree(m.d_used);
    for (int i = 0; i < 3; i++) api.cuMemFree(gbuf[i]), free(ref[i]), free(got[i]);
    fa_plan_destroy(pg);
    free(q), free(k), free(v), free(dout), free(out), free(again), free(lse);
    return fails;
}

int main(void)
{
    fa_device_props props;
    const int gpu = first_cuda_device(&props);
    if (gpu < 0) return 77;
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
        /* the SIMT backward (bwd_f32.cu): fp32, and 16-bit head dims the mma.sync backward does not take */
        {FA_DTYPE_F32, 2, 256, 256, 4, 4, 128, 128, 0, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_F32, 1, 300, 517, 8, 2, 64, 64, 1, -1, -1, 0.0f, 0, 1},  /* GQA 4:1, sq != sk */
        {FA_DTYPE_F32, 1, 517, 300, 8, 1, 64, 64, 1, -1, -1, 0.0f, 0, 0},  /* MQA; rows that see no key */
        {FA_DTYPE_F32, 1, 333, 333, 4, 4, 128, 64, 0, 64, 32, 0.0f, 0, 0}, /* window, dv < dqk */
        {FA_DTYPE_F32, 1, 129, 257, 4, 4, 96, 96, 0, -1, -1, 30.0f, 1, 0}, /* softcap + ALiBi */
        {FA_DTYPE_F32, 1, 200, 333, 4, 2, 36, 100, 0, 100, 20, 0.0f, 1, 1}, /* odd dims, ALiBi, window */
        {FA_DTYPE_F32, 2, 160, 160, 4, 2, 256, 256, 1, -1, -1, 0.0f, 0, 1}, /* d256 */
        {FA_DTYPE_F16, 2, 160, 200, 4, 2, 256, 256, 1, -1, -1, 0.0f, 0, 1}, /* d256 (now the mma.sync one) */
        {FA_DTYPE_BF16, 1, 200, 333, 4, 4, 200, 72, 0, -1, -1, 0.0f, 1, 0}, /* d200/72 */
        {FA_DTYPE_F16, 1, 129, 129, 4, 4, 59, 111, 1, -1, -1, 0.0f, 0, 0},  /* dims not multiples of 16 */
        /* the mma.sync backward above d128: pairs of warps, each with part of the dK/dV (dQ) columns */
        {FA_DTYPE_BF16, 2, 256, 256, 4, 4, 256, 256, 0, -1, -1, 0.0f, 0, 0},
        {FA_DTYPE_F16, 2, 256, 256, 4, 4, 256, 256, 1, -1, -1, 0.0f, 0, 1},
        {FA_DTYPE_BF16, 1, 300, 517, 8, 2, 192, 192, 1, -1, -1, 0.0f, 0, 0},   /* GQA 4:1, sq != sk */
        {FA_DTYPE_F16, 1, 517, 300, 8, 1, 160, 160, 1, -1, -1, 0.0f, 0, 1},   /* MQA; rows that see no key */
        {FA_DTYPE_BF16, 1, 333, 333, 4, 4, 256, 128, 0, 64, 32, 0.0f, 0, 0},  /* window, dv < dqk */
        {FA_DTYPE_F16, 1, 129, 257, 4, 4, 192, 192, 0, -1, -1, 30.0f, 1, 0},  /* softcap + ALiBi */
        {FA_DTYPE_BF16, 1, 200, 333, 4, 2, 128, 256, 0, 100, 20, 0.0f, 1, 1}, /* dv > dqk, ALiBi, window */
        {FA_DTYPE_F16, 2, 190, 190, 4, 4, 176, 176, 0, 37, -1, 0.0f, 0, 1},   /* odd count of 16-column pairs */
        {FA_DTYPE_BF16, 1, 1000, 1000, 8, 2, 256, 256, 1, -1, -1, 0.0f, 1, 1}, /* GQA + ALiBi, deterministic */
        {FA_DTYPE_F16, 3, 1, 1000, 8, 2, 224, 224, 0, -1, -1, 50.0f, 0, 0},   /* one query row, softcap */
    };
    int fails = 0, n = (int)(sizeof cases / sizeof *cases);
    /* FA_CHECK_REPEATS=0 skips the bit-equality repeats (for compute-sanitizer, which is slow) */
    const char *rep_env = getenv("FA_CHECK_REPEATS");
    int repeats = rep_env && *rep_env ? atoi(rep_env) : REPEATS;
    for (int i = 0; i < n; i++) fails += run_case(gpu, &cases[i], cases[i].deterministic ? repeats : 0, NULL);
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
        /* head dims over 128 (pairs of warps; before them the SIMT backward took these) */
        {{FA_DTYPE_BF16, 1, 113, 203, 4, 2, 160, 160, 1, -1, -1, 0.0f, 0, 1}, 0.2f},
        {{FA_DTYPE_BF16, 2, 256, 256, 4, 4, 256, 256, 0, -1, -1, 0.0f, 0, 0}, 0.1f},
        {{FA_DTYPE_F16, 2, 256, 256, 4, 4, 192, 192, 1, -1, -1, 0.0f, 0, 1}, 0.3f},   /* deterministic */
        {{FA_DTYPE_F16, 1, 300, 517, 8, 2, 256, 256, 1, -1, -1, 0.0f, 0, 0}, 0.2f},   /* GQA 4:1, sq != sk */
        {{FA_DTYPE_BF16, 1, 129, 257, 4, 4, 192, 64, 0, -1, -1, 30.0f, 1, 1}, 0.2f},  /* softcap + ALiBi, dv < dqk */
    };
    int nd = (int)(sizeof dcases / sizeof *dcases);
    for (int i = 0; i < nd; i++) {
        g_dropout = dcases[i].p;
        fails += run_case(gpu, &dcases[i].c, dcases[i].c.deterministic ? repeats : 0, NULL);
    }
    g_dropout = 0.0f;
    n += nd;

    /*
     * The 4-warp, 32-key tile of head dims over 128 (the one that fits sm_86/89's 99 KB), forced: an H100's
     * planner takes 8 warps and 64 keys. Both dQ modes, GQA, causal, dropout, softcap.
     */
    static const struct {
        bcase c;
        float p;
        fa_tile_config t;
    } tcases[] = {
        {{FA_DTYPE_BF16, 1, 300, 517, 8, 2, 240, 240, 1, -1, -1, 0.0f, 0, 0}, 0.0f, {32, 32, 4, 2, 1}},
        {{FA_DTYPE_F16, 2, 256, 256, 4, 4, 192, 192, 1, -1, -1, 0.0f, 0, 1}, 0.2f, {64, 32, 4, 2, 1}},
        {{FA_DTYPE_BF16, 1, 129, 257, 4, 2, 160, 160, 0, -1, -1, 30.0f, 1, 1}, 0.0f, {32, 32, 4, 2, 1}},
        {{FA_DTYPE_F16, 1, 200, 333, 4, 2, 256, 256, 1, -1, -1, 0.0f, 0, 0}, 0.1f, {32, 64, 8, 2, 1}},
    };
    int nt = (int)(sizeof tcases / sizeof *tcases);
    for (int i = 0; i < nt; i++) {
        g_dropout = tcases[i].p, g_bwd_tile = tcases[i].t;
        fails += run_case(gpu, &tcases[i].c, tcases[i].c.deterministic ? repeats : 0, NULL);
    }
    g_dropout = 0.0f;
    memset(&g_bwd_tile, 0, sizeof g_bwd_tile);
    n += nt;

    /*
     * varlen (cu_seqlens_q/k): sequences of different lengths (c.b sequences, c.sq/c.sk the largest), and
     * seqused_k on a dense cache, where keys past seqused_k[b] must get dK = dV = 0 (the CPU writes zeros;
     * the GPU's buffers start as NaN, so a key left unwritten fails).
     */
    static const int lq0[] = {100, 1, 300, 77}, lk0[] = {100, 1, 300, 77};
    static const int lq1[] = {129, 200, 5}, lk1[] = {300, 150, 64};   /* sq > sk: rows that see no key */
    static const int lq2[] = {256, 33, 190}, lk2[] = {256, 33, 190};
    static const int lq3[] = {64, 128, 300, 17, 129}, lk3[] = {700, 128, 65, 17, 200};
    static const int used0[] = {250, 1, 137}, used1[] = {300, 64, 200, 0};
    static const struct {
        bcase c;
        vspec v;
        float p;
    } vcases[] = {
        {{FA_DTYPE_BF16, 4, 300, 300, 4, 4, 64, 64, 0, -1, -1, 0.0f, 0, 0}, {lq0, lk0, NULL}, 0.0f},
        {{FA_DTYPE_F16, 4, 300, 300, 4, 4, 64, 64, 0, -1, -1, 0.0f, 0, 1}, {lq0, lk0, NULL}, 0.0f}, /* deterministic */
        {{FA_DTYPE_F16, 3, 200, 300, 8, 2, 128, 128, 1, -1, -1, 0.0f, 0, 1}, {lq1, lk1, NULL}, 0.0f}, /* causal, GQA */
        {{FA_DTYPE_BF16, 3, 200, 300, 8, 2, 128, 128, 1, -1, -1, 0.0f, 0, 0}, {lq1, lk1, NULL}, 0.0f},
        {{FA_DTYPE_BF16, 3, 256, 256, 4, 1, 128, 64, 0, 32, 16, 0.0f, 0, 0}, {lq2, lk2, NULL}, 0.0f}, /* window, MQA */
        {{FA_DTYPE_F16, 3, 256, 256, 4, 1, 128, 64, 0, 32, 16, 0.0f, 0, 1}, {lq2, lk2, NULL}, 0.0f},
        {{FA_DTYPE_BF16, 5, 300, 700, 6, 3, 96, 96, 1, -1, -1, 30.0f, 1, 1}, {lq3, lk3, NULL}, 0.0f}, /* softcap+ALiBi */
        {{FA_DTYPE_F16, 5, 300, 700, 6, 3, 64, 64, 0, 100, -1, 0.0f, 0, 0}, {lq3, lk3, NULL}, 0.0f}, /* left window */
        {{FA_DTYPE_BF16, 4, 300, 300, 4, 2, 64, 64, 1, -1, -1, 0.0f, 0, 1}, {lq0, lk0, NULL}, 0.2f}, /* dropout */
        {{FA_DTYPE_F16, 4, 300, 300, 4, 2, 64, 64, 0, -1, -1, 0.0f, 0, 0}, {lq0, lk0, NULL}, 0.1f},
        /* seqused_k on a dense (batch, seqlen_k) cache */
        {{FA_DTYPE_BF16, 3, 128, 300, 4, 4, 64, 64, 0, -1, -1, 0.0f, 0, 0}, {NULL, NULL, used0}, 0.0f},
        {{FA_DTYPE_F16, 3, 128, 300, 4, 4, 64, 64, 0, -1, -1, 0.0f, 0, 1}, {NULL, NULL, used0}, 0.0f},
        {{FA_DTYPE_F16, 4, 100, 300, 8, 2, 128, 128, 1, -1, -1, 0.0f, 0, 1}, {NULL, NULL, used1}, 0.0f}, /* causal, GQA */
        {{FA_DTYPE_BF16, 4, 100, 300, 8, 2, 128, 128, 0, 50, 10, 0.0f, 0, 0}, {NULL, NULL, used1}, 0.0f}, /* window */
        /* the SIMT backward: fp32 varlen, seqused_k */
        {{FA_DTYPE_F32, 3, 200, 300, 8, 2, 128, 128, 1, -1, -1, 0.0f, 0, 1}, {lq1, lk1, NULL}, 0.0f},
        {{FA_DTYPE_F32, 5, 300, 700, 6, 3, 96, 96, 1, -1, -1, 30.0f, 1, 1}, {lq3, lk3, NULL}, 0.0f},
        {{FA_DTYPE_F32, 4, 100, 300, 8, 2, 128, 128, 1, -1, -1, 0.0f, 0, 1}, {NULL, NULL, used1}, 0.0f},
        /* head dims over 128 (pairs of warps) */
        {{FA_DTYPE_F16, 3, 200, 300, 8, 2, 192, 192, 1, -1, -1, 0.0f, 0, 1}, {lq1, lk1, NULL}, 0.0f},
        {{FA_DTYPE_BF16, 3, 200, 300, 8, 2, 256, 256, 1, -1, -1, 0.0f, 0, 0}, {lq1, lk1, NULL}, 0.0f}, /* causal, GQA */
        {{FA_DTYPE_BF16, 3, 256, 256, 4, 1, 224, 224, 0, 32, 16, 0.0f, 0, 1}, {lq2, lk2, NULL}, 0.0f}, /* window, MQA */
        {{FA_DTYPE_F16, 5, 300, 700, 6, 3, 160, 160, 1, -1, -1, 30.0f, 1, 0}, {lq3, lk3, NULL}, 0.0f}, /* softcap+ALiBi */
        {{FA_DTYPE_BF16, 4, 300, 300, 4, 2, 256, 256, 1, -1, -1, 0.0f, 0, 1}, {lq0, lk0, NULL}, 0.2f}, /* dropout */
        {{FA_DTYPE_F16, 4, 100, 300, 8, 2, 256, 256, 1, -1, -1, 0.0f, 0, 1}, {NULL, NULL, used1}, 0.0f}, /* seqused_k */
        {{FA_DTYPE_BF16, 3, 128, 300, 4, 4, 160, 160, 0, -1, -1, 0.0f, 0, 0}, {NULL, NULL, used0}, 0.0f},
    };
    int nv = (int)(sizeof vcases / sizeof *vcases);
    for (int i = 0; i < nv; i++) {
        g_dropout = vcases[i].p;
        fails += run_case(gpu, &vcases[i].c, vcases[i].c.deterministic ? repeats : 0, &vcases[i].v);
    }
    g_dropout = 0.0f;
    n += nv;
    printf("%d case(s), %d failure(s)\n", n, fails);
    CK(api.cuCtxPopCurrent(&ctx));
    return fails ? 1 : 0;
}
