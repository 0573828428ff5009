/*
 * KV-cache append with rotary embedding on the host (flash_attn_with_kvcache): compiles kernels/append_sm80.cu
 * for a plan with desc.seqlen_new > 0 (NVRTC, disk cache) and launches it on the caller's stream just before
 * the forward kernel. It writes k_new/v_new into the cache, the key counts seqused_k[b] + seqlen_new into the
 * workspace and, with rotary, the rotated q into the workspace; the forward then reads q and the key counts
 * from there (cuda_append_run says where).
 *
 * Workspace (the end of the plan's, after whatever the forward family keeps at its start):
 *   int32 lens[batch], padded to 256 bytes; rotary: q_rot (batch, seqlen_q, heads_q, head_dim_qk) in the dtype.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_module.h"

extern const char fa_cuda_src_append_sm80[]; /* cuda/kernels/append_sm80.cu, embedded by the build */

/* The kernel's parameter block; field for field struct fa_cuda_append_params in kernels/append_sm80.cu. */
typedef struct append_params {
    const void *k_new, *v_new, *q;
    void *k, *v;
    void *q_rot;
    int32_t *lens;
    const int32_t *seqused_k;
    const int32_t *block_table;
    const float *cos, *sin;
    int64_t kn_sb, kn_ss, kn_sh, vn_sb, vn_ss, vn_sh;
    int64_t q_sb, q_ss, q_sh;
    int64_t k_sb, k_ss, k_sh, v_sb, v_ss, v_sh;
    int64_t cos_s, sin_s;
    int64_t bt_stride;
    int batch, seqlen_new, seqlen_q, seqlen_k, heads_q, heads_kv, dqk, dv;
    int page_size, num_pages;
    int rotary_dim, interleaved, rotary_seqlen;
    int q_moving;
} append_params;

struct cuda_append_state {
    CUmodule module;
    CUfunction fn;
    int from_cache;
    double compile_ms;
    char options[64];
};

static int64_t round256(int64_t x) { return (x + 255) / 256 * 256; }

/* Bytes the append adds at the end of the plan's workspace (a multiple of 256). */
static int64_t append_bytes(const fa_attn_desc *d)
{
    if (d->seqlen_new <= 0) return 0;
    int64_t bytes = round256(4 * d->batch);
    if (d->rotary_dim > 0) bytes += round256(2 * d->batch * d->seqlen_q * d->heads_q * d->head_dim_qk);
    return bytes;
}

int64_t cuda_append_workspace(const fa_attn_desc *d, int64_t own)
{
    int64_t extra = append_bytes(d);
    return extra ? round256(own) + extra : own;
}

fa_status cuda_append_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_append_state **out)
{
    const cuda_device *dev = &c->dev[plan->backend_device];
    const fa_attn_desc *d = &plan->desc;
    *out = NULL;
    if (d->seqlen_new <= 0) return FA_OK;
    cuda_append_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cuda: no memory for an append plan");
    char o[2][32];
    snprintf(o[0], sizeof o[0], "-arch=sm_%d%d", dev->cc_major, dev->cc_minor);
    snprintf(o[1], sizeof o[1], "-DFA_BF16=%d", d->dtype == FA_DTYPE_BF16);
    const char *opts[] = {o[0], o[1], "-std=c++17", "-lineinfo"};
    snprintf(s->options, sizeof s->options, "%s %s", o[0], o[1]);

    char why[4096];
    cuda_image img;
    if (cuda_jit_get(&c->api, fa_cuda_src_append_sm80, "append_sm80.cu", opts, (int)(sizeof opts / sizeof *opts), 0,
                     &img, why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "cuda: %s", why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    static const char *const names[] = {"fa_append_sm80"};
    fa_status st = cuda_module_open(c, plan->backend_device, &img, "append_sm80", s->options, &s->module, 1, names,
                                    &s->fn, NULL);
    if (st != FA_OK) {
        free(s);
        return st;
    }
    *out = s;
    return FA_OK;
}

void cuda_append_release(cuda_ctx *c, int device, cuda_append_state *s)
{
    if (!s) return;
    cuda_module_close(c, device, s->module);
    free(s);
}

size_t cuda_append_describe(const cuda_append_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "cuda kv-cache append fa_append_sm80 (rotary in fp32), NVRTC %s, ", s->options);
    n = cuda_describe_origin(buf, size, n, s->from_cache, s->compile_ms);
    return n < 0 ? 0 : (size_t)n;
}

fa_status cuda_append_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_append_state *s, const fa_fwd_args *a,
                          void *workspace, void *stream, cuda_append_out *out)
{
    const fa_attn_desc *d = &plan->desc;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "cuda append: the plan has no compiled append kernel");
    const int64_t extra = append_bytes(d);
    if (!workspace || (uintptr_t)workspace % 16 || plan->workspace_bytes < extra)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "cuda append: needs its %lld B at the end of the plan's "
                                                     "workspace (16-byte aligned)", (long long)extra);
    if (d->varlen)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda append: varlen q is not supported with desc.seqlen_new");
    char *area = (char *)workspace + (plan->workspace_bytes - extra);

    append_params p;
    memset(&p, 0, sizeof p);
    p.k_new = a->k_new.data, p.v_new = a->v_new.data, p.q = a->q.data;
    p.k = a->k.data, p.v = a->v.data;
    p.lens = (int32_t *)area;
    p.seqused_k = a->seqused_k;
    p.kn_sb = a->k_new.stride[0], p.kn_ss = a->k_new.stride[1], p.kn_sh = a->k_new.stride[2];
    p.vn_sb = a->v_new.stride[0], p.vn_ss = a->v_new.stride[1], p.vn_sh = a->v_new.stride[2];
    p.q_sb = a->q.stride[0], p.q_ss = a->q.stride[1], p.q_sh = a->q.stride[2];
    /* dense (batch, seqlen_k, heads_kv, dim), paged (num_pages, page_size, heads_kv, dim): the same strides */
    p.k_sb = a->k.stride[0], p.k_ss = a->k.stride[1], p.k_sh = a->k.stride[2];
    p.v_sb = a->v.stride[0], p.v_ss = a->v.stride[1], p.v_sh = a->v.stride[2];
    if (d->paged_kv) {
        p.block_table = a->block_table;
        p.bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
        p.page_size = (int)d->page_size, p.num_pages = (int)d->num_pages;
    }
    p.batch = (int)d->batch, p.seqlen_new = (int)d->seqlen_new, p.seqlen_q = (int)d->seqlen_q;
    p.seqlen_k = (int)d->seqlen_k, p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.dqk = (int)d->head_dim_qk, p.dv = (int)d->head_dim_v;
    if (d->rotary_dim > 0) {
        p.q_rot = area + round256(4 * d->batch);
        p.cos = a->rotary_cos.data, p.sin = a->rotary_sin.data;
        p.cos_s = a->rotary_cos.stride[0], p.sin_s = a->rotary_sin.stride[0];
        p.rotary_dim = (int)d->rotary_dim, p.interleaved = d->rotary_interleaved != 0;
        p.rotary_seqlen = (int)d->rotary_seqlen;
        p.q_moving = d->causal || plan->window_left >= 0 || plan->window_right >= 0; /* as cpu_rotary_q_position */
    }

    /* one warp per k/v row and (rotary) per q row; the first batch threads also write lens */
    const int64_t tasks = d->batch * d->seqlen_new * d->heads_kv + (d->rotary_dim > 0 ? d->batch * d->seqlen_q * d->heads_q : 0);
    int64_t threads = tasks * 32 > d->batch ? tasks * 32 : d->batch;
    int64_t blocks = (threads + 127) / 128;
    if (blocks > 0x7fffffff)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda append: %lld rows are more than one grid holds", (long long)tasks);

    fa_status st = cuda_ctx_push(c, plan->backend_device);
    if (st != FA_OK) return st;
    void *args[] = {&p};
    CUresult r = c->api.cuLaunchKernel(s->fn, (unsigned)blocks, 1, 1, 128, 1, 1, 0, (CUstream)stream, args, NULL);
    cuda_ctx_pop(c);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: launching fa_append_sm80: %s", cuda_error_string(&c->api, r));

    out->seqused_k = p.lens;
    out->q = a->q.data;
    out->q_sb = a->q.stride[0], out->q_ss = a->q.stride[1], out->q_sh = a->q.stride[2];
    if (p.q_rot) {
        /* the rotated copy, contiguous: 16-byte aligned rows where head_dim_qk is a multiple of 8 (else the
           forward reads it element by element) */
        out->q = p.q_rot;
        out->q_sh = d->head_dim_qk, out->q_ss = d->heads_q * d->head_dim_qk, out->q_sb = d->seqlen_q * out->q_ss;
    }
    return FA_OK;
}
