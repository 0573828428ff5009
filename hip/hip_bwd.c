/*
 * The HIP backward on the host, two kernel families over one parameter block (cuda/fa_gpu_bwd_io.c's, shared with
 * the CUDA plugin: fill, workspace, formulas), compiled per plan for the device's target by hiprtc (NVRTC in the
 * NVIDIA verification build) and launched on the caller's stream as D/LSE rows, dK/dV, dQ; deterministic (no
 * atomics) both:
 *   - hip_bwd_simt: the SIMT backward of cuda/kernels/bwd_f32.cu (one source with the CUDA backend, through
 *     cuda/kernels/fa_vendor.cuh), fp32 arithmetic on fp32, fp16 or bf16 storage;
 *   - hip_bwd_mfma: the MFMA backward of hip/kernels/bwd_mfma.hip (gfx90a/gfx94x, fp16/bf16; the selector's rule is
 *     hip_select_mfma_bwd.c's), compiled and emulated, never run on AMD hardware here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fa_gpu_bwd_io.h" /* cuda/: the SIMT backward's host side, shared with the CUDA plugin */
#include "hip_backend.h"

extern const char fa_hip_src_bwd_f32[];  /* cuda/kernels/bwd_f32.cu, embedded by hip/CMakeLists.txt */
extern const char fa_hip_src_bwd_mfma[]; /* hip/kernels/bwd_mfma.hip, likewise */

static const char *const mfma_kernels[3] = {"fa_bwd_pre_mfma", "fa_bwd_dkdv_mfma", "fa_bwd_dq_mfma"};

struct hip_bwd_state {
    hipModule_t module;
    hipFunction_t fn[3]; /* pre, dK/dV, dQ */
    int smem[3];         /* dynamic LDS (the MFMA kernels' is static: 0) */
    int mfma;            /* 1: bwd_mfma.hip, else bwd_f32.cu */
    const char *const *names; /* the module's three kernels */
    int threads;
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
    const fa_attn_desc *d = &plan->desc;
    s->mfma = plan->bwd_family->id == HIP_KERNEL_BWD_MFMA;
    s->threads = s->mfma ? plan->bwd_config.warps * 64 : FA_GPU_BWD_THREADS;
    char o[FA_GPU_BWD_DEFINES][32], o_arch[300];
    if (FA_HIP_ON_NVIDIA) snprintf(o_arch, sizeof o_arch, "-arch=%s", dev->target);
    else snprintf(o_arch, sizeof o_arch, "--gpu-architecture=%s", dev->target);
    int nd = FA_GPU_BWD_DEFINES;
    if (s->mfma) { /* bwd_mfma.hip's defines (its header comment) */
        nd = 7;
        snprintf(o[0], 32, "-DFA_DQK=%d", (int)d->head_dim_qk);
        snprintf(o[1], 32, "-DFA_DV=%d", (int)d->head_dim_v);
        snprintf(o[2], 32, "-DFA_WAVES=%d", plan->bwd_config.warps);
        snprintf(o[3], 32, "-DFA_TR=%d", hip_bwd_mfma_rows(d));
        snprintf(o[4], 32, "-DFA_STORAGE=%d", d->dtype == FA_DTYPE_BF16 ? 2 : 1);
        snprintf(o[5], 32, "-DFA_LOCAL=%d", plan->window_left >= 0 || plan->window_right >= 0);
        snprintf(o[6], 32, "-DFA_VARLEN=%d", d->varlen != 0);
    } else {
        fa_gpu_bwd_defines(plan, o);
    }
    const char *opts[FA_GPU_BWD_DEFINES + 2];
    int n = 0, len = snprintf(s->options, sizeof s->options, "%s", o_arch);
    opts[n++] = o_arch;
    for (int i = 0; i < nd; i++) {
        opts[n++] = o[i];
        len += snprintf(s->options + len, sizeof s->options - (size_t)len, " %s", o[i]);
    }
    /* NVRTC's default dialect is older than the kernel's; hiprtc's default is fine and -O3 is its usual level */
    opts[n++] = FA_HIP_ON_NVIDIA ? "-std=c++17" : "-O3";

    char why[4096];
    hip_image img;
    const char *file = s->mfma ? "bwd_mfma.hip" : "bwd_f32.cu";
    if (hip_jit_get(&c->api, s->mfma ? fa_hip_src_bwd_mfma : fa_hip_src_bwd_f32, file, opts, n, &img, why,
                    sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "%s: %s", HIP_LABEL, why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;
    s->smem[0] = 0;
    s->smem[1] = s->mfma ? 0 : (int)fa_gpu_bwd_smem_dkdv(d, &plan->bwd_config);
    s->smem[2] = s->mfma ? 0 : (int)fa_gpu_bwd_smem_dq(d, &plan->bwd_config);
    const char *const *names = s->names = s->mfma ? mfma_kernels : fa_gpu_bwd_kernels;

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
        step = names[k];
        r = c->api.hipModuleGetFunction(&s->fn[k], s->module, names[k]);
        /* above 48 KiB NVIDIA wants an opt-in per kernel; AMD grants LDS up to the device's limit as launched */
        if (r == 0 && s->smem[k] > 48 * 1024 && c->api.func_max_dynamic_shared)
            r = c->api.func_max_dynamic_shared(s->fn[k], s->smem[k]);
    }
    if (r != 0 && s->module) c->api.hipModuleUnload(s->module);
    hip_device_leave(c, prev);
    if (r != 0) {
        fa_set_error(FA_ERR_BACKEND, "%s: loading %s (%s): %s: %s", HIP_LABEL, file, s->options, step,
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
    const char *what = s->mfma ? "fa_bwd_pre/dkdv/dq_mfma (MFMA backward for CDNA, fp32 accumulation, P and dS "
                                 "rounded to the input type; compiled and emulated, not run on AMD hardware here"
                               : "fa_bwd_pre/dkdv/dq_f32 (SIMT backward shared with CUDA via fa_vendor.cuh, fp32 "
                                 "arithmetic";
    int n = snprintf(buf, size, "%s backward %s, deterministic: no atomics), %s %s, ", HIP_LABEL, what,
                     FA_HIP_ON_NVIDIA ? "NVRTC" : "hiprtc", s->options);
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
    /* the MFMA pre kernel sums a row with 16 lanes of its (waves x 64)-thread block; its dK/dV and dQ blocks are
       block_kv keys and block_q queries like the SIMT ones (32 a wave), so their grids are the shared ones */
    if (s->mfma) grid[0][0] = (unsigned)((d->seqlen_q + s->threads / 16 - 1) / (s->threads / 16));
    int prev;
    if ((st = hip_device_enter(c, plan->backend_device, &prev)) != FA_OK) return st;
    void *args[] = {&p};
    hipError_t r = 0;
    int k = 0;
    for (; k < 3 && r == 0; k++) {
        if (grid[k][0] == 0 || grid[k][2] == 0) continue; /* no rows or keys: nothing to write */
        r = c->api.hipModuleLaunchKernel(s->fn[k], grid[k][0], grid[k][1], grid[k][2], (unsigned)s->threads, 1, 1,
                                         (unsigned)s->smem[k], (hipStream_t)stream, args, NULL);
    }
    hip_device_leave(c, prev);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "%s: launching %s: %s", HIP_LABEL, s->names[k - 1],
                            hip_error_string(&c->api, r));
    return FA_OK;
}
