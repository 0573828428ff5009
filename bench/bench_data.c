/*
 * Host input data for flashport-bench (bench_data.h).
 */
#include "bench_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void *bench_alloc(int64_t bytes)
{
    if (bytes <= 0) bytes = 64;
    return aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; inputs are finite */
    return (uint16_t)(u >> 16);
}

/* IEEE half, round to nearest even, for finite |f| < 65504 (our data lie in [-1, 1]). */
static uint16_t to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    float a = fabsf(f);
    if (a < 6.103515625e-05f) /* subnormal half: multiples of 2^-24 */
        return (uint16_t)(sign | (uint16_t)lrintf(a * 16777216.0f));
    uint32_t e = ((u >> 23) & 0xffu) - 127 + 15, m = u & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13), rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* may carry into the exponent: still right */
    return (uint16_t)(sign | h);
}

void bench_fill(void *p, fa_dtype dtype, int64_t n, uint64_t seed)
{
    const int64_t chunk = 1 << 16;
    int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        uint64_t s = seed * 0x2545F4914F6CDD1Dull + (uint64_t)c;
        int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < end; i++) {
            float x = (float)(splitmix(&s) >> 40) * (2.0f / 16777216.0f) - 1.0f;
            if (dtype == FA_DTYPE_F32)
                ((float *)p)[i] = x;
            else if (dtype == FA_DTYPE_BF16)
                ((uint16_t *)p)[i] = to_bf16(x);
            else if (dtype == FA_DTYPE_F16)
                ((uint16_t *)p)[i] = to_f16(x);
            else
                ((uint8_t *)p)[i] = 0; /* fp8: not measured on the CPU; zeros keep the buffer defined */
        }
    }
}
