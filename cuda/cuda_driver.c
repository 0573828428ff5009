/* dlopen of the CUDA driver and NVRTC (see cuda_driver.h). */
#include "cuda_driver.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static void *open_first(const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

#define LOAD(lib, field, sym)                                                                                   \
    do {                                                                                                        \
        *(void **)&api->field = dlsym(lib, sym);                                                                \
        if (!api->field) {                                                                                      \
            snprintf(why, why_size, "%s lacks %s", #lib, sym);                                                  \
            return -1;                                                                                          \
        }                                                                                                       \
    } while (0)

static int load_driver(cuda_api *api, char *why, size_t why_size)
{
    static const char *const names[] = {"libcuda.so.1", "libcuda.so", NULL};
    void *lib_cuda = api->lib_cuda = open_first(names);
    if (!lib_cuda) {
        snprintf(why, why_size, "no CUDA driver (libcuda.so.1): %s", dlerror());
        return -1;
    }
    LOAD(lib_cuda, cuInit, "cuInit");
    LOAD(lib_cuda, cuDriverGetVersion, "cuDriverGetVersion");
    LOAD(lib_cuda, cuDeviceGetCount, "cuDeviceGetCount");
    LOAD(lib_cuda, cuDeviceGet, "cuDeviceGet");
    LOAD(lib_cuda, cuDeviceGetName, "cuDeviceGetName");
    LOAD(lib_cuda, cuDeviceGetAttribute, "cuDeviceGetAttribute");
    LOAD(lib_cuda, cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    LOAD(lib_cuda, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    LOAD(lib_cuda, cuCtxGetCurrent, "cuCtxGetCurrent");
    LOAD(lib_cuda, cuCtxPushCurrent, "cuCtxPushCurrent_v2");
    LOAD(lib_cuda, cuCtxPopCurrent, "cuCtxPopCurrent_v2");
    LOAD(lib_cuda, cuModuleLoadData, "cuModuleLoadData");
    LOAD(lib_cuda, cuModuleUnload, "cuModuleUnload");
    LOAD(lib_cuda, cuModuleGetFunction, "cuModuleGetFunction");
    LOAD(lib_cuda, cuFuncSetAttribute, "cuFuncSetAttribute");
    LOAD(lib_cuda, cuLaunchKernel, "cuLaunchKernel");
    LOAD(lib_cuda, cuMemAlloc, "cuMemAlloc_v2");
    LOAD(lib_cuda, cuMemFree, "cuMemFree_v2");
    LOAD(lib_cuda, cuGetErrorString, "cuGetErrorString");
    LOAD(lib_cuda, cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    LOAD(lib_cuda, cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    LOAD(lib_cuda, cuMemcpyDtoD, "cuMemcpyDtoD_v2");
    LOAD(lib_cuda, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
    LOAD(lib_cuda, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    LOAD(lib_cuda, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    LOAD(lib_cuda, cuStreamSynchronize, "cuStreamSynchronize");
    LOAD(lib_cuda, cuCtxSynchronize, "cuCtxSynchronize");
    return 0;
}

static int load_nvrtc(cuda_api *api, char *why, size_t why_size)
{
    static const char *const names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2",
                                        "/usr/local/cuda/lib64/libnvrtc.so", NULL};
    void *lib_nvrtc = api->lib_nvrtc = open_first(names);
    if (!lib_nvrtc) {
        snprintf(why, why_size, "no NVRTC (libnvrtc.so)");
        return -1;
    }
    LOAD(lib_nvrtc, nvrtcVersion, "nvrtcVersion");
    LOAD(lib_nvrtc, nvrtcCreateProgram, "nvrtcCreateProgram");
    LOAD(lib_nvrtc, nvrtcCompileProgram, "nvrtcCompileProgram");
    LOAD(lib_nvrtc, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
    LOAD(lib_nvrtc, nvrtcGetProgramLog, "nvrtcGetProgramLog");
    LOAD(lib_nvrtc, nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
    LOAD(lib_nvrtc, nvrtcGetCUBIN, "nvrtcGetCUBIN");
    LOAD(lib_nvrtc, nvrtcGetPTXSize, "nvrtcGetPTXSize");
    LOAD(lib_nvrtc, nvrtcGetPTX, "nvrtcGetPTX");
    LOAD(lib_nvrtc, nvrtcDestroyProgram, "nvrtcDestroyProgram");
    return 0;
}

int cuda_api_open(cuda_api *api, int need_driver, char *why, size_t why_size)
{
    memset(api, 0, sizeof *api);
    if (need_driver && load_driver(api, why, why_size) != 0) {
        cuda_api_close(api);
        return -1;
    }
    if (load_nvrtc(api, why, why_size) != 0) {
        cuda_api_close(api);
        return -1;
    }
    return 0;
}

/*
 * The libraries stay loaded: the driver and NVRTC carry C++ runtimes whose static state does not survive
 * being unloaded and reloaded, and a leak checker can only name their one-time allocations while they are
 * still mapped (tests/lsan.supp).
 */
void cuda_api_close(cuda_api *api) { memset(api, 0, sizeof *api); }

const char *cuda_error_string(const cuda_api *api, CUresult r)
{
    const char *s = NULL;
    if (api->cuGetErrorString && api->cuGetErrorString(r, &s) == 0 && s) return s;
    return "unknown CUDA error";
}
