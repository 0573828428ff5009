/* fp16 / bf16 <-> fp32 conversion for the CPU kernels (round to nearest even, NaN and inf preserved). */
#ifndef CPU_CONVERT_H
#define CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "flashport.h"

static inline float fa_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t fa_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float fa_bf16_to_f32(uint16_t h) { return fa_bits_to_f32((uint32_t)h << 16); }

static inline uint16_t fa_f32_to_bf16(float f)
{
    uint32_t u = fa_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float fa_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return fa_bits_to_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return fa_bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t fa_f32_to_f16(float f)
{
    uint32_t u = fa_f32_to_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* subnormal or zero in fp16: round a * 2^24 to an integer, ties to even */
        float v = fa_bits_to_f32(a) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
}

static inline float fa_load_elem(const void *base, int64_t i, fa_dtype dt)
{
    switch (dt) {
    case FA_DTYPE_F16: return fa_f16_to_f32(((const uint16_t *)base)[i]);
    case FA_DTYPE_BF16: return fa_bf16_to_f32(((const uint16_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

static inline void fa_store_elem(void *base, int64_t i, fa_dtype dt, float v)
{
    switch (dt) {
    case FA_DTYPE_F16: ((uint16_t *)base)[i] = fa_f32_to_f16(v); break;
    case FA_DTYPE_BF16: ((uint16_t *)base)[i] = fa_f32_to_bf16(v); break;
    default: ((float *)base)[i] = v; break;
    }
}

/* v rounded to the dtype's precision, as a float. */
static inline float fa_round_to_dtype(float v, fa_dtype dt)
{
    switch (dt) {
    case FA_DTYPE_F16: return fa_f16_to_f32(fa_f32_to_f16(v));
    case FA_DTYPE_BF16: return fa_bf16_to_f32(fa_f32_to_bf16(v));
    default: return v;
    }
}

/* n contiguous elements to fp32, multiplied by mul (folds the softmax scale into Q). */
static inline void fa_load_row(const void *src, fa_dtype dt, int64_t n, float mul, float *dst)
{
    if (dt == FA_DTYPE_F32) {
        const float *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = s[i] * mul;
    } else if (dt == FA_DTYPE_BF16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = fa_bf16_to_f32(s[i]) * mul;
    } else {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = fa_f16_to_f32(s[i]) * mul;
    }
}

static inline void fa_store_row(void *dst, fa_dtype dt, int64_t n, float mul, const float *src)
{
    if (dt == FA_DTYPE_F32) {
        /* its own loop so it vectorises: element by element through the switch it stayed scalar stores */
        float *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = src[i] * mul;
        return;
    }
    for (int64_t i = 0; i < n; i++) fa_store_elem(dst, i, dt, src[i] * mul);
}

#endif
