/* Per-calling-thread scratch memory, kept between calls so repeated calls do not fault fresh pages in. */
#ifndef CPU_SCRATCH_H
#define CPU_SCRATCH_H

#include <stddef.h>

/* 64-byte aligned, at least bytes long, owned by the calling thread until its next call; NULL if out of memory. */
float *cpu_scratch(size_t bytes);

#endif
