/* Rotary embedding and KV-cache append on the CPU. */
#include "cpu_rotary.h"

#include <string.h>

#include "cpu_convert.h"
#include "cpu_scratch.h"

void cpu_rotary_row(const fa_attn_desc *d, const fa_tensor *cos, const fa_tensor *sin, int64_t pos, float *x)
{
    int64_t half = d->rotary_dim / 2;
    const float *c = (const float *)cos->data + pos * cos->stride[0];
    const float *s = (const float *)sin->data + pos * sin->stride[0];
    for (int64_t i = 0; i < half; i++) {
        /* interleaved (GPT-J) rotates pairs (2i, 2i+1); otherwise (GPT-NeoX) the halves (i, i + half) */
        int64_t a = d->rotary_interleaved ? 2 * i : i, b = d->rotary_interleaved ? 2 * i + 1 : i + half;
        float x1 = x[a], x2 = x[b];
        x[a] = x1 * c[i] - x2 * s[i];
        x[b] = x2 * c[i] + x1 * s[i];
    }
}

int64_t cpu_rotary_q_position(const fa_plan_info *p, const cpu_layout *l, int64_t b, int64_t i)
{
    /* flash_attn: with a causal or local mask q rows follow the cache; otherwise they all sit at its end. */
    int moving = p->desc.causal || p->window_left >= 0 || p->window_right >= 0;
    return (int64_t)l->seqused_k[b] + (moving ? i : 0);
}

void cpu_append_kv(const fa_plan_info *p, const cpu_layout *l, const fa_fwd_args *a, float *pool, int64_t stride)
{
    const fa_attn_desc *d = &p->desc;
    int64_t rows = d->batch * d->seqlen_new * d->heads_kv;
#pragma omp parallel
    {
        float *buf = pool + cpu_thread() * stride;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int64_t b = r / (d->seqlen_new * d->heads_kv), t = (r / d->heads_kv) % d->seqlen_new, hk = r % d->heads_kv;
            int64_t pos = (int64_t)l->seqused_k[b] + t;
            const fa_tensor *kn = &a->k_new, *vn = &a->v_new;
            int size = fa_dtype_size(d->dtype);
            const char *ksrc = (const char *)kn->data + (b * kn->stride[0] + t * kn->stride[1] + hk * kn->stride[2]) * size;
            const char *vsrc = (const char *)vn->data + (b * vn->stride[0] + t * vn->stride[1] + hk * vn->stride[2]) * size;
            char *kdst = (char *)a->k.data + cpu_kv_offset(l, &a->k, b, pos, hk) * size;
            char *vdst = (char *)a->v.data + cpu_kv_offset(l, &a->v, b, pos, hk) * size;
            if (d->rotary_dim > 0) {
                fa_load_row(ksrc, d->dtype, d->head_dim_qk, 1.0f, buf);
                cpu_rotary_row(d, &a->rotary_cos, &a->rotary_sin, pos, buf);
                fa_store_row(kdst, d->dtype, d->head_dim_qk, 1.0f, buf);
            } else {
                memcpy(kdst, ksrc, (size_t)(d->head_dim_qk * size));
            }
            memcpy(vdst, vsrc, (size_t)(d->head_dim_v * size));
        }
    }
}
