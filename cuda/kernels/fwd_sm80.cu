/*
 * FlashAttention-2 forward for sm_80 and later (runs on sm_86/89/90 too), compiled at run time by NVRTC for
 * one specialisation. Plain CUDA C, no headers (NVRTC has no standard library here); the host defines:
 *   FA_BF16      0: fp16 inputs/outputs, 1: bf16
 *   FA_DQK       head dim of q and k as the kernel runs it: the real one rounded up to a multiple of 16
 *   FA_DV        head dim of v and out, likewise (FA_DQK_REAL, FA_DV_REAL: the tensors' own, below)
 *   FA_WARPS     warps per block
 *   FA_MT        16-row m-tiles per warp (block_q = 16 * FA_MT * FA_WARPS); each K/V fragment read from
 *                shared memory feeds FA_MT mma instructions
 *   FA_BKV       keys per K/V tile, a multiple of 16
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL   1 where the problem has a softcap, ALiBi slopes, a causal or sliding
 *                window mask: a kernel without them carries no code (and no registers) for them
 *   FA_DROPOUT   1: dropout on P with the library's Philox mask (api/fa_philox.h, fa_dropout_keep)
 *
 * One block = (query block, query head, batch). Q is staged in shared memory and read as mma A fragments with
 * ldmatrix; each warp walks the visible K/V tiles (double-buffered in shared memory: cp.async fetches tile i+1 while tile i is
 * used; fragments are read with ldmatrix, .trans for V), computes S = Q K^T with mma.sync m16n8k16 (fp32
 * accumulate), applies scale (in log2 units, so exp2 is the only transcendental),
 * softcap, ALiBi and the window/causal mask, updates the running max and sum per row, and accumulates
 * O += P V with P taken straight from the S accumulators (their layout is the next mma's A layout).
 */

#include "common_sm80.cuh" /* types and instruction wrappers shared with bwd_sm80.cu */

struct fa_cuda_fwd_params {
    const u16 *q, *k, *v;
    u16 *out;
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
    float *o_part, *lse_part;           /* FA_SPLIT: fp32 partials (splits, rows, heads_q, dv), (splits, heads_q, rows) */
    int num_splits, part_rows;          /* FA_SPLIT: splits; rows = total_q (varlen) or batch * seqlen_q */
    int seqlen_q, seqlen_k, heads_q, heads_kv; /* varlen/paged: the largest lengths (capacities) */
    int window_left, window_right;      /* effective (causal folded in); -1 = unbounded */
    float scale_log2;                   /* softmax scale * log2(e) */
    float scale;                        /* softmax scale (softcap and ALiBi work in natural units) */
    float softcap;                      /* 0 = off */
    u32 drop_k0, drop_k1, drop_ctr3;    /* FA_DROPOUT: Philox key (seed lo, seed hi ^ offset hi), counter word 3 (offset lo) */
    u32 drop_threshold;                 /* FA_DROPOUT: a draw below it drops the element */
    float keep_scale;                   /* FA_DROPOUT: 1 / (1 - dropout_p) */
};

#ifndef FA_MT
#define FA_MT 1
#endif
#ifndef FA_VARLEN
#define FA_VARLEN 0 /* q/out are (total_q, heads, dim) with cu_q */
#endif
#ifndef FA_PAGED
#define FA_PAGED 0 /* k/v are page pools read through the block table */
#endif
#ifndef FA_PACK
#define FA_PACK 0 /* rows are (position, query head of the KV head's group) pairs: K/V read once per group */
#endif
#ifndef FA_GROUP
#define FA_GROUP 1 /* FA_PACK: query heads per KV head */
#endif
#ifndef FA_SPLIT
#define FA_SPLIT 0 /* the key range is split across blockIdx.z; normalised partials go to o_part/lse_part */
#endif
#define GROUP (FA_PACK ? FA_GROUP : 1)
#ifndef FA_STAGES
#define FA_STAGES 2 /* K/V tiles in shared memory: one used, FA_STAGES - 1 in flight */
#endif
#ifndef FA_LAZY
#define FA_LAZY 1 /* lazy rescaling of O (see the softmax update) */
#endif
#ifndef FA_MIN_BLOCKS
#define FA_MIN_BLOCKS 1 /* blocks per SM that ptxas must leave room for: registers <= 64K / (that x threads) */
#endif
#ifndef FA_DROPOUT
#define FA_DROPOUT 0 /* dropout on P (the mask of fa_dropout_keep) */
#endif
#ifndef FA_KSPLIT
#define FA_KSPLIT 0 /* decode: every warp holds the block's (<= 16 FA_MT) rows and takes its own keys of each tile */
#endif
#ifndef FA_ROWS8
#define FA_ROWS8 0 /* FA_KSPLIT: the block has at most 8 real rows (seqlen_q x group <= 8, e.g. one token, GQA 4) */
#endif
/*
 * Whether a thread's second row (r1 = r0 + 8) can be real. With FA_KSPLIT and FA_ROWS8 rows 8-15 of the one
 * m-tile are padding: their softmax (max, shuffles, exponentials, sums) is not computed; their m stays -inf and
 * l 0, and P's rows 8-15 are their raw scores, 0 as their Q rows are zero-filled (finite in any case: scores of
 * finite inputs). Their O is never written nor merged into a real row. A constant 0 there instead made ptxas copy
 * P's register quads around every PV mma (21 MOV a tile).
 */
#define ROW1 (!(FA_KSPLIT && FA_ROWS8))
#define KWARPS (FA_KSPLIT ? FA_WARPS : 1)        /* warps sharing a tile's keys */
#define WKV (FA_BKV / KWARPS)                     /* keys of a tile per warp */
#define BLOCK_Q (16 * FA_MT * (FA_KSPLIT ? 1 : FA_WARPS))
#define QSTR (FA_DQK + 8) /* shared-memory row strides in u16: +16 bytes keeps fragment loads off one bank */
#define KSTR (FA_DQK + 8)
#define VSTR (FA_DV + 8)
#define NT_S (WKV / 8)    /* n-tiles of S per warp */
#define NT_O (FA_DV / 8)  /* n-tiles of O per warp */
/*
 * Decode with keys across warps (one m-tile): Q's A fragments stay in registers for the whole key loop, read
 * once, instead of 8 ldmatrix (d128) and their lane address arithmetic again every tile; a warp with 16 or 32
 * keys a tile re-read all of Q for them (8 of its 24 ldmatrix a tile at d128, 16 keys). FA_DQK / 4 registers
 * (32 at d128), where the kernel has room (sm_90, d128, 16x64 over 4 warps: 128 -> 158 registers, no spill).
 * Not above d128, where the O accumulators alone take 128, nor with 64 keys a warp, where S's take the room
 * (16x128 over 2 warps: 226 -> 255).
 */
#define QREG (FA_KSPLIT && FA_MT == 1 && FA_DQK <= 128 && WKV <= 32)

#if FA_DROPOUT
/* The draws of keys 4 * col4 .. 4 * col4 + 3 for (batch b, query head h, query row i). */
static __device__ __forceinline__ drop_u4 drop_draw4(const struct fa_cuda_fwd_params &p, int b, int h, int i, int col4)
{
    return drop_philox((u32)col4, (u32)i, ((u32)b << 16) + (u32)h, p.drop_ctr3, p.drop_k0, p.drop_k1);
}
#endif

/*
 * At the top of tile it the groups of tiles it .. it + FA_STAGES - 2 are pending (the next refill is issued after
 * the barrier): waiting until at most FA_STAGES - 2 remain means tile it has landed.
 */
static __device__ __forceinline__ void cp_wait_oldest(void) { CP_WAIT(FA_STAGES - 2); }


/*
 * Head dims: the mma loops run over FA_DQK/FA_DV (multiples of 16); the tensors have FA_DQK_REAL/FA_DV_REAL.
 * The padded columns of Q, K and V are zeros in shared memory, so Q K^T is unchanged and O's padded columns
 * (never written out) are zero. A real dim that is a multiple of 8 keeps rows in 16-byte chunks (the host
 * checks 16-byte aligned bases and strides multiples of 8); any other is read element by element (the host
 * then only assumes 2-byte alignment) and written in single 16-bit stores.
 */
#ifndef FA_DQK_REAL
#define FA_DQK_REAL FA_DQK
#endif
#ifndef FA_DV_REAL
#define FA_DV_REAL FA_DV
#endif
#define QK_VEC (FA_DQK_REAL % 8 == 0)
#define V_VEC (FA_DV_REAL % 8 == 0)

/* Elements [x, x + 8) of a row with `real` elements, zeros past it: plain 16-bit loads, any alignment. */
static __device__ __forceinline__ uint4 load8(const u16 *row, int x, int real)
{
    u32 w[4];
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        u32 lo = x + 2 * i < real ? row[x + 2 * i] : 0, hi = x + 2 * i + 1 < real ? row[x + 2 * i + 1] : 0;
        w[i] = lo | hi << 16;
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

/* Where key row j of one (sequence, kv head) lives: rows a stride apart, or pages through the block table. */
struct key_rows {
    const u16 *base;  /* row 0 (paged: row 0 of page 0 for this head) */
    i64 stride;       /* between rows (of a page) */
    const int *pages; /* FA_PAGED: this sequence's block-table row */
    i64 page_stride;
    int page_size, num_pages;
};

static __device__ __forceinline__ const u16 *key_row(const key_rows &kr, int j)
{
#if FA_PAGED
    int page = kr.pages[j / kr.page_size];
    page = min(max(page, 0), kr.num_pages - 1); /* a bad table entry reads a real page, never out of bounds */
    return kr.base + (i64)page * kr.page_stride + (i64)(j % kr.page_size) * kr.stride;
#else
    return kr.base + (i64)j * kr.stride;
#endif
}

/*
 * Key rows [row0, row0 + rows) of DIM columns (REAL of them in the tensor) into shared memory; rows past
 * `valid` and columns past REAL are zero-filled. REAL a multiple of 8: asynchronously (cp.async); otherwise
 * with plain loads and stores (synchronous, made visible by the __syncthreads before the tile is used).
 */
template <int DIM, int REAL>
static __device__ __forceinline__ void stage_async(u16 *dst, int sstr, const key_rows &src, int row0, int rows,
                                                   int valid)
{
    const int chunks = DIM / 8, threads = FA_WARPS * 32;
    if (!FA_PAGED && REAL % 8 == 0 && threads % chunks == 0) {
        copy_rows_async(dst, sstr, src.base, src.stride, row0, rows, valid, chunks, REAL, threads);
        return;
    }
    for (int c = threadIdx.x; c < rows * chunks; c += threads) {
        int r = c / chunks, x = (c % chunks) * 8;
        if (REAL % 8 == 0) {
            int ok = row0 + r < valid && x < REAL;
            /* a zero-byte copy still names a source: row 0's start, which exists */
            cp_async16(dst + r * sstr + x, ok ? key_row(src, row0 + r) + x : src.base, ok ? 16 : 0);
        } else {
            uint4 val = make_uint4(0, 0, 0, 0);
            if (row0 + r < valid && x < REAL) val = load8(key_row(src, row0 + r), x, REAL);
            *(uint4 *)(dst + r * sstr + x) = val;
        }
    }
}

/*
 * Dense K/V of 16-byte rows with no padded columns (not paged, real head dims multiples of 8 and equal to the
 * kernel's), one m-tile (two: the prefill's d128 128x64 kernel is at 255 registers, and the second pointer pair
 * made ptxas spill inside the loop; sm_90, nvcc 13.0): a whole tile is staged from two per-thread pointers, kept one tile ahead by a 64-bit add, with K's
 * and V's copies in one branch-free block. Through stage_async each tile recomputed both 64-bit row products
 * and tested the tile for K and for V apart (and ptxas put its three dead LDS before each block's first
 * cp.async): ~30 instructions a tile per warp in the decode kernel's SASS.
 */
#define KV_FAST (FA_MT == 1 && !FA_PAGED && FA_DQK_REAL == FA_DQK && FA_DV_REAL == FA_DV && QK_VEC && V_VEC && \
                 (FA_WARPS * 32) % (FA_DQK / 8) == 0 && (FA_WARPS * 32) % (FA_DV / 8) == 0)

/*
 * K/V tile rows [row0, row0 + FA_BKV) into kdst/vdst. KV_FAST: kp and vp are this thread's first chunks of the
 * tile (copy_rows_full); a tile that runs past sk takes stage_async (zero-filled rows) like any other form.
 */
static __device__ __forceinline__ void stage_kv(u16 *kdst, u16 *vdst, const key_rows &kg, const key_rows &vg,
                                                int row0, int sk, const u16 *kp, const u16 *vp)
{
#if KV_FAST
    if (row0 + FA_BKV <= sk) {
        copy_rows_full(kdst, KSTR, kp, kg.stride, FA_BKV, FA_DQK / 8, FA_WARPS * 32);
        copy_rows_full(vdst, VSTR, vp, vg.stride, FA_BKV, FA_DV / 8, FA_WARPS * 32);
        return;
    }
#else
    (void)kp, (void)vp;
#endif
    stage_async<FA_DQK, FA_DQK_REAL>(kdst, KSTR, kg, row0, FA_BKV, sk);
    stage_async<FA_DV, FA_DV_REAL>(vdst, VSTR, vg, row0, FA_BKV, sk);
}

/* The two 16-bit values of v at dst[0], dst[1] (column col of the row), each only where it is a real column. */
static __device__ __forceinline__ void store2(u16 *dst, int col, int row_ok, u32 v)
{
    if (row_ok && col < FA_DV_REAL) dst[0] = (u16)(v & 0xffffu);
    if (row_ok && col + 1 < FA_DV_REAL) dst[1] = (u16)(v >> 16);
}

/* The query head of block row `row`: the block's head, or (packed) the row's place in the KV head's group. */
static __device__ __forceinline__ int head_of(int row, int h, int hk) { return FA_PACK ? hk * FA_GROUP + row % FA_GROUP : h; }

#if FA_KSPLIT
/*
 * Decode with the keys of each tile split across the block's warps: every warp ends with its own running max m,
 * partial sums l and O for the same rows, in the same lanes (the accumulator layout does not depend on the
 * keys), so they merge lane by lane: M = max_w m_w, l = sum_w l_w 2^(m_w - M), O likewise. Warps 1.. leave
 * their values in shared memory (the K/V stages, free once nothing is in flight); warp 0 merges and returns 1
 * to write the rows, the others return 0. m_w is a lazy reference max, not necessarily the row's max: the sums
 * and O of each warp are relative to it, which is all the merge needs.
 */
#define MERGE_VALS (FA_MT * (4 + NT_O * 4)) /* per lane: m and l of rows r0, r1, O's accumulators */
static __device__ __forceinline__ int merge_warps(float (&m)[FA_MT][2], float (&l)[FA_MT][2],
                                                  float (&o)[FA_MT][NT_O][4], u16 *smem, int warp, int lane)
{
    float *x = (float *)smem; /* [warp - 1][value][lane]: consecutive lanes, consecutive words */
    __syncthreads(); /* every warp is done reading the last tile */
    if (warp > 0) {
        float *w = x + (warp - 1) * MERGE_VALS * 32 + lane;
        #pragma unroll
        for (int mt = 0; mt < FA_MT; mt++) {
            const int b0 = mt * (4 + NT_O * 4);
            w[(b0 + 0) * 32] = m[mt][0], w[(b0 + 1) * 32] = m[mt][1];
            w[(b0 + 2) * 32] = l[mt][0], w[(b0 + 3) * 32] = l[mt][1];
            #pragma unroll
            for (int t = 0; t < NT_O; t++)
                #pragma unroll
                for (int e = 0; e < 4; e++) w[(b0 + 4 + t * 4 + e) * 32] = o[mt][t][e];
        }
    }
    __syncthreads();
    if (warp > 0) return 0;
    #pragma unroll
    for (int mt = 0; mt < FA_MT; mt++) {
        const int b0 = mt * (4 + NT_O * 4);
        #pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = m[mt][r];
            for (int v = 1; v < FA_WARPS; v++) mx = fmaxf(mx, x[((v - 1) * MERGE_VALS + b0 + r) * 32 + lane]);
            /* weight 2^(m_w - M): 0 for a warp that saw no key (m_w = -inf), none needed when no warp did */
            const float a = mx == NEG_INF ? 0.0f : ex2(m[mt][r] - mx);
            l[mt][r] *= a;
            #pragma unroll
            for (int t = 0; t < NT_O; t++) o[mt][t][2 * r] *= a, o[mt][t][2 * r + 1] *= a;
            for (int v = 1; v < FA_WARPS; v++) {
                const float *w = x + (v - 1) * MERGE_VALS * 32 + lane;
                const float mv = w[(b0 + r) * 32], av = mx == NEG_INF ? 0.0f : ex2(mv - mx);
                l[mt][r] += av * w[(b0 + 2 + r) * 32];
                #pragma unroll
                for (int t = 0; t < NT_O; t++) {
                    o[mt][t][2 * r] += av * w[(b0 + 4 + t * 4 + 2 * r) * 32];
                    o[mt][t][2 * r + 1] += av * w[(b0 + 4 + t * 4 + 2 * r + 1) * 32];
                }
            }
            m[mt][r] = mx;
        }
    }
    return 1;
}
#endif

extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, FA_MIN_BLOCKS) fa_fwd_sm80(const struct fa_cuda_fwd_params p)
{
    extern __shared__ __align__(16) u16 smem[];
    u16 *qs = smem;                       /* BLOCK_Q x QSTR */
    u16 *kbuf = qs + BLOCK_Q * QSTR;              /* FA_STAGES x FA_BKV x KSTR */
    u16 *vbuf = kbuf + FA_STAGES * FA_BKV * KSTR; /* FA_STAGES x FA_BKV x VSTR */

    /* last query blocks first: under a causal mask they have the most tiles, so the short ones fill the tail */
    const int qb = gridDim.x - 1 - blockIdx.x;
    /* packed: blockIdx.y is the KV head and a row's query head comes from the row (see head_of) */
    const int hk = FA_PACK ? blockIdx.y : blockIdx.y / (p.heads_q / p.heads_kv), h = blockIdx.y;
    const int nsplit = FA_SPLIT ? p.num_splits : 1;
    const int b = blockIdx.z / nsplit, split = blockIdx.z % nsplit;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    /* this sequence's lengths (metadata in device memory is clamped, not trusted) */
    int sq = p.seqlen_q, sk = p.seqlen_k;
    i64 qrow0 = 0, krow0 = 0; /* varlen: first row of this sequence in q/out and (not paged) in k/v */
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
    const int q0 = qb * BLOCK_Q, nrows = sq * GROUP; /* block rows: positions, or (position, head) pairs */
    if (q0 >= nrows) return; /* the grid covers the longest sequence */
    /* the query positions this block holds */
    const int pos_first = q0 / GROUP, pos_last = (min(q0 + BLOCK_Q, nrows) - 1) / GROUP;

    const u16 *qg = p.q + (FA_VARLEN ? 0 : b * p.q_sb) + qrow0 * p.q_ss;
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

    /*
     * Q stays in shared memory; its fragments are re-read with ldmatrix, which keeps registers for FA_MT tiles.
     * With 16-byte rows it comes by cp.async in the first K/V tile's commit group, so the block does not wait
     * for Q before asking for K and V (ncu: the plain loads' stores were the kernel's hottest long-scoreboard
     * stall, 2.7 % of samples at d128).
     */
    for (int c = threadIdx.x; c < BLOCK_Q * (FA_DQK / 8); c += blockDim.x) {
        int r = c / (FA_DQK / 8), x = (c % (FA_DQK / 8)) * 8, row = q0 + r;
        const int ok = row < nrows && x < FA_DQK_REAL;
        const u16 *src = ok ? qg + (i64)(row / GROUP) * p.q_ss + head_of(row, h, hk) * p.q_sh + x : qg;
        if (QK_VEC) {
            cp_async16(qs + r * QSTR + x, src, ok ? 16 : 0); /* zeros for padded rows and columns */
        } else {
            *(uint4 *)(qs + r * QSTR + x) = ok ? load8(src - x, x, FA_DQK_REAL) : make_uint4(0, 0, 0, 0);
        }
    }

    const int ca = (lane % 4) * 2;
    const int wrow = FA_KSPLIT ? 0 : warp * 16 * FA_MT; /* this warp's first row in the block */
    const int koff = FA_KSPLIT ? warp * WKV : 0;          /* this warp's first key in each tile */
    /* the query positions of this warp's rows (a warp past the last row takes the last position) */
    const int wpos_first = min(q0 + wrow, nrows - 1) / GROUP;
    const int wpos_last = (min(q0 + wrow + 16 * FA_MT, nrows) - 1) / GROUP;

    float o[FA_MT][NT_O][4];
    float m[FA_MT][2], l[FA_MT][2]; /* running max (log2 units) and per-thread partial sum, rows r and r + 8 */
    /* m, or 0 while m is -inf (every key so far masked): the exponent's reference, so that such a row's P stays
       0, not NaN (-inf - -inf). Kept beside m (one m-tile), it changes only where m does, not tested every tile;
       with two m-tiles the 4 registers made ptxas spill in the loop (d128 128x64), so there it is tested. */
#define KEEP_MB (FA_MT == 1)
    float mb[FA_MT][2];
    #pragma unroll
    for (int mt = 0; mt < FA_MT; mt++) {
        #pragma unroll
        for (int t = 0; t < NT_O; t++) o[mt][t][0] = o[mt][t][1] = o[mt][t][2] = o[mt][t][3] = 0.0f;
        m[mt][0] = m[mt][1] = NEG_INF;
        mb[mt][0] = mb[mt][1] = 0.0f;
        l[mt][0] = l[mt][1] = 0.0f;
    }

    /* Keys any row of this block can see; whole tiles outside are never loaded. */
    int lo = 0, hi = sk;
    if (FA_LOCAL && p.window_left >= 0) lo = max(0, pos_first + offset - p.window_left);
    if (FA_LOCAL && p.window_right >= 0) hi = min(sk, pos_last + offset + p.window_right + 1);
    lo = lo / FA_BKV * FA_BKV;
    int ntiles = hi > lo ? (hi - lo + FA_BKV - 1) / FA_BKV : 0;
    if (FA_SPLIT) {
        /* this split's share of the tiles (possibly none: it then writes an empty partial) */
        const int per = (ntiles + nsplit - 1) / nsplit, first = min(split * per, ntiles);
        lo += first * FA_BKV;
        ntiles = min(per, ntiles - first);
    }
    const int plain = !(FA_SOFTCAP && p.softcap > 0.0f) && !(FA_ALIBI && p.alibi);
    /* ldmatrix row addresses of this thread (see ldsm4): Q as A (row blocks 0-7, 8-15 by column halves),
       K by (key, dim) blocks, V transposed */
    const int q_row = (lane & 7) + ((lane >> 3) & 1) * 8, q_col = (lane >> 4) * 8;
    const int k_row = (lane & 7) + (lane >> 4) * 8, k_col = ((lane >> 3) & 1) * 8;
    const int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8;

    /* the first FA_STAGES - 1 tiles in flight; one commit group per tile, empty past the end, so that the
       group count the wait relies on holds */
    /* KV_FAST: this thread's first chunks of the next tile to stage (stage_kv); only computed otherwise */
    const u16 *kp = kg.base, *vp = vg.base;
#if KV_FAST
    kp += (i64)(lo + own_row(FA_DQK / 8)) * kg.stride + own_col(FA_DQK / 8);
    vp += (i64)(lo + own_row(FA_DV / 8)) * vg.stride + own_col(FA_DV / 8);
#endif
    const i64 kstep = (i64)FA_BKV * kg.stride, vstep = (i64)FA_BKV * vg.stride;
    #pragma unroll
    for (int t = 0; t < FA_STAGES - 1; t++) {
        if (t < ntiles) {
            stage_kv(kbuf + t * FA_BKV * KSTR, vbuf + t * FA_BKV * VSTR, kg, vg, lo + t * FA_BKV, sk, kp, vp);
            kp += kstep, vp += vstep;
        }
        cp_commit();
    }
#if QREG
    /* Q came with the first tile's commit group: wait for that group alone (the later ones stay in flight) */
    u32 qreg[FA_DQK / 16][4];
    if (ntiles > 0) {
        cp_wait_oldest();
        __syncthreads();
        #pragma unroll
        for (int kk = 0; kk < FA_DQK / 16; kk++) ldsm4(qreg[kk], qs + q_row * QSTR + kk * 16 + q_col);
    }
#endif
    for (int it = 0; it < ntiles; it++) {
        const int j0 = lo + it * FA_BKV, cur = it % FA_STAGES;
        const u16 *ks = kbuf + cur * FA_BKV * KSTR, *vs = vbuf + cur * FA_BKV * VSTR;
        cp_wait_oldest(); /* tile it has landed (the first time, Q too); the ones after it may still fly */
        /*
         * One barrier a tile: tile it (and Q's plain stores, the first time) is visible to every warp, and every
         * warp is done with tile it - 1, so its slot can take the next tile now. (A second barrier at the end
         * of each tile, which the refill issued before this one needed, was 3.4 % of stall samples.)
         */
        __syncthreads();
        const int ahead = it + FA_STAGES - 1, slot = ahead % FA_STAGES; /* the slot tile it - 1 used */
        if (ahead < ntiles) {
            stage_kv(kbuf + slot * FA_BKV * KSTR, vbuf + slot * FA_BKV * VSTR, kg, vg, lo + ahead * FA_BKV, sk, kp, vp);
            kp += kstep, vp += vstep;
        }
        cp_commit();

        /*
         * This warp's rows against the tile, a warp-uniform answer: a tile wholly outside their causal or sliding
         * window is skipped (it adds nothing to them; the warp only keeps the block's barriers), and a tile only
         * the block's other rows reach needs no mask here. Decided per block instead, a 256-row block sent all
         * of its warps through the masked path on the four tiles around the diagonal, and half of that work was
         * for keys a warp cannot see.
         */
        const int w_skip = FA_LOCAL && ((p.window_right >= 0 && j0 > wpos_last + offset + p.window_right) ||
                                        (p.window_left >= 0 && j0 + FA_BKV - 1 < wpos_first + offset - p.window_left));
        if (!w_skip) {

            float s[FA_MT][NT_S][4];
            #pragma unroll
            for (int mt = 0; mt < FA_MT; mt++)
                #pragma unroll
                for (int t = 0; t < NT_S; t++) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.0f;
            #pragma unroll
            for (int kk = 0; kk < FA_DQK / 16; kk++) {
#if QREG
                const u32(*qa)[4] = &qreg[kk]; /* qa[0]: the one m-tile */
#else
                u32 qa[FA_MT][4];
                #pragma unroll
                for (int mt = 0; mt < FA_MT; mt++) ldsm4(qa[mt], qs + (wrow + mt * 16 + q_row) * QSTR + kk * 16 + q_col);
#endif
                #pragma unroll
                for (int t = 0; t < NT_S; t += 2) {
                    u32 bk[4]; /* bk[0], bk[1]: n-tile t; bk[2], bk[3]: n-tile t + 1; shared by the warp's m-tiles */
                    ldsm4(bk, ks + (koff + t * 8 + k_row) * KSTR + kk * 16 + k_col);
                    #pragma unroll
                    for (int mt = 0; mt < FA_MT; mt++) {
                        mma16816(s[mt][t], qa[mt], bk[0], bk[1]);
                        mma16816(s[mt][t + 1], qa[mt], bk[2], bk[3]);
                    }
                }
            }

            /* Whether any (row, key) of this warp's part of the tile is masked. */
            const int need_mask =
                j0 + FA_BKV > sk ||
                (FA_LOCAL && p.window_right >= 0 && j0 + FA_BKV - 1 > wpos_first + offset + p.window_right) ||
                (FA_LOCAL && p.window_left >= 0 && j0 < wpos_last + offset - p.window_left);
            #pragma unroll
            for (int mt = 0; mt < FA_MT; mt++) {
                const int r0 = q0 + wrow + mt * 16 + lane / 4, r1 = r0 + 8; /* this thread's two rows */
                const int i0 = r0 / GROUP, i1 = r1 / GROUP;                  /* their query positions */
                float mx0 = NEG_INF, mx1 = NEG_INF;
                /* scores stay raw on unmasked plain tiles: the scale is folded into the exponent's FMA below */
                const int raw = plain && !need_mask;
                if (raw) {
                    /* from the first pair, not from -inf: one FMNMX less a row */
                    #pragma unroll
                    for (int t = 0; t < NT_S; t++) {
                        mx0 = t ? fmaxf(mx0, fmaxf(s[mt][t][0], s[mt][t][1])) : fmaxf(s[mt][t][0], s[mt][t][1]);
                        if (ROW1) mx1 = t ? fmaxf(mx1, fmaxf(s[mt][t][2], s[mt][t][3])) : fmaxf(s[mt][t][2], s[mt][t][3]);
                    }
                    mx0 *= p.scale_log2; /* the scale is >= 0, so the max commutes with it */
                    if (ROW1) mx1 *= p.scale_log2;
                } else {
                    /* scale, softcap, ALiBi, mask; scores end in log2 units */
                    #pragma unroll
                    for (int t = 0; t < NT_S; t++)
                        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            if (!ROW1 && e >= 2) continue;
                            int i = e < 2 ? i0 : i1, j = j0 + koff + t * 8 + ca + (e & 1);
                            float slope = 0.0f, x;
                            if (FA_ALIBI && p.alibi) slope = p.alibi[b * p.alibi_sb + head_of(e < 2 ? r0 : r1, h, hk)];
                            if (FA_SOFTCAP && p.softcap > 0.0f) {
                                x = p.softcap * tanhf(s[mt][t][e] * p.scale / p.softcap);
                                if (FA_ALIBI) x -= slope * fabsf((float)(i + offset - j));
                                x *= LOG2E;
                            } else if (FA_ALIBI && slope != 0.0f) {
                                x = (s[mt][t][e] * p.scale - slope * fabsf((float)(i + offset - j))) * LOG2E;
                            } else {
                                x = s[mt][t][e] * p.scale_log2;
                            }
                            int diag = i + offset;
                            if (j >= sk || (FA_LOCAL && p.window_left >= 0 && j < diag - p.window_left) ||
                                (FA_LOCAL && p.window_right >= 0 && j > diag + p.window_right))
                                x = NEG_INF;
                            s[mt][t][e] = x;
                            if (e < 2) mx0 = fmaxf(mx0, x);
                            else mx1 = fmaxf(mx1, x);
                        }
                }
                /* the four threads of a quad hold one row between them */
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
                if (ROW1) {
                    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
                    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
                }
                /*
                 * Lazy rescaling: a row keeps its reference max until a score exceeds it by more than 2^8, so P stays
                 * below 256 (no overflow in fp32 or in the 16-bit P) and the result, normalised by the matching sum, is
                 * the same. Most tiles of a long row then raise no row of the warp, and the warp skips rescaling O.
                 */
    #if FA_DROPOUT
                /* dropout scales P by keep_scale: P stays below 2^8 * keep_scale <= 2^15 (fp16 holds 65504) */
                const float slack = FA_LAZY && p.keep_scale <= 128.0f ? 8.0f : 0.0f;
    #else
                const float slack = FA_LAZY ? 8.0f : 0.0f;
    #endif
                const int up0 = mx0 > m[mt][0] + slack, up1 = ROW1 && mx1 > m[mt][1] + slack;
                float a0 = 1.0f, a1 = 1.0f;
                const int rescale = FA_LAZY ? __any_sync(0xffffffffu, up0 | up1) : 1;
                if (rescale) {
                    /* 0 when the old max was -inf; a row that did not rise keeps 1 (its max may be -inf: no -inf - -inf) */
                    /* a row that rises has mx > -inf, so mb takes it as is */
                    if (up0) a0 = ex2(m[mt][0] - mx0), m[mt][0] = mb[mt][0] = mx0;
                    if (up1) a1 = ex2(m[mt][1] - mx1), m[mt][1] = mb[mt][1] = mx1;
                }
                const float b0 = KEEP_MB ? mb[mt][0] : m[mt][0] == NEG_INF ? 0.0f : m[mt][0];
                const float b1 = KEEP_MB ? mb[mt][1] : m[mt][1] == NEG_INF ? 0.0f : m[mt][1];
                float sum0 = 0.0f, sum1 = 0.0f; /* from the first pair below: 0 + x is an FADD (x may be -0) */
                const float mul = raw ? p.scale_log2 : 1.0f; /* p = 2^(s * mul - b): one FMA and one ex2 */
                #pragma unroll
                for (int t = 0; t < NT_S; t++) {
                    s[mt][t][0] = ex2(fmaf(s[mt][t][0], mul, -b0));
                    s[mt][t][1] = ex2(fmaf(s[mt][t][1], mul, -b0));
                    if (ROW1) s[mt][t][2] = ex2(fmaf(s[mt][t][2], mul, -b1));
                    if (ROW1) s[mt][t][3] = ex2(fmaf(s[mt][t][3], mul, -b1));
                    sum0 = t ? sum0 + (s[mt][t][0] + s[mt][t][1]) : s[mt][t][0] + s[mt][t][1];
                    if (ROW1) sum1 = t ? sum1 + (s[mt][t][2] + s[mt][t][3]) : s[mt][t][2] + s[mt][t][3];
                }
                l[mt][0] = l[mt][0] * a0 + sum0; /* reduced across the quad at the end */
                if (ROW1) l[mt][1] = l[mt][1] * a1 + sum1;
    #if FA_DROPOUT
                {
                    /*
                     * Dropout on P after the sums (the LSE is that of the undropped softmax); kept values are scaled
                     * by 1 / (1 - p) here. Lanes 2q and 2q + 1 hold keys ca, ca + 1 of one group of four (ca % 4 = 0
                     * and 2) in rows r0 and r1: the even lane draws the group for r0, the odd one for r1, and they
                     * trade the halves the other needs, so one Philox call per lane serves both.
                     */
                    const int odd = lane & 1, rr = odd ? r1 : r0;
                    #pragma unroll
                    for (int t = 0; t < NT_S; t++) {
                        const drop_u4 d = drop_draw4(p, b, head_of(rr, h, hk), rr / GROUP, (j0 + koff + t * 8 + ca) >> 2);
                        const u32 own0 = odd ? d.z : d.x, own1 = odd ? d.w : d.y;  /* row rr, this lane's keys */
                        const u32 give0 = odd ? d.x : d.z, give1 = odd ? d.y : d.w; /* row rr, the partner's keys */
                        const u32 got0 = __shfl_xor_sync(0xffffffffu, give0, 1), got1 = __shfl_xor_sync(0xffffffffu, give1, 1);
                        const u32 w0 = odd ? got0 : own0, w1 = odd ? got1 : own1; /* row r0 */
                        const u32 w2 = odd ? own0 : got0, w3 = odd ? own1 : got1; /* row r1 */
                        s[mt][t][0] = w0 < p.drop_threshold ? 0.0f : s[mt][t][0] * p.keep_scale;
                        s[mt][t][1] = w1 < p.drop_threshold ? 0.0f : s[mt][t][1] * p.keep_scale;
                        s[mt][t][2] = w2 < p.drop_threshold ? 0.0f : s[mt][t][2] * p.keep_scale;
                        s[mt][t][3] = w3 < p.drop_threshold ? 0.0f : s[mt][t][3] * p.keep_scale;
                    }
                }
    #endif
                if (rescale) {
                    #pragma unroll
                    for (int t = 0; t < NT_O; t++) {
                        o[mt][t][0] *= a0;
                        o[mt][t][1] *= a0;
                        if (ROW1) o[mt][t][2] *= a1;
                        if (ROW1) o[mt][t][3] *= a1;
                    }
                }
            }

            /* O += P V: P's accumulators of n-tiles 2k, 2k+1 form the A fragment of key step k */
            #pragma unroll
            for (int kk = 0; kk < WKV / 16; kk++) {
                u32 pa[FA_MT][4];
                #pragma unroll
                for (int mt = 0; mt < FA_MT; mt++) {
                    pa[mt][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3]); /* !ROW1: raw scores, see ROW1 */
                    pa[mt][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
                #pragma unroll
                for (int t = 0; t < NT_O; t += 2) {
                    u32 bv[4]; /* transposed: bv[0], bv[1] for dims t*8.., bv[2], bv[3] for (t+1)*8.. */
                    ldsm4t(bv, vs + (koff + kk * 16 + v_row) * VSTR + t * 8 + v_col);
                    #pragma unroll
                    for (int mt = 0; mt < FA_MT; mt++) {
                        mma16816(o[mt][t], pa[mt], bv[0], bv[1]);
                        mma16816(o[mt][t + 1], pa[mt], bv[2], bv[3]);
                    }
                }
            }
        }
    }
    CP_WAIT(0); /* nothing in flight into shared memory past here (Q's copies when no tile was visible) */
#if FA_KSPLIT
    if (!merge_warps(m, l, o, smem, warp, lane)) return;
#endif

    u16 *og = p.out + (FA_VARLEN ? 0 : b * p.o_sb) + qrow0 * p.o_ss;
    float *lg = p.lse ? p.lse + (FA_VARLEN ? 0 : b * p.lse_sb) + qrow0 * p.lse_ss : 0;
    /* split partials: row index over every sequence's rows */
    const i64 prow0 = FA_VARLEN ? qrow0 : (i64)b * p.seqlen_q;
    #pragma unroll
    for (int mt = 0; mt < FA_MT; mt++) {
        const int r0 = q0 + wrow + mt * 16 + lane / 4, r1 = r0 + 8;
        const int i0 = r0 / GROUP, i1 = r1 / GROUP, h0 = head_of(r0, h, hk), h1 = head_of(r1, h, hk);
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
        float lse0 = l0 > 0.0f ? (m[mt][0] + log2f(l0)) * LN2 : NEG_INF;
        float lse1 = l1 > 0.0f ? (m[mt][1] + log2f(l1)) * LN2 : NEG_INF;
#if FA_SPLIT
        float *op = p.o_part + (i64)split * p.part_rows * p.heads_q * FA_DV;
        float *lp = p.lse_part + (i64)split * p.heads_q * p.part_rows;
        #pragma unroll
        for (int t = 0; t < NT_O; t++) {
            if (t * 8 >= FA_DV_REAL) continue; /* all padding: the combine never reads it */
            if (r0 < nrows)
                *(float2 *)(op + ((prow0 + i0) * p.heads_q + h0) * FA_DV + t * 8 + ca) =
                    make_float2(o[mt][t][0] * inv0, o[mt][t][1] * inv0);
            if (r1 < nrows)
                *(float2 *)(op + ((prow0 + i1) * p.heads_q + h1) * FA_DV + t * 8 + ca) =
                    make_float2(o[mt][t][2] * inv1, o[mt][t][3] * inv1);
        }
        if (lane % 4 == 0) {
            if (r0 < nrows) lp[(i64)h0 * p.part_rows + prow0 + i0] = lse0;
            if (r1 < nrows) lp[(i64)h1 * p.part_rows + prow0 + i1] = lse1;
        }
#else
        #pragma unroll
        for (int t = 0; t < NT_O; t++) {
            if (t * 8 >= FA_DV_REAL) continue; /* padded columns are not in out */
            u16 *o0 = og + (i64)i0 * p.o_ss + (i64)h0 * p.o_sh + t * 8 + ca;
            u16 *o1 = og + (i64)i1 * p.o_ss + (i64)h1 * p.o_sh + t * 8 + ca;
            if (V_VEC) {
                if (r0 < nrows) *(u32 *)o0 = pack2(o[mt][t][0] * inv0, o[mt][t][1] * inv0);
                if (r1 < nrows) *(u32 *)o1 = pack2(o[mt][t][2] * inv1, o[mt][t][3] * inv1);
            } else {
                store2(o0, t * 8 + ca, r0 < nrows, pack2(o[mt][t][0] * inv0, o[mt][t][1] * inv0));
                store2(o1, t * 8 + ca, r1 < nrows, pack2(o[mt][t][2] * inv1, o[mt][t][3] * inv1));
            }
        }
        if (lg && lane % 4 == 0) {
            if (r0 < nrows) lg[(i64)i0 * p.lse_ss + (i64)h0 * p.lse_sh] = lse0;
            if (r1 < nrows) lg[(i64)i1 * p.lse_ss + (i64)h1 * p.lse_sh] = lse1;
        }
#endif
    }
}

/*
 * Merges the split partials of fa_fwd_sm80 (FA_SPLIT): one warp per (row, query head). With L_s the partial
 * LSEs and L = log(sum exp L_s), out = sum_s exp(L_s - L) o_s, lse = L; a split that saw no key has L_s = -inf
 * and weight 0, and a row no split saw gets out 0 and lse -inf.
 */
extern "C" __global__ void __launch_bounds__(128) fa_combine_sm80(const struct fa_cuda_fwd_params p)
{
    const int lane = threadIdx.x % 32;
    const i64 pair = (i64)blockIdx.x * 4 + threadIdx.x / 32;
    if (pair >= (i64)p.part_rows * p.heads_q) return;
    const int prow = (int)(pair / p.heads_q), h = (int)(pair % p.heads_q);
    const float *lp = p.lse_part + (i64)h * p.part_rows + prow;
    const i64 split_o = (i64)p.part_rows * p.heads_q * FA_DV, split_l = (i64)p.heads_q * p.part_rows;
    float mx = NEG_INF;
    for (int s = lane; s < p.num_splits; s += 32) mx = fmaxf(mx, lp[s * split_l]);
    for (int o = 16; o >= 1; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    if (mx != NEG_INF)
        for (int s = lane; s < p.num_splits; s += 32) sum += ex2((lp[s * split_l] - mx) * LOG2E);
    for (int o = 16; o >= 1; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float lse = sum > 0.0f ? mx + log2f(sum) * LN2 : NEG_INF;
    /* the row's place in out and lse: (batch, seq) from the row, or the varlen row itself */
    i64 ob, lb;
    if (FA_VARLEN) {
        ob = (i64)prow * p.o_ss, lb = (i64)prow * p.lse_ss;
    } else {
        const int bb = prow / p.seqlen_q, i = prow % p.seqlen_q;
        ob = bb * p.o_sb + (i64)i * p.o_ss, lb = bb * p.lse_sb + (i64)i * p.lse_ss;
    }
    u16 *out = p.out + ob + (i64)h * p.o_sh;
    const float *op = p.o_part + ((i64)prow * p.heads_q + h) * FA_DV;
    for (int c = lane * 2; c < FA_DV_REAL; c += 64) { /* real columns only (c + 1 < FA_DV: both even) */
        float a0 = 0.0f, a1 = 0.0f;
        if (lse != NEG_INF)
            for (int s = 0; s < p.num_splits; s++) {
                const float w = ex2((lp[s * split_l] - lse) * LOG2E); /* 0 for an empty split */
                const float2 v = *(const float2 *)(op + s * split_o + c);
                a0 += w * v.x, a1 += w * v.y;
            }
        if (V_VEC) *(u32 *)(out + c) = pack2(a0, a1);
        else store2(out + c, c, 1, pack2(a0, a1));
    }
    if (p.lse && lane == 0) p.lse[lb + (i64)h * p.lse_sh] = lse;
}
