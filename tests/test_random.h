/*
 * Seeded random numbers for the cmocka suites: the seed comes from FA_TEST_SEED or the clock, and each
 * suite prints it so a failing run can be reproduced.
 */
#ifndef TEST_RANDOM_H
#define TEST_RANDOM_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static uint64_t g_seed;
static uint64_t g_rng;

/* FA_TEST_SEED if set, else the clock; returns the seed. */
static inline uint64_t rng_seed_from_env(void)
{
    const char *env = getenv("FA_TEST_SEED");
    if (env && *env) {
        g_seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        timespec_get(&ts, TIME_UTC);
        g_seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    g_rng = g_seed;
    return g_seed;
}

/* splitmix64 */
static inline uint64_t rng_u64(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double rng_unit(void) /* [0, 1) */
{
    return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}

static inline double rng_range(double lo, double hi) { return lo + (hi - lo) * rng_unit(); }

#endif
