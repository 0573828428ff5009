/*
 * Buffers of flashport-bench on the device being measured. On the CPU they are host memory filled in place
 * (each page first touched by an OpenMP thread, as the library's threads touch it). On a GPU they are
 * fa_device_alloc memory, filled on the host in one reused staging buffer and copied over with fa_device_copy,
 * so the bench needs no vendor runtime of its own.
 */
#ifndef BENCH_BUFFERS_H
#define BENCH_BUFFERS_H

#include <stdint.h>

#include "flashport.h"

typedef struct bench_mem {
    int device;
    int on_host;           /* the CPU device: plain host buffers */
    void *staging;         /* GPU: host buffer the fills go through */
    int64_t staging_bytes;
    char error[512];       /* why the last failing call failed */
} bench_mem;

void bench_mem_init(bench_mem *m, int device, int on_host);
/* n elements of dtype, filled as bench_fill(seed) does. NULL on failure, m->error saying why. */
void *bench_mem_filled(bench_mem *m, fa_dtype dtype, int64_t n, uint64_t seed);
/* A copy of bytes of host memory. NULL on failure. */
void *bench_mem_copy_of(bench_mem *m, const void *host, int64_t bytes);
/* bytes left as they come (workspaces). NULL on failure. */
void *bench_mem_uninit(bench_mem *m, int64_t bytes);
/* Releases one buffer of this bench_mem (NULL does nothing). */
void bench_mem_free(bench_mem *m, void *p);
/* Releases the staging buffer. */
void bench_mem_done(bench_mem *m);

#endif
