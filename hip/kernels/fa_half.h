/*
 * fp32 -> 16-bit storage (fp16 or bf16 bits), round to nearest even: what the HIP kernels write for P (the B
 * operand of P V) and for O. Plain integer C, so the host test runs the very code the device runs (gfx90a and
 * gfx940 have no bf16 convert instruction; for fp16 v_cvt_f16_f32 would do, a later kernel may take it where the
 * compiler does not find it itself). NaN stays a quiet NaN, overflow goes to infinity, fp16 subnormals are kept.
 */
#ifndef FA_HALF_H
#define FA_HALF_H

#include "fa_mfma_layout.h" /* FA_HD */

#if !defined(__HIPCC_RTC__) /* hiprtc has the fixed-width types built in */
#include <stdint.h>
#endif

FA_HD uint32_t fa_f32_bits(float x)
{
    uint32_t u;
    __builtin_memcpy(&u, &x, sizeof u);
    return u;
}

FA_HD uint16_t fa_f32_to_bf16(float x)
{
    uint32_t u = fa_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN: keep it quiet */
    u += 0x7fffu + ((u >> 16) & 1u); /* ties to the even upper half */
    return (uint16_t)(u >> 16);
}

FA_HD uint16_t fa_f32_to_f16(float x)
{
    const uint32_t u = fa_f32_bits(x), a = u & 0x7fffffffu;
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (half an ulp past 65504): inf */
    if (a >= 0x38800000u) {                                  /* >= 2^-14: a normal fp16 */
        uint32_t r = a - 0x38000000u;                        /* rebias the exponent, 127 -> 15 */
        r += 0xfffu + ((r >> 13) & 1u);                      /* a carry into the exponent is the right result */
        return (uint16_t)(sign | (r >> 13));
    }
    if (a < 0x33000000u) return sign; /* below 2^-25, half the smallest subnormal: 0 (2^-25 itself ties to 0 below) */
    /* subnormal: the value in units of 2^-24 is m 2^(e - 126), m with its leading 1, shifted by 14..24 */
    const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++; /* 1023 + 1 = 0x400: the smallest normal, as it should */
    return (uint16_t)(sign | q);
}

/* The input type of an instruction's A/B operands. */
FA_HD uint16_t fa_f32_to_16(int bf16, float x) { return bf16 ? fa_f32_to_bf16(x) : fa_f32_to_f16(x); }

#endif
