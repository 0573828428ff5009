/* Per-calling-thread scratch memory, kept between calls so repeated calls do not fault fresh pages in; thread helpers. */
#ifndef CPU_SCRATCH_H
#define CPU_SCRATCH_H

#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenMP threads a parallel region will use, and this thread's number in one (1 and 0 without OpenMP). */
static inline int cpu_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline int cpu_thread(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* 64-byte aligned, at least bytes long, owned by the calling thread until its next call; NULL if out of memory. */
float *cpu_scratch(size_t bytes);

#endif
