/*
 * Where rows of each tensor live, for the three layouts the API accepts (dense, varlen, paged) and
 * per-sequence lengths. One place, so the forward, the combine and (later) the backward agree.
 */
#ifndef CPU_LAYOUT_H
#define CPU_LAYOUT_H

#include "fa_backend.h"

typedef struct cpu_layout {
    const fa_attn_desc *d;
    const int32_t *cu_q, *cu_k, *seqused_k, *block_table;
    int64_t bt_stride;
} cpu_layout;

static inline cpu_layout cpu_layout_for(const fa_attn_desc *d, const int32_t *cu_q, const int32_t *cu_k,
                                        const int32_t *seqused_k, const int32_t *block_table, int64_t bt_stride)
{
    cpu_layout l = {d, cu_q, cu_k, seqused_k, block_table, bt_stride ? bt_stride : d->max_pages_per_seq};
    return l;
}

static inline int64_t cpu_seqlen_q(const cpu_layout *l, int64_t b)
{
    return l->d->varlen ? (int64_t)l->cu_q[b + 1] - l->cu_q[b] : l->d->seqlen_q;
}

static inline int64_t cpu_seqlen_k(const cpu_layout *l, int64_t b)
{
    if (l->d->kv_cache_lengths) return l->seqused_k[b] + l->d->seqlen_new; /* appended keys count */
    if (l->d->varlen) return (int64_t)l->cu_k[b + 1] - l->cu_k[b]; /* paged too: lengths only */
    return l->d->seqlen_k;
}

/* Element offset of row (b, i, h) in a q-like tensor (q, out). */
static inline int64_t cpu_q_offset(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t i, int64_t h)
{
    if (l->d->varlen) return ((int64_t)l->cu_q[b] + i) * t->stride[0] + h * t->stride[1];
    return b * t->stride[0] + i * t->stride[1] + h * t->stride[2];
}

/* Element offset of key/value row (b, j, hk). */
static inline int64_t cpu_kv_offset(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t j, int64_t hk)
{
    const fa_attn_desc *d = l->d;
    if (d->paged_kv) {
        int64_t page = l->block_table[b * l->bt_stride + j / d->page_size];
        return page * t->stride[0] + (j % d->page_size) * t->stride[1] + hk * t->stride[2];
    }
    if (d->varlen) return ((int64_t)l->cu_k[b] + j) * t->stride[0] + hk * t->stride[1];
    return b * t->stride[0] + j * t->stride[1] + hk * t->stride[2];
}

static inline int64_t cpu_lse_offset(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i)
{
    if (l->d->varlen) return h * t->stride[0] + ((int64_t)l->cu_q[b] + i) * t->stride[1];
    return b * t->stride[0] + h * t->stride[1] + i * t->stride[2];
}

static inline float cpu_alibi_slope(const fa_attn_desc *d, const fa_tensor *t, int64_t b, int64_t h)
{
    if (d->alibi == FA_ALIBI_NONE) return 0.0f;
    const float *s = t->data;
    return d->alibi == FA_ALIBI_PER_HEAD ? s[h * t->stride[0]] : s[b * t->stride[0] + h * t->stride[1]];
}

static inline const char *cpu_elem_ptr(const fa_tensor *t, int64_t offset)
{
    return (const char *)t->data + offset * fa_dtype_size(t->dtype);
}

#endif
