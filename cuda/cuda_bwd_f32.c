/*
 * The SIMT backward on the CUDA plugin (kernels/bwd_f32.cu, shared with the HIP plugins): its kernel family, its
 * compile per plan (NVRTC, disk cache) and its three launches. It runs fp32 (CUDA-core FMAs; tf32 tensor cores would
 * miss the conformance bound) and the fp16/bf16 head dims the mma.sync backward (bwd_sm80.cu) does not take: not
 * multiples of 16, or above 128 (cuda_select.c). Deterministic always: no atomics (the kernel explains). The
 * parameter block, defines and formulas are fa_gpu_bwd_io.c's, one copy for both plugins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "cuda_module.h"
#include "fa_gpu_bwd_io.h"

extern const char fa_cuda_src_bwd_f32[]; /* cuda/kernels/bwd_f32.cu, embedded by the build */

struct cuda_bwd_f32_state {
    CUmodule module;
    CUfunction fn[3]; /* pre, dK/dV, dQ */
    int smem[3];
    int from_cache;
    double compile_ms;
    char options[448]; /* the arch and 11 defines of up to 31 characters, spaced */
};

static int f32_bwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                         size_t why_size)
{
    (void)dev;
    if (c->warps * 32 != FA_GPU_BWD_THREADS) {
        snprintf(why, why_size, "the SIMT backward runs %d threads (8 warps)", FA_GPU_BWD_THREADS);
        return 0;
    }
    return fa_gpu_bwd_tile_ok(d, c, why, why_size);
}

const fa_kernel_family cuda_bwd_f32_family = {
    .name = "cuda_bwd_f32",
    .pass = FA_PASS_BWD,
    .id = CUDA_KERNEL_BWD_F32,
    /* block_kv: keys per dK/dV block; block_q: query rows per step there, and rows per dQ block */
    .block_q = {16, 32, 64},
    .block_kv = {16, 32, 64},
    .warps = {8},
    .stages = {1},
    .max_splits = 1,
    .smem_bytes = fa_gpu_bwd_smem,
    .regs_per_thread = fa_gpu_bwd_regs,
    .valid = f32_bwd_valid,
    .workspace_bytes = fa_gpu_bwd_workspace,
    .work_items = fa_gpu_bwd_work_items,
};

fa_status cuda_bwd_f32_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_bwd_f32_state **out)
{
    const cuda_device *dev = &c->dev[plan->backend_device];
    *out = NULL;
    cuda_bwd_f32_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cuda: no memory for a backward plan");
    char o[1 + FA_GPU_BWD_DEFINES][32];
    snprintf(o[0], sizeof o[0], "-arch=sm_%d%d", dev->cc_major, dev->cc_minor);
    fa_gpu_bwd_defines(plan, o + 1);
    const char *opts[1 + FA_GPU_BWD_DEFINES + 2];
    int n = 0, len = 0;
    for (int i = 0; i < 1 + FA_GPU_BWD_DEFINES; i++) {
        opts[n++] = o[i];
        len += snprintf(s->options + len, sizeof s->options - (size_t)len, "%s%s", i ? " " : "", o[i]);
    }
    opts[n++] = "-std=c++17";
    opts[n++] = "-lineinfo";

    char why[4096];
    cuda_image img;
    if (cuda_jit_get(&c->api, fa_cuda_src_bwd_f32, "bwd_f32.cu", opts, n, 0, &img, why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "cuda: %s", why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    s->smem[0] = 0;
    s->smem[1] = (int)fa_gpu_bwd_smem_dkdv(&plan->desc, &plan->bwd_config);
    s->smem[2] = (int)fa_gpu_bwd_smem_dq(&plan->desc, &plan->bwd_config);
    fa_status st = cuda_module_open(c, plan->backend_device, &img, "bwd_f32", s->options, &s->module, 3,
                                    fa_gpu_bwd_kernels, s->fn, s->smem);
    if (st != FA_OK) {
        free(s);
        return st;
    }
    *out = s;
    return FA_OK;
}

void cuda_bwd_f32_release(cuda_ctx *c, int device, cuda_bwd_f32_state *s)
{
    if (!s) return;
    cuda_module_close(c, device, s->module);
    free(s);
}

size_t cuda_bwd_f32_describe(const cuda_bwd_f32_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "cuda backward fa_bwd_pre/dkdv/dq_f32 (SIMT: CUDA-core FMAs, fp32 arithmetic, "
                                "deterministic: no atomics), NVRTC %s, ", s->options);
    n = cuda_describe_origin(buf, size, n, s->from_cache, s->compile_ms);
    return n < 0 ? 0 : (size_t)n;
}

fa_status cuda_bwd_f32_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_bwd_f32_state *s, const fa_bwd_args *a,
                           void *workspace, void *stream)
{
    const fa_attn_desc *d = &plan->desc;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "cuda bwd_f32: the plan has no compiled backward kernels");
    fa_gpu_bwd_params p;
    fa_status st = fa_gpu_bwd_fill(plan, a, workspace, "cuda bwd_f32", &p);
    if (st != FA_OK) return st;
    if (d->batch > 65535 || d->heads_q > 65535)
        return fa_set_error(FA_ERR_UNSUPPORTED, "cuda bwd_f32: batch=%lld and heads_q=%lld must be at most 65535 (grid)",
                            (long long)d->batch, (long long)d->heads_q);
    unsigned grid[3][3];
    fa_gpu_bwd_grids(plan, grid);
    if ((st = cuda_ctx_push(c, plan->backend_device)) != FA_OK) return st;
    void *args[] = {&p};
    CUresult r = 0;
    int k = 0;
    for (; k < 3 && r == 0; k++) {
        if (grid[k][0] == 0 || grid[k][2] == 0) continue; /* no rows or keys: nothing to write */
        r = c->api.cuLaunchKernel(s->fn[k], grid[k][0], grid[k][1], grid[k][2], FA_GPU_BWD_THREADS, 1, 1,
                                  (unsigned)s->smem[k], (CUstream)stream, args, NULL);
    }
    cuda_ctx_pop(c);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "cuda: launching %s: %s", fa_gpu_bwd_kernels[k - 1],
                            cuda_error_string(&c->api, r));
    return FA_OK;
}
