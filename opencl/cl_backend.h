/*
 * The OpenCL backend plugin (libflashport_opencl.so), over the ICD loader: every platform's every device is a
 * flashport device. Kernels are OpenCL C embedded at build time, built per plan with the specialisation as -D
 * options, and their binaries cached on disk (cl_program.c).
 *
 * Device memory: fa_device_alloc returns an address that names a cl_mem (cl_memory.c): a range of host address
 * space reserved for the buffer and never mapped, so pointer arithmetic inside an allocation works as it does
 * with CUDA pointers, and the backend turns any address back into (cl_mem, offset) when it launches.
 */
#ifndef CL_BACKEND_H
#define CL_BACKEND_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <pthread.h>

#include "fa_backend.h"

#define CL_MAX_DEVICES 16

typedef struct cl_device {
    cl_platform_id platform;
    cl_device_id id;
    cl_device_type type;
    cl_context ctx;          /* created lazily on first use, with queue */
    cl_command_queue queue;  /* the device's own queue: stream NULL */
    char driver[4 * 128 + 8]; /* platform name + version + driver version + device version (each under 128): part of every binary's cache key */
    fa_device_props props;
    int vec_float;           /* CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, as 4, 8 or 16 (the CPU forward's vectors) */
} cl_device;

typedef struct cl_ctx {
    pthread_mutex_t lock;    /* guards lazy context creation */
    int ndev;
    cl_device dev[CL_MAX_DEVICES];
} cl_ctx;

/* The device's context and queue, created on first use. Returns FA_OK or the error set with fa_set_error. */
fa_status cl_device_open(cl_ctx *c, int device);
/*
 * The buffer and element offset of [ptr, ptr + bytes), which must lie inside one allocation of the device, and
 * ptr aligned to elem bytes. Otherwise FA_ERR_INVALID_ARGUMENT naming what; nothing is enqueued by a caller
 * that binds every argument before its first launch.
 */
fa_status cl_bind(int device, const char *what, const void *ptr, int64_t bytes, int64_t elem, cl_mem *mem,
                  int64_t *off);
/* A tensor argument: its whole extent bound as above, unless it spans no element (mem left as it was). */
fa_status cl_bind_tensor(int device, const char *what, const fa_tensor *t, cl_mem *mem, int64_t *off);
/* The queue for a fa_* stream argument: NULL is the device's own; another must belong to its context. */
fa_status cl_queue_of(cl_ctx *c, int device, void *stream, cl_command_queue *queue);
/* "CL_OUT_OF_RESOURCES (-5)" */
const char *cl_error_name(cl_int err);

/* ---- device memory (cl_memory.c) */
void *cl_mem_alloc(cl_ctx *c, int device, int64_t bytes);
void cl_mem_free(cl_ctx *c, int device, void *ptr);
/*
 * The buffer holding [ptr, ptr + bytes) on this device and ptr's byte offset in it. Returns 0, or -1 when the
 * range is not inside one allocation of the device.
 */
int cl_mem_lookup(int device, const void *ptr, int64_t bytes, cl_mem *mem, size_t *offset);
fa_status cl_mem_copy(cl_ctx *c, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream);

/* ---- programs (cl_program.c) */
/*
 * The program for the source (its parts joined by newlines) + options on this device: its binary from the disk cache, else built from source (and
 * stored). compile_ms: build time (0 when cached). Returns FA_OK, or FA_ERR_BACKEND with the build log.
 */
fa_status cl_program_get(cl_ctx *c, int device, const char *const *parts, int nparts, const char *options,
                         cl_program *prog, int *from_cache, double *compile_ms);
/*
 * The build options every kernel file takes (fwd.cl, bwd.cl): -cl-std, the storage dtype, head dims, tile and
 * work-group size, and the mask/feature switches of the problem. Returns the length written.
 */
int cl_program_options(const cl_ctx *c, const fa_plan_info *plan, const fa_tile_config *t, char *buf, size_t size);
/* The program source pieces the kernels share: kernels/common.cl (storage conversions, Philox). */
extern const char fa_opencl_src_common[];

/* ---- the forward (cl_fwd.c, cl_select.c) */
/*
 * kernel family ids: the forward (kernels/fwd.cl), its GQA-packed decode form (FA_PACK), the backward, and the
 * CPU-shaped forward (kernels/fwd_cpu.cl) the selector picks on CPU devices
 */
enum { CL_KERNEL_FWD = 1, CL_KERNEL_BWD = 2, CL_KERNEL_FWD_DECODE = 3, CL_KERNEL_FWD_CPU = 4 };

fa_status cl_select(void *ctx, int device, const fa_attn_desc *desc, fa_pass pass, const fa_kernel_family **family,
                    char *why, size_t why_size);
fa_status cl_fwd_prepare(cl_ctx *c, fa_plan_info *plan);
void cl_fwd_release(cl_ctx *c, fa_plan_info *plan);
size_t cl_fwd_describe(cl_ctx *c, const fa_plan_info *plan, char *buf, size_t size);
fa_status cl_fwd(cl_ctx *c, const fa_plan_info *plan, const fa_fwd_args *args, void *workspace, void *stream);
/* Workspace bytes of a forward plan: the split-KV partial outputs and LSEs. */
int64_t cl_fwd_workspace(const fa_attn_desc *d, const fa_tile_config *t);
/* Workspace bytes of the CPU-shaped forward: fp32 K^T and V panels of every tile (the formula atop fwd_cpu.cl). */
int64_t cl_fwd_cpu_workspace(const fa_attn_desc *d, const fa_tile_config *t);
/* Local memory bytes of the forward kernel for a problem and tile (the formula at the top of fwd.cl). */
int64_t cl_fwd_local_bytes(const fa_attn_desc *d, const fa_tile_config *t);

/*
 * ---- KV-cache append with rotary embedding (cl_append.c), for plans with desc.seqlen_new > 0: enqueued on
 * the forward's queue before it, it writes k_new/v_new into the cache and puts in the workspace the key counts
 * after the append and (rotary) the rotated q; the forward must read q and seqused_k from cl_append_out.
 */
typedef struct cl_append_state cl_append_state;
typedef struct cl_append_out {
    cl_mem q;                      /* NULL: q as given; else the rotated copy in the workspace */
    int64_t q_off, q_sb, q_ss, q_sh;
    cl_mem seqused;                /* seqused_k[b] + seqlen_new, in the workspace */
    int64_t seqused_off;
} cl_append_out;
/* A forward's workspace bytes: its own (at the start), plus the append's area at the end. */
int64_t cl_append_workspace(const fa_attn_desc *d, int64_t own);
fa_status cl_append_prepare(cl_ctx *c, const fa_plan_info *plan, cl_append_state **out); /* NULL: no append */
void cl_append_release(cl_append_state *s);
size_t cl_append_describe(const cl_append_state *s, char *buf, size_t size);
/* Binds every pointer first (an error enqueues nothing), then enqueues the append on queue. */
fa_status cl_append_run(cl_ctx *c, const fa_plan_info *plan, const cl_append_state *s, const fa_fwd_args *a,
                        void *workspace, cl_command_queue queue, cl_append_out *out);

/* ---- the backward (cl_bwd.c): its family, and per plan its own state next to the forward's (cl_backend.c) */
typedef struct cl_bwd_state cl_bwd_state;
extern const fa_kernel_family cl_bwd_family;
fa_status cl_bwd_prepare(cl_ctx *c, const fa_plan_info *plan, cl_bwd_state **state);
void cl_bwd_release(cl_bwd_state *state);
size_t cl_bwd_describe(const cl_bwd_state *state, char *buf, size_t size);
fa_status cl_bwd(cl_ctx *c, const fa_plan_info *plan, const cl_bwd_state *state, const fa_bwd_args *args,
                 void *workspace, void *stream);
/* Workspace bytes of a backward plan (D and LSE per query row) and the kernels' local memory (atop bwd.cl). */
int64_t cl_bwd_workspace(const fa_attn_desc *d, const fa_tile_config *t);
int64_t cl_bwd_local_bytes(const fa_attn_desc *d, const fa_tile_config *t);

#endif
