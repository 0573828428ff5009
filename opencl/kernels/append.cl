/*
 * KV-cache append with rotary embedding (flash_attn_with_kvcache) for OpenCL C 1.2, enqueued on the forward's
 * queue just before it: the translation of cuda/kernels/append_sm80.cu with fp32/fp16/bf16 storage.
 *
 * The host prepends fa_cl_append_params.h and common.cl (fa_t, ld1, st1) and defines FA_DTYPE (0 fp32, 1 fp16,
 * 2 bf16) and FA_DROPOUT=0 (common.cl asks for it).
 *
 * NDRange: 1-D, FA_CL_APPEND_LANES work-items per row task, any work-group size. The tasks, in this order:
 *   k_new/v_new rows (batch, seqlen_new, heads_kv): row t of sequence b goes to cache position seqused_k[b] + t
 *     (dense (batch, seqlen_k, heads_kv, dim) cache, or a page pool through the block table); k's first
 *     rotary_dim dims rotated to that position in fp32 and rounded to the dtype, the rest copied bit for bit;
 *   with rotary, q rows (batch, seqlen_q, heads_q): rotated into q_rot, a contiguous copy of q's shape the
 *     forward reads instead of q (q is an input and is not written); row i sits at seqused_k[b] + i when the
 *     mask is causal or windowed, else at seqused_k[b] (flash_attn's convention, cpu_rotary_q_position).
 * Lane 0 of the first batch tasks also writes lens[b] = seqused_k[b] + seqlen_new (clamped to the cache), the
 * key counts the forward then runs over; seqused_k itself is not modified. The host launches at least batch
 * tasks.
 *
 * Device metadata is clamped, not trusted: a negative length counts as 0, a row past the cache capacity
 * (seqlen_k) is not written, a block-table entry that is not a page is skipped, rotary positions are clamped
 * to the tables. No barriers and no local memory, so returning early is safe (fwd.cl's header names the two
 * patterns PoCL 3.1 miscompiles; neither occurs here).
 */

/*
 * The rotation must round each product and each sum on its own, as the CPU backend's fp32 C does (it is built
 * without contraction) and append_sm80.cu does with __fmul_rn/__fsub_rn: a fused multiply-add would round once
 * and differ in the last bit, so the cache would not be bit-identical across backends.
 */
#pragma OPENCL FP_CONTRACT OFF

/* Storage bits, for copies that must not pass through fp32 (a NaN's payload survives, as with memcpy). */
#if FA_DTYPE == 0
typedef uint fa_bits;
#else
typedef ushort fa_bits;
#endif

/* dst[x] = src[x] for x in [from, n), lanes striding FA_CL_APPEND_LANES. */
static inline void copy_bits(__global fa_t *dst, __global const fa_t *src, int from, int n, int lane)
{
    __global fa_bits *d = (__global fa_bits *)dst;
    __global const fa_bits *s = (__global const fa_bits *)src;
    for (int x = from + lane; x < n; x += FA_CL_APPEND_LANES) d[x] = s[x];
}

/* Copies a head row of dim elements, its first rotary_dim rotated with the table rows c and s. */
static inline void rotate_row(__global fa_t *dst, __global const fa_t *src, int dim, int rotary_dim, int interleaved,
                              __global const float *c, __global const float *s, int lane)
{
    const int npairs = rotary_dim / 2;
    for (int i = lane; i < npairs; i += FA_CL_APPEND_LANES) {
        /* interleaved (GPT-J) rotates pairs (2i, 2i+1); otherwise (GPT-NeoX) the halves (i, i + npairs) */
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + npairs;
        const float x1 = ld1(src, a), x2 = ld1(src, b), ci = c[i], si = s[i];
        /* as the CPU: x1 c - x2 s, x2 c + x1 s; separate statements and FP_CONTRACT OFF keep the roundings */
        const float x1c = x1 * ci, x2s = x2 * si, x2c = x2 * ci, x1s = x1 * si;
        st1(dst + a, x1c - x2s);
        st1(dst + b, x2c + x1s);
    }
    copy_bits(dst, src, rotary_dim, dim, lane);
}

/* Keys already in sequence b's cache, clamped to [0, seqlen_k]. */
static inline long used_of(__global const int *seqused_k, long off, int b, int seqlen_k)
{
    return min(max(seqused_k[off + b], 0), seqlen_k);
}

__kernel void fa_append_cl(__global const fa_t *k_new, __global const fa_t *v_new, __global const fa_t *q,
                           __global fa_t *k, __global fa_t *v, __global fa_t *q_rot, __global int *lens,
                           __global const int *seqused_k, __global const int *block_table,
                           __global const float *cos_t, __global const float *sin_t, const fa_cl_append_params p)
{
    const long gid = (long)get_global_id(0);
    const long task = gid / FA_CL_APPEND_LANES;
    const int lane = (int)(gid % FA_CL_APPEND_LANES);
    if (lane == 0 && task < p.batch)
        lens[p.lens_off + task] =
            (int)min(used_of(seqused_k, p.seqused_off, (int)task, p.seqlen_k) + p.seqlen_new, (long)p.seqlen_k);

    const long nkv = (long)p.batch * p.seqlen_new * p.heads_kv;
    const long nq = p.rotary_dim > 0 ? (long)p.batch * p.seqlen_q * p.heads_q : 0;
    if (task < nkv) {
        const int hk = (int)(task % p.heads_kv), t = (int)(task / p.heads_kv % p.seqlen_new);
        const int b = (int)(task / ((long)p.heads_kv * p.seqlen_new));
        const long pos = used_of(seqused_k, p.seqused_off, b, p.seqlen_k) + t;
        if (pos >= p.seqlen_k) return; /* past the cache: a bad seqused_k writes nothing */
        long kd, vd;
        if (p.paged) {
            /* pos < seqlen_k <= max_pages_per_seq * page_size: the entry lies in the row the host bound */
            const int page = block_table[p.bt_off + (long)b * p.bt_stride + pos / p.page_size];
            if (page < 0 || page >= p.num_pages) return; /* not a page: written nowhere */
            const long row = pos % p.page_size;
            kd = p.k_off + (long)page * p.k_sb + row * p.k_ss + (long)hk * p.k_sh;
            vd = p.v_off + (long)page * p.v_sb + row * p.v_ss + (long)hk * p.v_sh;
        } else {
            kd = p.k_off + (long)b * p.k_sb + pos * p.k_ss + (long)hk * p.k_sh;
            vd = p.v_off + (long)b * p.v_sb + pos * p.v_ss + (long)hk * p.v_sh;
        }
        __global const fa_t *ks = k_new + p.kn_off + (long)b * p.kn_sb + (long)t * p.kn_ss + (long)hk * p.kn_sh;
        __global const fa_t *vs = v_new + p.vn_off + (long)b * p.vn_sb + (long)t * p.vn_ss + (long)hk * p.vn_sh;
        if (p.rotary_dim > 0) {
            const long r = min(pos, (long)p.rotary_seqlen - 1); /* pos >= 0 already */
            rotate_row(k + kd, ks, p.dqk, p.rotary_dim, p.interleaved, cos_t + p.cos_off + r * p.cos_s,
                       sin_t + p.sin_off + r * p.sin_s, lane);
        } else {
            copy_bits(k + kd, ks, 0, p.dqk, lane);
        }
        copy_bits(v + vd, vs, 0, p.dv, lane);
    } else if (task < nkv + nq) {
        const long r = task - nkv; /* (batch, seqlen_q, heads_q) row-major: also q_rot's row */
        const int h = (int)(r % p.heads_q), i = (int)(r / p.heads_q % p.seqlen_q);
        const int b = (int)(r / ((long)p.heads_q * p.seqlen_q));
        const long pos = used_of(seqused_k, p.seqused_off, b, p.seqlen_k) + (p.q_moving ? i : 0);
        const long tr = min(pos, (long)p.rotary_seqlen - 1);
        __global const fa_t *qs = q + p.q_off + (long)b * p.q_sb + (long)i * p.q_ss + (long)h * p.q_sh;
        rotate_row(q_rot + p.qrot_off + r * p.dqk, qs, p.dqk, p.rotary_dim, p.interleaved,
                   cos_t + p.cos_off + tr * p.cos_s, sin_t + p.sin_off + tr * p.sin_s, lane);
    }
}
