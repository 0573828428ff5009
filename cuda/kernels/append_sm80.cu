/*
 * KV-cache append with rotary embedding (flash_attn_with_kvcache), run on the caller's stream just before the
 * forward kernel. One source for the CUDA plugin (NVRTC) and the HIP plugin (hiprtc; NVRTC in its NVIDIA
 * verification build): the spellings that differ come from fa_vendor.cuh, and nothing depends on the warp or
 * wavefront width (a row task's 32 lanes are consecutive threads; they never talk to each other). The host
 * defines:
 *   FA_STORAGE   the tensors' elements: 0 fp32, 1 fp16, 2 bf16 (FA_BF16=0/1 alone still means fp16/bf16)
 *
 * 32 lanes per row task, the tasks in this order:
 *   k_new/v_new rows (batch, seqlen_new, heads_kv): row t of sequence b goes to cache position
 *     seqused_k[b] + t (dense (batch, seqlen_k, heads_kv, dim) cache, or a page pool through the block table);
 *     k's first rotary_dim dims rotated to that position in fp32 and rounded to the dtype;
 *   with rotary, q rows (batch, seqlen_q, heads_q): rotated into q_rot, a contiguous copy of q's shape the
 *     forward reads instead of q (q itself is an input and is not written); row i sits at seqused_k[b] + i when
 *     the mask is causal or windowed, else at seqused_k[b] (flash_attn's convention).
 * The first batch threads of the grid also write lens[b] = seqused_k[b] + seqlen_new (clamped to the cache),
 * the key counts the forward then runs over; seqused_k itself is not modified.
 *
 * Device metadata is clamped, not trusted: a negative length counts as 0, a row past the cache capacity
 * (seqlen_k) is not written, a block-table entry that is not a page is skipped, rotary positions are clamped
 * to the tables. The rotation uses explicitly rounded products and sums (no FMA contraction), so it is
 * bit-identical to the CPU backend's fp32 arithmetic.
 */
/* before fa_vendor.cuh, whose own default (fp32) is the SIMT kernels' */
#ifndef FA_STORAGE
#if defined(FA_BF16) && FA_BF16
#define FA_STORAGE 2
#else
#define FA_STORAGE 1
#endif
#endif
#include "fa_vendor.cuh" /* fa_io_t, io_to_f32, io_from_f32 */

typedef long long i64;

struct fa_cuda_append_params {
    const fa_io_t *k_new, *v_new, *q;
    fa_io_t *k, *v;                /* the cache: dense, or page pools (FA paged layout) */
    fa_io_t *q_rot;                /* rotary: contiguous (batch, seqlen_q, heads_q, dqk) */
    int *lens;                    /* out: seqused_k[b] + seqlen_new, clamped */
    const int *seqused_k;         /* keys already in the cache, per sequence */
    const int *block_table;       /* paged: (batch, bt_stride) page numbers; NULL: dense cache */
    const float *cos, *sin;       /* rotary: fp32 (rotary_seqlen, rotary_dim / 2) */
    i64 kn_sb, kn_ss, kn_sh, vn_sb, vn_ss, vn_sh; /* strides in elements: batch, seq, head */
    i64 q_sb, q_ss, q_sh;
    i64 k_sb, k_ss, k_sh, v_sb, v_ss, v_sh;       /* dense: batch, seq, head; paged: page, row, head */
    i64 cos_s, sin_s;             /* row strides of the tables */
    i64 bt_stride;
    int batch, seqlen_new, seqlen_q, seqlen_k, heads_q, heads_kv, dqk, dv;
    int page_size, num_pages;
    int rotary_dim, interleaved, rotary_seqlen;
    int q_moving;                 /* causal or windowed: q row i at seqused_k[b] + i */
};


/* Copies a head row of dim elements from src to dst, rotating its first rotary_dim at table row pos. */
static __device__ __forceinline__ void rotate_row(const struct fa_cuda_append_params &p, fa_io_t *dst, const fa_io_t *src,
                                                  int dim, i64 pos, int lane)
{
    const int half = p.rotary_dim / 2;
    if (half > 0) {
        pos = min(max(pos, (i64)0), (i64)p.rotary_seqlen - 1);
        const float *c = p.cos + (i64)pos * p.cos_s, *s = p.sin + (i64)pos * p.sin_s;
        for (int i = lane; i < half; i += 32) {
            const int a = p.interleaved ? 2 * i : i, b = p.interleaved ? 2 * i + 1 : i + half;
            const float x1 = io_to_f32(src[a]), x2 = io_to_f32(src[b]), ci = c[i], si = s[i];
            /* as the CPU: x1 c - x2 s, x2 c + x1 s, each product and sum rounded on its own */
            dst[a] = io_from_f32(__fsub_rn(fa_mul_rn(x1, ci), fa_mul_rn(x2, si)));
            dst[b] = io_from_f32(__fadd_rn(fa_mul_rn(x2, ci), fa_mul_rn(x1, si)));
        }
    }
    for (int x = p.rotary_dim + lane; x < dim; x += 32) dst[x] = src[x];
}

/* Keys already in sequence b's cache, clamped to [0, seqlen_k]; positions built on it are 64-bit. */
static __device__ __forceinline__ i64 used_of(const struct fa_cuda_append_params &p, int b)
{
    return min(max(p.seqused_k[b], 0), p.seqlen_k);
}

extern "C" __global__ void __launch_bounds__(128) fa_append_sm80(const struct fa_cuda_append_params p)
{
    const i64 gtid = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (gtid < p.batch) p.lens[gtid] = (int)min(used_of(p, (int)gtid) + p.seqlen_new, (i64)p.seqlen_k);

    const int lane = threadIdx.x % 32;
    const i64 task = gtid / 32;
    const i64 nkv = (i64)p.batch * p.seqlen_new * p.heads_kv;
    const i64 nq = p.rotary_dim > 0 ? (i64)p.batch * p.seqlen_q * p.heads_q : 0;
    if (task < nkv) {
        const int hk = (int)(task % p.heads_kv), t = (int)(task / p.heads_kv % p.seqlen_new);
        const int b = (int)(task / ((i64)p.heads_kv * p.seqlen_new));
        const i64 pos = used_of(p, b) + t;
        if (pos >= p.seqlen_k) return; /* past the cache: a bad seqused_k writes nothing */
        fa_io_t *kd, *vd;
        if (p.block_table) {
            const int page = p.block_table[(i64)b * p.bt_stride + pos / p.page_size]; /* pos < seqlen_k fits the row */
            if (page < 0 || page >= p.num_pages) return; /* not a page: written nowhere */
            const i64 row = pos % p.page_size;
            kd = p.k + (i64)page * p.k_sb + row * p.k_ss + (i64)hk * p.k_sh;
            vd = p.v + (i64)page * p.v_sb + row * p.v_ss + (i64)hk * p.v_sh;
        } else {
            kd = p.k + (i64)b * p.k_sb + pos * p.k_ss + (i64)hk * p.k_sh;
            vd = p.v + (i64)b * p.v_sb + pos * p.v_ss + (i64)hk * p.v_sh;
        }
        const fa_io_t *ks = p.k_new + (i64)b * p.kn_sb + (i64)t * p.kn_ss + (i64)hk * p.kn_sh;
        const fa_io_t *vs = p.v_new + (i64)b * p.vn_sb + (i64)t * p.vn_ss + (i64)hk * p.vn_sh;
        rotate_row(p, kd, ks, p.dqk, pos, lane);
        for (int x = lane; x < p.dv; x += 32) vd[x] = vs[x];
    } else if (task < nkv + nq) {
        const i64 r = task - nkv; /* (batch, seqlen_q, heads_q) row-major: also q_rot's row */
        const int h = (int)(r % p.heads_q), i = (int)(r / p.heads_q % p.seqlen_q);
        const int b = (int)(r / ((i64)p.heads_q * p.seqlen_q));
        const i64 pos = used_of(p, b) + (p.q_moving ? i : 0);
        const fa_io_t *qs = p.q + (i64)b * p.q_sb + (i64)i * p.q_ss + (i64)h * p.q_sh;
        rotate_row(p, p.q_rot + r * p.dqk, qs, p.dqk, pos, lane);
    }
}
