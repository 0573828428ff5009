/*
 * The CUDA backend plugin (libflashport_cuda.so): devices from the driver, the selector and kernel families
 * (cuda_select.c), kernels compiled per plan by NVRTC (cuda_jit.c) and launched on the caller's stream.
 * It runs in each device's primary context, the one the CUDA runtime and PyTorch use, so their pointers and
 * streams work as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_module.h"
#include "fa_disk_cache.h"
#include "fa_philox.h"

extern const char fa_cuda_src_fwd_sm80[]; /* cuda/kernels/fwd_sm80.cu, embedded by the build */

/* The kernel's parameter block; field for field the struct in kernels/fwd_sm80.cu. */
typedef struct fwd_params {
    fa_gpu_fwd_io io;
    float *o_part, *lse_part;
    int num_splits, part_rows;
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int window_left, window_right;
    float scale_log2, scale, softcap;
    uint32_t drop_k0, drop_k1, drop_ctr3, drop_threshold;
    float keep_scale;
} fwd_params; /* field for field the kernel's struct fa_cuda_fwd_params (kernels/fwd_sm80.cu) */

void cuda_dropout_params(float p, uint64_t seed, uint64_t offset, uint32_t *k0, uint32_t *k1, uint32_t *ctr3,
                         uint32_t *threshold, float *keep_scale)
{
    const fa_dropout_key k = fa_dropout_key_for(p, seed, offset); /* api/fa_philox.h, shared with OpenCL */
    *k0 = k.k0, *k1 = k.k1, *ctr3 = k.ctr3, *threshold = k.threshold, *keep_scale = k.keep_scale;
}

typedef struct plan_state {
    CUmodule module;
    CUfunction fn;
    CUfunction combine; /* split-KV plans: merges the partials */
    int packed;         /* the decode family: blocks per KV head, query heads packed into rows */
    int smem;
    int threads;
    int from_cache;
    int ptx; /* the module is PTX (cuda_fwd_ptx_arch), JIT-compiled by the driver at load */
    double compile_ms;
    char options[768];
    cuda_bwd_state *bwd; /* NULL unless the plan has a backward family */
    cuda_append_state *append; /* NULL unless desc.seqlen_new > 0 (cuda_append.c) */
    cuda_fwd_f32_state *f32;   /* the fp32 family: its own kernel (cuda_fwd_f32.c); the fields above unused */
    cuda_bwd_f32_state *bwd_f32; /* the SIMT backward family (cuda_bwd_f32.c) instead of bwd */
} plan_state;

static cuda_ctx g_ctx;

static int device_count(void *vctx) { return ((cuda_ctx *)vctx)->ndev; }

static fa_status device_props(void *vctx, int device, fa_device_props *p)
{
    cuda_ctx *c = vctx;
    *p = c->dev[device].props;
    return FA_OK;
}

/*
 * Makes the device's primary context current. It is retained on first use, not at load: listing devices
 * (every fa_device_count) must not create a context, and its memory, on every GPU of the machine.
 */
static fa_status push(cuda_ctx *c, int device)
{
    cuda_device *dv = &c->dev[device];
    pthread_mutex_lock(&c->ctx_lock);
    CUresult r = dv->ctx ? 0 : c->api.cuDevicePrimaryCtxRetain(&dv->ctx, dv->dev);
    pthread_mutex_unlock(&c->ctx_lock);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: cuDevicePrimaryCtxRetain: %s", cuda_error_string(&c->api, r));
    r = c->api.cuCtxPushCurrent(dv->ctx);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: cuCtxPushCurrent: %s", cuda_error_string(&c->api, r));
    return FA_OK;
}

static void pop(cuda_ctx *c)
{
    CUcontext dummy;
    c->api.cuCtxPopCurrent(&dummy);
}

fa_status cuda_ctx_push(cuda_ctx *c, int device) { return push(c, device); }
void cuda_ctx_pop(cuda_ctx *c) { pop(c); }

/* The plan's backward, by the family the selector chose: the sm80 backward or the SIMT one (cuda_bwd_f32.c). */
static fa_status bwd_prepare(cuda_ctx *c, const fa_plan_info *plan, plan_state *s)
{
    if (!plan->bwd_family) return FA_OK;
    if (plan->bwd_family->id == CUDA_KERNEL_BWD_F32) return cuda_bwd_f32_prepare(c, plan, &s->bwd_f32);
    return cuda_bwd_prepare(c, plan, &s->bwd);
}

static fa_status plan_prepare(void *vctx, fa_plan_info *plan)
{
    cuda_ctx *c = vctx;
    cuda_device *dev = &c->dev[plan->backend_device];
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->fwd_config;
    plan_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cuda: no memory for a plan");
    if (plan->fwd_family->id == CUDA_KERNEL_FWD_F32) {
        fa_status fst = cuda_fwd_f32_prepare(c, plan, &s->f32); /* fp32 SIMT forward (cuda_fwd_f32.c) */
        if (fst == FA_OK) fst = bwd_prepare(c, plan, s);
        if (fst != FA_OK) {
            cuda_fwd_f32_release(c, plan->backend_device, s->f32);
            free(s);
            return fst;
        }
        plan->backend_state = s;
        return FA_OK;
    }

    char o_arch[32], o_bf16[24], o_dqk[24], o_dv[24], o_warps[24], o_bkv[24], o_mt[24], o_feat[384];
    /* PTX for a virtual architecture (FLASHPORT_CUDA_ARCH, or compute_75 on Turing), JIT-compiled by the driver */
    const int ptx = cuda_fwd_ptx_arch(dev);
    if (ptx < 0) {
        free(s);
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda: FLASHPORT_CUDA_ARCH must be compute_XY with XY >= 75");
    }
    s->ptx = ptx > 0;
    if (ptx > 0) snprintf(o_arch, sizeof o_arch, "-arch=compute_%d", ptx);
    else snprintf(o_arch, sizeof o_arch, "-arch=sm_%d%d", dev->cc_major, dev->cc_minor);
    snprintf(o_bf16, sizeof o_bf16, "-DFA_BF16=%d", d->dtype == FA_DTYPE_BF16);
    /* the kernel runs padded head dims (multiples of 16) and reads/writes the real ones (fwd_sm80.cu) */
    char o_qkr[32], o_vr[32];
    snprintf(o_dqk, sizeof o_dqk, "-DFA_DQK=%d", (int)cuda_fwd_pad_dim(d->head_dim_qk));
    snprintf(o_dv, sizeof o_dv, "-DFA_DV=%d", (int)cuda_fwd_pad_dim(d->head_dim_v));
    snprintf(o_qkr, sizeof o_qkr, "-DFA_DQK_REAL=%d", (int)d->head_dim_qk);
    snprintf(o_vr, sizeof o_vr, "-DFA_DV_REAL=%d", (int)d->head_dim_v);
    snprintf(o_warps, sizeof o_warps, "-DFA_WARPS=%d", t->warps);
    snprintf(o_bkv, sizeof o_bkv, "-DFA_BKV=%d", t->block_kv);
    snprintf(o_mt, sizeof o_mt, "-DFA_MT=%d", cuda_fwd_m_tiles(t));
    char o_stages[24], o_minb[32];
    snprintf(o_stages, sizeof o_stages, "-DFA_STAGES=%d", t->stages > 1 ? t->stages : 2);
    /* prefill: registers capped so the planner's blocks per SM fit; decode streams keys at ptxas's own count */
    snprintf(o_minb, sizeof o_minb, "-DFA_MIN_BLOCKS=%d",
             plan->fwd_family->id == CUDA_KERNEL_FWD_SM80 ? cuda_fwd_min_blocks(&dev->props, d, t) : 1);
    /* the mask features present, as compile-time switches: a kernel carries code only for what it uses */
    char o_softcap[24], o_alibi[24], o_local[24], o_lazy[24];
    /*
     * Lazy O rescaling pays where registers are the limit (two m-tiles with dv >= 128: 279 -> 302 TFLOP/s at
     * d128) and costs elsewhere (d64 256x64: 254 -> 228; d256: 269 -> 244), bench/NOTES.md section 4d. Decode
     * with the keys across warps takes it too: a warp's few keys a tile (16 at 16x64 over 4 warps) carry the
     * whole O rescale (64 FMUL at d128, a quarter of the loop's instructions) on every tile, where lazily a tile
     * that raises no row's max by 2^8 skips it (sm_90 SASS, one tile: 290 -> 223 instructions); memory bound, it
     * measured level, but the instructions are issue slots beside the copies.
     */
    snprintf(o_lazy, sizeof o_lazy, "-DFA_LAZY=%d",
             (cuda_fwd_m_tiles(t) == 2 && d->head_dim_v >= 128) || cuda_fwd_key_warps(t) > 1);
    snprintf(o_softcap, sizeof o_softcap, "-DFA_SOFTCAP=%d", d->softcap > 0.0f);
    snprintf(o_alibi, sizeof o_alibi, "-DFA_ALIBI=%d", d->alibi != FA_ALIBI_NONE);
    snprintf(o_local, sizeof o_local, "-DFA_LOCAL=%d", plan->window_left >= 0 || plan->window_right >= 0);
    char o_varlen[24], o_paged[24], o_pack[24], o_group[24], o_split[24], o_drop[24];
    snprintf(o_drop, sizeof o_drop, "-DFA_DROPOUT=%d", d->dropout_p > 0.0f);
    snprintf(o_varlen, sizeof o_varlen, "-DFA_VARLEN=%d", d->varlen != 0);
    snprintf(o_paged, sizeof o_paged, "-DFA_PAGED=%d", d->paged_kv != 0);
    s->packed = plan->fwd_family->id == CUDA_KERNEL_FWD_SM80_DECODE;
    snprintf(o_pack, sizeof o_pack, "-DFA_PACK=%d", s->packed);
    snprintf(o_group, sizeof o_group, "-DFA_GROUP=%d", (int)(d->heads_q / d->heads_kv));
    snprintf(o_split, sizeof o_split, "-DFA_SPLIT=%d", t->num_splits > 1);
    char o_ksplit[24], o_rows8[24];
    snprintf(o_ksplit, sizeof o_ksplit, "-DFA_KSPLIT=%d", cuda_fwd_key_warps(t) > 1);
    /*
     * Keys across warps with at most 8 rows per KV head (one token with GQA <= 8): rows 8-15 of the block are
     * padding and the kernel leaves out their softmax (fwd_sm80.cu ROW1; sm_90 SASS, one tile per warp: 185 ->
     * 166 instructions). The kernel's rows are at most seqlen_q x group (varlen: seqlen_q is the longest).
     */
    snprintf(o_rows8, sizeof o_rows8, "-DFA_ROWS8=%d",
             cuda_fwd_key_warps(t) > 1 && s->packed && d->seqlen_q * (d->heads_q / d->heads_kv) <= 8);
    /*
     * Decode streams the cache once: an L2 prefetch hint of 256 B on its K/V copies read 1-3 % more GB/s on an
     * H100 at batch 16 and 64 (2,831-2,930 -> 2,882-2,960 GB/s, two alternating runs, bench/RESULTS.md seventh
     * session); the forward measured level (within 1 %), so only the decode form takes it.
     */
    char o_l2[32];
    snprintf(o_l2, sizeof o_l2, "-DFA_L2_PREFETCH=%d", s->packed ? 256 : 0);
    snprintf(o_feat, sizeof o_feat, "%s %s %s %s %s %s %s %s %s %s %s %s %s %s", o_stages, o_minb, o_softcap, o_alibi,
             o_local, o_lazy, o_varlen, o_paged, o_pack, o_group, o_split, o_drop, o_ksplit, o_rows8);
    /*
     * FLASHPORT_CUDA_DEFINE=-DNAME=VALUE adds one define after ours, so it overrides (A/B runs of kernel
     * switches; NVRTC takes the last definition). It is part of the options, hence of the cache key.
     */
    const char *extra = getenv("FLASHPORT_CUDA_DEFINE");
    const char *opts[] = {o_arch, o_bf16, o_dqk, o_qkr, o_dv, o_vr, o_warps, o_bkv, o_mt, o_softcap, o_alibi,
                          o_local,  o_lazy,  o_varlen, o_paged, o_pack, o_group, "-std=c++17", "-lineinfo", o_split,
                          o_stages, o_minb, o_drop, o_l2, o_ksplit, o_rows8, extra};
    int nopt = (int)(sizeof opts / sizeof *opts) - (extra && extra[0] == '-' ? 0 : 1);
    snprintf(s->options, sizeof s->options, "%s %s %s %s %s %s %s %s %s %s %s", o_arch, o_bf16, o_dqk, o_qkr, o_dv,
             o_vr, o_warps, o_bkv, o_mt, o_feat, o_l2);

    char why[4096];
    cuda_image img;
    if (cuda_jit_get(&c->api, fa_cuda_src_fwd_sm80, "fwd_sm80.cu", opts, nopt, s->ptx, &img, why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "cuda: %s", why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    s->threads = t->warps * 32;
    s->smem = (int)cuda_fwd_smem_bytes(d, t);
    /* the combine kernel exists in every module; split plans launch it */
    static const char *const names[] = {"fa_fwd_sm80", "fa_combine_sm80"};
    CUfunction fns[2];
    const int smem[] = {s->smem, 0};
    fa_status st = cuda_module_open(c, plan->backend_device, &img, "fwd_sm80", s->options, &s->module,
                                    t->num_splits > 1 ? 2 : 1, names, fns, smem);
    if (st != FA_OK) {
        free(s);
        return st;
    }
    s->fn = fns[0];
    if (t->num_splits > 1) s->combine = fns[1];
    st = bwd_prepare(c, plan, s);
    if (st == FA_OK) st = cuda_append_prepare(c, plan, &s->append); /* KV-cache append (seqlen_new > 0) */
    if (st != FA_OK) {
        cuda_bwd_release(c, plan->backend_device, s->bwd);
        cuda_bwd_f32_release(c, plan->backend_device, s->bwd_f32);
        cuda_module_close(c, plan->backend_device, s->module);
        free(s);
        return st;
    }
    plan->backend_state = s;
    return FA_OK;
}

static void plan_release(void *vctx, fa_plan_info *plan)
{
    cuda_ctx *c = vctx;
    plan_state *s = plan->backend_state;
    if (!s) return;
    cuda_bwd_release(c, plan->backend_device, s->bwd);
    cuda_bwd_f32_release(c, plan->backend_device, s->bwd_f32);
    cuda_append_release(c, plan->backend_device, s->append);
    cuda_fwd_f32_release(c, plan->backend_device, s->f32);
    cuda_module_close(c, plan->backend_device, s->module);
    free(s);
    plan->backend_state = NULL;
}

static size_t describe(void *vctx, const fa_plan_info *plan, char *buf, size_t size)
{
    (void)vctx;
    const plan_state *s = plan->backend_state;
    if (!s) return 0;
    int n;
    if (s->f32) {
        n = (int)cuda_fwd_f32_describe(s->f32, buf, size);
    } else {
        n = snprintf(buf, size, "cuda kernel fa_fwd_sm80 (mma.sync m16n8k16, fp32 accumulate), NVRTC %s%s, ", s->options,
                     s->ptx ? " (PTX, JIT-compiled by the driver)" : "");
        n = cuda_describe_origin(buf, size, n, s->from_cache, s->compile_ms);
    }
    if (n >= 0 && (size_t)n < size && s->bwd) {
        n += snprintf(buf + n, size - (size_t)n, "\n");
        if ((size_t)n < size) n += (int)cuda_bwd_describe(s->bwd, buf + n, size - (size_t)n);
    }
    if (n >= 0 && (size_t)n < size && s->bwd_f32) {
        n += snprintf(buf + n, size - (size_t)n, "\n");
        if ((size_t)n < size) n += (int)cuda_bwd_f32_describe(s->bwd_f32, buf + n, size - (size_t)n);
    }
    if (n >= 0 && (size_t)n < size && s->append) {
        n += snprintf(buf + n, size - (size_t)n, "\n");
        if ((size_t)n < size) n += (int)cuda_append_describe(s->append, buf + n, size - (size_t)n);
    }
    return n < 0 ? 0 : (size_t)n;
}

/*
 * The kernel stages rows of a head dim that is a multiple of 8 with 16-byte loads and stores pairs of
 * elements; rows of any other dim are read and written element by element (2-byte alignment only).
 */
static int aligned(const fa_tensor *t, int rank, int64_t dim)
{
    if (dim % 8) return (uintptr_t)t->data % 2 == 0;
    if ((uintptr_t)t->data % 16) return 0;
    for (int i = 0; i < rank - 1; i++)
        if (t->stride[i] % 8) return 0;
    return 1;
}

static fa_status fwd(void *vctx, const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, void *stream)
{
    cuda_ctx *c = vctx;
    const plan_state *s = plan->backend_state;
    const fa_attn_desc *d = &plan->desc;
    if (s->f32) return cuda_fwd_f32_run(c, plan, s->f32, a, workspace, stream); /* fp32 SIMT forward (cuda_fwd_f32.c) */
    const int64_t dqk = d->head_dim_qk, dvv = d->head_dim_v;
    if (!aligned(&a->q, a->q.rank, dqk) || !aligned(&a->k, a->k.rank, dqk) || !aligned(&a->v, a->v.rank, dvv) ||
        !aligned(&a->out, a->out.rank, dvv))
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda fwd_sm80 needs q, k, v and out 16-byte aligned with strides "
                                                "that are multiples of 8 elements where their head dim is a multiple "
                                                "of 8 (2-byte aligned otherwise)");
    fwd_params p;
    memset(&p, 0, sizeof p);
    fa_status st = fa_gpu_fwd_io_fill(plan, a, "cuda fwd_sm80", &p.io);
    if (st != FA_OK) return st;
    p.seqlen_q = (int)d->seqlen_q, p.seqlen_k = (int)d->seqlen_k;
    p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.window_left = (int)plan->window_left, p.window_right = (int)plan->window_right;
    p.scale = plan->scale;
    p.scale_log2 = plan->scale * 1.4426950408889634f;
    p.softcap = d->softcap;
    if (d->dropout_p > 0.0f) cuda_dropout_params(d->dropout_p, a->dropout_seed, a->dropout_offset, &p.drop_k0,
                                                 &p.drop_k1, &p.drop_ctr3, &p.drop_threshold, &p.keep_scale);

    const int splits = plan->fwd_config.num_splits > 1 ? plan->fwd_config.num_splits : 1;
    if (splits > 1) {
        /* the plan's workspace: partial outputs, then partial LSEs (cuda_select.c, decode_workspace) */
        if (!workspace || (uintptr_t)workspace % 16)
            return fa_set_error(FA_ERR_INVALID_ARGUMENT, "cuda fwd: split-KV needs its workspace (16-byte aligned)");
        p.num_splits = splits;
        p.part_rows = (int)cuda_fwd_part_rows(d);
        p.o_part = workspace;
        p.lse_part = p.o_part + (int64_t)splits * p.part_rows * d->heads_q * cuda_fwd_pad_dim(d->head_dim_v);
    }
    /* rows per block: positions, or (decode) positions x the query heads of one KV head */
    int64_t rows = d->seqlen_q * (s->packed ? d->heads_q / d->heads_kv : 1);
    int bq = plan->fwd_config.block_q;
    unsigned gx = (unsigned)((rows + bq - 1) / bq), gy = (unsigned)(s->packed ? d->heads_kv : d->heads_q);
    unsigned gz = (unsigned)(d->batch * splits);
    if (gy > 65535 || gz > 65535)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda fwd: %u heads and %u batch x splits must be at most 65535", gy, gz);
    if (s->append) {
        /* KV-cache append first, on the same stream; the forward then reads q and the key counts it leaves */
        cuda_append_out ao;
        fa_status ast = cuda_append_run(c, plan, s->append, a, workspace, stream, &ao);
        if (ast != FA_OK) return ast;
        p.io.q = ao.q, p.io.q_sb = ao.q_sb, p.io.q_ss = ao.q_ss, p.io.q_sh = ao.q_sh, p.io.seqused_k = ao.seqused_k;
    }
    void *args[] = {&p};
    st = push(c, plan->backend_device);
    if (st != FA_OK) return st;
    CUresult r = c->api.cuLaunchKernel(s->fn, gx, gy, gz, (unsigned)s->threads, 1, 1, (unsigned)s->smem,
                                       (CUstream)stream, args, NULL);
    const char *what = "fa_fwd_sm80";
    if (r == 0 && splits > 1) {
        /* one warp per (row, query head), four to a block */
        unsigned blocks = (unsigned)(((int64_t)p.part_rows * d->heads_q + 3) / 4);
        r = c->api.cuLaunchKernel(s->combine, blocks, 1, 1, 128, 1, 1, 0, (CUstream)stream, args, NULL);
        what = "fa_combine_sm80";
    }
    pop(c);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: launching %s: %s", what, cuda_error_string(&c->api, r));
    return FA_OK;
}

static fa_status bwd(void *vctx, const fa_plan_info *plan, const fa_bwd_args *a, void *workspace, void *stream)
{
    const plan_state *s = plan->backend_state;
    if (plan->bwd_family && plan->bwd_family->id == CUDA_KERNEL_BWD_F32)
        return cuda_bwd_f32_run(vctx, plan, s->bwd_f32, a, workspace, stream); /* SIMT backward (cuda_bwd_f32.c) */
    return cuda_bwd_run(vctx, plan, s->bwd, a, workspace, stream);
}

static void *alloc(void *vctx, int device, int64_t bytes, void *stream)
{
    (void)stream;
    cuda_ctx *c = vctx;
    if (push(c, device) != FA_OK) return NULL;
    CUdeviceptr p = 0;
    CUresult r = c->api.cuMemAlloc(&p, (size_t)(bytes > 0 ? bytes : 1));
    pop(c);
    if (r != 0) {
        fa_set_error(FA_ERR_OUT_OF_MEMORY, "cuda: cuMemAlloc(%lld): %s", (long long)bytes, cuda_error_string(&c->api, r));
        return NULL;
    }
    return (void *)(uintptr_t)p;
}

static void release(void *vctx, int device, void *ptr, void *stream)
{
    (void)stream;
    cuda_ctx *c = vctx;
    if (!ptr || push(c, device) != FA_OK) return;
    CUresult r = c->api.cuMemFree((CUdeviceptr)(uintptr_t)ptr);
    pop(c);
    if (r != 0) fa_set_error(FA_ERR_BACKEND, "cuda: cuMemFree(%p): %s", ptr, cuda_error_string(&c->api, r));
}

/* fa_device_copy: on the caller's stream, or synchronous for NULL (done on return, as the API promises). */
static fa_status copy(void *vctx, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream)
{
    cuda_ctx *c = vctx;
    CUstream s = (CUstream)stream;
    CUdeviceptr d = (CUdeviceptr)(uintptr_t)dst, from = (CUdeviceptr)(uintptr_t)src;
    size_t n = (size_t)bytes;
    fa_status st = push(c, device);
    if (st != FA_OK) return st;
    CUresult r;
    const char *what;
    if (kind == FA_COPY_HOST_TO_DEVICE) {
        what = s ? "cuMemcpyHtoDAsync" : "cuMemcpyHtoD";
        r = s ? c->api.cuMemcpyHtoDAsync(d, src, n, s) : c->api.cuMemcpyHtoD(d, src, n);
    } else if (kind == FA_COPY_DEVICE_TO_HOST) {
        what = s ? "cuMemcpyDtoHAsync" : "cuMemcpyDtoH";
        r = s ? c->api.cuMemcpyDtoHAsync(dst, from, n, s) : c->api.cuMemcpyDtoH(dst, from, n);
    } else {
        what = s ? "cuMemcpyDtoDAsync" : "cuMemcpyDtoD";
        r = s ? c->api.cuMemcpyDtoDAsync(d, from, n, s) : c->api.cuMemcpyDtoD(d, from, n);
    }
    /* The synchronous host-to-device (from pageable memory) and device-to-device copies may return before the
     * device has finished: wait for the default stream they ran on. */
    if (r == 0 && !s) {
        what = "cuStreamSynchronize after the copy";
        r = c->api.cuStreamSynchronize(NULL);
    }
    pop(c);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "cuda device %d: %s (%lld bytes): %s", device, what, (long long)bytes,
                            cuda_error_string(&c->api, r));
    return FA_OK;
}

/* fa_device_synchronize: the stream, or with NULL every stream of the primary context. */
static fa_status synchronize(void *vctx, int device, void *stream)
{
    cuda_ctx *c = vctx;
    fa_status st = push(c, device);
    if (st != FA_OK) return st;
    CUresult r = stream ? c->api.cuStreamSynchronize((CUstream)stream) : c->api.cuCtxSynchronize();
    pop(c);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "cuda device %d: %s: %s", device,
                            stream ? "cuStreamSynchronize" : "cuCtxSynchronize", cuda_error_string(&c->api, r));
    return FA_OK;
}

static void backend_shutdown(void *vctx)
{
    cuda_ctx *c = vctx;
    cuda_api_close(&c->api);
    c->ndev = 0;
}

/* Every kernel source the build embeds (FA_CUDA_KERNELS in CMakeLists.txt): the tuning cache's kernel hash. */
extern const char fa_cuda_src_bwd_sm80[], fa_cuda_src_append_sm80[], fa_cuda_src_fwd_f32[],
    fa_cuda_src_common_sm80[], fa_cuda_src_fa_vendor[], fa_cuda_src_bwd_f32[];
static uint64_t g_kernel_hash;
static pthread_once_t g_kernel_hash_once = PTHREAD_ONCE_INIT;

static void hash_kernels(void)
{
    const char *const src[] = {fa_cuda_src_fwd_sm80, fa_cuda_src_bwd_sm80, fa_cuda_src_append_sm80,
                               fa_cuda_src_fwd_f32, fa_cuda_src_common_sm80, fa_cuda_src_fa_vendor,
                               fa_cuda_src_bwd_f32};
    uint64_t h = FA_HASH64_INIT;
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) h = fa_hash64(h, src[i], strlen(src[i]) + 1);
    g_kernel_hash = h;
}

/* Tuned tiles depend on the kernels and on the driver and NVRTC that compile them. */
static uint64_t kernel_source_hash(void *vctx, int device, char *runtime, size_t runtime_size)
{
    cuda_ctx *c = vctx;
    (void)device;
    int driver = 0, major = 0, minor = 0;
    if (c->api.cuDriverGetVersion) c->api.cuDriverGetVersion(&driver);
    if (c->api.nvrtcVersion) c->api.nvrtcVersion(&major, &minor);
    snprintf(runtime, runtime_size, "driver %d nvrtc %d.%d", driver, major, minor);
    pthread_once(&g_kernel_hash_once, hash_kernels);
    return g_kernel_hash;
}

static const fa_backend_iface iface = {
    .abi_version = FA_BACKEND_ABI_VERSION,
    .kind = FA_BACKEND_CUDA,
    .name = "cuda",
    .device_count = device_count,
    .device_props = device_props,
    .select = cuda_select,
    .plan_prepare = plan_prepare,
    .plan_release = plan_release,
    .describe = describe,
    .fwd = fwd,
    .bwd = bwd,
    .alloc = alloc,
    .free = release,
    .copy = copy,
    .synchronize = synchronize,
    .shutdown = backend_shutdown,
    .kernel_source_hash = kernel_source_hash,
};

static void read_props(cuda_ctx *c, cuda_device *dv, int ordinal)
{
    const cuda_api *api = &c->api;
    fa_device_props *p = &dv->props;
    int v = 0;
#define ATTR(a) (api->cuDeviceGetAttribute(&v, a, dv->dev) == 0 ? v : 0)
    memset(p, 0, sizeof *p);
    p->backend = FA_BACKEND_CUDA;
    p->index_in_backend = ordinal;
    api->cuDeviceGetName(p->name, (int)sizeof p->name, dv->dev);
    dv->cc_major = ATTR(CU_ATTR_CC_MAJOR);
    dv->cc_minor = ATTR(CU_ATTR_CC_MINOR);
    snprintf(p->arch, sizeof p->arch, "sm_%d%d", dv->cc_major, dv->cc_minor);
    p->shared_mem_per_block = ATTR(CU_ATTR_MAX_SHARED_PER_BLOCK);
    p->shared_mem_per_block_optin = ATTR(CU_ATTR_MAX_SHARED_PER_BLOCK_OPTIN);
    p->shared_mem_per_cu = ATTR(CU_ATTR_MAX_SHARED_PER_SM);
    p->compute_units = ATTR(CU_ATTR_SM_COUNT);
    p->simd_width = ATTR(CU_ATTR_WARP_SIZE);
    p->max_threads_per_block = ATTR(CU_ATTR_MAX_THREADS_PER_BLOCK);
    p->max_threads_per_cu = ATTR(CU_ATTR_MAX_THREADS_PER_SM);
    p->registers_per_block = ATTR(CU_ATTR_MAX_REGS_PER_BLOCK);
    p->l2_cache_bytes = ATTR(CU_ATTR_L2_CACHE_SIZE);
#undef ATTR
    size_t mem = 0;
    api->cuDeviceTotalMem(&mem, dv->dev);
    p->memory_bytes = (int64_t)mem;
}

FA_API fa_status fa_backend_plugin_init(uint32_t core_abi, const fa_backend_iface **out, void **ctx, char *why,
                                        size_t why_size)
{
    if (core_abi != FA_BACKEND_ABI_VERSION) {
        snprintf(why, why_size, "cuda plugin speaks ABI %u, core speaks %u", FA_BACKEND_ABI_VERSION, core_abi);
        return FA_ERR_UNSUPPORTED;
    }
    cuda_ctx *c = &g_ctx;
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->ctx_lock, NULL);
    if (cuda_api_open(&c->api, 1, why, why_size) != 0) return FA_ERR_UNSUPPORTED;
    CUresult r = c->api.cuInit(0);
    int n = 0;
    if (r == 0) r = c->api.cuDeviceGetCount(&n);
    if (r != 0 || n <= 0) {
        snprintf(why, why_size, "CUDA driver found, but no usable GPU: %s", r ? cuda_error_string(&c->api, r) : "0 devices");
        cuda_api_close(&c->api);
        return FA_ERR_UNSUPPORTED;
    }
    if (n > CUDA_MAX_DEVICES) n = CUDA_MAX_DEVICES;
    for (int i = 0; i < n; i++) {
        cuda_device *dv = &c->dev[c->ndev];
        if (c->api.cuDeviceGet(&dv->dev, i) != 0) continue;
        read_props(c, dv, i);
        c->ndev++;
    }
    *out = &iface;
    *ctx = c;
    return FA_OK;
}
