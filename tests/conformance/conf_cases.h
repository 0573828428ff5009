/*
 * Conformance suite: the one table of cases. Each case is one attention problem (shape, masking, features,
 * dtype, memory layout); the runner makes fresh random inputs for it and checks every tile configuration.
 *
 * Cases are plain data. kind = CONF_FWD rows check fa_fwd (every candidate tile configuration); kind = CONF_BWD
 * rows run fa_fwd then fa_bwd on a plan made with desc.with_backward = 1 and check the gradients dq, dk, dv with
 * the 3x rule (conf_check.h), and, with det = 1, that desc.deterministic = 1 gives bit-identical gradients run
 * after run and under another OpenMP thread count. Forward rows with append > 0 exercise the KV-cache append
 * (and rotary, rotary_dim > 0) of flash_attn_with_kvcache: the cache is checked after every call as well.
 */
#ifndef CONF_CASES_H
#define CONF_CASES_H

#include <stdint.h>

#include "flashport.h"

#define CONF_MAX_SEQ 8

typedef enum conf_kind { CONF_FWD = 0, CONF_BWD = 1 } conf_kind;

/* Memory layout of q/k/v/out/lse: everything but the last dimension may be strided. */
typedef enum conf_layout {
    CONF_LAYOUT_DENSE = 0,
    CONF_LAYOUT_PADDED,    /* q: padded head stride; out: padded row stride; lse/slopes/block table padded */
    CONF_LAYOUT_BHSD,      /* q/k/v/out stored (batch, heads, seq, dim), as a transposed PyTorch tensor */
    CONF_LAYOUT_KVPACKED,  /* k and v interleaved in one (batch, seq, 2, heads, dim) buffer */
    CONF_LAYOUT_QKVPACKED, /* q, k, v interleaved in one (batch, seq, 3, heads, dim) buffer */
    CONF_LAYOUT_COUNT
} conf_layout;

typedef struct conf_case {
    conf_kind kind;
    fa_dtype dtype;
    int batch;                  /* ignored with varlen (nseq sequences) */
    int sq, sk;                 /* ignored with varlen; with kvlen: sk is the cache capacity */
    int hq, hk;
    int dqk, dv;
    float scale;                /* 0 = default 1/sqrt(dqk) */
    int causal;
    int window;                 /* 1: wl/wr below apply; 0: both unbounded */
    int wl, wr;
    float softcap;
    fa_alibi_mode alibi;
    float dropout;
    int no_lse;                 /* 1: return_lse off */
    int nseq;                   /* > 0: varlen with these per-sequence lengths */
    int lens_q[CONF_MAX_SEQ], lens_k[CONF_MAX_SEQ];
    int page_size;              /* > 0: paged KV with a shuffled block table */
    int bt_pad;                 /* extra block table columns (block_table_stride > max_pages_per_seq) */
    int use_kvlen;              /* seqused_k given */
    int kvlen[CONF_MAX_SEQ];
    conf_layout layout;
    int num_splits;             /* desc.num_splits (0 = planner decides) */
    int append;                 /* desc.seqlen_new: rows of k_new/v_new written at kvlen[b] (needs use_kvlen) */
    int rotary_dim;             /* desc.rotary_dim (with append only) */
    int rotary_interleaved;     /* desc.rotary_interleaved */
    int det;                    /* backward: desc.deterministic = 1 and the determinism checks */

    /* Filled in by conf_cases_init(). */
    int index;
    char name[320];
    double ref_gflop;           /* float64 reference cost (backward: forward + gradients) */
    int big;                    /* reference above ~0.3 GFLOP: --quick / FLASHPORT_CONFORMANCE_QUICK skip it */
} conf_case;

/* Feature groups a case counts in (a case may be in several). */
typedef enum conf_group {
    CONF_G_BASIC = 0, CONF_G_CAUSAL, CONF_G_WINDOW, CONF_G_SOFTCAP, CONF_G_ALIBI, CONF_G_GQA, CONF_G_VARLEN,
    CONF_G_PAGED, CONF_G_KVLEN, CONF_G_DROPOUT, CONF_G_LSE, CONF_G_MASKED_ROWS, CONF_G_STRIDES, CONF_G_DV,
    CONF_G_SPLITS, CONF_G_F32, CONF_G_F16, CONF_G_BF16, CONF_G_BIG, CONF_G_BACKWARD, CONF_G_DETERMINISTIC,
    CONF_G_DECODE, CONF_G_APPEND, CONF_G_ROTARY, CONF_G_COUNT
} conf_group;

const char *conf_group_name(conf_group g);

/* Fills names, costs and big flags (idempotent, not thread-safe on first call). */
void conf_cases_init(void);
int conf_case_count(void);
const conf_case *conf_case_get(int index);
/* Bitmask of conf_group membership. */
uint32_t conf_case_groups(const conf_case *c);

/* Per-sequence lengths of a case, varlen or not (sk = keys attended: kvlen if given, plus the appended rows). */
int conf_case_nseq(const conf_case *c);
int conf_case_seq_q(const conf_case *c, int b);
int conf_case_seq_k_capacity(const conf_case *c, int b);
int conf_case_seq_k(const conf_case *c, int b);
/* Rows of the rotary cos/sin tables a case uses (covers every position of every sequence, plus a few). */
int conf_case_rotary_seqlen(const conf_case *c);

#endif
