/*
 * Exact fp32 forward ("fp32 SIMT"): CUDA-core FMAs only, no tensor cores (tf32's 10-bit mantissa would miss the
 * conformance bound of 2x a naive fp32 implementation's error). Compiled at run time for one specialisation, by
 * NVRTC for the CUDA backend (cuda_fwd_f32.c) and by hiprtc for the HIP backend (hip/hip_fwd.c; NVRTC again in its
 * NVIDIA verification build): one source for both vendors, the few spellings that differ (shuffles, the warp
 * barrier, 16-bit conversions) come from fa_vendor.cuh. Nothing here depends on the warp/wavefront width: row
 * groups are 16 aligned lanes, inside a warp of 32 or a wavefront of 64. The host defines:
 *   FA_DQK, FA_DV     head dims of q/k and of v/out (any, 1-256)
 *   FA_BQ             query rows per block: 16 x RPT (RPT rows per thread), 32 or 64
 *   FA_BKV            keys per K/V tile: 16 x NC (NC keys per thread), 16, 32 or 64
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL   1 where the problem has a softcap, ALiBi slopes, a causal/window mask
 *   FA_VARLEN, FA_PAGED              q/out (total_q, heads, dim) with cu_q; k/v page pools + block table
 *   FA_STORAGE        q/k/v/out elements: 0 fp32 (the CUDA backend's only use), 1 fp16, 2 bf16; 16-bit elements
 *                     are converted to fp32 as they are staged and O is rounded to nearest even as it is stored,
 *                     so every product and sum is fp32 either way
 *   FA_DROPOUT        1: dropout on P with the library's Philox mask (api/fa_philox.h: counter (key / 4, query
 *                     position, batch << 16 | query head, offset lo), key (seed lo, seed hi ^ offset hi)), the mask
 *                     every backend draws; kept values scaled by 1 / (1 - p) before P V, the LSE is that of the
 *                     undropped softmax (the row sum is taken before the mask)
 *   FA_SPLIT          1: split-KV. blockIdx.z = batch x num_splits; each block walks its share of the visible
 *                     tiles and writes its normalised partial O and LSE (fp32) to o_part/lse_part; fa_combine_f32
 *                     (below) merges them by LSE into out/lse. 0 compiles all of it out (no extra code unsplit)
 *
 * One block of 256 threads = (query block, query head, batch), threads as 16 row groups (ty) x 16 lanes (tx);
 * a row group is half a warp. Q is staged in shared memory once; each K/V tile is staged in shared memory
 * (zero-filled past the keys and the head dims). Thread (ty, tx) computes S for rows ty + 16 i (i < RPT) and
 * keys tx + 16 c (c < NC) as fp32 dot products (float4 reads of Q and K), applies scale, softcap, ALiBi and the
 * mask in natural units, reduces the row max with shuffles inside its half warp, writes P = exp(s - m) to a
 * shared-memory tile, and accumulates O for its rows and dims 4 tx + 64 c (float4 reads of P and V). The
 * running max and sum give the online softmax; no N x N matrix exists anywhere. LSE is natural log.
 * Masks follow fwd_sm80.cu and api/flashport.h: bottom-right causal/window (offset = seqlen_k - seqlen_q).
 */
#include "fa_vendor.cuh"

typedef long long i64;

/* fa_io_t, io_to_f32 and io_from_f32 (FA_STORAGE): fa_vendor.cuh */

struct fa_cuda_fwd_f32_params {
    const fa_io_t *q, *k, *v;           /* FA_STORAGE's elements */
    fa_io_t *out;
    float *lse;                         /* NULL: not written */
    const float *alibi;                 /* NULL: none */
    i64 q_sb, q_ss, q_sh;               /* strides in elements: batch, seq, head */
    i64 k_sb, k_ss, k_sh;
    i64 v_sb, v_ss, v_sh;
    i64 o_sb, o_ss, o_sh;
    i64 lse_sb, lse_sh, lse_ss;
    i64 alibi_sb;                       /* 0: slopes per head only */
    const int *cu_q;                    /* FA_VARLEN: batch + 1 row offsets of q/out (lse: (heads, total_q)) */
    const int *cu_k;                    /* NULL, or key counts per sequence (and, not paged, row offsets of k/v) */
    const int *seqused_k;               /* NULL, or keys used per sequence (overrides cu_k's counts) */
    const int *block_table;             /* FA_PAGED: (batch, bt_stride) page numbers */
    i64 bt_stride, k_sp, v_sp;          /* FA_PAGED: block-table row stride, page strides of k and v */
    int page_size, num_pages;
    int total_q, total_k;               /* varlen: rows of q/out and (not paged) of k/v */
    int seqlen_q, seqlen_k, heads_q, heads_kv; /* varlen/paged: the largest lengths (capacities) */
    int window_left, window_right;      /* effective (causal folded in); -1 = unbounded */
    float scale;                        /* softmax scale */
    float softcap;                      /* 0 = off */
    int vec_qk, vec_v;                  /* 1: q/k (v/out) rows are aligned runs of whole groups of 4 elements */
    float *o_part, *lse_part;           /* FA_SPLIT: (splits, part_rows, heads_q, FA_DV), (splits, heads_q, part_rows) */
    int num_splits, part_rows;          /* FA_SPLIT: splits; rows = total_q (varlen) or batch * seqlen_q */
    unsigned drop_k0, drop_k1, drop_ctr3; /* FA_DROPOUT: Philox key (seed lo, seed hi ^ offset hi), counter word 3 */
    unsigned drop_threshold;            /* FA_DROPOUT: a draw below it drops the element */
    float keep_scale;                   /* FA_DROPOUT: 1 / (1 - dropout_p) */
    int pad_;                           /* the host struct's size, a multiple of 8, spelled out */
};

#ifndef FA_BQ
#define FA_BQ 64
#endif
#ifndef FA_BKV
#define FA_BKV 32
#endif
#ifndef FA_SOFTCAP
#define FA_SOFTCAP 1
#endif
#ifndef FA_ALIBI
#define FA_ALIBI 1
#endif
#ifndef FA_LOCAL
#define FA_LOCAL 1
#endif
#ifndef FA_VARLEN
#define FA_VARLEN 0
#endif
#ifndef FA_PAGED
#define FA_PAGED 0
#endif
#ifndef FA_DROPOUT
#define FA_DROPOUT 0
#endif
#ifndef FA_SPLIT
#define FA_SPLIT 0
#endif

#define THREADS 256
#define RPT (FA_BQ / 16)                /* rows per thread */
#define NC (FA_BKV / 16)                /* keys per thread in S */
#define DQK4 ((FA_DQK + 3) / 4 * 4)     /* q/k columns staged (zeros past FA_DQK) */
#define ND4 ((FA_DV + 63) / 64)         /* float4 column groups of O per thread */
/* row strides in floats: an odd number of float4s, so 8 threads reading 8 consecutive rows hit 8 bank groups */
#define QSTR (DQK4 + ((DQK4 / 4) % 2 ? 0 : 4))
#define KSTR QSTR
#define VSTR (64 * ND4)                 /* v columns staged (zeros past FA_DV) */
#define PSTR (FA_BKV + 4)
#define NEG_INF (-__int_as_float(0x7f800000))

#if FA_BQ % 16 || FA_BKV % 16 || FA_BKV < 16
#error "FA_BQ and FA_BKV must be multiples of 16"
#endif

/* Where key row j of one (sequence, kv head) lives: rows a stride apart, or pages through the block table. */
struct key_rows {
    const fa_io_t *base;
    i64 stride;
    const int *pages;
    i64 page_stride;
    int page_size, num_pages;
};

static __device__ __forceinline__ const fa_io_t *key_row(const key_rows &kr, int j)
{
#if FA_PAGED
    int page = kr.pages[j / kr.page_size];
    page = min(max(page, 0), kr.num_pages - 1); /* a bad table entry reads a real page, never out of bounds */
    return kr.base + (i64)page * kr.page_stride + (i64)(j % kr.page_size) * kr.stride;
#else
    return kr.base + (i64)j * kr.stride;
#endif
}

/* Elements [x, x + 4) of a row with `real` elements as fp32, zeros past it. */
static __device__ __forceinline__ float4 load4(const fa_io_t *row, int x, int real, int vec)
{
#if FA_STORAGE == 0
    if (vec && x + 4 <= real) return *(const float4 *)(row + x);
#else
    if (vec && x + 4 <= real) { /* four 16-bit elements in one 8-byte load */
        const uint2 w = *(const uint2 *)(row + x);
        return make_float4(io_to_f32((fa_io_t)(w.x & 0xffffu)), io_to_f32((fa_io_t)(w.x >> 16)),
                           io_to_f32((fa_io_t)(w.y & 0xffffu)), io_to_f32((fa_io_t)(w.y >> 16)));
    }
#endif
    float4 v;
    v.x = x < real ? io_to_f32(row[x]) : 0.0f;
    v.y = x + 1 < real ? io_to_f32(row[x + 1]) : 0.0f;
    v.z = x + 2 < real ? io_to_f32(row[x + 2]) : 0.0f;
    v.w = x + 3 < real ? io_to_f32(row[x + 3]) : 0.0f;
    return v;
}

/* Key rows [row0, row0 + FA_BKV) of COLS staged columns (REAL in the tensor); zeros past `valid` and REAL. */
template <int COLS, int STR, int REAL>
static __device__ __forceinline__ void stage(float *dst, const key_rows &src, int row0, int valid, int vec)
{
    for (int c = threadIdx.x; c < FA_BKV * (COLS / 4); c += THREADS) {
        const int r = c / (COLS / 4), x = (c % (COLS / 4)) * 4;
        float4 val = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (row0 + r < valid && x < REAL) val = load4(key_row(src, row0 + r), x, REAL, vec);
        *(float4 *)(dst + r * STR + x) = val;
    }
}

static __device__ __forceinline__ float comp(const float4 &v, int e)
{
    return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

/* Columns [x, x + 4) of an output row (x < FA_DV; those past FA_DV are not stored). */
static __device__ __forceinline__ void store4(fa_io_t *orow, int x, float4 r, int vec)
{
    if (vec && x + 4 <= FA_DV) {
#if FA_STORAGE == 0
        *(float4 *)(orow + x) = r;
#else
        uint2 w; /* four 16-bit elements in one 8-byte store */
        w.x = (unsigned)io_from_f32(r.x) | (unsigned)io_from_f32(r.y) << 16;
        w.y = (unsigned)io_from_f32(r.z) | (unsigned)io_from_f32(r.w) << 16;
        *(uint2 *)(orow + x) = w;
#endif
    } else {
        orow[x] = io_from_f32(r.x);
        if (x + 1 < FA_DV) orow[x + 1] = io_from_f32(r.y);
        if (x + 2 < FA_DV) orow[x + 2] = io_from_f32(r.z);
        if (x + 3 < FA_DV) orow[x + 3] = io_from_f32(r.w);
    }
}

#if FA_DROPOUT
/* the draws: fa_philox of fa_vendor.cuh */
#endif

#if FA_SPLIT
/* Columns [x, x + 4) of a partial-output row of FA_DV floats (zeros past it; float4 where rows stay aligned). */
static __device__ __forceinline__ float4 part4(const float *row, int x)
{
    if (FA_DV % 4 == 0) return *(const float4 *)(row + x);
    float4 v;
    v.x = row[x];
    v.y = x + 1 < FA_DV ? row[x + 1] : 0.0f;
    v.z = x + 2 < FA_DV ? row[x + 2] : 0.0f;
    v.w = x + 3 < FA_DV ? row[x + 3] : 0.0f;
    return v;
}
#endif

extern "C" __global__ void __launch_bounds__(THREADS) fa_fwd_f32(const struct fa_cuda_fwd_f32_params p)
{
    extern __shared__ __align__(16) float smem[];
    float *qs = smem;                 /* FA_BQ x QSTR */
    float *ks = qs + FA_BQ * QSTR;    /* FA_BKV x KSTR */
    float *vs = ks + FA_BKV * KSTR;   /* FA_BKV x VSTR */
    float *ps = vs + FA_BKV * VSTR;   /* FA_BQ x PSTR: P of the current tile */

    /* last query blocks first: under a causal mask they have the most tiles */
    const int qb = gridDim.x - 1 - blockIdx.x;
    const int nsplit = FA_SPLIT ? p.num_splits : 1;
    const int h = blockIdx.y, hk = h / (p.heads_q / p.heads_kv), b = blockIdx.z / nsplit, split = blockIdx.z % nsplit;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    /* this sequence's lengths (metadata in device memory is clamped, not trusted), as fwd_sm80.cu */
    int sq = p.seqlen_q, sk = p.seqlen_k;
    i64 qrow0 = 0, krow0 = 0;
#if FA_VARLEN
    qrow0 = min(max(p.cu_q[b], 0), p.total_q);
    sq = min(min(max(p.cu_q[b + 1] - p.cu_q[b], 0), p.seqlen_q), p.total_q - (int)qrow0);
#endif
    if (p.cu_k) {
        sk = min(max(p.cu_k[b + 1] - p.cu_k[b], 0), p.seqlen_k);
        if (!FA_PAGED) krow0 = min(max(p.cu_k[b], 0), p.total_k), sk = min(sk, p.total_k - (int)krow0);
    }
    if (p.seqused_k) sk = min(max(p.seqused_k[b], 0), p.seqlen_k);
    if (p.seqused_k && p.cu_k && !FA_PAGED) sk = min(sk, p.total_k - (int)krow0);
    const int offset = sk - sq;
    const int q0 = qb * FA_BQ;
    if (q0 >= sq) return; /* the grid covers the longest sequence */
    const int pos_first = q0, pos_last = min(q0 + FA_BQ, sq) - 1;

    key_rows kg, vg;
#if FA_PAGED
    kg.base = p.k + hk * p.k_sh, vg.base = p.v + hk * p.v_sh;
    kg.pages = vg.pages = p.block_table + b * p.bt_stride;
    kg.page_stride = p.k_sp, vg.page_stride = p.v_sp;
    kg.page_size = vg.page_size = p.page_size;
    kg.num_pages = vg.num_pages = p.num_pages;
#else
    kg.base = p.k + (p.cu_k ? 0 : b * p.k_sb) + krow0 * p.k_ss + hk * p.k_sh;
    vg.base = p.v + (p.cu_k ? 0 : b * p.v_sb) + krow0 * p.v_ss + hk * p.v_sh;
#endif
    kg.stride = p.k_ss, vg.stride = p.v_ss;

    const fa_io_t *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + qrow0 * p.q_ss + h * p.q_sh;
    for (int c = threadIdx.x; c < FA_BQ * (DQK4 / 4); c += THREADS) {
        const int r = c / (DQK4 / 4), x = (c % (DQK4 / 4)) * 4;
        float4 val = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (q0 + r < sq) val = load4(qg + (i64)(q0 + r) * p.q_ss, x, FA_DQK, p.vec_qk);
        *(float4 *)(qs + r * QSTR + x) = val;
    }

    float o[RPT][ND4][4];
    float m[RPT], l[RPT]; /* running max (natural units) and this thread's share of the running sum */
    #pragma unroll
    for (int i = 0; i < RPT; i++) {
        #pragma unroll
        for (int c = 0; c < ND4; c++) o[i][c][0] = o[i][c][1] = o[i][c][2] = o[i][c][3] = 0.0f;
        m[i] = NEG_INF;
        l[i] = 0.0f;
    }

    /* keys any row of this block can see; tiles outside are never loaded */
    int lo = 0, hi = sk;
    if (FA_LOCAL && p.window_left >= 0) lo = max(0, pos_first + offset - p.window_left);
    if (FA_LOCAL && p.window_right >= 0) hi = min(sk, pos_last + offset + p.window_right + 1);
    lo = lo / FA_BKV * FA_BKV;
    int ntiles = hi > lo ? (hi - lo + FA_BKV - 1) / FA_BKV : 0;
    if (FA_SPLIT) {
        /* this split's share of the tiles (possibly none: it then writes an empty partial, LSE -inf) */
        const int per = (ntiles + nsplit - 1) / nsplit, first = min(split * per, ntiles);
        lo += first * FA_BKV;
        ntiles = min(per, ntiles - first);
    }

    for (int it = 0; it < ntiles; it++) {
        const int j0 = lo + it * FA_BKV;
        __syncthreads(); /* the previous tile's K, V and P are no longer read (first time: Q's stores) */
        stage<DQK4, KSTR, FA_DQK>(ks, kg, j0, sk, p.vec_qk);
        stage<VSTR, VSTR, FA_DV>(vs, vg, j0, sk, p.vec_v);
        __syncthreads();

        float s[RPT][NC];
        #pragma unroll
        for (int i = 0; i < RPT; i++)
            #pragma unroll
            for (int c = 0; c < NC; c++) s[i][c] = 0.0f;
        #pragma unroll 4
        for (int k4 = 0; k4 < DQK4 / 4; k4++) {
            float4 qv[RPT], kv[NC];
            #pragma unroll
            for (int i = 0; i < RPT; i++) qv[i] = *(const float4 *)(qs + (ty + 16 * i) * QSTR + 4 * k4);
            #pragma unroll
            for (int c = 0; c < NC; c++) kv[c] = *(const float4 *)(ks + (tx + 16 * c) * KSTR + 4 * k4);
            #pragma unroll
            for (int i = 0; i < RPT; i++)
                #pragma unroll
                for (int c = 0; c < NC; c++) {
                    float a = s[i][c];
                    a = fmaf(qv[i].x, kv[c].x, a);
                    a = fmaf(qv[i].y, kv[c].y, a);
                    a = fmaf(qv[i].z, kv[c].z, a);
                    a = fmaf(qv[i].w, kv[c].w, a);
                    s[i][c] = a;
                }
        }

        #pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int row = ty + 16 * i, pos = q0 + row, diag = pos + offset;
            float slope = 0.0f;
            if (FA_ALIBI && p.alibi) slope = p.alibi[b * p.alibi_sb + h];
            float mx = NEG_INF;
            #pragma unroll
            for (int c = 0; c < NC; c++) {
                const int j = j0 + tx + 16 * c;
                float x = s[i][c] * p.scale;
                if (FA_SOFTCAP && p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
                if (FA_ALIBI && slope != 0.0f) x -= slope * fabsf((float)(diag - j));
                if (j >= sk || (FA_LOCAL && p.window_left >= 0 && j < diag - p.window_left) ||
                    (FA_LOCAL && p.window_right >= 0 && j > diag + p.window_right))
                    x = NEG_INF;
                s[i][c] = x;
                mx = fmaxf(mx, x);
            }
            /* the 16 lanes of a row group are aligned to 16: xor 8, 4, 2, 1 stays inside it */
            mx = fmaxf(mx, FA_SHFL_XOR(mx, 8));
            mx = fmaxf(mx, FA_SHFL_XOR(mx, 4));
            mx = fmaxf(mx, FA_SHFL_XOR(mx, 2));
            mx = fmaxf(mx, FA_SHFL_XOR(mx, 1));
            const float mnew = fmaxf(m[i], mx);
            /* an old max of -inf had nothing accumulated: keep factor 1 (no -inf - -inf) */
            const float alpha = m[i] == NEG_INF ? 1.0f : expf(m[i] - mnew);
            /* a row with every key so far masked keeps max -inf: exponentiate against 0 so P stays 0 */
            const float base = mnew == NEG_INF ? 0.0f : mnew;
            float sum = 0.0f;
            #pragma unroll
            for (int c = 0; c < NC; c++) {
                const float pv = expf(s[i][c] - base);
                sum += pv;
                ps[row * PSTR + tx + 16 * c] = pv;
            }
            l[i] = l[i] * alpha + sum; /* reduced across the row group at the end */
            m[i] = mnew;
            #pragma unroll
            for (int c = 0; c < ND4; c++) {
                o[i][c][0] *= alpha;
                o[i][c][1] *= alpha;
                o[i][c][2] *= alpha;
                o[i][c][3] *= alpha;
            }
        }
        FA_SYNC_WAVE(); /* a row group's P is written and read by its own 16 lanes, inside one warp/wavefront */
#if FA_DROPOUT
        /*
         * Dropout on P after the row sums (the LSE stays that of the undropped softmax). One Philox call draws the
         * four consecutive keys of a group (j0 is a multiple of FA_BKV, so groups never straddle tiles): the row
         * group's 16 lanes share its RPT x FA_BKV / 4 groups, so each draw serves four elements. Rows past the
         * sequence are never stored: no draw.
         */
        #pragma unroll 1
        for (int g = tx; g < RPT * (FA_BKV / 4); g += 16) {
            const int row = ty + 16 * (g / (FA_BKV / 4)), c4 = g % (FA_BKV / 4), pos = q0 + row;
            if (pos >= sq) continue;
            const fa_u4 d = fa_philox((unsigned)(j0 / 4 + c4), (unsigned)pos, ((unsigned)b << 16) + (unsigned)h,
                                          p.drop_ctr3, p.drop_k0, p.drop_k1);
            float4 *pp = (float4 *)(ps + row * PSTR + 4 * c4);
            float4 pv = *pp;
            pv.x = d.x < p.drop_threshold ? 0.0f : pv.x * p.keep_scale;
            pv.y = d.y < p.drop_threshold ? 0.0f : pv.y * p.keep_scale;
            pv.z = d.z < p.drop_threshold ? 0.0f : pv.z * p.keep_scale;
            pv.w = d.w < p.drop_threshold ? 0.0f : pv.w * p.keep_scale;
            *pp = pv;
        }
        FA_SYNC_WAVE(); /* the masked P, written by other lanes of the row group, is read below */
#endif

        /* O += P V */
        #pragma unroll 2
        for (int j4 = 0; j4 < FA_BKV / 4; j4++) {
            float4 pv[RPT];
            #pragma unroll
            for (int i = 0; i < RPT; i++) pv[i] = *(const float4 *)(ps + (ty + 16 * i) * PSTR + 4 * j4);
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                #pragma unroll
                for (int c = 0; c < ND4; c++) {
                    const float4 vv = *(const float4 *)(vs + (4 * j4 + e) * VSTR + 4 * tx + 64 * c);
                    #pragma unroll
                    for (int i = 0; i < RPT; i++) {
                        const float pj = comp(pv[i], e);
                        o[i][c][0] = fmaf(pj, vv.x, o[i][c][0]);
                        o[i][c][1] = fmaf(pj, vv.y, o[i][c][1]);
                        o[i][c][2] = fmaf(pj, vv.z, o[i][c][2]);
                        o[i][c][3] = fmaf(pj, vv.w, o[i][c][3]);
                    }
                }
            }
        }
    }

#if FA_SPLIT
    /* normalised partials; the row index runs over every sequence's rows (varlen: q's own row) */
    const i64 prow0 = FA_VARLEN ? qrow0 : (i64)b * p.seqlen_q;
    float *op = p.o_part + (i64)split * p.part_rows * p.heads_q * FA_DV;
    float *lp = p.lse_part + (i64)split * p.heads_q * p.part_rows + (i64)h * p.part_rows;
#else
    fa_io_t *og = p.out + (FA_VARLEN ? 0 : b * p.o_sb) + qrow0 * p.o_ss + h * p.o_sh;
    float *lg = p.lse ? p.lse + (FA_VARLEN ? 0 : b * p.lse_sb) + qrow0 * p.lse_ss + h * p.lse_sh : 0;
#endif
    #pragma unroll
    for (int i = 0; i < RPT; i++) {
        float sum = l[i];
        sum += FA_SHFL_XOR(sum, 8);
        sum += FA_SHFL_XOR(sum, 4);
        sum += FA_SHFL_XOR(sum, 2);
        sum += FA_SHFL_XOR(sum, 1);
        const int pos = q0 + ty + 16 * i;
        if (pos >= sq) continue;
        const float lse = sum > 0.0f ? m[i] + logf(sum) : NEG_INF;
#if FA_SPLIT
        float *orow = op + ((prow0 + pos) * p.heads_q + h) * FA_DV;
#else
        fa_io_t *orow = og + (i64)pos * p.o_ss;
#endif
        #pragma unroll
        for (int c = 0; c < ND4; c++) {
            const int x = 4 * tx + 64 * c;
            if (x >= FA_DV) continue;
            float4 r;
            /* a row that saw no key: output 0 */
            r.x = sum > 0.0f ? o[i][c][0] / sum : 0.0f;
            r.y = sum > 0.0f ? o[i][c][1] / sum : 0.0f;
            r.z = sum > 0.0f ? o[i][c][2] / sum : 0.0f;
            r.w = sum > 0.0f ? o[i][c][3] / sum : 0.0f;
#if FA_SPLIT
            if (FA_DV % 4 == 0) {
                *(float4 *)(orow + x) = r;
            } else {
                orow[x] = r.x;
                if (x + 1 < FA_DV) orow[x + 1] = r.y;
                if (x + 2 < FA_DV) orow[x + 2] = r.z;
                if (x + 3 < FA_DV) orow[x + 3] = r.w;
            }
#else
            store4(orow, x, r, p.vec_v);
#endif
        }
#if FA_SPLIT
        if (tx == 0) lp[prow0 + pos] = lse;
#else
        if (lg && tx == 0) lg[(i64)pos * p.lse_ss] = lse;
#endif
    }
}

/*
 * Merges the split partials of fa_fwd_f32 (FA_SPLIT), as fa_combine_sm80 does: 16 lanes per (row, query head), 16
 * pairs per block of 256. With L_s the partial LSEs and L = log(sum exp L_s), out = sum_s exp(L_s - L) o_s and
 * lse = L; a split that saw no key has L_s = -inf and weight 0, a row no split saw gets out 0 and lse -inf. Lanes
 * past the last pair stay (no early return) so that every shuffle has its whole warp/wavefront.
 */
extern "C" __global__ void __launch_bounds__(THREADS) fa_combine_f32(const struct fa_cuda_fwd_f32_params p)
{
#if FA_SPLIT
    const int tx = threadIdx.x % 16;
    const i64 pair = (i64)blockIdx.x * (THREADS / 16) + threadIdx.x / 16;
    const int valid = pair < (i64)p.part_rows * p.heads_q;
    const int prow = valid ? (int)(pair / p.heads_q) : 0, h = valid ? (int)(pair % p.heads_q) : 0;
    const i64 split_o = (i64)p.part_rows * p.heads_q * FA_DV, split_l = (i64)p.heads_q * p.part_rows;
    const float *lp = p.lse_part + (i64)h * p.part_rows + prow;
    float mx = NEG_INF;
    if (valid)
        for (int s = tx; s < p.num_splits; s += 16) mx = fmaxf(mx, lp[s * split_l]);
    mx = fmaxf(mx, FA_SHFL_XOR(mx, 8));
    mx = fmaxf(mx, FA_SHFL_XOR(mx, 4));
    mx = fmaxf(mx, FA_SHFL_XOR(mx, 2));
    mx = fmaxf(mx, FA_SHFL_XOR(mx, 1));
    float sum = 0.0f;
    if (valid && mx != NEG_INF)
        for (int s = tx; s < p.num_splits; s += 16) sum += expf(lp[s * split_l] - mx);
    sum += FA_SHFL_XOR(sum, 8);
    sum += FA_SHFL_XOR(sum, 4);
    sum += FA_SHFL_XOR(sum, 2);
    sum += FA_SHFL_XOR(sum, 1);
    if (!valid) return;
    const float lse = sum > 0.0f ? mx + logf(sum) : NEG_INF;
    /* the row's place in out and lse: (batch, position) from the row, or the varlen row itself */
    i64 ob, lb;
    if (FA_VARLEN) {
        ob = (i64)prow * p.o_ss, lb = (i64)prow * p.lse_ss;
    } else {
        const int bb = prow / p.seqlen_q, i = prow % p.seqlen_q;
        ob = bb * p.o_sb + (i64)i * p.o_ss, lb = bb * p.lse_sb + (i64)i * p.lse_ss;
    }
    fa_io_t *orow = p.out + ob + (i64)h * p.o_sh;
    const float *op = p.o_part + ((i64)prow * p.heads_q + h) * FA_DV;
    #pragma unroll
    for (int c = 0; c < ND4; c++) {
        const int x = 4 * tx + 64 * c;
        if (x >= FA_DV) continue;
        float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (lse != NEG_INF)
            for (int s = 0; s < p.num_splits; s++) {
                const float w = expf(lp[s * split_l] - lse); /* 0 for an empty split */
                if (w == 0.0f) continue;                     /* and its partial is never read */
                const float4 v = part4(op + s * split_o, x);
                r.x = fmaf(w, v.x, r.x);
                r.y = fmaf(w, v.y, r.y);
                r.z = fmaf(w, v.z, r.z);
                r.w = fmaf(w, v.w, r.w);
            }
        store4(orow, x, r, p.vec_v);
    }
    if (p.lse && tx == 0) p.lse[lb + (i64)h * p.lse_sh] = lse;
#else
    (void)p; /* unsplit modules carry the symbol, empty */
#endif
}
