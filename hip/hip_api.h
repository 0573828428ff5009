/*
 * The HIP runtime and run-time compiler functions the HIP plugin calls, as a table filled at run time: no
 * ROCm library is linked, so the plugin builds without ROCm and loads on machines without it (it then reports
 * itself absent, and says why under FLASHPORT_LOG=1).
 *
 * Two sources fill the table, one per plugin:
 *   hip_api.c     libamdhip64 (ROCm) and hiprtc: libflashport_hip.so, the AMD backend
 *   hip_api_nv.c  the CUDA driver and NVRTC behind the same HIP signatures (what HIP's own NVIDIA platform
 *                 does, written small here): libflashport_hipnv.so, the NVIDIA verification build, so the HIP
 *                 backend's host code and its wave-size-generic kernel path run on an NVIDIA GPU.
 * The backend (hip_backend.c, hip_fwd.c, hip_jit.c) sees only this table, with HIP's names and meanings.
 */
#ifndef HIP_API_H
#define HIP_API_H

#include <stddef.h>

typedef int hipError_t; /* 0 = hipSuccess */
typedef struct ihipModule_t *hipModule_t;
typedef struct ihipModuleSymbol_t *hipFunction_t;
typedef struct ihipStream_t *hipStream_t;
typedef struct _hiprtcProgram *hiprtcProgram;

/* Device attributes by meaning; each mapping translates them to its runtime's numbering. */
typedef enum hip_attr {
    HIP_ATTR_MAX_THREADS_PER_BLOCK,
    HIP_ATTR_MAX_THREADS_PER_CU,
    HIP_ATTR_CU_COUNT,
    HIP_ATTR_REGS_PER_BLOCK,
    HIP_ATTR_SHARED_PER_BLOCK,
    HIP_ATTR_SHARED_PER_BLOCK_OPTIN, /* 0 where the runtime has no opt-in (AMD: LDS is granted as launched) */
    HIP_ATTR_SHARED_PER_CU,
    HIP_ATTR_WARP_SIZE,
    HIP_ATTR_L2_BYTES,
    HIP_ATTR_COUNT
} hip_attr;

typedef struct hip_api {
    const char *platform;   /* "amd", or "nvidia" for the verification build's mapping */
    const char *rtc_name;   /* "hiprtc" / "NVRTC" (plan descriptions, errors) */
    const char *lib_path;   /* the runtime library opened (its name as given to dlopen) */

    hipError_t (*hipInit)(unsigned);
    hipError_t (*hipDriverGetVersion)(int *);
    hipError_t (*hipGetDeviceCount)(int *);
    hipError_t (*device_attr)(int *value, hip_attr attr, int device);
    hipError_t (*hipDeviceGetName)(char *, int, int);
    /* the compiler's target for the device: the full gcnArchName ("gfx90a:sramecc+:xnack-"), or "sm_90" */
    hipError_t (*device_arch)(char *arch, size_t size, int device);
    hipError_t (*hipDeviceTotalMem)(size_t *, int);
    hipError_t (*hipGetDevice)(int *); /* -1 where none is current (NVIDIA: no current context) */
    hipError_t (*hipSetDevice)(int);
    hipError_t (*hipModuleLoadData)(hipModule_t *, const void *);
    hipError_t (*hipModuleUnload)(hipModule_t);
    hipError_t (*hipModuleGetFunction)(hipFunction_t *, hipModule_t, const char *);
    /* lets fn use this much dynamic shared memory; NULL where no opt-in exists (AMD) */
    hipError_t (*func_max_dynamic_shared)(hipFunction_t, int bytes);
    hipError_t (*hipModuleLaunchKernel)(hipFunction_t, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                        unsigned, hipStream_t, void **, void **);
    hipError_t (*hipMalloc)(void **, size_t);
    hipError_t (*hipFree)(void *);
    hipError_t (*hipMemcpyHtoD)(void *, const void *, size_t);
    hipError_t (*hipMemcpyDtoH)(void *, const void *, size_t);
    hipError_t (*hipMemcpyDtoD)(void *, const void *, size_t);
    hipError_t (*hipMemcpyHtoDAsync)(void *, const void *, size_t, hipStream_t);
    hipError_t (*hipMemcpyDtoHAsync)(void *, const void *, size_t, hipStream_t);
    hipError_t (*hipMemcpyDtoDAsync)(void *, const void *, size_t, hipStream_t);
    hipError_t (*hipStreamSynchronize)(hipStream_t);
    hipError_t (*hipDeviceSynchronize)(void);
    const char *(*hipGetErrorString)(hipError_t);

    /* the run-time compiler (hiprtc / NVRTC; NULL when absent: kernels then come only from the disk cache) */
    int (*rtcVersion)(int *, int *);
    int (*rtcCreateProgram)(hiprtcProgram *, const char *, const char *, int, const char *const *,
                            const char *const *);
    int (*rtcCompileProgram)(hiprtcProgram, int, const char *const *);
    int (*rtcGetProgramLogSize)(hiprtcProgram, size_t *);
    int (*rtcGetProgramLog)(hiprtcProgram, char *);
    int (*rtcGetCodeSize)(hiprtcProgram, size_t *);
    int (*rtcGetCode)(hiprtcProgram, char *);
    int (*rtcDestroyProgram)(hiprtcProgram *);
} hip_api;

/*
 * Fills api (need_runtime: the device runtime too; 0: the compiler only, for compile tests on machines without
 * a GPU). Returns 0, or -1 with the reason in why. Implemented by hip_api.c or hip_api_nv.c.
 */
int hip_api_open(hip_api *api, int need_runtime, char *why, size_t why_size);
/* "hipErrorNoDevice"-like text for a result. */
const char *hip_error_string(const hip_api *api, hipError_t r);

#endif
