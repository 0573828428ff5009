/*
 * Run-time compilation of one kernel specialisation (hiprtc for the device's gfx target; NVRTC in the NVIDIA
 * verification build), cached on disk through api/fa_disk_cache.h as the CUDA backend's cuda_jit.c does. The key
 * hashes the source, the headers it may include, every option (the specialisation and the target), the
 * compiler's version and the platform, so a changed kernel, option or compiler never reuses a stale binary.
 *
 * Cache folder: hip/ (AMD code objects) or hipnv/ (cubins) under $FLASHPORT_CACHE_DIR, else
 * $XDG_CACHE_HOME/flashport, else ~/.cache/flashport; FLASHPORT_CACHE_DIR=off disables it.
 */
#ifndef HIP_JIT_H
#define HIP_JIT_H

#include <stdint.h>

#include "hip_api.h"

typedef struct hip_image {
    void *data; /* AMD code object (ELF) or cubin */
    size_t size;
    int from_cache;
    double compile_ms; /* 0 when it came from the cache */
} hip_image;

/* The binary for source + options: from the cache, else compiled (and stored). Returns 0, or -1 with the
   compiler's log or the reason in why. */
int hip_jit_get(const hip_api *api, const char *source, const char *name, const char *const *options, int count,
                hip_image *out, char *why, size_t why_size);
void hip_image_free(hip_image *img);
/* A hash of every kernel source and header the plugin embeds: the tuning cache's kernel validator. */
uint64_t hip_jit_sources_hash(void);

#endif
