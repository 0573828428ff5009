/*
 * What the CUDA checks share: the driver table they use for device memory of their own, the abort-on-error
 * wrappers for driver and flashport calls, finding the GPU, uploads and a monotonic clock. Each check includes
 * it once.
 */
#ifndef CUDA_CHECK_UTIL_H
#define CUDA_CHECK_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cuda_driver.h"
#include "flashport.h"

static cuda_api api;

/* A failing driver call ends the check (exit 1) with the call and the driver's message. */
#define CK(call)                                                                                                \
    do {                                                                                                        \
        CUresult r_ = (call);                                                                                   \
        if (r_) {                                                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cuda_error_string(&api, r_));         \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)
/* A failing flashport call likewise, with its status and fa_last_error(). */
#define FK(call)                                                                                                \
    do {                                                                                                        \
        fa_status s_ = (call);                                                                                  \
        if (s_ != FA_OK) {                                                                                      \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, fa_status_string(s_), fa_last_error()); \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

/* A device copy of n host bytes (a 4-byte allocation when n is 0, so the pointer is never NULL). */
static inline CUdeviceptr up(const void *h, size_t n)
{
    CUdeviceptr p;
    CK(api.cuMemAlloc(&p, n ? n : 4));
    if (n) CK(api.cuMemcpyHtoD(p, h, n));
    return p;
}

/*
 * The first flashport device of the CUDA backend, with the driver table opened for the check's own memory; -1
 * (after printing why the check skips) when there is none. Its properties go to *props.
 */
static inline int first_cuda_device(fa_device_props *props)
{
    int gpu = -1;
    for (int i = 0; i < fa_device_count(); i++)
        if (fa_device_get(i, props) == FA_OK && props->backend == FA_BACKEND_CUDA) {
            gpu = i;
            break;
        }
    char why[512];
    if (gpu < 0 || cuda_api_open(&api, 1, why, sizeof why) != 0) {
        printf("skipped: no CUDA device (FLASHPORT_LOG=1 says why)\n");
        return -1;
    }
    return gpu;
}

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#endif
