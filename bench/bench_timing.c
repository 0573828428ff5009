/* The shared timing loop (bench_timing.h). */
#include "bench_timing.h"

#include <stdlib.h>

#include "bench_time.h"

fa_status bench_time_calls(int device, int warmup, int repeats, bench_call_fn fn, void *ctx, double *times,
                           const char **what)
{
    for (int call = 0; call < warmup + repeats; call++) {
        /* GPU calls return once launched: synchronize before the clock starts and after the call */
        fa_status st = fa_device_synchronize(device, NULL);
        if (st != FA_OK) {
            *what = "fa_device_synchronize before the call";
            return st;
        }
        double t0 = bench_now();
        if ((st = fn(ctx, call, what)) != FA_OK) return st;
        st = fa_device_synchronize(device, NULL);
        if (st != FA_OK) { /* an error the kernel met while running shows up here */
            *what = "fa_device_synchronize after the call";
            return st;
        }
        double t = bench_now() - t0;
        if (call >= warmup) times[call - warmup] = t;
    }
    return FA_OK;
}

double bench_median(double *times, int n)
{
    qsort(times, (size_t)n, sizeof times[0], bench_cmp_double);
    return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}
