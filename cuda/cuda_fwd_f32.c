/*
 * The exact fp32 forward on the host ("fp32 SIMT", kernels/fwd_f32.cu): its kernel family (tiles, shared
 * memory, registers), its compile per plan (NVRTC, disk cache) and its launch. CUDA-core FMAs only: tf32
 * tensor cores would not meet the conformance bound (2x a naive fp32 implementation's error vs float64).
 *
 * Covers causal/window, softcap, ALiBi, GQA/MQA, dv != dqk, head dims 1-256, LSE, varlen (cu_seqlens),
 * paged KV and seqused_k, dropout (the library's Philox mask), split-KV (a num_splits hint, or the planner's
 * own splits for decode: fa_gpu_simt_split_ok) with the combine kernel of the same module, and KV-cache append
 * with rotary: the append kernel (cuda_append.c, kernels/append_sm80.cu with FA_STORAGE=0) runs first on the
 * same stream, as for fp16/bf16.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_module.h"

extern const char fa_cuda_src_fwd_f32[]; /* cuda/kernels/fwd_f32.cu, embedded by the build */

/* The kernel's parameter block; field for field struct fa_cuda_fwd_f32_params in kernels/fwd_f32.cu. */
typedef struct f32_params {
    fa_gpu_fwd_io io; /* the leading fields of struct fa_cuda_fwd_f32_params */
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int window_left, window_right;
    float scale, softcap;
    int vec_qk, vec_v;
    fa_gpu_fwd_tail tail; /* split partials, dropout key */
} f32_params;

struct cuda_fwd_f32_state {
    CUmodule module;
    CUfunction fn;
    CUfunction combine; /* split plans: merges the partials (fa_combine_f32, same module) */
    int smem;
    int from_cache;
    double compile_ms;
    char options[448];          /* 12 options of up to 31 characters, spaced */
    cuda_append_state *append;  /* NULL unless desc.seqlen_new > 0 */
};

enum { F32_THREADS = 256 };

/* The kernel's staged widths (fwd_f32.cu: DQK4, QSTR, VSTR, PSTR), in floats. */
static int64_t f32_qstr(int64_t dqk)
{
    int64_t d4 = (dqk + 3) / 4 * 4;
    return d4 + ((d4 / 4) % 2 ? 0 : 4);
}

static int64_t f32_smem(const fa_attn_desc *d, const fa_tile_config *c)
{
    int64_t qstr = f32_qstr(d->head_dim_qk), vstr = 64 * ((d->head_dim_v + 63) / 64);
    return 4 * ((int64_t)c->block_q * qstr + (int64_t)c->block_kv * qstr + (int64_t)c->block_kv * vstr +
                (int64_t)c->block_q * (c->block_kv + 4));
}

/* O (rows x float4 groups x 4, twice over in flight), S (rows x keys), addressing: ptxas (sm_90, no spills)
   gives 214 at d256 64x32 (192 here), 128 at d128 64x64 (136), 85 at d256 32x16 (122) */
static int f32_regs(const fa_attn_desc *d, const fa_tile_config *c)
{
    int rpt = c->block_q / 16, nc = c->block_kv / 16, nd4 = (int)((d->head_dim_v + 63) / 64);
    return rpt * nd4 * 8 + rpt * nc + 56;
}

static int f32_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                     size_t why_size)
{
    (void)dev;
    if (c->warps * 32 != F32_THREADS || c->block_q % 16 || c->block_kv % 16) {
        snprintf(why, why_size, "the fp32 SIMT kernel runs 256 threads and multiples of 16 rows and keys");
        return 0;
    }
    return fa_gpu_simt_split_ok(d, c, why, why_size); /* the planner's own splits: decode only */
}

/* fp32 split partials at the start (fa_gpu_fwd_io.c), KV-cache append's area at the end (cuda_append.c) */
static int64_t f32_workspace(const fa_attn_desc *d, const fa_tile_config *c)
{
    return cuda_append_workspace(d, fa_gpu_simt_split_bytes(d, c->num_splits));
}

const fa_kernel_family cuda_fwd_f32_family = {
    .name = "cuda_fwd_f32",
    .pass = FA_PASS_FWD,
    .id = CUDA_KERNEL_FWD_F32,
    .block_q = {32, 64},
    /* 16-key tiles keep d256 within the 99 KB of shared memory of sm_86/sm_89 */
    .block_kv = {16, 32, 64},
    .warps = {8},
    .stages = {1},
    .max_splits = 128,
    .smem_bytes = f32_smem,
    .regs_per_thread = f32_regs,
    .valid = f32_valid,
    .workspace_bytes = f32_workspace,
};

fa_status cuda_fwd_f32_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_fwd_f32_state **out)
{
    const cuda_device *dev = &c->dev[plan->backend_device];
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->fwd_config;
    *out = NULL;
    cuda_fwd_f32_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cuda: no memory for a plan");
    char o[1 + FA_GPU_FWD_DEFINES][32];
    snprintf(o[0], sizeof o[0], "-arch=sm_%d%d", dev->cc_major, dev->cc_minor);
    fa_gpu_fwd_defines(plan, o + 1); /* o[1..11]: the defines both plugins' forward kernels share */
    const char *opts[] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], "-std=c++17", "-lineinfo", o[10],
                          o[11]};
    snprintf(s->options, sizeof s->options, "%s %s %s %s %s %s %s %s %s %s %s %s", o[0], o[1], o[2], o[3], o[4], o[5],
             o[6], o[7], o[8], o[9], o[10], o[11]);

    char why[4096];
    cuda_image img;
    if (cuda_jit_get(&c->api, fa_cuda_src_fwd_f32, "fwd_f32.cu", opts, (int)(sizeof opts / sizeof *opts), 0, &img,
                     why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "cuda: %s", why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    s->smem = (int)f32_smem(d, t);
    /* the combine kernel exists in every module (empty unsplit); split plans launch it */
    static const char *const names[] = {"fa_fwd_f32", "fa_combine_f32"};
    CUfunction fns[2];
    int smem[] = {s->smem, 0};
    const int split = t->num_splits > 1;
    fa_status st = cuda_module_open(c, plan->backend_device, &img, "fwd_f32", s->options, &s->module, split ? 2 : 1,
                                    names, fns, smem);
    if (st != FA_OK) {
        free(s);
        return st;
    }
    s->fn = fns[0];
    if (split) s->combine = fns[1];
    st = cuda_append_prepare(c, plan, &s->append); /* KV-cache append (seqlen_new > 0), fp32 elements */
    if (st != FA_OK) {
        cuda_module_close(c, plan->backend_device, s->module);
        free(s);
        return st;
    }
    *out = s;
    return FA_OK;
}

void cuda_fwd_f32_release(cuda_ctx *c, int device, cuda_fwd_f32_state *s)
{
    if (!s) return;
    cuda_append_release(c, device, s->append);
    cuda_module_close(c, device, s->module);
    free(s);
}

size_t cuda_fwd_f32_describe(const cuda_fwd_f32_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "cuda kernel fa_fwd_f32 (fp32 SIMT: CUDA-core FMAs, no tf32), NVRTC %s, ", s->options);
    n = cuda_describe_origin(buf, size, n, s->from_cache, s->compile_ms);
    if (n >= 0 && (size_t)n < size && s->append) {
        n += snprintf(buf + n, size - (size_t)n, "\n");
        if ((size_t)n < size) n += (int)cuda_append_describe(s->append, buf + n, size - (size_t)n);
    }
    return n < 0 ? 0 : (size_t)n;
}

/* 1: rows of this tensor are 16-byte aligned runs of whole float4s (else read element by element). */
static int vec4(const fa_tensor *t, int64_t dim)
{
    if (dim % 4 || (uintptr_t)t->data % 16) return 0;
    for (int i = 0; i < t->rank - 1; i++)
        if (t->stride[i] % 4) return 0;
    return 1;
}

fa_status cuda_fwd_f32_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_fwd_f32_state *s, const fa_fwd_args *a,
                           void *workspace, void *stream)
{
    const fa_attn_desc *d = &plan->desc;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "cuda fwd_f32: the plan has no compiled kernel");
    if ((uintptr_t)a->q.data % 4 || (uintptr_t)a->k.data % 4 || (uintptr_t)a->v.data % 4 || (uintptr_t)a->out.data % 4)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda fwd_f32 needs q, k, v and out 4-byte aligned");
    f32_params p;
    memset(&p, 0, sizeof p);
    fa_status st = fa_gpu_fwd_io_fill(plan, a, "cuda fwd_f32", &p.io);
    if (st != FA_OK) return st;
    p.vec_qk = vec4(&a->q, d->head_dim_qk) && vec4(&a->k, d->head_dim_qk);
    p.vec_v = vec4(&a->v, d->head_dim_v) && vec4(&a->out, d->head_dim_v);
    p.seqlen_q = (int)d->seqlen_q, p.seqlen_k = (int)d->seqlen_k;
    p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.window_left = (int)plan->window_left, p.window_right = (int)plan->window_right;
    p.scale = plan->scale;
    p.softcap = d->softcap;
    st = fa_gpu_fwd_tail_fill(plan, a, workspace, "cuda fwd_f32", &p.tail);
    if (st != FA_OK) return st;

    const int bq = plan->fwd_config.block_q, splits = p.tail.num_splits > 1 ? p.tail.num_splits : 1;
    unsigned gx = (unsigned)((d->seqlen_q + bq - 1) / bq), gy = (unsigned)d->heads_q;
    unsigned gz = (unsigned)(d->batch * splits);
    if (gy > 65535 || gz > 65535)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda fwd_f32: %u heads and %u batch x splits must be at most 65535", gy,
                            gz);
    if (s->append) {
        /* KV-cache append first, on the same stream; the forward then reads q and the key counts it leaves */
        cuda_append_out ao;
        st = cuda_append_run(c, plan, s->append, a, workspace, stream, &ao);
        if (st != FA_OK) return st;
        p.io.q = ao.q, p.io.q_sb = ao.q_sb, p.io.q_ss = ao.q_ss, p.io.q_sh = ao.q_sh, p.io.seqused_k = ao.seqused_k;
        /* the rotated copy is contiguous: float4 rows where dqk is a multiple of 4 and its base 16-byte aligned */
        if (ao.q != a->q.data)
            p.vec_qk = d->head_dim_qk % 4 == 0 && (uintptr_t)ao.q % 16 == 0 && vec4(&a->k, d->head_dim_qk);
    }
    if (gx == 0 || gz == 0) return FA_OK;
    void *args[] = {&p};
    st = cuda_ctx_push(c, plan->backend_device);
    if (st != FA_OK) return st;
    CUresult r = c->api.cuLaunchKernel(s->fn, gx, gy, gz, F32_THREADS, 1, 1, (unsigned)s->smem, (CUstream)stream,
                                       args, NULL);
    const char *what = "fa_fwd_f32";
    if (r == 0 && splits > 1) {
        /* 16 lanes per (row, query head), 16 to a block */
        unsigned blocks = (unsigned)(((int64_t)p.tail.part_rows * d->heads_q + 15) / 16);
        if (blocks) r = c->api.cuLaunchKernel(s->combine, blocks, 1, 1, F32_THREADS, 1, 1, 0, (CUstream)stream, args, NULL);
        what = "fa_combine_f32";
    }
    cuda_ctx_pop(c);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: launching %s: %s", what, cuda_error_string(&c->api, r));
    return FA_OK;
}
