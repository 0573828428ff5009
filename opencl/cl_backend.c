/*
 * The OpenCL backend plugin (see cl_backend.h): devices of every platform the ICD loader lists, their
 * properties for the planner, contexts and queues, and the interface table the core calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_backend.h"
#include "fa_disk_cache.h"

static cl_ctx g_ctx;

const char *cl_error_name(cl_int err)
{
    static _Thread_local char buf[48];
    const char *name = NULL;
    switch (err) {
#define E(x) case x: name = #x; break;
        E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_BUILD_PROGRAM_FAILURE) E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE) E(CL_INVALID_BINARY)
        E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_COMMAND_QUEUE)
        E(CL_INVALID_CONTEXT) E(CL_INVALID_EVENT_WAIT_LIST) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_INVALID_GLOBAL_WORK_SIZE)
#undef E
    default: break;
    }
    if (name) snprintf(buf, sizeof buf, "%s (%d)", name, (int)err);
    else snprintf(buf, sizeof buf, "OpenCL error %d", (int)err);
    return buf;
}

fa_status cl_device_open(cl_ctx *c, int device)
{
    cl_device *d = &c->dev[device];
    pthread_mutex_lock(&c->lock);
    cl_int err = CL_SUCCESS;
    if (!d->ctx) {
        cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
        d->ctx = clCreateContext(props, 1, &d->id, NULL, NULL, &err);
        if (err == CL_SUCCESS) {
            d->queue = clCreateCommandQueue(d->ctx, d->id, 0, &err);
            if (err != CL_SUCCESS) {
                clReleaseContext(d->ctx);
                d->ctx = NULL;
            }
        } else {
            d->ctx = NULL;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (err != CL_SUCCESS)
        return fa_set_error(FA_ERR_BACKEND, "opencl: no context on %s: %s", d->props.name, cl_error_name(err));
    return FA_OK;
}

fa_status cl_queue_of(cl_ctx *c, int device, void *stream, cl_command_queue *queue)
{
    fa_status st = cl_device_open(c, device);
    if (st != FA_OK) return st;
    if (!stream) {
        *queue = c->dev[device].queue;
        return FA_OK;
    }
    /* a caller's queue must be of this device's context, where the buffers of fa_device_alloc live */
    cl_context qctx = NULL;
    cl_int err = clGetCommandQueueInfo((cl_command_queue)stream, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL);
    if (err != CL_SUCCESS || qctx != c->dev[device].ctx)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "stream=%p is not a command queue of OpenCL device %s's context "
                            "(pass NULL for the device's own queue)", stream, c->dev[device].props.name);
    *queue = (cl_command_queue)stream;
    return FA_OK;
}

static void info_str(cl_device_id id, cl_device_info what, char *buf, size_t size)
{
    buf[0] = 0;
    if (clGetDeviceInfo(id, what, size, buf, NULL) != CL_SUCCESS) buf[0] = 0;
    buf[size - 1] = 0;
}

static cl_ulong info_ulong(cl_device_id id, cl_device_info what)
{
    cl_ulong v = 0;
    if (clGetDeviceInfo(id, what, sizeof v, &v, NULL) != CL_SUCCESS) return 0;
    return v;
}

static cl_uint info_uint(cl_device_id id, cl_device_info what)
{
    cl_uint v = 0;
    if (clGetDeviceInfo(id, what, sizeof v, &v, NULL) != CL_SUCCESS) return 0;
    return v;
}

/* cl_nv_device_attribute_query (NVIDIA): warp size and registers per block */
#define FA_CL_DEVICE_REGISTERS_PER_BLOCK_NV 0x4002
#define FA_CL_DEVICE_WARP_SIZE_NV 0x4003
#define FA_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000
#define FA_CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV 0x4001

/*
 * What one NVIDIA SM holds, by compute capability: shared memory for resident blocks and threads (the CUDA
 * programming guide's table). OpenCL reports only the 48 KB one work-group may take, and the planner took that
 * as the SM's capacity, so it counted 1-4 resident work-groups where an H100 SM holds up to 20 small ones.
 * Its wave model then saw a decode grid of a few hundred work-groups as a full device and split the keys too
 * little: the H100's decode measured 3-4.8x slower than with the split count the tuner found (sixth and seventh
 * sessions, bench/RESULTS.md). 0: unknown part, the 48 KB stays.
 */
static void nv_sm_limits(unsigned major, unsigned minor, int64_t *smem_per_sm, int *threads_per_sm)
{
    unsigned cc = major * 10 + minor;
    int64_t kb = 0;
    int threads = 0;
    if (cc == 70 || cc == 72) kb = 96, threads = 2048;
    else if (cc == 75) kb = 64, threads = 1024;
    else if (cc == 80 || cc == 87) kb = 164, threads = 2048;
    else if (cc == 86 || cc == 89 || cc == 120 || cc == 121) kb = 100, threads = 1536;
    else if (cc == 90 || cc == 100 || cc == 103) kb = 228, threads = 2048;
    if (kb * 1024 > *smem_per_sm) *smem_per_sm = kb * 1024;
    if (threads) *threads_per_sm = threads;
}
/* cl_amd_device_attribute_query: the wavefront */
#define FA_CL_DEVICE_WAVEFRONT_WIDTH_AMD 0x4043

static void read_props(cl_device *d, int ordinal)
{
    fa_device_props *p = &d->props;
    memset(p, 0, sizeof *p);
    p->backend = FA_BACKEND_OPENCL;
    p->index_in_backend = ordinal;
    info_str(d->id, CL_DEVICE_NAME, p->name, sizeof p->name);
    clGetDeviceInfo(d->id, CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
    char version[128], ext[8192];
    info_str(d->id, CL_DEVICE_VERSION, version, sizeof version); /* "OpenCL 3.0 CUDA", "OpenCL 3.0 PoCL ..." */
    info_str(d->id, CL_DEVICE_EXTENSIONS, ext, sizeof ext);
    int major = 1, minor = 2;
    sscanf(version, "OpenCL %d.%d", &major, &minor);
    /* arch names the API level and the device class; "cpu" marks a device that is not GPU-class (fa_device_best) */
    const char *cls = d->type & CL_DEVICE_TYPE_GPU ? "gpu" : d->type & CL_DEVICE_TYPE_CPU ? "cpu" : "accelerator";
    snprintf(p->arch, sizeof p->arch, "opencl%d.%d-%s", major, minor, cls);
    p->shared_mem_per_block = p->shared_mem_per_block_optin = p->shared_mem_per_cu =
        (int64_t)info_ulong(d->id, CL_DEVICE_LOCAL_MEM_SIZE);
    p->compute_units = (int)info_uint(d->id, CL_DEVICE_MAX_COMPUTE_UNITS);
    size_t wg = 0;
    clGetDeviceInfo(d->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    p->max_threads_per_block = (int)wg;
    p->memory_bytes = (int64_t)info_ulong(d->id, CL_DEVICE_GLOBAL_MEM_SIZE);
    p->l2_cache_bytes = (int64_t)info_ulong(d->id, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE);
    /* the SIMD width the planner counts work-groups in: the warp where the driver says it, else 32 on GPUs */
    if (strstr(ext, "cl_nv_device_attribute_query")) {
        p->simd_width = (int)info_uint(d->id, FA_CL_DEVICE_WARP_SIZE_NV);
        p->registers_per_block = (int)info_uint(d->id, FA_CL_DEVICE_REGISTERS_PER_BLOCK_NV);
        nv_sm_limits(info_uint(d->id, FA_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV),
                     info_uint(d->id, FA_CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV), &p->shared_mem_per_cu,
                     &p->max_threads_per_cu);
    }
    if (strstr(ext, "cl_amd_device_attribute_query")) p->simd_width = (int)info_uint(d->id, FA_CL_DEVICE_WAVEFRONT_WIDTH_AMD);
    /* otherwise: warps of 32 on GPUs; on CPUs (PoCL) work-items are vectorised 16 fp32 lanes at a time */
    if (p->simd_width <= 0) p->simd_width = d->type & CL_DEVICE_TYPE_GPU ? 32 : 16;
    /* the CPU-shaped forward's vector width (fwd_cpu.cl takes 4, 8 or 16 floats): PoCL reports the host's SIMD */
    const cl_uint vw = info_uint(d->id, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT);
    d->vec_float = vw >= 16 ? 16 : vw >= 8 ? 8 : 4;

    char plat_name[128] = "", plat_ver[128] = "", drv[128] = "";
    clGetPlatformInfo(d->platform, CL_PLATFORM_NAME, sizeof plat_name, plat_name, NULL);
    clGetPlatformInfo(d->platform, CL_PLATFORM_VERSION, sizeof plat_ver, plat_ver, NULL);
    info_str(d->id, CL_DRIVER_VERSION, drv, sizeof drv);
    plat_name[sizeof plat_name - 1] = plat_ver[sizeof plat_ver - 1] = 0;
    snprintf(d->driver, sizeof d->driver, "%s|%s|%s|%s", plat_name, plat_ver, drv, version);
}

static int device_count(void *vctx) { return ((cl_ctx *)vctx)->ndev; }

static fa_status device_props(void *vctx, int device, fa_device_props *p)
{
    *p = ((cl_ctx *)vctx)->dev[device].props;
    return FA_OK;
}

/*
 * A plan's state: the forward's (cl_fwd.c) and, for a with_backward plan, the backward's (cl_bwd.c). cl_fwd.c
 * reads its own as plan->backend_state, so it is handed a copy of the plan info that holds it.
 */
typedef struct plan_states {
    void *fwd;
    cl_bwd_state *bwd;
} plan_states;

static fa_plan_info fwd_view(const fa_plan_info *plan)
{
    fa_plan_info v = *plan;
    v.backend_state = ((const plan_states *)plan->backend_state)->fwd;
    return v;
}

static fa_status plan_prepare(void *vctx, fa_plan_info *plan)
{
    plan_states *ps = calloc(1, sizeof *ps);
    if (!ps) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no memory for a plan");
    fa_status st = cl_fwd_prepare(vctx, plan);
    if (st != FA_OK) {
        free(ps);
        return st;
    }
    ps->fwd = plan->backend_state;
    if (plan->bwd_family && (st = cl_bwd_prepare(vctx, plan, &ps->bwd)) != FA_OK) {
        cl_fwd_release(vctx, plan);
        free(ps);
        return st;
    }
    plan->backend_state = ps;
    return FA_OK;
}

static void plan_release(void *vctx, fa_plan_info *plan)
{
    plan_states *ps = plan->backend_state;
    if (!ps) return;
    cl_bwd_release(ps->bwd);
    plan->backend_state = ps->fwd;
    cl_fwd_release(vctx, plan);
    plan->backend_state = NULL;
    free(ps);
}

static size_t describe(void *vctx, const fa_plan_info *plan, char *buf, size_t size)
{
    const plan_states *ps = plan->backend_state;
    fa_plan_info v = fwd_view(plan);
    size_t n = cl_fwd_describe(vctx, &v, buf, size);
    if (n + 1 < size) buf[n++] = '\n', buf[n] = 0; /* the core's next line follows */
    if (ps->bwd && n < size) n += cl_bwd_describe(ps->bwd, buf + n, size - n);
    return n;
}

static fa_status fwd(void *vctx, const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, void *stream)
{
    fa_plan_info v = fwd_view(plan);
    return cl_fwd(vctx, &v, a, workspace, stream);
}

static fa_status bwd(void *vctx, const fa_plan_info *plan, const fa_bwd_args *a, void *workspace, void *stream)
{
    return cl_bwd(vctx, plan, ((const plan_states *)plan->backend_state)->bwd, a, workspace, stream);
}

static void *alloc(void *vctx, int device, int64_t bytes, void *stream)
{
    (void)stream;
    return cl_mem_alloc(vctx, device, bytes > 0 ? bytes : 1);
}

static void release(void *vctx, int device, void *ptr, void *stream)
{
    (void)stream;
    if (ptr) cl_mem_free(vctx, device, ptr);
}

static fa_status copy(void *vctx, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream)
{
    return cl_mem_copy(vctx, device, dst, src, bytes, kind, stream);
}

static fa_status synchronize(void *vctx, int device, void *stream)
{
    cl_command_queue q = NULL;
    fa_status st = cl_queue_of(vctx, device, stream, &q);
    if (st != FA_OK) return st;
    cl_int err = clFinish(q);
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: clFinish: %s", cl_error_name(err));
    return FA_OK;
}

static void backend_shutdown(void *vctx)
{
    cl_ctx *c = vctx;
    for (int i = 0; i < c->ndev; i++) {
        if (c->dev[i].queue) clReleaseCommandQueue(c->dev[i].queue);
        if (c->dev[i].ctx) clReleaseContext(c->dev[i].ctx);
    }
    c->ndev = 0;
}

/* Every kernel source the build embeds (FA_OPENCL_KERNELS in CMakeLists.txt): the tuning cache's kernel hash. */
extern const char fa_opencl_src_fwd[], fa_opencl_src_fa_cl_params[], fa_opencl_src_bwd[],
    fa_opencl_src_fa_cl_bwd_params[], fa_opencl_src_append[], fa_opencl_src_fa_cl_append_params[];
static uint64_t g_kernel_hash;
static pthread_once_t g_kernel_hash_once = PTHREAD_ONCE_INIT;

static void hash_kernels(void)
{
    const char *const src[] = {fa_opencl_src_fwd, fa_opencl_src_fa_cl_params, fa_opencl_src_common,
                               fa_opencl_src_bwd, fa_opencl_src_fa_cl_bwd_params, fa_opencl_src_append,
                               fa_opencl_src_fa_cl_append_params};
    uint64_t h = FA_HASH64_INIT;
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) h = fa_hash64(h, src[i], strlen(src[i]) + 1);
    g_kernel_hash = h;
}

/* Tuned tiles depend on the kernels and on the platform and driver that compile them. */
static uint64_t kernel_source_hash(void *vctx, int device, char *runtime, size_t runtime_size)
{
    cl_ctx *c = vctx;
    snprintf(runtime, runtime_size, "%s", device >= 0 && device < c->ndev ? c->dev[device].driver : "");
    pthread_once(&g_kernel_hash_once, hash_kernels);
    return g_kernel_hash;
}

static const fa_backend_iface iface = {
    .abi_version = FA_BACKEND_ABI_VERSION,
    .kind = FA_BACKEND_OPENCL,
    .name = "opencl",
    .device_count = device_count,
    .device_props = device_props,
    .select = cl_select,
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

FA_API fa_status fa_backend_plugin_init(uint32_t core_abi, const fa_backend_iface **out, void **ctx, char *why,
                                        size_t why_size)
{
    if (core_abi != FA_BACKEND_ABI_VERSION) {
        snprintf(why, why_size, "opencl plugin speaks ABI %u, core speaks %u", FA_BACKEND_ABI_VERSION, core_abi);
        return FA_ERR_UNSUPPORTED;
    }
    cl_ctx *c = &g_ctx;
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    cl_platform_id plats[8];
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(8, plats, &np);
    if (err != CL_SUCCESS || np == 0) {
        snprintf(why, why_size, "OpenCL ICD loader found, but no platform: %s",
                 err != CL_SUCCESS ? cl_error_name(err) : "0 platforms");
        return FA_ERR_UNSUPPORTED;
    }
    for (cl_uint i = 0; i < np && i < 8; i++) {
        cl_device_id ids[CL_MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, CL_MAX_DEVICES, ids, &nd) != CL_SUCCESS) continue;
        for (cl_uint j = 0; j < nd && c->ndev < CL_MAX_DEVICES; j++) {
            cl_bool avail = CL_FALSE, compiler = CL_FALSE;
            clGetDeviceInfo(ids[j], CL_DEVICE_AVAILABLE, sizeof avail, &avail, NULL);
            clGetDeviceInfo(ids[j], CL_DEVICE_COMPILER_AVAILABLE, sizeof compiler, &compiler, NULL);
            if (!avail || !compiler) continue; /* kernels are built from source at run time */
            cl_device *d = &c->dev[c->ndev];
            d->platform = plats[i];
            d->id = ids[j];
            read_props(d, c->ndev);
            c->ndev++;
        }
    }
    if (c->ndev == 0) {
        snprintf(why, why_size, "OpenCL platforms found, but no available device with a compiler");
        return FA_ERR_UNSUPPORTED;
    }
    *out = &iface;
    *ctx = c;
    return FA_OK;
}
