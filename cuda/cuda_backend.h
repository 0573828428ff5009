/* The CUDA backend's internal interface: devices, the selector and kernel families, kernel resources. */
#ifndef CUDA_BACKEND_H
#define CUDA_BACKEND_H

#include <pthread.h>

#include "cuda_driver.h"
#include "fa_gpu_fwd_io.h"
#include "cuda_jit.h"
#include "fa_backend.h"

enum { CUDA_MAX_DEVICES = 16 };
/* Kernel family ids: the sm80 forward, its decode form (query heads of a KV head packed, split-KV), the
   sm80 backward, the exact fp32 forward (fp32 SIMT, cuda_fwd_f32.c), the SIMT backward (cuda_bwd_f32.c). */
enum {
    CUDA_KERNEL_FWD_SM80 = 1,
    CUDA_KERNEL_FWD_SM80_DECODE = 2,
    CUDA_KERNEL_BWD_SM80 = 3,
    CUDA_KERNEL_FWD_F32 = 4,
    CUDA_KERNEL_BWD_F32 = 5
};

typedef struct cuda_device {
    CUdevice dev;
    CUcontext ctx; /* the primary context, retained on first use (NULL until then) */
    int cc_major, cc_minor;
    fa_device_props props;
} cuda_device;

typedef struct cuda_ctx {
    cuda_api api;
    pthread_mutex_t ctx_lock; /* guards the first retain of each device's context */
    int ndev;
    cuda_device dev[CUDA_MAX_DEVICES];
} cuda_ctx;

/* The selector: one function answers "supported?" and "which kernel family?". */
fa_status cuda_select(void *ctx, int device, const fa_attn_desc *desc, fa_pass pass, const fa_kernel_family **family,
                      char *why, size_t why_size);
/* Dynamic shared memory of the sm80 forward kernel for this problem and tile. */
int64_t cuda_fwd_smem_bytes(const fa_attn_desc *d, const fa_tile_config *c);
/* 16-row m-tiles per warp of the sm80 forward (its FA_MT). */
int cuda_fwd_m_tiles(const fa_tile_config *c);
int cuda_fwd_key_warps(const fa_tile_config *c);
/* Blocks per SM the sm80 forward is compiled to fit (its FA_MIN_BLOCKS): the planner's count for the tile. */
int cuda_fwd_min_blocks(const fa_device_props *dev, const fa_attn_desc *d, const fa_tile_config *c);
/* A head dim as the sm80 forward runs it: rounded up to a multiple of 16 (its FA_DQK/FA_DV; padding is zeros). */
int64_t cuda_fwd_pad_dim(int64_t dim);
/* Rows of q/out the split partials cover (total_q with varlen, else batch x seqlen_q). */
int64_t cuda_fwd_part_rows(const fa_attn_desc *d);
/*
 * The virtual architecture XY the forward is compiled for as PTX (compute_XY; the driver JIT-compiles it for
 * the device), or 0 for a cubin of the device's own sm_XY: $FLASHPORT_CUDA_ARCH=compute_XY where set, else 75
 * on a Turing (sm_7x) device. -1 where FLASHPORT_CUDA_ARCH is not compute_XY with XY >= 75.
 */
int cuda_fwd_ptx_arch(const cuda_device *dev);

/* The sm80 backward: rows per (batch, head) in its workspace arrays, and each kernel's dynamic shared memory. */
int64_t cuda_bwd_sq_pad(const fa_attn_desc *d);
int64_t cuda_bwd_ws_rows(const fa_attn_desc *d); /* workspace rows per query head */
/* Warps that share 16 keys (16 query rows) of the sm80 backward, each with part of the head dims (FA_DSPLIT) */
int cuda_bwd_dsplit(const fa_attn_desc *d);
int64_t cuda_bwd_smem_dkdv(const fa_attn_desc *d, const fa_tile_config *c);
int64_t cuda_bwd_smem_dq(const fa_attn_desc *d, const fa_tile_config *c); /* 0 unless desc.deterministic */

/*
 * The dropout fields of the forward and backward kernels' parameters (api/fa_philox.h): Philox key words
 * (seed lo, seed hi ^ offset hi), counter word 3 (offset lo), the drop threshold and 1 / (1 - p).
 */
void cuda_dropout_params(float p, uint64_t seed, uint64_t offset, uint32_t *k0, uint32_t *k1, uint32_t *ctr3,
                         uint32_t *threshold, float *keep_scale);

/* Makes the device's primary context current (retained on first use) / restores the previous one. */
fa_status cuda_ctx_push(cuda_ctx *c, int device);
void cuda_ctx_pop(cuda_ctx *c);

/* The backward pass (cuda_bwd.c): its compiled kernels for one plan, and their launch. */
typedef struct cuda_bwd_state cuda_bwd_state;
fa_status cuda_bwd_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_bwd_state **out);
void cuda_bwd_release(cuda_ctx *c, int device, cuda_bwd_state *s);
size_t cuda_bwd_describe(const cuda_bwd_state *s, char *buf, size_t size);
fa_status cuda_bwd_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_bwd_state *s, const fa_bwd_args *a,
                       void *workspace, void *stream);

/*
 * KV-cache append with rotary embedding (cuda_append.c), for plans with desc.seqlen_new > 0: run before the
 * forward on the same stream, it writes k_new/v_new into the cache and puts in the workspace the key counts
 * after the append and (rotary) the rotated q; the forward must read q and seqused_k from out.
 */
typedef struct cuda_append_state cuda_append_state;
typedef fa_gpu_append_out cuda_append_out; /* q (as given, or rotated in the workspace), seqused_k + seqlen_new */
/* A forward family's workspace bytes: its own (at the start), plus the append's area at the end. */
int64_t cuda_append_workspace(const fa_attn_desc *d, int64_t own);
fa_status cuda_append_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_append_state **out); /* NULL: no append */
void cuda_append_release(cuda_ctx *c, int device, cuda_append_state *s);
size_t cuda_append_describe(const cuda_append_state *s, char *buf, size_t size);
fa_status cuda_append_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_append_state *s, const fa_fwd_args *a,
                          void *workspace, void *stream, cuda_append_out *out);


/* The exact fp32 forward (cuda_fwd_f32.c, kernels/fwd_f32.cu): CUDA-core FMAs, no tf32. */
extern const fa_kernel_family cuda_fwd_f32_family;
typedef struct cuda_fwd_f32_state cuda_fwd_f32_state;
fa_status cuda_fwd_f32_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_fwd_f32_state **out);
void cuda_fwd_f32_release(cuda_ctx *c, int device, cuda_fwd_f32_state *s);
size_t cuda_fwd_f32_describe(const cuda_fwd_f32_state *s, char *buf, size_t size);
fa_status cuda_fwd_f32_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_fwd_f32_state *s, const fa_fwd_args *a,
                           void *workspace, void *stream);

/*
 * The SIMT backward (cuda_bwd_f32.c, kernels/bwd_f32.cu shared with the HIP plugins): fp32, and fp16/bf16 head
 * dims the sm80 backward does not take. Deterministic (no atomics).
 */
extern const fa_kernel_family cuda_bwd_f32_family;
typedef struct cuda_bwd_f32_state cuda_bwd_f32_state;
fa_status cuda_bwd_f32_prepare(cuda_ctx *c, const fa_plan_info *plan, cuda_bwd_f32_state **out);
void cuda_bwd_f32_release(cuda_ctx *c, int device, cuda_bwd_f32_state *s);
size_t cuda_bwd_f32_describe(const cuda_bwd_f32_state *s, char *buf, size_t size);
fa_status cuda_bwd_f32_run(cuda_ctx *c, const fa_plan_info *plan, const cuda_bwd_f32_state *s, const fa_bwd_args *a,
                           void *workspace, void *stream);

#endif
