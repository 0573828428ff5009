/*
 * hip_api.h on NVIDIA, for the HIP backend's verification build (libflashport_hipnv.so): each HIP function of
 * the table done by the CUDA driver (libcuda.so.1) and NVRTC, opened by the CUDA plugin's loader
 * (cuda/cuda_driver.c). HIP's own NVIDIA platform maps the same way, but its headers (Debian's ROCm 5.2) do not
 * build with CUDA 13, and it would link the CUDA runtime; this is the small part the backend needs.
 *
 * HIP's device model is the CUDA runtime's: a current device per thread, each device's one (primary) context.
 * hipSetDevice is therefore "retain the primary context once, make it current", and hipGetDevice reads the
 * current context's device, or -1 when there is none (cudaGetDevice would answer 0; -1 lets the backend leave
 * a thread without a context as it found it instead of retaining device 0's).
 */
#include "hip_api.h"

#include "cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { NV_MAX_DEVICES = 64 };

static cuda_api g_cu;
static CUresult (*cu_ctx_set_current)(CUcontext);
static CUresult (*cu_ctx_get_device)(CUdevice *);
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static CUcontext g_primary[NV_MAX_DEVICES];

static const int nv_attr[HIP_ATTR_COUNT] = {
    [HIP_ATTR_MAX_THREADS_PER_BLOCK] = CU_ATTR_MAX_THREADS_PER_BLOCK,
    [HIP_ATTR_MAX_THREADS_PER_CU] = CU_ATTR_MAX_THREADS_PER_SM,
    [HIP_ATTR_CU_COUNT] = CU_ATTR_SM_COUNT,
    [HIP_ATTR_REGS_PER_BLOCK] = CU_ATTR_MAX_REGS_PER_BLOCK,
    [HIP_ATTR_SHARED_PER_BLOCK] = CU_ATTR_MAX_SHARED_PER_BLOCK,
    [HIP_ATTR_SHARED_PER_BLOCK_OPTIN] = CU_ATTR_MAX_SHARED_PER_BLOCK_OPTIN,
    [HIP_ATTR_SHARED_PER_CU] = CU_ATTR_MAX_SHARED_PER_SM,
    [HIP_ATTR_WARP_SIZE] = CU_ATTR_WARP_SIZE,
    [HIP_ATTR_L2_BYTES] = CU_ATTR_L2_CACHE_SIZE,
};

static hipError_t nv_init(unsigned flags) { return g_cu.cuInit(flags); }
static hipError_t nv_driver_version(int *v) { return g_cu.cuDriverGetVersion(v); }
static hipError_t nv_device_count(int *n) { return g_cu.cuDeviceGetCount(n); }

static hipError_t nv_attr_get(int *value, hip_attr a, int device)
{
    CUdevice d;
    *value = 0;
    CUresult r = g_cu.cuDeviceGet(&d, device);
    return r ? r : g_cu.cuDeviceGetAttribute(value, nv_attr[a], d);
}

static hipError_t nv_name(char *name, int len, int device)
{
    CUdevice d;
    CUresult r = g_cu.cuDeviceGet(&d, device);
    return r ? r : g_cu.cuDeviceGetName(name, len, d);
}

static hipError_t nv_arch(char *arch, size_t size, int device)
{
    int major = 0, minor = 0;
    CUdevice d;
    CUresult r = g_cu.cuDeviceGet(&d, device);
    if (!r) r = g_cu.cuDeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, d);
    if (!r) r = g_cu.cuDeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, d);
    if (!r) snprintf(arch, size, "sm_%d%d", major, minor);
    return r;
}

static hipError_t nv_total_mem(size_t *bytes, int device)
{
    CUdevice d;
    CUresult r = g_cu.cuDeviceGet(&d, device);
    return r ? r : g_cu.cuDeviceTotalMem(bytes, d);
}

static hipError_t nv_get_device(int *device)
{
    CUcontext ctx = NULL;
    CUdevice d = 0;
    *device = -1;
    CUresult r = g_cu.cuCtxGetCurrent(&ctx);
    if (r || !ctx) return r;
    r = cu_ctx_get_device(&d);
    if (!r) *device = d;
    return r;
}

static hipError_t nv_set_device(int device)
{
    if (device < 0 || device >= NV_MAX_DEVICES) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    CUdevice d;
    CUresult r = g_cu.cuDeviceGet(&d, device);
    if (r) return r;
    pthread_mutex_lock(&g_lock);
    if (!g_primary[device]) r = g_cu.cuDevicePrimaryCtxRetain(&g_primary[device], d);
    CUcontext ctx = g_primary[device];
    pthread_mutex_unlock(&g_lock);
    return r ? r : cu_ctx_set_current(ctx);
}

static hipError_t nv_module_load(hipModule_t *m, const void *image)
{
    return g_cu.cuModuleLoadData((CUmodule *)m, image);
}
static hipError_t nv_module_unload(hipModule_t m) { return g_cu.cuModuleUnload((CUmodule)m); }
static hipError_t nv_module_function(hipFunction_t *f, hipModule_t m, const char *name)
{
    return g_cu.cuModuleGetFunction((CUfunction *)f, (CUmodule)m, name);
}
static hipError_t nv_max_dynamic_shared(hipFunction_t f, int bytes)
{
    return g_cu.cuFuncSetAttribute((CUfunction)f, CU_FUNC_ATTR_MAX_DYNAMIC_SHARED, bytes);
}
static hipError_t nv_launch(hipFunction_t f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                            unsigned bz, unsigned shared, hipStream_t s, void **params, void **extra)
{
    return g_cu.cuLaunchKernel((CUfunction)f, gx, gy, gz, bx, by, bz, shared, (CUstream)s, params, extra);
}

static CUdeviceptr dptr(const void *p) { return (CUdeviceptr)(uintptr_t)p; }

static hipError_t nv_malloc(void **p, size_t bytes)
{
    CUdeviceptr d = 0;
    CUresult r = g_cu.cuMemAlloc(&d, bytes);
    *p = r ? NULL : (void *)(uintptr_t)d;
    return r;
}
static hipError_t nv_free(void *p) { return g_cu.cuMemFree(dptr(p)); }
static hipError_t nv_htod(void *d, const void *s, size_t n) { return g_cu.cuMemcpyHtoD(dptr(d), s, n); }
static hipError_t nv_dtoh(void *d, const void *s, size_t n) { return g_cu.cuMemcpyDtoH(d, dptr(s), n); }
static hipError_t nv_dtod(void *d, const void *s, size_t n) { return g_cu.cuMemcpyDtoD(dptr(d), dptr(s), n); }
static hipError_t nv_htod_async(void *d, const void *s, size_t n, hipStream_t st)
{
    return g_cu.cuMemcpyHtoDAsync(dptr(d), s, n, (CUstream)st);
}
static hipError_t nv_dtoh_async(void *d, const void *s, size_t n, hipStream_t st)
{
    return g_cu.cuMemcpyDtoHAsync(d, dptr(s), n, (CUstream)st);
}
static hipError_t nv_dtod_async(void *d, const void *s, size_t n, hipStream_t st)
{
    return g_cu.cuMemcpyDtoDAsync(dptr(d), dptr(s), n, (CUstream)st);
}
static hipError_t nv_stream_sync(hipStream_t s) { return g_cu.cuStreamSynchronize((CUstream)s); }
static hipError_t nv_device_sync(void) { return g_cu.cuCtxSynchronize(); }
static const char *nv_error_string(hipError_t r) { return cuda_error_string(&g_cu, r); }

int hip_api_open(hip_api *api, int need_runtime, char *why, size_t why_size)
{
    memset(api, 0, sizeof *api);
    api->platform = "nvidia";
    api->rtc_name = "NVRTC";
    api->lib_path = "libcuda.so.1";
    if (cuda_api_open(&g_cu, need_runtime, why, why_size) != 0) return -1;
    if (need_runtime) {
        *(void **)&cu_ctx_set_current = dlsym(g_cu.lib_cuda, "cuCtxSetCurrent");
        *(void **)&cu_ctx_get_device = dlsym(g_cu.lib_cuda, "cuCtxGetDevice");
        if (!cu_ctx_set_current || !cu_ctx_get_device) {
            snprintf(why, why_size, "libcuda.so.1 lacks cuCtxSetCurrent or cuCtxGetDevice");
            return -1;
        }
        api->hipInit = nv_init;
        api->hipDriverGetVersion = nv_driver_version;
        api->hipGetDeviceCount = nv_device_count;
        api->device_attr = nv_attr_get;
        api->hipDeviceGetName = nv_name;
        api->device_arch = nv_arch;
        api->hipDeviceTotalMem = nv_total_mem;
        api->hipGetDevice = nv_get_device;
        api->hipSetDevice = nv_set_device;
        api->hipModuleLoadData = nv_module_load;
        api->hipModuleUnload = nv_module_unload;
        api->hipModuleGetFunction = nv_module_function;
        api->func_max_dynamic_shared = nv_max_dynamic_shared;
        api->hipModuleLaunchKernel = nv_launch;
        api->hipMalloc = nv_malloc;
        api->hipFree = nv_free;
        api->hipMemcpyHtoD = nv_htod;
        api->hipMemcpyDtoH = nv_dtoh;
        api->hipMemcpyDtoD = nv_dtod;
        api->hipMemcpyHtoDAsync = nv_htod_async;
        api->hipMemcpyDtoHAsync = nv_dtoh_async;
        api->hipMemcpyDtoDAsync = nv_dtod_async;
        api->hipStreamSynchronize = nv_stream_sync;
        api->hipDeviceSynchronize = nv_device_sync;
        api->hipGetErrorString = nv_error_string;
    }
    /* NVRTC has hiprtc's signatures (hiprtc was modelled on it); GetCode is the cubin */
    api->rtcVersion = g_cu.nvrtcVersion;
    *(void **)&api->rtcCreateProgram = (void *)g_cu.nvrtcCreateProgram;
    *(void **)&api->rtcCompileProgram = (void *)g_cu.nvrtcCompileProgram;
    *(void **)&api->rtcGetProgramLogSize = (void *)g_cu.nvrtcGetProgramLogSize;
    *(void **)&api->rtcGetProgramLog = (void *)g_cu.nvrtcGetProgramLog;
    *(void **)&api->rtcGetCodeSize = (void *)g_cu.nvrtcGetCUBINSize;
    *(void **)&api->rtcGetCode = (void *)g_cu.nvrtcGetCUBIN;
    *(void **)&api->rtcDestroyProgram = (void *)g_cu.nvrtcDestroyProgram;
    return 0;
}

const char *hip_error_string(const hip_api *api, hipError_t r)
{
    const char *s = api->hipGetErrorString ? api->hipGetErrorString(r) : NULL;
    return s ? s : "unknown CUDA error";
}
