/* Split-KV combine: out = sum_s exp(lse_s - lse) out_s, lse = log sum_s exp(lse_s). */
#include "cpu_backend.h"
#include "cpu_convert.h"
#include "cpu_scratch.h"

#include <math.h>
#include <stdlib.h>

void cpu_combine_row(const float *out_parts, int64_t out_split_stride, const float *lse_parts,
                     int64_t lse_split_stride, int splits, int64_t dv, void *out, fa_dtype out_dtype,
                     float *lse_out, float *acc)
{
    float m = -INFINITY;
    for (int s = 0; s < splits; s++) m = fmaxf(m, lse_parts[s * lse_split_stride]);
    for (int64_t c = 0; c < dv; c++) acc[c] = 0.0f;
    if (m == -INFINITY) {
        /* No split saw a key: the row is fully masked. */
        fa_store_row(out, out_dtype, dv, 1.0f, acc);
        if (lse_out) *lse_out = -INFINITY;
        return;
    }
    float sum = 0.0f;
    for (int s = 0; s < splits; s++) {
        float l = lse_parts[s * lse_split_stride];
        if (l == -INFINITY) continue;
        float w = expf(l - m);
        sum += w;
        const float *o = out_parts + s * out_split_stride;
        for (int64_t c = 0; c < dv; c++) acc[c] += w * o[c];
    }
    fa_store_row(out, out_dtype, dv, 1.0f / sum, acc);
    if (lse_out) *lse_out = m + logf(sum);
}

fa_status cpu_combine(const fa_combine_args *a)
{
    const fa_tensor *op = &a->out_partial, *lp = &a->lse_partial, *o = &a->out;
    int splits = (int)op->shape[0];
    int64_t batch = op->shape[1], sq = op->shape[2], heads = op->shape[3], dv = op->shape[4];
    int64_t rows = batch * sq * heads;
    int threads = cpu_threads();
    /* Scratch is taken before any output is touched, so running out of memory writes nothing. */
    float *acc_all = malloc(sizeof(float) * (size_t)(dv * threads));
    if (!acc_all) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "cpu combine: out of memory");
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *acc = acc_all + cpu_thread() * dv;
        int64_t b = r / (sq * heads), i = (r / heads) % sq, h = r % heads;
        const float *parts = (const float *)op->data + b * op->stride[1] + i * op->stride[2] + h * op->stride[3];
        const float *lses = (const float *)lp->data + b * lp->stride[1] + h * lp->stride[2] + i * lp->stride[3];
        char *dst = (char *)o->data + (b * o->stride[0] + i * o->stride[1] + h * o->stride[2]) * fa_dtype_size(o->dtype);
        float *lse_out = a->lse.data
                             ? (float *)a->lse.data + b * a->lse.stride[0] + h * a->lse.stride[1] + i * a->lse.stride[2]
                             : NULL;
        cpu_combine_row(parts, op->stride[0], lses, lp->stride[0], splits, dv, dst, o->dtype, lse_out, acc);
    }
    free(acc_all);
    return FA_OK;
}
