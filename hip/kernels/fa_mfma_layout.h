/*
 * Where each matrix element of an MFMA instruction lives in a wave64's registers: for lane L (0..63) and
 * element slot r, the (row, col) of the A operand (M x K), the B operand (K x N) and the C/D accumulator (M x N).
 * Plain C shared by the HIP kernels (device code) and the CPU emulation test (tests/hip/), which checks these
 * functions against its own copy of the ISA's layouts (tests/hip/mfma_emulator.c) on whole products and a whole
 * attention tile.
 *
 * Slots: A and B hold 4 16-bit values per lane in a VGPR pair; slot r is VGPR r / 2, bits [16 (r % 2), +16) (the
 * element r of the builtins' 4-vector). C/D hold M N / 64 fp32 values per lane; slot r is the r-th (Acc)VGPR of
 * the accumulator block (element r of the builtins' float vector).
 *
 * Instructions (one block each, so no CBSZ/ABID/BLGP broadcast is ever involved; both take 0):
 *   FA_MFMA_32X32X8_F16    v_mfma_f32_32x32x8f16      (gfx90a; gfx940 spells it v_mfma_f32_32x32x8_f16)
 *   FA_MFMA_32X32X8_BF16   v_mfma_f32_32x32x8bf16_1k  (gfx90a; gfx940 renames it v_mfma_f32_32x32x8_bf16)
 *   FA_MFMA_16X16X16_F16   v_mfma_f32_16x16x16f16     (gfx940: v_mfma_f32_16x16x16_f16)
 *   FA_MFMA_16X16X16_BF16  v_mfma_f32_16x16x16bf16_1k (gfx940: v_mfma_f32_16x16x16_bf16)
 * The bf16 "_1k" instructions take 4 bf16 per lane like the f16 ones and share their layouts (the older
 * 32x32x4bf16 / 16x16x8bf16, 2 bf16 per lane, are not used). gfx940's renaming is the same opcode with the same
 * operands: LLVM's assembler test llvm/test/MC/AMDGPU/mai-gfx940.s assembles v_mfma_f32_32x32x8bf16_1k for gfx940
 * and prints it as v_mfma_f32_32x32x8_bf16 with the same encoding.
 *
 * Sources of the layouts:
 *   - AMD Instinct MI200 (CDNA2) Instruction Set Architecture reference guide, chapter 7 "Matrix Arithmetic
 *     Instructions", and the MI300 (CDNA3) guide's chapter 7 (same layouts for these shapes).
 *   - AMD Matrix Instruction Calculator (github.com/ROCm/amd_matrix_instruction_calculator):
 *       matrix_calculator.py -a cdna2 -i v_mfma_f32_32x32x8bf16_1k --register-layout -A / -B / -D
 *     (and -a cdna3 for v_mfma_f32_32x32x8_bf16; likewise the f16 and 16x16x16 instructions).
 *   - AMD lab notes "AMD matrix cores" (GPUOpen / ROCm blogs; code in github.com/amd/amd-lab-notes,
 *     matrix-cores/src/mfma_fp32_32x32x8fp16.cpp and mfma_fp32_16x16x16fp16.cpp), which states them in words:
 *       32x32x8: A's first 32 lanes hold columns 0-3 (slots 0-3) of rows 0-31, the last 32 lanes columns 4-7;
 *                B likewise by rows; D's registers 4b..4b+3 cover rows 8b..8b+7: the first 32 lanes rows
 *                8b..8b+3, the last 32 lanes rows 8b+4..8b+7, column = lane % 32.
 *       16x16x16: A's lanes 16g..16g+15 hold columns 4g..4g+3 of rows 0-15; B likewise by rows; D's register r
 *                holds rows r, 4 + r, 8 + r, 12 + r for lane groups 0..3, column = lane % 16.
 *
 * One property the attention tile relies on (fa_wave_tile.h): stack the accumulators of several MFMAs along the
 * rows (block b holds rows b M ..); then lane L's slots 4c..4c+3 hold rows c K + k and the column that lane L's B
 * slots 0..3 hold as rows k of the K-row chunk c. So S^T = K Q^T computed in the accumulator is, four slots at a
 * time, P^T as the B operand of the next MFMA, with no data movement (test_mfma_emulation.c checks this with these
 * functions and end to end through the emulator).
 */
#ifndef FA_MFMA_LAYOUT_H
#define FA_MFMA_LAYOUT_H

/* Host C: static inline; HIP (hipcc, or hiprtc at plan time): the same functions on host and device. */
#if defined(__HIPCC__) || defined(__HIPCC_RTC__)
#define FA_HD static inline __host__ __device__
#else
#define FA_HD static inline
#endif

/* ROCm 5's hiprtc has no <stdint.h>; its built-in runtime header declares uint32_t and int64_t but not uint16_t
   (unsigned short there as everywhere, so a hiprtc that does declare it sees the same typedef again). */
#if defined(__HIPCC_RTC__)
typedef unsigned short uint16_t;
#endif

#define FA_WAVE 64 /* CDNA wavefront size: every layout below is over 64 lanes */

typedef enum fa_mfma_instr {
    FA_MFMA_32X32X8_F16 = 0,
    FA_MFMA_32X32X8_BF16 = 1,
    FA_MFMA_16X16X16_F16 = 2,
    FA_MFMA_16X16X16_BF16 = 3
} fa_mfma_instr;
#define FA_MFMA_INSTR_COUNT 4

typedef struct fa_mfma_rc {
    int row, col;
} fa_mfma_rc;

FA_HD int fa_mfma_is_32(fa_mfma_instr in) { return in == FA_MFMA_32X32X8_F16 || in == FA_MFMA_32X32X8_BF16; }
FA_HD int fa_mfma_is_bf16(fa_mfma_instr in) { return in == FA_MFMA_32X32X8_BF16 || in == FA_MFMA_16X16X16_BF16; }

/* Shape: D (M x N) = A (M x K) B (K x N) + C. */
FA_HD int fa_mfma_m(fa_mfma_instr in) { return fa_mfma_is_32(in) ? 32 : 16; }
FA_HD int fa_mfma_n(fa_mfma_instr in) { return fa_mfma_is_32(in) ? 32 : 16; }
FA_HD int fa_mfma_k(fa_mfma_instr in) { return fa_mfma_is_32(in) ? 8 : 16; }
/* Slots per lane: A and B 4 (16-bit), C/D M N / 64 (fp32). */
#define FA_MFMA_AB_SLOTS 4
FA_HD int fa_mfma_c_slots(fa_mfma_instr in) { return fa_mfma_is_32(in) ? 16 : 4; }

/* A[row][col], row in [0, M), col = k in [0, K). Both shapes: row = lane % M, k = 4 (lane / M) + r. */
FA_HD fa_mfma_rc fa_mfma_a_elem(fa_mfma_instr in, int lane, int r)
{
    fa_mfma_rc e;
    if (fa_mfma_is_32(in)) {
        e.row = lane % 32;
        e.col = 4 * (lane / 32) + r;
    } else {
        e.row = lane % 16;
        e.col = 4 * (lane / 16) + r;
    }
    return e;
}

/* B[row][col], row = k in [0, K), col in [0, N): the transpose of A's pattern (k = 4 (lane / N) + r). */
FA_HD fa_mfma_rc fa_mfma_b_elem(fa_mfma_instr in, int lane, int r)
{
    fa_mfma_rc e;
    if (fa_mfma_is_32(in)) {
        e.row = 4 * (lane / 32) + r;
        e.col = lane % 32;
    } else {
        e.row = 4 * (lane / 16) + r;
        e.col = lane % 16;
    }
    return e;
}

/* C/D[row][col]: col = lane % N; 32x32: row = 8 (r / 4) + 4 (lane / 32) + r % 4; 16x16: row = 4 (lane / 16) + r. */
FA_HD fa_mfma_rc fa_mfma_c_elem(fa_mfma_instr in, int lane, int r)
{
    fa_mfma_rc e;
    if (fa_mfma_is_32(in)) {
        e.row = 8 * (r / 4) + 4 * (lane / 32) + r % 4;
        e.col = lane % 32;
    } else {
        e.row = 4 * (lane / 16) + r;
        e.col = lane % 16;
    }
    return e;
}

/*
 * The lanes holding one accumulator column (one attention row in fa_wave_tile.h) are those equal modulo N: a
 * butterfly over xor masks N, 2N, .., 32 reduces a value across them (one step for 32x32, two for 16x16).
 */
FA_HD int fa_mfma_col_lane_stride(fa_mfma_instr in) { return fa_mfma_n(in); }

/*
 * An A operand read from a staged 16-bit tile t whose A element (i, j) is t[i rs + j cs]: rows rb M.. and k
 * columns ks K.. of A. Unrolled on the device: the caller's a[] must stay in registers.
 */
FA_HD void fa_mfma_frag_a_strided(fa_mfma_instr in, int lane, const uint16_t *t, int rs, int cs, int rb, int ks,
                                  uint16_t a[FA_MFMA_AB_SLOTS])
{
    const int m = fa_mfma_m(in), k = fa_mfma_k(in);
#if defined(__HIPCC__) || defined(__HIPCC_RTC__)
#pragma unroll
#endif
    for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
        const fa_mfma_rc e = fa_mfma_a_elem(in, lane, r);
        a[r] = t[(rb * m + e.row) * rs + (ks * k + e.col) * cs];
    }
}

/*
 * From a row-major tile t (row stride ld): A = t, rows rb M.., columns ks K.. The forward's K (fa_wave_tile.h)
 * and the backward's Q, dO, K and V row-side tiles (fa_wave_bwd_tile.h) are this read.
 */
FA_HD void fa_mfma_frag_a(fa_mfma_instr in, int lane, const uint16_t *t, int ld, int rb, int ks,
                          uint16_t a[FA_MFMA_AB_SLOTS])
{
    fa_mfma_frag_a_strided(in, lane, t, ld, 1, rb, ks, a);
}

/*
 * Transposed from a row-major tile t: A = t^T restricted to columns db M.. of t (A's rows) and rows c K.. (A's
 * k), i.e. slot r of this lane is t[(c K + k) ld + db M + row]. The forward's V^T (fa_wave_tile.h) and the
 * backward's dO^T, Q^T and K^T (fa_wave_bwd_tile.h) are this read.
 */
FA_HD void fa_mfma_frag_a_t(fa_mfma_instr in, int lane, const uint16_t *t, int ld, int db, int c,
                            uint16_t a[FA_MFMA_AB_SLOTS])
{
    fa_mfma_frag_a_strided(in, lane, t, 1, ld, db, c, a);
}

#endif
