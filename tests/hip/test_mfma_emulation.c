/*
 * The HIP backend's MFMA layouts (hip/kernels/fa_mfma_layout.h) and its wave-level attention tile
 * (hip/kernels/fa_wave_tile.h), run on the CPU: operands are loaded and results stored with the header's
 * functions, the instructions are executed by an emulator written from the ISA's own layout tables
 * (mfma_emulator.c, which shares nothing with the header), and the results are compared with float64:
 *   - each layout covers its matrix exactly once, the accumulator columns sit in the lanes the row reductions
 *     assume, and the accumulator's groups of four are the next B operand (the P^T trick);
 *   - the header's fp32 -> fp16/bf16 rounding (the kernels' P and O) is round-to-nearest-even;
 *   - each instruction's whole-tile product, chained over several K steps on a random C, within the fp32
 *     accumulation bound of the float64 product (and within input rounding + accumulation of the unrounded
 *     one); a deliberately transposed layout must fail the same check;
 *   - whole attention tiles (one wave's query rows against several K/V tiles, head dims 64 and 128, causal,
 *     sliding window, rows that see no key) against float64 softmax(Q K^T) V by the conformance rule:
 *     max error <= 2 x that of a naive same-precision implementation + the dtype's rounding floor.
 *   - the backward kernels' blocks over hip/kernels/fa_wave_bwd_tile.h, both passes, against float64 dQ, dK, dV: max
 *     error <= 3 x that of a naive same-precision backward + the dtype's floor; a swapped P chunk must fail.
 * No AMD GPU runs here: what this proves is that the kernels' register bookkeeping agrees with the ISA's
 * documented layouts, not that the hardware behaves as documented.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fa_half.h"
#include "fa_mfma_layout.h"
#include "fa_wave_bwd_tile.h"
#include "fa_wave_tile.h"
#include "mfma_emulator.h"
#include "test_random.h"

static const fa_mfma_instr all_instrs[FA_MFMA_INSTR_COUNT] = {FA_MFMA_32X32X8_F16, FA_MFMA_32X32X8_BF16,
                                                               FA_MFMA_16X16X16_F16, FA_MFMA_16X16X16_BF16};

static mfma_emu_op emu_op(fa_mfma_instr in)
{
    switch (in) {
    case FA_MFMA_32X32X8_F16: return MFMA_EMU_F32_32X32X8_F16;
    case FA_MFMA_32X32X8_BF16: return MFMA_EMU_F32_32X32X8_BF16_1K;
    case FA_MFMA_16X16X16_F16: return MFMA_EMU_F32_16X16X16_F16;
    default: return MFMA_EMU_F32_16X16X16_BF16_1K;
    }
}

static const char *instr_name(fa_mfma_instr in) { return mfma_emu_mnemonic(emu_op(in), 0); }
static double value16(fa_mfma_instr in, uint16_t h) { return mfma_emu_input_value(emu_op(in), h); }

/*
 * One MFMA over the wave: per-lane slots as the kernels hold them -> VGPRs as the hardware holds them (slot r of
 * a 4-vector of 16-bit values is VGPR r / 2, bits [16 (r % 2), +16): the builtins' vector in a register pair,
 * little-endian) -> the emulator -> back into each lane's accumulator slots.
 */
static void wave_mfma(fa_mfma_instr in, uint16_t a[FA_WAVE][4], uint16_t b[FA_WAVE][4], float *acc[FA_WAVE])
{
    uint32_t va[2][FA_WAVE] = {{0}}, vb[2][FA_WAVE] = {{0}};
    float regs[16][FA_WAVE] = {{0}};
    const int c = fa_mfma_c_slots(in);
    for (int lane = 0; lane < FA_WAVE; lane++) {
        for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
            va[r / 2][lane] |= (uint32_t)a[lane][r] << (16 * (r % 2));
            vb[r / 2][lane] |= (uint32_t)b[lane][r] << (16 * (r % 2));
        }
        for (int r = 0; r < c; r++) regs[r][lane] = acc[lane][r];
    }
    mfma_emu_exec(emu_op(in), (const uint32_t(*)[FA_WAVE])va, (const uint32_t(*)[FA_WAVE])vb, regs);
    for (int lane = 0; lane < FA_WAVE; lane++)
        for (int r = 0; r < c; r++) acc[lane][r] = regs[r][lane];
}

/* A random 16-bit input, never zero or tiny: |x| in [1/64, 1), rounded; *unrounded (if given) gets x. */
static uint16_t random16(fa_mfma_instr in, double *unrounded)
{
    double x;
    do x = rng_range(-1.0, 1.0);
    while (fabs(x) < 1.0 / 64.0);
    if (unrounded) *unrounded = x;
    return fa_f32_to_16(fa_mfma_is_bf16(in), (float)x);
}

/* ------------------------------------------------------------------------------------------ layout structure */

typedef fa_mfma_rc (*layout_fn)(fa_mfma_instr in, int lane, int r);

/* Every element of a rows x cols matrix held by exactly one (lane, slot). */
static void expect_cover(fa_mfma_instr in, layout_fn f, int slots, int rows, int cols, const char *what)
{
    int seen[32 * 32] = {0};
    assert_int_equal(FA_WAVE * slots, rows * cols);
    for (int lane = 0; lane < FA_WAVE; lane++)
        for (int r = 0; r < slots; r++) {
            fa_mfma_rc e = f(in, lane, r);
            if (e.row < 0 || e.row >= rows || e.col < 0 || e.col >= cols)
                fail_msg("%s %s: lane %d slot %d -> (%d, %d) outside %dx%d", instr_name(in), what, lane, r, e.row,
                         e.col, rows, cols);
            if (seen[e.row * cols + e.col]++)
                fail_msg("%s %s: (%d, %d) held twice", instr_name(in), what, e.row, e.col);
        }
}

static void test_layouts_cover(void **state)
{
    (void)state;
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++) {
        fa_mfma_instr in = all_instrs[t];
        const int m = fa_mfma_m(in), n = fa_mfma_n(in), k = fa_mfma_k(in), stride = fa_mfma_col_lane_stride(in);
        expect_cover(in, fa_mfma_a_elem, FA_MFMA_AB_SLOTS, m, k, "A");
        expect_cover(in, fa_mfma_b_elem, FA_MFMA_AB_SLOTS, k, n, "B");
        expect_cover(in, fa_mfma_c_elem, fa_mfma_c_slots(in), m, n, "C");
        /* the row reductions' claim: a lane's accumulator is one column, lane % stride, and stride * 2^s = 64 */
        for (int lane = 0; lane < FA_WAVE; lane++)
            for (int r = 0; r < fa_mfma_c_slots(in); r++) assert_int_equal(fa_mfma_c_elem(in, lane, r).col, lane % stride);
        assert_int_equal(stride, n);
        assert_int_equal(FA_WAVE % stride, 0);
    }
}

/*
 * fa_wave_tile.h's P trick, stated on the layout functions: in S^T (M keys x N queries per block), lane L's
 * accumulator slots 4c..4c+3 (block 4c / C) hold keys c K + (B rows of L's slots 0..3) of B's column, i.e. they
 * are the B operand of key chunk c. The attention test checks the same end to end through the emulator.
 */
static void test_layout_p_reuse(void **state)
{
    (void)state;
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++) {
        fa_mfma_instr in = all_instrs[t];
        const int m = fa_mfma_m(in), k = fa_mfma_k(in), c = fa_mfma_c_slots(in);
        const int bkv = FA_WT_BKV_MAX, chunks = bkv / k;
        for (int ch = 0; ch < chunks; ch++)
            for (int lane = 0; lane < FA_WAVE; lane++)
                for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
                    const int slot = FA_MFMA_AB_SLOTS * ch + r; /* slot in the tile's S^T (blocks of c slots) */
                    const fa_mfma_rc acc = fa_mfma_c_elem(in, lane, slot % c), bop = fa_mfma_b_elem(in, lane, r);
                    const int acc_key = (slot / c) * m + acc.row, b_key = ch * k + bop.row;
                    if (acc_key != b_key || acc.col != bop.col)
                        fail_msg("%s: chunk %d lane %d slot %d: accumulator (key %d, query %d), B wants (%d, %d)",
                                 instr_name(in), ch, lane, r, acc_key, acc.col, b_key, bop.col);
                }
    }
}

/* ---------------------------------------------------------------------------------------------- rounding */

static void test_half_rounding(void **state)
{
    (void)state;
    for (int bf = 0; bf < 2; bf++) {
        const fa_mfma_instr in = bf ? FA_MFMA_32X32X8_BF16 : FA_MFMA_32X32X8_F16;
        /* every finite 16-bit value comes back as itself */
        for (uint32_t h = 0; h < 65536; h++) {
            const double x = value16(in, (uint16_t)h);
            if (!isfinite(x)) continue;
            if (fa_f32_to_16(bf, (float)x) != h) fail_msg("%s: %#x -> %.9g -> %#x", bf ? "bf16" : "fp16", h, x,
                                                          fa_f32_to_16(bf, (float)x));
        }
        /* random fp32 values over the finite range, subnormals included: the nearest, ties to even (overflow to
           inf is checked at the end) */
        for (int i = 0; i < 200000; i++) {
            const double mag = ldexp(rng_unit() + 0.5, (int)floor(rng_range(bf ? -135.0 : -27.0, bf ? 126.0 : 15.0)));
            float x = (float)(rng_unit() < 0.5 ? -mag : mag);
            if (i % 4 == 0) { /* an exact tie between two 16-bit values */
                uint16_t h = fa_f32_to_16(bf, x);
                double lo = value16(in, h), hi = value16(in, (uint16_t)(h + 1));
                if (isfinite(hi) && (float)((lo + hi) / 2) == (lo + hi) / 2) x = (float)((lo + hi) / 2);
            }
            const uint16_t h = fa_f32_to_16(bf, x);
            const double v = value16(in, h), err = fabs(v - x);
            for (int dlt = -1; dlt <= 1; dlt += 2) {
                const uint16_t nb = (uint16_t)(h + dlt);
                if ((nb ^ h) & 0x8000) continue; /* past zero: the sign changed */
                const double w = value16(in, nb);
                if (!isfinite(w)) continue;
                if (fabs(w - x) < err || (fabs(w - x) == err && (h & 1)))
                    fail_msg("%s: %.9g -> %#x (%.9g), but %#x (%.9g) is nearer or the even tie", bf ? "bf16" : "fp16",
                             (double)x, h, v, nb, w);
            }
        }
        assert_int_equal(fa_f32_to_16(bf, INFINITY), bf ? 0x7f80 : 0x7c00);
        assert_true(isnan(value16(in, fa_f32_to_16(bf, NAN))));
    }
    assert_int_equal(fa_f32_to_f16(65520.0f), 0x7c00); /* half an ulp past fp16's largest rounds up to inf */
    assert_int_equal(fa_f32_to_f16(65519.0f), 0x7bff);
}

/* ---------------------------------------------------------------------------------------------- products */

typedef struct layout_set {
    layout_fn a, b, c;
} layout_set;

static fa_mfma_rc c_transposed(fa_mfma_instr in, int lane, int r)
{
    fa_mfma_rc e = fa_mfma_c_elem(in, lane, r);
    return (fa_mfma_rc){e.col, e.row};
}

static fa_mfma_rc a_transposed(fa_mfma_instr in, int lane, int r) /* square A only (16x16x16) */
{
    fa_mfma_rc e = fa_mfma_a_elem(in, lane, r);
    return (fa_mfma_rc){e.col, e.row};
}

typedef struct product_result {
    int bad;      /* elements outside the bound */
    double worst; /* largest error / bound */
} product_result;

/*
 * D = A B + C for A M x (K steps), B (K steps) x N, C random fp32: C loaded with lay->c, `steps` MFMAs with A and B
 * fragments loaded by lay->a / lay->b, D stored with lay->c. Bounds: against the float64 product of the rounded
 * inputs, (K steps + 2) fp32 roundings of sum |terms| (any order of fp32 additions; the products are exact);
 * against the unrounded inputs, that plus 2u + u^2 of sum |a b| (u: the input type's unit roundoff).
 */
static product_result product_check(fa_mfma_instr in, const layout_set *lay, int steps)
{
    const int m = fa_mfma_m(in), n = fa_mfma_n(in), k = fa_mfma_k(in), kt = k * steps, cs = fa_mfma_c_slots(in);
    const double u = fa_mfma_is_bf16(in) ? 0x1.0p-8 : 0x1.0p-11;
    uint16_t *A = malloc(sizeof(uint16_t) * (size_t)(m * kt)), *B = malloc(sizeof(uint16_t) * (size_t)(kt * n));
    double *Ax = malloc(sizeof(double) * (size_t)(m * kt)), *Bx = malloc(sizeof(double) * (size_t)(kt * n));
    float C0[32 * 32], D[32 * 32];
    float accs[FA_WAVE][16];
    float *acc[FA_WAVE];
    uint16_t fa[FA_WAVE][4], fb[FA_WAVE][4];
    assert_non_null(A), assert_non_null(B), assert_non_null(Ax), assert_non_null(Bx);
    for (int i = 0; i < m * kt; i++) A[i] = random16(in, &Ax[i]);
    for (int i = 0; i < kt * n; i++) B[i] = random16(in, &Bx[i]);
    for (int i = 0; i < m * n; i++) C0[i] = (float)rng_range(-2.0, 2.0), D[i] = NAN;

    for (int lane = 0; lane < FA_WAVE; lane++) {
        acc[lane] = accs[lane];
        for (int r = 0; r < cs; r++) {
            const fa_mfma_rc e = lay->c(in, lane, r);
            accs[lane][r] = C0[e.row * n + e.col];
        }
    }
    for (int s = 0; s < steps; s++) {
        for (int lane = 0; lane < FA_WAVE; lane++)
            for (int r = 0; r < FA_MFMA_AB_SLOTS; r++) {
                const fa_mfma_rc ea = lay->a(in, lane, r), eb = lay->b(in, lane, r);
                fa[lane][r] = A[ea.row * kt + s * k + ea.col];
                fb[lane][r] = B[(s * k + eb.row) * n + eb.col];
            }
        wave_mfma(in, fa, fb, acc);
    }
    for (int lane = 0; lane < FA_WAVE; lane++)
        for (int r = 0; r < cs; r++) {
            const fa_mfma_rc e = lay->c(in, lane, r);
            D[e.row * n + e.col] = accs[lane][r];
        }

    product_result res = {0, 0.0};
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double want = C0[i * n + j], sum_abs = fabs(want), raw = C0[i * n + j], raw_abs = 0.0;
            for (int x = 0; x < kt; x++) {
                const double t = value16(in, A[i * kt + x]) * value16(in, B[x * n + j]);
                want += t, sum_abs += fabs(t);
                raw += Ax[i * kt + x] * Bx[x * n + j], raw_abs += fabs(Ax[i * kt + x] * Bx[x * n + j]);
            }
            const double got = D[i * n + j], tol = sum_abs * (double)(kt + 2) * 0x1.0p-24;
            const double tol_raw = tol + raw_abs * (2.0 * u + u * u);
            const double ratio = fmax(fabs(got - want) / tol, fabs(got - raw) / tol_raw);
            if (!(ratio <= 1.0)) res.bad++; /* NaN (an element never stored) counts */
            if (!(ratio <= res.worst)) res.worst = ratio;
        }
    free(A), free(B), free(Ax), free(Bx);
    return res;
}

static void test_products(void **state)
{
    (void)state;
    const layout_set header = {fa_mfma_a_elem, fa_mfma_b_elem, fa_mfma_c_elem};
    const int steps[] = {1, 8};
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++)
        for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
            const fa_mfma_instr in = all_instrs[t];
            const product_result r = product_check(in, &header, steps[s]);
            printf("  %-28s %dx%dx%-3d worst error / bound %.3f\n", instr_name(in), fa_mfma_m(in), fa_mfma_n(in),
                   fa_mfma_k(in) * steps[s], r.worst);
            if (r.bad) fail_msg("%s, %d steps: %d of %d elements outside the bound (worst %.3g x)", instr_name(in),
                                steps[s], r.bad, fa_mfma_m(in) * fa_mfma_n(in), r.worst);
        }
}

/*
 * The check can fail: a transposed C (every shape) or A (square ones) must put most elements out of bounds. (What a
 * product cannot see is the same permutation of k in A and B: the hardware would not see it either, but P^T taken
 * from the accumulator would then meet V's keys in another order. test_layout_p_reuse and the attention tile catch
 * that: swapping k slots 0/1 in both A and B passes here and fails there, at 385 times the attention bound.)
 */
static void test_products_negative(void **state)
{
    (void)state;
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++) {
        const fa_mfma_instr in = all_instrs[t];
        const int elems = fa_mfma_m(in) * fa_mfma_n(in);
        const layout_set wrong_c = {fa_mfma_a_elem, fa_mfma_b_elem, c_transposed};
        product_result r = product_check(in, &wrong_c, 4);
        printf("  %-28s transposed C: %d of %d elements fail\n", instr_name(in), r.bad, elems);
        if (r.bad < elems / 2) fail_msg("%s: a transposed C layout passed (%d bad)", instr_name(in), r.bad);
        if (fa_mfma_m(in) == fa_mfma_k(in)) {
            const layout_set wrong_a = {a_transposed, fa_mfma_b_elem, fa_mfma_c_elem};
            r = product_check(in, &wrong_a, 4);
            printf("  %-28s transposed A: %d of %d elements fail\n", instr_name(in), r.bad, elems);
            if (r.bad < elems / 2) fail_msg("%s: a transposed A layout passed (%d bad)", instr_name(in), r.bad);
        }
    }
}

/* ---------------------------------------------------------------------------------------- attention tile */

typedef struct attn_case {
    int dqk, dv, sq, sk, window_left, window_right, q0;
    const char *what;
    float softcap, alibi; /* 0: none */
} attn_case;

/* The cross-lane reduction of a row's value: the butterfly the kernels run with __shfl_xor. */
static void row_reduce(const fa_wt_desc *d, float v[FA_WAVE], int is_max)
{
    float other[FA_WAVE];
    for (int off = fa_mfma_col_lane_stride(d->instr); off < FA_WAVE; off <<= 1) {
        mfma_emu_shfl_xor(v, off, other);
        for (int lane = 0; lane < FA_WAVE; lane++) v[lane] = is_max ? fmaxf(v[lane], other[lane]) : v[lane] + other[lane];
    }
}

/*
 * One wave through fa_wave_tile.h's phases, in the order a kernel runs them, the 64 lanes one after the other
 * within each phase. q (sq x dqk), k (sk x dqk), v (sk x dv) row-major; out (N x dv) and lse (N) for the wave's
 * rows q0 .. q0 + N - 1. Every tile is run, also those wholly masked for the wave (a kernel may skip them).
 */
static void wave_attention(const fa_wt_desc *d, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                           uint16_t *out, float *lse)
{
    const int n = fa_wt_rows(d), m = fa_mfma_m(d->instr), kk = fa_mfma_k(d->instr);
    fa_wt_lane *st = calloc(FA_WAVE, sizeof *st);
    uint16_t *qt = calloc((size_t)(n * d->dqk), sizeof *qt), *kt = malloc(sizeof *kt * (size_t)(d->bkv * d->dqk));
    uint16_t *vt = malloc(sizeof *vt * (size_t)(d->bkv * d->dv)), fa[FA_WAVE][4], fb[FA_WAVE][4];
    float *acc[FA_WAVE], part[FA_WAVE];
    assert_non_null(st), assert_non_null(qt), assert_non_null(kt), assert_non_null(vt);
    for (int i = 0; i < n; i++) /* the wave's query rows, zeros past sq (as the kernel stages them) */
        if (d->q0 + i < d->sq) memcpy(qt + i * d->dqk, q + (size_t)(d->q0 + i) * d->dqk, sizeof *qt * (size_t)d->dqk);

    for (int lane = 0; lane < FA_WAVE; lane++) fa_wt_init(d, &st[lane]);
    for (int kv0 = 0; kv0 < d->sk; kv0 += d->bkv) {
        for (int r = 0; r < d->bkv; r++) { /* the staged tile: zero rows past sk */
            const int ok = kv0 + r < d->sk;
            for (int e = 0; e < d->dqk; e++) kt[r * d->dqk + e] = ok ? k[(size_t)(kv0 + r) * d->dqk + e] : 0;
            for (int e = 0; e < d->dv; e++) vt[r * d->dv + e] = ok ? v[(size_t)(kv0 + r) * d->dv + e] : 0;
        }
        for (int lane = 0; lane < FA_WAVE; lane++) fa_wt_tile_begin(d, &st[lane]);
        for (int sb = 0; sb < d->bkv / m; sb++)
            for (int ks = 0; ks < d->dqk / kk; ks++) {
                for (int lane = 0; lane < FA_WAVE; lane++) {
                    fa_wt_frag_k(d, lane, kt, d->dqk, sb, ks, fa[lane]);
                    fa_wt_frag_q(d, lane, qt, d->dqk, ks, fb[lane]);
                    acc[lane] = fa_wt_s_acc(d, &st[lane], sb);
                }
                wave_mfma(d->instr, fa, fb, acc);
            }
        for (int lane = 0; lane < FA_WAVE; lane++) part[lane] = fa_wt_scores(d, lane, &st[lane], kv0);
        row_reduce(d, part, 1);
        for (int lane = 0; lane < FA_WAVE; lane++) fa_wt_softmax(d, &st[lane], part[lane]);
        for (int db = 0; db < d->dv / m; db++)
            for (int c = 0; c < d->bkv / kk; c++) {
                for (int lane = 0; lane < FA_WAVE; lane++) {
                    fa_wt_frag_v(d, lane, vt, d->dv, db, c, fa[lane]);
                    memcpy(fb[lane], fa_wt_p_frag(&st[lane], c), sizeof fb[lane]);
                    acc[lane] = fa_wt_o_acc(d, &st[lane], db);
                }
                wave_mfma(d->instr, fa, fb, acc);
            }
    }
    for (int lane = 0; lane < FA_WAVE; lane++) part[lane] = st[lane].l;
    row_reduce(d, part, 0);
    for (int lane = 0; lane < FA_WAVE; lane++) fa_wt_store(d, lane, &st[lane], part[lane], out, d->dv, lse, 1);
    free(st), free(qt), free(kt), free(vt);
}

/* Rounding to the instruction's input type, as a value. */
static double round16(fa_mfma_instr in, double x) { return value16(in, fa_f32_to_16(fa_mfma_is_bf16(in), (float)x)); }

/* flash_attn's fwd_atol term (as tests/conformance/conf_check.c): the drift of (x + 0.3) - 0.3 in the type, never
 * below half an ulp of x. */
static double rounding_noise(fa_mfma_instr in, double x)
{
    const int bits = fa_mfma_is_bf16(in) ? 8 : 11;
    const float r = (float)round16(in, x), up = (float)round16(in, (double)(r + 0.3f));
    const double drift = fabs(round16(in, (double)(up - 0.3f)) - r);
    int e;
    frexp(x == 0.0 ? 0x1.0p-14 : x, &e);
    const double half_ulp = ldexp(0.5, e - bits);
    return drift > half_ulp ? drift : half_ulp;
}

static int visible(const attn_case *c, int i, int j)
{
    const int diag = i + c->sk - c->sq;
    return (c->window_left < 0 || j >= diag - c->window_left) && (c->window_right < 0 || j <= diag + c->window_right);
}

/* The score transforms of the API (softcap, then ALiBi by the bottom-right distance), in double and in float. */
static double transform64(const attn_case *c, double x, int i, int j)
{
    if (c->softcap > 0.0f) x = c->softcap * tanh(x / c->softcap);
    return x - c->alibi * fabs((double)(i + c->sk - c->sq - j));
}
static float transform32(const attn_case *c, float x, int i, int j)
{
    if (c->softcap > 0.0f) x = c->softcap * tanhf(x / c->softcap);
    return x - c->alibi * fabsf((float)(i + c->sk - c->sq - j));
}

typedef struct attn_errors {
    double out, out_naive, out_floor, lse, lse_naive, lse_floor;
} attn_errors;

/*
 * Query row i (a position) against the float64 reference and the naive same-precision one (as the conformance
 * suite's: S accumulated in fp32 and rounded to the type, softmax in fp32, P rounded, O accumulated in fp32 and
 * rounded; LSE in fp32). Returns 0 if the row sees no key (and then checks the exact zeros).
 */
static int check_row(fa_mfma_instr in, const attn_case *c, float scale, const uint16_t *q, const uint16_t *k,
                     const uint16_t *v, int i, const uint16_t *got_o, float got_lse, attn_errors *err)
{
    static double s64[1024], p64[1024];
    static float s32[1024], p32[1024];
    double mx64 = -INFINITY, sum64 = 0.0, mag = 0.0;
    float mx32 = -INFINITY, sum32 = 0.0f;
    int any = 0;
    for (int j = 0; j < c->sk; j++) {
        if (!visible(c, i, j)) continue;
        double dot = 0.0, dabs = 0.0;
        float acc = 0.0f;
        for (int e = 0; e < c->dqk; e++) {
            const double a = value16(in, q[i * c->dqk + e]), b = value16(in, k[j * c->dqk + e]);
            dot += a * b, dabs += fabs(a * b);
            acc += (float)a * (float)b;
        }
        s64[j] = transform64(c, dot * scale, i, j), p64[j] = dabs * fabs(scale);
        s32[j] = transform32(c, (float)round16(in, acc) * scale, i, j);
        mx64 = fmax(mx64, s64[j]), mx32 = fmaxf(mx32, s32[j]);
        any = 1;
    }
    if (!any) {
        for (int e = 0; e < c->dv; e++)
            if (got_o[e] != 0) fail_msg("query %d sees no key, but out[%d] = %#x (must be 0)", i, e, got_o[e]);
        if (!(isinf(got_lse) && got_lse < 0)) fail_msg("query %d sees no key, but lse = %g (must be -inf)", i, got_lse);
        return 0;
    }
    for (int j = 0; j < c->sk; j++) {
        if (!visible(c, i, j)) continue;
        const double e64 = exp(s64[j] - mx64);
        mag += e64 * p64[j], sum64 += e64, p64[j] = e64;
        p32[j] = expf(s32[j] - mx32), sum32 += p32[j];
    }
    mag /= sum64;
    for (int j = 0; j < c->sk; j++)
        if (visible(c, i, j)) p32[j] = (float)round16(in, p32[j] / sum32);
    for (int e = 0; e < c->dv; e++) {
        double o64 = 0.0;
        float o32 = 0.0f;
        for (int j = 0; j < c->sk; j++) {
            if (!visible(c, i, j)) continue;
            const double vv = value16(in, v[j * c->dv + e]);
            o64 += p64[j] / sum64 * vv;
            o32 += p32[j] * (float)vv;
        }
        const double got = value16(in, got_o[e]);
        if (!isfinite(got)) fail_msg("query %d: out[%d] is not finite", i, e);
        err->out = fmax(err->out, fabs(got - o64));
        err->out_naive = fmax(err->out_naive, fabs(round16(in, o32) - o64));
        err->out_floor = fmax(err->out_floor, 2.0 * rounding_noise(in, o64));
    }
    const double lse64 = mx64 + log(sum64), lse32 = (double)(mx32 + logf(sum32));
    if (!isfinite(got_lse)) fail_msg("query %d: lse %g is not finite", i, got_lse);
    err->lse = fmax(err->lse, fabs(got_lse - lse64));
    err->lse_naive = fmax(err->lse_naive, fabs(lse32 - lse64));
    /* the conformance suite's LSE floor: fp32 noise of dot products of dqk terms at the scores' size */
    err->lse_floor = fmax(err->lse_floor, ((double)c->dqk + 4.0) * 0x1.0p-24 * (mag + fabs(lse64)));
    return 1;
}

static double ratio(double err, double naive, double floor) { return err / (2.0 * naive + floor); }

static void run_attention_case(fa_mfma_instr in, const attn_case *c)
{
    const int n = fa_mfma_n(in);
    const float scale = 1.0f / sqrtf((float)c->dqk);
    uint16_t *q = malloc(sizeof *q * (size_t)(c->sq * c->dqk)), *k = malloc(sizeof *k * (size_t)(c->sk * c->dqk));
    uint16_t *v = malloc(sizeof *v * (size_t)(c->sk * c->dv)), *out = malloc(sizeof *out * (size_t)(n * c->dv));
    float lse[32];
    assert_non_null(q), assert_non_null(k), assert_non_null(v), assert_non_null(out);
    /* inputs with a spread of scores, so the softmax is neither flat nor one-hot */
    for (int i = 0; i < c->sq * c->dqk; i++) /* |q| up to 2 */
        q[i] = fa_f32_to_16(fa_mfma_is_bf16(in), (float)(2.0 * value16(in, random16(in, NULL))));
    for (int i = 0; i < c->sk * c->dqk; i++) k[i] = random16(in, NULL);
    for (int i = 0; i < c->sk * c->dv; i++) v[i] = random16(in, NULL);
    for (int i = 0; i < n * c->dv; i++) out[i] = 0x7fff; /* NaN: a missed store shows */
    for (int i = 0; i < n; i++) lse[i] = NAN;

    const fa_wt_desc d = {in, c->dqk, c->dv, FA_WT_BKV_MAX, scale * 1.44269504088896341f, c->sq, c->sk,
                          c->window_left, c->window_right, c->q0, scale, 0.0f, 0.0f};
    wave_attention(&d, q, k, v, out, lse);

    attn_errors err = {0, 0, 0, 0, 0, 0};
    int rows = 0;
    for (int r = 0; r < n && c->q0 + r < c->sq; r++)
        rows += check_row(in, c, scale, q, k, v, c->q0 + r, out + r * c->dv, lse[r], &err);
    const double ro = rows ? ratio(err.out, err.out_naive, err.out_floor) : 0.0;
    const double rl = rows ? ratio(err.lse, err.lse_naive, err.lse_floor) : 0.0;
    printf("  %-26s %-30s out %.3g (naive %.3g, floor %.3g, ratio %.2f)  lse %.3g (naive %.3g, ratio %.2f)\n",
           instr_name(in), c->what, err.out, err.out_naive, err.out_floor, ro, err.lse, err.lse_naive, rl);
    if (!(ro <= 1.0)) fail_msg("%s %s: out error %.3g > 2 * naive %.3g + floor %.3g", instr_name(in), c->what, err.out,
                               err.out_naive, err.out_floor);
    if (!(rl <= 1.0)) fail_msg("%s %s: lse error %.3g > 2 * naive %.3g + floor %.3g", instr_name(in), c->what, err.lse,
                               err.lse_naive, err.lse_floor);
    free(q), free(k), free(v), free(out);
}

static void test_attention_tile(void **state)
{
    (void)state;
    /* query rows are the wave's N (32 or 16) from q0; key tiles of FA_WT_BKV_MAX (64) */
    const attn_case cases[] = {
        {64, 64, 32, 64, -1, -1, 0, "d64, 64 keys", 0.0f, 0.0f},
        {128, 128, 32, 192, -1, -1, 0, "d128, 192 keys (3 tiles)", 0.0f, 0.0f},
        {128, 64, 32, 128, -1, -1, 0, "dqk128 dv64, 128 keys", 0.0f, 0.0f},
        {64, 64, 64, 64, -1, 0, 0, "d64 causal, rows 0..", 0.0f, 0.0f},
        {128, 128, 64, 64, -1, 0, 32, "d128 causal, rows 32..", 0.0f, 0.0f},
        {128, 128, 32, 160, -1, 0, 0, "d128 causal, 160 keys", 0.0f, 0.0f},
        {64, 64, 32, 192, 16, 0, 0, "d64 window (16, 0), 192 keys", 0.0f, 0.0f},
        {64, 64, 64, 32, -1, 0, 0, "d64 causal, rows see no key", 0.0f, 0.0f},
    };
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_attention_case(all_instrs[t], &cases[i]);
}

/* ------------------------------------------------------------------------------- the forward kernel's block */

/*
 * One block of hip/kernels/fwd_mfma.hip, step for step: W waves of N rows from q0b, the block's tile range
 * (fa_wt_tile_range) walked in tiles of bkv keys, each tile staged into LDS (plain arrays here: stages buffers of
 * bkv padded rows, zeros past sk, the buffer the kernel would use), each wave skipping the tiles its rows cannot
 * see (fa_wt_tile_needed), Q^T fragments loaded once from the strided q (fa_wt_load_q), and O and LSE stored
 * through the strides. The kernel's prefetch into registers changes when a tile is loaded, not what is staged.
 */
typedef struct block_cfg {
    fa_mfma_instr instr;
    int waves, bkv, stages;
} block_cfg;

enum { LDS_PAD = 4 }; /* fwd_mfma.hip's KSTR/VSTR padding */

static void block_forward(const block_cfg *cfg, const fa_wt_desc *base, int q0b, const uint16_t *q, int64_t ldq,
                          const uint16_t *k, const uint16_t *v, uint16_t *out, int64_t ldo, float *lse,
                          int64_t lse_stride)
{
    const int n = fa_mfma_n(cfg->instr), m = fa_mfma_m(cfg->instr), kk = fa_mfma_k(cfg->instr);
    const int kstr = base->dqk + LDS_PAD, vstr = base->dv + LDS_PAD, bq = n * cfg->waves;
    fa_wt_desc d = *base;
    d.instr = cfg->instr, d.bkv = cfg->bkv, d.q0 = q0b;
    if (q0b >= d.sq) return;
    int lo;
    const int last = q0b + bq - 1 < d.sq - 1 ? q0b + bq - 1 : d.sq - 1;
    const int ntiles = fa_wt_tile_range(&d, q0b, last, &lo);
    uint16_t *ks = calloc((size_t)(cfg->stages * cfg->bkv * kstr), sizeof *ks);
    uint16_t *vs = calloc((size_t)(cfg->stages * cfg->bkv * vstr), sizeof *vs);
    fa_wt_lane *st = calloc((size_t)(cfg->waves * FA_WAVE), sizeof *st);
    uint16_t(*qf)[FA_WT_QF_MAX] = calloc((size_t)(cfg->waves * FA_WAVE), sizeof *qf);
    fa_wt_desc *wd = calloc((size_t)cfg->waves, sizeof *wd);
    assert_non_null(ks), assert_non_null(vs), assert_non_null(st), assert_non_null(qf), assert_non_null(wd);
    for (int w = 0; w < cfg->waves; w++) {
        wd[w] = d, wd[w].q0 = q0b + w * n;
        for (int lane = 0; lane < FA_WAVE; lane++) {
            fa_wt_load_q(&wd[w], lane, q + (int64_t)wd[w].q0 * ldq, ldq, qf[w * FA_WAVE + lane]);
            fa_wt_init(&wd[w], &st[w * FA_WAVE + lane]);
        }
    }
    uint16_t fa[FA_WAVE][4], fb[FA_WAVE][4];
    float *acc[FA_WAVE], part[FA_WAVE];
    for (int it = 0; it < ntiles; it++) {
        const int kv0 = lo + it * cfg->bkv, buf = cfg->stages == 2 ? it & 1 : 0;
        uint16_t *kt = ks + buf * cfg->bkv * kstr, *vt = vs + buf * cfg->bkv * vstr;
        for (int r = 0; r < cfg->bkv; r++) { /* the staged tile: zero rows past sk, padding untouched */
            const int ok = kv0 + r < d.sk;
            for (int e = 0; e < d.dqk; e++) kt[r * kstr + e] = ok ? k[(size_t)(kv0 + r) * d.dqk + e] : 0;
            for (int e = 0; e < d.dv; e++) vt[r * vstr + e] = ok ? v[(size_t)(kv0 + r) * d.dv + e] : 0;
        }
        for (int w = 0; w < cfg->waves; w++) {
            const fa_wt_desc *dw = &wd[w];
            fa_wt_lane *sw = st + w * FA_WAVE;
            if (!fa_wt_tile_needed(dw, kv0)) continue;
            for (int lane = 0; lane < FA_WAVE; lane++) fa_wt_tile_begin(dw, &sw[lane]);
            for (int sb = 0; sb < dw->bkv / m; sb++)
                for (int s = 0; s < dw->dqk / kk; s++) {
                    for (int lane = 0; lane < FA_WAVE; lane++) {
                        fa_wt_frag_k(dw, lane, kt, kstr, sb, s, fa[lane]);
                        memcpy(fb[lane], qf[w * FA_WAVE + lane] + FA_MFMA_AB_SLOTS * s, sizeof fb[lane]);
                        acc[lane] = fa_wt_s_acc(dw, &sw[lane], sb);
                    }
                    wave_mfma(dw->instr, fa, fb, acc);
                }
            for (int lane = 0; lane < FA_WAVE; lane++) part[lane] = fa_wt_scores(dw, lane, &sw[lane], kv0);
            row_reduce(dw, part, 1);
            for (int lane = 0; lane < FA_WAVE; lane++) fa_wt_softmax(dw, &sw[lane], part[lane]);
            for (int db = 0; db < dw->dv / m; db++)
                for (int c = 0; c < dw->bkv / kk; c++) {
                    for (int lane = 0; lane < FA_WAVE; lane++) {
                        fa_wt_frag_v(dw, lane, vt, vstr, db, c, fa[lane]);
                        memcpy(fb[lane], fa_wt_p_frag(&sw[lane], c), sizeof fb[lane]);
                        acc[lane] = fa_wt_o_acc(dw, &sw[lane], db);
                    }
                    wave_mfma(dw->instr, fa, fb, acc);
                }
        }
    }
    for (int w = 0; w < cfg->waves; w++) {
        fa_wt_lane *sw = st + w * FA_WAVE;
        for (int lane = 0; lane < FA_WAVE; lane++) part[lane] = sw[lane].l;
        row_reduce(&wd[w], part, 0);
        for (int lane = 0; lane < FA_WAVE; lane++)
            fa_wt_store(&wd[w], lane, &sw[lane], part[lane], out + (int64_t)wd[w].q0 * ldo, ldo,
                        lse + (int64_t)wd[w].q0 * lse_stride, lse_stride);
    }
    free(ks), free(vs), free(st), free(qf), free(wd);
}

/*
 * A whole problem through the block driver, every query block of it, against float64 by the conformance rule.
 * q and out carry a second head between rows (row stride 2 d, head 1 used) and lse a stride of 3, so the strided
 * loads and stores are exercised as the kernel's (seq, head, dim) tensors use them.
 */
static void run_block_case(const block_cfg *cfg, const attn_case *c)
{
    const fa_mfma_instr in = cfg->instr;
    const int bf = fa_mfma_is_bf16(in), bq = fa_mfma_n(in) * cfg->waves;
    const float scale = 1.0f / sqrtf((float)c->dqk);
    uint16_t *q = malloc(sizeof *q * (size_t)(c->sq * c->dqk)), *k = malloc(sizeof *k * (size_t)(c->sk * c->dqk));
    uint16_t *v = malloc(sizeof *v * (size_t)(c->sk * c->dv)), *qs = calloc((size_t)(2 * c->sq * c->dqk), sizeof *qs);
    uint16_t *out = malloc(sizeof *out * (size_t)(2 * c->sq * c->dv));
    float *lse = malloc(sizeof *lse * (size_t)(3 * c->sq));
    assert_non_null(q), assert_non_null(k), assert_non_null(v), assert_non_null(qs), assert_non_null(out);
    assert_non_null(lse);
    for (int i = 0; i < c->sq * c->dqk; i++) q[i] = fa_f32_to_16(bf, (float)(2.0 * value16(in, random16(in, NULL))));
    for (int i = 0; i < c->sk * c->dqk; i++) k[i] = random16(in, NULL);
    for (int i = 0; i < c->sk * c->dv; i++) v[i] = random16(in, NULL);
    for (int i = 0; i < c->sq; i++) memcpy(qs + (size_t)(2 * i + 1) * c->dqk, q + (size_t)i * c->dqk, sizeof *q * (size_t)c->dqk);
    for (int i = 0; i < 2 * c->sq * c->dv; i++) out[i] = 0x7fff; /* NaN: a missed store shows */
    for (int i = 0; i < 3 * c->sq; i++) lse[i] = NAN;

    fa_wt_desc d = {in, c->dqk, c->dv, cfg->bkv, scale * 1.44269504088896341f, c->sq, c->sk, c->window_left,
                    c->window_right, 0, scale, c->softcap, c->alibi};
    for (int q0b = 0; q0b < c->sq; q0b += bq)
        block_forward(cfg, &d, q0b, qs + c->dqk, 2 * c->dqk, k, v, out + c->dv, 2 * c->dv, lse, 3);

    attn_errors err = {0, 0, 0, 0, 0, 0};
    int rows = 0;
    for (int i = 0; i < c->sq; i++)
        rows += check_row(in, c, scale, q, k, v, i, out + (size_t)(2 * i + 1) * c->dv, lse[3 * i], &err);
    for (int i = 0; i < c->sq; i++) /* the other head's rows and the LSE gaps are never written */
        for (int e = 0; e < c->dv; e++)
            if (out[(size_t)(2 * i) * c->dv + e] != 0x7fff) fail_msg("%s: a store outside the head (row %d)", c->what, i);
    const double ro = rows ? ratio(err.out, err.out_naive, err.out_floor) : 0.0;
    const double rl = rows ? ratio(err.lse, err.lse_naive, err.lse_floor) : 0.0;
    printf("  %-26s %d waves, %d keys x %d stage(s)  %-40s out ratio %.2f  lse ratio %.2f  (%d rows see keys)\n",
           instr_name(in), cfg->waves, cfg->bkv, cfg->stages, c->what, ro, rl, rows);
    if (!(ro <= 1.0)) fail_msg("%s %s: out error %.3g > 2 * naive %.3g + floor %.3g", instr_name(in), c->what, err.out,
                               err.out_naive, err.out_floor);
    if (!(rl <= 1.0)) fail_msg("%s %s: lse error %.3g > 2 * naive %.3g + floor %.3g", instr_name(in), c->what, err.lse,
                               err.lse_naive, err.lse_floor);
    free(q), free(k), free(v), free(qs), free(out), free(lse);
}

static void test_forward_block(void **state)
{
    (void)state;
    /* multi-block, multi-tile problems: partial last query block and tile, bottom-right causal with sk > sq and
       sk < sq (rows that see nothing), sliding windows (tiles skipped per block and per wave), softcap, ALiBi */
    const attn_case cases[] = {
        {128, 128, 200, 300, -1, 0, 0, "d128 causal sq200 sk300", 0.0f, 0.0f},
        {64, 64, 150, 333, -1, -1, 0, "d64 sq150 sk333", 0.0f, 0.0f},
        {64, 64, 160, 96, -1, 0, 0, "d64 causal sq160 sk96 (empty rows)", 0.0f, 0.0f},
        {128, 64, 130, 260, 40, 8, 0, "dqk128 dv64 window (40, 8)", 0.0f, 0.0f},
        {64, 64, 140, 200, -1, 0, 0, "d64 causal softcap 8 alibi 0.05", 8.0f, 0.05f},
    };
    const block_cfg cfgs[] = {
        {FA_MFMA_32X32X8_F16, 4, 64, 1},  {FA_MFMA_32X32X8_BF16, 4, 32, 2}, {FA_MFMA_32X32X8_F16, 2, 64, 2},
        {FA_MFMA_16X16X16_BF16, 4, 64, 2}, {FA_MFMA_16X16X16_F16, 4, 32, 1},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        for (size_t j = 0; j < sizeof cases / sizeof cases[0]; j++) run_block_case(&cfgs[i], &cases[j]);
}

/* ------------------------------------------------------------------------------------------------ backward */

/*
 * hip/kernels/fa_wave_bwd_tile.h's phases in both passes, driven step for step as hip/kernels/bwd_mfma.hip's blocks
 * drive them: W waves of N columns per block, the block's row range rounded down to a tile, each wave skipping the
 * tiles outside its own range, tiles staged with zeros past the sequence, the per-row LSE log2 e and D arrays,
 * GQA's loop over the group's heads in the dK/dV pass, strided (seq, head, dim) tensors; the 64 lanes of each
 * wave one after the other within each phase and the emulator for the MFMAs.
 */
typedef struct bwd_case {
    int dqk, dv, sq, sk, window_left, window_right, heads; /* heads: query heads sharing the one K/V head (GQA) */
    int rows, waves;                                       /* tile rows, waves per block */
    const char *what;
} bwd_case;

typedef struct bwd_problem {
    fa_mfma_instr in;
    const bwd_case *c;
    float scale;
    uint16_t *q, *dout, *out; /* (sq, heads, dqk | dv) */
    uint16_t *k, *v;          /* (sk, dqk | dv) */
    float *lse, *dsum;        /* [head][sq]: the forward's LSE (natural log) and D = rowsum(dO o O) in fp32 */
} bwd_problem;

/* Test hook: a deliberately wrong reuse of the accumulator (the neighbouring row chunk's P as dV's operand). */
static int g_bwd_break_p;

static int bwd_visible(const bwd_case *c, int i, int j)
{
    const int diag = i + c->sk - c->sq;
    return i < c->sq && j < c->sk && (c->window_left < 0 || j >= diag - c->window_left) &&
           (c->window_right < 0 || j <= diag + c->window_right);
}

static void bwd_desc(const bwd_problem *pb, int rows_are_queries, int col0, fa_wb_desc *d)
{
    d->instr = pb->in, d->dqk = pb->c->dqk, d->dv = pb->c->dv, d->rows = pb->c->rows;
    d->rows_are_queries = rows_are_queries, d->scale_log2 = pb->scale * FA_WB_LOG2E, d->sq = pb->c->sq;
    d->sk = pb->c->sk, d->window_left = pb->c->window_left, d->window_right = pb->c->window_right, d->col0 = col0;
}

/* A tile of `rows` rows from row0 of x (n rows of stride ld, dims contiguous), zeros past n: the LDS tile (unpadded
   here: the padding changes addresses, not values). */
static void stage(uint16_t *t, const uint16_t *x, int64_t ld, int row0, int rows, int n, int dims)
{
    for (int r = 0; r < rows; r++)
        for (int e = 0; e < dims; e++) t[r * dims + e] = row0 + r < n ? x[(row0 + r) * ld + e] : 0;
}

/* The per-query arrays: LSE log2 e (as fa_bwd_pre_mfma stores it) and D from position q0, zeros past sq. */
static void stage_rows(const bwd_problem *pb, int h, int q0, int n, float *lse2, float *dsum)
{
    for (int i = 0; i < n; i++) {
        const int ok = q0 + i < pb->c->sq;
        lse2[i] = ok ? pb->lse[(size_t)h * pb->c->sq + q0 + i] * FA_WB_LOG2E : 0.0f;
        dsum[i] = ok ? pb->dsum[(size_t)h * pb->c->sq + q0 + i] : 0.0f;
    }
}

/* One wave's registers in the emulation: the tile's lanes, two column-side fragment sets, two accumulators. */
typedef struct bwd_wave {
    fa_wb_desc d;
    int live, lo, hi; /* the wave has columns; its own row range */
    fa_wb_lane st[FA_WAVE];
    uint16_t fa_cols[FA_WAVE][FA_WB_CF_MAX], fb_cols[FA_WAVE][FA_WB_CF_MAX];
    float acc1[FA_WAVE][FA_WB_ACC_MAX], acc2[FA_WAVE][FA_WB_ACC_MAX];
} bwd_wave;

/* Phases 1-4 for one tile: S and dP from the two row-side tiles and the wave's two column-side fragment sets, P, dS. */
static void bwd_scores(bwd_wave *w, const uint16_t *ta, const uint16_t *tb, int row0, const float *lse2,
                       const float *dsum, int qbase)
{
    const fa_wb_desc *d = &w->d;
    const int m = fa_mfma_m(d->instr), kk = fa_mfma_k(d->instr);
    uint16_t fa[FA_WAVE][4], fb[FA_WAVE][4];
    float *acc[FA_WAVE];
    for (int lane = 0; lane < FA_WAVE; lane++) fa_wb_tile_begin(d, &w->st[lane]);
    for (int pass = 0; pass < 2; pass++) /* S from (ta, fa_cols), dP from (tb, fb_cols) */
        for (int rb = 0; rb < d->rows / m; rb++)
            for (int ks = 0; ks < (pass ? d->dv : d->dqk) / kk; ks++) {
                for (int lane = 0; lane < FA_WAVE; lane++) {
                    fa_wb_frag_rows(d, lane, pass ? tb : ta, pass ? d->dv : d->dqk, rb, ks, fa[lane]);
                    memcpy(fb[lane], (pass ? w->fb_cols : w->fa_cols)[lane] + FA_MFMA_AB_SLOTS * ks, sizeof fb[lane]);
                    acc[lane] = pass ? fa_wb_dp_acc(d, &w->st[lane], rb) : fa_wb_s_acc(d, &w->st[lane], rb);
                }
                wave_mfma(d->instr, fa, fb, acc);
            }
    for (int lane = 0; lane < FA_WAVE; lane++) {
        fa_wb_probs(d, lane, &w->st[lane], row0, lse2, qbase);
        fa_wb_dsoft(d, lane, &w->st[lane], row0, dsum, qbase);
    }
}

/* Phase 5: Out^T += X^T (P or dS) over the tile's rows, X the staged tile t (rows x dims). */
static void bwd_out(bwd_wave *w, const uint16_t *t, int dims, int use_ds, float (*out)[FA_WB_ACC_MAX])
{
    const fa_wb_desc *d = &w->d;
    const int m = fa_mfma_m(d->instr), kk = fa_mfma_k(d->instr);
    uint16_t fa[FA_WAVE][4], fb[FA_WAVE][4];
    float *acc[FA_WAVE];
    for (int c = 0; c < d->rows / kk; c++)
        for (int db = 0; db < dims / m; db++) {
            const int cp = !use_ds && g_bwd_break_p ? c ^ 1 : c;
            for (int lane = 0; lane < FA_WAVE; lane++) {
                fa_wb_frag_rows_t(d, lane, t, dims, db, c, fa[lane]);
                memcpy(fb[lane], use_ds ? fa_wb_ds_frag(&w->st[lane], c) : fa_wb_p_frag(&w->st[lane], cp),
                       sizeof fb[lane]);
                acc[lane] = fa_wb_acc(d, out[lane], db);
            }
            wave_mfma(d->instr, fa, fb, acc);
        }
}

/* The dK/dV blocks (fa_bwd_dkdv_mfma), then the dQ blocks (fa_bwd_dq_mfma): dq (sq, heads, dqk), dk and dv (sk, d). */
static void block_backward(const bwd_problem *pb, uint16_t *dq, uint16_t *dk, uint16_t *dv)
{
    const bwd_case *c = pb->c;
    const int n = fa_mfma_n(pb->in), cols = n * c->waves, rows = c->rows, hq = c->heads;
    const int64_t ldq = (int64_t)hq * c->dqk, ldo = (int64_t)hq * c->dv; /* row strides of (seq, head, dim) */
    bwd_wave *wv = calloc((size_t)c->waves, sizeof *wv);
    uint16_t *ta = malloc(sizeof *ta * (size_t)(rows * c->dqk)), *tb = malloc(sizeof *tb * (size_t)(rows * c->dv));
    float lse2[FA_WB_ROWS_MAX > 128 ? FA_WB_ROWS_MAX : 128], dsum[FA_WB_ROWS_MAX > 128 ? FA_WB_ROWS_MAX : 128];
    assert_non_null(wv), assert_non_null(ta), assert_non_null(tb);
    assert_true(cols <= 128);

    for (int k0 = 0; k0 < c->sk; k0 += cols) {
        fa_wb_desc d;
        bwd_desc(pb, 1, k0, &d);
        int lo, hi;
        fa_wb_query_range(&d, k0, (k0 + cols < c->sk ? k0 + cols : c->sk) - 1, &lo, &hi);
        lo = lo / rows * rows;
        for (int w = 0; w < c->waves; w++) {
            bwd_wave *x = &wv[w];
            bwd_desc(pb, 1, k0 + w * n, &x->d);
            x->live = x->d.col0 < c->sk;
            fa_wb_query_range(&x->d, x->d.col0, (x->d.col0 + n < c->sk ? x->d.col0 + n : c->sk) - 1, &x->lo, &x->hi);
            for (int lane = 0; lane < FA_WAVE && x->live; lane++) {
                fa_wb_load_cols(&x->d, lane, pb->k + (size_t)x->d.col0 * c->dqk, c->dqk, c->dqk, x->fa_cols[lane]);
                fa_wb_load_cols(&x->d, lane, pb->v + (size_t)x->d.col0 * c->dv, c->dv, c->dv, x->fb_cols[lane]);
                fa_wb_acc_init(&x->d, x->acc1[lane], c->dv);
                fa_wb_acc_init(&x->d, x->acc2[lane], c->dqk);
            }
        }
        for (int h = 0; h < hq; h++)
            for (int row0 = lo; row0 < hi; row0 += rows) {
                stage(ta, pb->q + (size_t)h * c->dqk, ldq, row0, rows, c->sq, c->dqk);
                stage(tb, pb->dout + (size_t)h * c->dv, ldo, row0, rows, c->sq, c->dv);
                stage_rows(pb, h, row0, rows, lse2, dsum);
                for (int w = 0; w < c->waves; w++) {
                    bwd_wave *x = &wv[w];
                    if (!x->live || row0 + rows <= x->lo || row0 >= x->hi) continue;
                    bwd_scores(x, ta, tb, row0, lse2, dsum, row0);
                    bwd_out(x, tb, c->dv, 0, x->acc1);  /* dV^T += dO^T P */
                    bwd_out(x, ta, c->dqk, 1, x->acc2); /* dK^T += Q^T dS */
                }
            }
        for (int w = 0; w < c->waves; w++)
            for (int lane = 0; lane < FA_WAVE && wv[w].live; lane++) {
                const int col0 = wv[w].d.col0;
                fa_wb_store(&wv[w].d, lane, wv[w].acc1[lane], c->dv, 1.0f, dv + (size_t)col0 * c->dv, c->dv);
                fa_wb_store(&wv[w].d, lane, wv[w].acc2[lane], c->dqk, pb->scale, dk + (size_t)col0 * c->dqk, c->dqk);
            }
    }

    for (int h = 0; h < hq; h++)
        for (int q0 = 0; q0 < c->sq; q0 += cols) {
            const uint16_t *qh = pb->q + (size_t)h * c->dqk, *doh = pb->dout + (size_t)h * c->dv;
            fa_wb_desc d;
            bwd_desc(pb, 0, q0, &d);
            stage_rows(pb, h, q0, cols, lse2, dsum);
            int lo, hi;
            fa_wb_key_range(&d, q0, (q0 + cols < c->sq ? q0 + cols : c->sq) - 1, &lo, &hi);
            lo = lo / rows * rows;
            for (int w = 0; w < c->waves; w++) {
                bwd_wave *x = &wv[w];
                bwd_desc(pb, 0, q0 + w * n, &x->d);
                x->live = x->d.col0 < c->sq;
                fa_wb_key_range(&x->d, x->d.col0, (x->d.col0 + n < c->sq ? x->d.col0 + n : c->sq) - 1, &x->lo, &x->hi);
                for (int lane = 0; lane < FA_WAVE && x->live; lane++) {
                    fa_wb_load_cols(&x->d, lane, qh + x->d.col0 * ldq, ldq, c->dqk, x->fa_cols[lane]);
                    fa_wb_load_cols(&x->d, lane, doh + x->d.col0 * ldo, ldo, c->dv, x->fb_cols[lane]);
                    fa_wb_acc_init(&x->d, x->acc1[lane], c->dqk);
                }
            }
            for (int row0 = lo; row0 < hi; row0 += rows) {
                stage(ta, pb->k, c->dqk, row0, rows, c->sk, c->dqk);
                stage(tb, pb->v, c->dv, row0, rows, c->sk, c->dv);
                for (int w = 0; w < c->waves; w++) {
                    bwd_wave *x = &wv[w];
                    if (!x->live || row0 + rows <= x->lo || row0 >= x->hi) continue;
                    bwd_scores(x, ta, tb, row0, lse2, dsum, q0);
                    bwd_out(x, ta, c->dqk, 1, x->acc1); /* dQ^T += K^T dS^T */
                }
            }
            for (int w = 0; w < c->waves; w++)
                for (int lane = 0; lane < FA_WAVE && wv[w].live; lane++)
                    fa_wb_store(&wv[w].d, lane, wv[w].acc1[lane], c->dqk, pb->scale,
                                dq + (size_t)h * c->dqk + wv[w].d.col0 * ldq, ldq);
        }
    free(wv), free(ta), free(tb);
}

typedef struct grad_err {
    double err, naive, floor;
    int nan;
} grad_err;

static void grad_add(fa_mfma_instr in, grad_err *g, uint16_t got16, double naive32, double ref, int must_be_zero)
{
    const double got = value16(in, got16);
    if (!isfinite(got) || (must_be_zero && got16 != 0)) g->nan++; /* NaN, inf or a non-zero where nothing flows */
    g->err = fmax(g->err, fabs(got - ref));
    g->naive = fmax(g->naive, fabs(round16(in, naive32) - ref));
    g->floor = fmax(g->floor, 2.0 * rounding_noise(in, ref));
}

/* max error <= 3 x that of the naive same-precision backward + the dtype's floor; NaN never passes */
static double grad_ratio(const grad_err *g) { return g->nan ? INFINITY : g->err / (3.0 * g->naive + g->floor); }

/*
 * Random inputs (never zeros), the forward's outputs (O rounded to the type, LSE in fp32, as the forward kernel
 * hands them over; D in fp32 from the rounded O, as the pre kernel), the emulated backward, and per gradient the
 * float64 reference and the naive fp32 one (S, dP in fp32, P = e^(S - LSE) in fp32, P and dS rounded to the type
 * before their products, fp32 accumulation, outputs rounded). Returns the worst of the three ratios (dV's alone
 * under the test hook).
 */
static double run_bwd_case(fa_mfma_instr in, const bwd_case *c, int quiet)
{
    const int bf = fa_mfma_is_bf16(in), dqk = c->dqk, dvv = c->dv, sq = c->sq, sk = c->sk, hq = c->heads;
    bwd_problem pb = {in, c, 1.0f / sqrtf((float)dqk), NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    const size_t nq = (size_t)hq * sq * dqk, no = (size_t)hq * sq * dvv, nk = (size_t)sk * dqk, nv = (size_t)sk * dvv;
    const size_t nss = (size_t)hq * sq * sk;
    pb.q = malloc(sizeof *pb.q * nq), pb.dout = malloc(sizeof *pb.dout * no), pb.out = malloc(sizeof *pb.out * no);
    pb.k = malloc(sizeof *pb.k * nk), pb.v = malloc(sizeof *pb.v * nv);
    pb.lse = malloc(sizeof *pb.lse * (size_t)(hq * sq)), pb.dsum = malloc(sizeof *pb.dsum * (size_t)(hq * sq));
    uint16_t *dq = malloc(sizeof *dq * nq), *dk = malloc(sizeof *dk * nk), *dv = malloc(sizeof *dv * nv);
    double *p64 = malloc(sizeof *p64 * nss), *ds64 = malloc(sizeof *ds64 * nss);
    float *p32 = malloc(sizeof *p32 * nss), *ds32 = malloc(sizeof *ds32 * nss);
    double *s64 = malloc(sizeof *s64 * (size_t)sk);
    float *s32 = malloc(sizeof *s32 * (size_t)sk);
    assert_non_null(pb.q), assert_non_null(pb.dout), assert_non_null(pb.out), assert_non_null(pb.k);
    assert_non_null(pb.v), assert_non_null(pb.lse), assert_non_null(pb.dsum), assert_non_null(dq);
    assert_non_null(dk), assert_non_null(dv), assert_non_null(p64), assert_non_null(ds64), assert_non_null(p32);
    assert_non_null(ds32), assert_non_null(s64), assert_non_null(s32);
    for (size_t i = 0; i < nq; i++) pb.q[i] = fa_f32_to_16(bf, (float)(2.0 * value16(in, random16(in, NULL))));
    for (size_t i = 0; i < no; i++) pb.dout[i] = random16(in, NULL);
    for (size_t i = 0; i < nk; i++) pb.k[i] = random16(in, NULL);
    for (size_t i = 0; i < nv; i++) pb.v[i] = random16(in, NULL);
    for (size_t i = 0; i < nq; i++) dq[i] = 0x7fff; /* NaN: a missed store shows */
    for (size_t i = 0; i < nk; i++) dk[i] = 0x7fff;
    for (size_t i = 0; i < nv; i++) dv[i] = 0x7fff;
#define Q(h, i, e) value16(in, pb.q[((size_t)(i) * hq + (h)) * dqk + (e)])
#define DO(h, i, e) value16(in, pb.dout[((size_t)(i) * hq + (h)) * dvv + (e)])
#define OUT(h, i, e) pb.out[((size_t)(i) * hq + (h)) * dvv + (e)]
#define K(j, e) value16(in, pb.k[(size_t)(j) * dqk + (e)])
#define V(j, e) value16(in, pb.v[(size_t)(j) * dvv + (e)])
#define AT(h, i, j) (((size_t)(h) * sq + (i)) * sk + (j))
    /* the forward: P in float64, O rounded, LSE in fp32; D in fp32 */
    for (int h = 0; h < hq; h++)
        for (int i = 0; i < sq; i++) {
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < sk; j++) {
                double dot = 0.0;
                float acc = 0.0f;
                for (int e = 0; e < dqk; e++) dot += Q(h, i, e) * K(j, e), acc += (float)Q(h, i, e) * (float)K(j, e);
                s64[j] = dot * pb.scale, s32[j] = acc * pb.scale;
                if (bwd_visible(c, i, j)) mx = fmax(mx, s64[j]);
            }
            for (int j = 0; j < sk; j++) sum += bwd_visible(c, i, j) ? exp(s64[j] - mx) : 0.0;
            const double lse64 = sum > 0.0 ? mx + log(sum) : -INFINITY;
            pb.lse[h * sq + i] = (float)lse64;
            for (int j = 0; j < sk; j++) {
                const int vis = bwd_visible(c, i, j);
                p64[AT(h, i, j)] = vis ? exp(s64[j] - lse64) : 0.0;
                p32[AT(h, i, j)] = vis ? expf(s32[j] - pb.lse[h * sq + i]) : 0.0f;
            }
            float dsum = 0.0f;
            for (int e = 0; e < dvv; e++) {
                double o = 0.0;
                for (int j = 0; j < sk; j++) o += p64[AT(h, i, j)] * V(j, e);
                OUT(h, i, e) = fa_f32_to_16(bf, (float)o);
                dsum += (float)DO(h, i, e) * (float)value16(in, OUT(h, i, e));
            }
            pb.dsum[h * sq + i] = dsum;
            /* dP and dS: float64 with the exact D = sum_j P dP, fp32 with the fp32 D */
            double d64 = 0.0;
            for (int j = 0; j < sk; j++) {
                double dp = 0.0;
                float dp32 = 0.0f;
                for (int e = 0; e < dvv; e++) dp += DO(h, i, e) * V(j, e), dp32 += (float)DO(h, i, e) * (float)V(j, e);
                ds64[AT(h, i, j)] = dp, ds32[AT(h, i, j)] = p32[AT(h, i, j)] * (dp32 - dsum);
                d64 += p64[AT(h, i, j)] * dp;
            }
            for (int j = 0; j < sk; j++) ds64[AT(h, i, j)] = p64[AT(h, i, j)] * (ds64[AT(h, i, j)] - d64);
        }

    block_backward(&pb, dq, dk, dv);

    grad_err gq = {0, 0, 0, 0}, gk = {0, 0, 0, 0}, gv = {0, 0, 0, 0};
    for (int h = 0; h < hq; h++)
        for (int i = 0; i < sq; i++) {
            int any = 0;
            for (int j = 0; j < sk; j++) any |= bwd_visible(c, i, j);
            for (int e = 0; e < dqk; e++) {
                double ref = 0.0;
                float naive = 0.0f;
                for (int j = 0; j < sk; j++) {
                    ref += ds64[AT(h, i, j)] * K(j, e);
                    naive += (float)round16(in, ds32[AT(h, i, j)]) * (float)K(j, e);
                }
                grad_add(in, &gq, dq[((size_t)i * hq + h) * dqk + e], naive * pb.scale, ref * pb.scale, !any);
            }
        }
    for (int j = 0; j < sk; j++) {
        int any = 0;
        for (int i = 0; i < sq; i++) any |= bwd_visible(c, i, j);
        for (int e = 0; e < dqk; e++) {
            double rk = 0.0;
            float nk32 = 0.0f;
            for (int h = 0; h < hq; h++)
                for (int i = 0; i < sq; i++) {
                    rk += ds64[AT(h, i, j)] * Q(h, i, e);
                    nk32 += (float)round16(in, ds32[AT(h, i, j)]) * (float)Q(h, i, e);
                }
            grad_add(in, &gk, dk[(size_t)j * dqk + e], nk32 * pb.scale, rk * pb.scale, !any);
        }
        for (int e = 0; e < dvv; e++) {
            double rv = 0.0;
            float nv32 = 0.0f;
            for (int h = 0; h < hq; h++)
                for (int i = 0; i < sq; i++) {
                    rv += p64[AT(h, i, j)] * DO(h, i, e);
                    nv32 += (float)round16(in, p32[AT(h, i, j)]) * (float)DO(h, i, e);
                }
            grad_add(in, &gv, dv[(size_t)j * dvv + e], nv32, rv, !any);
        }
    }
#undef Q
#undef DO
#undef OUT
#undef K
#undef V
#undef AT
    const double rq = grad_ratio(&gq), rk = grad_ratio(&gk), rv = grad_ratio(&gv);
    if (!quiet) {
        printf("  %-26s %-46s dQ %.3g (naive %.3g, ratio %.2f)  dK %.3g (naive %.3g, ratio %.2f)  dV %.3g (naive "
               "%.3g, ratio %.2f)\n", instr_name(in), c->what, gq.err, gq.naive, rq, gk.err, gk.naive, rk, gv.err,
               gv.naive, rv);
        if (!(rq <= 1.0)) fail_msg("%s %s: dQ error %.3g > 3 * naive %.3g + floor %.3g (%d bad)", instr_name(in),
                                   c->what, gq.err, gq.naive, gq.floor, gq.nan);
        if (!(rk <= 1.0)) fail_msg("%s %s: dK error %.3g > 3 * naive %.3g + floor %.3g (%d bad)", instr_name(in),
                                   c->what, gk.err, gk.naive, gk.floor, gk.nan);
        if (!(rv <= 1.0)) fail_msg("%s %s: dV error %.3g > 3 * naive %.3g + floor %.3g (%d bad)", instr_name(in),
                                   c->what, gv.err, gv.naive, gv.floor, gv.nan);
    }
    free(pb.q), free(pb.dout), free(pb.out), free(pb.k), free(pb.v), free(pb.lse), free(pb.dsum);
    free(dq), free(dk), free(dv), free(p64), free(ds64), free(p32), free(ds32), free(s64), free(s32);
    return g_bwd_break_p ? rv : fmax(rq, fmax(rk, rv));
}

static void test_backward(void **state)
{
    (void)state;
    /* one wave per block (the phases' own ranges), and blocks of 2 or 4 waves sharing staged tiles (block ranges,
       per-wave skipping) */
    const bwd_case cases[] = {
        {64, 64, 96, 96, -1, -1, 1, 64, 1, "d64 sq96 sk96"},
        {128, 128, 100, 130, -1, -1, 1, 64, 1, "d128 sq100 sk130"},
        {64, 64, 128, 128, -1, 0, 1, 64, 1, "d64 causal sq128"},
        {128, 128, 70, 150, -1, 0, 1, 32, 4, "d128 causal sq70 sk150, 32 rows, 4 waves"},
        {64, 64, 130, 130, 24, 0, 1, 64, 2, "d64 window (24, 0), 2 waves"},
        {128, 128, 96, 100, 16, 8, 1, 32, 4, "d128 window (16, 8), 32 rows, 4 waves"},
        {64, 64, 120, 40, -1, 0, 1, 64, 1, "d64 causal sq120 sk40 (empty rows)"},
        {64, 64, 160, 70, -1, 0, 1, 64, 4, "d64 causal sq160 sk70 (empty rows), 4 waves"},
        {64, 64, 64, 96, -1, 0, 2, 64, 2, "d64 causal GQA 2 heads, 2 waves"},
        {128, 64, 90, 110, -1, 0, 2, 32, 2, "dqk128 dv64 causal GQA 2 heads, 2 waves"},
        {32, 96, 70, 80, -1, -1, 1, 64, 2, "dqk32 dv96, 2 waves"},
        /* a window whose ranges end on tile edges (both shapes): a range one row short drops a visible tile */
        {64, 64, 160, 160, 33, 1, 1, 32, 1, "d64 window (33, 1), range ends on tile edges"},
    };
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_bwd_case(all_instrs[t], &cases[i], 0);
}

/* The check can fail: dV with the neighbouring row chunk's P (a wrong accumulator-to-operand mapping). */
static void test_backward_negative(void **state)
{
    (void)state;
    const bwd_case c = {64, 64, 96, 96, -1, -1, 1, 64, 2, "d64 sq96 sk96, P chunks swapped"};
    for (int t = 0; t < FA_MFMA_INSTR_COUNT; t++) {
        g_bwd_break_p = 1;
        const double r = run_bwd_case(all_instrs[t], &c, 1);
        g_bwd_break_p = 0;
        printf("  %-26s %s: dV ratio %.1f (must exceed 1)\n", instr_name(all_instrs[t]), c.what, r);
        if (!(r > 1.0)) fail_msg("%s: a swapped P chunk passed the dV check (ratio %g)", instr_name(all_instrs[t]), r);
    }
}

int main(void)
{
    printf("seed %llu (FA_TEST_SEED to repeat)\n", (unsigned long long)rng_seed_from_env());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts_cover),    cmocka_unit_test(test_layout_p_reuse),
        cmocka_unit_test(test_half_rounding),    cmocka_unit_test(test_products),
        cmocka_unit_test(test_products_negative), cmocka_unit_test(test_attention_tile),
        cmocka_unit_test(test_forward_block),     cmocka_unit_test(test_backward),
        cmocka_unit_test(test_backward_negative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
