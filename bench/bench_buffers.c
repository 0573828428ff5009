/* Buffers of flashport-bench on the measured device (bench_buffers.h). */
#include "bench_buffers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_data.h"

void bench_mem_init(bench_mem *m, int device, int on_host)
{
    memset(m, 0, sizeof *m);
    m->device = device;
    m->on_host = on_host;
}

void *bench_mem_uninit(bench_mem *m, int64_t bytes)
{
    if (m->on_host) {
        void *p = bench_alloc(bytes);
        if (!p) snprintf(m->error, sizeof m->error, "out of host memory for %lld bytes", (long long)bytes);
        return p;
    }
    void *p = NULL;
    fa_status st = fa_device_alloc(m->device, bytes > 0 ? bytes : 64, &p);
    if (st != FA_OK) {
        snprintf(m->error, sizeof m->error, "fa_device_alloc: %s: %s", fa_status_string(st), fa_last_error());
        return NULL;
    }
    return p;
}

/* The staging buffer, grown to at least bytes. */
static void *staging(bench_mem *m, int64_t bytes)
{
    if (m->staging_bytes >= bytes) return m->staging;
    free(m->staging);
    m->staging_bytes = 0;
    if (!(m->staging = bench_alloc(bytes))) {
        snprintf(m->error, sizeof m->error, "out of host memory for a %lld-byte staging buffer", (long long)bytes);
        return NULL;
    }
    m->staging_bytes = bytes;
    return m->staging;
}

/* Device copy of host bytes; frees dev and returns NULL when the copy fails. */
static void *upload(bench_mem *m, void *dev, const void *host, int64_t bytes)
{
    fa_status st = fa_device_copy(m->device, dev, host, bytes, FA_COPY_HOST_TO_DEVICE, NULL);
    if (st != FA_OK) {
        snprintf(m->error, sizeof m->error, "fa_device_copy: %s: %s", fa_status_string(st), fa_last_error());
        bench_mem_free(m, dev);
        return NULL;
    }
    return dev;
}

void *bench_mem_filled(bench_mem *m, fa_dtype dtype, int64_t n, uint64_t seed)
{
    int64_t bytes = n * fa_dtype_size(dtype);
    void *p = bench_mem_uninit(m, bytes);
    if (!p) return NULL;
    if (m->on_host) {
        bench_fill(p, dtype, n, seed);
        return p;
    }
    void *host = staging(m, bytes);
    if (!host) {
        bench_mem_free(m, p);
        return NULL;
    }
    bench_fill(host, dtype, n, seed);
    return upload(m, p, host, bytes);
}

void *bench_mem_copy_of(bench_mem *m, const void *host, int64_t bytes)
{
    void *p = bench_mem_uninit(m, bytes);
    if (!p) return NULL;
    if (m->on_host) {
        memcpy(p, host, (size_t)bytes);
        return p;
    }
    return upload(m, p, host, bytes);
}

void bench_mem_free(bench_mem *m, void *p)
{
    if (!p) return;
    if (m->on_host) {
        free(p);
        return;
    }
    /* A failed free leaks device memory; the bench carries on, but says so. */
    if (fa_device_free(m->device, p) != FA_OK)
        fprintf(stderr, "[flashport-bench] fa_device_free: %s\n", fa_last_error());
}

void bench_mem_done(bench_mem *m)
{
    free(m->staging);
    m->staging = NULL;
    m->staging_bytes = 0;
}
