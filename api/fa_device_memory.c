/*
 * fa_device_alloc / fa_device_free / fa_device_copy / fa_device_synchronize: argument checks here, the work in
 * the device's backend (iface alloc, free, copy, synchronize), so the core stays free of vendor libraries.
 */
#include "fa_internal.h"

#include <stdio.h>

/* The device's backend, or NULL with FA_ERR_NO_DEVICE set. */
static const fa_device_entry *entry_of(int device) { return fa_registry_device(device); }

static const char *kind_name(fa_copy_kind kind)
{
    switch (kind) {
    case FA_COPY_HOST_TO_DEVICE: return "host to device";
    case FA_COPY_DEVICE_TO_HOST: return "device to host";
    case FA_COPY_DEVICE_TO_DEVICE: return "device to device";
    }
    return "?";
}

fa_status fa_device_alloc(int device, int64_t bytes, void **ptr)
{
    if (!ptr) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "ptr=NULL must point to where the address goes");
    *ptr = NULL;
    const fa_device_entry *e = entry_of(device);
    if (!e) return FA_ERR_NO_DEVICE;
    if (bytes < 0)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "bytes=%lld must be >= 0", (long long)bytes);
    if (bytes == 0) return FA_OK;
    const fa_backend *b = e->backend;
    if (!b->iface->alloc)
        return fa_set_error(FA_ERR_UNSUPPORTED, "device=%d: the %s backend has no device memory", device,
                            b->iface->name);
    fa_clear_error();
    void *p = b->iface->alloc(b->ctx, e->backend_device, bytes, NULL);
    if (!p) {
        /* Keep the backend's reason (driver error, out of device memory) in the message. */
        char why[512];
        snprintf(why, sizeof why, "%s", fa_last_error()[0] ? fa_last_error() : "the backend returned NULL");
        return fa_set_error(FA_ERR_OUT_OF_MEMORY, "device=%d (%s): could not allocate bytes=%lld: %s", device,
                            e->props.name, (long long)bytes, why);
    }
    *ptr = p;
    return FA_OK;
}

fa_status fa_device_free(int device, void *ptr)
{
    const fa_device_entry *e = entry_of(device);
    if (!e) return FA_ERR_NO_DEVICE;
    if (!ptr) return FA_OK;
    const fa_backend *b = e->backend;
    if (!b->iface->free)
        return fa_set_error(FA_ERR_UNSUPPORTED, "device=%d: the %s backend has no device memory", device,
                            b->iface->name);
    /* The hook returns nothing (workspaces are freed on paths that already carry a status): a failure is
     * reported through fa_set_error, so an emptied message that is no longer empty means one. */
    fa_clear_error();
    b->iface->free(b->ctx, e->backend_device, ptr, NULL);
    return fa_last_error()[0] ? FA_ERR_BACKEND : FA_OK;
}

fa_status fa_device_copy(int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind, void *stream)
{
    const fa_device_entry *e = entry_of(device);
    if (!e) return FA_ERR_NO_DEVICE;
    if ((int)kind < FA_COPY_HOST_TO_DEVICE || kind > FA_COPY_DEVICE_TO_DEVICE)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT,
                            "kind=%d is not an fa_copy_kind (FA_COPY_HOST_TO_DEVICE, _DEVICE_TO_HOST, "
                            "_DEVICE_TO_DEVICE)", (int)kind);
    if (bytes < 0)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "bytes=%lld must be >= 0", (long long)bytes);
    if (bytes == 0) return FA_OK;
    if (!dst)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "dst=NULL with bytes=%lld (%s copy)", (long long)bytes,
                            kind_name(kind));
    if (!src)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "src=NULL with bytes=%lld (%s copy)", (long long)bytes,
                            kind_name(kind));
    const fa_backend *b = e->backend;
    if (!b->iface->copy)
        return fa_set_error(FA_ERR_UNSUPPORTED, "device=%d: the %s backend has no memory copies", device,
                            b->iface->name);
    return b->iface->copy(b->ctx, e->backend_device, dst, src, bytes, kind, stream);
}

fa_status fa_device_synchronize(int device, void *stream)
{
    const fa_device_entry *e = entry_of(device);
    if (!e) return FA_ERR_NO_DEVICE;
    const fa_backend *b = e->backend;
    if (!b->iface->synchronize)
        return fa_set_error(FA_ERR_UNSUPPORTED, "device=%d: the %s backend cannot synchronize", device,
                            b->iface->name);
    return b->iface->synchronize(b->ctx, e->backend_device, stream);
}
