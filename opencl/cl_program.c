/*
 * OpenCL programs built at run time for one specialisation, their binaries cached on disk (api/fa_disk_cache.h,
 * folder opencl/). The key hashes the source, the build options, the device name and the platform and driver
 * versions, so a changed kernel, option or driver never reuses a stale binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_backend.h"
#include "fa_disk_cache.h"

static fa_status build_error(cl_program prog, cl_device_id dev, const char *device_name, cl_int err)
{
    char log[2048] = "";
    size_t n = 0;
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &n);
    log[sizeof log - 1] = 0;
    return fa_set_error(FA_ERR_BACKEND, "opencl: building the kernels for %s failed (%s): %s", device_name,
                        cl_error_name(err), log);
}

/* The program's binary into the cache (best effort: a device that gives none is simply rebuilt next time). */
static void store_binary(cl_program prog, const char *path)
{
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0) return;
    unsigned char *bin = malloc(size);
    if (!bin) return;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS)
        fa_cache_write_atomic(path, bin, size);
    free(bin);
}

static fa_status get(cl_ctx *c, int device, const char *source, const char *options, cl_program *prog,
                     int *from_cache, double *compile_ms)
{
    cl_device *d = &c->dev[device];
    fa_status st = cl_device_open(c, device);
    if (st != FA_OK) return st;
    *from_cache = 0;
    *compile_ms = 0.0;
    uint64_t h = fa_hash64(FA_HASH64_INIT, source, strlen(source) + 1);
    h = fa_hash64(h, options, strlen(options) + 1);
    h = fa_hash64(h, d->props.name, strlen(d->props.name) + 1);
    h = fa_hash64(h, d->driver, strlen(d->driver) + 1);
    char dir[1100], path[1200];
    const int cached = fa_cache_dir("opencl", dir, sizeof dir);
    cl_int err;
    if (cached) {
        snprintf(path, sizeof path, "%s/%016llx.bin", dir, (unsigned long long)h);
        void *bin = NULL;
        size_t size = 0;
        if (fa_cache_read(path, 0, &bin, &size) == 0) {
            cl_int status = CL_SUCCESS;
            const unsigned char *b = bin;
            *prog = clCreateProgramWithBinary(d->ctx, 1, &d->id, &size, &b, &status, &err);
            free(bin);
            /* a binary the driver refuses (other version, truncated file) is rebuilt from source below */
            if (err == CL_SUCCESS && status == CL_SUCCESS &&
                clBuildProgram(*prog, 1, &d->id, options, NULL, NULL) == CL_SUCCESS) {
                *from_cache = 1;
                return FA_OK;
            }
            if (err == CL_SUCCESS) clReleaseProgram(*prog);
        }
    }
    *prog = clCreateProgramWithSource(d->ctx, 1, &source, NULL, &err);
    if (err != CL_SUCCESS)
        return fa_set_error(FA_ERR_BACKEND, "opencl: clCreateProgramWithSource: %s", cl_error_name(err));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    err = clBuildProgram(*prog, 1, &d->id, options, NULL, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (err != CL_SUCCESS) {
        st = build_error(*prog, d->id, d->props.name, err);
        clReleaseProgram(*prog);
        *prog = NULL;
        return st;
    }
    *compile_ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    if (cached) store_binary(*prog, path);
    return FA_OK;
}

fa_status cl_program_get(cl_ctx *c, int device, const char *const *parts, int nparts, const char *options,
                         cl_program *prog, int *from_cache, double *compile_ms)
{
    size_t n = 1;
    for (int i = 0; i < nparts; i++) n += strlen(parts[i]) + 1;
    char *src = malloc(n), *at = src;
    if (!src) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no memory for the kernel source");
    for (int i = 0; i < nparts; i++) {
        size_t len = strlen(parts[i]);
        memcpy(at, parts[i], len);
        at += len;
        *at++ = '\n';
    }
    *at = 0;
    fa_status st = get(c, device, src, options, prog, from_cache, compile_ms);
    free(src);
    return st;
}

int cl_program_options(const cl_ctx *c, const fa_plan_info *plan, const fa_tile_config *t, char *buf, size_t size)
{
    const fa_attn_desc *d = &plan->desc;
    const int dtype = d->dtype == FA_DTYPE_F32 ? 0 : d->dtype == FA_DTYPE_F16 ? 1 : 2;
    int n = snprintf(buf, size,
                     "-cl-std=CL1.2 -DFA_DTYPE=%d -DFA_DQK=%lld -DFA_DV=%lld -DFA_BQ=%d -DFA_BKV=%d -DFA_WG=%d "
                     "-DFA_SOFTCAP=%d -DFA_ALIBI=%d -DFA_LOCAL=%d -DFA_VARLEN=%d -DFA_DROPOUT=%d",
                     dtype, (long long)d->head_dim_qk, (long long)d->head_dim_v, t->block_q, t->block_kv,
                     t->warps * c->dev[plan->backend_device].props.simd_width, d->softcap > 0.0f,
                     d->alibi != FA_ALIBI_NONE, plan->window_left >= 0 || plan->window_right >= 0, d->varlen != 0,
                     d->dropout_p > 0.0f);
    /* the fast exp2 where the device is a GPU (fwd.cl says why); a CPU's exp2 is already vectorised */
    if (n > 0 && (size_t)n < size && (c->dev[plan->backend_device].type & CL_DEVICE_TYPE_GPU))
        n += snprintf(buf + n, size - (size_t)n, " -DFA_FAST_EXP=1");
    /*
     * FLASHPORT_OPENCL_DEFINE=-DNAME=VALUE adds one define after ours, so it overrides (A/B runs of kernel
     * choices without a rebuild); it is part of the options, so of the disk cache key too.
     */
    const char *extra = getenv("FLASHPORT_OPENCL_DEFINE");
    if (extra && *extra && n > 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, " %s", extra);
    return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}
