/* fa_fwd / fa_bwd / fa_combine: validate everything, provide workspace, hand over to the backend. */
#include "fa_internal.h"

static fa_status check_plan(const fa_plan *plan)
{
    if (!plan) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "plan=NULL: create one with fa_plan_create");
    return FA_OK;
}

/* Runs fn with the caller's workspace, or one the backend allocates for this call. */
static void *acquire_workspace(const fa_plan *plan, void *given, void *stream, int *owned, fa_status *st)
{
    *owned = 0;
    *st = FA_OK;
    if (given || plan->info.workspace_bytes == 0) return given;
    const fa_backend *b = plan->entry->backend;
    void *ws = b->iface->alloc(b->ctx, plan->entry->backend_device, plan->info.workspace_bytes, stream);
    if (!ws) {
        *st = fa_set_error(FA_ERR_OUT_OF_MEMORY, "could not allocate %lld B of workspace",
                           (long long)plan->info.workspace_bytes);
        return NULL;
    }
    *owned = 1;
    return ws;
}

static void release_workspace(const fa_plan *plan, void *ws, int owned, void *stream)
{
    if (!owned) return;
    const fa_backend *b = plan->entry->backend;
    b->iface->free(b->ctx, plan->entry->backend_device, ws, stream);
}

fa_status fa_fwd(const fa_plan *plan, const fa_fwd_args *args, void *stream)
{
    fa_status st = check_plan(plan);
    if (st == FA_OK) st = fa_validate_fwd_args(&plan->info, args);
    if (st != FA_OK) return st;
    int owned;
    void *ws = acquire_workspace(plan, args->workspace, stream, &owned, &st);
    if (st != FA_OK) return st;
    const fa_backend *b = plan->entry->backend;
    st = b->iface->fwd(b->ctx, &plan->info, args, ws, stream);
    release_workspace(plan, ws, owned, stream);
    return st;
}

fa_status fa_bwd(const fa_plan *plan, const fa_bwd_args *args, void *stream)
{
    fa_status st = check_plan(plan);
    if (st != FA_OK) return st;
    if (!plan->info.bwd_family)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT,
                            "plan was created without desc.with_backward=1, so no backward kernel was planned");
    st = fa_validate_bwd_args(&plan->info, args);
    if (st != FA_OK) return st;
    const fa_backend *b = plan->entry->backend;
    if (!b->iface->bwd)
        return fa_set_error(FA_ERR_UNSUPPORTED, "the %s backend has no backward pass", b->iface->name);
    int owned;
    void *ws = acquire_workspace(plan, args->workspace, stream, &owned, &st);
    if (st != FA_OK) return st;
    st = b->iface->bwd(b->ctx, &plan->info, args, ws, stream);
    release_workspace(plan, ws, owned, stream);
    return st;
}

fa_status fa_combine(int device, const fa_combine_args *args, void *stream)
{
    const fa_device_entry *e = fa_registry_device(device);
    if (!e) return FA_ERR_NO_DEVICE;
    fa_status st = fa_validate_combine_args(args);
    if (st != FA_OK) return st;
    if (!e->backend->iface->combine)
        return fa_set_error(FA_ERR_UNSUPPORTED, "the %s backend has no combine kernel", e->backend->iface->name);
    return e->backend->iface->combine(e->backend->ctx, e->backend_device, args, stream);
}
