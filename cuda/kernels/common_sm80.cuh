/*
 * What the sm80 kernel files share (fwd_sm80.cu, bwd_sm80.cu): 16-bit types, the mma.sync, ldmatrix and
 * cp.async wrappers, fp32 -> 16-bit packing, ex2, and the dropout Philox (api/fa_philox.h, bit for bit).
 * NVRTC gets it as a header (cuda_jit.c), so each kernel file includes it after its FA_* defaults;
 * FA_BF16 picks the 16-bit type. Plain C-style CUDA, no headers of its own.
 */
#ifndef FA_COMMON_SM80_CUH
#define FA_COMMON_SM80_CUH

#include "fa_vendor.cuh" /* the dropout Philox and the 16-bit conversions shared with the SIMT kernels */

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;

/* Mask features both kernels compile in or out (the host passes 0 for those a problem lacks): on by default. */
#ifndef FA_SOFTCAP
#define FA_SOFTCAP 1
#endif
#ifndef FA_ALIBI
#define FA_ALIBI 1
#endif
#ifndef FA_LOCAL
#define FA_LOCAL 1
#endif

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f
#define NEG_INF (-__int_as_float(0x7f800000))

/*
 * Turing (compute_75, PTX only; fp16): no bf16 mma, no cp.async, no cvt.rn.f16x2.f32. The helpers below keep
 * their sm_80 form and get sm_75 alternatives under __CUDA_ARCH__ < 800; the kernel body is the same.
 */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800 && FA_BF16
#error "common_sm80.cuh: bf16 needs sm_80 or newer (Turing has no bf16 mma); compile fp16 (FA_BF16=0) for compute_75"
#endif

static __device__ __forceinline__ void mma16816(float *c, const u32 *a, u32 b0, u32 b1)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    /*
     * m16n8k16 as two m16n8k8 along k. m16n8k16's A registers: a0 (row g, k 2t..2t+1), a1 (row g + 8, same k),
     * a2, a3 (the same rows, k + 8); B: b0 (k 2t..2t+1, column g), b1 (k + 8); g = lane / 4, t = lane % 4.
     * m16n8k8's A is {a0, a1} of that layout over k 0-7 and its B is b0, so the k halves are {a0, a1}, b0 and
     * {a2, a3}, b1; C/D have the same layout in both shapes.
     */
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(b0));
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[2]), "r"(a[3]), "r"(b1));
#elif FA_BF16
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* (lo, hi) floats to one register of two 16-bit values, lo in the low half. */
static __device__ __forceinline__ u32 pack2(float lo, float hi)
{
    u32 r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    /* cvt.rn.f16x2.f32 is sm_80+: two single conversions (same rounding), packed lo first */
    asm("{\n.reg .f16 l, h;\ncvt.rn.f16.f32 l, %1;\ncvt.rn.f16.f32 h, %2;\nmov.b32 %0, {l, h};\n}\n"
        : "=r"(r)
        : "f"(lo), "f"(hi));
#elif FA_BF16
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}

/* 2^x on the special-function unit, subnormal results flushed (they are below any P that matters) */
static __device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/*
 * The dropout mask, bit for bit api/fa_philox.h: Philox4x32-10 of counter (key / 4, query row, batch << 16 |
 * query head, offset lo) under key (seed lo, seed hi ^ offset hi); word key % 4 is the key's draw, dropped when
 * below the threshold.
 */
typedef fa_u4 drop_u4; /* fa_philox: fa_vendor.cuh, the one Philox of the CUDA and HIP kernels */
#define drop_philox fa_philox
static __device__ __forceinline__ u32 drop_word(drop_u4 v, int w) { return w == 0 ? v.x : w == 1 ? v.y : w == 2 ? v.z : v.w; }

static __device__ __forceinline__ u32 smem_addr(const void *p) { return (u32)__cvta_generic_to_shared(p); }

/* Four 8x8 matrices of 16-bit values from shared memory; thread t gives the row address of matrix t / 8. */
static __device__ __forceinline__ void ldsm4(u32 *r, const u16 *row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
}
static __device__ __forceinline__ void ldsm4t(u32 *r, const u16 *row)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row)));
}

/* 16 bytes global -> shared without passing through registers; bytes = 0 writes zeros. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
/*
 * No cp.async before sm_80: a synchronous 16-byte load and shared store (zeros when bytes is 0; the callers
 * pass 0 or 16). Commit and wait become no-ops: the __syncthreads before a tile is used orders the stores,
 * and the one after it keeps the refill of its buffer behind the last reader, as with cp.async.
 */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes)
{
    *(uint4 *)dst = bytes >= 16 ? *(const uint4 *)src : make_uint4(0, 0, 0, 0);
}
static __device__ __forceinline__ void cp_commit(void) {}
static __device__ __forceinline__ void cp_wait_group(void) {}
#define CP_WAIT(n) cp_wait_group()
#else
/*
 * FA_L2_PREFETCH (0, 64, 128 or 256): the L2 prefetch size hint of each copy (PTX ISA 7.4). K/V tiles are
 * whole rows of 128-256 bytes read front to back, so a hint lets L2 fetch a row's neighbours before the
 * copies that need them arrive. 0: no hint.
 */
#ifndef FA_L2_PREFETCH
#define FA_L2_PREFETCH 0
#endif
#if FA_L2_PREFETCH == 256
#define FA_CP_ASYNC "cp.async.cg.shared.global.L2::256B"
#elif FA_L2_PREFETCH == 128
#define FA_CP_ASYNC "cp.async.cg.shared.global.L2::128B"
#elif FA_L2_PREFETCH == 64
#define FA_CP_ASYNC "cp.async.cg.shared.global.L2::64B"
#else
#define FA_CP_ASYNC "cp.async.cg.shared.global"
#endif
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes)
{
    asm volatile(FA_CP_ASYNC " [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
}
static __device__ __forceinline__ void cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
/* Waits until at most n (a constant) commit groups are pending. */
#define CP_WAIT(n) asm volatile("cp.async.wait_group %0;\n" ::"n"(n))
#endif

/*
 * Rows [row0, row0 + rows) of `chunks` 16-byte chunks (row_stride elements apart, from src) into shared memory
 * (stride sstr), asynchronously, by `threads` threads, a multiple of chunks: every thread of the block
 * (threadIdx.x < threads). Columns at or past `real` and rows at or past `valid` are zero-filled (their source
 * address stays src). A thread's column is the same in every row it copies and its rows are threads / chunks
 * apart, so no chunk index is split into row and column per copy, and whole blocks of real rows and columns
 * skip the per-row test: the general loop was 19 % of the backward's dK/dV kernel's instructions (ncu, d128).
 * A pointer advanced from row to row cost a spill instead. The loop counts copies, not rows: with rows, threads
 * and chunks constants its trip count is one (threadIdx.x < threads puts a thread's first row below step), so it
 * unrolls into straight-line copies. Counted by rows it ended every copy with a test and a branch, and ptxas puts
 * three never-executed LDS before each cp.async that starts a basic block: 9 instructions a copy in the decode
 * kernel's SASS where 3 do the work.
 */
/*
 * The whole-block case of copy_rows_async: every row real, every column real. A row's chunks go to ROW_THREADS
 * threads, 8 where the chunk count allows, each taking chunks / ROW_THREADS of them 128 bytes apart: then one
 * 64-bit row address serves all of a thread's chunks of a row (immediate offsets), where one chunk a thread a row
 * cost a 64-bit add (2 instructions) per copy; a warp's copy still reads whole 128-byte lines (8 threads x 16
 * bytes of each of 4 rows). `own` is this thread's first chunk (row own_row, column own_col), so that a caller
 * walking tiles can keep it as a pointer advanced by a tile's rows (one 64-bit add) instead of its 64-bit row
 * product. threads: the block's, a multiple of ROW_THREADS.
 */
#define ROW_THREADS(chunks) ((chunks) % 8 == 0 ? 8 : (chunks))
static __device__ __forceinline__ int own_row(int chunks) { return threadIdx.x / ROW_THREADS(chunks); }
static __device__ __forceinline__ int own_col(int chunks) { return threadIdx.x % ROW_THREADS(chunks) * 8; }

static __device__ __forceinline__ void copy_rows_full(u16 *dst, int sstr, const u16 *own, i64 row_stride, int rows,
                                                      int chunks, int threads)
{
    const int tpr = ROW_THREADS(chunks), step = threads / tpr, r0 = own_row(chunks), x = own_col(chunks);
    const int n = rows / step + (r0 < rows % step); /* rows of this thread */
    #pragma unroll
    for (int i = 0; i < n; i++) {
        const u16 *src = own + (i64)(i * step) * row_stride;
        #pragma unroll
        for (int c = 0; c < chunks / tpr; c++) cp_async16(dst + (r0 + i * step) * sstr + x + c * tpr * 8, src + c * tpr * 8, 16);
    }
}

static __device__ __forceinline__ void copy_rows_async(u16 *dst, int sstr, const u16 *src, i64 row_stride, int row0,
                                                       int rows, int valid, int chunks, int real, int threads)
{
    const int step = threads / chunks, x = (threadIdx.x % chunks) * 8, r0 = threadIdx.x / chunks;
    const int n = rows / step + (r0 < rows % step); /* copies of this thread */
    if (row0 + rows <= valid && real >= chunks * 8) {
        copy_rows_full(dst, sstr, src + (i64)(row0 + own_row(chunks)) * row_stride + own_col(chunks), row_stride, rows,
                       chunks, threads);
        return;
    }
    #pragma unroll
    for (int i = 0; i < n; i++) {
        const int r = r0 + i * step, ok = row0 + r < valid && x < real;
        cp_async16(dst + r * sstr + x, ok ? src + (i64)(row0 + r) * row_stride + x : src, ok ? 16 : 0);
    }
}

#endif
