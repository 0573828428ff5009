/*
 * The parts of the CUDA driver API and NVRTC the plugin uses, declared here and resolved with dlopen at run
 * time: the plugin builds without the CUDA toolkit and loads on machines without a GPU (it then reports no
 * devices, and says why under FLASHPORT_LOG=1).
 */
#ifndef CUDA_DRIVER_H
#define CUDA_DRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult; /* 0 = CUDA_SUCCESS */
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;
typedef struct _nvrtcProgram *nvrtcProgram;

/* CUdevice_attribute values (stable across driver versions) */
enum {
    CU_ATTR_MAX_THREADS_PER_BLOCK = 1,
    CU_ATTR_MAX_SHARED_PER_BLOCK = 8,
    CU_ATTR_WARP_SIZE = 10,
    CU_ATTR_MAX_REGS_PER_BLOCK = 12,
    CU_ATTR_SM_COUNT = 16,
    CU_ATTR_L2_CACHE_SIZE = 38,
    CU_ATTR_MAX_THREADS_PER_SM = 39,
    CU_ATTR_CC_MAJOR = 75,
    CU_ATTR_CC_MINOR = 76,
    CU_ATTR_MAX_SHARED_PER_SM = 81,
    CU_ATTR_MAX_SHARED_PER_BLOCK_OPTIN = 97,
};
enum { CU_FUNC_ATTR_MAX_DYNAMIC_SHARED = 8 };

typedef struct cuda_api {
    void *lib_cuda, *lib_nvrtc;
    CUresult (*cuInit)(unsigned);
    CUresult (*cuDriverGetVersion)(int *);
    CUresult (*cuDeviceGetCount)(int *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDeviceGetName)(char *, int, CUdevice);
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*cuDeviceTotalMem)(size_t *, CUdevice);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*cuCtxGetCurrent)(CUcontext *);
    CUresult (*cuCtxPushCurrent)(CUcontext);
    CUresult (*cuCtxPopCurrent)(CUcontext *);
    CUresult (*cuModuleLoadData)(CUmodule *, const void *);
    CUresult (*cuModuleUnload)(CUmodule);
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                               CUstream, void **, void **);
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
    CUresult (*cuMemFree)(CUdeviceptr);
    CUresult (*cuGetErrorString)(CUresult, const char **);
    /* fa_device_copy / fa_device_synchronize (the synchronous copies also serve tests and tools) */
    CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
    CUresult (*cuStreamSynchronize)(CUstream);
    CUresult (*cuCtxSynchronize)(void);
    /* NVRTC (may be absent: then kernels come only from the disk cache) */
    int (*nvrtcVersion)(int *, int *);
    int (*nvrtcCreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                              const char *const *);
    int (*nvrtcCompileProgram)(nvrtcProgram, int, const char *const *);
    int (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t *);
    int (*nvrtcGetProgramLog)(nvrtcProgram, char *);
    int (*nvrtcGetCUBINSize)(nvrtcProgram, size_t *);
    int (*nvrtcGetCUBIN)(nvrtcProgram, char *);
    int (*nvrtcGetPTXSize)(nvrtcProgram, size_t *);
    int (*nvrtcGetPTX)(nvrtcProgram, char *);
    int (*nvrtcDestroyProgram)(nvrtcProgram *);
} cuda_api;

/* Opens libcuda (need_driver) and NVRTC. Returns 0, or -1 with the reason in why. */
int cuda_api_open(cuda_api *api, int need_driver, char *why, size_t why_size);
void cuda_api_close(cuda_api *api);
/* "CUDA_ERROR_..." text for a driver result. */
const char *cuda_error_string(const cuda_api *api, CUresult r);

#endif
