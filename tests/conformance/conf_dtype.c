/* IEEE conversions for the conformance suite (independent of the library's own converters). */
#include "conf_dtype.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t conf_f32_to_f16_bits(float x) {
    /* Round exactly once, in double (which holds every float and every fp16 exactly), then encode. */
    uint32_t sign = (f32_bits(x) >> 16) & 0x8000u;
    if (isnan(x)) return (uint16_t)(sign | 0x7e00u);
    double r = conf_round_to(FA_DTYPE_F16, (double)x);
    double a = fabs(r);
    if (isinf(a)) return (uint16_t)(sign | 0x7c00u);
    if (a == 0.0) return (uint16_t)sign;
    if (a < 0x1.0p-14) /* subnormal: a = m * 2^-24 */
        return (uint16_t)(sign | (uint32_t)ldexp(a, 24));
    uint64_t u; /* normal: exponent and the top 10 significand bits of the double (exact: r has 11 bits) */
    memcpy(&u, &a, sizeof u);
    uint32_t e = (uint32_t)(u >> 52) - 1023u + 15u, mant = (uint32_t)(u >> 42) & 0x3ffu;
    return (uint16_t)(sign | (e << 10) | mant);
}

static float f16_decode(uint16_t h) {
    double sign = (h & 0x8000u) ? -1.0 : 1.0;
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    if (exp == 0x1f) return mant ? NAN : (float)(sign * INFINITY);
    if (exp == 0) return (float)(sign * ldexp(mant, -24));
    return (float)(sign * ldexp(1024 + mant, exp - 25));
}

uint16_t conf_f32_to_bf16_bits(float x) {
    uint32_t u = f32_bits(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40u); /* keep it a (quiet) NaN */
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb; /* round to nearest even on the 16 dropped bits; overflows to inf correctly */
    return (uint16_t)(u >> 16);
}

/* Every fp16 value, decoded once (loads dominate the suite's own time otherwise). */
static float f16_table[65536];
static int f16_table_ready;

void conf_dtype_init(void) {
    if (__atomic_load_n(&f16_table_ready, __ATOMIC_ACQUIRE)) return;
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = f16_decode((uint16_t)i);
    __atomic_store_n(&f16_table_ready, 1, __ATOMIC_RELEASE);
}

float conf_f16_bits_to_f32(uint16_t h) {
    if (!__atomic_load_n(&f16_table_ready, __ATOMIC_ACQUIRE)) return f16_decode(h);
    return f16_table[h];
}

float conf_bf16_bits_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

double conf_round_to(fa_dtype dtype, double x) {
    if (dtype == FA_DTYPE_F32) return (double)(float)x; /* one IEEE rounding, subnormals and overflow included */
    int mant_bits, emin;
    double maxval;
    switch (dtype) {
    case FA_DTYPE_F16: mant_bits = 10; emin = -14; maxval = 65504.0; break;
    case FA_DTYPE_BF16: mant_bits = 7; emin = -126; maxval = ldexp(255.0, 120); break;
    default: mant_bits = 23; emin = -126; maxval = (double)3.40282346638528859811704183484516925440e+38; break;
    }
    if (x == 0.0 || !isfinite(x)) return x;
    if (fabs(x) >= ldexp(1.0, emin)) { /* normal range: round the double's significand in place (ties to even) */
        uint64_t u;
        memcpy(&u, &x, sizeof u);
        int shift = 52 - mant_bits;
        u += ((uint64_t)1 << (shift - 1)) - 1 + ((u >> shift) & 1u); /* a carry moves into the exponent */
        u &= ~(((uint64_t)1 << shift) - 1);
        double r;
        memcpy(&r, &u, sizeof r);
        return fabs(r) > maxval ? copysign(INFINITY, x) : r;
    }
    int e = ilogb(x);
    if (e < emin) e = emin; /* subnormals share the smallest normal exponent's quantum */
    double r = ldexp(nearbyint(ldexp(x, mant_bits - e)), e - mant_bits); /* default mode: ties to even */
    if (fabs(r) > maxval) return copysign(INFINITY, x);
    return r;
}

double conf_ulp(fa_dtype dtype, double x) {
    int mant_bits = dtype == FA_DTYPE_F16 ? 10 : dtype == FA_DTYPE_BF16 ? 7 : 23;
    int emin = dtype == FA_DTYPE_F16 ? -14 : -126;
    int e = (x == 0.0 || !isfinite(x)) ? emin : ilogb(x);
    if (e < emin) e = emin;
    return ldexp(1.0, e - mant_bits);
}

double conf_load(fa_dtype dtype, const void *base, int64_t index) {
    switch (dtype) {
    case FA_DTYPE_F16: return conf_f16_bits_to_f32(((const uint16_t *)base)[index]);
    case FA_DTYPE_BF16: return conf_bf16_bits_to_f32(((const uint16_t *)base)[index]);
    default: return ((const float *)base)[index];
    }
}

void conf_store(fa_dtype dtype, void *base, int64_t index, double value) {
    switch (dtype) {
    case FA_DTYPE_F16: ((uint16_t *)base)[index] = conf_f32_to_f16_bits((float)conf_round_to(dtype, value)); break;
    case FA_DTYPE_BF16:
        ((uint16_t *)base)[index] = conf_f32_to_bf16_bits((float)conf_round_to(dtype, value));
        break;
    default: ((float *)base)[index] = (float)value; break;
    }
}

int conf_is_nonfinite(fa_dtype dtype, const void *base, int64_t index) {
    switch (dtype) {
    case FA_DTYPE_F16: return (((const uint16_t *)base)[index] & 0x7c00u) == 0x7c00u;
    case FA_DTYPE_BF16: return (((const uint16_t *)base)[index] & 0x7f80u) == 0x7f80u;
    default: return !isfinite(((const float *)base)[index]);
    }
}
