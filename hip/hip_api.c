/*
 * hip_api.h on AMD: libamdhip64 (ROCm) opened with dlopen. hiprtc lives in libamdhip64 itself up to ROCm 5.x
 * (Debian's 5.2 exports hiprtc* from libamdhip64.so.5) and in its own libhiprtc from ROCm 6.0 on: both are tried.
 */
#include "hip_api.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static void *open_first(const char *const *names, const char **which)
{
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            if (which) *which = names[i];
            return h;
        }
    }
    return NULL;
}

#define LOAD(lib, field, sym)                                                                                   \
    do {                                                                                                        \
        *(void **)&api->field = dlsym(lib, sym);                                                                \
        if (!api->field) {                                                                                      \
            snprintf(why, why_size, "%s lacks %s", api->lib_path, sym);                                         \
            return -1;                                                                                          \
        }                                                                                                       \
    } while (0)

/*
 * hipDeviceAttribute_t of hip_runtime_api.h (ROCm 5.x; 6.x appended to both ranges without renumbering). The
 * "Cuda only" opt-in reads 0 on AMD (or fails): LDS has no opt-in there.
 */
static const int amd_attr[HIP_ATTR_COUNT] = {
    [HIP_ATTR_MAX_THREADS_PER_BLOCK] = 56,  /* hipDeviceAttributeMaxThreadsPerBlock */
    [HIP_ATTR_MAX_THREADS_PER_CU] = 57,     /* hipDeviceAttributeMaxThreadsPerMultiProcessor */
    [HIP_ATTR_CU_COUNT] = 63,               /* hipDeviceAttributeMultiprocessorCount */
    [HIP_ATTR_REGS_PER_BLOCK] = 71,         /* hipDeviceAttributeMaxRegistersPerBlock */
    [HIP_ATTR_SHARED_PER_BLOCK] = 74,       /* hipDeviceAttributeMaxSharedMemoryPerBlock */
    [HIP_ATTR_SHARED_PER_BLOCK_OPTIN] = 75, /* hipDeviceAttributeSharedMemPerBlockOptin */
    [HIP_ATTR_SHARED_PER_CU] = 10002,       /* hipDeviceAttributeMaxSharedMemoryPerMultiprocessor */
    [HIP_ATTR_WARP_SIZE] = 87,              /* hipDeviceAttributeWarpSize */
    [HIP_ATTR_L2_BYTES] = 19,               /* hipDeviceAttributeL2CacheSize */
};

static hipError_t (*amd_get_attribute)(int *, int, int);
static hipError_t (*amd_get_properties)(void *, int);

static hipError_t attr(int *value, hip_attr a, int device)
{
    *value = 0;
    return amd_get_attribute(value, amd_attr[a], device);
}

/*
 * The gcnArchName of hipDeviceProp_t, the target hiprtc compiles for. No attribute returns it as a string, so it
 * is read from the properties in the layout of ROCm 5 (hipDeviceProp_t, 792 bytes, gcnArchName at byte 396),
 * which ROCm 6 keeps under hipGetDevicePropertiesR0000 for programs built against 5. The buffer is larger than
 * either layout, and the name must look like one ("gfx...") before it is believed.
 */
enum { PROPS_R0000_GCN_ARCH_NAME = 396, PROPS_BUFFER = 4096 };

static hipError_t arch(char *out, size_t size, int device)
{
    static unsigned char props[PROPS_BUFFER];
    memset(props, 0, sizeof props);
    hipError_t r = amd_get_properties(props, device);
    if (r != 0) return r;
    const char *name = (const char *)props + PROPS_R0000_GCN_ARCH_NAME;
    if (strncmp(name, "gfx", 3) != 0 || !memchr(name, 0, 256)) return 1; /* hipErrorInvalidValue */
    snprintf(out, size, "%s", name);
    return 0;
}

static int load_runtime(hip_api *api, void *lib, char *why, size_t why_size)
{
    LOAD(lib, hipInit, "hipInit");
    LOAD(lib, hipDriverGetVersion, "hipDriverGetVersion");
    LOAD(lib, hipGetDeviceCount, "hipGetDeviceCount");
    LOAD(lib, hipDeviceGetName, "hipDeviceGetName");
    LOAD(lib, hipDeviceTotalMem, "hipDeviceTotalMem");
    LOAD(lib, hipGetDevice, "hipGetDevice");
    LOAD(lib, hipSetDevice, "hipSetDevice");
    LOAD(lib, hipModuleLoadData, "hipModuleLoadData");
    LOAD(lib, hipModuleUnload, "hipModuleUnload");
    LOAD(lib, hipModuleGetFunction, "hipModuleGetFunction");
    LOAD(lib, hipModuleLaunchKernel, "hipModuleLaunchKernel");
    LOAD(lib, hipMalloc, "hipMalloc");
    LOAD(lib, hipFree, "hipFree");
    LOAD(lib, hipMemcpyHtoD, "hipMemcpyHtoD");
    LOAD(lib, hipMemcpyDtoH, "hipMemcpyDtoH");
    LOAD(lib, hipMemcpyDtoD, "hipMemcpyDtoD");
    LOAD(lib, hipMemcpyHtoDAsync, "hipMemcpyHtoDAsync");
    LOAD(lib, hipMemcpyDtoHAsync, "hipMemcpyDtoHAsync");
    LOAD(lib, hipMemcpyDtoDAsync, "hipMemcpyDtoDAsync");
    LOAD(lib, hipStreamSynchronize, "hipStreamSynchronize");
    LOAD(lib, hipDeviceSynchronize, "hipDeviceSynchronize");
    LOAD(lib, hipGetErrorString, "hipGetErrorString");
    *(void **)&amd_get_attribute = dlsym(lib, "hipDeviceGetAttribute");
    /* R0000: the ROCm 5 layout under ROCm 6; plain hipGetDeviceProperties is that layout on ROCm 5 */
    *(void **)&amd_get_properties = dlsym(lib, "hipGetDevicePropertiesR0000");
    if (!amd_get_properties) *(void **)&amd_get_properties = dlsym(lib, "hipGetDeviceProperties");
    if (!amd_get_attribute || !amd_get_properties) {
        snprintf(why, why_size, "%s lacks hipDeviceGetAttribute or hipGetDeviceProperties", api->lib_path);
        return -1;
    }
    api->device_attr = attr;
    api->device_arch = arch;
    api->func_max_dynamic_shared = NULL; /* LDS up to the device's limit needs no opt-in on AMD */
    return 0;
}

static int load_rtc(hip_api *api, void *hip, char *why, size_t why_size)
{
    void *lib = hip;
    if (!lib || !dlsym(lib, "hiprtcCreateProgram")) {
        static const char *const names[] = {"libhiprtc.so.6", "libhiprtc.so", "libhiprtc.so.5", NULL};
        const char *which = NULL;
        lib = open_first(names, &which);
        if (!lib) {
            snprintf(why, why_size, "no hiprtc (neither in libamdhip64 nor as libhiprtc.so)");
            return -1;
        }
        api->lib_path = which;
    }
    LOAD(lib, rtcVersion, "hiprtcVersion");
    LOAD(lib, rtcCreateProgram, "hiprtcCreateProgram");
    LOAD(lib, rtcCompileProgram, "hiprtcCompileProgram");
    LOAD(lib, rtcGetProgramLogSize, "hiprtcGetProgramLogSize");
    LOAD(lib, rtcGetProgramLog, "hiprtcGetProgramLog");
    LOAD(lib, rtcGetCodeSize, "hiprtcGetCodeSize");
    LOAD(lib, rtcGetCode, "hiprtcGetCode");
    LOAD(lib, rtcDestroyProgram, "hiprtcDestroyProgram");
    return 0;
}

static void clear_rtc(hip_api *api)
{
    api->rtcVersion = NULL;
    api->rtcCreateProgram = NULL;
    api->rtcCompileProgram = NULL;
    api->rtcGetProgramLogSize = NULL;
    api->rtcGetProgramLog = NULL;
    api->rtcGetCodeSize = NULL;
    api->rtcGetCode = NULL;
    api->rtcDestroyProgram = NULL;
}

/* The libraries stay loaded (as cuda_driver.c's): runtimes with C++ static state do not survive an unload. */
int hip_api_open(hip_api *api, int need_runtime, char *why, size_t why_size)
{
    memset(api, 0, sizeof *api);
    api->platform = "amd";
    api->rtc_name = "hiprtc";
    static const char *const names[] = {"libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so", NULL};
    const char *which = NULL;
    void *lib = open_first(names, &which);
    api->lib_path = which;
    if (!lib && need_runtime) {
        snprintf(why, why_size, "no HIP runtime (libamdhip64.so): %s", dlerror());
        return -1;
    }
    if (lib && need_runtime && load_runtime(api, lib, why, why_size) != 0) return -1;
    const char *runtime_path = api->lib_path;
    if (load_rtc(api, lib, why, why_size) != 0) {
        if (need_runtime) {
            /* a runtime without a compiler still runs kernels from the disk cache */
            clear_rtc(api);
            api->lib_path = runtime_path;
            return 0;
        }
        return -1;
    }
    if (runtime_path) api->lib_path = runtime_path;
    return 0;
}

const char *hip_error_string(const hip_api *api, hipError_t r)
{
    const char *s = api->hipGetErrorString ? api->hipGetErrorString(r) : NULL;
    return s ? s : "unknown HIP error";
}
