/*
 * Machine ceilings for flashport-bench: what the CPU could do at best, measured in the same run as the
 * attention numbers so every result can be printed as a fraction of it.
 *   - fp32 FMA peak: a loop of independent FMA chains on every OpenMP thread, compiled per instruction set
 *     (function-level target attributes, never -march=native) and picked by name at run time, so the peak
 *     matches the SIMD table the library's plan runs ("avx512bf16", "avx512", "avx2", "portable").
 *   - read bandwidth: a stream-like parallel sum over a buffer far larger than the last-level cache.
 */
#ifndef BENCH_CEILINGS_H
#define BENCH_CEILINGS_H

#include <stdint.h>

/* Peak fp32 GFLOP/s of the named instruction set on all OpenMP threads; <= 0 if this CPU cannot run it. */
double bench_fma_peak_gflops(const char *isa);

/* bf16 dot-product peak (AVX512_BF16 VDPBF16PS: 4 FLOPs per fp32 lane) on all threads; 0 where absent. */
double bench_bf16_dot_peak_gflops(void);

/* The best instruction set this CPU runs, honouring FLASHPORT_CPU_ISA as the library does. */
const char *bench_default_isa(void);

/* Read bandwidth in GB/s (1e9 B/s) on all OpenMP threads, over a buffer of about bytes; <= 0 on failure. */
double bench_read_bandwidth_gbs(int64_t bytes);

/* fp32 lanes of one register of the named instruction set (0 if unknown). */
int bench_isa_lanes(const char *isa);

#endif
