/* Timing candidates on a bucket's representative problem (tune_measure.h). */
#include "tune_measure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_buffers.h"
#include "bench_timing.h"

#define MAX_SETS 8

typedef struct tset {
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv, *lse;
} tset;

struct tune_bench {
    int device;
    fa_attn_desc desc;
    bench_mem mem;
    int sets;
    tset set[MAX_SETS];
    void *seqused;
};

void tune_bench_free(tune_bench *b)
{
    if (!b) return;
    for (int s = 0; s < b->sets; s++) {
        void *all[] = {b->set[s].q, b->set[s].k, b->set[s].v, b->set[s].out, b->set[s].dout,
                       b->set[s].dq, b->set[s].dk, b->set[s].dv, b->set[s].lse};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) bench_mem_free(&b->mem, all[i]);
    }
    bench_mem_free(&b->mem, b->seqused);
    bench_mem_done(&b->mem);
    free(b);
}

tune_bench *tune_bench_create(int device, const fa_device_props *props, const fa_attn_desc *d, char *err, size_t errlen)
{
    tune_bench *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of host memory");
        return NULL;
    }
    b->device = device;
    b->desc = *d;
    bench_mem_init(&b->mem, device, props->backend == FA_BACKEND_CPU);
    int es = fa_dtype_size(d->dtype), bwd = d->with_backward;
    int64_t nq = d->batch * d->seqlen_q * d->heads_q * d->head_dim_qk, nkv = d->batch * d->seqlen_k * d->heads_kv * d->head_dim_qk;
    int64_t nlse = d->batch * d->heads_q * d->seqlen_q;
    int64_t set_bytes = (2 * nq + 2 * nkv) * es + (bwd ? (3 * nq + 2 * nkv) * es + nlse * 4 : 0);
    /* one round of sets several times the cache a call would otherwise find its inputs in */
    int64_t cache = props->backend == FA_BACKEND_CPU ? props->l3_cache_bytes : props->l2_cache_bytes;
    if (cache <= 0) cache = (int64_t)32 << 20;
    int64_t want = (4 * cache + set_bytes - 1) / set_bytes;
    double budget = props->memory_bytes > 0 ? 0.25 * (double)props->memory_bytes : 4e9;
    int64_t fit = (int64_t)(budget / (double)set_bytes);
    b->sets = (int)(want < 2 ? 2 : want > MAX_SETS ? MAX_SETS : want);
    if (b->sets > fit) b->sets = (int)fit;
    if (b->sets < 1) {
        snprintf(err, errlen, "one input set needs %.1f GB", (double)set_bytes * 1e-9);
        free(b);
        return NULL;
    }
    int ok = 1;
    if (d->kv_cache_lengths) { /* full caches */
        int32_t *len = malloc(sizeof(int32_t) * (size_t)d->batch);
        for (int64_t i = 0; len && i < d->batch; i++) len[i] = (int32_t)d->seqlen_k;
        ok = len && (b->seqused = bench_mem_copy_of(&b->mem, len, d->batch * 4)) != NULL;
        free(len);
    }
    for (int s = 0; ok && s < b->sets; s++) {
        tset *x = &b->set[s];
        uint64_t seed = 1000u * (uint64_t)s;
        ok = (x->q = bench_mem_filled(&b->mem, d->dtype, nq, seed + 1)) &&
             (x->k = bench_mem_filled(&b->mem, d->dtype, nkv, seed + 2)) &&
             (x->v = bench_mem_filled(&b->mem, d->dtype, nkv, seed + 3)) &&
             (x->out = bench_mem_filled(&b->mem, d->dtype, nq, seed + 4)) &&
             (x->lse = bench_mem_filled(&b->mem, FA_DTYPE_F32, nlse, seed + 5));
        if (ok && bwd)
            ok = (x->dout = bench_mem_filled(&b->mem, d->dtype, nq, seed + 6)) &&
                 (x->dq = bench_mem_filled(&b->mem, d->dtype, nq, seed + 7)) &&
                 (x->dk = bench_mem_filled(&b->mem, d->dtype, nkv, seed + 8)) &&
                 (x->dv = bench_mem_filled(&b->mem, d->dtype, nkv, seed + 9));
    }
    if (!ok) {
        snprintf(err, errlen, "%s", b->mem.error[0] ? b->mem.error : "out of host memory");
        tune_bench_free(b);
        return NULL;
    }
    return b;
}

typedef struct call_ctx {
    tune_bench *b;
    const fa_plan *plan;
    void *ws;
    int64_t ws_size;
    int bwd;
} call_ctx;

static void fwd_args(const tune_bench *b, const tset *x, fa_fwd_args *a)
{
    const fa_attn_desc *d = &b->desc;
    memset(a, 0, sizeof *a);
    a->q = fa_tensor_4d(x->q, d->dtype, d->batch, d->seqlen_q, d->heads_q, d->head_dim_qk);
    a->k = fa_tensor_4d(x->k, d->dtype, d->batch, d->seqlen_k, d->heads_kv, d->head_dim_qk);
    a->v = fa_tensor_4d(x->v, d->dtype, d->batch, d->seqlen_k, d->heads_kv, d->head_dim_v);
    a->out = fa_tensor_4d(x->out, d->dtype, d->batch, d->seqlen_q, d->heads_q, d->head_dim_v);
    if (d->return_lse) a->lse = fa_tensor_3d(x->lse, FA_DTYPE_F32, d->batch, d->heads_q, d->seqlen_q);
    a->seqused_k = b->seqused;
}

static fa_status one_call(void *vctx, int call, const char **what)
{
    call_ctx *c = vctx;
    const tune_bench *b = c->b;
    const fa_attn_desc *d = &b->desc;
    const tset *x = &b->set[call % b->sets];
    fa_fwd_args a;
    fwd_args(b, x, &a);
    a.workspace = c->ws;
    a.workspace_size = c->ws_size;
    if (!c->bwd) {
        *what = "fa_fwd";
        return fa_fwd(c->plan, &a, NULL);
    }
    fa_bwd_args ba;
    memset(&ba, 0, sizeof ba);
    ba.q = a.q, ba.k = a.k, ba.v = a.v, ba.out = a.out, ba.lse = a.lse;
    ba.dout = fa_tensor_4d(x->dout, d->dtype, d->batch, d->seqlen_q, d->heads_q, d->head_dim_v);
    ba.dq = fa_tensor_4d(x->dq, d->dtype, d->batch, d->seqlen_q, d->heads_q, d->head_dim_qk);
    ba.dk = fa_tensor_4d(x->dk, d->dtype, d->batch, d->seqlen_k, d->heads_kv, d->head_dim_qk);
    ba.dv = fa_tensor_4d(x->dv, d->dtype, d->batch, d->seqlen_k, d->heads_kv, d->head_dim_v);
    ba.workspace = c->ws;
    ba.workspace_size = c->ws_size;
    *what = "fa_bwd";
    return fa_bwd(c->plan, &ba, NULL);
}

int tune_bench_time(tune_bench *b, const fa_tile_config *fwd, const fa_tile_config *bwd, int time_bwd, int warmup,
                    int repeats, double *seconds, char *err, size_t errlen)
{
    fa_plan *plan = NULL;
    fa_status st = fa_plan_create_with_configs(&plan, b->device, &b->desc, fwd, b->desc.with_backward ? bwd : NULL);
    if (st != FA_OK) {
        snprintf(err, errlen, "plan: %s: %s", fa_status_string(st), fa_last_error());
        return -1;
    }
    call_ctx c = {b, plan, NULL, fa_plan_workspace_size(plan), 0};
    if (c.ws_size > 0 && !(c.ws = bench_mem_uninit(&b->mem, c.ws_size))) {
        snprintf(err, errlen, "workspace: %s", b->mem.error);
        fa_plan_destroy(plan);
        return -1;
    }
    double *times = malloc(sizeof(double) * (size_t)repeats);
    const char *what = "";
    st = times ? FA_OK : FA_ERR_OUT_OF_MEMORY;
    /* the backward reads the forward's real out and LSE: one forward per set first */
    for (int s = 0; time_bwd && st == FA_OK && s < b->sets; s++) st = one_call(&c, s, &what);
    c.bwd = time_bwd;
    if (st == FA_OK) st = bench_time_calls(b->device, warmup, repeats, one_call, &c, times, &what);
    int rc = 0;
    if (st != FA_OK) {
        snprintf(err, errlen, "%s: %s: %s", what, fa_status_string(st), fa_last_error());
        rc = -1;
    } else {
        *seconds = bench_median(times, repeats);
    }
    free(times);
    bench_mem_free(&b->mem, c.ws);
    fa_plan_destroy(plan);
    return rc;
}
