/* NVRTC compilation with an on-disk cache (see cuda_jit.h). */
#include "cuda_jit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The cache folder, created if needed; 0 if caching is off or impossible. */
static int cache_dir(char *dir, size_t size)
{
    const char *env = getenv("FLASHPORT_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[1024];
    if (env && !strcmp(env, "off")) return 0;
    if (env && *env) snprintf(base, sizeof base, "%s", env);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/flashport", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/flashport", home);
    else return 0;
    if (snprintf(dir, size, "%s/cuda", base) >= (int)size) return 0;
    /* mkdir -p of the two levels we own */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s", base);
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(tmp, 0755);
            *s = '/';
        }
    mkdir(tmp, 0755);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 0;
    return 1;
}

static int read_file(const char *path, int text, cuda_image *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0) {
        fclose(f);
        return -1;
    }
    out->data = malloc((size_t)n + 1);
    if (!out->data || fread(out->data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(out->data);
        out->data = NULL;
        return -1;
    }
    fclose(f);
    ((char *)out->data)[n] = 0;
    out->size = (size_t)n + (text ? 1 : 0);
    return 0;
}

static void write_file_atomic(const char *path, const void *data, size_t size)
{
    char tmp[1300];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) return;
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    int ok = fwrite(data, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    if (ok) ok = rename(tmp, path) == 0; /* readers see the old file or the whole new one */
    if (!ok) remove(tmp);
}

/*
 * Headers every kernel may include by name: NVRTC has no file system view, so they travel as strings (and
 * enter the cache key with the source).
 */
extern const char fa_cuda_src_common_sm80[];
static const char *const header_src[] = {fa_cuda_src_common_sm80};
static const char *const header_name[] = {"common_sm80.cuh"};
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
    uint64_t h = fnv1a(1469598103934665603ull, source, strlen(source) + 1);
    h = fnv1a(h, name, strlen(name) + 1);
    for (int i = 0; i < HEADERS; i++) h = fnv1a(h, header_src[i], strlen(header_src[i]) + 1);
    for (int i = 0; i < count; i++) h = fnv1a(h, options[i], strlen(options[i]) + 1);
    int ver[3] = {major, minor, ptx};
    h = fnv1a(h, ver, sizeof ver);

    char dir[1100], path[1200];
    int cached = cache_dir(dir, sizeof dir);
    if (cached) {
        snprintf(path, sizeof path, "%s/%016llx.%s", dir, (unsigned long long)h, ptx ? "ptx" : "cubin");
        if (read_file(path, ptx, out) == 0) {
            out->from_cache = 1;
            return 0;
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (compile(api, source, name, options, count, ptx, out, why, why_size) != 0) return -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->compile_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    if (cached) write_file_atomic(path, out->data, out->size);
    return 0;
}

void cuda_image_free(cuda_image *img)
{
    free(img->data);
    memset(img, 0, sizeof *img);
}
