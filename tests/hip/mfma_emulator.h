/*
 * A CPU emulator of the CDNA MFMA instructions the HIP kernels use, on a wave64's registers, written from the
 * ISA's own statement of where each matrix element lives (see mfma_emulator.c) and sharing nothing with
 * hip/kernels/fa_mfma_layout.h: the test loads operands with the header's functions, executes them here and
 * compares whole products and a whole attention tile against float64, so a wrong layout function cannot agree
 * with the emulator by construction.
 *
 * Registers are held as the hardware holds them: A and B are a VGPR pair, [vgpr][lane] 32-bit words with two
 * 16-bit values each; C/D are [accvgpr][lane] fp32.
 */
#ifndef MFMA_EMULATOR_H
#define MFMA_EMULATOR_H

#include <stdint.h>

#define MFMA_EMU_LANES 64

typedef enum mfma_emu_op {
    MFMA_EMU_F32_32X32X8_F16 = 0,     /* v_mfma_f32_32x32x8f16 */
    MFMA_EMU_F32_32X32X8_BF16_1K = 1, /* v_mfma_f32_32x32x8bf16_1k (gfx940: v_mfma_f32_32x32x8_bf16) */
    MFMA_EMU_F32_16X16X16_F16 = 2,    /* v_mfma_f32_16x16x16f16 */
    MFMA_EMU_F32_16X16X16_BF16_1K = 3 /* v_mfma_f32_16x16x16bf16_1k (gfx940: v_mfma_f32_16x16x16_bf16) */
} mfma_emu_op;

/* The ISA mnemonic (gfx940 spelling when gfx940 is non-zero). */
const char *mfma_emu_mnemonic(mfma_emu_op op, int gfx940);

/* The value of a 16-bit input of the op's type (fp16 or bf16), exactly. */
double mfma_emu_input_value(mfma_emu_op op, uint16_t bits);

/*
 * D = A B + C over the wave, D written over C. a, b: the A and B VGPR pairs; acc: C in, D out (16 AccVGPRs for
 * 32x32, the first 4 for 16x16). Products of 16-bit inputs are exact in fp32; they are added to the accumulator
 * one k at a time in fp32 (the ISA guide does not specify the internal order; the tests' bounds allow any order
 * of fp32 additions).
 */
void mfma_emu_exec(mfma_emu_op op, const uint32_t a[2][MFMA_EMU_LANES], const uint32_t b[2][MFMA_EMU_LANES],
                   float acc[16][MFMA_EMU_LANES]);

/* __shfl_xor(v, mask) over a full wave64: out[lane] = in[lane ^ mask]. */
void mfma_emu_shfl_xor(const float in[MFMA_EMU_LANES], int mask, float out[MFMA_EMU_LANES]);

#endif
