/* hiprtc / NVRTC compilation with an on-disk cache (see hip_jit.h). */
#include "hip_jit.h"

#include "fa_disk_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Headers a kernel may include by name. The compilers see no file system here, so they travel as strings (and
 * enter the cache key with the source). fa_vendor.cuh is the CUDA/HIP mapping of the shared kernels; the fa_*.h
 * are the MFMA kernels' layouts, wave tiles (forward, backward), rounding and device steps (hip/kernels).
 */
extern const char fa_hip_src_fa_vendor[], fa_hip_src_fa_wave_tile[], fa_hip_src_fa_wave_bwd_tile[],
    fa_hip_src_fa_mfma_layout[], fa_hip_src_fa_half[], fa_hip_src_fa_mfma_device[];
static const char *const header_src[] = {fa_hip_src_fa_vendor,      fa_hip_src_fa_wave_tile,
                                         fa_hip_src_fa_wave_bwd_tile, fa_hip_src_fa_mfma_layout,
                                         fa_hip_src_fa_half,        fa_hip_src_fa_mfma_device};
static const char *const header_name[] = {"fa_vendor.cuh",    "fa_wave_tile.h", "fa_wave_bwd_tile.h",
                                          "fa_mfma_layout.h", "fa_half.h",      "fa_mfma_device.h"};
enum { HEADERS = (int)(sizeof header_src / sizeof *header_src) };

static int compile(const hip_api *api, const char *source, const char *name, const char *const *options, int count,
                   hip_image *out, char *why, size_t why_size)
{
    if (!api->rtcCreateProgram) {
        snprintf(why, why_size, "kernel %s is not in the cache and %s is not available", name, api->rtc_name);
        return -1;
    }
    hiprtcProgram prog;
    if (api->rtcCreateProgram(&prog, source, name, HEADERS, header_src, header_name) != 0) {
        snprintf(why, why_size, "%s could not create a program for %s", api->rtc_name, name);
        return -1;
    }
    if (api->rtcCompileProgram(prog, count, options) != 0) {
        size_t n = 0;
        api->rtcGetProgramLogSize(prog, &n);
        char *log = malloc(n + 1);
        if (log) {
            log[0] = 0;
            api->rtcGetProgramLog(prog, log);
            log[n] = 0;
            snprintf(why, why_size, "%s could not compile %s: %.*s", api->rtc_name, name,
                     (int)(why_size > 64 ? why_size - 64 : 0), log);
            free(log);
        } else {
            snprintf(why, why_size, "%s could not compile %s", api->rtc_name, name);
        }
        api->rtcDestroyProgram(&prog);
        return -1;
    }
    size_t n = 0;
    int rc = api->rtcGetCodeSize(prog, &n);
    out->data = rc == 0 && n > 0 ? malloc(n) : NULL;
    if (!out->data || api->rtcGetCode(prog, out->data) != 0) {
        snprintf(why, why_size, "%s compiled %s but returned no code", api->rtc_name, name);
        free(out->data);
        out->data = NULL;
        api->rtcDestroyProgram(&prog);
        return -1;
    }
    out->size = n;
    api->rtcDestroyProgram(&prog);
    return 0;
}

int hip_jit_get(const hip_api *api, const char *source, const char *name, const char *const *options, int count,
                hip_image *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof *out);
    int ver[2] = {0, 0};
    if (api->rtcVersion) api->rtcVersion(&ver[0], &ver[1]);
    uint64_t h = fa_hash64(FA_HASH64_INIT, source, strlen(source) + 1);
    h = fa_hash64(h, name, strlen(name) + 1);
    h = fa_hash64(h, api->platform, strlen(api->platform) + 1);
    for (int i = 0; i < HEADERS; i++) h = fa_hash64(h, header_src[i], strlen(header_src[i]) + 1);
    for (int i = 0; i < count; i++) h = fa_hash64(h, options[i], strlen(options[i]) + 1);
    h = fa_hash64(h, ver, sizeof ver);

    const int amd = strcmp(api->platform, "amd") == 0;
    char dir[1100], path[1200];
    int cached = fa_cache_dir(amd ? "hip" : "hipnv", dir, sizeof dir);
    if (cached) {
        snprintf(path, sizeof path, "%s/%016llx.%s", dir, (unsigned long long)h, amd ? "hsaco" : "cubin");
        if (fa_cache_read(path, 0, &out->data, &out->size) == 0) {
            out->from_cache = 1;
            return 0;
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (compile(api, source, name, options, count, out, why, why_size) != 0) return -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->compile_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
    if (cached) fa_cache_write_atomic(path, out->data, out->size);
    return 0;
}

void hip_image_free(hip_image *img)
{
    free(img->data);
    memset(img, 0, sizeof *img);
}

extern const char fa_hip_src_fwd_f32[], fa_hip_src_fwd_mfma[], fa_hip_src_bwd_f32[], fa_hip_src_bwd_mfma[];

uint64_t hip_jit_sources_hash(void)
{
    uint64_t h = FA_HASH64_INIT;
    h = fa_hash64(h, fa_hip_src_fwd_f32, strlen(fa_hip_src_fwd_f32) + 1);
    h = fa_hash64(h, fa_hip_src_bwd_f32, strlen(fa_hip_src_bwd_f32) + 1);
    h = fa_hash64(h, fa_hip_src_fwd_mfma, strlen(fa_hip_src_fwd_mfma) + 1);
    h = fa_hash64(h, fa_hip_src_bwd_mfma, strlen(fa_hip_src_bwd_mfma) + 1);
    for (int i = 0; i < HEADERS; i++) h = fa_hash64(h, header_src[i], strlen(header_src[i]) + 1);
    return h;
}
