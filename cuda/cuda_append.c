/*
 * KV-cache append with rotary embedding on the host (flash_attn_with_kvcache): compiles kernels/append_sm80.cu
 * for a plan with desc.seqlen_new > 0 (NVRTC, disk cache) and launches it on the caller's stream just before
 * the forward kernel. It writes k_new/v_new into the cache, the key counts seqused_k[b] + seqlen_new into the
 * workspace and, with rotary, the rotated q into the workspace; the forward then reads q and the key counts
 * from there (cuda_append_run says where).
 *
 * Workspace (the end of the plan's, after whatever the forward family keeps at its start):
 *   int32 lens[batch], padded to 256 bytes; rotary: q_rot (batch, seqlen_q, heads_q, head_dim_qk) in the dtype.
 * The parameters and the layout are fa_gpu_append_fill's (fa_gpu_fwd_io.c), shared with the HIP plugin; the
 * kernel takes fp16/bf16 (the sm80 forward's appends) and fp32 (the fp32 SIMT forward's).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_module.h"

extern const char fa_cuda_src_append_sm80[]; /* cuda/kernels/append_sm80.cu, embedded by the build */

/* The kernel's parameter block: fa_gpu_append_params (fa_gpu_fwd_io.h), shared with the HIP plugin. */

struct cuda_append_state {
    CUmodule module;
    CUfunction fn;
    int from_cache;
    double compile_ms;
    char options[64];
};

int64_t cuda_append_workspace(const fa_attn_desc *d, int64_t own) { return fa_gpu_append_workspace(d, own); }

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
    /* the elements: 0 fp32 (the fp32 SIMT forward's appends), 1 fp16, 2 bf16 */
    snprintf(o[1], sizeof o[1], "-DFA_STORAGE=%d", d->dtype == FA_DTYPE_F16 ? 1 : d->dtype == FA_DTYPE_BF16 ? 2 : 0);
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
    fa_gpu_append_params p;
    int64_t tasks = 0;
    fa_status st = fa_gpu_append_fill(plan, a, workspace, "cuda append", &p, out, &tasks);
    if (st != FA_OK) return st;
    /* 32 lanes per row task; the first batch threads also write lens */
    int64_t threads = tasks * 32 > d->batch ? tasks * 32 : d->batch;
    int64_t blocks = (threads + 127) / 128;
    if (blocks > 0x7fffffff)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda append: %lld rows are more than one grid holds", (long long)tasks);

    st = cuda_ctx_push(c, plan->backend_device);
    if (st != FA_OK) return st;
    void *args[] = {&p};
    CUresult r = c->api.cuLaunchKernel(s->fn, (unsigned)blocks, 1, 1, 128, 1, 1, 0, (CUstream)stream, args, NULL);
    cuda_ctx_pop(c);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "cuda: launching fa_append_sm80: %s", cuda_error_string(&c->api, r));

    return FA_OK;
}
