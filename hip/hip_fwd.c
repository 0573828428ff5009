/*
 * The HIP forward on the host: one of two kernels, compiled per plan for the device's target by hiprtc (NVRTC in
 * the NVIDIA verification build) and launched on the caller's stream, both from one parameter struct:
 *   - the SIMT forward of cuda/kernels/fwd_f32.cu (one source with the CUDA backend, through
 *     cuda/kernels/fa_vendor.cuh); 16-bit storage is its FA_STORAGE (1 fp16, 2 bf16), converted to fp32 in the
 *     kernel, so every dtype runs the same arithmetic;
 *   - the MFMA forward of hip/kernels/fwd_mfma.hip (gfx90a/gfx94x, fp16/bf16; hip_select_mfma.c), whose
 *     geometry is its own: block_q = 32 or 16 rows x waves, warps x 64 threads, static LDS.
 * The SIMT forward also does dropout (FA_DROPOUT) and split-KV (FA_SPLIT: partials in the workspace, then its
 * module's fa_combine_f32); a plan with KV-cache append (desc.seqlen_new) first runs the append kernel shared with
 * the CUDA plugin (cuda/kernels/append_sm80.cu, FA_STORAGE by dtype) on the same stream, then the forward reads q
 * (rotated into the workspace with rotary) and the key counts it leaves (fa_gpu_append_fill).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fa_gpu_fwd_io.h" /* cuda/: the tensor fields every CUDA-family forward kernel leads with */
#include "hip_backend.h"

extern const char fa_hip_src_fwd_f32[];  /* cuda/kernels/fwd_f32.cu, embedded by hip/CMakeLists.txt */
extern const char fa_hip_src_fwd_mfma[]; /* hip/kernels/fwd_mfma.hip, likewise */
extern const char fa_hip_src_append_sm80[]; /* cuda/kernels/append_sm80.cu, likewise */

/* Field for field struct fa_cuda_fwd_f32_params of kernels/fwd_f32.cu and struct fa_hip_fwd_params of
   kernels/fwd_mfma.hip (strides in elements): the shared tensor fields, then the problem's. */
typedef struct simt_params {
    fa_gpu_fwd_io io;
    int seqlen_q, seqlen_k, heads_q, heads_kv;
    int window_left, window_right;
    float scale, softcap;
    int vec_qk, vec_v;
    fa_gpu_fwd_tail tail; /* the SIMT forward's split partials and dropout key (the MFMA forward reads no further) */
} simt_params;
/* 6 pointers, 16 strides, 4 pointers, 3 strides, 14 ints/floats, then the tail's 2 pointers and 8 ints/floats: no
   padding anywhere (x86-64, amdgcn, nvptx) */
_Static_assert(sizeof(simt_params) == 6 * 8 + 16 * 8 + 4 * 8 + 3 * 8 + 14 * 4 + 2 * 8 + 8 * 4,
               "simt_params has padding");

struct hip_fwd_state {
    hipModule_t module;
    hipFunction_t fn;
    hipFunction_t combine;     /* split plans: fa_combine_f32 of the same module */
    hipModule_t append_module; /* desc.seqlen_new > 0: the append kernel's module */
    hipFunction_t append;
    int mfma;    /* 1: fwd_mfma.hip, else fwd_f32.cu */
    int threads; /* per block */
    int smem;    /* dynamic LDS (the MFMA kernel's is static: 0) */
    int elem_bytes;
    int storage; /* FA_STORAGE: 0 fp32, 1 fp16, 2 bf16 */
    int from_cache;
    double compile_ms;
    char options[880]; /* the target (up to 299 characters) and 15 defines of up to 31 */
};

/* FA_STORAGE of the kernel for a dtype (the selector admits only these three). */
static int storage(fa_dtype t) { return t == FA_DTYPE_F16 ? 1 : t == FA_DTYPE_BF16 ? 2 : 0; }

fa_status hip_fwd_prepare(hip_ctx *c, const fa_plan_info *plan, hip_fwd_state **out)
{
    const hip_device *dev = &c->dev[plan->backend_device];
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->fwd_config;
    *out = NULL;
    hip_fwd_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "%s: no memory for a plan", HIP_LABEL);
    const int mfma = plan->fwd_family->id == HIP_KERNEL_FWD_MFMA;
    char o[16][32], o_arch[300];
    if (FA_HIP_ON_NVIDIA) snprintf(o_arch, sizeof o_arch, "-arch=%s", dev->target);
    else snprintf(o_arch, sizeof o_arch, "--gpu-architecture=%s", dev->target);
    fa_gpu_fwd_defines(plan, o + 1); /* o[1..11]: the defines both plugins' forward kernels share */
    snprintf(o[12], sizeof o[12], "-DFA_STORAGE=%d", storage(d->dtype));
    snprintf(o[13], sizeof o[13], "-DFA_WAVES=%d", t->warps);
    snprintf(o[14], sizeof o[14], "-DFA_ROWS=%d", t->warps > 0 ? t->block_q / t->warps : 0);
    snprintf(o[15], sizeof o[15], "-DFA_STAGES=%d", t->stages);
    /* NVRTC's default dialect is older than the kernel's; hiprtc's default is fine and -O3 is its usual level */
    const char *lang = FA_HIP_ON_NVIDIA ? "-std=c++17" : "-O3";
    const char *opts[] = {o_arch, o[1],  o[2], o[3],  o[4],  o[5],  o[6], o[7], o[8],
                          o[9],   o[10], o[11], o[12], lang, o[13], o[14], o[15]};
    const int nopt = mfma ? 17 : 14; /* the SIMT kernel has no FA_WAVES/FA_ROWS/FA_STAGES */
    snprintf(s->options, sizeof s->options, "%s %s %s %s %s %s %s %s %s %s %s %s %s", o_arch, o[1], o[2], o[3], o[4],
             o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12]);
    if (mfma) {
        const size_t n = strlen(s->options);
        snprintf(s->options + n, sizeof s->options - n, " %s %s %s", o[13], o[14], o[15]);
    }
    s->mfma = mfma;
    s->elem_bytes = d->dtype == FA_DTYPE_F32 ? 4 : 2;
    s->storage = storage(d->dtype);
    s->threads = mfma ? t->warps * 64 : HIP_SIMT_THREADS;
    s->smem = mfma ? 0 : (int)hip_fwd_simt_smem(d, t);

    char why[4096];
    hip_image img;
    if (hip_jit_get(&c->api, mfma ? fa_hip_src_fwd_mfma : fa_hip_src_fwd_f32, mfma ? "fwd_mfma.hip" : "fwd_f32.cu",
                    opts, nopt, &img, why, sizeof why) != 0) {
        free(s);
        return fa_set_error(FA_ERR_BACKEND, "%s: %s", HIP_LABEL, why);
    }
    s->from_cache = img.from_cache;
    s->compile_ms = img.compile_ms;

    /* the append kernel (seqlen_new > 0): compiled before the device is entered, like the forward */
    hip_image aimg;
    memset(&aimg, 0, sizeof aimg);
    const int append = d->seqlen_new > 0;
    if (append) {
        char ao[32];
        snprintf(ao, sizeof ao, "-DFA_STORAGE=%d", storage(d->dtype));
        const char *aopts[] = {o_arch, ao, lang};
        if (hip_jit_get(&c->api, fa_hip_src_append_sm80, "append_sm80.cu", aopts, 3, &aimg, why, sizeof why) != 0) {
            hip_image_free(&img);
            free(s);
            return fa_set_error(FA_ERR_BACKEND, "%s: KV-cache append: %s", HIP_LABEL, why);
        }
    }

    int prev;
    fa_status st = hip_device_enter(c, plan->backend_device, &prev);
    if (st != FA_OK) {
        hip_image_free(&img);
        if (append) hip_image_free(&aimg);
        free(s);
        return st;
    }
    const char *step = "hipModuleLoadData";
    hipError_t r = c->api.hipModuleLoadData(&s->module, img.data);
    hip_image_free(&img);
    const char *kname = mfma ? "fa_fwd_mfma" : "fa_fwd_f32";
    if (r == 0) step = "hipModuleGetFunction", r = c->api.hipModuleGetFunction(&s->fn, s->module, kname);
    /* above 48 KiB NVIDIA wants an opt-in per kernel; AMD grants LDS up to the device's limit as launched */
    if (r == 0 && s->smem > 48 * 1024 && c->api.func_max_dynamic_shared)
        step = "the dynamic shared memory opt-in", r = c->api.func_max_dynamic_shared(s->fn, s->smem);
    if (r == 0 && t->num_splits > 1) {
        kname = "fa_combine_f32";
        step = "hipModuleGetFunction", r = c->api.hipModuleGetFunction(&s->combine, s->module, kname);
    }
    if (r == 0 && append) {
        kname = "fa_append_sm80";
        step = "hipModuleLoadData", r = c->api.hipModuleLoadData(&s->append_module, aimg.data);
        if (r == 0) step = "hipModuleGetFunction", r = c->api.hipModuleGetFunction(&s->append, s->append_module, kname);
        if (r != 0 && s->append_module) c->api.hipModuleUnload(s->append_module);
    }
    if (append) hip_image_free(&aimg);
    if (r != 0 && s->module) c->api.hipModuleUnload(s->module);
    hip_device_leave(c, prev);
    if (r != 0) {
        fa_set_error(FA_ERR_BACKEND, "%s: loading %s (%s): %s: %s", HIP_LABEL, kname, s->options, step,
                     hip_error_string(&c->api, r));
        free(s);
        return FA_ERR_BACKEND;
    }
    *out = s;
    return FA_OK;
}

void hip_fwd_release(hip_ctx *c, int device, hip_fwd_state *s)
{
    if (!s) return;
    int prev;
    if (s->module && hip_device_enter(c, device, &prev) == FA_OK) {
        c->api.hipModuleUnload(s->module);
        if (s->append_module) c->api.hipModuleUnload(s->append_module);
        hip_device_leave(c, prev);
    }
    free(s);
}

size_t hip_fwd_describe(const hip_fwd_state *s, char *buf, size_t size)
{
    const char *what = s->mfma ? "fa_fwd_mfma (MFMA forward for CDNA, fp32 accumulation; compiled and emulated, "
                                 "never run on AMD hardware by this project)"
                               : "fa_fwd_f32 (SIMT forward shared with CUDA via fa_vendor.cuh, fp32 arithmetic)";
    int n = snprintf(buf, size, "%s kernel %s, %s %s, ", HIP_LABEL, what, FA_HIP_ON_NVIDIA ? "NVRTC" : "hiprtc",
                     s->options);
    if (n >= 0 && (size_t)n < size) {
        int m = s->from_cache ? snprintf(buf + n, size - (size_t)n, "from the disk cache")
                              : snprintf(buf + n, size - (size_t)n, "compiled now in %.0f ms", s->compile_ms);
        if (m > 0) n += m;
    }
    if (n >= 0 && (size_t)n < size && s->append) {
        int m = snprintf(buf + n, size - (size_t)n, "\n%s kv-cache append fa_append_sm80 (shared with CUDA, rotary in "
                         "fp32), FA_STORAGE=%d", HIP_LABEL, s->storage);
        if (m > 0) n += m;
    }
    return n < 0 ? 0 : (size_t)n;
}

/* 1: rows of this tensor are aligned runs of whole groups of 4 elements (one float4 / 8-byte access each). */
static int vec4(const fa_tensor *t, int64_t dim, int elem_bytes)
{
    if (dim % 4 || (uintptr_t)t->data % (uintptr_t)(4 * elem_bytes)) return 0;
    for (int i = 0; i < t->rank - 1; i++)
        if (t->stride[i] % 4) return 0;
    return 1;
}

fa_status hip_fwd_run(hip_ctx *c, const fa_plan_info *plan, const hip_fwd_state *s, const fa_fwd_args *a,
                      void *workspace, void *stream)
{
    const fa_attn_desc *d = &plan->desc;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "%s fwd: the plan has no compiled kernel", HIP_LABEL);
    const uintptr_t eb = (uintptr_t)s->elem_bytes;
    if ((uintptr_t)a->q.data % eb || (uintptr_t)a->k.data % eb || (uintptr_t)a->v.data % eb ||
        (uintptr_t)a->out.data % eb)
        return fa_set_error(FA_ERR_UNSUPPORTED, "%s fwd needs q, k, v and out aligned to their element size",
                            HIP_LABEL);
    simt_params p;
    memset(&p, 0, sizeof p);
    fa_status st = fa_gpu_fwd_io_fill(plan, a, FA_HIP_ON_NVIDIA ? "hip-nvidia fwd" : "hip fwd", &p.io);
    if (st != FA_OK) return st;
    p.vec_qk = vec4(&a->q, d->head_dim_qk, s->elem_bytes) && vec4(&a->k, d->head_dim_qk, s->elem_bytes);
    p.vec_v = vec4(&a->v, d->head_dim_v, s->elem_bytes) && vec4(&a->out, d->head_dim_v, s->elem_bytes);
    p.seqlen_q = (int)d->seqlen_q, p.seqlen_k = (int)d->seqlen_k;
    p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.window_left = (int)plan->window_left, p.window_right = (int)plan->window_right;
    p.scale = plan->scale;
    p.softcap = d->softcap;
    const char *who = FA_HIP_ON_NVIDIA ? "hip-nvidia fwd" : "hip fwd";
    st = fa_gpu_fwd_tail_fill(plan, a, workspace, who, &p.tail);
    if (st != FA_OK) return st;
    fa_gpu_append_params ap;
    memset(&ap, 0, sizeof ap);
    int64_t tasks = 0;
    if (s->append) {
        /* the forward reads q (rotated into the workspace with rotary) and the key counts the append leaves */
        fa_gpu_append_out ao;
        st = fa_gpu_append_fill(plan, a, workspace, who, &ap, &ao, &tasks);
        if (st != FA_OK) return st;
        p.io.q = ao.q, p.io.q_sb = ao.q_sb, p.io.q_ss = ao.q_ss, p.io.q_sh = ao.q_sh, p.io.seqused_k = ao.seqused_k;
        if (ao.q != a->q.data) /* the contiguous rotated copy */
            p.vec_qk = d->head_dim_qk % 4 == 0 && (uintptr_t)ao.q % (4 * eb) == 0 &&
                       vec4(&a->k, d->head_dim_qk, s->elem_bytes);
    }

    const int bq = plan->fwd_config.block_q, splits = p.tail.num_splits > 1 ? p.tail.num_splits : 1;
    unsigned gx = (unsigned)((d->seqlen_q + bq - 1) / bq), gy = (unsigned)d->heads_q;
    unsigned gz = (unsigned)(d->batch * splits);
    if (gy > 65535 || gz > 65535)
        return fa_set_error(FA_ERR_UNSUPPORTED, "%s fwd: %u heads and %u batch x splits must be at most 65535",
                            HIP_LABEL, gy, gz);
    /* 32 lanes per append row task; the first batch threads also write the key counts */
    const int64_t athreads = tasks * 32 > d->batch ? tasks * 32 : d->batch, ablocks = (athreads + 127) / 128;
    if (s->append && ablocks > 0x7fffffff)
        return fa_set_error(FA_ERR_UNSUPPORTED, "%s append: %lld rows are more than one grid holds", HIP_LABEL,
                            (long long)tasks);
    int prev;
    st = hip_device_enter(c, plan->backend_device, &prev);
    if (st != FA_OK) return st;
    hipError_t r = 0;
    const char *what = "fa_append_sm80";
    if (s->append && ablocks > 0) {
        void *aargs[] = {&ap};
        r = c->api.hipModuleLaunchKernel(s->append, (unsigned)ablocks, 1, 1, 128, 1, 1, 0, (hipStream_t)stream, aargs,
                                         NULL);
    }
    void *args[] = {&p};
    if (r == 0 && gx > 0 && gz > 0) {
        what = s->mfma ? "fa_fwd_mfma" : "fa_fwd_f32";
        r = c->api.hipModuleLaunchKernel(s->fn, gx, gy, gz, (unsigned)s->threads, 1, 1, (unsigned)s->smem,
                                         (hipStream_t)stream, args, NULL);
        if (r == 0 && splits > 1) {
            /* 16 lanes per (row, query head), 16 to a block of 256 */
            const unsigned blocks = (unsigned)(((int64_t)p.tail.part_rows * d->heads_q + 15) / 16);
            what = "fa_combine_f32";
            if (blocks)
                r = c->api.hipModuleLaunchKernel(s->combine, blocks, 1, 1, HIP_SIMT_THREADS, 1, 1, 0,
                                                 (hipStream_t)stream, args, NULL);
        }
    }
    hip_device_leave(c, prev);
    if (r != 0) return fa_set_error(FA_ERR_BACKEND, "%s: launching %s: %s", HIP_LABEL, what, hip_error_string(&c->api, r));
    return FA_OK;
}
