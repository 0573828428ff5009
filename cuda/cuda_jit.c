/* NVRTC compilation with an on-disk cache (see cuda_jit.h). */
#include "cuda_jit.h"

#include "fa_disk_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Headers every kernel may include by name: NVRTC has no file system view, so they travel as strings (and
 * enter the cache key with the source).
 */
extern const char fa_cuda_src_common_sm80[];
extern const char fa_cuda_src_fa_vendor[]; /* the CUDA/HIP mapping of kernels shared with the HIP backend */
static const char *const header_src[] = {fa_cuda_src_common_sm80, fa_cuda_src_fa_vendor};
static const char *const header_name[] = {"common_sm80.cuh", "fa_vendor.cuh"};
enum { HEADERS = (int)(sizeof header_src / sizeof *header_src) };

static int compile(const cuda_api *api, const char *source, const char *name, const char *const *options, int count,
                   int ptx, cuda_image *out, char *why, size_t why_size)
{
    if (!api->nvrtcCreateProgram) {
        snprintf(why, why_size, "kernel %s is not in the cache and NVRTC is not available", name);
        return -1;
    }
    nvrtcProgram prog;
    if (api->nvrtcCreateProgram(&prog, source, name, HEADERS, header_src, header_name) != 0) {
        snprintf(why, why_size, "nvrtcCreateProgram failed for %s", name);
        return -1;
    }
    int rc = api->nvrtcCompileProgram(prog, count, options);
    if (rc != 0) {
        size_t n = 0;
        api->nvrtcGetProgramLogSize(prog, &n);
        char *log = malloc(n + 1);
        if (log) {
            log[0] = 0;
            api->nvrtcGetProgramLog(prog, log);
            snprintf(why, why_size, "NVRTC could not compile %s: %.*s", name, (int)(why_size > 64 ? why_size - 64 : 0),
                     log);
            free(log);
        }
        api->nvrtcDestroyProgram(&prog);
        return -1;
    }
    size_t n = 0;
    rc = ptx ? api->nvrtcGetPTXSize(prog, &n) : api->nvrtcGetCUBINSize(prog, &n);
    out->data = rc == 0 && n > 0 ? malloc(n) : NULL;
    if (!out->data || (ptx ? api->nvrtcGetPTX(prog, out->data) : api->nvrtcGetCUBIN(prog, out->data)) != 0) {
        snprintf(why, why_size, "NVRTC compiled %s but returned no %s", name, ptx ? "PTX" : "cubin");
        free(out->data);
        out->data = NULL;
        api->nvrtcDestroyProgram(&prog);
        return -1;
    }
    out->size = n;
    api->nvrtcDestroyProgram(&prog);
    return 0;
}

int cuda_jit_get(const cuda_api *api, const char *source, const char *name, const char *const *options, int count,
                 int ptx, cuda_image *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof *out);
    int major = 0, minor = 0;
    if (api->nvrtcVersion) api->nvrtcVersion(&major, &minor);
    uint64_t h = fa_hash64(FA_HASH64_INIT, source, strlen(source) + 1);
    h = fa_hash64(h, name, strlen(name) + 1);
    for (int i = 0; i < HEADERS; i++) h = fa_hash64(h, header_src[i], strlen(header_src[i]) + 1);
    for (int i = 0; i < count; i++) h = fa_hash64(h, options[i], strlen(options[i]) + 1);
    int ver[3] = {major, minor, ptx};
    h = fa_hash64(h, ver, sizeof ver);

    char dir[1100], path[1200];
    int cached = fa_cache_dir("cuda", dir, sizeof dir);
    if (cached) {
        snprintf(path, sizeof path, "%s/%016llx.%s", dir, (unsigned long long)h, ptx ? "ptx" : "cubin");
        if (fa_cache_read(path, ptx, &out->data, &out->size) == 0) {
            out->from_cache = 1;
            return 0;
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (compile(api, source, name, options, count, ptx, out, why, why_size) != 0) return -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->compile_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    if (cached) fa_cache_write_atomic(path, out->data, out->size);
    return 0;
}

void cuda_image_free(cuda_image *img)
{
    free(img->data);
    memset(img, 0, sizeof *img);
}
