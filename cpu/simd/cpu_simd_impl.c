/*
 * SIMD kernels written once with GCC/Clang vector extensions; CMake compiles this file per instruction set
 * with CPU_SIMD_NAME / CPU_SIMD_LANES and the matching -m flags (and -ffp-contract=fast, so a*b+c is one FMA).
 */
#include <math.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "cpu_simd.h"

#ifndef CPU_SIMD_NAME
#error "compile with -DCPU_SIMD_NAME=<isa> -DCPU_SIMD_LANES=<n>"
#endif

#define VL CPU_SIMD_LANES
#define NV (CPU_SIMD_PAD / VL > 2 ? 2 : CPU_SIMD_PAD / VL) /* vectors per register block row */
#define NR (NV * VL)                                       /* columns per register block */
/*
 * Rows per register block: 8 with 32 vector registers (16 accumulators, and power-of-two row counts such as
 * a 128-row block leave no tail), 6 with 16 (12 accumulators, 2 B vectors and a broadcast fit).
 */
#if VL >= 16
#define MR 8
#else
#define MR 6
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));

/*
 * Unaligned vector access through a may_alias type of float alignment. Stores through memcpy made GCC park the
 * micro-kernel's 16 accumulators on the stack after the K loop and copy them out from there.
 */
typedef float vf_unaligned __attribute__((vector_size(VL * 4), aligned(4), may_alias));

static inline vf load(const float *p) { return *(const vf_unaligned *)p; }

static inline void store(float *p, vf v) { *(vf_unaligned *)p = v; }

/*
 * A broadcast. GCC turns (vf){0} + x into a scalar add and a register broadcast, two extra vector ops per
 * A element in the micro-kernel (measured 85 % of one core's FMA peak against 95 % with this form).
 */
static inline vf splat(float x)
{
#if defined(__GNUC__) && !defined(__clang__)
    vf v = {x};
    return __builtin_shuffle(v, (vi){0});
#else
    return (vf){0} + x;
#endif
}

/*
 * One MR x NR block of C: accumulators live in registers for the whole K loop. Generated for every row
 * count 1..MR so the M tail needs no padding, once reading A by rows (C += A B) and once by columns
 * (C += A^T B, A stored K x M: the transposed product needs no transposed copy).
 */
#define MICRO_KERNEL(NAME, R, A_AT, INIT)                                                                       \
    static void NAME##_##R(int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,       \
                           int64_t ldc)                                                                         \
    {                                                                                                           \
        vf acc[R][NV];                                                                                          \
        for (int r = 0; r < R; r++)                                                                             \
            for (int v = 0; v < NV; v++) acc[r][v] = INIT;                                                      \
        for (int64_t k = 0; k < K; k++) {                                                                       \
            vf b[NV];                                                                                           \
            for (int v = 0; v < NV; v++) b[v] = load(B + k * ldb + v * VL);                                     \
            for (int r = 0; r < R; r++) {                                                                       \
                vf a = splat(A[A_AT]);                                                                          \
                for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];                                             \
            }                                                                                                   \
        }                                                                                                       \
        for (int r = 0; r < R; r++)                                                                             \
            for (int v = 0; v < NV; v++) store(C + r * ldc + v * VL, acc[r][v]);                                \
    }
#define ACC_LOAD load(C + r * ldc + v * VL)
#define ACC_ZERO splat(0.0f)
#if MR == 8 && NV == 2
/*
 * The 8-row kernel, the one every full register block runs, with its 16 accumulators as named variables: GCC
 * kept the array form's accumulators in registers inside the K loop but zeroed (or loaded) them through the
 * stack before it and copied them out through the stack after it, about 90 cycles of a 2,048-cycle call at
 * K = 128 (one core's 128^3 GEMM: 110 -> 114 GFLOP/s, 94 % -> 97 % of its FMA peak).
 */
#define ROWS8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define ACC8_ZERO(r) vf c##r##0 = splat(0.0f), c##r##1 = c##r##0;
#define ACC8_LOAD(r) vf c##r##0 = load(C + r * ldc), c##r##1 = load(C + r * ldc + VL);
#define ACC8_STORE(r) store(C + r * ldc, c##r##0), store(C + r * ldc + VL, c##r##1);
#define MICRO_KERNEL_8(NAME, A_AT, DECLARE)                                                                     \
    static void NAME##_8(int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,         \
                         int64_t ldc)                                                                           \
    {                                                                                                           \
        ROWS8(DECLARE)                                                                                          \
        for (int64_t k = 0; k < K; k++) {                                                                       \
            vf b0 = load(B + k * ldb), b1 = load(B + k * ldb + VL);                                             \
            ROWS8(A_AT##_STEP)                                                                                  \
        }                                                                                                       \
        ROWS8(ACC8_STORE)                                                                                       \
    }
/* one k step of row r: its A element broadcast against the two B vectors */
#define A_ROWS_STEP(r) { vf a = splat(A[r * lda + k]); c##r##0 += a * b0; c##r##1 += a * b1; }
#define A_COLS_STEP(r) { vf a = splat(A[k * lda + r]); c##r##0 += a * b0; c##r##1 += a * b1; }
#define MICRO_KERNELS_7_8(NAME, A_AT, INIT) MICRO_KERNEL(NAME, 7, A_AT, INIT)
#define MICRO_7_8(NAME) , NAME##_7, NAME##_8
#elif MR == 8
#define MICRO_KERNELS_7_8(NAME, A_AT, INIT) MICRO_KERNEL(NAME, 7, A_AT, INIT) MICRO_KERNEL(NAME, 8, A_AT, INIT)
#define MICRO_7_8(NAME) , NAME##_7, NAME##_8
#else
#define MICRO_KERNELS_7_8(NAME, A_AT, INIT)
#define MICRO_7_8(NAME)
#endif
#define MICRO_KERNELS(NAME, A_AT, INIT)                                                                         \
    MICRO_KERNEL(NAME, 1, A_AT, INIT)                                                                           \
    MICRO_KERNEL(NAME, 2, A_AT, INIT)                                                                           \
    MICRO_KERNEL(NAME, 3, A_AT, INIT)                                                                           \
    MICRO_KERNEL(NAME, 4, A_AT, INIT)                                                                           \
    MICRO_KERNEL(NAME, 5, A_AT, INIT)                                                                           \
    MICRO_KERNEL(NAME, 6, A_AT, INIT)                                                                           \
    MICRO_KERNELS_7_8(NAME, A_AT, INIT)

MICRO_KERNELS(micro, r * lda + k, ACC_LOAD)
MICRO_KERNELS(micro_set, r * lda + k, ACC_ZERO) /* C = A B: no zeroing pass over C first */
MICRO_KERNELS(micro_tn, k * lda + r, ACC_LOAD)
#if MR == 8 && NV == 2
MICRO_KERNEL_8(micro, A_ROWS, ACC8_LOAD)
MICRO_KERNEL_8(micro_set, A_ROWS, ACC8_ZERO)
MICRO_KERNEL_8(micro_tn, A_COLS, ACC8_LOAD)
#endif

/* Indexed by row count 1..MR (the kernels for 7 and 8 rows exist only where MR is 8). */
typedef void (*micro_fn)(int64_t, const float *, int64_t, const float *, int64_t, float *, int64_t);
static const micro_fn micro[MR + 1] = {0, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6 MICRO_7_8(micro)};
static const micro_fn micro_set[MR + 1] = {0,           micro_set_1, micro_set_2, micro_set_3,
                                           micro_set_4, micro_set_5, micro_set_6 MICRO_7_8(micro_set)};
static const micro_fn micro_tn[MR + 1] = {0,          micro_tn_1, micro_tn_2, micro_tn_3,
                                          micro_tn_4, micro_tn_5, micro_tn_6 MICRO_7_8(micro_tn)};

static void gemm_with(const micro_fn *kernels, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc)
{
    /*
     * Column panels outermost: one K x NR panel of B stays in L1 while every row block streams past it. B is
     * stored in panels, so that panel is one contiguous run: with rows a whole tile width apart, its lines
     * fell into a few L1 sets and evicted each other (128^3 on one core: 109 -> 115 GFLOP/s stored in panels).
     */
    for (int64_t n0 = 0; n0 < N; n0 += NR) {
        const float *panel = B + n0 / CPU_SIMD_PAD * ldb + n0 % CPU_SIMD_PAD;
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            int64_t rows = M - m0 < MR ? M - m0 : MR;
            kernels[rows](K, A + m0 * lda, lda, panel, CPU_SIMD_PAD, C + m0 * ldc + n0, ldc);
        }
    }
}

static void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                 int64_t ldc)
{
    gemm_with(micro, M, N, K, A, lda, B, ldb, C, ldc);
}

static void gemm_set(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float *C, int64_t ldc)
{
    gemm_with(micro_set, M, N, K, A, lda, B, ldb, C, ldc);
}

static void gemm_tn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc)
{
    for (int64_t n0 = 0; n0 < N; n0 += NR)
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            int64_t rows = M - m0 < MR ? M - m0 : MR;
            micro_tn[rows](K, A + m0, lda, B + n0, ldb, C + m0 * ldc + n0, ldc);
        }
}

/*
 * Pairwise folding for horizontal sums. The vector is read as segments of 2h lanes, each holding partial
 * sums of one output. fold(x, y, h) halves every segment of x and of y: output segment s keeps x's sums in
 * its first h lanes and y's in the next h. After log2(VL) folds of VL vectors every lane holds one total.
 */
static inline vf fold(vf x, vf y, int h)
{
#if defined(__GNUC__) && !defined(__clang__)
    vi lo, hi;
    for (int i = 0; i < VL; i++) {
        int seg = i / (2 * h) * (2 * h), off = i % (2 * h);
        lo[i] = off < h ? seg + off : VL + seg + off - h;
        hi[i] = lo[i] + h;
    }
    return __builtin_shuffle(x, y, lo) + __builtin_shuffle(x, y, hi);
#else
    vf r;
    for (int i = 0; i < VL; i++) {
        int seg = i / (2 * h) * (2 * h), off = i % (2 * h);
        r[i] = off < h ? x[seg + off] + x[seg + off + h] : y[seg + off - h] + y[seg + off];
    }
    return r;
#endif
}

/* Sums of four vectors: out[i] = sum of v_i's lanes. */
static inline void hsum4(vf v0, vf v1, vf v2, vf v3, float out[4])
{
#if VL >= 4
    vf a = fold(v0, v1, VL / 2), b = fold(v2, v3, VL / 2);
    /* a: v0 sums in lanes [0, VL/2), v1 in [VL/2, VL); b likewise for v2, v3 */
    vf c = fold(a, b, VL / 4);
    /* c: segments of VL/2 lanes: [v0 | v2] then [v1 | v3], each VL/4 lanes */
#if VL >= 16
    c = fold(c, c, VL / 8);
#endif
#if VL >= 8
    c = fold(c, c, 1);
#endif
    out[0] = c[0];
    out[1] = c[VL / 2];
    out[2] = c[VL / 4];
    out[3] = c[VL / 2 + VL / 4];
#else
#error "CPU_SIMD_LANES must be at least 4"
#endif
}

/* t[r] = a_r . b over n floats (a multiple of VL), a_r = a0 + r * lda: b is loaded once for four rows. */
static inline void dot4(const float *a0, int64_t lda, const float *b, int64_t n, float t[4])
{
    const float *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    vf s0 = splat(0.0f), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t k = 0; k < n; k += VL) {
        vf bv = load(b + k);
        s0 += load(a0 + k) * bv;
        s1 += load(a1 + k) * bv;
        s2 += load(a2 + k) * bv;
        s3 += load(a3 + k) * bv;
    }
    hsum4(s0, s1, s2, s3, t);
}

/* v with lanes i and i ^ h swapped: log2(VL) butterfly steps reduce a vector with no serial chain of lanes. */
static inline vf swap_lanes(vf v, int h)
{
#if defined(__GNUC__) && !defined(__clang__)
    /* a literal index vector: one built in a loop stayed a run-time vector of masked broadcasts (perf) */
#define LANE_XOR4(h, b) (b) ^ (h), ((b) + 1) ^ (h), ((b) + 2) ^ (h), ((b) + 3) ^ (h)
#if VL == 16
#define LANE_XOR(h) (vi){LANE_XOR4(h, 0), LANE_XOR4(h, 4), LANE_XOR4(h, 8), LANE_XOR4(h, 12)}
#elif VL == 8
#define LANE_XOR(h) (vi){LANE_XOR4(h, 0), LANE_XOR4(h, 4)}
#else
#define LANE_XOR(h) (vi){LANE_XOR4(h, 0)}
#endif
    switch (h) {
    case 8: return __builtin_shuffle(v, LANE_XOR(8 % VL));
    case 4: return __builtin_shuffle(v, LANE_XOR(4 % VL));
    case 2: return __builtin_shuffle(v, LANE_XOR(2));
    default: return __builtin_shuffle(v, LANE_XOR(1));
    }
#else
    vf r;
    for (int i = 0; i < VL; i++) r[i] = v[i ^ h];
    return r;
#endif
}

/* a > b ? a : b per lane (b where either is NaN), one instruction where the ISA has it (GCC made two). */
static inline vf vmax2(vf a, vf b)
{
#if defined(__AVX512F__) && VL == 16
    return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && VL == 8
    return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#else
    vi gt = a > b;
    return (vf)(((vi)a & gt) | ((vi)b & ~gt));
#endif
}

/*
 * Lane sum and max as butterflies: a serial sum of 16 lanes was a third of exp_sum's time (perf annotate), as
 * softmax reduces every row of every tile.
 */
static inline float hsum(vf v)
{
    for (int h = VL / 2; h >= 1; h /= 2) v += swap_lanes(v, h);
    return v[0];
}

static inline float hmax(vf v)
{
    for (int h = VL / 2; h >= 1; h /= 2) v = vmax2(v, swap_lanes(v, h));
    return v[0];
}

/* Four rows of A against one row of B at a time: each B row is loaded once for all four dot products. */
static void gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc)
{
    int64_t m0 = 0;
    for (; m0 + 4 <= M; m0 += 4) {
        for (int64_t n = 0; n < N; n++) {
            float t[4];
            dot4(A + m0 * lda, lda, B + n * ldb, K, t);
            C[(m0 + 0) * ldc + n] += t[0];
            C[(m0 + 1) * ldc + n] += t[1];
            C[(m0 + 2) * ldc + n] += t[2];
            C[(m0 + 3) * ldc + n] += t[3];
        }
    }
    for (; m0 < M; m0++)
        for (int64_t n = 0; n < N; n++) {
            vf s0 = splat(0.0f);
            for (int64_t k = 0; k < K; k += VL) s0 += load(A + m0 * lda + k) * load(B + n * ldb + k);
            C[m0 * ldc + n] += hsum(s0);
        }
}

static inline float dot_tail(const float *a, const float *b, int64_t k, int64_t n)
{
    float t = 0.0f;
    for (; k < n; k++) t += a[k] * b[k];
    return t;
}

/*
 * Decode streams the cache at the rate of its arithmetic; the hardware prefetchers alone kept too few lines in
 * flight (loads of V were where the time went). This many keys ahead (all heads of a key: 64 KiB for 8 x 128
 * fp32) is asked for while the current key is used, into L2 (locality 2): fetched into L1 as well, the
 * stream measured 25-35 % slower (bench/NOTES.md section 3). Prefetches past the cache's end are harmless.
 */
#define DECODE_PREFETCH_KEYS 16

static inline void prefetch_row(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 2);
}

/*
 * Decode scores straight from a KV cache, keys in address order: for key j < nkeys and head x < heads,
 * s[(x * rows + r) * lds + j] += q[(x * rows + r) * ldq] . k[j * key_stride + x * head_stride] over dim.
 * All heads of one key sit side by side in the cache, so this reads it front to back, once.
 */
static void decode_scores(int64_t heads, int64_t rows, const float *q, int64_t ldq, const float *k,
                          int64_t head_stride, int64_t key_stride, int64_t nkeys, int64_t dim, float *s, int64_t lds)
{
    const int64_t vdim = dim / VL * VL;
    for (int64_t j = 0; j < nkeys; j++)
        for (int64_t x = 0; x < heads; x++) {
            const float *kr = k + j * key_stride + x * head_stride;
            prefetch_row(kr + DECODE_PREFETCH_KEYS * key_stride, dim);
            const float *qx = q + x * rows * ldq;
            float *sx = s + x * rows * lds + j;
            int64_t r = 0;
            for (; r + 4 <= rows; r += 4) {
                const float *a0 = qx + r * ldq, *a1 = a0 + ldq, *a2 = a1 + ldq, *a3 = a2 + ldq;
                float t[4];
                dot4(a0, ldq, kr, vdim, t);
                sx[(r + 0) * lds] += t[0] + dot_tail(a0, kr, vdim, dim);
                sx[(r + 1) * lds] += t[1] + dot_tail(a1, kr, vdim, dim);
                sx[(r + 2) * lds] += t[2] + dot_tail(a2, kr, vdim, dim);
                sx[(r + 3) * lds] += t[3] + dot_tail(a3, kr, vdim, dim);
            }
            for (; r < rows; r++) {
                const float *a0 = qx + r * ldq;
                vf s0 = splat(0.0f);
                for (int64_t d = 0; d < vdim; d += VL) s0 += load(a0 + d) * load(kr + d);
                sx[r * lds] += hsum(s0) + dot_tail(a0, kr, vdim, dim);
            }
        }
}

/*
 * Decode P V straight from a KV cache, keys in address order: for key j and head x, every row r of that head
 * gets o[(x * rows + r) * ldo] += p[(x * rows + r) * ldp + j] * v[j * key_stride + x * head_stride] over dim.
 * Keys go in chunks of DECODE_PV_KEYS: per chunk, head and block of MR rows, the micro-kernel keeps an
 * MR x NR block of O in registers over the chunk's keys (V rows read where they are, key_stride apart), so O
 * is loaded and stored once a chunk instead of once a key (per key, O's loads and stores were 8 of every 9
 * memory operations). The chunk (16 keys x heads x dim) stays in L1. Measured about even with the per-key
 * form on the 2-core VM, where decode waits on memory (bench/NOTES.md section 5).
 */
#define DECODE_PV_KEYS 16

static void decode_pv(int64_t heads, int64_t rows, const float *p, int64_t ldp, const float *v, int64_t head_stride,
                      int64_t key_stride, int64_t nkeys, int64_t dim, float *o, int64_t ldo)
{
    const int64_t bdim = dim / NR * NR; /* columns in whole register blocks; the rest key by key below */
    for (int64_t j0 = 0; j0 < nkeys; j0 += DECODE_PV_KEYS) {
        int64_t kn = nkeys - j0 < DECODE_PV_KEYS ? nkeys - j0 : DECODE_PV_KEYS;
        for (int64_t x = 0; x < heads; x++) {
            const float *vx = v + j0 * key_stride + x * head_stride;
            for (int64_t j = 0; j < kn; j++) prefetch_row(vx + (j + DECODE_PREFETCH_KEYS) * key_stride, dim);
            const float *px = p + x * rows * ldp + j0;
            float *ox = o + x * rows * ldo;
            for (int64_t m0 = 0; m0 < rows; m0 += MR) {
                int64_t mr = rows - m0 < MR ? rows - m0 : MR;
                for (int64_t n0 = 0; n0 < bdim; n0 += NR)
                    micro[mr](kn, px + m0 * ldp, ldp, vx + n0, key_stride, ox + m0 * ldo + n0, ldo);
            }
            for (int64_t r = 0; r < rows && bdim < dim; r++)
                for (int64_t j = 0; j < kn; j++) {
                    float pr = px[r * ldp + j];
                    const float *vr = vx + j * key_stride;
                    float *or_ = ox + r * ldo;
                    for (int64_t d = bdim; d < dim; d++) or_[d] += pr * vr[d];
                }
        }
    }
}

#ifdef CPU_SIMD_BF16
#include <immintrin.h>

/* MR x 32 block of C with VDPBF16PS: each instruction multiplies 16 columns by two k steps at once. */
#define MICRO_BF16(R)                                                                                           \
    static void micro_bf16_##R(int64_t K2, const uint32_t *A, int64_t lda, const uint32_t *B, int64_t ldb,      \
                               float *C, int64_t ldc)                                                           \
    {                                                                                                           \
        __m512 acc[R][2];                                                                                       \
        for (int r = 0; r < R; r++)                                                                             \
            for (int v = 0; v < 2; v++) acc[r][v] = _mm512_loadu_ps(C + r * ldc + v * 16);                      \
        for (int64_t k = 0; k < K2; k++) {                                                                      \
            __m512bh b0 = (__m512bh)_mm512_loadu_si512(B + k * ldb);                                            \
            __m512bh b1 = (__m512bh)_mm512_loadu_si512(B + k * ldb + 16);                                       \
            for (int r = 0; r < R; r++) {                                                                       \
                __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[r * lda + k]);                                  \
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);                                                 \
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);                                                 \
            }                                                                                                   \
        }                                                                                                       \
        for (int r = 0; r < R; r++)                                                                             \
            for (int v = 0; v < 2; v++) _mm512_storeu_ps(C + r * ldc + v * 16, acc[r][v]);                       \
    }

MICRO_BF16(1)
MICRO_BF16(2)
MICRO_BF16(3)
MICRO_BF16(4)
MICRO_BF16(5)
MICRO_BF16(6)
MICRO_BF16(7)
MICRO_BF16(8)

typedef void (*micro_bf16_fn)(int64_t, const uint32_t *, int64_t, const uint32_t *, int64_t, float *, int64_t);
static const micro_bf16_fn micro_bf16[MR + 1] = {0, micro_bf16_1, micro_bf16_2, micro_bf16_3,
                                                 micro_bf16_4, micro_bf16_5, micro_bf16_6, micro_bf16_7, micro_bf16_8};

static void gemm_bf16(int64_t M, int64_t N, int64_t K2, const uint32_t *A, int64_t lda, const uint32_t *B,
                      int64_t ldb, float *C, int64_t ldc)
{
    for (int64_t n0 = 0; n0 < N; n0 += 32)
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            int64_t rows = M - m0 < MR ? M - m0 : MR;
            micro_bf16[rows](K2, A + m0 * lda, lda, B + n0, ldb, C + m0 * ldc + n0, ldc);
        }
}
#endif

/*
 * Softmax exponentials. 2^g for |g| <= 1/2 by a degree-6 polynomial (least-squares fit for relative error,
 * under 1 ulp in fp32 Horner form), times 2^r for an integral r >= -125 (floor_lanes, below): AVX-512 scales
 * with vscalefps; the portable form builds 2^r in the exponent bits.
 */
static const float exp2_c6 = 1.5345803694799542e-04f, exp2_c5 = 1.3399930903688073e-03f,
                   exp2_c4 = 9.6184890717267990e-03f, exp2_c3 = 5.5503286421298980e-02f,
                   exp2_c2 = 2.4022646248340607e-01f, exp2_c1 = 6.9314718246459960e-01f;
static inline vf exp2_scaled(vf g, vf r)
{
    vf p = splat(exp2_c6);
    p = p * g + exp2_c5;
    p = p * g + exp2_c4;
    p = p * g + exp2_c3;
    p = p * g + exp2_c2;
    p = p * g + exp2_c1;
    p = p * g + 1.0f;
#if defined(__AVX512F__) && VL == 16
    return (vf)_mm512_scalef_ps((__m512)p, (__m512)r);
#else
    vi bits = (__builtin_convertvector(r, vi) + 127) << 23;
    return p * (vf)bits;
#endif
}

static inline vf round_nearest(vf x)
{
#if defined(__AVX512F__) && VL == 16
    return (vf)_mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    return (x + 12582912.0f) - 12582912.0f; /* 1.5 * 2^23: exact for |x| < 2^22 */
#endif
}

/*
 * Lanes whose exponential would fall below 2^-125 are flushed to exactly 0, and x is first raised to that
 * floor, so no instruction ever produces (or reads) a subnormal: an Intel core takes a microcode assist of
 * a hundred cycles or more for each vector instruction whose result underflows unless FTZ is set, which the
 * library must not change for its caller. Masked scores (-inf) went that way: a causal forward on a Xeon
 * spent 14 % of its samples in the softmax against 6 % without a mask (bench/NOTES.md section 11); AMD
 * cores handle subnormals at full speed. A value below 2^-125 of the row's largest is below fp32 resolution
 * of its sum. A NaN x stays NaN: it is kept, and the floor's max keeps it.
 */
#if defined(__AVX512F__) && VL == 16
typedef __mmask16 lanes;
static inline vf floor_lanes(vf x, float floor, lanes *keep)
{
    *keep = _mm512_cmp_ps_mask((__m512)x, _mm512_set1_ps(floor), _CMP_NLT_UQ);
    return (vf)_mm512_max_ps(_mm512_set1_ps(floor), (__m512)x); /* a NaN x is the second operand: kept */
}
static inline vf kept(vf e, lanes keep) { return (vf)_mm512_maskz_mov_ps(keep, (__m512)e); }
#else
typedef vi lanes;
static inline vf floor_lanes(vf x, float floor, lanes *keep)
{
    *keep = ~(x < splat(floor));
    return (vf)(((vi)x & *keep) | ((vi)splat(floor) & ~*keep));
}
static inline vf kept(vf e, lanes keep) { return (vf)((vi)e & keep); }
#endif

/*
 * 2^x for x <= 0: r = round(x), g = x - r (exact). The forward keeps its scores in log2 units (the softmax
 * scale times log2(e) folded into Q), so its softmax needs no split of ln2 and no multiply: 9 vector ops a
 * vector against 12 for e^x. exp was 5 % of a forward's time (perf).
 */
static inline vf vexp2_nonpos(vf x)
{
    lanes keep;
    x = floor_lanes(x, -125.0f, &keep);
    vf r = round_nearest(x);
    return kept(exp2_scaled(x - r, r), keep);
}

/*
 * e^x for x <= 0 (the backward's P): r = round(x log2 e), f = x - r ln2 in two steps (Cody-Waite split of ln2,
 * so f is accurate where the exponent is large), then 2^(f log2 e): g rounded costs under 0.1 ulp.
 */
static inline vf vexp_nonpos(vf x)
{
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f, log2e = 1.4426950408889634f;
    lanes keep;
    x = floor_lanes(x, -86.5f, &keep); /* e^-86.5 = 2^-124.8 */
    vf r = round_nearest(x * log2e);
    vf f = x - r * ln2_hi;
    f = f - r * ln2_lo;
    return kept(exp2_scaled(f * log2e, r), keep);
}

static float exp_sum(float *x, int64_t n, float m)
{
    vf sum = splat(0.0f);
    for (int64_t i = 0; i < n; i += VL) {
        vf e = vexp_nonpos(load(x + i) - m);
        store(x + i, e);
        sum += e;
    }
    return hsum(sum);
}

/*
 * The forward's online-softmax step over a whole score tile in one call: a call per row (max, then exp)
 * left each row's short dependency chains and lane reductions exposed, where consecutive rows in one loop
 * overlap them. Each loop also runs two independent chains (n is a multiple of 2 VL): one 2^x is a chain of
 * about 40 cycles of latency for 10 cycles of work (exp and max were 6 % of a forward; bench/NOTES.md).
 */
static void softmax2_rows(float *s, int64_t rows, int64_t n, int64_t ld, const float *m_in, float *m_out,
                          float *sum)
{
    for (int64_t r = 0; r < rows; r++) {
        float *x = s + r * ld;
        vf mx0 = splat(m_in[r]), mx1 = mx0;
        for (int64_t i = 0; i < n; i += 2 * VL) {
            mx0 = vmax2(load(x + i), mx0);
            mx1 = vmax2(load(x + i + VL), mx1);
        }
        float m = hmax(vmax2(mx0, mx1));
        m_out[r] = m;
        if (m == -INFINITY) {
            memset(x, 0, sizeof(float) * (size_t)n);
            sum[r] = 0.0f;
            continue;
        }
        vf s0 = splat(0.0f), s1 = s0;
        for (int64_t i = 0; i < n; i += 2 * VL) {
            vf e0 = vexp2_nonpos(load(x + i) - m), e1 = vexp2_nonpos(load(x + i + VL) - m);
            store(x + i, e0);
            store(x + i + VL, e1);
            s0 += e0;
            s1 += e1;
        }
        sum[r] = hsum(s0 + s1);
    }
}

static void scale(float *y, int64_t n, float a)
{
    for (int64_t i = 0; i < n; i += VL) store(y + i, load(y + i) * a);
}

static void add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += VL) store(y + i, load(y + i) + load(x + i));
}

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define STR2(x) #x
#define STR(x) STR2(x)
extern const cpu_simd CAT(cpu_simd_, CPU_SIMD_NAME);
const cpu_simd CAT(cpu_simd_, CPU_SIMD_NAME) = {
    .name = STR(CPU_SIMD_NAME),
    .lanes = VL,
    .gemm = gemm,
    .gemm_set = gemm_set,
    .gemm_tn = gemm_tn,
    .gemm_nt = gemm_nt,
    .decode_scores = decode_scores,
    .decode_pv = decode_pv,
#ifdef CPU_SIMD_BF16
    .gemm_bf16 = gemm_bf16,
#endif
    .exp_sum = exp_sum,
    .softmax2_rows = softmax2_rows,
    .scale = scale,
    .add = add,
};
