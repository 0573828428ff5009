/*
 * The backend interface: what every backend (the built-in CPU one and the run-time loaded GPU plugins)
 * implements. This header is the plugin ABI: a plugin built against another FA_BACKEND_ABI_VERSION is
 * refused at load time instead of being called into.
 *
 * A backend is { iface, ctx }: a table of functions plus an opaque context. The core validates every
 * argument before calling a backend, so backends may assume well-formed shapes, strides and dtypes; they
 * still validate anything only they can read (device-side metadata, kernel limits).
 */
#ifndef FA_BACKEND_H
#define FA_BACKEND_H

#include "flashport.h"
#include "fa_planner.h"

/* 2: copy and synchronize hooks (fa_device_copy / fa_device_synchronize); 3: kernel_source_hash (tuning cache) */
#define FA_BACKEND_ABI_VERSION 3u

/* What the core hands a backend for execution: the validated problem and the planner's choice. */
typedef struct fa_plan_info {
    fa_attn_desc desc;          /* as given by the user */
    float scale;                /* resolved softmax scale */
    int64_t window_left;        /* effective window, causal folded in; -1 = unbounded */
    int64_t window_right;
    int backend_device;         /* the backend's own device index */
    const fa_kernel_family *fwd_family;
    fa_tile_config fwd_config;
    const fa_kernel_family *bwd_family; /* NULL unless desc.with_backward */
    fa_tile_config bwd_config;
    int64_t workspace_bytes;
    void *backend_state;        /* compiled kernels etc., owned by the backend */
} fa_plan_info;

typedef struct fa_backend_iface {
    uint32_t abi_version;       /* FA_BACKEND_ABI_VERSION */
    fa_backend_kind kind;
    const char *name;

    int (*device_count)(void *ctx);
    fa_status (*device_props)(void *ctx, int device, fa_device_props *props);

    /*
     * The selector: the one place that answers both "is this supported?" and "which kernel family runs?".
     * Returns FA_OK and the family, or FA_ERR_UNSUPPORTED with the reason written to why.
     */
    fa_status (*select)(void *ctx, int device, const fa_attn_desc *desc, fa_pass pass,
                        const fa_kernel_family **family, char *why, size_t why_size);

    /* Optional: prepare per-plan state (compile kernels). May be NULL. */
    fa_status (*plan_prepare)(void *ctx, fa_plan_info *plan);
    void (*plan_release)(void *ctx, fa_plan_info *plan);
    /* Optional: backend details for fa_plan_describe (instruction set, compiled binary). Returns length. */
    size_t (*describe)(void *ctx, const fa_plan_info *plan, char *buf, size_t size);

    fa_status (*fwd)(void *ctx, const fa_plan_info *plan, const fa_fwd_args *args, void *workspace,
                     void *stream);
    fa_status (*bwd)(void *ctx, const fa_plan_info *plan, const fa_bwd_args *args, void *workspace,
                     void *stream);
    fa_status (*combine)(void *ctx, int device, const fa_combine_args *args, void *stream);

    /*
     * Device memory: workspaces for NULL args.workspace, and fa_device_alloc / fa_device_free (stream NULL).
     * alloc gets bytes > 0 and returns memory aligned to at least 64 bytes, or NULL having set the reason with
     * fa_set_error. free gets a non-NULL pointer and reports a failure with fa_set_error. A backend without device memory leaves both NULL.
     */
    void *(*alloc)(void *ctx, int device, int64_t bytes, void *stream);
    void (*free)(void *ctx, int device, void *ptr, void *stream);
    /*
     * fa_device_copy, after the core checked the device index, the pointers and bytes > 0. With a stream the
     * copy is queued on it; with NULL it has completed on return. Returns FA_OK or the status fa_set_error gave.
     * May be NULL (fa_device_copy then says the backend has no copies).
     */
    fa_status (*copy)(void *ctx, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream);
    /* fa_device_synchronize: waits for stream (NULL: all of the device's work). May be NULL likewise. */
    fa_status (*synchronize)(void *ctx, int device, void *stream);

    void (*shutdown)(void *ctx);

    /*
     * Optional (NULL: the tuning cache records "none"). What a tuned tile configuration depends on besides
     * fa_device_props, so that a stale tuning file is never used: returns a 64-bit hash of the backend's kernel
     * sources (a changed kernel may move the fastest tile) and writes the driver / runtime versions into runtime
     * (one line; the CPU: its SIMD set and thread count). Called at plan creation when a tuning file exists.
     */
    uint64_t (*kernel_source_hash)(void *ctx, int device, char *runtime, size_t runtime_size);
} fa_backend_iface;

/* A plugin library exports this symbol. It fills iface/ctx or explains in why what is missing. */
#define FA_BACKEND_PLUGIN_ENTRY "fa_backend_plugin_init"
typedef fa_status (*fa_backend_plugin_init_fn)(uint32_t core_abi_version, const fa_backend_iface **iface,
                                               void **ctx, char *why, size_t why_size);

/* Error reporting for backends (the core exports it to plugins). */
FA_API fa_status fa_set_error(fa_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * Checks the contents of host-readable sequence metadata (cu_seqlens monotonic and matching the totals,
 * seqused_k within capacity, used block-table entries naming real pages). Backends call it when the
 * pointers are host memory; GPU kernels clamp instead.
 */
FA_API fa_status fa_validate_seq_metadata(const fa_plan_info *plan, const int32_t *cu_seqlens_q,
                                          const int32_t *cu_seqlens_k, const int32_t *seqused_k,
                                          const int32_t *block_table, int64_t block_table_stride);

/* Whether cu_seqlens_k is read: varlen, unless a paged cache gives per-sequence lengths in seqused_k. */
FA_API int fa_uses_cu_seqlens_k(const fa_attn_desc *desc);

/*
 * The element strides a GPU kernel's parameter block takes for tensor T: (batch, seq, heads, dim) gives
 * P.PRE_sb, P.PRE_ss, P.PRE_sh; its varlen form (VARLEN nonzero: (total, heads, dim)) has batch stride 0, a
 * sequence's rows being found from cu_seqlens. The LSE is (batch, heads, seq), varlen (heads, total). One
 * definition for every plugin's forward and backward parameters, so the folding cannot differ between them.
 */
#define FA_BSH_STRIDES(P, PRE, T, VARLEN)                                                                          \
    ((P).PRE##_sb = (VARLEN) ? 0 : (T).stride[0], (P).PRE##_ss = (T).stride[1 - ((VARLEN) != 0)],                \
     (P).PRE##_sh = (T).stride[2 - ((VARLEN) != 0)])
#define FA_LSE_STRIDES(P, T, VARLEN)                                                                               \
    ((P).lse_sb = (VARLEN) ? 0 : (T).stride[0], (P).lse_sh = (T).stride[1 - ((VARLEN) != 0)],                    \
     (P).lse_ss = (T).stride[2 - ((VARLEN) != 0)])
/* Every tensor of a backward (fa_bwd_args A): q, out, dout, dq by QV; k, v, dk, dv by KV; the LSE. */
#define FA_BWD_STRIDES(P, A, QV, KV)                                                                               \
    (FA_BSH_STRIDES(P, q, (A).q, QV), FA_BSH_STRIDES(P, o, (A).out, QV), FA_BSH_STRIDES(P, do, (A).dout, QV),     \
     FA_BSH_STRIDES(P, dq, (A).dq, QV), FA_BSH_STRIDES(P, k, (A).k, KV), FA_BSH_STRIDES(P, v, (A).v, KV),         \
     FA_BSH_STRIDES(P, dk, (A).dk, KV), FA_BSH_STRIDES(P, dv, (A).dv, KV), FA_LSE_STRIDES(P, (A).lse, QV))

/* Logging switch: FLASHPORT_LOG=1 prints why backends are absent, which plan was chosen, etc. */
FA_API int fa_log_enabled(void);
FA_API void fa_log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
