/* dtype facts, tensor constructors and the default problem description. */
#include "fa_internal.h"

#include <string.h>

const char *fa_dtype_name(fa_dtype dtype)
{
    switch (dtype) {
    case FA_DTYPE_F32: return "fp32";
    case FA_DTYPE_F16: return "fp16";
    case FA_DTYPE_BF16: return "bf16";
    case FA_DTYPE_F8_E4M3: return "fp8_e4m3";
    case FA_DTYPE_F8_E5M2: return "fp8_e5m2";
    case FA_DTYPE_COUNT: break;
    }
    return "unknown";
}

int fa_dtype_size(fa_dtype dtype)
{
    switch (dtype) {
    case FA_DTYPE_F32: return 4;
    case FA_DTYPE_F16:
    case FA_DTYPE_BF16: return 2;
    case FA_DTYPE_F8_E4M3:
    case FA_DTYPE_F8_E5M2: return 1;
    case FA_DTYPE_COUNT: break;
    }
    return 0;
}

const char *fa_backend_name(fa_backend_kind kind)
{
    switch (kind) {
    case FA_BACKEND_CPU: return "cpu";
    case FA_BACKEND_CUDA: return "cuda";
    case FA_BACKEND_HIP: return "hip";
    case FA_BACKEND_OPENCL: return "opencl";
    case FA_BACKEND_COUNT: break;
    }
    return "unknown";
}

fa_tensor fa_tensor_contiguous(void *data, fa_dtype dtype, int rank, const int64_t *shape)
{
    fa_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    if (rank < 1 || rank > FA_MAX_RANK || !shape) return t; /* rank 0: rejected by validation */
    t.rank = rank;
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
    return t;
}

fa_tensor fa_tensor_4d(void *data, fa_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return fa_tensor_contiguous(data, dtype, 4, shape);
}

fa_tensor fa_tensor_3d(void *data, fa_dtype dtype, int64_t d0, int64_t d1, int64_t d2)
{
    int64_t shape[3] = {d0, d1, d2};
    return fa_tensor_contiguous(data, dtype, 3, shape);
}

void fa_attn_desc_init(fa_attn_desc *desc)
{
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->dtype = FA_DTYPE_F16;
    desc->batch = 1;
    desc->seqlen_q = desc->seqlen_k = 1;
    desc->heads_q = desc->heads_kv = 1;
    desc->head_dim_qk = desc->head_dim_v = 64;
    desc->window_left = desc->window_right = -1;
    desc->num_splits = 0;
}
