/*
 * Machine ceilings: fp32 FMA peak per instruction set and stream-like read bandwidth (bench_ceilings.h).
 */
#include "bench_ceilings.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

/* Independent accumulator chains per thread: latency (4-6 cycles) x FMA pipes (2) with margin, and few
 * enough that the chains plus the two constants fit in 16 registers (AVX2, SSE). */
#define CHAINS 12

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- FMA loops, one per instruction set */

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float loop_avx512(int64_t iters, float seed)
{
    __m512 acc[CHAINS];
    const __m512 a = _mm512_set1_ps(0.99999994f), b = _mm512_set1_ps(1e-7f * seed);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps(seed + (float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    for (int c = 1; c < CHAINS; c++) acc[0] = _mm512_add_ps(acc[0], acc[c]);
    return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx2,fma"))) static float loop_avx2(int64_t iters, float seed)
{
    __m256 acc[CHAINS];
    const __m256 a = _mm256_set1_ps(0.99999994f), b = _mm256_set1_ps(1e-7f * seed);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps(seed + (float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    for (int c = 1; c < CHAINS; c++) acc[0] = _mm256_add_ps(acc[0], acc[c]);
    float out[8];
    _mm256_storeu_ps(out, acc[0]);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

/* VDPBF16PS: per 32-bit lane, two bf16 products added to an fp32 accumulator = 4 FLOPs per lane. */
__attribute__((target("avx512f,avx512bf16"))) static float loop_bf16dot(int64_t iters, float seed)
{
    __m512 acc[CHAINS];
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f * seed));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps(seed + (float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
    for (int c = 1; c < CHAINS; c++) acc[0] = _mm512_add_ps(acc[0], acc[c]);
    return _mm512_reduce_add_ps(acc[0]);
}

/* The x86-64 baseline has no FMA: the library's portable kernels issue a multiply and an add (2 FLOPs). */
static float loop_portable(int64_t iters, float seed)
{
    __m128 acc[CHAINS];
    const __m128 a = _mm_set1_ps(0.99999994f), b = _mm_set1_ps(1e-7f * seed);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm_set1_ps(seed + (float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm_add_ps(_mm_mul_ps(acc[c], a), b);
    for (int c = 1; c < CHAINS; c++) acc[0] = _mm_add_ps(acc[0], acc[c]);
    float out[4];
    _mm_storeu_ps(out, acc[0]);
    return out[0] + out[1] + out[2] + out[3];
}
#elif defined(__aarch64__)
static float loop_portable(int64_t iters, float seed)
{
    float32x4_t acc[CHAINS];
    const float32x4_t a = vdupq_n_f32(0.99999994f), b = vdupq_n_f32(1e-7f * seed);
    for (int c = 0; c < CHAINS; c++) acc[c] = vdupq_n_f32(seed + (float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = vfmaq_f32(b, acc[c], a);
    for (int c = 1; c < CHAINS; c++) acc[0] = vaddq_f32(acc[0], acc[c]);
    return vaddvq_f32(acc[0]);
}
#else
static float loop_portable(int64_t iters, float seed)
{
    float acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = seed + (float)c;
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * 0.99999994f + 1e-7f * seed;
    for (int c = 1; c < CHAINS; c++) acc[0] += acc[c];
    return acc[0];
}
#endif

typedef struct isa_loop {
    const char *name;
    int lanes;
    int flops_per_lane; /* per instruction of the loop */
    float (*loop)(int64_t, float);
} isa_loop;

/* The library's SIMD table names, each with the fp32 FMA loop of its widest registers. avx512bf16 runs its fp32
 * work on the AVX-512 FMA units; its bf16 dot-product peak is bench_bf16_dot_peak_gflops. */
static const isa_loop loops[] = {
#if defined(__x86_64__)
    {"avx512bf16", 16, 2, loop_avx512},
    {"avx512", 16, 2, loop_avx512},
    {"avx2", 8, 2, loop_avx2},
#endif
    {"portable", 4, 2, loop_portable},
};

#if defined(__x86_64__)
static const isa_loop bf16dot = {"avx512bf16", 16, 4, loop_bf16dot};
#endif

static int isa_supported(const char *name)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* The same tests the library's dispatcher makes (cpu/simd/cpu_simd_dispatch.c). */
    if (strcmp(name, "avx512bf16") == 0) return isa_supported("avx512") && __builtin_cpu_supports("avx512bf16");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("fma");
    if (strcmp(name, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return strcmp(name, "portable") == 0;
}

static const isa_loop *find_loop(const char *isa)
{
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++)
        if (isa && strcmp(loops[i].name, isa) == 0) return isa_supported(isa) ? &loops[i] : NULL;
    return NULL;
}

int bench_isa_lanes(const char *isa)
{
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++)
        if (isa && strcmp(loops[i].name, isa) == 0) return loops[i].lanes;
    return 0;
}

const char *bench_default_isa(void)
{
    const char *force = getenv("FLASHPORT_CPU_ISA");
    if (force && force[0] && find_loop(force)) return find_loop(force)->name;
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++)
        if (isa_supported(loops[i].name)) return loops[i].name;
    return "portable";
}

static volatile float sink;

/* Seconds for every thread to run iters iterations of the loop. */
static double timed_loop(const isa_loop *l, int64_t iters, int *threads_out)
{
    int threads = 1;
    double t0 = now();
#pragma omp parallel
    {
#ifdef _OPENMP
        float seed = 1.0f + (float)omp_get_thread_num();
#pragma omp single
        threads = omp_get_num_threads();
#else
        float seed = 1.0f;
#endif
        float r = l->loop(iters, seed);
#pragma omp critical
        sink += r;
    }
    double t = now() - t0;
    *threads_out = threads;
    return t;
}

static double loop_peak(const isa_loop *l)
{
    int threads = 1;
    int64_t iters = 1 << 16;
    double t = timed_loop(l, iters, &threads); /* also wakes the thread pool and the clocks */
    while (t < 0.02) {
        iters *= 4;
        t = timed_loop(l, iters, &threads);
    }
    iters = (int64_t)((double)iters * 0.25 / t) + 1; /* about a quarter second per trial */
    double best = 0.0;
    for (int trial = 0; trial < 3; trial++) {
        t = timed_loop(l, iters, &threads);
        double gflops = (double)threads * (double)iters * CHAINS * l->lanes * l->flops_per_lane / t * 1e-9;
        if (gflops > best) best = gflops;
    }
    return best;
}

double bench_fma_peak_gflops(const char *isa)
{
    const isa_loop *l = find_loop(isa);
    return l ? loop_peak(l) : 0.0;
}

double bench_bf16_dot_peak_gflops(void)
{
#if defined(__x86_64__)
    if (isa_supported("avx512bf16")) return loop_peak(&bf16dot);
#endif
    return 0.0;
}

/* ---------------------------------------------------------------- read bandwidth */

typedef float v4f __attribute__((vector_size(16)));

/* Each thread's share [lo, hi) of n floats, a multiple of 32 floats apart. */
static void share(int64_t n, int64_t *lo, int64_t *hi)
{
#ifdef _OPENMP
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    int64_t t = 0, nt = 1;
#endif
    int64_t blocks = n / 32, per = blocks / nt, extra = blocks % nt;
    *lo = 32 * (t * per + (t < extra ? t : extra));
    *hi = *lo + 32 * (per + (t < extra ? 1 : 0));
}

double bench_read_bandwidth_gbs(int64_t bytes)
{
    int64_t n = bytes / 4 / 32 * 32;
    if (n <= 0) return 0.0;
    float *buf = aligned_alloc(64, (size_t)n * 4);
    if (!buf) return 0.0;
    /* First touch by the thread that will read each part (the same static shares). */
#pragma omp parallel
    {
        int64_t lo, hi;
        share(n, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) buf[i] = (float)(i & 1023) * 1e-3f;
    }
    double best = 0.0;
    for (int trial = 0; trial < 6; trial++) {
        float total = 0.0f;
        double t0 = now();
#pragma omp parallel reduction(+ : total)
        {
            int64_t lo, hi;
            share(n, &lo, &hi);
            v4f acc[8] = {{0}};
            for (int64_t i = lo; i < hi; i += 32)
                for (int u = 0; u < 8; u++) {
                    v4f x;
                    memcpy(&x, buf + i + 4 * u, sizeof x);
                    acc[u] += x;
                }
            for (int u = 1; u < 8; u++) acc[0] += acc[u];
            total += acc[0][0] + acc[0][1] + acc[0][2] + acc[0][3];
        }
        double t = now() - t0;
        sink += total;
        if (trial > 0 && (double)n * 4 / t * 1e-9 > best) best = (double)n * 4 / t * 1e-9; /* trial 0 warms */
    }
    free(buf);
    return best;
}
