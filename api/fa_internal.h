/* Core-private declarations shared by the files of api/. Not installed. */
#ifndef FA_INTERNAL_H
#define FA_INTERNAL_H

#include "fa_backend.h"

/* A backend the registry found, and the global device list built from all of them. */
typedef struct fa_backend {
    const fa_backend_iface *iface;
    void *ctx;
} fa_backend;

typedef struct fa_device_entry {
    const fa_backend *backend;
    int backend_device;
    fa_device_props props;
} fa_device_entry;

/* Empties fa_last_error() (fa_status.c), so a backend's reason can be told from an older message. */
void fa_clear_error(void);

/* Registry (fa_registry.c). Returns NULL and sets the error for a bad index. */
const fa_device_entry *fa_registry_device(int device);

/* The plan object. */
struct fa_plan {
    int device;
    const fa_device_entry *entry;
    fa_plan_info info;
    fa_planned fwd_rank;        /* the chosen candidate's ranking numbers */
    /* what chose each config: "planner heuristic", "explicit config", "FLASHPORT_TILE=...",
       "tuning cache <path> (bucket ...)" */
    char fwd_source[768];
    char bwd_source[768];
};

/* Validation (fa_validate.c): every check runs before any work; each failure sets the error. */
fa_status fa_validate_desc(const fa_attn_desc *desc);
fa_status fa_validate_fwd_args(const fa_plan_info *plan, const fa_fwd_args *args);
fa_status fa_validate_bwd_args(const fa_plan_info *plan, const fa_bwd_args *args);
fa_status fa_validate_combine_args(const fa_combine_args *args);

/* Built-in CPU backend (cpu/). */
fa_status fa_cpu_backend_init(const fa_backend_iface **iface, void **ctx, char *why, size_t why_size);

#endif
