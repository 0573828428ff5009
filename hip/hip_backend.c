/*
 * The HIP backend plugin: devices from the HIP runtime with the numbers the planner ranks by (LDS per block,
 * wavefront size, compute units, registers), device memory, and plans whose kernel is compiled for the device's
 * own target at plan time (hip_fwd.c, hip_bwd.c, hip_jit.c) and launched on the caller's stream.
 *
 * Built twice from this source (hip/CMakeLists.txt):
 *   libflashport_hip.so    ROCm's libamdhip64 and hiprtc (hip_api.c), for AMD GPUs
 *   libflashport_hipnv.so  FA_HIP_ON_NVIDIA=1: the CUDA driver and NVRTC under the same table (hip_api_nv.c), so
 *                          this host code and the wave-size-generic kernel path run on an NVIDIA GPU. It registers
 *                          devices only under FLASHPORT_HIP_NVIDIA=1, so it never competes with the cuda backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hip_backend.h"

typedef struct plan_state {
    hip_fwd_state *fwd;
    hip_bwd_state *bwd; /* NULL unless the plan has a backward (hip_bwd.c) */
} plan_state;

static hip_ctx g_ctx;

static int device_count(void *vctx) { return ((hip_ctx *)vctx)->ndev; }

static fa_status device_props(void *vctx, int device, fa_device_props *p)
{
    *p = ((hip_ctx *)vctx)->dev[device].props;
    return FA_OK;
}

fa_status hip_device_enter(hip_ctx *c, int device, int *prev)
{
    const int want = c->dev[device].ordinal;
    int cur = -1;
    if (c->api.hipGetDevice(&cur) != 0) cur = -1;
    *prev = -1;
    if (cur == want) return FA_OK;
    hipError_t r = c->api.hipSetDevice(want);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "%s: hipSetDevice(%d): %s", HIP_LABEL, want, hip_error_string(&c->api, r));
    *prev = cur; /* -1: none was current, none is restored */
    return FA_OK;
}

void hip_device_leave(hip_ctx *c, int prev)
{
    if (prev >= 0) c->api.hipSetDevice(prev);
}

static fa_status plan_prepare(void *vctx, fa_plan_info *plan)
{
    hip_ctx *c = vctx;
    if (plan->fwd_family->id != HIP_KERNEL_FWD_SIMT && plan->fwd_family->id != HIP_KERNEL_FWD_MFMA)
        return fa_set_error(FA_ERR_INTERNAL, "%s: unknown kernel family %s", HIP_LABEL, plan->fwd_family->name);
    plan_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "%s: no memory for a plan", HIP_LABEL);
    fa_status st = hip_fwd_prepare(c, plan, &s->fwd);
    if (st == FA_OK && plan->bwd_family) st = hip_bwd_prepare(c, plan, &s->bwd);
    if (st != FA_OK) {
        hip_fwd_release(c, plan->backend_device, s->fwd);
        free(s);
        return st;
    }
    plan->backend_state = s;
    return FA_OK;
}

static void plan_release(void *vctx, fa_plan_info *plan)
{
    plan_state *s = plan->backend_state;
    if (!s) return;
    hip_fwd_release(vctx, plan->backend_device, s->fwd);
    hip_bwd_release(vctx, plan->backend_device, s->bwd);
    free(s);
    plan->backend_state = NULL;
}

static size_t describe(void *vctx, const fa_plan_info *plan, char *buf, size_t size)
{
    (void)vctx;
    const plan_state *s = plan->backend_state;
    if (!s || !s->fwd) return 0;
    size_t n = hip_fwd_describe(s->fwd, buf, size);
    if (s->bwd && n + 1 < size) {
        n += (size_t)snprintf(buf + n, size - n, "\n");
        n += hip_bwd_describe(s->bwd, buf + n, size - n);
    }
    return n;
}

static fa_status fwd(void *vctx, const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, void *stream)
{
    /* the SIMT forward's split partials at its start, KV-cache append's area at its end (hip_select.c) */
    const plan_state *s = plan->backend_state;
    return hip_fwd_run(vctx, plan, s ? s->fwd : NULL, a, workspace, stream);
}

static fa_status bwd(void *vctx, const fa_plan_info *plan, const fa_bwd_args *a, void *workspace, void *stream)
{
    const plan_state *s = plan->backend_state;
    return hip_bwd_run(vctx, plan, s ? s->bwd : NULL, a, workspace, stream);
}

static void *alloc(void *vctx, int device, int64_t bytes, void *stream)
{
    (void)stream;
    hip_ctx *c = vctx;
    int prev;
    if (hip_device_enter(c, device, &prev) != FA_OK) return NULL;
    void *p = NULL;
    hipError_t r = c->api.hipMalloc(&p, (size_t)(bytes > 0 ? bytes : 1));
    hip_device_leave(c, prev);
    if (r != 0) {
        fa_set_error(FA_ERR_OUT_OF_MEMORY, "%s: hipMalloc(%lld): %s", HIP_LABEL, (long long)bytes,
                     hip_error_string(&c->api, r));
        return NULL;
    }
    return p;
}

static void release(void *vctx, int device, void *ptr, void *stream)
{
    (void)stream;
    hip_ctx *c = vctx;
    int prev;
    if (!ptr || hip_device_enter(c, device, &prev) != FA_OK) return;
    hipError_t r = c->api.hipFree(ptr);
    hip_device_leave(c, prev);
    if (r != 0) fa_set_error(FA_ERR_BACKEND, "%s: hipFree(%p): %s", HIP_LABEL, ptr, hip_error_string(&c->api, r));
}

/* fa_device_copy: queued on the caller's stream, or complete on return for NULL (as the API promises). */
static fa_status copy(void *vctx, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream)
{
    hip_ctx *c = vctx;
    hipStream_t s = (hipStream_t)stream;
    size_t n = (size_t)bytes;
    int prev;
    fa_status st = hip_device_enter(c, device, &prev);
    if (st != FA_OK) return st;
    hipError_t r;
    const char *what;
    if (kind == FA_COPY_HOST_TO_DEVICE) {
        what = s ? "hipMemcpyHtoDAsync" : "hipMemcpyHtoD";
        r = s ? c->api.hipMemcpyHtoDAsync(dst, src, n, s) : c->api.hipMemcpyHtoD(dst, src, n);
    } else if (kind == FA_COPY_DEVICE_TO_HOST) {
        what = s ? "hipMemcpyDtoHAsync" : "hipMemcpyDtoH";
        r = s ? c->api.hipMemcpyDtoHAsync(dst, src, n, s) : c->api.hipMemcpyDtoH(dst, src, n);
    } else {
        what = s ? "hipMemcpyDtoDAsync" : "hipMemcpyDtoD";
        r = s ? c->api.hipMemcpyDtoDAsync(dst, src, n, s) : c->api.hipMemcpyDtoD(dst, src, n);
    }
    /* the synchronous host-to-device and device-to-device copies may return before the device is done */
    if (r == 0 && !s) {
        what = "hipStreamSynchronize after the copy";
        r = c->api.hipStreamSynchronize(NULL);
    }
    hip_device_leave(c, prev);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "%s device %d: %s (%lld bytes): %s", HIP_LABEL, device, what,
                            (long long)bytes, hip_error_string(&c->api, r));
    return FA_OK;
}

/* fa_device_synchronize: the stream, or with NULL all of the device's work. */
static fa_status synchronize(void *vctx, int device, void *stream)
{
    hip_ctx *c = vctx;
    int prev;
    fa_status st = hip_device_enter(c, device, &prev);
    if (st != FA_OK) return st;
    hipError_t r = stream ? c->api.hipStreamSynchronize((hipStream_t)stream) : c->api.hipDeviceSynchronize();
    hip_device_leave(c, prev);
    if (r != 0)
        return fa_set_error(FA_ERR_BACKEND, "%s device %d: %s: %s", HIP_LABEL, device,
                            stream ? "hipStreamSynchronize" : "hipDeviceSynchronize", hip_error_string(&c->api, r));
    return FA_OK;
}

static void backend_shutdown(void *vctx)
{
    hip_ctx *c = vctx;
    c->ndev = 0; /* the runtime stays loaded (hip_api.c) */
}

/* Tuned tiles depend on the kernels and on the runtime and compiler that build them (tuning cache validators). */
static uint64_t kernel_source_hash(void *vctx, int device, char *runtime, size_t runtime_size)
{
    hip_ctx *c = vctx;
    (void)device;
    int driver = 0, major = 0, minor = 0;
    if (c->api.hipDriverGetVersion) c->api.hipDriverGetVersion(&driver);
    if (c->api.rtcVersion) c->api.rtcVersion(&major, &minor);
    snprintf(runtime, runtime_size, "%s driver %d %s %d.%d", c->api.platform, driver, c->api.rtc_name, major, minor);
    return hip_jit_sources_hash();
}

static const fa_backend_iface iface = {
    .abi_version = FA_BACKEND_ABI_VERSION,
    .kind = FA_BACKEND_HIP,
    .name = HIP_LABEL,
    .device_count = device_count,
    .device_props = device_props,
    .select = hip_select,
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

/* One device's properties; 0, or -1 when its compiler target cannot be read (the device is then left out). */
static int read_props(hip_ctx *c, hip_device *dv, int ordinal)
{
    const hip_api *api = &c->api;
    fa_device_props *p = &dv->props;
    memset(p, 0, sizeof *p);
    dv->ordinal = ordinal;
    if (api->device_arch(dv->target, sizeof dv->target, ordinal) != 0) return -1;
    int v = 0;
#define ATTR(a) (api->device_attr(&v, a, ordinal) == 0 ? v : 0)
    p->backend = FA_BACKEND_HIP;
    p->index_in_backend = ordinal;
    char name[96] = "";
    api->hipDeviceGetName(name, (int)sizeof name, ordinal);
    /* the verification build says so in the name: the same GPU is also the cuda backend's device */
    snprintf(p->name, sizeof p->name, "%s%s", name, FA_HIP_ON_NVIDIA ? " (HIP path on NVIDIA)" : "");
    /* the arch without the target features: "gfx90a" of "gfx90a:sramecc+:xnack-" */
    snprintf(p->arch, sizeof p->arch, "%.*s", (int)strcspn(dv->target, ":"), dv->target);
    p->shared_mem_per_block = ATTR(HIP_ATTR_SHARED_PER_BLOCK);
    p->shared_mem_per_block_optin = ATTR(HIP_ATTR_SHARED_PER_BLOCK_OPTIN);
    if (p->shared_mem_per_block_optin < p->shared_mem_per_block) p->shared_mem_per_block_optin = p->shared_mem_per_block;
    p->shared_mem_per_cu = ATTR(HIP_ATTR_SHARED_PER_CU);
    if (p->shared_mem_per_cu < p->shared_mem_per_block_optin) p->shared_mem_per_cu = p->shared_mem_per_block_optin;
    p->compute_units = ATTR(HIP_ATTR_CU_COUNT);
    p->simd_width = ATTR(HIP_ATTR_WARP_SIZE);
    p->max_threads_per_block = ATTR(HIP_ATTR_MAX_THREADS_PER_BLOCK);
    p->max_threads_per_cu = ATTR(HIP_ATTR_MAX_THREADS_PER_CU);
    p->registers_per_block = ATTR(HIP_ATTR_REGS_PER_BLOCK);
    p->l2_cache_bytes = ATTR(HIP_ATTR_L2_BYTES);
#undef ATTR
    size_t mem = 0;
    api->hipDeviceTotalMem(&mem, ordinal);
    p->memory_bytes = (int64_t)mem;
    return 0;
}

FA_API fa_status fa_backend_plugin_init(uint32_t core_abi, const fa_backend_iface **out, void **ctx, char *why,
                                        size_t why_size)
{
    if (core_abi != FA_BACKEND_ABI_VERSION) {
        snprintf(why, why_size, "%s plugin speaks ABI %u, core speaks %u", HIP_LABEL, FA_BACKEND_ABI_VERSION, core_abi);
        return FA_ERR_UNSUPPORTED;
    }
#if FA_HIP_ON_NVIDIA
    const char *gate = getenv("FLASHPORT_HIP_NVIDIA");
    if (!gate || strcmp(gate, "1") != 0) {
        snprintf(why, why_size, "the HIP backend's NVIDIA verification build stays off unless FLASHPORT_HIP_NVIDIA=1 "
                 "(NVIDIA GPUs are the cuda backend's)");
        return FA_ERR_UNSUPPORTED;
    }
#endif
    hip_ctx *c = &g_ctx;
    memset(c, 0, sizeof *c);
    if (hip_api_open(&c->api, 1, why, why_size) != 0) return FA_ERR_UNSUPPORTED;
    hipError_t r = c->api.hipInit(0);
    int n = 0;
    if (r == 0) r = c->api.hipGetDeviceCount(&n);
    if (r != 0 || n <= 0) {
        snprintf(why, why_size, "%s found, but no usable GPU: %s", c->api.lib_path,
                 r ? hip_error_string(&c->api, r) : "0 devices");
        return FA_ERR_UNSUPPORTED;
    }
    if (n > HIP_MAX_DEVICES) n = HIP_MAX_DEVICES;
    for (int i = 0; i < n; i++) {
        if (read_props(c, &c->dev[c->ndev], i) != 0) {
            fa_log("%s backend: device %d left out: its compiler target (gcnArchName) could not be read", HIP_LABEL, i);
            continue;
        }
        c->ndev++;
    }
    if (c->ndev == 0) {
        snprintf(why, why_size, "%s: none of the %d device(s) reported its compiler target", HIP_LABEL, n);
        return FA_ERR_UNSUPPORTED;
    }
    *out = &iface;
    *ctx = c;
    return FA_OK;
}
