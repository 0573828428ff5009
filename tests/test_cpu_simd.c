/*
 * The CPU's SIMD kernels one by one, for every instruction set this CPU runs, against float64 references on
 * seeded random inputs: the GEMMs (B in column panels for gemm and gemm_set; C poisoned with NaN where its old
 * contents must be ignored, fenced by canaries where it must not be written), exp_sum (accuracy, -inf -> 0,
 * the sum) and max. The conformance suite covers them end to end; this finds which kernel broke.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "simd/cpu_simd.h"
#include "test_random.h"

static const char *const isas[] = {"avx512bf16", "avx512", "avx2", "portable"};
#define CANARY (-12345.0f)

static float *random_floats(int64_t n)
{
    float *x = malloc(sizeof(float) * (size_t)n);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_range(-1.0, 1.0);
    return x;
}

/* |got - want| within a few fp32 roundings of the sum of |terms| (the rule for a K-term dot product). */
static void expect_close(double got, double want, double abs_sum, int64_t k, const char *what, int64_t i, int64_t j)
{
    double tol = abs_sum * (double)(k + 2) * 1.2e-7 + 1e-30;
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: element (%lld, %lld) = %.9g, float64 reference %.9g (tolerance %.3g)", what, (long long)i,
                 (long long)j, got, want, tol);
}

/* C = [C +] A B with B stored in column panels: M rows around the register block size, tails in every dim. */
static void check_gemm(const cpu_simd *s, int set)
{
    const int64_t Ms[] = {1, 5, 6, 7, 8, 9, 13, 17, 64}, Ns[] = {32, 64, 96}, Ks[] = {1, 7, 64, 129};
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
                int64_t M = Ms[mi], N = Ns[ni], K = Ks[ki], lda = K + 3, ldc = N + CPU_SIMD_PAD;
                int64_t stride = (K + 2) * CPU_SIMD_PAD; /* panel stride above the minimum K * PAD */
                float *A = random_floats(M * lda), *B = random_floats(N / CPU_SIMD_PAD * stride),
                      *C = random_floats(M * ldc), *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
                assert_non_null(C0);
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = N; j < ldc; j++) C[i * ldc + j] = CANARY;
                if (set)
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = NAN;
                memcpy(C0, C, sizeof(float) * (size_t)(M * ldc));
                (set ? s->gemm_set : s->gemm)(M, N, K, A, lda, B, stride, C, ldc);
                for (int64_t i = 0; i < M; i++) {
                    for (int64_t j = 0; j < N; j++) {
                        double want = set ? 0.0 : C0[i * ldc + j], abs_sum = fabs(want);
                        for (int64_t k = 0; k < K; k++) {
                            double b = B[j / CPU_SIMD_PAD * stride + k * CPU_SIMD_PAD + j % CPU_SIMD_PAD];
                            want += (double)A[i * lda + k] * b;
                            abs_sum += fabs((double)A[i * lda + k] * b);
                        }
                        expect_close(C[i * ldc + j], want, abs_sum, K, set ? "gemm_set" : "gemm", i, j);
                    }
                    for (int64_t j = N; j < ldc; j++) assert_true(C[i * ldc + j] == CANARY);
                }
                free(A), free(B), free(C), free(C0);
            }
}

/* C += A^T B (A stored K x M) and C += A B^T (B stored N x K), both with B row-major. */
static void check_gemm_tn_nt(const cpu_simd *s)
{
    const int64_t Ms[] = {1, 6, 8, 11, 32}, Ns[] = {32, 64}, Ks[] = {32, 64, 96};
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
                int64_t M = Ms[mi], N = Ns[ni], K = Ks[ki], ldc = N + 16;
                for (int tn = 0; tn < 2; tn++) {
                    int64_t lda = tn ? M + 5 : K + 16, ldb = tn ? N + 32 : K + 16;
                    float *A = random_floats((tn ? K : M) * lda), *B = random_floats((tn ? K : N) * ldb),
                          *C = random_floats(M * ldc), *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
                    assert_non_null(C0);
                    memcpy(C0, C, sizeof(float) * (size_t)(M * ldc));
                    (tn ? s->gemm_tn : s->gemm_nt)(M, N, K, A, lda, B, ldb, C, ldc);
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) {
                            double want = C0[i * ldc + j], abs_sum = fabs(want);
                            for (int64_t k = 0; k < K; k++) {
                                double t = tn ? (double)A[k * lda + i] * B[k * ldb + j]
                                              : (double)A[i * lda + k] * B[j * ldb + k];
                                want += t;
                                abs_sum += fabs(t);
                            }
                            expect_close(C[i * ldc + j], want, abs_sum, K, tn ? "gemm_tn" : "gemm_nt", i, j);
                        }
                    free(A), free(B), free(C), free(C0);
                }
            }
}

/*
 * exp(x - m) (base 2: 2^(x - m)) within 2 fp32 ulps over the range softmax sees, exactly 0 for -inf and below
 * e^-86.5 / 2^-125 on every ISA (never a subnormal), and the sum.
 */
static void check_exp_base(const cpu_simd *s, int base2)
{
    const int64_t n = 4096;
    /* below this the kernels flush to exactly 0, so no instruction makes a subnormal (a slow assist on Intel) */
    const double flush = base2 ? -125.0 : -86.5;
    float *x = malloc(sizeof(float) * (size_t)n), *x0 = malloc(sizeof(float) * (size_t)n);
    assert_non_null(x);
    assert_non_null(x0);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_range(base2 ? -160.0 : -110.0, 3.0);
    x[7] = -INFINITY;
    x[100] = -1e30f;
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    memcpy(x0, x, sizeof(float) * (size_t)n);
    double sum, want_sum = 0.0, worst = 0.0;
    if (base2) {
        float m_in = -INFINITY, m_out = 0.0f, sum_out = 0.0f;
        s->softmax2_rows(x, 1, n, n, &m_in, &m_out, &sum_out);
        assert_true(m_out == m);
        sum = sum_out;
    } else {
        sum = s->exp_sum(x, n, m);
    }
    for (int64_t i = 0; i < n; i++) {
        float d = x0[i] - m; /* the difference is an fp32 input to exp in any fp32 softmax; exp is judged from it */
        double want = base2 ? exp2((double)d) : exp((double)d);
        want_sum += (float)want; /* lanes the kernel flushes to 0 are below fp32 resolution of the sum */
        assert_false(x[i] != 0.0f && fabsf(x[i]) < FLT_MIN); /* never a subnormal */
        if (d < flush) {
            assert_true(x[i] == 0.0f);
            continue;
        }
        double ulps = fabs(x[i] - want) / (want * 1.1920929e-7);
        worst = ulps > worst ? ulps : worst;
    }
    if (worst > 2.0) fail_msg("%s %s: worst error %.2f ulp (allowed 2)", s->name, base2 ? "softmax2_rows" : "exp_sum", worst);
    assert_true(fabs(sum - want_sum) <= want_sum * 1e-5);
    free(x), free(x0);
}

/*
 * softmax2_rows over several rows: a running max above the row's keeps the row in its units, a row that is
 * all -inf with no running max becomes 0 with sum 0 and max -inf, and a row with a NaN keeps it.
 */
static void check_softmax2_rows_edges(const cpu_simd *s)
{
    enum { N = 64, LD = 96 };
    float t[3 * LD], m_in[3] = {5.0f, -INFINITY, -INFINITY}, m_out[3], sum[3];
    for (int i = 0; i < 3 * LD; i++) t[i] = 1234.5f; /* canary past each row's N */
    for (int i = 0; i < N; i++) {
        t[i] = -(float)i / 8.0f;
        t[LD + i] = -INFINITY;
        t[2 * LD + i] = (float)(i % 7) - 3.0f;
    }
    t[2 * LD + 9] = NAN;
    s->softmax2_rows(t, 3, N, LD, m_in, m_out, sum);
    assert_true(m_out[0] == 5.0f);
    double want = 0.0;
    for (int i = 0; i < N; i++) {
        double e = exp2(-(double)i / 8.0 - 5.0);
        assert_true(fabs(t[i] - e) <= e * 2.4e-7);
        want += e;
    }
    assert_true(fabs(sum[0] - want) <= want * 1e-5);
    assert_true(m_out[1] == -INFINITY && sum[1] == 0.0f);
    for (int i = 0; i < N; i++) assert_true(t[LD + i] == 0.0f);
    assert_true(isnan(sum[2]));
    for (int r = 0; r < 3; r++)
        for (int i = N; i < LD; i++) assert_true(t[r * LD + i] == 1234.5f);
}

static void check_exp_and_softmax(const cpu_simd *s)
{
    check_exp_base(s, 0);
    check_exp_base(s, 1);
    check_softmax2_rows_edges(s);
}

static void run_all(void (*check)(const cpu_simd *))
{
    int ran = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        const cpu_simd *s = cpu_simd_by_name(isas[i]);
        if (!s) continue;
        check(s);
        ran++;
    }
    assert_true(ran >= 1); /* portable always runs */
}

static void check_gemm_add(const cpu_simd *s) { check_gemm(s, 0); }
static void check_gemm_set(const cpu_simd *s) { check_gemm(s, 1); }
static void test_gemm(void **state) { (void)state, run_all(check_gemm_add); }
static void test_gemm_set(void **state) { (void)state, run_all(check_gemm_set); }
static void test_gemm_tn_nt(void **state) { (void)state, run_all(check_gemm_tn_nt); }
static void test_exp_and_softmax(void **state) { (void)state, run_all(check_exp_and_softmax); }

int main(void)
{
    printf("seed %llu (FA_TEST_SEED to repeat)\n", (unsigned long long)rng_seed_from_env());
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        printf("%s: %s\n", isas[i], cpu_simd_by_name(isas[i]) ? "tested" : "not supported by this CPU");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_set),
        cmocka_unit_test(test_gemm_tn_nt),
        cmocka_unit_test(test_exp_and_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
