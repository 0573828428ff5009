/*
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3") and the dropout mask built
 * on it. Header-only plain C with no library calls so that every backend (C, CUDA C, OpenCL C, HIP) draws
 * the same mask from the same function: the forward, the backward and reference code must agree bit for bit.
 *
 * Mask definition: for (batch b, query head h, row i, column j), counter = (j / 4, i, b * 2^16 + h, offset lo),
 * key = (seed lo, seed hi ^ offset hi); the element is kept iff word (j % 4) of philox(counter, key) is
 * >= the threshold floor(p * 2^32) (clamped to 2^32 - 1).
 */
#ifndef FA_PHILOX_H
#define FA_PHILOX_H

#ifndef FA_PHILOX_FN
#define FA_PHILOX_FN static inline
#endif

#ifndef FA_PHILOX_NO_STDINT
#include <stdint.h>
#endif

typedef struct fa_u32x4 { uint32_t x, y, z, w; } fa_u32x4;

FA_PHILOX_FN uint32_t fa_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

FA_PHILOX_FN fa_u32x4 fa_philox4x32_10(fa_u32x4 ctr, uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = fa_mulhilo32(0xD2511F53u, ctr.x, &hi0);
        uint32_t lo1 = fa_mulhilo32(0xCD9E8D57u, ctr.z, &hi1);
        fa_u32x4 n;
        n.x = hi1 ^ ctr.y ^ k0;
        n.y = lo1;
        n.z = hi0 ^ ctr.w ^ k1;
        n.w = lo0;
        ctr = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return ctr;
}

/* Keep-threshold for probability p: an element is dropped iff its 32-bit draw is below it. */
FA_PHILOX_FN uint32_t fa_dropout_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    if (t <= 0.0) return 0u;
    if (t >= 4294967295.0) return 4294967295u;
    return (uint32_t)t;
}

/*
 * What a GPU kernel needs to draw the same mask as fa_dropout_draw4: the Philox key (seed lo, seed hi ^ offset
 * hi), the counter's fourth word (offset lo), the keep-threshold and 1 / (1 - p) for the kept values.
 */
typedef struct fa_dropout_key {
    uint32_t k0, k1, ctr3, threshold;
    float keep_scale;
} fa_dropout_key;

FA_PHILOX_FN fa_dropout_key fa_dropout_key_for(float p, uint64_t seed, uint64_t offset)
{
    fa_dropout_key k;
    k.k0 = (uint32_t)seed;
    k.k1 = (uint32_t)(seed >> 32) ^ (uint32_t)(offset >> 32);
    k.ctr3 = (uint32_t)offset;
    k.threshold = fa_dropout_threshold(p);
    k.keep_scale = 1.0f / (1.0f - p); /* as the CPU backend's keep_scale */
    return k;
}

/* Four consecutive columns' draws for (b, h, row, col4 = col / 4). */
FA_PHILOX_FN fa_u32x4 fa_dropout_draw4(uint64_t seed, uint64_t offset, uint32_t b, uint32_t h, uint32_t row,
                                       uint32_t col4)
{
    fa_u32x4 c;
    c.x = col4;
    c.y = row;
    c.z = (b << 16) + h;
    c.w = (uint32_t)offset;
    return fa_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32) ^ (uint32_t)(offset >> 32));
}

FA_PHILOX_FN uint32_t fa_u32x4_get(fa_u32x4 v, int i)
{
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

#endif
