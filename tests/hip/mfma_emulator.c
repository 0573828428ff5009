/*
 * The MFMA instructions as the ISA documents them, element by element. Sources: AMD Instinct MI200 (CDNA2) ISA
 * reference guide, chapter 7 "Matrix Arithmetic Instructions" (MI300 / CDNA3 guide: the same layouts); the AMD
 * Matrix Instruction Calculator's --get-register answers (github.com/ROCm/amd_matrix_instruction_calculator,
 * e.g. `matrix_calculator.py -a cdna2 -i v_mfma_f32_32x32x8bf16_1k -g -A -I i -K k`), which name, for a matrix
 * element, the VGPR, the lane and the bits holding it. That is the direction written here (element -> register),
 * the opposite of hip/kernels/fa_mfma_layout.h (lane, slot -> element), and in the tables' own terms:
 *
 *   v_mfma_f32_32x32x8{f16,bf16_1k}: one block, M = N = 32, K = 8
 *     A[i][k]  VGPR (k % 4) / 2 of the pair, bits [16 (k % 2), +16), lane i + 32 (k / 4)
 *     B[k][j]  VGPR (k % 4) / 2,             bits [16 (k % 2), +16), lane j + 32 (k / 4)
 *     D[i][j]  AccVGPR 4 (i / 8) + i % 4,                            lane j + 32 ((i / 4) % 2)
 *   v_mfma_f32_16x16x16{f16,bf16_1k}: one block, M = N = K = 16
 *     A[i][k]  VGPR (k % 4) / 2, bits [16 (k % 2), +16), lane i + 16 (k / 4)
 *     B[k][j]  VGPR (k % 4) / 2, bits [16 (k % 2), +16), lane j + 16 (k / 4)
 *     D[i][j]  AccVGPR i % 4,                            lane j + 16 (i / 4)
 *
 * (C is read where D is written.) The lab notes' 32x32x8f16 example (amd-lab-notes, matrix-cores) says the same
 * in words: "first 32 lanes of a[0] cover column 0 - last 32 lanes of a[0] cover column 4", "d[0:3] cover rows
 * 0-7 ... first 32 lanes of d[0] cover row 0 - last 32 lanes of d[0] cover row 4".
 */
#include "mfma_emulator.h"

#include <math.h>

typedef struct where {
    int reg, lane, half; /* register of the operand, lane, 16-bit half (A/B only) */
} where;

typedef struct op_table {
    int m, n, k, bf16;
    where (*a)(int i, int k);
    where (*b)(int k, int j);
    where (*d)(int i, int j);
    const char *name, *name_gfx940;
} op_table;

static where ab_32(int mn, int k) { return (where){(k % 4) / 2, mn + 32 * (k / 4), k % 2}; }
static where a_32(int i, int k) { return ab_32(i, k); }
static where b_32(int k, int j) { return ab_32(j, k); }
static where d_32(int i, int j) { return (where){4 * (i / 8) + i % 4, j + 32 * ((i / 4) % 2), 0}; }

static where ab_16(int mn, int k) { return (where){(k % 4) / 2, mn + 16 * (k / 4), k % 2}; }
static where a_16(int i, int k) { return ab_16(i, k); }
static where b_16(int k, int j) { return ab_16(j, k); }
static where d_16(int i, int j) { return (where){i % 4, j + 16 * (i / 4), 0}; }

static const op_table ops[] = {
    [MFMA_EMU_F32_32X32X8_F16] = {32, 32, 8, 0, a_32, b_32, d_32, "v_mfma_f32_32x32x8f16", "v_mfma_f32_32x32x8_f16"},
    [MFMA_EMU_F32_32X32X8_BF16_1K] = {32, 32, 8, 1, a_32, b_32, d_32, "v_mfma_f32_32x32x8bf16_1k",
                                      "v_mfma_f32_32x32x8_bf16"},
    [MFMA_EMU_F32_16X16X16_F16] = {16, 16, 16, 0, a_16, b_16, d_16, "v_mfma_f32_16x16x16f16",
                                   "v_mfma_f32_16x16x16_f16"},
    [MFMA_EMU_F32_16X16X16_BF16_1K] = {16, 16, 16, 1, a_16, b_16, d_16, "v_mfma_f32_16x16x16bf16_1k",
                                       "v_mfma_f32_16x16x16_bf16"},
};

const char *mfma_emu_mnemonic(mfma_emu_op op, int gfx940) { return gfx940 ? ops[op].name_gfx940 : ops[op].name; }

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits; exponent 0 is subnormal, 31 inf/NaN. */
static double f16_value(uint16_t h)
{
    const int e = (h >> 10) & 31, f = h & 1023;
    const double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return f ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp((double)f, -24);
    return s * ldexp((double)(1024 + f), e - 25);
}

/* bfloat16: the upper half of an fp32. */
static double bf16_value(uint16_t h)
{
    const int e = (h >> 7) & 255, f = h & 127;
    const double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 255) return f ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp((double)f, -133);
    return s * ldexp((double)(128 + f), e - 134);
}

double mfma_emu_input_value(mfma_emu_op op, uint16_t bits) { return ops[op].bf16 ? bf16_value(bits) : f16_value(bits); }

static float input_at(const op_table *t, const uint32_t r[2][MFMA_EMU_LANES], where w)
{
    const uint16_t bits = (uint16_t)(r[w.reg][w.lane] >> (16 * w.half));
    return (float)(t->bf16 ? bf16_value(bits) : f16_value(bits));
}

void mfma_emu_exec(mfma_emu_op op, const uint32_t a[2][MFMA_EMU_LANES], const uint32_t b[2][MFMA_EMU_LANES],
                   float acc[16][MFMA_EMU_LANES])
{
    const op_table *t = &ops[op];
    float A[32][16], B[16][32], D[32][32];
    for (int i = 0; i < t->m; i++)
        for (int k = 0; k < t->k; k++) A[i][k] = input_at(t, a, t->a(i, k));
    for (int k = 0; k < t->k; k++)
        for (int j = 0; j < t->n; j++) B[k][j] = input_at(t, b, t->b(k, j));
    for (int i = 0; i < t->m; i++)
        for (int j = 0; j < t->n; j++) {
            const where w = t->d(i, j);
            float s = acc[w.reg][w.lane];
            for (int k = 0; k < t->k; k++) s += A[i][k] * B[k][j]; /* the product is exact in fp32 */
            D[i][j] = s;
        }
    /* all of C is read before any of D is written, as D overwrites C in place */
    for (int i = 0; i < t->m; i++)
        for (int j = 0; j < t->n; j++) {
            const where w = t->d(i, j);
            acc[w.reg][w.lane] = D[i][j];
        }
}

void mfma_emu_shfl_xor(const float in[MFMA_EMU_LANES], int mask, float out[MFMA_EMU_LANES])
{
    for (int lane = 0; lane < MFMA_EMU_LANES; lane++) out[lane] = in[(lane ^ mask) & (MFMA_EMU_LANES - 1)];
}
