/* Timing helpers shared by flashport-bench and flashport-demo: a monotonic clock and a qsort comparator
   for taking medians. */
#ifndef BENCH_TIME_H
#define BENCH_TIME_H

#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
