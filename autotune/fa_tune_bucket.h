/*
 * Tuning buckets: the coarse shape classes a tuned tile configuration is stored under. A problem falls in one
 * bucket (pass, dtype, head dims, mask class, power-of-two sequence class, power-of-two GQA ratio class), so a
 * config measured fastest on one representative problem is reused for its neighbours; fa_plan_create still
 * takes it only if it is one of the planner's candidates for the real problem.
 *
 * Also the text form of a tile configuration, shared by the cache file, FLASHPORT_TILE and flashport-tune:
 * BQxBKV[xSPLITS][wWARPS][sSTAGES] (flashport-bench's --tile syntax), written in full as 128x64x1w4s2.
 */
#ifndef FA_TUNE_BUCKET_H
#define FA_TUNE_BUCKET_H

#include <stddef.h>

#include "flashport.h"

typedef enum fa_tune_pass { FA_TUNE_FWD = 0, FA_TUNE_BWD = 1, FA_TUNE_DECODE = 2 } fa_tune_pass;
typedef enum fa_tune_mask { FA_TUNE_MASK_NONE = 0, FA_TUNE_MASK_CAUSAL = 1, FA_TUNE_MASK_WINDOW = 2 } fa_tune_mask;

/* Query rows up to which a forward counts as decode (the CPU and CUDA decode families' own limit). */
#define FA_TUNE_DECODE_MAX_Q 16

typedef struct fa_tune_bucket {
    fa_tune_pass pass;   /* bwd: plans with desc.with_backward (forward and backward configs together) */
    fa_dtype dtype;
    int dqk, dv;
    fa_tune_mask mask;   /* window wins over causal: a causal window is a window */
    int seq_class;       /* next power of two >= max(seqlen_q, seqlen_k); decode: >= seqlen_k; at least 16 */
    int gqa_class;       /* next power of two >= heads_q / heads_kv */
} fa_tune_bucket;

/* Next power of two >= n (1 for n <= 1), capped at 2^30. */
FA_API int fa_tune_pow2_class(long long n);
FA_API void fa_tune_bucket_of(const fa_attn_desc *desc, fa_tune_bucket *bucket);
FA_API int fa_tune_bucket_equal(const fa_tune_bucket *a, const fa_tune_bucket *b);
/* One token, e.g. "fwd/bf16/d128x128/causal/s1024/g1". Returns what snprintf returns. */
FA_API int fa_tune_bucket_format(const fa_tune_bucket *bucket, char *buf, size_t size);
/* Parses exactly what fa_tune_bucket_format writes (classes must be powers of two). 0, or -1 if malformed. */
FA_API int fa_tune_bucket_parse(const char *text, fa_tune_bucket *bucket);

/* "128x64x1w4s2". Returns what snprintf returns. */
FA_API int fa_tile_format(const fa_tile_config *config, char *buf, size_t size);
/* BQxBKV[xSPLITS][wWARPS][sSTAGES], every number >= 1, nothing else in the string (omitted fields: 1).
 * 0, or -1 if malformed. */
FA_API int fa_tile_parse(const char *text, fa_tile_config *config);

#endif
