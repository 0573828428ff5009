/*
 * The vendor mapping for kernel sources shared by the CUDA and HIP backends (kernels/fwd_f32.cu): the few
 * spellings in which NVRTC/nvcc and hiprtc/hipcc differ, so one source serves both instead of a copy per vendor.
 * Everything else the shared kernels use (threadIdx, float4, __syncthreads, fmaf, expf, __int_as_float, extern
 * __shared__, __launch_bounds__) is spelled the same by both.
 *
 * HIP is recognised by __HIPCC__ (hipcc) or __HIPCC_RTC__ (hiprtc); otherwise the source is CUDA. The HIP
 * backend's NVIDIA verification build (hip/, FA_HIP_ON_NVIDIA) compiles with NVRTC, so it takes the CUDA side,
 * as HIP itself does on NVIDIA. Lane groups in the shared kernels are 16 lanes wide and aligned to 16, so they
 * lie inside one warp (32) or one wavefront (64) alike.
 *
 *   FA_SHFL_XOR(v, m)   v of the lane whose id is this lane's xor m (m < 16 here)
 *   FA_SYNC_WAVE()      lanes of one warp/wavefront see each other's shared-memory stores
 *   fa_f16_to_f32, fa_f32_to_f16, fa_bf16_to_f32, fa_f32_to_bf16   16-bit storage <-> fp32, nearest even
 *   fa_mul_rn(x, y)     x * y rounded to fp32 on its own, never fused into an FMA with the sum it feeds (the
 *                       append kernel's rotary must match the CPU's separately rounded arithmetic bit for bit)
 * and what every kernel of both backends computes the same way, written once:
 *   fa_io_t, io_to_f32, io_from_f32   the tensors' storage FA_STORAGE (0 fp32, 1 fp16, 2 bf16) and fp32
 *   fa_philox                         the dropout draws, Philox4x32-10 of api/fa_philox.h bit for bit
 */
#ifndef FA_VENDOR_CUH
#define FA_VENDOR_CUH

#if defined(__HIPCC__) || defined(__HIPCC_RTC__)
#define FA_VENDOR_HIP 1
#else
#define FA_VENDOR_HIP 0
#endif

#if FA_VENDOR_HIP
#if !defined(__HIPCC_RTC__)
#include <hip/hip_runtime.h> /* hipcc (the compile tests); hiprtc has the runtime's declarations built in */
#endif
/* ROCm 5.x has no *_sync shuffles: a wavefront runs in lockstep, and the width (warpSize) covers all 64 lanes */
#define FA_SHFL_XOR(v, m) __shfl_xor((v), (m))
/*
 * No __syncwarp before ROCm 6.2. A wavefront's LDS operations complete in order; what must not happen is the
 * compiler moving a lane's loads above its stores, as it may for accesses it believes private to one thread:
 * the fences order them at wavefront scope and the wave barrier keeps the code motion out.
 */
#define FA_SYNC_WAVE()                                                                                                \
    do {                                                                                                              \
        __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");                                                        \
        __builtin_amdgcn_wave_barrier();                                                                              \
        __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");                                                        \
    } while (0)

static __device__ __forceinline__ float fa_f16_to_f32(unsigned short h)
{
    return (float)__builtin_bit_cast(_Float16, h);
}
/*
 * HIP's __fmul_rn is a plain multiply that clang still contracts with a following add (hipcc -O3 fused the rotary's
 * x1 c - x2 s into v_fma_f32): the empty asm makes the rounded product opaque, so nothing can fuse it.
 */
static __device__ __forceinline__ float fa_mul_rn(float x, float y)
{
    float r = x * y;
    __asm__ volatile("" : "+v"(r));
    return r;
}
/* the conversion instruction rounds to nearest even (the default mode) */
static __device__ __forceinline__ unsigned short fa_f32_to_f16(float f)
{
    return __builtin_bit_cast(unsigned short, (_Float16)f);
}
#else
#define FA_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#define FA_SYNC_WAVE() __syncwarp()
#define fa_mul_rn(x, y) __fmul_rn((x), (y)) /* never contracted by nvcc/NVRTC */

/* no cuda_fp16.h under NVRTC without the toolkit's include folder: the conversions are one PTX instruction */
static __device__ __forceinline__ float fa_f16_to_f32(unsigned short h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
static __device__ __forceinline__ unsigned short fa_f32_to_f16(float f)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

/* bf16 is the upper half of an fp32: the same integer code for both vendors (pre-sm_90 / CDNA2 lack a convert) */
static __device__ __forceinline__ float fa_bf16_to_f32(unsigned short h)
{
    return __uint_as_float((unsigned)h << 16);
}
static __device__ __forceinline__ unsigned short fa_f32_to_bf16(float f)
{
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u); /* NaN stays a quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                                 /* ties to the even half */
    return (unsigned short)(u >> 16);
}

/* Tensor storage of the shared SIMT kernels: 0 fp32 (the CUDA backend's fp32 path), 1 fp16, 2 bf16 (bits). */
#ifndef FA_STORAGE
#define FA_STORAGE 0
#endif
#if FA_STORAGE == 0
typedef float fa_io_t;
#else
typedef unsigned short fa_io_t;
#endif
/* one element to fp32 and back, to nearest even (the identity for fp32 storage) */
static __device__ __forceinline__ float io_to_f32(fa_io_t x)
{
#if FA_STORAGE == 1
    return fa_f16_to_f32(x);
#elif FA_STORAGE == 2
    return fa_bf16_to_f32(x);
#else
    return x;
#endif
}
static __device__ __forceinline__ fa_io_t io_from_f32(float x)
{
#if FA_STORAGE == 1
    return fa_f32_to_f16(x);
#elif FA_STORAGE == 2
    return fa_f32_to_bf16(x);
#else
    return x;
#endif
}

/*
 * Philox4x32-10 of counter (c0..c3) under key (k0, k1), round for round fa_philox4x32_10 of api/fa_philox.h: the
 * dropout mask every backend draws (word w of a call is key 4 * c0 + w's draw; see fa_dropout_key_for).
 */
struct fa_u4 {
    unsigned x, y, z, w;
};
static __device__ __forceinline__ fa_u4 fa_philox(unsigned c0, unsigned c1, unsigned c2, unsigned c3, unsigned k0,
                                                  unsigned k1)
{
    #pragma unroll
    for (int r = 0; r < 10; r++) {
        const unsigned hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const unsigned hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    fa_u4 v;
    v.x = c0, v.y = c1, v.z = c2, v.w = c3;
    return v;
}

#endif
