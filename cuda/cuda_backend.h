/* The CUDA backend's internal interface: devices, the selector and kernel families, kernel resources. */
#ifndef CUDA_BACKEND_H
#define CUDA_BACKEND_H

#include <pthread.h>

#include "cuda_driver.h"
#include "cuda_jit.h"
#include "fa_backend.h"

enum { CUDA_MAX_DEVICES = 16 };
/* Kernel family ids: the sm80 forward, and its decode form (query heads of a KV head packed, split-KV). */
enum { CUDA_KERNEL_FWD_SM80 = 1, CUDA_KERNEL_FWD_SM80_DECODE = 2 };

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
/* Rows of q/out the split partials cover (total_q with varlen, else batch x seqlen_q). */
int64_t cuda_fwd_part_rows(const fa_attn_desc *d);

#endif
