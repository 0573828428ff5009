/*
 * A plugin built for the previous backend ABI (1: no copy / synchronize hooks, so its table is shorter than the
 * core's): the registry must refuse it without calling into it.
 */
#include "fa_backend.h"

static int never_called(void *ctx)
{
    (void)ctx;
    return 1;
}

static const fa_backend_iface iface = {.abi_version = FA_BACKEND_ABI_VERSION - 1u, .kind = FA_BACKEND_OPENCL,
                                       .name = "bad-abi-test", .device_count = never_called};

FA_API fa_status fa_backend_plugin_init(uint32_t core_abi, const fa_backend_iface **out, void **ctx, char *why,
                                        size_t why_size)
{
    (void)core_abi;
    (void)why;
    (void)why_size;
    *out = &iface;
    *ctx = 0;
    return FA_OK;
}
