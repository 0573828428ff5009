/*
 * Conformance suite: fp16 / bf16 / fp32 storage and rounding, written here on purpose so that the suite
 * shares no numeric code with the library it checks. All rounding is IEEE round-to-nearest-even.
 */
#ifndef CONF_DTYPE_H
#define CONF_DTYPE_H

#include <stdint.h>

#include "flashport.h"

/* Builds the fp16 decoding table (call once, single-threaded, before heavy use; everything works without it). */
void conf_dtype_init(void);

uint16_t conf_f32_to_f16_bits(float x);
float conf_f16_bits_to_f32(uint16_t h);
uint16_t conf_f32_to_bf16_bits(float x);
float conf_bf16_bits_to_f32(uint16_t h);

/* x rounded once (no double rounding) to the nearest value representable in dtype (fp32, fp16, bf16). */
double conf_round_to(fa_dtype dtype, double x);

/* Spacing of dtype values at |x| (the unit in the last place). */
double conf_ulp(fa_dtype dtype, double x);

/* Element access for the three storage dtypes the suite uses. */
double conf_load(fa_dtype dtype, const void *base, int64_t index);
void conf_store(fa_dtype dtype, void *base, int64_t index, double value); /* rounds to dtype */

/* 1 if the bits stored at base[index] encode a NaN or an infinity. */
int conf_is_nonfinite(fa_dtype dtype, const void *base, int64_t index);

#endif
