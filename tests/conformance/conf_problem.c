/* Materialises a conformance case into host memory (see conf_problem.h for what each buffer holds). */
#include "conf_problem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_dtype.h"
#include "conf_reference.h"

static const unsigned char CANARY = 0xA5;
static const unsigned char POISON = 0xFF;

uint64_t conf_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double conf_rng_uniform(uint64_t *state) { return (double)(conf_rng_next(state) >> 11) * 0x1.0p-53; }

int conf_buf_alloc(conf_buf *b, size_t size) {
    memset(b, 0, sizeof *b);
    /* Canary size is a multiple of 64, so data keeps the allocation's alignment. */
    b->alloc = aligned_alloc(64, ((2 * CONF_CANARY_BYTES + size + 63) / 64) * 64);
    if (!b->alloc) return -1;
    b->data = b->alloc + CONF_CANARY_BYTES;
    b->size = size;
    memset(b->alloc, CANARY, CONF_CANARY_BYTES);
    memset(b->data + size, CANARY, CONF_CANARY_BYTES);
    return 0;
}

void conf_buf_free(conf_buf *b) {
    free(b->alloc);
    free(b->snapshot);
    free(b->live);
    free(b->mutable_);
    memset(b, 0, sizeof *b);
}

int conf_buf_canaries_ok(const conf_buf *b) {
    if (!b->alloc) return 1;
    for (size_t i = 0; i < CONF_CANARY_BYTES; i++)
        if (b->alloc[i] != CANARY || b->data[b->size + i] != CANARY) return 0;
    return 1;
}

/* Strides (in elements) of one (batch, seq, heads, dim) tensor; offset = where it starts in its buffer. */
typedef struct tlayout {
    int64_t batch, row, head, offset;
} tlayout;

typedef enum role { ROLE_Q, ROLE_K, ROLE_V, ROLE_OUT } role;

static tlayout layout_for(const conf_case *c, role r, int64_t seq) {
    int64_t h = (r == ROLE_Q || r == ROLE_OUT) ? c->hq : c->hk;
    int64_t d = (r == ROLE_V || r == ROLE_OUT) ? c->dv : c->dqk;
    tlayout l = {seq * h * d, h * d, d, 0}; /* dense */
    switch (c->layout) {
    case CONF_LAYOUT_PADDED:
        if (r == ROLE_Q) l.head = d + 8, l.row = h * (d + 8), l.batch = seq * l.row;  /* padded head stride */
        if (r == ROLE_OUT) l.row = h * d + 24, l.batch = seq * l.row;                /* padded row stride */
        if (r == ROLE_K || r == ROLE_V) l.batch += 64;                                /* gap between batches */
        break;
    case CONF_LAYOUT_BHSD: l.row = d, l.head = seq * d, l.batch = h * seq * d; break;
    case CONF_LAYOUT_KVPACKED:
        if (r == ROLE_K || r == ROLE_V) {
            l.row = c->hk * (c->dqk + c->dv), l.batch = seq * l.row;
            l.offset = r == ROLE_V ? c->hk * c->dqk : 0;
        }
        break;
    case CONF_LAYOUT_QKVPACKED:
        if (r != ROLE_OUT) {
            l.row = c->hq * c->dqk + c->hk * (c->dqk + c->dv), l.batch = seq * l.row;
            l.offset = r == ROLE_Q ? 0 : r == ROLE_K ? c->hq * c->dqk : c->hq * c->dqk + c->hk * c->dqk;
        }
        break;
    default: break;
    }
    return l;
}

/* Elements a tensor reaches from its buffer start (0 if empty). */
static int64_t span(tlayout l, int64_t nb, int64_t seq, int64_t h, int64_t d) {
    if (nb <= 0 || seq <= 0 || h <= 0 || d <= 0) return 0;
    return l.offset + (nb - 1) * l.batch + (seq - 1) * l.row + (h - 1) * l.head + d;
}

static void set_tensor(fa_tensor *t, void *base, fa_dtype dt, int varlen, int64_t nb, int64_t seq, int64_t h,
                       int64_t d, tlayout l) {
    memset(t, 0, sizeof *t);
    t->data = (char *)base + l.offset * (int64_t)(dt == FA_DTYPE_F32 ? 4 : 2);
    t->dtype = dt;
    if (varlen) {
        t->rank = 3;
        t->shape[0] = seq, t->shape[1] = h, t->shape[2] = d;
        t->stride[0] = l.row, t->stride[1] = l.head, t->stride[2] = 1;
    } else {
        t->rank = 4;
        t->shape[0] = nb, t->shape[1] = seq, t->shape[2] = h, t->shape[3] = d;
        t->stride[0] = l.batch, t->stride[1] = l.row, t->stride[2] = l.head, t->stride[3] = 1;
    }
}

static size_t elem_size(fa_dtype dt) { return dt == FA_DTYPE_F32 ? 4 : 2; }

static int alloc_buf(conf_problem *p, conf_buf_id id, size_t bytes) {
    return conf_buf_alloc(&p->buf[id], bytes);
}

static void fill_nan(conf_buf *b, fa_dtype dt) {
    size_t n = b->size / elem_size(dt);
    for (size_t i = 0; i < n; i++) {
        if (dt == FA_DTYPE_F32) ((uint32_t *)b->data)[i] = 0x7fc00000u;
        else ((uint16_t *)b->data)[i] = dt == FA_DTYPE_F16 ? 0x7e00u : 0x7fc0u;
    }
}

/* Writes v into every element of a rank-3/4 tensor's full shape (cache slots and pages included). */
static void fill_garbage(const fa_tensor *t, uint64_t *rng) {
    int64_t n0 = t->rank == 4 ? t->shape[0] : 1, o = t->rank == 4 ? 1 : 0;
    int64_t s0 = t->rank == 4 ? t->stride[0] : 0;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t i = 0; i < t->shape[o]; i++)
            for (int64_t h = 0; h < t->shape[o + 1]; h++)
                for (int64_t e = 0; e < t->shape[o + 2]; e++)
                    conf_store(t->dtype, t->data, a * s0 + i * t->stride[o] + h * t->stride[o + 1] + e,
                               (conf_rng_next(rng) & 1) ? 50.0 : -50.0);
}

static double rand_input(uint64_t *rng) { return 2.0 * conf_rng_uniform(rng) - 1.0; }

static int32_t *i32(conf_problem *p, conf_buf_id id) { return (int32_t *)p->buf[id].data; }

static void build_desc(conf_problem *p, int64_t sq_max, int64_t sk_max, int64_t total_q, int64_t total_k) {
    const conf_case *c = p->c;
    fa_attn_desc *d = &p->desc;
    fa_attn_desc_init(d);
    d->dtype = c->dtype;
    d->batch = conf_case_nseq(c);
    d->seqlen_q = sq_max;
    d->seqlen_k = sk_max;
    d->heads_q = c->hq;
    d->heads_kv = c->hk;
    d->head_dim_qk = c->dqk;
    d->head_dim_v = c->dv;
    d->softmax_scale = c->scale;
    d->causal = c->causal;
    d->window_left = c->window ? c->wl : -1;
    d->window_right = c->window ? c->wr : -1;
    d->softcap = c->softcap;
    d->alibi = c->alibi;
    d->dropout_p = c->dropout;
    d->varlen = c->nseq > 0;
    d->total_q = d->varlen ? total_q : 0;
    d->total_k = d->varlen ? total_k : 0;
    d->kv_cache_lengths = c->use_kvlen;
    d->return_lse = c->kind == CONF_BWD || !c->no_lse; /* the backward pass needs the forward's LSE */
    d->num_splits = c->num_splits;
    d->seqlen_new = c->append;
    d->rotary_dim = c->rotary_dim;
    d->rotary_interleaved = c->rotary_interleaved;
    d->rotary_seqlen = c->rotary_dim > 0 ? conf_case_rotary_seqlen(c) : 0;
    d->with_backward = c->kind == CONF_BWD;
    d->deterministic = c->kind == CONF_BWD && c->det;
}

/* Paged pool and shuffled block table: each sequence owns ceil(capacity / page_size) pages drawn from a random
 * permutation; two spare pages of garbage fill unused table entries. */
static int build_pages(conf_problem *p, uint64_t *rng) {
    const conf_case *c = p->c;
    fa_attn_desc *d = &p->desc;
    int64_t nb = d->batch, ps = c->page_size, maxp = (d->seqlen_k + ps - 1) / ps, used = 0;
    for (int b = 0; b < nb; b++) used += (conf_case_seq_k_capacity(c, b) + ps - 1) / ps;
    d->paged_kv = 1;
    d->page_size = ps;
    d->max_pages_per_seq = maxp;
    d->num_pages = used + 2;
    int64_t bt_stride = maxp + c->bt_pad;
    if (alloc_buf(p, CONF_BUF_BLOCK_TABLE, sizeof(int32_t) * (size_t)(nb * bt_stride))) return -1;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)d->num_pages), *bt = i32(p, CONF_BUF_BLOCK_TABLE);
    if (!perm) return -1;
    for (int64_t i = 0; i < d->num_pages; i++) perm[i] = (int32_t)i;
    for (int64_t i = d->num_pages - 1; i > 0; i--) {
        int64_t j = (int64_t)(conf_rng_next(rng) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int64_t next = 0;
    for (int64_t b = 0; b < nb; b++) {
        int64_t own = (conf_case_seq_k_capacity(c, (int)b) + ps - 1) / ps;
        for (int64_t n = 0; n < bt_stride; n++) bt[b * bt_stride + n] = n < own ? perm[next + n] : perm[used];
        next += own;
    }
    free(perm);
    p->args.block_table = bt;
    p->args.block_table_stride = c->bt_pad ? bt_stride : 0;
    return 0;
}

static int build_kv(conf_problem *p, int64_t total_k, uint64_t *rng) {
    const conf_case *c = p->c;
    fa_attn_desc *d = &p->desc;
    fa_fwd_args *a = &p->args;
    size_t es = elem_size(c->dtype);
    if (c->page_size > 0) { /* pools are dense: (num_pages, page_size, heads_kv, dim) */
        if (build_pages(p, rng)) return -1;
        tlayout lk = {d->page_size * c->hk * c->dqk, c->hk * c->dqk, c->dqk, 0};
        tlayout lv = {d->page_size * c->hk * c->dv, c->hk * c->dv, c->dv, 0};
        if (alloc_buf(p, CONF_BUF_K, es * (size_t)span(lk, d->num_pages, d->page_size, c->hk, c->dqk)) ||
            alloc_buf(p, CONF_BUF_V, es * (size_t)span(lv, d->num_pages, d->page_size, c->hk, c->dv)))
            return -1;
        set_tensor(&a->k, p->buf[CONF_BUF_K].data, c->dtype, 0, d->num_pages, d->page_size, c->hk, c->dqk, lk);
        set_tensor(&a->v, p->buf[CONF_BUF_V].data, c->dtype, 0, d->num_pages, d->page_size, c->hk, c->dv, lv);
        return 0;
    }
    int64_t nb = d->varlen ? 1 : d->batch, seq = d->varlen ? total_k : d->seqlen_k;
    tlayout lk = layout_for(c, ROLE_K, seq), lv = layout_for(c, ROLE_V, seq);
    conf_buf_id kb = CONF_BUF_K, vb = CONF_BUF_V;
    if (c->layout == CONF_LAYOUT_QKVPACKED) {
        kb = vb = CONF_BUF_Q; /* allocated with q */
    } else if (c->layout == CONF_LAYOUT_KVPACKED) {
        vb = CONF_BUF_K;
        if (alloc_buf(p, CONF_BUF_K, es * (size_t)span(lv, nb, seq, c->hk, c->dv))) return -1;
    } else if (alloc_buf(p, CONF_BUF_K, es * (size_t)span(lk, nb, seq, c->hk, c->dqk)) ||
               alloc_buf(p, CONF_BUF_V, es * (size_t)span(lv, nb, seq, c->hk, c->dv))) {
        return -1;
    }
    set_tensor(&a->k, p->buf[kb].data, c->dtype, d->varlen, nb, seq, c->hk, c->dqk, lk);
    set_tensor(&a->v, p->buf[vb].data, c->dtype, d->varlen, nb, seq, c->hk, c->dv, lv);
    return 0;
}

static int build_q_out_lse(conf_problem *p, int64_t total_q) {
    const conf_case *c = p->c;
    fa_attn_desc *d = &p->desc;
    fa_fwd_args *a = &p->args;
    size_t es = elem_size(c->dtype);
    int64_t nb = d->varlen ? 1 : d->batch, seq = d->varlen ? total_q : d->seqlen_q;
    tlayout lq = layout_for(c, ROLE_Q, seq), lo = layout_for(c, ROLE_OUT, seq);
    int64_t qspan = span(lq, nb, seq, c->hq, c->dqk);
    if (c->layout == CONF_LAYOUT_QKVPACKED) /* q, k, v share one buffer; v is the last in each row */
        qspan = span(layout_for(c, ROLE_V, seq), nb, seq, c->hk, c->dv);
    if (alloc_buf(p, CONF_BUF_Q, es * (size_t)qspan) ||
        alloc_buf(p, CONF_BUF_OUT, es * (size_t)span(lo, nb, seq, c->hq, c->dv)))
        return -1;
    set_tensor(&a->q, p->buf[CONF_BUF_Q].data, c->dtype, d->varlen, nb, seq, c->hq, c->dqk, lq);
    set_tensor(&a->out, p->buf[CONF_BUF_OUT].data, c->dtype, d->varlen, nb, seq, c->hq, c->dv, lo);
    if (!d->return_lse) return 0;
    int64_t pad = c->layout == CONF_LAYOUT_PADDED ? 5 : 0;
    fa_tensor *t = &a->lse;
    memset(t, 0, sizeof *t);
    t->dtype = FA_DTYPE_F32;
    if (d->varlen) { /* (heads_q, total_q) */
        t->rank = 2;
        t->shape[0] = c->hq, t->shape[1] = total_q;
        t->stride[0] = total_q + pad, t->stride[1] = 1;
    } else { /* (batch, heads_q, seqlen_q) */
        t->rank = 3;
        t->shape[0] = d->batch, t->shape[1] = c->hq, t->shape[2] = d->seqlen_q;
        t->stride[0] = c->hq * (d->seqlen_q + pad), t->stride[1] = d->seqlen_q + pad, t->stride[2] = 1;
    }
    int64_t n = t->shape[0] * t->stride[0];
    if (alloc_buf(p, CONF_BUF_LSE, sizeof(float) * (size_t)(n > 0 ? n : 1))) return -1;
    t->data = p->buf[CONF_BUF_LSE].data;
    return 0;
}

static int build_slopes(conf_problem *p, uint64_t *rng) {
    const conf_case *c = p->c;
    fa_tensor *t = &p->args.alibi_slopes;
    if (c->alibi == FA_ALIBI_NONE) return 0;
    int64_t nb = c->alibi == FA_ALIBI_PER_HEAD ? 1 : p->desc.batch;
    int64_t hs = c->hq + (c->layout == CONF_LAYOUT_PADDED ? 3 : 0);
    if (alloc_buf(p, CONF_BUF_SLOPES, sizeof(float) * (size_t)(nb * hs))) return -1;
    float *s = (float *)p->buf[CONF_BUF_SLOPES].data;
    for (int64_t i = 0; i < nb * hs; i++) s[i] = (float)(0.01 + 0.3 * conf_rng_uniform(rng));
    memset(t, 0, sizeof *t);
    t->data = s;
    t->dtype = FA_DTYPE_F32;
    if (c->alibi == FA_ALIBI_PER_HEAD) {
        t->rank = 1, t->shape[0] = c->hq, t->stride[0] = 1;
    } else {
        t->rank = 2, t->shape[0] = nb, t->shape[1] = c->hq, t->stride[0] = hs, t->stride[1] = 1;
    }
    return 0;
}

/* k_new / v_new (batch, seqlen_new, heads_kv, dim) and the fp32 rotary tables (rotary_seqlen, rotary_dim / 2).
 * PADDED: k_new with a padded head stride, v_new with gaps between batches, tables with a padded row stride;
 * KVPACKED: k_new and v_new interleaved in one buffer. */
static int build_append(conf_problem *p) {
    const conf_case *c = p->c;
    fa_attn_desc *d = &p->desc;
    fa_fwd_args *a = &p->args;
    if (c->append <= 0) return 0;
    size_t es = elem_size(c->dtype);
    int64_t nb = d->batch, sn = c->append;
    tlayout lk = {sn * c->hk * c->dqk, c->hk * c->dqk, c->dqk, 0}, lv = {sn * c->hk * c->dv, c->hk * c->dv, c->dv, 0};
    conf_buf_id vb = CONF_BUF_VNEW;
    if (c->layout == CONF_LAYOUT_PADDED) {
        lk.head = c->dqk + 8, lk.row = c->hk * lk.head, lk.batch = sn * lk.row;
        lv.batch += 40;
    } else if (c->layout == CONF_LAYOUT_KVPACKED) {
        lk.row = lv.row = c->hk * (c->dqk + c->dv);
        lk.batch = lv.batch = sn * lk.row;
        lv.offset = c->hk * c->dqk;
        vb = CONF_BUF_KNEW;
    }
    if (alloc_buf(p, CONF_BUF_KNEW, es * (size_t)(vb == CONF_BUF_KNEW ? span(lv, nb, sn, c->hk, c->dv)
                                                                       : span(lk, nb, sn, c->hk, c->dqk))))
        return -1;
    if (vb == CONF_BUF_VNEW && alloc_buf(p, CONF_BUF_VNEW, es * (size_t)span(lv, nb, sn, c->hk, c->dv))) return -1;
    set_tensor(&a->k_new, p->buf[CONF_BUF_KNEW].data, c->dtype, 0, nb, sn, c->hk, c->dqk, lk);
    set_tensor(&a->v_new, p->buf[vb].data, c->dtype, 0, nb, sn, c->hk, c->dv, lv);
    if (c->rotary_dim <= 0) return 0;
    int64_t half = c->rotary_dim / 2, rs = d->rotary_seqlen, stride = half + (c->layout == CONF_LAYOUT_PADDED ? 4 : 0);
    if (alloc_buf(p, CONF_BUF_COS, sizeof(float) * (size_t)(rs * stride)) ||
        alloc_buf(p, CONF_BUF_SIN, sizeof(float) * (size_t)(rs * stride)))
        return -1;
    fa_tensor *tc = &a->rotary_cos, *ts = &a->rotary_sin;
    memset(tc, 0, sizeof *tc);
    tc->data = p->buf[CONF_BUF_COS].data;
    tc->dtype = FA_DTYPE_F32;
    tc->rank = 2;
    tc->shape[0] = rs, tc->shape[1] = half, tc->stride[0] = stride, tc->stride[1] = 1;
    *ts = *tc;
    ts->data = p->buf[CONF_BUF_SIN].data;
    return 0;
}

/* Backward: dout like out, dq / dk / dv like q / k / v, each in its own buffer. */
static int build_grads(conf_problem *p, int64_t total_q, int64_t total_k) {
    const conf_case *c = p->c;
    fa_attn_desc *d = &p->desc;
    fa_bwd_args *g = &p->bargs;
    if (c->kind != CONF_BWD) return 0;
    size_t es = elem_size(c->dtype);
    int64_t nb = d->varlen ? 1 : d->batch, sq = d->varlen ? total_q : d->seqlen_q, sk = d->varlen ? total_k : d->seqlen_k;
    tlayout lq = layout_for(c, ROLE_Q, sq), lo = layout_for(c, ROLE_OUT, sq), lk = layout_for(c, ROLE_K, sk),
            lv = layout_for(c, ROLE_V, sk);
    if (alloc_buf(p, CONF_BUF_DOUT, es * (size_t)span(lo, nb, sq, c->hq, c->dv)) ||
        alloc_buf(p, CONF_BUF_DQ, es * (size_t)span(lq, nb, sq, c->hq, c->dqk)) ||
        alloc_buf(p, CONF_BUF_DK, es * (size_t)span(lk, nb, sk, c->hk, c->dqk)) ||
        alloc_buf(p, CONF_BUF_DV, es * (size_t)span(lv, nb, sk, c->hk, c->dv)))
        return -1;
    set_tensor(&g->dout, p->buf[CONF_BUF_DOUT].data, c->dtype, d->varlen, nb, sq, c->hq, c->dv, lo);
    set_tensor(&g->dq, p->buf[CONF_BUF_DQ].data, c->dtype, d->varlen, nb, sq, c->hq, c->dqk, lq);
    set_tensor(&g->dk, p->buf[CONF_BUF_DK].data, c->dtype, d->varlen, nb, sk, c->hk, c->dqk, lk);
    set_tensor(&g->dv, p->buf[CONF_BUF_DV].data, c->dtype, d->varlen, nb, sk, c->hk, c->dv, lv);
    return 0;
}

static void fill_rotary_tables(conf_problem *p) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    int64_t half = d->rotary_dim / 2;
    for (int64_t pos = 0; pos < d->rotary_seqlen; pos++)
        for (int64_t i = 0; i < half; i++) { /* the usual inverse frequencies, base 10000 */
            double theta = (double)pos * pow(10000.0, -2.0 * (double)i / (double)d->rotary_dim);
            ((float *)a->rotary_cos.data)[pos * a->rotary_cos.stride[0] + i] = (float)cos(theta);
            ((float *)a->rotary_sin.data)[pos * a->rotary_sin.stride[0] + i] = (float)sin(theta);
        }
}

static void fill_inputs(conf_problem *p, uint64_t *rng) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    static const conf_buf_id data_bufs[] = {CONF_BUF_Q, CONF_BUF_K, CONF_BUF_V, CONF_BUF_KNEW, CONF_BUF_VNEW,
                                             CONF_BUF_DOUT};
    for (size_t n = 0; n < sizeof data_bufs / sizeof data_bufs[0]; n++)
        if (p->buf[data_bufs[n]].data) fill_nan(&p->buf[data_bufs[n]], d->dtype); /* gaps */
    fill_garbage(&a->k, rng); /* unused cache slots and pages (appended rows included: the call writes them) */
    fill_garbage(&a->v, rng);
    if (d->rotary_dim > 0) fill_rotary_tables(p);
    for (int64_t b = 0; b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        for (int64_t i = 0; i < s.sq; i++)
            for (int64_t h = 0; h < d->heads_q; h++) {
                for (int64_t e = 0; e < d->head_dim_qk; e++)
                    conf_store(d->dtype, a->q.data, conf_ref_q_offset(d, a, &a->q, b, i, h, e), rand_input(rng));
                if (p->bargs.dout.data)
                    for (int64_t e = 0; e < d->head_dim_v; e++)
                        conf_store(d->dtype, p->bargs.dout.data, conf_ref_q_offset(d, a, &p->bargs.dout, b, i, h, e),
                                   rand_input(rng));
            }
        for (int64_t t = 0; t < d->seqlen_new; t++)
            for (int64_t h = 0; h < d->heads_kv; h++) {
                const fa_tensor *kn = &a->k_new, *vn = &a->v_new;
                for (int64_t e = 0; e < d->head_dim_qk; e++)
                    conf_store(d->dtype, kn->data, b * kn->stride[0] + t * kn->stride[1] + h * kn->stride[2] + e,
                               rand_input(rng));
                for (int64_t e = 0; e < d->head_dim_v; e++)
                    conf_store(d->dtype, vn->data, b * vn->stride[0] + t * vn->stride[1] + h * vn->stride[2] + e,
                               rand_input(rng));
            }
        for (int64_t j = 0; j < s.cached; j++)
            for (int64_t h = 0; h < d->heads_kv; h++) {
                for (int64_t e = 0; e < d->head_dim_qk; e++)
                    conf_store(d->dtype, a->k.data, conf_ref_kv_offset(d, a, &a->k, b, j, h, e), rand_input(rng));
                for (int64_t e = 0; e < d->head_dim_v; e++)
                    conf_store(d->dtype, a->v.data, conf_ref_kv_offset(d, a, &a->v, b, j, h, e), rand_input(rng));
            }
    }
}

/* The buffer a tensor's data lies in. */
static conf_buf *owner(conf_problem *p, const void *ptr) {
    for (int id = 0; id < CONF_BUF_COUNT; id++) {
        conf_buf *b = &p->buf[id];
        if (b->data && (const unsigned char *)ptr >= b->data && (const unsigned char *)ptr < b->data + b->size)
            return b;
    }
    return NULL;
}

/* Marks the bytes of every logical output element; the rest are gaps. */
static int mark_live(conf_problem *p) {
    const fa_attn_desc *d = &p->desc;
    const fa_fwd_args *a = &p->args;
    conf_buf *o = &p->buf[CONF_BUF_OUT], *l = &p->buf[CONF_BUF_LSE];
    size_t es = elem_size(d->dtype);
    if (!(o->live = calloc(o->size + 1, 1))) return -1;
    if (l->data && !(l->live = calloc(l->size + 1, 1))) return -1;
    for (int64_t b = 0; b < d->batch; b++) {
        conf_seq s = conf_ref_seq(d, a, b);
        for (int64_t i = 0; i < s.sq; i++)
            for (int64_t h = 0; h < d->heads_q; h++) {
                for (int64_t e = 0; e < d->head_dim_v; e++)
                    memset(o->live + es * (size_t)conf_ref_q_offset(d, a, &a->out, b, i, h, e), 1, es);
                if (l->data) memset(l->live + 4 * (size_t)conf_ref_lse_offset(d, a, b, i, h), 1, 4);
            }
    }
    if (p->c->kind == CONF_BWD) { /* dq like out's rows; dk / dv: every key row of the k tensor */
        const fa_bwd_args *g = &p->bargs;
        conf_buf *bq = &p->buf[CONF_BUF_DQ], *bk = &p->buf[CONF_BUF_DK], *bv = &p->buf[CONF_BUF_DV];
        if (!(bq->live = calloc(bq->size + 1, 1)) || !(bk->live = calloc(bk->size + 1, 1)) ||
            !(bv->live = calloc(bv->size + 1, 1)))
            return -1;
        /* where each tensor starts in its buffer (packed layouts start past the other tensors' slots) */
        size_t oq = (size_t)((unsigned char *)g->dq.data - bq->data), ok = (size_t)((unsigned char *)g->dk.data - bk->data),
               ov = (size_t)((unsigned char *)g->dv.data - bv->data);
        for (int64_t b = 0; b < d->batch; b++) {
            conf_seq s = conf_ref_seq(d, a, b);
            for (int64_t i = 0; i < s.sq; i++)
                for (int64_t h = 0; h < d->heads_q; h++)
                    for (int64_t e = 0; e < d->head_dim_qk; e++)
                        memset(bq->live + oq + es * (size_t)conf_ref_q_offset(d, a, &g->dq, b, i, h, e), 1, es);
            for (int64_t j = 0; j < s.kcap; j++)
                for (int64_t h = 0; h < d->heads_kv; h++) {
                    for (int64_t e = 0; e < d->head_dim_qk; e++)
                        memset(bk->live + ok + es * (size_t)conf_ref_kv_offset(d, a, &g->dk, b, j, h, e), 1, es);
                    for (int64_t e = 0; e < d->head_dim_v; e++)
                        memset(bv->live + ov + es * (size_t)conf_ref_kv_offset(d, a, &g->dv, b, j, h, e), 1, es);
                }
        }
    }
    if (d->seqlen_new > 0) { /* the appended rows of the cache */
        conf_buf *kb = owner(p, a->k.data), *vb = owner(p, a->v.data);
        if (!kb || !vb) return -1;
        if (!(kb->mutable_ = calloc(kb->size + 1, 1))) return -1;
        if (vb != kb && !(vb->mutable_ = calloc(vb->size + 1, 1))) return -1;
        for (int64_t b = 0; b < d->batch; b++) {
            conf_seq s = conf_ref_seq(d, a, b);
            for (int64_t j = s.cached; j < s.sk; j++)
                for (int64_t h = 0; h < d->heads_kv; h++) {
                    for (int64_t e = 0; e < d->head_dim_qk; e++)
                        memset(kb->mutable_ + (size_t)((char *)a->k.data - (char *)kb->data) +
                                   es * (size_t)conf_ref_kv_offset(d, a, &a->k, b, j, h, e),
                               1, es);
                    for (int64_t e = 0; e < d->head_dim_v; e++)
                        memset(vb->mutable_ + (size_t)((char *)a->v.data - (char *)vb->data) +
                                   es * (size_t)conf_ref_kv_offset(d, a, &a->v, b, j, h, e),
                               1, es);
                }
        }
    }
    return 0;
}

static int snapshot(conf_buf *b) {
    if (!b->data) return 0;
    if (!(b->snapshot = malloc(b->size + 1))) return -1;
    memcpy(b->snapshot, b->data, b->size);
    return 0;
}

int conf_problem_build(conf_problem *p, const conf_case *c, uint64_t seed, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    conf_dtype_init();
    p->c = c;
    uint64_t rng = seed;
    int64_t nb = conf_case_nseq(c), sq_max = 0, sk_max = 0, total_q = 0, total_k = 0;
    for (int b = 0; b < nb; b++) {
        if (conf_case_seq_q(c, b) > sq_max) sq_max = conf_case_seq_q(c, b);
        if (conf_case_seq_k_capacity(c, b) > sk_max) sk_max = conf_case_seq_k_capacity(c, b);
        total_q += conf_case_seq_q(c, b);
        total_k += conf_case_seq_k_capacity(c, b);
    }
    build_desc(p, sq_max, sk_max, total_q, total_k);
    fa_fwd_args *a = &p->args;
    int rc = 0;
    if (c->nseq > 0) {
        rc |= alloc_buf(p, CONF_BUF_CU_Q, sizeof(int32_t) * (size_t)(nb + 1));
        rc |= alloc_buf(p, CONF_BUF_CU_K, sizeof(int32_t) * (size_t)(nb + 1));
        if (rc == 0) {
            int32_t *cq = i32(p, CONF_BUF_CU_Q), *ck = i32(p, CONF_BUF_CU_K);
            cq[0] = ck[0] = 0;
            for (int b = 0; b < nb; b++) {
                cq[b + 1] = cq[b] + c->lens_q[b];
                ck[b + 1] = ck[b] + c->lens_k[b];
            }
            a->cu_seqlens_q = cq;
            a->cu_seqlens_k = ck;
        }
    }
    if (rc == 0 && c->use_kvlen) {
        rc |= alloc_buf(p, CONF_BUF_SEQUSED, sizeof(int32_t) * (size_t)nb);
        if (rc == 0) {
            for (int b = 0; b < nb; b++) i32(p, CONF_BUF_SEQUSED)[b] = c->kvlen[b];
            a->seqused_k = i32(p, CONF_BUF_SEQUSED);
        }
    }
    rc = rc || build_q_out_lse(p, total_q) || build_kv(p, total_k, &rng) || build_slopes(p, &rng) ||
         build_append(p) || build_grads(p, total_q, total_k);
    if (rc) {
        snprintf(err, errlen, "out of host memory building case %s", c->name);
        conf_problem_free(p);
        return -1;
    }
    a->dropout_seed = conf_rng_next(&rng);
    a->dropout_offset = conf_rng_next(&rng) >> 40;
    fill_inputs(p, &rng);
    p->rows = conf_ref_rows(&p->desc, a);
    p->key_rows = p->desc.paged_kv ? 0 : conf_ref_key_rows(&p->desc, a);
    if (c->kind == CONF_BWD) { /* the same inputs as the forward; out and lse are filled in by fa_fwd */
        fa_bwd_args *g = &p->bargs;
        g->q = a->q, g->k = a->k, g->v = a->v, g->out = a->out, g->lse = a->lse, g->alibi_slopes = a->alibi_slopes;
        g->cu_seqlens_q = a->cu_seqlens_q, g->cu_seqlens_k = a->cu_seqlens_k, g->seqused_k = a->seqused_k;
        g->dropout_seed = a->dropout_seed, g->dropout_offset = a->dropout_offset;
    }
    p->buf[CONF_BUF_OUT].is_output = p->buf[CONF_BUF_LSE].is_output = 1;
    for (int id = 0; id < CONF_BUF_COUNT; id++)
        if (id != CONF_BUF_OUT && id != CONF_BUF_LSE && id != CONF_BUF_DQ && id != CONF_BUF_DK && id != CONF_BUF_DV &&
            snapshot(&p->buf[id]))
            rc = -1;
    if (rc || mark_live(p)) {
        snprintf(err, errlen, "out of host memory building case %s", c->name);
        conf_problem_free(p);
        return -1;
    }
    return 0;
}

void conf_problem_free(conf_problem *p) {
    for (int id = 0; id < CONF_BUF_COUNT; id++) conf_buf_free(&p->buf[id]);
}

void conf_problem_poison(conf_problem *p) {
    for (int id = 0; id < CONF_BUF_COUNT; id++) {
        conf_buf *b = &p->buf[id];
        if (b->data && b->is_output) memset(b->data, POISON, b->size);
        if (b->data && b->mutable_ && b->snapshot) memcpy(b->data, b->snapshot, b->size); /* un-append */
    }
}

int conf_problem_begin_bwd(conf_problem *p) {
    for (int id = CONF_BUF_OUT; id <= CONF_BUF_LSE; id++) {
        conf_buf *b = &p->buf[id];
        b->is_output = 0;
        free(b->snapshot);
        b->snapshot = NULL;
        if (snapshot(b)) return -1;
    }
    for (int id = CONF_BUF_DQ; id <= CONF_BUF_DV; id++) p->buf[id].is_output = 1;
    return 0;
}

static const char *const buf_names[CONF_BUF_COUNT] = {
    "q",     "k",     "v",     "out",       "lse",       "alibi_slopes", "cu_seqlens_q", "cu_seqlens_k", "seqused_k",
    "block_table", "k_new", "v_new", "rotary_cos", "rotary_sin", "dout", "dq", "dk", "dv"};

int conf_problem_check_memory(const conf_problem *p, char *msg, size_t len) {
    for (int id = 0; id < CONF_BUF_COUNT; id++) {
        const conf_buf *b = &p->buf[id];
        if (!b->data) continue;
        if (!conf_buf_canaries_ok(b)) {
            snprintf(msg, len, "canary bytes around %s overwritten (buffer overrun)", buf_names[id]);
            return -1;
        }
        if (b->snapshot && memcmp(b->snapshot, b->data, b->size) != 0) {
            size_t i = 0;
            while (i < b->size && (b->snapshot[i] == b->data[i] || (b->mutable_ && b->mutable_[i]))) i++;
            if (i < b->size) {
                snprintf(msg, len, "input %s modified by the call (first changed byte %zu of %zu%s)", buf_names[id],
                         i, b->size, b->mutable_ ? ", outside the appended rows" : "");
                return -1;
            }
        }
        if (b->live && b->is_output)
            for (size_t i = 0; i < b->size; i++)
                if (!b->live[i] && b->data[i] != POISON) {
                    snprintf(msg, len, "gap byte %zu of strided output %s written (0x%02x, expected untouched 0xff)",
                             i, buf_names[id], b->data[i]);
                    return -1;
                }
    }
    return 0;
}
