/*
 * The device side of the cross-lane steps between fa_wave_tile.h's phases: one MFMA over the wave from per-lane
 * slots (the builtins of gfx90a and gfx94x), and the reductions over the lanes that hold one accumulator column.
 * HIP only; the CPU test replaces both with tests/hip/mfma_emulator.c.
 */
#ifndef FA_MFMA_DEVICE_H
#define FA_MFMA_DEVICE_H

#include "fa_mfma_layout.h"

#if !defined(__HIPCC_RTC__) /* hiprtc has the fixed-width types built in */
#include <stdint.h>
#endif

#if defined(__HIP_DEVICE_COMPILE__) && !(defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || \
                                         defined(__gfx942__))
#error "fa_mfma_device.h: the MFMA kernels are built for gfx90a and gfx94x (the _1k bf16 instructions)"
#endif

typedef short fa_v4i16 __attribute__((ext_vector_type(4)));
typedef _Float16 fa_v4f16 __attribute__((ext_vector_type(4)));
typedef float fa_v4f32 __attribute__((ext_vector_type(4)));
typedef float fa_v16f32 __attribute__((ext_vector_type(16)));

/*
 * acc (fa_mfma_c_slots(in) floats) += A B with A and B as 4 slots per lane (fa_mfma_layout.h). Slot r is the
 * builtin vector's element r, i.e. VGPR r / 2, bits [16 (r % 2), +16). `in` is a compile-time constant at every
 * call once inlined, so the switch folds and the arrays stay in registers.
 */
static inline __device__ void fa_mfma(fa_mfma_instr in, const uint16_t a[4], const uint16_t b[4], float *acc)
{
#if defined(__HIP_DEVICE_COMPILE__)
    fa_v4i16 ai, bi;
    fa_v4f16 ah, bh;
    for (int r = 0; r < 4; r++) ai[r] = (short)a[r], bi[r] = (short)b[r];
    __builtin_memcpy(&ah, &ai, sizeof ah);
    __builtin_memcpy(&bh, &bi, sizeof bh);
    if (fa_mfma_is_32(in)) {
        fa_v16f32 c;
        for (int r = 0; r < 16; r++) c[r] = acc[r];
        c = fa_mfma_is_bf16(in) ? __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(ai, bi, c, 0, 0, 0)
                                : __builtin_amdgcn_mfma_f32_32x32x8f16(ah, bh, c, 0, 0, 0);
        for (int r = 0; r < 16; r++) acc[r] = c[r];
    } else {
        fa_v4f32 c;
        for (int r = 0; r < 4; r++) c[r] = acc[r];
        c = fa_mfma_is_bf16(in) ? __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(ai, bi, c, 0, 0, 0)
                                : __builtin_amdgcn_mfma_f32_16x16x16f16(ah, bh, c, 0, 0, 0);
        for (int r = 0; r < 4; r++) acc[r] = c[r];
    }
#else
    (void)in, (void)a, (void)b, (void)acc;
#endif
}

/* Max and sum over the lanes of one accumulator column: xor butterfly over N, 2N, .., 32 (ds_swizzle/DPP). */
static inline __device__ float fa_col_max(fa_mfma_instr in, float v)
{
    for (int off = fa_mfma_col_lane_stride(in); off < FA_WAVE; off <<= 1) v = fmaxf(v, __shfl_xor(v, off));
    return v;
}

static inline __device__ float fa_col_sum(fa_mfma_instr in, float v)
{
    for (int off = fa_mfma_col_lane_stride(in); off < FA_WAVE; off <<= 1) v += __shfl_xor(v, off);
    return v;
}

#endif
