/*
 * The HIP backward on the host: the SIMT backward of cuda/kernels/bwd_f32.cu (one source with the CUDA backend,
 * through cuda/kernels/fa_vendor.cuh), compiled per plan for the device's target by hiprtc (NVRTC in the NVIDIA
 * verification build) and launched on the caller's stream: D/LSE rows, dK/dV, dQ. fp32 arithmetic on fp32, fp16 or
 * bf16 storage, deterministic (no atomics). The parameter block, defines and formulas are cuda/fa_gpu_bwd_io.c's,
 * shared with the CUDA plugin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fa_gpu_bwd_io.h" /* cuda/: the SIMT backward's host side, shared with the CUDA plugin */
#include "hip_backend.h"

extern const char fa_hip_src_bwd_f32[]; /* cuda/kernels/bwd_f32.cu, embedded by hip/CMakeLists.txt */

struct hip_bwd_state {
    hipModule_t module;
    hipFunction_t fn[3]; /* pre, dK/dV, dQ */
    int smem[3];
    int from_cache;
    double compile_ms;
    char options[720]; /* the target (up to 299 characters) and 11 defines of up to 31 */
};

/* Wave-size generic: the warps entry is the wave count that makes 256 threads on this device. */
static int simt_bwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                          size_t why_size)
{
    if (c->warps * dev->simd_width != FA_GPU_BWD_THREADS) {
        snprintf(why, why_size, "the SIMT backward runs %d threads (%d waves of %d here)", FA_GPU_BWD_THREADS,
                 dev->simd_width > 0 ? FA_GPU_BWD_THREADS / dev->simd_width : 0, dev->simd_width);
        return 0;
    }
    return fa_gpu_bwd_tile_ok(d, c, why, why_size);
}

const fa_kernel_family hip_bwd_simt_family = {
    .name = "hip_bwd_simt",
    .pass = FA_PASS_BWD,
    .id = HIP_KERNEL_BWD_SIMT,
    /* block_kv: keys per dK/dV block; block_q: query rows per step there, and rows per dQ block. 16 x 16 keeps
       d256 (16-bit tiles) inside CDNA's 64 KiB of LDS */
    .block_q = {16, 32, 64},
    .block_kv = {16, 32, 64},
    .warps = {4, 8}, /* wavefronts of 64 / warps of 32: simt_bwd_valid keeps the one that makes 256 threads */
    .stages = {1},
    .max_splits = 1,
    .smem_bytes = fa_gpu_bwd_smem,
    .regs_per_thread = fa_gpu_bwd_regs,
    .valid = simt_bwd_valid,
    .workspace_bytes = fa_gpu_bwd_workspace,
    .work_items = fa_gpu_bwd_work_items,
};

fa_status hip_bwd_prepare(hip_ctx *c, const fa_plan_info *plan, hip_bwd_state **out)
{
    const hip_device *dev = &c->dev[plan->backend_device];
    *out = NULL;
    hip_bwd_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "%s: no memory for a backward plan", HIP_LABEL);
    char o[FA_GPU_BWD_DEFINES][32], o_arch[300];
    if (FA_HIP_ON_NVIDIA) snprintf(o_arch, sizeof o_arch, "-arch=%s", dev->target);
    else snprintf(o_arch, sizeof o_arch, "--gpu-architecture=%s", dev->target);
    fa_gpu_bwd_defines(plan, o);
    const char *opts[FA_GPU_BWD_DEFINES + 2];
    int n = 0, len = snprintf(s->options, sizeof s->options, "%s", o_arch);
    opts[n++] = o_arch;
    for (int i = 0; i < FA_GPU_BWD_DEFINES; i++) {
        opts[n++] = o[i];
        len += snprintf(s->options + len, sizeof s->options - (size_t)len, " %s", o[i]);
    }
    /* NVRTC's default dialect is older than the kernel's; hiprtc's default is fine and -O3 is its usual level */
    opts[n++] = FA_HIP_ON_NVIDIA ? "-std=c++17" : "-O3";

    char why[4096];
    hip_image img;
    if (hip_jit_get(&c->api, fa_hip_src_bwd_f32, "bwd_f32.cu", opts, n, &img, why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "%s: %s", HIP_LABEL, why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    s->smem[0] = 0;
    s->smem[1] = (int)fa_gpu_bwd_smem_dkdv(&plan->desc, &plan->bwd_config);
    s->smem[2] = (int)fa_gpu_bwd_smem_dq(&plan->desc, &plan->bwd_config);

    int prev;
    fa_status st = hip_device_enter(c, plan->backend_device, &prev);
    if (st != FA_OK) {
        hip_image_free(&img);
        free(s);
        return st;
    }
    const char *step = "hipModuleLoadData";
    hipError_t r = c->api.hipModuleLoadData(&s->module, img.data);
    hip_image_free(&img);
    for (int k = 0; r == 0 && k < 3; k++) {
        step = fa_gpu_bwd_kernels[k];
        r = c->api.hipModuleGetFunction(&s->fn[k], s->module, fa_gpu_bwd_kernels[k]);
        /* above 48 KiB NVIDIA wants an opt-in per kernel; AMD grants LDS up to the device's limit as launched */
        if (r == 0 && s->smem[k] > 48 * 1024 && c->api.func_max_dynamic_shared)
            r = c->api.func_max_dynamic_shared(s->fn[k], s->smem[k]);
    }
    if (r != 0 && s->module) c->api.hipModuleUnload(s->module);
    hip_device_leave(c, prev);
    if (r != 0) {
        fa_set_error(FA_ERR_BACKEND, "%s: loading bwd_f32.cu (%s): %s: %s", HIP_LABEL, s->options, step,
                     hip_error_string(&c->api, r));
        free(s);
        return FA_ERR_BACKEND;
    }
    *out = s;
    return FA_OK;
}

void hip_bwd_release(hip_ctx *c, int device, hip_bwd_state *s)
{
    if (!s) return;
    int prev;
    if (s->module && hip_device_enter(c, device, &prev) == FA_OK) {
        c->api.hipModuleUnload(s->module);
        hip_device_leave(c, prev);
    }
    free(s);
}

size_t hip_bwd_describe(const hip_bwd_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s backward fa_bwd_pre/dkdv/dq_f32 (SIMT backward shared with CUDA via fa_vendor.cuh, "
                                "fp32 arithmetic, deterministic: no atomics), %s %s, ",
                     HIP_LABEL, FA_HIP_ON_NVIDIA ? "NVRTC" : "hiprtc", s->options);
    if (n >= 0 && (size_t)n < size) {
        int m = s->from_cache ? snprintf(buf + n, size - (size_t)n, "from the disk cache")
                              : snprintf(buf + n, size - (size_t)n, "compiled now in %.0f ms", s->compile_ms);
        if (m > 0) n += m;
    }
    return n < 0 ? 0 : (size_t)n;
}

fa_status hip_bwd_run(hip_ctx *c, const fa_plan_info *plan, const hip_bwd_state *s, const fa_bwd_args *a,
                      void *workspace, void *stream)
{
    const fa_attn_desc *d = &plan->desc;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "%s bwd: the plan has no compiled backward kernels", HIP_LABEL);
    fa_gpu_bwd_params p;
    fa_status st = fa_gpu_bwd_fill(plan, a, workspace, FA_HIP_ON_NVIDIA ? "hip-nvidia bwd" : "hip bwd", &p);
    if (st != FA_OK) return st;
    if (d->batch > 65535 || d->heads_q > 65535)
        return fa_set_error(FA_ERR_UNSUPPORTED, "%s bwd: batch=%lld and heads_q=%lld must be at most 65535 (grid)",
                            HIP_LABEL, (long long)d->batch, (long long)d->heads_q);
    unsigned grid[3][3];
    fa_gpu_bwd_grids(plan, grid);
    int prev;
    if ((st = hip_device_enter(c, plan->backend_device, &prev)) != FA_OK) return st;
    void *args[] = {&p};
    hipError_t r = 0;
    int k = 0;
    for (; k < 3 && r == 0; k++) {
        if (grid[k][0] == 0 || grid[k][2] == 0) continue; /* no rows or keys: nothing to write */
        r = c->api.hipModuleLaunchKernel(s->fn[k], grid[k][0], grid[k][1], grid[k][2], FA_GPU_BWD_THREADS, 1, 1,
                                         (unsigned)s->smem[k], (hipStream_t)stream, args, NULL);
    }
    hip_device_leave(c, prev);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "%s: launching %s: %s", HIP_LABEL, fa_gpu_bwd_kernels[k - 1],
                            hip_error_string(&c->api, r));
    return FA_OK;
}
