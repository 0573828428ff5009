/*
 * What the OpenCL kernels share (fwd.cl, bwd.cl): the storage type and its conversions to and from fp32, and the
 * library's dropout Philox. The host builds each program from its parameter header, this file, then the kernel
 * file (cl_program_get), so the two kernels cannot drift apart in how they read, round or draw.
 * Needs FA_DTYPE (0 fp32, 1 fp16, 2 bf16) and FA_DROPOUT (0/1) defined.
 */

#if FA_DTYPE == 0
typedef float fa_t;
#elif FA_DTYPE == 1
typedef half fa_t; /* pointers only (allowed without cl_khr_fp16); every access is vload_half / vstore_half */
#elif FA_DTYPE == 2
typedef ushort fa_t;
#else
#error "FA_DTYPE must be 0 (fp32), 1 (fp16) or 2 (bf16)"
#endif

/* Element i of p. */
static inline float ld1(__global const fa_t *p, long i)
{
#if FA_DTYPE == 0
    return p[i];
#elif FA_DTYPE == 1
    return vload_half(0, p + i);
#else
    return as_float((uint)p[i] << 16);
#endif
}

/* Elements p[0..3]; vload needs only element alignment (the host promises no more). */
static inline float4 ld4(__global const fa_t *p)
{
#if FA_DTYPE == 0
    return vload4(0, p);
#elif FA_DTYPE == 1
    return vload_half4(0, p);
#else
    return as_float4(convert_uint4(vload4(0, p)) << 16);
#endif
}

#if FA_DTYPE == 2
/* fp32 -> bf16, round to nearest even; a NaN stays a NaN (quiet bit set, so truncation cannot make it inf). */
static inline ushort bf16_rne(float x)
{
    const uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
    return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#endif

static inline void st1(__global fa_t *p, float x)
{
#if FA_DTYPE == 0
    *p = x;
#elif FA_DTYPE == 1
    vstore_half_rte(x, 0, p);
#else
    *p = bf16_rne(x);
#endif
}

/* p[0..n) = v[0..n), n in 1..4 (columns past a row's end are not written) */
static inline void st4(__global fa_t *p, float4 v, int n)
{
    if (n >= 4) {
#if FA_DTYPE == 0
        vstore4(v, 0, p);
#elif FA_DTYPE == 1
        vstore_half4_rte(v, 0, p);
#else
        vstore4((ushort4)(bf16_rne(v.x), bf16_rne(v.y), bf16_rne(v.z), bf16_rne(v.w)), 0, p);
#endif
        return;
    }
    st1(p, v.x);
    if (n > 1) st1(p + 1, v.y);
    if (n > 2) st1(p + 2, v.z);
}

/* Elements [x, x + 4) of a row with `real` elements (x < real), zeros past it. */
static inline float4 load4(__global const fa_t *row, int x, int real)
{
    if (x + 4 <= real) return ld4(row + x);
    float4 v = (float4)(0.0f);
    v.x = ld1(row, x);
    if (x + 1 < real) v.y = ld1(row, x + 1);
    if (x + 2 < real) v.z = ld1(row, x + 2);
    return v;
}

static inline float comp(float4 v, int e) { return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w; }

#if FA_DROPOUT
/*
 * Philox4x32-10 as fa_philox4x32_10 in api/fa_philox.h, round for round, so that this kernel drops exactly the
 * elements fa_dropout_keep drops (the CPU and CUDA backends and the conformance reference use the same
 * function). Counter (col / 4, row, (batch << 16) + head, offset lo), key (seed lo, seed hi ^ offset hi); the
 * four words are the draws of columns 4 (col / 4) .. + 3. mul_hi is the high word of the 32 x 32 -> 64 product,
 * the plain product (mod 2^32) its low word.
 */
static inline uint4 drop_philox(uint4 ctr, uint k0, uint k1)
{
    for (int r = 0; r < 10; r++) {
        const uint hi0 = mul_hi(0xD2511F53u, ctr.x), lo0 = 0xD2511F53u * ctr.x;
        const uint hi1 = mul_hi(0xCD9E8D57u, ctr.z), lo1 = 0xCD9E8D57u * ctr.z;
        ctr = (uint4)(hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0);
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return ctr;
}
#endif
