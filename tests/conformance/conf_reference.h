/*
 * Conformance suite: reference forward attention, written from the semantics documented on fa_attn_desc
 * in flashport.h and sharing no code with the library (only its public types and fa_dropout_keep(), the
 * documented dropout mask every implementation must use).
 *
 * It reads the very host buffers handed to fa_fwd (through fa_fwd_args: strides, varlen offsets, paged block
 * table, seqused_k, ALiBi slopes), so layout handling is checked too, and writes results in one dense
 * "logical" layout that does not depend on the case's memory layout:
 *   rows r = query tokens of every sequence in order (sequence b, then query i): r = q_row0(b) + i
 *   out[(r * heads_q + h) * head_dim_v + e]     lse[r * heads_q + h]
 * A query row that sees no key has out 0 and lse -inf.
 */
#ifndef CONF_REFERENCE_H
#define CONF_REFERENCE_H

#include <stdint.h>

#include "flashport.h"

typedef enum conf_ref_mode {
    /* Exact maths in float64: the "truth" every result is measured against. */
    CONF_REF_F64 = 0,
    /* What a naive framework gets in the input dtype: S = QK^T accumulated in fp32 and rounded to the dtype,
     * scale/softcap/ALiBi/mask and softmax in fp32, P rounded to the dtype, O accumulated in fp32 and rounded
     * to the dtype; LSE in fp32. Its error against CONF_REF_F64 sets the tolerance (FlashAttention's rule). */
    CONF_REF_NAIVE = 1
} conf_ref_mode;

/* Per-sequence geometry, as the header defines it. */
typedef struct conf_seq {
    int64_t q_row0; /* first logical row of the sequence */
    int64_t sq, sk; /* queries, and keys actually used */
} conf_seq;

conf_seq conf_ref_seq(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b);
/* Logical query rows over all sequences: varlen ? cu_seqlens_q[batch] : batch * seqlen_q. */
int64_t conf_ref_rows(const fa_attn_desc *d, const fa_fwd_args *a);

/* Visible key range [*lo, *hi] of query i (empty when *lo > *hi), clipped to [0, sk). */
void conf_ref_window(const fa_attn_desc *d, int64_t i, int64_t sq, int64_t sk, int64_t *lo, int64_t *hi);

/* Element offsets (in elements, from tensor.data) of q[b, i, h, e] / k-or-v[b, j, hk, e] per the layout. */
int64_t conf_ref_q_offset(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *t, int64_t b,
                          int64_t i, int64_t h, int64_t e);
int64_t conf_ref_kv_offset(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *t, int64_t b,
                           int64_t j, int64_t h, int64_t e);
/* Offset of lse[b, h, i] in the library's LSE tensor. */
int64_t conf_ref_lse_offset(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t i, int64_t h);

/* Computes out and lse (both sized as above; lse may be NULL). Returns 0, or -1 if memory ran out. */
int conf_reference_fwd(const fa_attn_desc *d, const fa_fwd_args *a, conf_ref_mode mode, double *out,
                       double *lse);

#endif
