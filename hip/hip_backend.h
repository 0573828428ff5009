/*
 * The HIP backend's internal interface: devices, the selector and kernel family, the forward's resources. The
 * same host code builds two plugins: libflashport_hip.so over ROCm (hip_api.c), and with FA_HIP_ON_NVIDIA=1
 * libflashport_hipnv.so over the CUDA driver and NVRTC (hip_api_nv.c), the verification build that runs this
 * backend's logic on NVIDIA hardware.
 */
#ifndef HIP_BACKEND_H
#define HIP_BACKEND_H

#include "fa_backend.h"
#include "hip_api.h"
#include "hip_jit.h"

#ifndef FA_HIP_ON_NVIDIA
#define FA_HIP_ON_NVIDIA 0
#endif

enum { HIP_MAX_DEVICES = 16 };
/* Kernel family ids: the wave-size-generic SIMT forward (the CUDA backend's kernels/fwd_f32.cu, shared), the MFMA
   forward, the SIMT backward (kernels/bwd_f32.cu, shared likewise), the MFMA backward. */
enum { HIP_KERNEL_FWD_SIMT = 1, HIP_KERNEL_FWD_MFMA = 2, HIP_KERNEL_BWD_SIMT = 3, HIP_KERNEL_BWD_MFMA = 4 };

typedef struct hip_device {
    int ordinal;
    char target[256]; /* what the compiler is told: the full gcnArchName ("gfx90a:sramecc+:xnack-"), or sm_XY */
    fa_device_props props;
} hip_device;

typedef struct hip_ctx {
    hip_api api;
    int ndev;
    hip_device dev[HIP_MAX_DEVICES];
} hip_ctx;

/* The plugin's name in logs and errors: "hip", or "hip-nvidia" in the verification build. */
#define HIP_LABEL (FA_HIP_ON_NVIDIA ? "hip-nvidia" : "hip")

/*
 * Makes the device current for the calling thread (HIP's model: a current device per thread) and remembers the
 * one that was, so the caller's own current device (PyTorch's, the application's) is left as it found it.
 */
fa_status hip_device_enter(hip_ctx *c, int device, int *prev);
void hip_device_leave(hip_ctx *c, int prev);

/* The selector: one function answers "supported?" and "which kernel family?" (hip_select.c). */
fa_status hip_select(void *ctx, int device, const fa_attn_desc *desc, fa_pass pass, const fa_kernel_family **family,
                     char *why, size_t why_size);
extern const fa_kernel_family hip_fwd_simt_family;
/* Dynamic shared memory (LDS) of the SIMT forward for this problem and tile, in bytes. */
int64_t hip_fwd_simt_smem(const fa_attn_desc *d, const fa_tile_config *c);
enum { HIP_SIMT_THREADS = 256 }; /* the SIMT forward's block: 4 wavefronts of 64, or 8 warps of 32 */

/* The MFMA forward for CDNA (hip_select_mfma.c, kernels/fwd_mfma.hip): block_q = rows per wave (32, or 16 with
   the 16x16x16 instructions) x waves. */
extern const fa_kernel_family hip_fwd_mfma_family;
/*
 * What both MFMA passes need (hip_select_mfma.c): an AMD build, fp16/bf16, head dims multiples of 32 up to 128,
 * a gfx90a/gfx94x device (gfx94x with ROCm 6's hiprtc). 1 if so; else 0 with the reason (naming `pass`) in why.
 */
int hip_mfma_device_takes(const hip_ctx *c, int device, const fa_attn_desc *d, const char *pass, char *why,
                          size_t why_size);
/* 1 if the MFMA forward takes this problem on this device; else 0 with the reason in why. */
int hip_mfma_takes(const hip_ctx *c, int device, const fa_attn_desc *d, char *why, size_t why_size);
/* Its LDS per block in bytes: K and V tiles of block_kv rows, padded by 4 elements, stages of them. */
int64_t hip_fwd_mfma_smem(const fa_attn_desc *d, const fa_tile_config *c);

/* The forward (hip_fwd.c): the plan's compiled kernel, its description and its launch on the caller's stream. */
typedef struct hip_fwd_state hip_fwd_state;
fa_status hip_fwd_prepare(hip_ctx *c, const fa_plan_info *plan, hip_fwd_state **out);
void hip_fwd_release(hip_ctx *c, int device, hip_fwd_state *s);
size_t hip_fwd_describe(const hip_fwd_state *s, char *buf, size_t size);
fa_status hip_fwd_run(hip_ctx *c, const fa_plan_info *plan, const hip_fwd_state *s, const fa_fwd_args *a,
                      void *workspace, void *stream);

/* The backward (hip_bwd.c): the SIMT backward of cuda/kernels/bwd_f32.cu or the MFMA backward of
   kernels/bwd_mfma.hip, and their three launches. */
extern const fa_kernel_family hip_bwd_simt_family;
/* The MFMA backward for CDNA (hip_select_mfma_bwd.c): block_q = block_kv = 32 x waves (queries of a dQ block, keys
   of a dK/dV block). */
extern const fa_kernel_family hip_bwd_mfma_family;
/* 1 if the MFMA backward takes this problem on this device; else 0 with the reason in why. */
int hip_mfma_bwd_takes(const hip_ctx *c, int device, const fa_attn_desc *d, char *why, size_t why_size);
/* Rows of its staged tiles (kernels/bwd_mfma.hip's FA_TR): 64 where dqk + dv <= 128, else 32. */
int hip_bwd_mfma_rows(const fa_attn_desc *d);
typedef struct hip_bwd_state hip_bwd_state;
fa_status hip_bwd_prepare(hip_ctx *c, const fa_plan_info *plan, hip_bwd_state **out);
void hip_bwd_release(hip_ctx *c, int device, hip_bwd_state *s);
size_t hip_bwd_describe(const hip_bwd_state *s, char *buf, size_t size);
fa_status hip_bwd_run(hip_ctx *c, const fa_plan_info *plan, const hip_bwd_state *s, const fa_bwd_args *a,
                      void *workspace, void *stream);

#endif
