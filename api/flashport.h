/*
 * flashport: exact FlashAttention for every accelerator, behind one C API.
 *
 * Usage in brief:
 *   fa_attn_desc d; fa_attn_desc_init(&d);
 *   d.dtype = FA_DTYPE_BF16; d.batch = 2; d.seqlen_q = d.seqlen_k = 4096;
 *   d.heads_q = 32; d.heads_kv = 8; d.head_dim_qk = d.head_dim_v = 128; d.causal = 1;
 *   fa_plan *plan;
 *   if (fa_plan_create(&plan, fa_device_best(), &d) != FA_OK) puts(fa_last_error());
 *   fa_fwd_args a = {0};
 *   a.q = fa_tensor_4d(q, FA_DTYPE_BF16, 2, 4096, 32, 128);  ... k, v, out likewise
 *   fa_fwd(plan, &a, NULL);            // stream: cudaStream_t, hipStream_t, cl_command_queue or NULL
 *   // on a GPU, q/k/v/out are device memory: fa_device_alloc + fa_device_copy, then fa_device_synchronize
 *   fa_plan_destroy(plan);
 *
 * Semantics follow flash_attn's Python functions argument for argument (see fa_attn_desc).
 * Every function validates all of its input before doing any work: on error it returns a status, sets
 * fa_last_error() to a message naming the offending argument and its value, and writes no output byte.
 */
#ifndef FLASHPORT_H
#define FLASHPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FA_API __declspec(dllexport)
#else
#define FA_API __attribute__((visibility("default")))
#endif

#define FLASHPORT_VERSION_MAJOR 0
#define FLASHPORT_VERSION_MINOR 1
#define FLASHPORT_VERSION_PATCH 0

/* ---------------------------------------------------------------- status */

typedef enum fa_status {
    FA_OK = 0,
    FA_ERR_INVALID_ARGUMENT = 1, /* a pointer, shape, stride, dtype, alignment or size is wrong */
    FA_ERR_UNSUPPORTED = 2,      /* valid request, but the chosen backend/kernel lacks the feature */
    FA_ERR_OUT_OF_MEMORY = 3,
    FA_ERR_NO_DEVICE = 4,        /* device index out of range or backend absent */
    FA_ERR_BACKEND = 5,          /* the vendor runtime failed (driver error, kernel compile error) */
    FA_ERR_INTERNAL = 6
} fa_status;

FA_API const char *fa_status_string(fa_status status);
/* Message for the last failing call on this thread ("" if none). Valid until the next fa_ call. */
FA_API const char *fa_last_error(void);
FA_API const char *fa_version_string(void);

/* ---------------------------------------------------------------- devices */

typedef enum fa_backend_kind {
    FA_BACKEND_CPU = 0,
    FA_BACKEND_CUDA = 1,
    FA_BACKEND_HIP = 2,
    FA_BACKEND_OPENCL = 3,
    FA_BACKEND_COUNT = 4
} fa_backend_kind;

FA_API const char *fa_backend_name(fa_backend_kind kind);

typedef struct fa_device_props {
    fa_backend_kind backend;
    int index_in_backend;          /* the backend's own device number (CUDA ordinal, OpenCL index, ...) */
    char name[128];                /* "NVIDIA H100 80GB HBM3", "AMD EPYC 7B13" */
    char arch[64];                 /* "sm_90", "gfx90a", "x86-64-avx512", "aarch64-neon" */
    int64_t shared_mem_per_block;  /* default shared/local memory a block may use; CPU: L2 per core */
    int64_t shared_mem_per_block_optin; /* opt-in maximum (== default where there is no opt-in) */
    int64_t shared_mem_per_cu;     /* shared memory of one SM/CU (bounds resident blocks) */
    int compute_units;             /* SMs, CUs, or CPU threads available */
    int simd_width;                /* warp / wavefront width; CPU: fp32 lanes of the widest SIMD unit */
    int max_threads_per_block;     /* CPU: 1 (a block is one thread's work item) */
    int max_threads_per_cu;        /* resident threads per SM/CU; CPU: 1 */
    int registers_per_block;       /* 32-bit registers; 0 where not meaningful */
    int64_t memory_bytes;          /* device memory; CPU: physical memory */
    int64_t l1_cache_bytes, l2_cache_bytes, l3_cache_bytes; /* per core for L1/L2 on CPUs; 0 = unknown */
} fa_device_props;

/* Number of devices over every backend found at run time. Loads backends on first use. */
FA_API int fa_device_count(void);
FA_API fa_status fa_device_get(int device, fa_device_props *props);
/* The device a user would want: the first GPU-class device, else the CPU. */
FA_API int fa_device_best(void);

/* ---------------------------------------------------------------- device memory */

/*
 * Memory that a device's kernels can read, and copies to and from it, so that a C program can run on a GPU
 * without linking the vendor runtime itself. Every pointer fa_fwd / fa_bwd / fa_combine take for a GPU device
 * (tensors, workspace, and the int32 metadata: cu_seqlens_q/k, seqused_k, block_table) must be device memory
 * of that device: from fa_device_alloc, or from the vendor runtime (cudaMalloc, torch tensors), which is the
 * same memory. On the CPU device (device 0) these are aligned malloc / free / memcpy / nothing.
 *
 * stream: as for fa_fwd (cudaStream_t, ..., NULL). With a stream, copy and free are queued on it and the host
 * memory of a copy must stay valid and unchanged until fa_device_synchronize(device, stream) returns. With
 * NULL, a copy has completed when the call returns (it waits for the device), so host memory may be reused
 * at once. The CPU device takes NULL only.
 */
typedef enum fa_copy_kind {
    FA_COPY_HOST_TO_DEVICE = 0,
    FA_COPY_DEVICE_TO_HOST = 1,
    FA_COPY_DEVICE_TO_DEVICE = 2
} fa_copy_kind;

/*
 * bytes of device memory, aligned to at least 64 bytes, into *ptr. bytes = 0 gives *ptr = NULL and FA_OK.
 * Errors: FA_ERR_NO_DEVICE (device out of range), FA_ERR_INVALID_ARGUMENT (ptr NULL, bytes < 0),
 * FA_ERR_OUT_OF_MEMORY (*ptr = NULL; the message carries the backend's reason), FA_ERR_UNSUPPORTED (a backend
 * without device memory).
 */
FA_API fa_status fa_device_alloc(int device, int64_t bytes, void **ptr);
/* Releases memory from fa_device_alloc on the same device. ptr NULL does nothing. */
FA_API fa_status fa_device_free(int device, void *ptr);
/* bytes from src to dst; kind says which side is device memory of this device. bytes = 0 does nothing. */
FA_API fa_status fa_device_copy(int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                                void *stream);
/* Waits until the work queued on stream (NULL: all of the device's work, in the current process) is done.
 * Errors the device met while running earlier kernels are reported here (FA_ERR_BACKEND). */
FA_API fa_status fa_device_synchronize(int device, void *stream);

/* ---------------------------------------------------------------- tensors */

typedef enum fa_dtype {
    FA_DTYPE_F32 = 0,
    FA_DTYPE_F16 = 1,
    FA_DTYPE_BF16 = 2,
    FA_DTYPE_F8_E4M3 = 3, /* reserved for the Hopper path */
    FA_DTYPE_F8_E5M2 = 4, /* reserved for the Hopper path */
    FA_DTYPE_COUNT = 5
} fa_dtype;

FA_API const char *fa_dtype_name(fa_dtype dtype);
FA_API int fa_dtype_size(fa_dtype dtype); /* bytes per element, 0 if unknown */

#define FA_MAX_RANK 5

/*
 * Caller-owned memory described by shape and strides in elements; on a GPU device, device memory of that device
 * (fa_device_alloc, or the vendor runtime's). Layouts:
 *   q, k, v, out, grads: (batch, seqlen, heads, headdim), or (total_tokens, heads, headdim) with varlen
 *   paged k/v cache:     (num_pages, page_size, heads_kv, headdim)
 *   lse:                 fp32 (batch, heads_q, seqlen_q); varlen: (heads_q, total_q)
 *   alibi slopes:        fp32 (heads_q) or (batch, heads_q)
 * The last dimension must be contiguous (stride 1); other strides are free (non-negative).
 */
typedef struct fa_tensor {
    void *data;
    fa_dtype dtype;
    int rank;
    int64_t shape[FA_MAX_RANK];
    int64_t stride[FA_MAX_RANK];
} fa_tensor;

/* Row-major (contiguous) tensors: shape has rank entries, rank 1..5. */
FA_API fa_tensor fa_tensor_contiguous(void *data, fa_dtype dtype, int rank, const int64_t *shape);
FA_API fa_tensor fa_tensor_4d(void *data, fa_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
FA_API fa_tensor fa_tensor_3d(void *data, fa_dtype dtype, int64_t d0, int64_t d1, int64_t d2);

/* ---------------------------------------------------------------- the problem */

typedef enum fa_alibi_mode { FA_ALIBI_NONE = 0, FA_ALIBI_PER_HEAD = 1, FA_ALIBI_PER_BATCH_HEAD = 2 } fa_alibi_mode;

/*
 * One attention problem, with flash_attn's meaning for every field. Call fa_attn_desc_init first: it sets
 * the defaults (no mask, windows unbounded, scale 1/sqrt(head_dim_qk)).
 *
 * Masking, for query i (0-based) and key j of a sequence with seqlen_q = sq and seqlen_k = sk:
 *   causal:  key j is visible if j <= i + sk - sq (aligned bottom-right, as flash_attn >= 2.1)
 *   window:  visible if i + sk - sq - window_left <= j <= i + sk - sq + window_right (-1 = unbounded side)
 *   causal is window_right = 0. A query row that sees no key gets output 0 and LSE -inf.
 * Scores: s = scale * q.k; if softcap > 0: s = softcap * tanh(s / softcap); then ALiBi adds
 *   -slope[h] * |i + sk - sq - j|; P = softmax(s); dropout zeroes P with probability dropout_p and scales the
 *   rest by 1 / (1 - dropout_p), with the mask given by fa_dropout_keep(); out = P V.
 */
typedef struct fa_attn_desc {
    fa_dtype dtype;        /* q, k, v, out (and dout, dq, dk, dv) */
    int64_t batch;         /* varlen: number of sequences */
    int64_t seqlen_q;      /* varlen: max_seqlen_q */
    int64_t seqlen_k;      /* varlen: max_seqlen_k; paged/kv cache: the largest cache length */
    int64_t heads_q;
    int64_t heads_kv;      /* heads_q % heads_kv == 0 (GQA; 1 = MQA) */
    int64_t head_dim_qk;
    int64_t head_dim_v;    /* may differ from head_dim_qk */

    float softmax_scale;   /* 0 = 1/sqrt(head_dim_qk) */
    int causal;
    int64_t window_left, window_right; /* -1 = unbounded */
    float softcap;         /* 0 = off */
    fa_alibi_mode alibi;
    float dropout_p;       /* 0 = off */

    int varlen;            /* q/k/v are (total, heads, dim) with cu_seqlens_q/k at execution */
    int64_t total_q, total_k; /* varlen: rows of q and of k/v */
    int paged_kv;          /* k/v are page pools (num_pages, page_size, heads_kv, dim) + block table; with
                              varlen, cu_seqlens_k gives key counts (or seqused_k with kv_cache_lengths) */
    int64_t page_size;
    int64_t num_pages;
    int64_t max_pages_per_seq; /* columns of the block table */
    int kv_cache_lengths;  /* per-sequence key counts (seqused_k / cache_seqlens) given at execution */

    /*
     * KV-cache append (flash_attn_with_kvcache): seqlen_new rows of k_new/v_new per sequence are written into
     * the cache at positions seqused_k[b] .. seqused_k[b] + seqlen_new - 1 (needs kv_cache_lengths), then
     * attention runs over seqused_k[b] + seqlen_new keys. seqused_k itself is not modified.
     */
    int64_t seqlen_new;    /* 0 = no append */
    /*
     * Rotary embedding (with append only): applied to q and k_new over their first rotary_dim dims, from
     * fp32 cos/sin tables (rotary_seqlen, rotary_dim / 2). k_new row t sits at position seqused_k[b] + t; q row i
     * at seqused_k[b] + i when causal or windowed, else at seqused_k[b] (flash_attn's convention).
     */
    int64_t rotary_dim;    /* 0 = none; even, <= head_dim_qk */
    int rotary_interleaved; /* 1: pairs (2i, 2i+1) (GPT-J); 0: halves (i, i + rotary_dim/2) (GPT-NeoX) */
    int64_t rotary_seqlen; /* rows of the cos/sin tables; must cover every position used */

    int return_lse;        /* fa_fwd writes LSE */
    int num_splits;        /* KV splits; 0 = planner decides, 1 = no split */
    int with_backward;     /* hint: the plan will also run fa_bwd (plans its tiles too) */
    int deterministic;     /* fa_bwd gives bit-identical gradients run after run */
} fa_attn_desc;

FA_API void fa_attn_desc_init(fa_attn_desc *desc);

/* The dropout mask shared by every backend, the backward pass and reference code: 1 = keep. */
FA_API int fa_dropout_keep(uint64_t seed, uint64_t offset, int64_t batch, int64_t head, int64_t row,
                           int64_t col, float dropout_p);

/* ---------------------------------------------------------------- plans */

/* A tile configuration; the planner's candidates are these, and the tuner searches them. */
typedef struct fa_tile_config {
    int block_q;     /* rows of Q per block / work item */
    int block_kv;    /* keys per KV tile */
    int warps;       /* warps (waves) per block; CPU: 1 */
    int stages;      /* KV pipeline stages */
    int num_splits;  /* KV splits (1 = none) */
} fa_tile_config;

typedef struct fa_plan fa_plan;

/*
 * Chooses each pass's tile configuration once, from the first of these that gives one the planner lists as a
 * candidate for this problem (fa_plan_candidates; a config that is not one is logged and skipped):
 *   1. FLASHPORT_TILE=BQxBKV[xSPLITS][wWARPS][sSTAGES] in the environment (forward only; flashport-bench's --tile)
 *   2. the user's tuning cache: $FLASHPORT_TUNE_DIR, else $XDG_CACHE_HOME/flashport/tune, else
 *      ~/.cache/flashport/tune (written by flashport-tune)
 *   3. the install tree's tuning cache, <prefix>/share/flashport/tune (cmake -DFLASHPORT_TUNE_ON_INSTALL=ON)
 *   4. the planner heuristic
 * A cache file counts only if its validators (flashport version, kernel sources, driver, device, arch, shared
 * memory) match this device; FLASHPORT_TUNE=off skips both caches. fa_plan_describe says which one chose.
 */
FA_API fa_status fa_plan_create(fa_plan **plan, int device, const fa_attn_desc *desc);
/* As fa_plan_create, but with the given forward tile configuration (must be one of fa_plan_candidates); the
 * backward's is the planner heuristic's. No environment or tuning cache is consulted. */
FA_API fa_status fa_plan_create_with_config(fa_plan **plan, int device, const fa_attn_desc *desc,
                                            const fa_tile_config *config);
/*
 * Both passes' configurations given: fwd_config one of fa_plan_candidates, bwd_config one of
 * fa_plan_bwd_candidates (needs desc.with_backward). Either may be NULL: that pass takes the planner heuristic.
 * No environment or tuning cache is consulted (flashport-tune measures candidates through this).
 */
FA_API fa_status fa_plan_create_with_configs(fa_plan **plan, int device, const fa_attn_desc *desc,
                                             const fa_tile_config *fwd_config, const fa_tile_config *bwd_config);
FA_API void fa_plan_destroy(fa_plan *plan);
/* Bytes of workspace fa_fwd/fa_bwd want. Pass NULL workspace to let the library allocate it. */
FA_API int64_t fa_plan_workspace_size(const fa_plan *plan);
FA_API fa_status fa_plan_config(const fa_plan *plan, fa_tile_config *config);
/* The backward pass's tile configuration (FA_ERR_INVALID_ARGUMENT for a plan without desc.with_backward). */
FA_API fa_status fa_plan_bwd_config(const fa_plan *plan, fa_tile_config *config);
/* Human-readable: device, kernel, tile sizes and why. Returns the text length; writes at most size bytes. */
FA_API size_t fa_plan_describe(const fa_plan *plan, char *buf, size_t size);

/*
 * Every tile configuration the planner finds valid for this problem on this device, best first.
 * Writes up to max configs; *count receives how many exist.
 */
FA_API fa_status fa_plan_candidates(int device, const fa_attn_desc *desc, fa_tile_config *configs, int max,
                                    int *count);
/* The same for the backward pass (desc.with_backward need not be set): the configs fa_plan_create_with_configs
 * takes as bwd_config, best first. */
FA_API fa_status fa_plan_bwd_candidates(int device, const fa_attn_desc *desc, fa_tile_config *configs, int max,
                                        int *count);

/* ---------------------------------------------------------------- execution */

typedef struct fa_fwd_args {
    fa_tensor q, k, v, out;
    fa_tensor lse;                 /* required when desc.return_lse */
    fa_tensor alibi_slopes;        /* required when desc.alibi */
    /* the int32 metadata below is device memory on GPU devices, like the tensors */
    const int32_t *cu_seqlens_q;   /* varlen: batch + 1 prefix sums */
    const int32_t *cu_seqlens_k;   /* varlen: offsets into k/v; with paged_kv only the lengths count */
    const int32_t *seqused_k;      /* kv_cache_lengths: keys used per sequence */
    const int32_t *block_table;    /* paged_kv: (batch, max_pages_per_seq) */
    int64_t block_table_stride;    /* elements between rows; 0 = max_pages_per_seq */
    uint64_t dropout_seed, dropout_offset;
    fa_tensor k_new, v_new;        /* desc.seqlen_new > 0: (batch, seqlen_new, heads_kv, dim), written into k/v */
    fa_tensor rotary_cos, rotary_sin; /* desc.rotary_dim > 0: fp32 (rotary_seqlen, rotary_dim / 2) */
    void *workspace;               /* NULL: allocated internally */
    int64_t workspace_size;
} fa_fwd_args;

typedef struct fa_bwd_args {
    fa_tensor q, k, v, out, dout, lse;
    fa_tensor dq, dk, dv;
    fa_tensor alibi_slopes;
    const int32_t *cu_seqlens_q, *cu_seqlens_k;
    const int32_t *seqused_k;
    uint64_t dropout_seed, dropout_offset;
    void *workspace;
    int64_t workspace_size;
} fa_bwd_args;

/*
 * Merge split-KV partial results: out_partial fp32 (splits, batch, seqlen_q, heads, head_dim_v),
 * lse_partial fp32 (splits, batch, heads, seqlen_q) -> out (batch, seqlen_q, heads, head_dim_v) and
 * optionally lse fp32 (batch, heads, seqlen_q). A split whose LSE is -inf contributes nothing.
 */
typedef struct fa_combine_args {
    fa_tensor out_partial, lse_partial;
    fa_tensor out;
    fa_tensor lse; /* optional (data NULL) */
} fa_combine_args;

/* stream: cudaStream_t / hipStream_t / cl_command_queue for GPU devices (NULL = default), NULL on the CPU. */
FA_API fa_status fa_fwd(const fa_plan *plan, const fa_fwd_args *args, void *stream);
FA_API fa_status fa_bwd(const fa_plan *plan, const fa_bwd_args *args, void *stream);
FA_API fa_status fa_combine(int device, const fa_combine_args *args, void *stream);

#ifdef __cplusplus
}
#endif
#endif
