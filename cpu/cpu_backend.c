/* The built-in CPU backend's interface table. */
#include "cpu_backend.h"
#include "fa_internal.h"
#include "simd/cpu_simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_ctx {
    fa_device_props props;
} cpu_ctx;

static cpu_ctx the_cpu;

static int device_count(void *ctx)
{
    (void)ctx;
    return 1;
}

static fa_status device_props(void *ctx, int device, fa_device_props *props)
{
    (void)device;
    *props = ((cpu_ctx *)ctx)->props;
    return FA_OK;
}

static fa_status select_family(void *ctx, int device, const fa_attn_desc *desc, fa_pass pass,
                               const fa_kernel_family **family, char *why, size_t why_size)
{
    (void)ctx;
    (void)device;
    return cpu_select(desc, pass, family, why, why_size);
}

/* The plan remembers which instruction set's kernels it runs (FLASHPORT_CPU_ISA may force one). */
static fa_status plan_prepare(void *ctx, fa_plan_info *plan)
{
    (void)ctx;
    const cpu_simd *simd = cpu_simd_get();
    if (!simd) return fa_set_error(FA_ERR_INTERNAL, "cpu backend: no SIMD kernel table for this CPU");
    plan->backend_state = (void *)simd;
    return FA_OK;
}

static size_t describe(void *ctx, const fa_plan_info *plan, char *buf, size_t size)
{
    (void)ctx;
    const cpu_simd *simd = plan->backend_state;
    int n = snprintf(buf, size, "cpu kernels: %s (%d fp32 lanes)\n", simd->name, simd->lanes);
    return n < 0 ? 0 : (size_t)n;
}

static fa_status fwd(void *ctx, const fa_plan_info *plan, const fa_fwd_args *args, void *workspace, void *stream)
{
    (void)ctx;
    if (stream) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "stream=%p must be NULL on the CPU backend", stream);
    /* The metadata is host memory here, so its contents are checked before any work. */
    fa_status st = fa_validate_seq_metadata(plan, args->cu_seqlens_q, args->cu_seqlens_k, args->seqused_k,
                                            args->block_table, args->block_table_stride);
    if (st != FA_OK) return st;
    return cpu_fwd(plan, args, workspace);
}

static fa_status bwd(void *ctx, const fa_plan_info *plan, const fa_bwd_args *args, void *workspace, void *stream)
{
    (void)ctx;
    if (stream) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "stream=%p must be NULL on the CPU backend", stream);
    fa_status st = fa_validate_seq_metadata(plan, args->cu_seqlens_q, args->cu_seqlens_k, args->seqused_k, NULL, 0);
    if (st != FA_OK) return st;
    return cpu_bwd(plan, args, workspace);
}

static fa_status combine(void *ctx, int device, const fa_combine_args *args, void *stream)
{
    (void)ctx;
    (void)device;
    if (stream) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "stream=%p must be NULL on the CPU backend", stream);
    return cpu_combine(args);
}

static void *alloc(void *ctx, int device, int64_t bytes, void *stream)
{
    (void)ctx;
    (void)device;
    (void)stream;
    /* Rounded up to the alignment, as aligned_alloc requires; sizes near INT64_MAX would wrap while rounding. */
    void *p = bytes <= INT64_MAX - 63 ? aligned_alloc(64, (size_t)((bytes + 63) & ~(int64_t)63)) : NULL;
    if (!p) fa_set_error(FA_ERR_OUT_OF_MEMORY, "cpu backend: aligned_alloc of %lld bytes failed", (long long)bytes);
    return p;
}

static void release(void *ctx, int device, void *ptr, void *stream)
{
    (void)ctx;
    (void)device;
    (void)stream;
    free(ptr);
}

/* Host memory is the CPU's device memory: every kind of copy is one memmove (overlap allowed, as memcpy is not). */
static fa_status copy(void *ctx, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream)
{
    (void)ctx;
    (void)device;
    (void)kind;
    if (stream) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "stream=%p must be NULL on the CPU backend", stream);
    memmove(dst, src, (size_t)bytes);
    return FA_OK;
}

/* CPU calls have finished when they return: there is nothing to wait for. */
static fa_status synchronize(void *ctx, int device, void *stream)
{
    (void)ctx;
    (void)device;
    if (stream) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "stream=%p must be NULL on the CPU backend", stream);
    return FA_OK;
}

/*
 * The tuning cache's validators: the kernels' sources (hashed by the build) and what the timings depended on, the
 * instruction set plans use now (FLASHPORT_CPU_ISA may force another) and the thread count.
 */
#ifndef FLASHPORT_CPU_KERNEL_HASH
#define FLASHPORT_CPU_KERNEL_HASH 0ull
#endif
static uint64_t kernel_source_hash(void *ctx, int device, char *runtime, size_t runtime_size)
{
    (void)ctx;
    (void)device;
    const cpu_simd *simd = cpu_simd_get();
#ifdef _OPENMP
    int threads = omp_get_max_threads();
#else
    int threads = 1;
#endif
    snprintf(runtime, runtime_size, "simd=%s threads=%d", simd ? simd->name : "none", threads);
    return FLASHPORT_CPU_KERNEL_HASH;
}

static const fa_backend_iface cpu_iface = {
    .abi_version = FA_BACKEND_ABI_VERSION,
    .kind = FA_BACKEND_CPU,
    .name = "cpu",
    .device_count = device_count,
    .device_props = device_props,
    .select = select_family,
    .plan_prepare = plan_prepare,
    .describe = describe,
    .fwd = fwd,
    .bwd = bwd,
    .combine = combine,
    .alloc = alloc,
    .free = release,
    .copy = copy,
    .synchronize = synchronize,
    .kernel_source_hash = kernel_source_hash,
};

fa_status fa_cpu_backend_init(const fa_backend_iface **iface, void **ctx, char *why, size_t why_size)
{
    (void)why;
    (void)why_size;
    cpu_detect(&the_cpu.props);
    *iface = &cpu_iface;
    *ctx = &the_cpu;
    return FA_OK;
}
