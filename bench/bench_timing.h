/*
 * The timing loop flashport-bench and flashport-tune share: warm-up calls, then timed calls, each sample host wall
 * time between two fa_device_synchronize(device, NULL) calls (so a GPU's launch overhead is included and an error
 * a kernel meets while running is caught), and the median of the samples.
 */
#ifndef BENCH_TIMING_H
#define BENCH_TIMING_H

#include "flashport.h"

/*
 * One call of the work being measured. call counts from 0 over warm-up and timed calls alike, so the callback can
 * rotate through input sets (call % sets). On failure it returns the status and names the step in *what.
 */
typedef fa_status (*bench_call_fn)(void *ctx, int call, const char **what);

/*
 * warmup untimed calls, then repeats timed ones into times[repeats] (seconds). Returns FA_OK, or the first
 * failing status with the failing step in *what (the call's, or "fa_device_synchronize before/after the call").
 */
fa_status bench_time_calls(int device, int warmup, int repeats, bench_call_fn fn, void *ctx, double *times,
                           const char **what);

/* The median of n samples (sorts them in place). */
double bench_median(double *times, int n);

#endif
