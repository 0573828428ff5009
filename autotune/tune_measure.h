/*
 * Timing one candidate of a bucket on its representative problem, with flashport-bench's pieces: input sets in
 * the device's memory (fa_device_alloc + fa_device_copy on GPUs, bench_buffers.h), enough of them that one
 * round outgrows the last-level cache (L2 on GPUs) and rotated call by call, warm-up calls, and the median of
 * repeats between fa_device_synchronize calls (bench_timing.h).
 */
#ifndef TUNE_MEASURE_H
#define TUNE_MEASURE_H

#include <stddef.h>

#include "flashport.h"

typedef struct tune_bench tune_bench;

/* Buffers for desc on the device. NULL with the reason in err. */
tune_bench *tune_bench_create(int device, const fa_device_props *props, const fa_attn_desc *desc, char *err,
                              size_t errlen);
/*
 * Median seconds of fa_fwd (time_bwd 0) or fa_bwd (time_bwd 1; the forward runs first on every set, untimed, so
 * the backward reads real outputs) of a plan with these configs (NULL: heuristic). 0, or -1 with err.
 */
int tune_bench_time(tune_bench *b, const fa_tile_config *fwd, const fa_tile_config *bwd, int time_bwd, int warmup,
                    int repeats, double *seconds, char *err, size_t errlen);
void tune_bench_free(tune_bench *b);

#endif
