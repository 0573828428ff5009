/*
 * Argument validation. Everything a call receives is checked here before any backend runs, so a bad
 * argument returns a status naming it and no output byte is written. Sizes are int64 with overflow checks.
 */
#include "fa_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#define INVALID(...) fa_set_error(FA_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* ------------------------------------------------------------------ the description */

int fa_uses_cu_seqlens_k(const fa_attn_desc *d)
{
    /* Paged caches with per-sequence lengths take their key counts from seqused_k alone. */
    return d->varlen && !(d->paged_kv && d->kv_cache_lengths);
}

static int mul_ok(int64_t *acc, int64_t x)
{
    return !__builtin_mul_overflow(*acc, x, acc);
}

static fa_status check_product(const char *what, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t n = a;
    if (!mul_ok(&n, b) || !mul_ok(&n, c) || !mul_ok(&n, d) || !mul_ok(&n, 4))
        return INVALID("%s: %lld x %lld x %lld x %lld elements overflows int64 bytes", what, (long long)a,
                       (long long)b, (long long)c, (long long)d);
    return FA_OK;
}

#define REQUIRE(cond, ...)                                                                                    \
    do {                                                                                                      \
        if (!(cond)) return INVALID(__VA_ARGS__);                                                              \
    } while (0)

fa_status fa_validate_desc(const fa_attn_desc *d)
{
    REQUIRE(d, "desc=NULL must point to an fa_attn_desc");
    REQUIRE((int)d->dtype >= 0 && d->dtype < FA_DTYPE_COUNT, "desc.dtype=%d is not an fa_dtype", (int)d->dtype);
    REQUIRE(d->batch >= 1, "desc.batch=%lld must be >= 1", (long long)d->batch);
    REQUIRE(d->seqlen_q >= 1 && d->seqlen_q <= INT32_MAX, "desc.seqlen_q=%lld must be in [1, 2^31)",
            (long long)d->seqlen_q);
    REQUIRE(d->seqlen_k >= 1 && d->seqlen_k <= INT32_MAX, "desc.seqlen_k=%lld must be in [1, 2^31)",
            (long long)d->seqlen_k);
    REQUIRE(d->heads_q >= 1, "desc.heads_q=%lld must be >= 1", (long long)d->heads_q);
    REQUIRE(d->heads_kv >= 1, "desc.heads_kv=%lld must be >= 1", (long long)d->heads_kv);
    REQUIRE(d->heads_q % d->heads_kv == 0, "desc.heads_kv=%lld must divide desc.heads_q=%lld",
            (long long)d->heads_kv, (long long)d->heads_q);
    REQUIRE(d->head_dim_qk >= 1 && d->head_dim_qk <= 65536, "desc.head_dim_qk=%lld must be in [1, 65536]",
            (long long)d->head_dim_qk);
    REQUIRE(d->head_dim_v >= 1 && d->head_dim_v <= 65536, "desc.head_dim_v=%lld must be in [1, 65536]",
            (long long)d->head_dim_v);
    REQUIRE(isfinite(d->softmax_scale) && d->softmax_scale >= 0.0f,
            "desc.softmax_scale=%g must be finite and >= 0 (0 = 1/sqrt(head_dim_qk))", (double)d->softmax_scale);
    REQUIRE(d->window_left >= -1, "desc.window_left=%lld must be >= -1 (-1 = unbounded)", (long long)d->window_left);
    REQUIRE(d->window_right >= -1, "desc.window_right=%lld must be >= -1 (-1 = unbounded)",
            (long long)d->window_right);
    REQUIRE(isfinite(d->softcap) && d->softcap >= 0.0f, "desc.softcap=%g must be finite and >= 0 (0 = off)",
            (double)d->softcap);
    REQUIRE((int)d->alibi >= FA_ALIBI_NONE && d->alibi <= FA_ALIBI_PER_BATCH_HEAD,
            "desc.alibi=%d is not an fa_alibi_mode", (int)d->alibi);
    REQUIRE(d->dropout_p >= 0.0f && d->dropout_p < 1.0f, "desc.dropout_p=%g must be in [0, 1)",
            (double)d->dropout_p);
    if (d->dropout_p > 0.0f) {
        /* The dropout counter packs (batch, head) into 32 bits. */
        REQUIRE(d->batch <= 65535, "desc.batch=%lld exceeds 65535, the most dropout supports", (long long)d->batch);
        REQUIRE(d->heads_q <= 65535, "desc.heads_q=%lld exceeds 65535, the most dropout supports",
                (long long)d->heads_q);
    }
    REQUIRE(d->num_splits >= 0 && d->num_splits <= 1024, "desc.num_splits=%d must be in [0, 1024] (0 = auto)",
            d->num_splits);
    if (d->varlen) {
        REQUIRE(d->total_q >= 1, "desc.total_q=%lld must be >= 1 with varlen", (long long)d->total_q);
        REQUIRE(d->paged_kv || d->total_k >= 1, "desc.total_k=%lld must be >= 1 with varlen",
                (long long)d->total_k);
    }
    if (d->paged_kv) {
        REQUIRE(d->page_size >= 1, "desc.page_size=%lld must be >= 1 with paged_kv", (long long)d->page_size);
        REQUIRE(d->num_pages >= 1, "desc.num_pages=%lld must be >= 1 with paged_kv", (long long)d->num_pages);
        REQUIRE(d->max_pages_per_seq >= 1, "desc.max_pages_per_seq=%lld must be >= 1 with paged_kv",
                (long long)d->max_pages_per_seq);
        int64_t cap = d->max_pages_per_seq;
        REQUIRE(mul_ok(&cap, d->page_size) && cap >= d->seqlen_k,
                "desc.max_pages_per_seq=%lld x desc.page_size=%lld must hold desc.seqlen_k=%lld keys",
                (long long)d->max_pages_per_seq, (long long)d->page_size, (long long)d->seqlen_k);
    }
    REQUIRE(d->seqlen_new >= 0 && d->seqlen_new <= d->seqlen_k, "desc.seqlen_new=%lld must be in [0, desc.seqlen_k=%lld]",
            (long long)d->seqlen_new, (long long)d->seqlen_k);
    if (d->seqlen_new > 0) {
        REQUIRE(d->kv_cache_lengths, "desc.seqlen_new=%lld needs desc.kv_cache_lengths=1: new keys go at seqused_k[b]",
                (long long)d->seqlen_new);
        REQUIRE(!d->varlen, "desc.seqlen_new=%lld: appending to the cache takes dense q, not varlen",
                (long long)d->seqlen_new);
    }
    REQUIRE(d->rotary_dim >= 0 && d->rotary_dim <= d->head_dim_qk && d->rotary_dim % 2 == 0,
            "desc.rotary_dim=%lld must be even and in [0, desc.head_dim_qk=%lld]", (long long)d->rotary_dim,
            (long long)d->head_dim_qk);
    if (d->rotary_dim > 0) {
        REQUIRE(d->seqlen_new > 0, "desc.rotary_dim=%lld applies to appended keys: set desc.seqlen_new",
                (long long)d->rotary_dim);
        REQUIRE(d->rotary_seqlen >= 1 && d->rotary_seqlen <= INT32_MAX,
                "desc.rotary_seqlen=%lld must be in [1, 2^31) with rotary", (long long)d->rotary_seqlen);
    }
    int64_t rows_q = d->varlen ? d->total_q : d->seqlen_q;
    int64_t batch_q = d->varlen ? 1 : d->batch;
    fa_status st;
    if ((st = check_product("q", batch_q, rows_q, d->heads_q, d->head_dim_qk)) != FA_OK) return st;
    if ((st = check_product("out", batch_q, rows_q, d->heads_q, d->head_dim_v)) != FA_OK) return st;
    int64_t kb = d->paged_kv ? d->num_pages : d->varlen ? 1 : d->batch;
    int64_t kr = d->paged_kv ? d->page_size : d->varlen ? d->total_k : d->seqlen_k;
    if ((st = check_product("k", kb, kr, d->heads_kv, d->head_dim_qk)) != FA_OK) return st;
    if ((st = check_product("v", kb, kr, d->heads_kv, d->head_dim_v)) != FA_OK) return st;
    if ((st = check_product("block_table", d->batch, d->paged_kv ? d->max_pages_per_seq : 1, 1, 1)) != FA_OK)
        return st;
    return FA_OK;
}

/* ------------------------------------------------------------------ tensors */

typedef struct expected {
    const char *name;            /* "q" */
    fa_dtype dtype;
    int rank;
    int64_t shape[FA_MAX_RANK];
    const char *source[FA_MAX_RANK]; /* what each dim must equal, for the message: "desc.heads_q" */
    int is_output;
} expected;

/* Byte range [lo, hi) a tensor touches; 0 on overflow. */
/* Byte range [lo, hi) a tensor touches. Returns -1 if fine, else the dim whose stride overflows. */
static int tensor_extent(const fa_tensor *t, uintptr_t *lo, uintptr_t *hi)
{
    int64_t last = 0;
    for (int i = 0; i < t->rank; i++) {
        int64_t term;
        if (t->shape[i] == 0) return *lo = *hi = (uintptr_t)t->data, -1;
        if (__builtin_mul_overflow(t->shape[i] - 1, t->stride[i], &term) || __builtin_add_overflow(last, term, &last))
            return i;
    }
    int64_t bytes;
    if (__builtin_add_overflow(last, 1, &bytes) || __builtin_mul_overflow(bytes, fa_dtype_size(t->dtype), &bytes))
        return t->rank - 1;
    *lo = (uintptr_t)t->data;
    if (__builtin_add_overflow(*lo, (uintptr_t)bytes, hi)) return t->rank - 1;
    return -1;
}

/* A named byte range an argument occupies, for the aliasing checks. */
typedef struct span {
    const char *name;
    uintptr_t lo, hi;
} span;

static span tensor_span(const char *name, const fa_tensor *t)
{
    span s = {name, 0, 0};
    if (t->data && tensor_extent(t, &s.lo, &s.hi) >= 0) s.lo = s.hi = 0;
    return s;
}

static span int32_span(const char *name, const int32_t *p, int64_t count)
{
    span s = {name, (uintptr_t)p, (uintptr_t)p + (uintptr_t)count * 4u};
    if (!p) s.lo = s.hi = 0;
    return s;
}

/* No output may share a byte with an input or with another output. */
static fa_status check_no_alias(const span *outs, int n_out, const span *ins, int n_in)
{
    for (int o = 0; o < n_out; o++) {
        if (outs[o].lo == outs[o].hi) continue;
        for (int i = 0; i < n_in + n_out; i++) {
            const span *x = i < n_in ? &ins[i] : &outs[i - n_in];
            if (x == &outs[o] || x->lo == x->hi) continue;
            if (outs[o].lo < x->hi && x->lo < outs[o].hi)
                return INVALID("%s.data=%p overlaps %s=%p: outputs may not alias other arguments", outs[o].name,
                               (void *)outs[o].lo, x->name, (void *)x->lo);
        }
    }
    return FA_OK;
}

/* An output whose strides map two elements to one address would race with itself. */
static int self_overlapping(const fa_tensor *t)
{
    int idx[FA_MAX_RANK], n = 0;
    for (int i = 0; i < t->rank; i++)
        if (t->shape[i] > 1) idx[n++] = i;
    for (int a = 1; a < n; a++) /* insertion sort by stride */
        for (int b = a; b > 0 && t->stride[idx[b]] < t->stride[idx[b - 1]]; b--) {
            int tmp = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = tmp;
        }
    int64_t span = 1;
    for (int a = 0; a < n; a++) {
        if (t->stride[idx[a]] < span) return 1;
        span = t->stride[idx[a]] * t->shape[idx[a]];
    }
    return 0;
}

static fa_status check_tensor(const fa_tensor *t, const expected *e)
{
    REQUIRE(t->data, "%s.data=NULL: %s is required", e->name, e->name);
    REQUIRE(t->dtype == e->dtype, "%s.dtype=%d (%s) must be %s", e->name, (int)t->dtype, fa_dtype_name(t->dtype),
            fa_dtype_name(e->dtype));
    REQUIRE(t->rank == e->rank, "%s.rank=%d must be %d", e->name, t->rank, e->rank);
    for (int i = 0; i < e->rank; i++)
        REQUIRE(t->shape[i] == e->shape[i], "%s.shape[%d]=%lld does not match %s=%lld", e->name, i,
                (long long)t->shape[i], e->source[i], (long long)e->shape[i]);
    for (int i = 0; i < e->rank; i++)
        REQUIRE(t->stride[i] >= 0, "%s.stride[%d]=%lld must be >= 0", e->name, i, (long long)t->stride[i]);
    REQUIRE(t->stride[e->rank - 1] == 1 || t->shape[e->rank - 1] == 1,
            "%s.stride[%d]=%lld must be 1: the last dimension must be contiguous", e->name, e->rank - 1,
            (long long)t->stride[e->rank - 1]);
    int size = fa_dtype_size(t->dtype);
    REQUIRE((uintptr_t)t->data % (uintptr_t)size == 0, "%s.data=%p is not aligned to its %d-byte elements", e->name,
            t->data, size);
    uintptr_t lo, hi;
    int bad = tensor_extent(t, &lo, &hi);
    REQUIRE(bad < 0, "%s.stride[%d]=%lld: shape x strides overflows the address space", e->name, bad,
            (long long)t->stride[bad < 0 ? 0 : bad]);
    if (e->is_output && self_overlapping(t)) {
        char strides[160];
        int n = 0;
        for (int i = 0; i < t->rank; i++)
            n += snprintf(strides + n, sizeof strides - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->stride[i]);
        return INVALID("%s.stride=(%s) makes two elements share an address", e->name, strides);
    }
    return FA_OK;
}


static void set_dims(expected *e, int rank, const int64_t *shape, const char *const *source)
{
    e->rank = rank;
    for (int i = 0; i < rank; i++) {
        e->shape[i] = shape[i];
        e->source[i] = source[i];
    }
}

/* q-like tensor: (batch, seqlen_q, heads, dim) or varlen (total_q, heads, dim). */
static expected expect_q_like(const char *name, const fa_attn_desc *d, int64_t heads, const char *heads_src,
                              int64_t dim, const char *dim_src, int is_output)
{
    expected e = {name, d->dtype, 0, {0}, {0}, is_output};
    if (d->varlen) {
        int64_t s[3] = {d->total_q, heads, dim};
        const char *src[3] = {"desc.total_q", heads_src, dim_src};
        set_dims(&e, 3, s, src);
    } else {
        int64_t s[4] = {d->batch, d->seqlen_q, heads, dim};
        const char *src[4] = {"desc.batch", "desc.seqlen_q", heads_src, dim_src};
        set_dims(&e, 4, s, src);
    }
    return e;
}

/* k/v: dense (batch, seqlen_k, heads_kv, dim), varlen (total_k, ...), paged (num_pages, page_size, ...). */
static expected expect_kv(const char *name, const fa_attn_desc *d, int64_t dim, const char *dim_src, int is_output)
{
    expected e = {name, d->dtype, 0, {0}, {0}, is_output};
    if (d->paged_kv) {
        int64_t s[4] = {d->num_pages, d->page_size, d->heads_kv, dim};
        const char *src[4] = {"desc.num_pages", "desc.page_size", "desc.heads_kv", dim_src};
        set_dims(&e, 4, s, src);
    } else if (d->varlen) {
        int64_t s[3] = {d->total_k, d->heads_kv, dim};
        const char *src[3] = {"desc.total_k", "desc.heads_kv", dim_src};
        set_dims(&e, 3, s, src);
    } else {
        int64_t s[4] = {d->batch, d->seqlen_k, d->heads_kv, dim};
        const char *src[4] = {"desc.batch", "desc.seqlen_k", "desc.heads_kv", dim_src};
        set_dims(&e, 4, s, src);
    }
    return e;
}

static expected expect_lse(const char *name, const fa_attn_desc *d)
{
    expected e = {name, FA_DTYPE_F32, 0, {0}, {0}, 1};
    if (d->varlen) {
        int64_t s[2] = {d->heads_q, d->total_q};
        const char *src[2] = {"desc.heads_q", "desc.total_q"};
        set_dims(&e, 2, s, src);
    } else {
        int64_t s[3] = {d->batch, d->heads_q, d->seqlen_q};
        const char *src[3] = {"desc.batch", "desc.heads_q", "desc.seqlen_q"};
        set_dims(&e, 3, s, src);
    }
    return e;
}

static expected expect_alibi(const fa_attn_desc *d)
{
    expected e = {"alibi_slopes", FA_DTYPE_F32, 0, {0}, {0}, 0};
    if (d->alibi == FA_ALIBI_PER_HEAD) {
        int64_t s[1] = {d->heads_q};
        const char *src[1] = {"desc.heads_q"};
        set_dims(&e, 1, s, src);
    } else {
        int64_t s[2] = {d->batch, d->heads_q};
        const char *src[2] = {"desc.batch", "desc.heads_q"};
        set_dims(&e, 2, s, src);
    }
    return e;
}

/* The byte ranges of the metadata arrays a call reads (only those its desc uses). */
static int metadata_spans(const fa_attn_desc *d, const int32_t *cu_q, const int32_t *cu_k, const int32_t *seqused_k,
                          const int32_t *block_table, int64_t bt_stride, span *out)
{
    int n = 0;
    if (d->varlen) out[n++] = int32_span("cu_seqlens_q", cu_q, d->batch + 1);
    if (fa_uses_cu_seqlens_k(d)) out[n++] = int32_span("cu_seqlens_k", cu_k, d->batch + 1);
    if (d->kv_cache_lengths) out[n++] = int32_span("seqused_k", seqused_k, d->batch);
    if (d->paged_kv) {
        int64_t stride = bt_stride ? bt_stride : d->max_pages_per_seq;
        out[n++] = int32_span("block_table", block_table, (d->batch - 1) * stride + d->max_pages_per_seq);
    }
    return n;
}

#define TRY(x)                                                                                                \
    do {                                                                                                      \
        fa_status s_ = (x);                                                                                   \
        if (s_ != FA_OK) return s_;                                                                            \
    } while (0)

static fa_status check_workspace(const fa_plan_info *p, const void *ws, int64_t size)
{
    if (!ws) return FA_OK;
    REQUIRE(size >= p->workspace_bytes, "workspace_size=%lld is smaller than the plan's %lld bytes",
            (long long)size, (long long)p->workspace_bytes);
    return FA_OK;
}

/* Pointers the kernels need besides the tensors. Their contents are checked by fa_validate_seq_metadata. */
static fa_status check_metadata_pointers(const fa_attn_desc *d, const int32_t *cu_q, const int32_t *cu_k,
                                         const int32_t *seqused_k, const int32_t *block_table, int64_t bt_stride)
{
    if (d->varlen) {
        REQUIRE(cu_q, "cu_seqlens_q=NULL: required with desc.varlen");
        REQUIRE((uintptr_t)cu_q % 4 == 0, "cu_seqlens_q=%p is not aligned to int32", (const void *)cu_q);
    }
    if (fa_uses_cu_seqlens_k(d)) {
        REQUIRE(cu_k, "cu_seqlens_k=NULL: required with desc.varlen (unless paged with kv_cache_lengths)");
        REQUIRE((uintptr_t)cu_k % 4 == 0, "cu_seqlens_k=%p is not aligned to int32", (const void *)cu_k);
    }
    if (d->kv_cache_lengths) {
        REQUIRE(seqused_k, "seqused_k=NULL: required with desc.kv_cache_lengths");
        REQUIRE((uintptr_t)seqused_k % 4 == 0, "seqused_k=%p is not aligned to int32", (const void *)seqused_k);
    }
    if (d->paged_kv) {
        REQUIRE(block_table, "block_table=NULL: required with desc.paged_kv");
        REQUIRE((uintptr_t)block_table % 4 == 0, "block_table=%p is not aligned to int32", (const void *)block_table);
        REQUIRE(bt_stride == 0 || bt_stride >= d->max_pages_per_seq,
                "block_table_stride=%lld must be 0 or >= desc.max_pages_per_seq=%lld", (long long)bt_stride,
                (long long)d->max_pages_per_seq);
        int64_t rows = bt_stride ? bt_stride : d->max_pages_per_seq;
        REQUIRE(!__builtin_mul_overflow(d->batch - 1, rows, &rows) &&
                    !__builtin_add_overflow(rows, d->max_pages_per_seq, &rows) && rows <= INT64_MAX / 4,
                "block_table_stride=%lld: desc.batch=%lld rows of it overflow int64 bytes", (long long)bt_stride,
                (long long)d->batch);
    }
    return FA_OK;
}

fa_status fa_validate_fwd_args(const fa_plan_info *p, const fa_fwd_args *a)
{
    REQUIRE(a, "args=NULL must point to an fa_fwd_args");
    const fa_attn_desc *d = &p->desc;
    expected eq = expect_q_like("q", d, d->heads_q, "desc.heads_q", d->head_dim_qk, "desc.head_dim_qk", 0);
    expected ek = expect_kv("k", d, d->head_dim_qk, "desc.head_dim_qk", 0);
    expected ev = expect_kv("v", d, d->head_dim_v, "desc.head_dim_v", 0);
    expected eo = expect_q_like("out", d, d->heads_q, "desc.heads_q", d->head_dim_v, "desc.head_dim_v", 1);
    TRY(check_tensor(&a->q, &eq));
    TRY(check_tensor(&a->k, &ek));
    TRY(check_tensor(&a->v, &ev));
    TRY(check_tensor(&a->out, &eo));
    if (d->return_lse) {
        expected el = expect_lse("lse", d);
        TRY(check_tensor(&a->lse, &el));
    }
    if (d->alibi != FA_ALIBI_NONE) {
        expected ea = expect_alibi(d);
        TRY(check_tensor(&a->alibi_slopes, &ea));
    }
    if (d->seqlen_new > 0) {
        expected ekn = {"k_new", d->dtype, 0, {0}, {0}, 0}, evn = {"v_new", d->dtype, 0, {0}, {0}, 0};
        int64_t skn[4] = {d->batch, d->seqlen_new, d->heads_kv, d->head_dim_qk};
        int64_t svn[4] = {d->batch, d->seqlen_new, d->heads_kv, d->head_dim_v};
        const char *srck[4] = {"desc.batch", "desc.seqlen_new", "desc.heads_kv", "desc.head_dim_qk"};
        const char *srcv[4] = {"desc.batch", "desc.seqlen_new", "desc.heads_kv", "desc.head_dim_v"};
        set_dims(&ekn, 4, skn, srck);
        set_dims(&evn, 4, svn, srcv);
        TRY(check_tensor(&a->k_new, &ekn));
        TRY(check_tensor(&a->v_new, &evn));
    }
    if (d->rotary_dim > 0) {
        expected ec = {"rotary_cos", FA_DTYPE_F32, 0, {0}, {0}, 0};
        int64_t sc[2] = {d->rotary_seqlen, d->rotary_dim / 2};
        const char *srcc[2] = {"desc.rotary_seqlen", "desc.rotary_dim/2"};
        set_dims(&ec, 2, sc, srcc);
        TRY(check_tensor(&a->rotary_cos, &ec));
        ec.name = "rotary_sin";
        TRY(check_tensor(&a->rotary_sin, &ec));
    }
    TRY(check_metadata_pointers(d, a->cu_seqlens_q, a->cu_seqlens_k, a->seqused_k, a->block_table,
                                a->block_table_stride));
    TRY(check_workspace(p, a->workspace, a->workspace_size));
    span ins[12] = {tensor_span("q", &a->q), tensor_span("k", &a->k), tensor_span("v", &a->v)};
    int n_in = 3;
    if (d->alibi != FA_ALIBI_NONE) ins[n_in++] = tensor_span("alibi_slopes", &a->alibi_slopes);
    if (d->seqlen_new > 0) {
        ins[n_in++] = tensor_span("k_new", &a->k_new);
        ins[n_in++] = tensor_span("v_new", &a->v_new);
    }
    if (d->rotary_dim > 0) {
        ins[n_in++] = tensor_span("rotary_cos", &a->rotary_cos);
        ins[n_in++] = tensor_span("rotary_sin", &a->rotary_sin);
    }
    n_in += metadata_spans(d, a->cu_seqlens_q, a->cu_seqlens_k, a->seqused_k, a->block_table, a->block_table_stride,
                           ins + n_in);
    span outs[2] = {tensor_span("out", &a->out), tensor_span("lse", &a->lse)};
    TRY(check_no_alias(outs, d->return_lse ? 2 : 1, ins, n_in));
    if (d->seqlen_new > 0) {
        /* The cache is written too: it may not share a byte with any other argument (k and v themselves
           may interleave, as in a packed KV cache, since appended rows are disjoint). */
        span cache[2] = {tensor_span("k", &a->k), tensor_span("v", &a->v)};
        span others[12];
        int n = 0;
        for (int i = 0; i < n_in; i++)
            if (strcmp(ins[i].name, "k") != 0 && strcmp(ins[i].name, "v") != 0) others[n++] = ins[i];
        others[n++] = outs[0];
        if (d->return_lse) others[n++] = outs[1];
        TRY(check_no_alias(cache, 1, others, n));
        TRY(check_no_alias(cache + 1, 1, others, n));
    }
    return FA_OK;
}

fa_status fa_validate_bwd_args(const fa_plan_info *p, const fa_bwd_args *a)
{
    REQUIRE(a, "args=NULL must point to an fa_bwd_args");
    const fa_attn_desc *d = &p->desc;
    REQUIRE(!d->paged_kv, "desc.paged_kv=1: the backward pass takes dense or varlen k/v, not a page pool");
    expected eq = expect_q_like("q", d, d->heads_q, "desc.heads_q", d->head_dim_qk, "desc.head_dim_qk", 0);
    expected ek = expect_kv("k", d, d->head_dim_qk, "desc.head_dim_qk", 0);
    expected ev = expect_kv("v", d, d->head_dim_v, "desc.head_dim_v", 0);
    expected eo = expect_q_like("out", d, d->heads_q, "desc.heads_q", d->head_dim_v, "desc.head_dim_v", 0);
    expected edo = expect_q_like("dout", d, d->heads_q, "desc.heads_q", d->head_dim_v, "desc.head_dim_v", 0);
    expected el = expect_lse("lse", d);
    expected edq = expect_q_like("dq", d, d->heads_q, "desc.heads_q", d->head_dim_qk, "desc.head_dim_qk", 1);
    expected edk = expect_kv("dk", d, d->head_dim_qk, "desc.head_dim_qk", 1);
    expected edv = expect_kv("dv", d, d->head_dim_v, "desc.head_dim_v", 1);
    el.is_output = 0;
    TRY(check_tensor(&a->q, &eq));
    TRY(check_tensor(&a->k, &ek));
    TRY(check_tensor(&a->v, &ev));
    TRY(check_tensor(&a->out, &eo));
    TRY(check_tensor(&a->dout, &edo));
    TRY(check_tensor(&a->lse, &el));
    TRY(check_tensor(&a->dq, &edq));
    TRY(check_tensor(&a->dk, &edk));
    TRY(check_tensor(&a->dv, &edv));
    if (d->alibi != FA_ALIBI_NONE) {
        expected ea = expect_alibi(d);
        TRY(check_tensor(&a->alibi_slopes, &ea));
    }
    TRY(check_metadata_pointers(d, a->cu_seqlens_q, a->cu_seqlens_k, a->seqused_k, NULL, 0));
    TRY(check_workspace(p, a->workspace, a->workspace_size));
    span ins[12] = {tensor_span("q", &a->q),       tensor_span("k", &a->k),       tensor_span("v", &a->v),
                    tensor_span("out", &a->out),   tensor_span("dout", &a->dout), tensor_span("lse", &a->lse)};
    int n_in = 6;
    if (d->alibi != FA_ALIBI_NONE) ins[n_in++] = tensor_span("alibi_slopes", &a->alibi_slopes);
    n_in += metadata_spans(d, a->cu_seqlens_q, a->cu_seqlens_k, a->seqused_k, NULL, 0, ins + n_in);
    span outs[3] = {tensor_span("dq", &a->dq), tensor_span("dk", &a->dk), tensor_span("dv", &a->dv)};
    return check_no_alias(outs, 3, ins, n_in);
}

fa_status fa_validate_combine_args(const fa_combine_args *a)
{
    REQUIRE(a, "args=NULL must point to an fa_combine_args");
    const fa_tensor *op = &a->out_partial, *lp = &a->lse_partial, *o = &a->out;
    REQUIRE(op->rank == 5, "out_partial.rank=%d must be 5 (splits, batch, seqlen_q, heads, head_dim_v)", op->rank);
    REQUIRE(lp->rank == 4, "lse_partial.rank=%d must be 4 (splits, batch, heads, seqlen_q)", lp->rank);
    REQUIRE(o->rank == 4, "out.rank=%d must be 4 (batch, seqlen_q, heads, head_dim_v)", o->rank);
    for (int i = 0; i < 5; i++)
        REQUIRE(op->shape[i] >= 1, "out_partial.shape[%d]=%lld must be >= 1", i, (long long)op->shape[i]);
    REQUIRE((int)o->dtype >= 0 && o->dtype <= FA_DTYPE_BF16, "out.dtype=%d must be fp32, fp16 or bf16", (int)o->dtype);
    expected eop = {"out_partial", FA_DTYPE_F32, 0, {0}, {0}, 0};
    int64_t sop[5] = {op->shape[0], op->shape[1], op->shape[2], op->shape[3], op->shape[4]};
    const char *srcop[5] = {"", "", "", "", ""};
    set_dims(&eop, 5, sop, srcop);
    expected elp = {"lse_partial", FA_DTYPE_F32, 0, {0}, {0}, 0};
    int64_t slp[4] = {op->shape[0], op->shape[1], op->shape[3], op->shape[2]};
    const char *srclp[4] = {"out_partial.shape[0]", "out_partial.shape[1]", "out_partial.shape[3]",
                            "out_partial.shape[2]"};
    set_dims(&elp, 4, slp, srclp);
    expected eo = {"out", o->dtype, 0, {0}, {0}, 1};
    int64_t so[4] = {op->shape[1], op->shape[2], op->shape[3], op->shape[4]};
    const char *srco[4] = {"out_partial.shape[1]", "out_partial.shape[2]", "out_partial.shape[3]",
                           "out_partial.shape[4]"};
    set_dims(&eo, 4, so, srco);
    TRY(check_tensor(op, &eop));
    TRY(check_tensor(lp, &elp));
    TRY(check_tensor(o, &eo));
    if (a->lse.data) {
        expected el = {"lse", FA_DTYPE_F32, 0, {0}, {0}, 1};
        int64_t sl[3] = {op->shape[1], op->shape[3], op->shape[2]};
        const char *srcl[3] = {"out_partial.shape[1]", "out_partial.shape[3]", "out_partial.shape[2]"};
        set_dims(&el, 3, sl, srcl);
        TRY(check_tensor(&a->lse, &el));
    }
    span ins[2] = {tensor_span("out_partial", op), tensor_span("lse_partial", lp)};
    span outs[2] = {tensor_span("out", o), tensor_span("lse", &a->lse)};
    return check_no_alias(outs, a->lse.data ? 2 : 1, ins, 2);
}

/* ------------------------------------------------------------------ host-readable sequence metadata */

fa_status fa_validate_seq_metadata(const fa_plan_info *p, const int32_t *cu_q, const int32_t *cu_k,
                                   const int32_t *seqused_k, const int32_t *block_table, int64_t bt_stride)
{
    const fa_attn_desc *d = &p->desc;
    if (d->varlen) {
        REQUIRE(cu_q[0] == 0, "cu_seqlens_q[0]=%d must be 0", cu_q[0]);
        for (int64_t b = 0; b < d->batch; b++) {
            int64_t len = (int64_t)cu_q[b + 1] - cu_q[b];
            REQUIRE(len >= 0, "cu_seqlens_q[%lld]=%d < cu_seqlens_q[%lld]=%d: must be non-decreasing",
                    (long long)(b + 1), cu_q[b + 1], (long long)b, cu_q[b]);
            REQUIRE(len <= d->seqlen_q,
                    "cu_seqlens_q[%lld]-cu_seqlens_q[%lld]=%lld queries exceeds desc.seqlen_q=%lld (the maximum)",
                    (long long)(b + 1), (long long)b, (long long)len, (long long)d->seqlen_q);
        }
        REQUIRE(cu_q[d->batch] == d->total_q, "cu_seqlens_q[%lld]=%d must equal desc.total_q=%lld",
                (long long)d->batch, cu_q[d->batch], (long long)d->total_q);
        if (fa_uses_cu_seqlens_k(d)) {
            REQUIRE(cu_k[0] == 0, "cu_seqlens_k[0]=%d must be 0", cu_k[0]);
            for (int64_t b = 0; b < d->batch; b++) {
                int64_t len = (int64_t)cu_k[b + 1] - cu_k[b];
                REQUIRE(len >= 0, "cu_seqlens_k[%lld]=%d < cu_seqlens_k[%lld]=%d: must be non-decreasing",
                        (long long)(b + 1), cu_k[b + 1], (long long)b, cu_k[b]);
                REQUIRE(len <= d->seqlen_k,
                        "cu_seqlens_k[%lld]-cu_seqlens_k[%lld]=%lld keys exceeds desc.seqlen_k=%lld (the maximum)",
                        (long long)(b + 1), (long long)b, (long long)len, (long long)d->seqlen_k);
            }
            /* A page pool has no total: there cu_seqlens_k only carries lengths. */
            REQUIRE(d->paged_kv || cu_k[d->batch] == d->total_k, "cu_seqlens_k[%lld]=%d must equal desc.total_k=%lld",
                    (long long)d->batch, cu_k[d->batch], (long long)d->total_k);
        }
    }
    for (int64_t b = 0; b < d->batch; b++) {
        int64_t cap = d->varlen && !d->paged_kv ? (int64_t)cu_k[b + 1] - cu_k[b] : d->seqlen_k;
        int64_t used = cap;
        if (d->kv_cache_lengths) {
            used = (int64_t)seqused_k[b] + d->seqlen_new; /* keys attended after the append */
            REQUIRE(seqused_k[b] >= 0 && used <= cap, "seqused_k[%lld]=%d must be in [0, %lld]%s", (long long)b,
                    seqused_k[b], (long long)(cap - d->seqlen_new), d->seqlen_new ? " (room for desc.seqlen_new)" : "");
            if (d->rotary_dim > 0) {
                int moving = d->causal || d->window_left >= 0 || d->window_right >= 0;
                int64_t last = (int64_t)seqused_k[b] + (d->seqlen_new > (moving ? d->seqlen_q : 1)
                                                            ? d->seqlen_new : (moving ? d->seqlen_q : 1)) - 1;
                REQUIRE(last < d->rotary_seqlen,
                        "seqused_k[%lld]=%d: rotary position %lld is past desc.rotary_seqlen=%lld", (long long)b,
                        seqused_k[b], (long long)last, (long long)d->rotary_seqlen);
            }
        }
        if (d->paged_kv) {
            int64_t stride = bt_stride ? bt_stride : d->max_pages_per_seq;
            int64_t pages = (used + d->page_size - 1) / d->page_size;
            for (int64_t i = 0; i < pages; i++) {
                int32_t page = block_table[b * stride + i];
                REQUIRE(page >= 0 && page < d->num_pages,
                        "block_table[%lld][%lld]=%d is not a page index in [0, desc.num_pages=%lld)", (long long)b,
                        (long long)i, page, (long long)d->num_pages);
            }
        }
    }
    return FA_OK;
}
