/*
 * The CUDA backward pass on the host: compiles kernels/bwd_sm80.cu for a plan (NVRTC, disk cache) and launches
 * its kernels on the caller's stream: preprocess (D, LSE in log2 units, dQ accumulator zeroed), dK/dV, then the
 * dQ conversion (atomic mode) or the deterministic dQ kernel. The kernel's comment explains the algorithm.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_module.h"

extern const char fa_cuda_src_bwd_sm80[]; /* cuda/kernels/bwd_sm80.cu, embedded by the build */

/* The kernels' parameter block; field for field the struct in kernels/bwd_sm80.cu. */
typedef struct bwd_params {
    const void *q, *k, *v, *out, *dout;
    const float *lse;
    void *dq, *dk, *dv;
    const float *alibi;
    float *delta, *lse2;
    float *dq_acc;
    int64_t q_sb, q_ss, q_sh, k_sb, k_ss, k_sh, v_sb, v_ss, v_sh, o_sb, o_ss, o_sh, do_sb, do_ss, do_sh;
    int64_t dq_sb, dq_ss, dq_sh, dk_sb, dk_ss, dk_sh, dv_sb, dv_ss, dv_sh;
    int64_t lse_sb, lse_sh, lse_ss;
    int64_t alibi_sb;
    int64_t sq_pad;
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int window_left, window_right;
    float scale_log2, scale, softcap;
    uint32_t drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
    const int32_t *cu_q, *cu_k, *seqused_k;
    int64_t ws_head;
    int total_q, total_k;
} bwd_params;

struct cuda_bwd_state {
    CUmodule module;
    CUfunction pre, dkdv, last; /* last: fa_bwd_post_sm80 (atomic) or fa_bwd_dq_sm80 (deterministic) */
    int deterministic;
    int smem_dkdv, smem_dq;
    int threads;
    int from_cache;
    double compile_ms;
    char options[14 * 32];
};

fa_status cuda_bwd_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_bwd_state **out)
{
    const cuda_device *dev = &c->dev[plan->backend_device];
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->bwd_config;
    *out = NULL;
    cuda_bwd_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cuda: no memory for a backward plan");
    s->deterministic = d->deterministic != 0;

    char o[14][32];
    snprintf(o[0], sizeof o[0], "-arch=sm_%d%d", dev->cc_major, dev->cc_minor);
    snprintf(o[1], sizeof o[1], "-DFA_BF16=%d", d->dtype == FA_DTYPE_BF16);
    snprintf(o[2], sizeof o[2], "-DFA_DQK=%d", (int)d->head_dim_qk);
    snprintf(o[3], sizeof o[3], "-DFA_DV=%d", (int)d->head_dim_v);
    snprintf(o[4], sizeof o[4], "-DFA_WARPS=%d", t->warps);
    snprintf(o[5], sizeof o[5], "-DFA_BKV=%d", t->block_kv);
    snprintf(o[6], sizeof o[6], "-DFA_BQ=%d", t->block_q);
    snprintf(o[7], sizeof o[7], "-DFA_DQ_ATOMIC=%d", !s->deterministic);
    snprintf(o[8], sizeof o[8], "-DFA_DROPOUT=%d", d->dropout_p > 0.0f);
    snprintf(o[9], sizeof o[9], "-DFA_VARLEN=%d", d->varlen != 0);
    /* the mask features present, as compile-time switches (as in the forward) */
    snprintf(o[10], sizeof o[10], "-DFA_SOFTCAP=%d", d->softcap > 0.0f);
    snprintf(o[11], sizeof o[11], "-DFA_ALIBI=%d", d->alibi != FA_ALIBI_NONE);
    snprintf(o[12], sizeof o[12], "-DFA_LOCAL=%d", plan->window_left >= 0 || plan->window_right >= 0);
    snprintf(o[13], sizeof o[13], "-DFA_DSPLIT=%d", cuda_bwd_dsplit(d)); /* head dims over 128: warp pairs */
    const char *opts[] = {o[0], o[1], o[2],  o[3],  o[4],  o[5],  o[6],        o[7],
                          o[8], o[9], o[10], o[11], o[12], o[13], "-std=c++17", "-lineinfo"};
    snprintf(s->options, sizeof s->options, "%s %s %s %s %s %s %s %s %s %s %s %s %s %s", o[0], o[1], o[2], o[3], o[4],
             o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12], o[13]);

    char why[4096];
    cuda_image img;
    if (cuda_jit_get(&c->api, fa_cuda_src_bwd_sm80, "bwd_sm80.cu", opts, (int)(sizeof opts / sizeof *opts), 0, &img,
                     why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "cuda: %s", why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    s->threads = t->warps * 32;
    s->smem_dkdv = (int)cuda_bwd_smem_dkdv(d, t);
    s->smem_dq = (int)cuda_bwd_smem_dq(d, t);
    const char *const names[] = {"fa_bwd_pre_sm80", "fa_bwd_dkdv_sm80",
                                 s->deterministic ? "fa_bwd_dq_sm80" : "fa_bwd_post_sm80"};
    const int smem[] = {0, s->smem_dkdv, s->deterministic ? s->smem_dq : 0};
    CUfunction fns[3];
    fa_status st = cuda_module_open(c, plan->backend_device, &img, "bwd_sm80", s->options, &s->module, 3, names, fns,
                                    smem);
    if (st != FA_OK) {
        free(s);
        return st;
    }
    s->pre = fns[0], s->dkdv = fns[1], s->last = fns[2];
    *out = s;
    return FA_OK;
}

void cuda_bwd_release(cuda_ctx *c, int device, cuda_bwd_state *s)
{
    if (!s) return;
    cuda_module_close(c, device, s->module);
    free(s);
}

size_t cuda_bwd_describe(const cuda_bwd_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "cuda backward fa_bwd_pre/dkdv/%s_sm80 (mma.sync m16n8k16, %s), NVRTC %s, ",
                     s->deterministic ? "dq" : "post",
                     s->deterministic ? "deterministic: dQ in its own pass" : "dQ by fp32 atomics", s->options);
    n = cuda_describe_origin(buf, size, n, s->from_cache, s->compile_ms);
    return n < 0 ? 0 : (size_t)n;
}

/* The kernels stage rows with 16-byte copies and store pairs of elements. */
static int aligned(const fa_tensor *t)
{
    if ((uintptr_t)t->data % 16) return 0;
    for (int i = 0; i < t->rank - 1; i++)
        if (t->stride[i] % 8) return 0;
    return 1;
}

static CUresult launch(const cuda_api *api, CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned threads,
                       unsigned smem, void *stream, bwd_params *p)
{
    void *args[] = {p};
    return api->cuLaunchKernel(fn, gx, gy, gz, threads, 1, 1, smem, (CUstream)stream, args, NULL);
}

fa_status cuda_bwd_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_bwd_state *s, const fa_bwd_args *a,
                       void *workspace, void *stream)
{
    const fa_attn_desc *d = &plan->desc;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "cuda bwd: the plan has no compiled backward kernels");
    const fa_tensor *need[] = {&a->q, &a->k, &a->v, &a->out, &a->dout, &a->dq, &a->dk, &a->dv};
    const char *names[] = {"q", "k", "v", "out", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < 8; i++)
        if (!aligned(need[i]))
            return fa_set_error(FA_ERR_UNSUPPORTED, "cuda bwd_sm80 needs %s 16-byte aligned with strides that are "
                                                    "multiples of 8 elements", names[i]);
    if ((uintptr_t)workspace % 16)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda bwd_sm80: workspace=%p must be 16-byte aligned", workspace);
    if (d->batch > 65535 || d->heads_q > 65535)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda bwd_sm80: batch=%lld and heads_q=%lld must be at most 65535 (grid)",
                            (long long)d->batch, (long long)d->heads_q);

    bwd_params p;
    memset(&p, 0, sizeof p);
    p.q = a->q.data, p.k = a->k.data, p.v = a->v.data, p.out = a->out.data, p.dout = a->dout.data;
    p.lse = a->lse.data;
    p.dq = a->dq.data, p.dk = a->dk.data, p.dv = a->dv.data;
    /* (batch, seq, heads, dim); varlen (total, heads, dim) with batch stride 0 (rows found from cu_seqlens) */
    const int qv = d->varlen ? 1 : 0, kv = fa_uses_cu_seqlens_k(d) ? 1 : 0;
    FA_BWD_STRIDES(p, *a, qv, kv);
    if (d->varlen) p.cu_q = a->cu_seqlens_q, p.total_q = (int)d->total_q, p.total_k = (int)d->total_k;
    if (kv) p.cu_k = a->cu_seqlens_k;
    if (d->kv_cache_lengths) p.seqused_k = a->seqused_k;
    if (d->alibi != FA_ALIBI_NONE) {
        const fa_tensor *sl = &a->alibi_slopes;
        if (sl->stride[sl->rank - 1] != 1)
            return fa_set_error(FA_ERR_UNSUPPORTED, "cuda bwd_sm80: alibi_slopes must be contiguous along heads");
        p.alibi = sl->data;
        p.alibi_sb = d->alibi == FA_ALIBI_PER_HEAD ? 0 : sl->stride[0];
    }
    /*
     * workspace: D and LSE * log2e, heads_q * ws_rows rows each, then the dQ accumulator (atomic mode); dense
     * rows are (batch, heads_q, sq_pad), varlen (heads_q, ws_rows) with each sequence padded (seq_of in the kernel)
     */
    const int64_t sq_pad = cuda_bwd_sq_pad(d), rows = d->heads_q * cuda_bwd_ws_rows(d);
    p.delta = workspace;
    p.lse2 = p.delta + rows;
    p.dq_acc = s->deterministic ? NULL : p.lse2 + rows;
    p.sq_pad = sq_pad;
    p.ws_head = d->varlen ? cuda_bwd_ws_rows(d) : sq_pad;
    p.seqlen_q = (int)d->seqlen_q, p.seqlen_k = (int)d->seqlen_k;
    p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.window_left = (int)plan->window_left, p.window_right = (int)plan->window_right;
    p.scale = plan->scale;
    p.scale_log2 = plan->scale * 1.4426950408889634f;
    p.softcap = d->softcap;
    if (d->dropout_p > 0.0f) cuda_dropout_params(d->dropout_p, a->dropout_seed, a->dropout_offset, &p.drop_k0,
                                                 &p.drop_k1, &p.drop_ctr3, &p.drop_threshold, &p.keep_scale);

    const fa_tile_config *t = &plan->bwd_config;
    const unsigned hq = (unsigned)d->heads_q, hk = (unsigned)d->heads_kv, b = (unsigned)d->batch;
    fa_status st = cuda_ctx_push(c, plan->backend_device);
    if (st != FA_OK) return st;
    const char *step = "fa_bwd_pre_sm80";
    CUresult r = launch(&c->api, s->pre, (unsigned)(sq_pad / 4), hq, b, 128, 0, stream, &p);
    if (r == 0) {
        step = "fa_bwd_dkdv_sm80";
        r = launch(&c->api, s->dkdv, (unsigned)((d->seqlen_k + t->block_kv - 1) / t->block_kv), hk, b,
                   (unsigned)s->threads, (unsigned)s->smem_dkdv, stream, &p);
    }
    if (r == 0 && s->deterministic) {
        step = "fa_bwd_dq_sm80";
        r = launch(&c->api, s->last, (unsigned)((d->seqlen_q + t->block_kv - 1) / t->block_kv), hq, b,
                   (unsigned)s->threads, (unsigned)s->smem_dq, stream, &p);
    } else if (r == 0) {
        step = "fa_bwd_post_sm80";
        r = launch(&c->api, s->last, (unsigned)((d->seqlen_q + 3) / 4), hq, b, 128, 0, stream, &p);
    }
    cuda_ctx_pop(c);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: launching %s: %s", step, cuda_error_string(&c->api, r));
    return FA_OK;
}
