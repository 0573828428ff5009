/*
 * Run-time compilation of one kernel specialisation with NVRTC, cached on disk. The cache key hashes the
 * kernel source, every compile option (which carry the specialisation and the target architecture) and the
 * NVRTC version, so a changed kernel, option or compiler never reuses a stale binary.
 *
 * Cache directory: $FLASHPORT_CACHE_DIR, else $XDG_CACHE_HOME/flashport, else ~/.cache/flashport; the
 * binaries go to its cuda/ folder. FLASHPORT_CACHE_DIR=off disables the cache.
 */
#ifndef CUDA_JIT_H
#define CUDA_JIT_H

#include "cuda_driver.h"

typedef struct cuda_image {
    void *data; /* cubin (or PTX text, NUL-terminated) */
    size_t size;
    int from_cache;
    double compile_ms; /* 0 when it came from the cache */
} cuda_image;

/*
 * The binary for source + options: from the cache, else compiled (and stored). ptx = 1 asks for PTX
 * (options must then name a compute_XX virtual architecture). Returns 0, or -1 with the NVRTC log or the
 * reason in why.
 */
int cuda_jit_get(const cuda_api *api, const char *source, const char *name, const char *const *options, int count,
                 int ptx, cuda_image *out, char *why, size_t why_size);
void cuda_image_free(cuda_image *img);

#endif
