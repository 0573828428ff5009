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
 *
 * KV-cache append (desc.seqlen_new > 0): key j < seqused_k[b] is read from the cache, key seqused_k[b] + t from
 * row t of k_new / v_new, k_new rotated (desc.rotary_dim) and rounded to the dtype first, as the header says
 * the cache is written before attention runs. q is rotated too (positions as the header documents); the float64
 * reference keeps the rotated q exact, the naive one rounds it to the dtype, as a framework would.
 *
 * Gradients (conf_reference_bwd) use the same logical row order for dq, and for dk / dv the key rows of the k
 * tensor: rk = k_row0(b) + j over the k tensor's rows j of every sequence (kv cache slots past seqused_k
 * included: their gradient is 0).
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
    int64_t sq, sk; /* queries, and keys actually used (after the append) */
    int64_t cached; /* keys read from the cache (sk - desc.seqlen_new) */
    int64_t k_row0; /* first logical key row (gradients): varlen ? cu_seqlens_k[b] : b * seqlen_k */
    int64_t kcap;   /* rows of the k tensor that belong to the sequence */
} conf_seq;

conf_seq conf_ref_seq(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b);
/* Logical query rows over all sequences: varlen ? cu_seqlens_q[batch] : batch * seqlen_q. */
int64_t conf_ref_rows(const fa_attn_desc *d, const fa_fwd_args *a);
/* Logical key rows (dense or varlen k only): varlen ? cu_seqlens_k[batch] : batch * seqlen_k. */
int64_t conf_ref_key_rows(const fa_attn_desc *d, const fa_fwd_args *a);

/* Visible key range [*lo, *hi] of query i (empty when *lo > *hi), clipped to [0, sk). */
void conf_ref_window(const fa_attn_desc *d, int64_t i, int64_t sq, int64_t sk, int64_t *lo, int64_t *hi);

/* Element offsets (in elements, from tensor.data) of q[b, i, h, e] / k-or-v[b, j, hk, e] per the layout. */
int64_t conf_ref_q_offset(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *t, int64_t b,
                          int64_t i, int64_t h, int64_t e);
int64_t conf_ref_kv_offset(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *t, int64_t b,
                           int64_t j, int64_t h, int64_t e);
/* Offset of lse[b, h, i] in the library's LSE tensor. */
int64_t conf_ref_lse_offset(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t i, int64_t h);

/* Rotary position of query row i / of appended key row t of sequence b (header's convention). */
int64_t conf_ref_rotary_q_pos(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t i);
int64_t conf_ref_rotary_k_pos(const fa_attn_desc *d, const fa_fwd_args *a, int64_t b, int64_t t);
/* Rotates x (head_dim_qk values) in place, exactly (double), at position pos. *mag, if given, receives the
 * largest |x1 * cos| + |x2 * sin| (the size of the terms whose difference a rotated value is). */
void conf_ref_rotate(const fa_attn_desc *d, const fa_fwd_args *a, int64_t pos, double *x, double *mag);
/* What the cache must hold at appended key row t of sequence b, kv head h (k: rotated, rounded to the dtype;
 * v: copied): fills row (head_dim_qk or head_dim_v values) and, if mag is given, per element the size of the
 * rotation's terms (0 where no rotation applies). */
void conf_ref_appended_row(const fa_attn_desc *d, const fa_fwd_args *a, int is_v, int64_t b, int64_t t, int64_t h,
                           double *row, double *mag);

/* Computes out and lse (both sized as above; lse may be NULL). lse_mag (float64 only, may be NULL; one per
 * row and head like lse) receives sum_j P_j (|scale| * sum_e |q_e k_e| + |ALiBi bias_j|): the size of the score
 * terms behind the LSE, which bounds its fp32 noise. Returns 0, or -1 if memory ran out. */
int conf_reference_fwd(const fa_attn_desc *d, const fa_fwd_args *a, conf_ref_mode mode, double *out, double *lse,
                       double *lse_mag);

/*
 * Gradients of sum(out * dout) (dout: a tensor laid out like out, read through the same offsets). dq is
 * rows x heads_q x head_dim_qk, dk key_rows x heads_kv x head_dim_qk, dv key_rows x heads_kv x head_dim_v.
 * CONF_REF_F64: the chain rule in float64 (dS = P o (dP - rowsum(dO o O)), dropout's mask/(1-p) on both P and
 * dP, softcap's 1 - tanh^2). CONF_REF_NAIVE: what autograd through the naive same-precision forward gives
 * (every materialised matrix rounded to the dtype, fp32 sums; per-head dk/dv rounded, then summed over the
 * query heads of a kv head). mag (F64 only; may be NULL) receives the size of the terms each gradient is a
 * sum of: mag[0..2] = max over elements for dq, dk, dv, a bound for fp32 accumulation noise.
 * key_seen (may be NULL; key_rows bytes) is set to 1 for every key some query of its sequence sees.
 */
int conf_reference_bwd(const fa_attn_desc *d, const fa_fwd_args *a, const fa_tensor *dout, conf_ref_mode mode,
                       double *dq, double *dk, double *dv, double *mag, unsigned char *key_seen);

#endif
