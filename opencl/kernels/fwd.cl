/*
 * Exact FlashAttention-2 forward for OpenCL C 1.2 (PoCL, NVIDIA, any conformant device): the translation of
 * cuda/kernels/fwd_f32.cu (fp32 FMAs only, same register tiling) with 16-bit storage types, split-KV partials
 * and their combine taken from cuda/kernels/fwd_sm80.cu. All arithmetic is fp32 (no native_/half_ math).
 *
 * The host prepends fa_cl_params.h (fa_cl_fwd_params, fa_cl_i64) and defines, always:
 *   FA_DTYPE        storage of q/k/v/out: 0 fp32 (float), 1 fp16 (half, read with vload_half, written with
 *                   vstore_half_rte: core OpenCL 1.2, no cl_khr_fp16), 2 bf16 (ushort, round to nearest even)
 *   FA_DQK, FA_DV   the tensors' head dims (any, 1-256; they may differ)
 *   FA_BQ, FA_BKV, FA_WG  query rows per work-group, keys per K/V tile, work-items per work-group (below)
 *   FA_SOFTCAP, FA_ALIBI, FA_LOCAL   1: softcap / ALiBi / causal-or-window code compiled in (0: absent)
 *   FA_VARLEN, FA_PAGED, FA_SPLIT    q/out (total_q, heads, dim) with cu_q; k/v page pools + block table;
 *                                    the key range split over get_group_id(2), partials merged by fa_combine_cl
 *   FA_DROPOUT      1: dropout on P with the library's mask (fa_dropout_keep, api/fa_philox.h); 0: no code
 *   FA_PACK, FA_GROUP  1: decode form, GQA packed: a work-group serves one KV head, and its rows are the
 *                   (position, query head) pairs of the FA_GROUP query heads sharing it, position-major (row R =
 *                   position R / FA_GROUP, head hk * FA_GROUP + R % FA_GROUP, as fwd_sm80.cu), so each K/V tile
 *                   is read once for the whole group instead of once per query head; 0: one query head
 *
 * Valid tiles (anything else is an #error):
 *   FA_WG  in {64, 128, 256}: FA_WG / 16 row groups of 16 lanes
 *   FA_BQ  = RPT * FA_WG / 16 with RPT (rows per work-item) in {1, 2, 4, 8}
 *          (FA_WG 256: FA_BQ in {16, 32, 64, 128}; 128: {8, 16, 32, 64}; 64: {4, 8, 16, 32})
 *   FA_BKV in {16, 32, 64, 128}: NC = FA_BKV / 16 keys per work-item
 * Accumulators per work-item: RPT * (4 * ceil(FA_DV / 64) + NC) floats; RPT 8 with FA_DV > 128 is heavy on GPUs.
 *
 * Local memory, bytes (static; the host's planner computes the same number):
 *   DQK4  = 4 * ceil(FA_DQK / 4)
 *   QSTR  = DQK4 + ((DQK4 / 4) % 2 ? 0 : 4)           Q and K row stride in floats (an odd number of float4s)
 *   VSTR  = 64 * ceil(FA_DV / 64)                      V row stride in floats (= the staged V columns)
 *   PSTR  = FA_BKV + 4                                 P row stride in floats
 *   bytes = 4 * (FA_BQ * QSTR + FA_BKV * max(QSTR, VSTR) + FA_BQ * PSTR + 16 * FA_BQ)
 *   (Q tile; one K/V tile buffer: K, then V in the same place; P tile; row-max/row-sum exchange.)
 *   e.g. d64 (QSTR 68, VSTR 64) 64x32: 39424; d128 (QSTR 132, VSTR 128) 32x32: 40448, 64x32: 64000;
 *   d256 (QSTR 260) 16x16: 35584. FA_WG does not enter it. NVIDIA's OpenCL gives a work-group 48 KB (49152).
 *
 * NDRange of fa_fwd_cl: global = (num_q_blocks * FA_WG, H, batch * S), local = (FA_WG, 1, 1), with
 * num_q_blocks = ceil(seqlen_q * G / FA_BQ) (varlen: the largest sequence), G = FA_GROUP and H = heads_kv under
 * FA_PACK (else G = 1, H = heads_q), and S = num_splits under FA_SPLIT, else 1.
 * NDRange of fa_combine_cl: global = (ceil(part_rows * heads_q / 4) * 128, 1, 1), local = (128, 1, 1).
 *
 * Alignment: nothing beyond element alignment of every offset and stride is assumed (vload/vstore accept it).
 *
 * Work-group = (query block, query head, batch [x split]); work-item (ty, tx) = (lid / 16, lid % 16). Q is
 * staged in local memory once; each K tile and then V tile is staged in one local buffer (zero-filled past the
 * keys and the head dims). Work-item (ty, tx) computes S for rows ty + TY i (i < RPT, TY = FA_WG / 16 row groups)
 * and keys tx + 16 c (c < NC) as fp32 dot products (float4 local reads), applies softcap, ALiBi and the mask
 * (scores in base 2, see QSCALE). OpenCL 1.2 has no shuffles: a row's 16 lanes exchange their partial maxima through
 * local memory (one barrier that also frees the K buffer for V), write P = 2^(s - m) to a local tile, and accumulate O
 * for their rows and dims 4 tx + 64 c (float4 reads of P and V). Running max and per-lane sums give the online
 * softmax; the sums meet in local memory at the end. No N x N matrix exists anywhere. LSE is natural log.
 * Dropout (FA_DROPOUT) multiplies P by 0 or 1 / (1 - p) after the row sums, so the LSE and the normaliser are
 * those of the undropped softmax, as the CPU and CUDA forwards; the multipliers are drawn into the P tile
 * before the row-max barrier (below, at the tile loop), which costs no extra barrier.
 * Masks follow fwd_sm80.cu and api/flashport.h: bottom-right causal/window (offset = seqlen_k - seqlen_q).
 *
 * Measured on an H100 SXM (NVIDIA OpenCL, driver 580; fp32 FMA peak about 67 TFLOP/s), fp32, 2 x 16 heads,
 * 4096 x 4096, no mask: d64 32x64 WG 64 26.4 TFLOP/s, 64x32 WG 128 25.4; d128 32x32 WG 64 24.1, WG 128 23.7,
 * WG 256 18.0 (the compiler caps it at 64 registers and spills); d256 16x16 WG 64 17.0, WG 256 9.5. fp16/bf16
 * storage runs at the fp32 rate (d128 32x32 WG 128: 24.7). Tried and dropped: register prefetch of the next
 * K/V tile (global loads issued before the FMAs, stored after the barrier): within +-3 %, so global latency
 * at the barriers is not what limits it.
 */

/* fa_t, ld1/ld4/st1/st4/load4, bf16_rne, comp and drop_philox: common.cl, which the host puts before this file */

#define TY (FA_WG / 16)                 /* row groups */
#define RPT (FA_BQ / TY)                /* rows per work-item */
#define NC (FA_BKV / 16)                /* keys per work-item in S */
#define DQK4 ((FA_DQK + 3) / 4 * 4)     /* q/k columns staged (zeros past FA_DQK) */
#define ND4 ((FA_DV + 63) / 64)         /* float4 column groups of O per work-item */
/* row strides in floats: an odd number of float4s, so 8 lanes reading 8 consecutive rows hit 8 bank groups */
#define QSTR (DQK4 + ((DQK4 / 4) % 2 ? 0 : 4))
#define KSTR QSTR
#define VSTR (64 * ND4)                 /* v columns staged (zeros past FA_DV); lanes read consecutive float4s */
#define PSTR (FA_BKV + 4)
#define KVSTR_MAX (KSTR > VSTR ? KSTR : VSTR)
/* the same in float4s, for the float4 views of local memory */
#define QSTR4 (QSTR / 4)
#define KSTR4 (KSTR / 4)
#define VSTR4 (VSTR / 4)
#define PSTR4 (PSTR / 4)
#define NEG_INF (-INFINITY)
/*
 * Scores in base 2: without softcap, Q is staged times scale * log2(e) (one multiply per Q element instead of one
 * per score) and P = 2^(s - m); ALiBi slopes are scaled to match, the LSE is converted back at the end. With
 * softcap the cap needs natural units, so Q is staged unscaled and each score is scaled, capped, then converted.
 * FA_FAST_EXP (the host sets it on GPUs) takes native_exp2: on NVIDIA one ex2.approx (2 ulp), what FlashAttention
 * itself uses; on other devices the correctly rounded exp2.
 */
#if FA_SOFTCAP
#define QSCALE 1.0f
#else
#define QSCALE (p.scale * M_LOG2E_F)
#endif
#ifndef FA_FAST_EXP
#define FA_FAST_EXP 0
#endif
#if FA_FAST_EXP
#define EXP2 native_exp2
#else
#define EXP2 exp2
#endif

#ifndef FA_PACK
#define FA_PACK 0
#endif
#ifndef FA_GROUP
#define FA_GROUP 1
#endif
#define GROUP (FA_PACK ? FA_GROUP : 1) /* block rows per query position */
/* the query head of block row R (see FA_PACK) */
#define HEAD_OF(R) (FA_PACK ? hk * FA_GROUP + (R) % FA_GROUP : h)

#if FA_WG != 64 && FA_WG != 128 && FA_WG != 256
#error "FA_WG must be 64, 128 or 256"
#endif
#if FA_BQ % TY || (RPT != 1 && RPT != 2 && RPT != 4 && RPT != 8)
#error "FA_BQ must be FA_WG / 16 times 1, 2, 4 or 8"
#endif
#if FA_BKV != 16 && FA_BKV != 32 && FA_BKV != 64 && FA_BKV != 128
#error "FA_BKV must be 16, 32, 64 or 128"
#endif
#if FA_DQK < 1 || FA_DQK > 256 || FA_DV < 1 || FA_DV > 256
#error "head dims must be 1-256"
#endif

/* ------------------------------------------------------------------ key rows */

/* Where key row j of one (sequence, kv head) lives: rows `stride` apart, or (FA_PAGED) pages through the block
   table, as key_row in fwd_f32.cu. */
static inline __global const fa_t *key_row(__global const fa_t *base, long stride, __global const int *pages,
                                           long page_stride, int page_size, int num_pages, int j)
{
#if FA_PAGED
    int page = pages[j / page_size];
    page = min(max(page, 0), num_pages - 1); /* a bad table entry reads a real page, never out of bounds */
    return base + (long)page * page_stride + (long)(j % page_size) * stride;
#else
    return base + (long)j * stride;
#endif
}

/*
 * Element group c of the K or V tile at keys [j0, j0 + FA_BKV): row c / cols4, float4 column c % cols4; zeros past
 * `valid` keys and `real` columns. The kernel stores it: helpers never touch local memory, because PoCL 3.1 keeps
 * a helper that is not inlined as a call and, once LLVM has folded a __local array into it as a constant, the
 * helper writes a static copy of the array instead of the work-group's local memory.
 */
static inline float4 tile_elem(int c, int cols4, int real, __global const fa_t *base, long stride,
                               __global const int *pages, long page_stride, int page_size, int num_pages, int j0,
                               int valid)
{
    const int r = c / cols4, x = (c % cols4) * 4;
    if (j0 + r >= valid || x >= real) return (float4)(0.0f);
    return load4(key_row(base, stride, pages, page_stride, page_size, num_pages, j0 + r), x, real);
}

/* The maximum / sum of a row's 16 lane values (its 4 float4s of red4), in a fixed order: every lane of the row
   gets the same bits. Values, not a local pointer (see tile_elem). */
static inline float max16(float4 a, float4 b, float4 c, float4 d)
{
    const float4 e = fmax(fmax(a, b), fmax(c, d));
    return fmax(fmax(e.x, e.y), fmax(e.z, e.w));
}

static inline float sum16(float4 a, float4 b, float4 c, float4 d)
{
    const float4 e = (a + b) + (c + d);
    return (e.x + e.y) + (e.z + e.w);
}

/* ------------------------------------------------------------------ forward */

__kernel __attribute__((reqd_work_group_size(FA_WG, 1, 1))) void
fa_fwd_cl(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global fa_t *out,
          __global float *lse, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
          __global const int *seqused_k, __global const int *block_table, __global float *o_part,
          __global float *lse_part, const fa_cl_fwd_params p)
{
    /* float4 arrays: a __local float array is only 4-byte aligned, and the tiles are read as float4s */
    __local float4 qs4[FA_BQ * QSTR4];          /* Q: FA_BQ x QSTR */
    __local float4 kv4[FA_BKV * KVSTR_MAX / 4]; /* K tile (FA_BKV x KSTR), then V tile (FA_BKV x VSTR) */
    __local float4 ps4[FA_BQ * PSTR4];          /* P of the current tile: FA_BQ x PSTR */
    __local float4 red4[FA_BQ * 4];             /* 16 lanes' row maxima (per tile), then row sums (at the end) */
    __local float *ps = (__local float *)ps4;
    __local float *red = (__local float *)red4;

    /* last query blocks first: under a causal mask they have the most tiles, so the short ones fill the tail */
    const int qb = (int)(get_num_groups(0) - 1 - get_group_id(0));
    /* packed: get_group_id(1) is the KV head and each row's query head comes from the row (HEAD_OF) */
    const int h = (int)get_group_id(1), hk = FA_PACK ? h : h / (p.heads_q / p.heads_kv);
    const int nsplit = FA_SPLIT ? p.num_splits : 1;
    const int b = (int)get_group_id(2) / nsplit, split = (int)get_group_id(2) % nsplit;
    const int lid = (int)get_local_id(0), tx = lid % 16, ty = lid / 16;

    /* this sequence's lengths (metadata in device memory is clamped, not trusted), as fwd_f32.cu */
    int sq = p.seqlen_q, sk = p.seqlen_k;
    long qrow0 = 0, krow0 = 0; /* varlen: first row of this sequence in q/out and (not paged) in k/v */
#if FA_VARLEN
    {
        __global const int *cq = cu_q + p.cu_q_off;
        qrow0 = min(max(cq[b], 0), p.total_q);
        sq = min(min(max(cq[b + 1] - cq[b], 0), p.seqlen_q), p.total_q - (int)qrow0);
    }
#endif
    if (p.has_cu_k) {
        __global const int *ck = cu_k + p.cu_k_off;
        sk = min(max(ck[b + 1] - ck[b], 0), p.seqlen_k);
        if (!FA_PAGED) krow0 = min(max(ck[b], 0), p.total_k), sk = min(sk, p.total_k - (int)krow0);
    }
    if (p.has_seqused) sk = min(max(seqused_k[p.seqused_off + b], 0), p.seqlen_k);
#if !FA_PAGED
    if (p.has_seqused && p.has_cu_k) sk = min(sk, p.total_k - (int)krow0); /* keys stay inside k/v */
#endif
    const int offset = sk - sq;
    const int q0 = qb * FA_BQ, nrows = sq * GROUP; /* block rows: positions, or (position, head) pairs */
    /*
     * The grid covers the longest sequence, so this block may hold no row of this one. It does not return early:
     * it runs no tile and writes nothing (every store checks pos < sq), which costs one barrier. (An early
     * return before the barriers, uniform as it is, is miscompiled by PoCL 3.1: with one row per work-item the
     * later pos < sq tests were folded to true and rows past the sequence were written.)
     */
    const int live = q0 < nrows;
    /* the query positions this block holds */
    const int pos_first = q0 / GROUP, pos_last = (min(q0 + FA_BQ, nrows) - 1) / GROUP;

    /* keys any row of this block can see; tiles outside are never loaded (long: a huge window cannot wrap) */
    int lo = 0, hi = sk;
    if (FA_LOCAL && p.window_left >= 0) lo = (int)max(0L, (long)pos_first + offset - p.window_left);
    if (FA_LOCAL && p.window_right >= 0) hi = (int)min((long)sk, (long)pos_last + offset + p.window_right + 1);
    lo = lo / FA_BKV * FA_BKV;
    int ntiles = live && hi > lo ? (hi - lo + FA_BKV - 1) / FA_BKV : 0;
#if FA_SPLIT
    {
        /* this split's contiguous share of the tiles (possibly none: it then writes an empty partial) */
        const int per = (ntiles + nsplit - 1) / nsplit, first = min(split * per, ntiles);
        lo += first * FA_BKV;
        ntiles = min(per, ntiles - first);
    }
#endif

    /* K and V rows of this (sequence, kv head) */
    __global const int *pages = block_table; /* read only under FA_PAGED */
    __global const fa_t *kg, *vg;
#if FA_PAGED
    pages = block_table + p.bt_off + (long)b * p.bt_stride;
    kg = k + p.k_off + hk * p.k_sh;
    vg = v + p.v_off + hk * p.v_sh;
#else
    kg = k + p.k_off + (p.has_cu_k ? 0 : b * p.k_sb) + krow0 * p.k_ss + hk * p.k_sh;
    vg = v + p.v_off + (p.has_cu_k ? 0 : b * p.v_sb) + krow0 * p.v_ss + hk * p.v_sh;
#endif

    /* Q rows [q0, q0 + FA_BQ), zeros past the sequence and FA_DQK; made visible by the first tile's barriers */
    if (ntiles > 0) {
        __global const fa_t *qg = q + p.q_off + (FA_VARLEN ? 0 : b * p.q_sb) + qrow0 * p.q_ss;
        for (int c = lid; c < FA_BQ * (DQK4 / 4); c += FA_WG) {
            const int r = c / (DQK4 / 4), x4 = c % (DQK4 / 4), row = q0 + r;
            float4 val = (float4)(0.0f);
            if (row < nrows)
                val = load4(qg + (long)(row / GROUP) * p.q_ss + (long)HEAD_OF(row) * p.q_sh, 4 * x4, FA_DQK) * QSCALE;
            qs4[r * QSTR4 + x4] = val;
        }
    }

    float4 o[RPT][ND4];
    float m[RPT], l[RPT]; /* running max (base 2) and this lane's share of the running sum */
#pragma unroll
    for (int i = 0; i < RPT; i++) {
#pragma unroll
        for (int c = 0; c < ND4; c++) o[i][c] = (float4)(0.0f);
        m[i] = NEG_INF;
        l[i] = 0.0f;
    }

    float slope[RPT]; /* per row (packed rows differ in head); base-2 units, as the scores */
#pragma unroll
    for (int i = 0; i < RPT; i++) {
        slope[i] = 0.0f;
#if FA_ALIBI
        if (p.has_alibi) slope[i] = alibi[p.alibi_off + b * p.alibi_sb + HEAD_OF(q0 + ty + TY * i)] * M_LOG2E_F;
#endif
    }
#if FA_SOFTCAP
    const int capped = p.softcap > 0.0f;
#endif

    for (int it = 0; it < ntiles; it++) {
        const int j0 = lo + it * FA_BKV;
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's V and P are no longer read */
        for (int c = lid; c < FA_BKV * (DQK4 / 4); c += FA_WG)
            kv4[c / (DQK4 / 4) * KSTR4 + c % (DQK4 / 4)] =
                tile_elem(c, DQK4 / 4, FA_DQK, kg, p.k_ss, pages, p.k_sp, p.page_size, p.num_pages, j0, sk);
#if FA_DROPOUT
        /*
         * This tile's dropout multipliers (0 dropped, keep_scale kept) into the P tile, free since the barrier
         * above. One Philox call yields four consecutive keys of a row, so the work-group splits the tile into
         * such groups (RPT * NC / 4 calls a work-item) instead of each lane drawing its own keys tx + 16 c (four
         * times the calls). Done here, while the K loads are in flight and before S takes registers; the row-max
         * barrier makes them visible and each lane multiplies its P by them in place. j0 is a multiple of
         * FA_BKV, so a group of four never straddles tiles. Rows past the sequence get 0 (never written out).
         */
        for (int c = lid; c < FA_BQ * (FA_BKV / 4); c += FA_WG) {
            const int r = c / (FA_BKV / 4), j4 = c % (FA_BKV / 4);
            float4 mul = (float4)(0.0f);
            if (q0 + r < nrows) {
                const uint4 w = drop_philox((uint4)((uint)(j0 / 4 + j4), (uint)((q0 + r) / GROUP),
                                                    ((uint)b << 16) + (uint)HEAD_OF(q0 + r), p.drop_ctr3),
                                            p.drop_k0, p.drop_k1);
                mul.x = w.x < p.drop_threshold ? 0.0f : p.keep_scale;
                mul.y = w.y < p.drop_threshold ? 0.0f : p.keep_scale;
                mul.z = w.z < p.drop_threshold ? 0.0f : p.keep_scale;
                mul.w = w.w < p.drop_threshold ? 0.0f : p.keep_scale;
            }
            ps4[r * PSTR4 + j4] = mul;
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE); /* K (and, the first time, Q) visible */

        /* S = Q K^T for rows ty + TY i and keys tx + 16 c */
        float s[RPT][NC];
#pragma unroll
        for (int i = 0; i < RPT; i++)
#pragma unroll
            for (int c = 0; c < NC; c++) s[i][c] = 0.0f;
#pragma unroll 4
        for (int k4 = 0; k4 < DQK4 / 4; k4++) {
            float4 qv[RPT], kv[NC];
#pragma unroll
            for (int i = 0; i < RPT; i++) qv[i] = qs4[(ty + TY * i) * QSTR4 + k4];
#pragma unroll
            for (int c = 0; c < NC; c++) kv[c] = kv4[(tx + 16 * c) * KSTR4 + k4];
#pragma unroll
            for (int i = 0; i < RPT; i++)
#pragma unroll
                for (int c = 0; c < NC; c++) {
                    float a = s[i][c];
                    a = fma(qv[i].x, kv[c].x, a);
                    a = fma(qv[i].y, kv[c].y, a);
                    a = fma(qv[i].z, kv[c].z, a);
                    a = fma(qv[i].w, kv[c].w, a);
                    s[i][c] = a;
                }
        }

        /* whether any (row, key) of this tile is masked: a tile inside every row's window skips the tests */
        int need_mask = j0 + FA_BKV > sk;
#if FA_LOCAL
        need_mask = need_mask || (p.window_right >= 0 && (long)j0 + FA_BKV - 1 - (pos_first + offset) > p.window_right) ||
                    (p.window_left >= 0 && (long)(pos_last + offset) - j0 > p.window_left);
#endif
        /* softcap, ALiBi, mask (base 2); each lane's partial row max goes to red */
#pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int row = ty + TY * i, diag = (q0 + row) / GROUP + offset;
            float mx = NEG_INF;
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const int j = j0 + tx + 16 * c;
#if FA_SOFTCAP
                /* natural units for the cap, then base 2 (Q was staged unscaled) */
                float x = s[i][c] * p.scale;
                if (capped) x = p.softcap * tanh(x / p.softcap);
                x *= M_LOG2E_F;
#else
                float x = s[i][c]; /* already in base 2: Q was staged times scale * log2(e) */
#endif
#if FA_ALIBI
                if (slope[i] != 0.0f) x -= slope[i] * fabs((float)(diag - j));
#endif
                if (need_mask) {
                    /* differences, not sums: a window near INT_MAX cannot overflow */
                    int masked = j >= sk;
#if FA_LOCAL
                    masked = masked || (p.window_left >= 0 && diag - j > p.window_left) ||
                             (p.window_right >= 0 && j - diag > p.window_right);
#endif
                    if (masked) x = NEG_INF;
                }
                s[i][c] = x;
                mx = fmax(mx, x);
            }
            red[row * 16 + tx] = mx;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* row maxima visible; every K read done, so V may take its place */
        for (int c = lid; c < FA_BKV * VSTR4; c += FA_WG)
            kv4[c] = tile_elem(c, VSTR4, FA_DV, vg, p.v_ss, pages, p.v_sp, p.page_size, p.num_pages, j0, sk);

#pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int row = ty + TY * i;
            const float mnew = fmax(m[i], max16(red4[row * 4], red4[row * 4 + 1], red4[row * 4 + 2], red4[row * 4 + 3]));
            /* an old max of -inf had nothing accumulated: keep factor 1 (no -inf - -inf) */
            const float alpha = m[i] == NEG_INF ? 1.0f : EXP2(m[i] - mnew);
            /* a row with every key so far masked keeps max -inf: exponentiate against 0 so P stays 0 */
            const float base = mnew == NEG_INF ? 0.0f : mnew;
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const float pv = EXP2(s[i][c] - base);
                sum += pv; /* undropped: the LSE and the normaliser ignore dropout */
#if FA_DROPOUT
                ps[row * PSTR + tx + 16 * c] *= pv; /* the multiplier drawn above: 0 or keep_scale */
#else
                ps[row * PSTR + tx + 16 * c] = pv;
#endif
            }
            l[i] = l[i] * alpha + sum; /* reduced across the row's lanes at the end */
            m[i] = mnew;
#pragma unroll
            for (int c = 0; c < ND4; c++) o[i][c] *= alpha;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* P and V visible */

        /* O += P V */
#pragma unroll 2
        for (int j4 = 0; j4 < FA_BKV / 4; j4++) {
            float4 pv[RPT];
#pragma unroll
            for (int i = 0; i < RPT; i++) pv[i] = ps4[(ty + TY * i) * PSTR4 + j4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
#pragma unroll
                for (int c = 0; c < ND4; c++) {
                    const float4 vv = kv4[(4 * j4 + e) * VSTR4 + tx + 16 * c];
#pragma unroll
                    for (int i = 0; i < RPT; i++) o[i][c] = fma((float4)(comp(pv[i], e)), vv, o[i][c]);
                }
            }
        }
    }

    /* the row sums: every lane's share through red (its max reads all ended before the last tile's P barrier) */
#pragma unroll
    for (int i = 0; i < RPT; i++) red[(ty + TY * i) * 16 + tx] = l[i];
    barrier(CLK_LOCAL_MEM_FENCE);

#if FA_SPLIT
    /* normalised fp32 partials: o_part (splits, part_rows, heads_q, FA_DV), lse_part (splits, heads_q, part_rows);
       the partial row index runs over every sequence's rows */
    const long prow0 = FA_VARLEN ? qrow0 : (long)b * p.seqlen_q;
    __global float *op = o_part + p.part_o_off + (long)split * p.part_rows * p.heads_q * FA_DV;
    __global float *lp = lse_part + p.part_lse_off + (long)split * p.heads_q * p.part_rows;
#else
    __global fa_t *og = out + p.o_off + (FA_VARLEN ? 0 : b * p.o_sb) + qrow0 * p.o_ss;
#endif
#pragma unroll
    for (int i = 0; i < RPT; i++) {
        const int row = ty + TY * i, pos = (q0 + row) / GROUP, hh = HEAD_OF(q0 + row);
        const float sum = sum16(red4[row * 4], red4[row * 4 + 1], red4[row * 4 + 2], red4[row * 4 + 3]);
        if (q0 + row >= nrows) continue;
        /* a row that saw no key: output 0 and LSE -inf */
        const float rl = sum > 0.0f ? m[i] * M_LN2_F + log(sum) : NEG_INF; /* m is in base 2 */
#if FA_SPLIT
        __global float *orow = op + ((prow0 + pos) * p.heads_q + hh) * FA_DV;
#else
        __global fa_t *orow = og + (long)pos * p.o_ss + (long)hh * p.o_sh;
#endif
#pragma unroll
        for (int c = 0; c < ND4; c++) {
            const int x = 4 * tx + 64 * c;
            if (x >= FA_DV) continue;
            /* a division, not a reciprocal times o: one rounding, as fwd_f32.cu */
            const float4 r = sum > 0.0f ? o[i][c] / sum : (float4)(0.0f);
#if FA_SPLIT
            if (x + 4 <= FA_DV) {
                vstore4(r, 0, orow + x);
            } else {
                orow[x] = r.x;
                if (x + 1 < FA_DV) orow[x + 1] = r.y;
                if (x + 2 < FA_DV) orow[x + 2] = r.z;
            }
#else
            st4(orow + x, r, FA_DV - x);
#endif
        }
        if (tx == 0) {
#if FA_SPLIT
            lp[(long)hh * p.part_rows + prow0 + pos] = rl;
#else
            if (p.has_lse) lse[p.lse_off + (FA_VARLEN ? 0 : b * p.lse_sb) + (qrow0 + pos) * p.lse_ss + hh * p.lse_sh] = rl;
#endif
        }
    }
}

/* ------------------------------------------------------------------ split-KV combine */

/*
 * Merges the split partials of fa_fwd_cl (FA_SPLIT), as fa_combine_sm80: 32 work-items per (row, query head),
 * 4 pairs per work-group of 128. NDRange: global = (ceil(part_rows * heads_q / 4) * 128, 1, 1), local =
 * (128, 1, 1). With L_s the partial LSEs, M = max L_s and Z = sum exp(L_s - M): out = sum_s (exp(L_s - M) / Z)
 * o_s and lse = M + log Z; a split that saw no key has L_s = -inf and weight 0, and a row no split saw gets
 * out 0 and lse -inf. No local memory and no barriers: each work-item reduces the (few) split LSEs itself, so
 * work-items past the last pair may return early. Every row of part_rows must have been written by fa_fwd_cl
 * (varlen: cu_q covers rows 0 .. total_q - 1).
 */
#define CB_NCOL ((FA_DV + 31) / 32) /* columns per work-item: lane, lane + 32, ... */

__kernel __attribute__((reqd_work_group_size(128, 1, 1))) void
fa_combine_cl(__global const fa_t *q, __global const fa_t *k, __global const fa_t *v, __global fa_t *out,
              __global float *lse, __global const float *alibi, __global const int *cu_q, __global const int *cu_k,
              __global const int *seqused_k, __global const int *block_table, __global float *o_part,
              __global float *lse_part, const fa_cl_fwd_params p)
{
    const int lane = (int)get_local_id(0) % 32;
    const long pair = (long)get_group_id(0) * 4 + (long)get_local_id(0) / 32;
    if (pair >= (long)p.part_rows * p.heads_q) return;
    const int prow = (int)(pair / p.heads_q), h = (int)(pair % p.heads_q);
    const long split_o = (long)p.part_rows * p.heads_q * FA_DV, split_l = (long)p.heads_q * p.part_rows;
    __global const float *lp = lse_part + p.part_lse_off + (long)h * p.part_rows + prow;
    __global const float *op = o_part + p.part_o_off + ((long)prow * p.heads_q + h) * FA_DV;

    float mx = NEG_INF;
    for (int s = 0; s < p.num_splits; s++) mx = fmax(mx, lp[s * split_l]);
    float z = 0.0f;
    if (mx != NEG_INF)
        for (int s = 0; s < p.num_splits; s++) z += exp(lp[s * split_l] - mx);
    const float rl = z > 0.0f ? mx + log(z) : NEG_INF;

    float acc[CB_NCOL];
#pragma unroll
    for (int t = 0; t < CB_NCOL; t++) acc[t] = 0.0f;
    if (z > 0.0f)
        for (int s = 0; s < p.num_splits; s++) {
            const float ls = lp[s * split_l];
            if (ls == NEG_INF) continue; /* an empty split: weight 0 (its partial is zeros anyway) */
            /* exp(L_s - M) / Z rather than exp(L_s - lse): no rounding of log Z inside the weight */
            const float w = exp(ls - mx) / z;
#pragma unroll
            for (int t = 0; t < CB_NCOL; t++) {
                const int c = lane + 32 * t;
                if (c < FA_DV) acc[t] = fma(w, op[s * split_o + c], acc[t]);
            }
        }

    /* the row's place in out and lse: the varlen row itself, or (batch, seq) from the row */
    long ob, lb;
    if (FA_VARLEN) {
        ob = (long)prow * p.o_ss, lb = (long)prow * p.lse_ss;
    } else {
        const int bb = prow / p.seqlen_q, i = prow % p.seqlen_q;
        ob = bb * p.o_sb + (long)i * p.o_ss, lb = bb * p.lse_sb + (long)i * p.lse_ss;
    }
    __global fa_t *orow = out + p.o_off + ob + (long)h * p.o_sh;
#pragma unroll
    for (int t = 0; t < CB_NCOL; t++) {
        const int c = lane + 32 * t;
        if (c < FA_DV) st1(orow + c, acc[t]);
    }
    if (p.has_lse && lane == 0) lse[p.lse_off + lb + (long)h * p.lse_sh] = rl;
}
