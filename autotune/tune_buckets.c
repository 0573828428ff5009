/* The buckets flashport-tune measures and their representative problems (tune_buckets.h). */
#include "tune_buckets.h"

#include <stdio.h>
#include <string.h>

/*
 * The check problem's query rows and keys. Its float64 reference (forward + naive) should stay near 1 GFLOP
 * (0.4 for the backward), but every candidate of the bucket must also be a candidate of the check problem: the
 * planner drops tiles taller than the problem, so a check with fewer query rows than the largest block_q of any
 * family (512, the CPU's) rejects those tiles without running them (a first GPU run rejected every 128-row tile
 * at s16384 that way). So the rows stay at min(seqlen_q, CHECK_MIN_ROWS) and the keys shrink instead, never
 * below the rows (a causal mask then still has a full triangle) nor below one 1024-key stretch of tiles; the
 * kernels are not specialised on the key count, only split-KV depends on it, and decode buckets (one query row)
 * keep every key.
 */
#define CHECK_MIN_ROWS 512

static void check_shape(const fa_attn_desc *d, int bwd, int *rows_out, int *keys_out)
{
    const double per_row_key = 4.0 * (double)d->head_dim_qk * (double)(d->heads_q / d->heads_kv);
    const double budget = bwd ? 0.4e9 : 1e9;
    int64_t rows = d->seqlen_q, keys = d->seqlen_k;
    while (rows > CHECK_MIN_ROWS && per_row_key * (double)rows * (double)keys > budget) rows /= 2;
    const int64_t floor_keys = rows > 1024 ? rows : 1024;
    while (keys / 2 >= floor_keys && d->seqlen_q > 1 && per_row_key * (double)rows * (double)keys > budget) keys /= 2;
    *rows_out = (int)rows;
    *keys_out = (int)keys;
}

static void add(tune_spec *out, int *n, int max, fa_dtype dtype, int pass_bwd, int decode, int d, int causal,
                int64_t seq, int64_t batch, int64_t hq, int64_t hk)
{
    if (*n >= max) return;
    tune_spec *s = &out[(*n)++];
    memset(s, 0, sizeof *s);
    fa_attn_desc *x = &s->desc;
    fa_attn_desc_init(x);
    x->dtype = dtype;
    x->batch = batch;
    x->seqlen_q = decode ? 1 : seq;
    x->seqlen_k = seq;
    x->heads_q = hq;
    x->heads_kv = hk;
    x->head_dim_qk = x->head_dim_v = d;
    x->causal = causal;
    x->kv_cache_lengths = decode; /* decode as an inference server runs it: per-sequence cache lengths */
    x->with_backward = pass_bwd;
    x->return_lse = pass_bwd;
    fa_tune_bucket_of(x, &s->bucket);
    double f = 4.0 * (double)batch * (double)hq * (double)x->seqlen_q * (double)seq * d * (causal ? 0.5 : 1.0);
    s->flops = pass_bwd ? 3.5 * f : f;

    conf_case *c = &s->check;
    c->kind = pass_bwd ? CONF_BWD : CONF_FWD;
    c->dtype = dtype;
    c->batch = 1;
    c->hq = (int)(hq / hk);
    c->hk = 1;
    c->dqk = c->dv = d;
    c->causal = causal;
    check_shape(x, pass_bwd, &c->sq, &c->sk);
    if (decode) {
        c->use_kvlen = 1;
        c->kvlen[0] = (int)seq;
    }
    snprintf(c->name, sizeof c->name, "tune check");
}

int tune_bucket_list(const fa_device_props *p, int quick, tune_spec *out, int max)
{
    int n = 0, cpu = p->backend == FA_BACKEND_CPU;
    if (cpu) {
        /* fp32 is the CPU's own arithmetic; tokens per point kept small enough for a 2-core machine */
        if (quick) {
            add(out, &n, max, FA_DTYPE_F32, 0, 0, 64, 0, 256, 4, 4, 4);
            add(out, &n, max, FA_DTYPE_F32, 0, 0, 64, 1, 512, 2, 4, 4);
            add(out, &n, max, FA_DTYPE_F32, 0, 1, 64, 0, 2048, 2, 8, 2);
            add(out, &n, max, FA_DTYPE_F32, 1, 0, 64, 1, 256, 2, 4, 4);
            return n;
        }
        const fa_dtype dts[] = {FA_DTYPE_F32, FA_DTYPE_BF16};
        for (int t = 0; t < 2; t++)
            for (int d = 64; d <= 128; d *= 2)
                for (int64_t s = 512; s <= 2048; s *= 4)
                    for (int c = 0; c <= 1; c++) add(out, &n, max, dts[t], 0, 0, d, c, s, 4096 / s, 1024 / d, 1024 / d);
        for (int64_t kv = 4096; kv <= 16384; kv *= 4)
            for (int g = 4; g <= 8; g *= 2) add(out, &n, max, FA_DTYPE_F32, 0, 1, 128, 0, kv, 4, 32, 32 / g);
        for (int d = 64; d <= 128; d *= 2) add(out, &n, max, FA_DTYPE_F32, 1, 0, d, 1, 1024, 2, 1024 / d, 1024 / d);
        return n;
    }
    /* GPUs: bf16 and fp16 at flashport-bench's shapes (hidden 2048, 16k tokens per point) */
    if (quick) {
        add(out, &n, max, FA_DTYPE_BF16, 0, 0, 128, 1, 1024, 16, 16, 16);
        add(out, &n, max, FA_DTYPE_BF16, 0, 0, 128, 0, 4096, 4, 16, 16);
        add(out, &n, max, FA_DTYPE_BF16, 0, 1, 128, 0, 8192, 16, 32, 8);
        add(out, &n, max, FA_DTYPE_BF16, 1, 0, 128, 1, 1024, 16, 16, 16);
        return n;
    }
    const fa_dtype dts[] = {FA_DTYPE_BF16, FA_DTYPE_F16};
    for (int t = 0; t < 2; t++)
        for (int d = 64; d <= 256; d *= 2)
            for (int64_t s = 1024; s <= 16384; s *= 4)
                for (int c = 0; c <= 1; c++) add(out, &n, max, dts[t], 0, 0, d, c, s, 16384 / s, 2048 / d, 2048 / d);
    for (int64_t kv = 8192; kv <= 131072; kv *= 4)
        for (int g = 4; g <= 8; g *= 2) add(out, &n, max, FA_DTYPE_BF16, 0, 1, 128, 0, kv, 16, 32, 32 / g);
    for (int d = 64; d <= 128; d *= 2)
        for (int c = 0; c <= 1; c++) add(out, &n, max, FA_DTYPE_BF16, 1, 0, d, c, 4096, 4, 2048 / d, 2048 / d);
    return n;
}
