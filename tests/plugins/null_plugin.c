/*
 * A plugin that loads and reports one device whose selector declines every problem with a reason. It has no
 * device memory (alloc, free, copy, synchronize left NULL): fa_device_* must say so, not call through NULL.
 */
#include <stdio.h>
#include <string.h>

#include "fa_backend.h"

static int device_count(void *ctx)
{
    (void)ctx;
    return 1;
}

static fa_status device_props(void *ctx, int device, fa_device_props *p)
{
    (void)ctx;
    (void)device;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "null test device");
    snprintf(p->arch, sizeof p->arch, "none");
    p->shared_mem_per_block = p->shared_mem_per_block_optin = p->shared_mem_per_cu = 48 * 1024;
    p->compute_units = 1;
    p->simd_width = 32;
    p->max_threads_per_block = 1024;
    p->max_threads_per_cu = 2048;
    return FA_OK;
}

static fa_status select_family(void *ctx, int device, const fa_attn_desc *desc, fa_pass pass,
                               const fa_kernel_family **family, char *why, size_t why_size)
{
    (void)ctx;
    (void)device;
    (void)desc;
    (void)pass;
    (void)family;
    snprintf(why, why_size, "the null test backend runs nothing");
    return FA_ERR_UNSUPPORTED;
}

static const fa_backend_iface iface = {.abi_version = FA_BACKEND_ABI_VERSION, .kind = FA_BACKEND_OPENCL,
                                       .name = "null-test", .device_count = device_count,
                                       .device_props = device_props, .select = select_family};

FA_API fa_status fa_backend_plugin_init(uint32_t core_abi, const fa_backend_iface **out, void **ctx, char *why,
                                        size_t why_size)
{
    if (core_abi != FA_BACKEND_ABI_VERSION) {
        snprintf(why, why_size, "null-test plugin speaks ABI %u, core speaks %u", FA_BACKEND_ABI_VERSION, core_abi);
        return FA_ERR_UNSUPPORTED;
    }
    *out = &iface;
    *ctx = 0;
    return FA_OK;
}
