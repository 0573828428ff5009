/*
 * Host input data for flashport-bench: aligned buffers filled with uniform random values in [-1, 1] in any
 * of the library's floating dtypes. Filled in parallel, so each page is first touched by an OpenMP thread.
 */
#ifndef BENCH_DATA_H
#define BENCH_DATA_H

#include <stdint.h>

#include "flashport.h"

/* 64-byte aligned host memory (size rounded up), NULL on failure; release with free(). */
void *bench_alloc(int64_t bytes);

/* n elements of dtype at p, deterministic from seed. */
void bench_fill(void *p, fa_dtype dtype, int64_t n, uint64_t seed);

#endif
