/*
 * The CPU's SIMD kernels, compiled once per instruction set (cpu_simd_impl.c built with AVX-512, with
 * AVX2+FMA and with the x86-64 / AArch64 baseline) and chosen at run time from what the CPU reports.
 * The shipped build never uses -march=native.
 *
 * Every matrix the kernels touch is a scratch buffer of ours whose rows are padded to CPU_SIMD_PAD floats
 * (zeros in the padding), so the kernels never need column tails.
 */
#ifndef CPU_SIMD_H
#define CPU_SIMD_H

#include <stdint.h>

#define CPU_SIMD_PAD 32 /* row padding in floats: the widest register block (2 x 16 lanes) */

static inline int64_t cpu_pad(int64_t n) { return (n + CPU_SIMD_PAD - 1) / CPU_SIMD_PAD * CPU_SIMD_PAD; }

typedef struct cpu_simd {
    const char *name; /* "avx512", "avx2", "portable" */
    int lanes;        /* fp32 lanes per register */
    /*
     * C[M x N] += A[M x K] . B[K x N]: A and C row-major with row strides lda, ldc; N a multiple of CPU_SIMD_PAD.
     * B is stored in column panels of CPU_SIMD_PAD: element (k, n) at B[(n / PAD) * ldb + k * PAD + n % PAD]
     * (ldb, the panel stride, at least K * PAD), so each panel the micro-kernel sweeps is contiguous.
     */
    void (*gemm)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                 int64_t ldc);
    /* C[M x N] = A[M x K] . B[K x N]: as gemm, but C's old contents are ignored (no zeroing pass first). */
    void (*gemm_set)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float *C, int64_t ldc);
    /* C[M x N] += A[K x M]^T . B[K x N]: A stored K x M with row stride lda (e.g. a score tile, for dV, dK), B
     * row-major with row stride ldb (not in panels). */
    void (*gemm_tn)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc);
    /*
     * C[M x N] += A[M x K] . B[N x K]^T (B row-major, e.g. keys x dim: no transposed copy needed); K a multiple
     * of CPU_SIMD_PAD. Suited to few rows (decode), where packing K^T would cost more than the product.
     */
    void (*gemm_nt)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc);
    /*
     * Decode over an fp32 KV cache read in place, in address order (any dim; heads x rows query rows, rows
     * of head x at q + x * rows * ldq): s[(x * rows + r) * lds + j] += q_row . k[j * key_stride + x * head_stride]
     * for j < nkeys; and o[(x * rows + r) * ldo] += p[(x * rows + r) * ldp + j] * v[j * key_stride + ...].
     */
    void (*decode_scores)(int64_t heads, int64_t rows, const float *q, int64_t ldq, const float *k,
                          int64_t head_stride, int64_t key_stride, int64_t nkeys, int64_t dim, float *s, int64_t lds);
    void (*decode_pv)(int64_t heads, int64_t rows, const float *p, int64_t ldp, const float *v, int64_t head_stride,
                      int64_t key_stride, int64_t nkeys, int64_t dim, float *o, int64_t ldo);
    /*
     * bf16 dot products (NULL where the CPU has none): C[M x N] += A . B with K2 pairs of bf16 per row:
     * A[m][k] holds the bits of (a[m][2k], a[m][2k+1]), B[k][n] those of (b[2k][n], b[2k+1][n]) (low half
     * first). N a multiple of CPU_SIMD_PAD. Products are exact, sums in fp32 (AVX512_BF16 VDPBF16PS).
     */
    void (*gemm_bf16)(int64_t M, int64_t N, int64_t K2, const uint32_t *A, int64_t lda, const uint32_t *B,
                      int64_t ldb, float *C, int64_t ldc);
    /* x[i] = exp(x[i] - m) for i < n (n a multiple of CPU_SIMD_PAD); -inf gives 0. Returns the sum. */
    float (*exp_sum)(float *x, int64_t n, float m);
    /*
     * The forward's online-softmax step in base 2 (its scores are in log2 units: 2^x is cheaper than e^x) over
     * a tile of rows x n scores (row stride ld, n a multiple of CPU_SIMD_PAD): m_out[r] = max(m_in[r], the
     * row's max); the row becomes 2^(s - m_out[r]) and sum[r] its sum. A row whose max is -inf (every key
     * masked so far) becomes 0 with sum 0.
     */
    void (*softmax2_rows)(float *s, int64_t rows, int64_t n, int64_t ld, const float *m_in, float *m_out,
                          float *sum);
    /* y[i] *= a for i < n (n a multiple of CPU_SIMD_PAD) */
    void (*scale)(float *y, int64_t n, float a);
    /* y[i] += x[i] for i < n (n a multiple of CPU_SIMD_PAD) */
    void (*add)(float *y, const float *x, int64_t n);
} cpu_simd;

/* The best table this CPU supports; FLASHPORT_CPU_ISA=avx512|avx2|portable forces one it supports. */
const cpu_simd *cpu_simd_get(void);
/* The table by name if this CPU can run it, else NULL (the conformance suite runs every one). */
const cpu_simd *cpu_simd_by_name(const char *name);

#endif
