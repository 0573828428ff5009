/*
 * Bad-input tests: every malformed argument is rejected with the right status, fa_last_error() names the
 * offending argument, and no output byte (nor input byte, nor a byte next to a buffer) is written.
 *
 * Device 0 (the CPU backend) is used throughout. Each fixture builds a valid baseline problem, checks that
 * it runs, fills the outputs with a pattern and snapshots every buffer (with guard bytes on both sides);
 * each corruption then runs against that snapshot. Checks inside a test are "soft": every failing case is
 * printed and the test fails at its end, so one run shows every problem.
 *
 * Random inputs are seeded from the clock; the seed is printed. FA_TEST_SEED=<n> reproduces a run.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flashport.h"
#include "test_random.h"

/* ---------------------------------------------------------------- random numbers, soft checks */


static int g_verbose;  /* FA_TEST_VERBOSE=1: print every case and its message */
static int g_failures; /* soft failures in the running test */
static long g_checks;  /* cases checked over the whole run */

#define SOFT_FAIL(...)                                                                                  \
    do {                                                                                                \
        char sf_buf_[4096];                                                                             \
        snprintf(sf_buf_, sizeof sf_buf_, __VA_ARGS__);                                                 \
        print_error("  FAIL %s:%d: %s\n", __FILE__, __LINE__, sf_buf_);                                 \
        g_failures++;                                                                                   \
    } while (0)

static void begin(void)
{
    g_failures = 0;
}

static void finish(void)
{
    if (g_failures) {
        int n = g_failures;
        g_failures = 0;
        print_error("  seed=%llu (FA_TEST_SEED to reproduce)\n", (unsigned long long)g_seed);
        fail_msg("%d check(s) failed in this test (listed above)", n);
    }
}

static const char *sname(fa_status s)
{
    switch (s) {
    case FA_OK: return "FA_OK";
    case FA_ERR_INVALID_ARGUMENT: return "FA_ERR_INVALID_ARGUMENT";
    case FA_ERR_UNSUPPORTED: return "FA_ERR_UNSUPPORTED";
    case FA_ERR_OUT_OF_MEMORY: return "FA_ERR_OUT_OF_MEMORY";
    case FA_ERR_NO_DEVICE: return "FA_ERR_NO_DEVICE";
    case FA_ERR_BACKEND: return "FA_ERR_BACKEND";
    case FA_ERR_INTERNAL: return "FA_ERR_INTERNAL";
    }
    return "(unknown status)";
}

#define INV FA_ERR_INVALID_ARGUMENT

/* "a|b|c": does msg contain any of the alternatives? */
static int match_any(const char *msg, const char *needles)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", needles);
    char *save = NULL;
    for (char *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save))
        if (strstr(msg, tok))
            return 1;
    return 0;
}

static void copy_last_error(char *dst, size_t n)
{
    const char *e = fa_last_error();
    snprintf(dst, n, "%s", e ? e : "(fa_last_error returned NULL)");
}

/* ---------------------------------------------------------------- guarded buffers */

#define GUARD 64
#define FILL 0xA5

typedef struct region {
    const char *name;
    unsigned char *base; /* GUARD | bytes | GUARD */
    unsigned char *snap;
    size_t bytes;
} region;

static void region_new(region *r, const char *name, size_t bytes)
{
    r->name = name;
    r->bytes = bytes;
    r->base = malloc(bytes + 2 * GUARD);
    r->snap = malloc(bytes + 2 * GUARD);
    assert_non_null(r->base);
    assert_non_null(r->snap);
    memset(r->base, FILL, bytes + 2 * GUARD);
}

static void region_free(region *r)
{
    free(r->base);
    free(r->snap);
    memset(r, 0, sizeof *r);
}

static void *rdata(region *r)
{
    return r->base + GUARD;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static size_t dsize(fa_dtype dt) /* own table: do not depend on the library for the fixtures */
{
    return dt == FA_DTYPE_F32 ? 4 : dt == FA_DTYPE_F16 || dt == FA_DTYPE_BF16 ? 2 : 1;
}

static void region_random(region *r, fa_dtype dt)
{
    const size_t es = dsize(dt), n = r->bytes / es;
    unsigned char *p = rdata(r);
    for (size_t i = 0; i < n; i++) {
        float f = (float)rng_range(-1, 1);
        if (dt == FA_DTYPE_F32) {
            memcpy(p + i * 4, &f, 4);
        } else {
            uint16_t h = f32_to_bf16(f);
            memcpy(p + i * 2, &h, 2);
        }
    }
}

static float load(const void *base, fa_dtype dt, size_t i)
{
    if (dt == FA_DTYPE_F32) {
        float f;
        memcpy(&f, (const unsigned char *)base + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const unsigned char *)base + i * 2, 2);
    return bf16_to_f32(h);
}

/* ---------------------------------------------------------------- the problems */

enum { B = 2, SQ = 37, SK = 53, HQ = 4, HK = 2, HD = 40, DV = 24 };
/* varlen: 3 sequences */
enum { VB = 3, TQ = 69, TK = 92 };
static const int32_t k_cu_q[VB + 1] = {0, 20, 57, 69}; /* lengths 20 37 12, max 37 */
static const int32_t k_cu_k[VB + 1] = {0, 53, 61, 92}; /* lengths 53 8 31, max 53 */
/* paged */
enum { PS = 16, MAXP = 4, NP = 9 };
static const int32_t k_used_paged[B] = {53, 29};
static const int32_t k_used_dense[B] = {53, 17};

typedef enum { K_DENSE, K_ALIBI, K_VARLEN, K_PAGED, K_KVCACHE, K_BWD, K_COMBINE } kind_t;

enum {
    R_Q, R_K, R_V, R_OUT, R_LSE, R_ALIBI, R_CUQ, R_CUK, R_USED, R_BT,
    R_DOUT, R_DQ, R_DK, R_DV,
    R_OP, R_LP, /* combine partials */
    R_X1, R_X2, R_X3, /* per-test extras */
    R_COUNT
};

typedef struct problem {
    kind_t kind;
    fa_dtype dtype;
    fa_attn_desc desc;
    fa_plan *plan;
    int bwd_plan_hint; /* with_backward accepted by the planner */
    char bwd_note[512];
    fa_fwd_args args;
    fa_bwd_args bargs;
    fa_combine_args cargs;
    region r[R_COUNT];
} problem;

static fa_tensor mk(void *data, fa_dtype dt, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4)
{
    fa_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dt;
    t.rank = rank;
    const int64_t s[5] = {d0, d1, d2, d3, d4};
    int64_t st = 1;
    for (int i = rank - 1; i >= 0; i--) {
        t.shape[i] = s[i];
        t.stride[i] = st;
        st *= s[i];
    }
    return t;
}

static int64_t tnumel(const fa_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

static fa_attn_desc make_desc(kind_t kind, fa_dtype dt)
{
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = dt;
    d.batch = B;
    d.seqlen_q = SQ;
    d.seqlen_k = SK;
    d.heads_q = HQ;
    d.heads_kv = HK;
    d.head_dim_qk = HD;
    d.head_dim_v = DV;
    d.return_lse = 1;
    switch (kind) {
    case K_ALIBI: d.alibi = FA_ALIBI_PER_HEAD; break;
    case K_VARLEN:
        d.batch = VB;
        d.varlen = 1;
        d.total_q = TQ;
        d.total_k = TK;
        break;
    case K_PAGED:
        d.paged_kv = 1;
        d.page_size = PS;
        d.num_pages = NP;
        d.max_pages_per_seq = MAXP;
        d.kv_cache_lengths = 1;
        break;
    case K_KVCACHE: d.kv_cache_lengths = 1; break;
    case K_BWD: d.with_backward = 1; break;
    default: break;
    }
    return d;
}

static void snap_all(problem *p)
{
    for (int i = 0; i < R_COUNT; i++)
        if (p->r[i].base)
            memcpy(p->r[i].snap, p->r[i].base, p->r[i].bytes + 2 * GUARD);
}

/* Compare every region with its snapshot; with skip_data_of >= 0, that region's data part is not compared
 * (guards still are). Returns 1 if unchanged; prints the first difference otherwise. */
static int unchanged_all(problem *p, const char *what, const int *skip, int nskip)
{
    int ok = 1;
    for (int i = 0; i < R_COUNT; i++) {
        region *r = &p->r[i];
        if (!r->base)
            continue;
        int skip_data = 0;
        for (int j = 0; j < nskip; j++)
            skip_data |= skip[j] == i;
        const size_t total = r->bytes + 2 * GUARD;
        for (size_t o = 0; o < total; o++) {
            if (skip_data && o >= GUARD && o < GUARD + r->bytes)
                continue;
            if (r->base[o] != r->snap[o]) {
                const long long rel = (long long)o - GUARD;
                SOFT_FAIL("[%s] buffer %s changed at byte %lld%s (0x%02x -> 0x%02x)", what, r->name, rel,
                          rel < 0 || rel >= (long long)r->bytes ? " (guard zone)" : "", r->snap[o], r->base[o]);
                ok = 0;
                break;
            }
        }
    }
    return ok;
}

static void check_result(problem *p, fa_status got, const char *msg, fa_status want, const char *needle,
                         const char *value, const char *what, int line)
{
    g_checks++;
    char why[512] = "";
    if (got != want)
        snprintf(why, sizeof why, "status %s, want %s", sname(got), sname(want));
    else if (want != FA_OK && !msg[0])
        snprintf(why, sizeof why, "fa_last_error() is empty");
    else if (want != FA_OK && needle && !match_any(msg, needle))
        snprintf(why, sizeof why, "fa_last_error() does not name \"%s\"", needle);
    else if (want != FA_OK && value && !strstr(msg, value))
        snprintf(why, sizeof why, "fa_last_error() does not give the value \"%s\"", value);
    if (g_verbose)
        print_message("  case line %d [%s]: %s \"%s\"\n", line, what, sname(got), msg);
    if (why[0]) {
        print_error("  FAIL line %d [%s]: %s; fa_last_error()=\"%s\"\n", line, what, why, msg);
        g_failures++;
    }
    if (p && !unchanged_all(p, what, NULL, 0))
        snap_all(p); /* report once, then go on from the new state */
}

/* Run CALL, copy fa_last_error() at once, and check status, message and buffers. */
#define EXPECT(p, call, want, needle, value, ...)                                                       \
    do {                                                                                                \
        fa_status ex_st_ = (call);                                                                      \
        char ex_msg_[1024], ex_what_[256];                                                              \
        copy_last_error(ex_msg_, sizeof ex_msg_);                                                       \
        snprintf(ex_what_, sizeof ex_what_, __VA_ARGS__);                                               \
        check_result((p), ex_st_, ex_msg_, (want), (needle), (value), ex_what_, __LINE__);              \
    } while (0)

static fa_status fwd(problem *p, const fa_fwd_args *a)
{
    return fa_fwd(p->plan, a, NULL);
}

static int all_finite(const void *data, fa_dtype dt, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(load(data, dt, i)))
            return 0;
    return 1;
}

static kind_t g_setup_kind;
static fa_dtype g_setup_dtype;

static void build_fwd(problem *p)
{
    const kind_t kind = p->kind;
    const fa_dtype dt = p->dtype;
    const size_t es = dsize(dt);
    fa_fwd_args *a = &p->args;
    memset(a, 0, sizeof *a);
    p->desc = make_desc(kind, dt);
    region *r = p->r;
    if (kind == K_VARLEN) {
        region_new(&r[R_Q], "q", (size_t)TQ * HQ * HD * es);
        region_new(&r[R_K], "k", (size_t)TK * HK * HD * es);
        region_new(&r[R_V], "v", (size_t)TK * HK * DV * es);
        region_new(&r[R_OUT], "out", (size_t)TQ * HQ * DV * es);
        region_new(&r[R_LSE], "lse", (size_t)HQ * TQ * 4);
        a->q = mk(rdata(&r[R_Q]), dt, 3, TQ, HQ, HD, 0, 0);
        a->k = mk(rdata(&r[R_K]), dt, 3, TK, HK, HD, 0, 0);
        a->v = mk(rdata(&r[R_V]), dt, 3, TK, HK, DV, 0, 0);
        a->out = mk(rdata(&r[R_OUT]), dt, 3, TQ, HQ, DV, 0, 0);
        a->lse = mk(rdata(&r[R_LSE]), FA_DTYPE_F32, 2, HQ, TQ, 0, 0, 0);
        region_new(&r[R_CUQ], "cu_seqlens_q", sizeof k_cu_q);
        region_new(&r[R_CUK], "cu_seqlens_k", sizeof k_cu_k);
        memcpy(rdata(&r[R_CUQ]), k_cu_q, sizeof k_cu_q);
        memcpy(rdata(&r[R_CUK]), k_cu_k, sizeof k_cu_k);
        a->cu_seqlens_q = rdata(&r[R_CUQ]);
        a->cu_seqlens_k = rdata(&r[R_CUK]);
    } else {
        const int64_t kr = kind == K_PAGED ? NP : B, kc = kind == K_PAGED ? PS : SK;
        region_new(&r[R_Q], "q", (size_t)B * SQ * HQ * HD * es);
        region_new(&r[R_K], "k", (size_t)kr * kc * HK * HD * es);
        region_new(&r[R_V], "v", (size_t)kr * kc * HK * DV * es);
        region_new(&r[R_OUT], "out", (size_t)B * SQ * HQ * DV * es);
        region_new(&r[R_LSE], "lse", (size_t)B * HQ * SQ * 4);
        a->q = mk(rdata(&r[R_Q]), dt, 4, B, SQ, HQ, HD, 0);
        a->k = mk(rdata(&r[R_K]), dt, 4, kr, kc, HK, HD, 0);
        a->v = mk(rdata(&r[R_V]), dt, 4, kr, kc, HK, DV, 0);
        a->out = mk(rdata(&r[R_OUT]), dt, 4, B, SQ, HQ, DV, 0);
        a->lse = mk(rdata(&r[R_LSE]), FA_DTYPE_F32, 3, B, HQ, SQ, 0, 0);
    }
    region_random(&r[R_Q], dt);
    region_random(&r[R_K], dt);
    region_random(&r[R_V], dt);
    if (kind == K_ALIBI) {
        region_new(&r[R_ALIBI], "alibi_slopes", HQ * 4);
        float *s = rdata(&r[R_ALIBI]);
        for (int h = 0; h < HQ; h++)
            s[h] = 1.0f / (float)(2 << h);
        a->alibi_slopes = mk(s, FA_DTYPE_F32, 1, HQ, 0, 0, 0, 0);
    }
    if (kind == K_PAGED) {
        region_new(&r[R_BT], "block_table", sizeof(int32_t) * B * MAXP);
        int32_t perm[NP];
        for (int i = 0; i < NP; i++)
            perm[i] = i;
        for (int i = NP - 1; i > 0; i--) {
            int j = (int)(rng_u64() % (uint64_t)(i + 1));
            int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        memcpy(rdata(&r[R_BT]), perm, sizeof(int32_t) * B * MAXP);
        a->block_table = rdata(&r[R_BT]);
        region_new(&r[R_USED], "seqused_k", sizeof k_used_paged);
        memcpy(rdata(&r[R_USED]), k_used_paged, sizeof k_used_paged);
        a->seqused_k = rdata(&r[R_USED]);
    }
    if (kind == K_KVCACHE) {
        region_new(&r[R_USED], "seqused_k", sizeof k_used_dense);
        memcpy(rdata(&r[R_USED]), k_used_dense, sizeof k_used_dense);
        a->seqused_k = rdata(&r[R_USED]);
    }
    a->dropout_seed = rng_u64();
}

static void build_combine(problem *p)
{
    enum { S = 3, CB = 2, CQ = 5, CH = 3, CD = 8 };
    region *r = p->r;
    region_new(&r[R_OP], "out_partial", (size_t)S * CB * CQ * CH * CD * 4);
    region_new(&r[R_LP], "lse_partial", (size_t)S * CB * CH * CQ * 4);
    region_new(&r[R_OUT], "out", (size_t)CB * CQ * CH * CD * 4);
    region_new(&r[R_LSE], "lse", (size_t)CB * CH * CQ * 4);
    region_random(&r[R_OP], FA_DTYPE_F32);
    float *lp = rdata(&r[R_LP]);
    for (size_t i = 0; i < r[R_LP].bytes / 4; i++)
        lp[i] = (float)rng_range(-3, 3);
    fa_combine_args *c = &p->cargs;
    memset(c, 0, sizeof *c);
    c->out_partial = mk(rdata(&r[R_OP]), FA_DTYPE_F32, 5, S, CB, CQ, CH, CD);
    c->lse_partial = mk(rdata(&r[R_LP]), FA_DTYPE_F32, 4, S, CB, CH, CQ, 0);
    c->out = mk(rdata(&r[R_OUT]), FA_DTYPE_F32, 4, CB, CQ, CH, CD, 0);
    c->lse = mk(rdata(&r[R_LSE]), FA_DTYPE_F32, 3, CB, CH, CQ, 0, 0);
}

static void reset_outputs(problem *p)
{
    const int outs[] = {R_OUT, R_LSE, R_DQ, R_DK, R_DV};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        if (p->r[outs[i]].base)
            memset(rdata(&p->r[outs[i]]), FILL, p->r[outs[i]].bytes);
}

static int setup_problem(void **state)
{
    begin();
    problem *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->kind = g_setup_kind;
    p->dtype = g_setup_dtype;
    *state = p;

    if (p->kind == K_COMBINE) {
        build_combine(p);
        snap_all(p);
        fa_status st = fa_combine(0, &p->cargs, NULL);
        if (st != FA_OK)
            fail_msg("baseline fa_combine failed: %s, \"%s\"", sname(st), fa_last_error());
        const int skip[] = {R_OUT, R_LSE};
        if (!unchanged_all(p, "baseline fa_combine", skip, 2))
            fail_msg("baseline fa_combine wrote outside out/lse");
        if (!all_finite(rdata(&p->r[R_OUT]), FA_DTYPE_F32, p->r[R_OUT].bytes / 4) ||
            !all_finite(rdata(&p->r[R_LSE]), FA_DTYPE_F32, p->r[R_LSE].bytes / 4))
            fail_msg("baseline fa_combine left non-finite values");
        reset_outputs(p);
        snap_all(p);
        return 0;
    }

    build_fwd(p);
    fa_status st = fa_plan_create(&p->plan, 0, &p->desc);
    p->bwd_plan_hint = p->desc.with_backward;
    if (st == FA_ERR_UNSUPPORTED && p->kind == K_BWD) {
        copy_last_error(p->bwd_note, sizeof p->bwd_note);
        if (!strstr(p->bwd_note, "backward"))
            fail_msg("with_backward=1 plan: FA_ERR_UNSUPPORTED but the message does not say backward: \"%s\"",
                     p->bwd_note);
        p->desc.with_backward = 0;
        p->bwd_plan_hint = 0;
        st = fa_plan_create(&p->plan, 0, &p->desc);
    }
    if (st != FA_OK)
        fail_msg("baseline fa_plan_create (kind %d, %s) failed: %s, \"%s\"", (int)p->kind,
                 p->dtype == FA_DTYPE_F32 ? "f32" : "bf16", sname(st), fa_last_error());
    snap_all(p);
    st = fwd(p, &p->args);
    if (st != FA_OK)
        fail_msg("baseline fa_fwd (kind %d, %s) failed: %s, \"%s\"", (int)p->kind,
                 p->dtype == FA_DTYPE_F32 ? "f32" : "bf16", sname(st), fa_last_error());
    const int skip[] = {R_OUT, R_LSE};
    if (!unchanged_all(p, "baseline fa_fwd", skip, 2))
        fail_msg("baseline fa_fwd wrote an input or outside out/lse");
    const int64_t n_out = tnumel(&p->args.out), n_lse = tnumel(&p->args.lse);
    if (!all_finite(rdata(&p->r[R_OUT]), p->dtype, (size_t)n_out))
        fail_msg("baseline fa_fwd output has non-finite values (or was not written)");
    if (!all_finite(rdata(&p->r[R_LSE]), FA_DTYPE_F32, (size_t)n_lse))
        fail_msg("baseline fa_fwd lse has non-finite values (or was not written)");

    if (p->kind == K_BWD) {
        region *r = p->r;
        region_new(&r[R_DOUT], "dout", r[R_OUT].bytes);
        region_new(&r[R_DQ], "dq", r[R_Q].bytes);
        region_new(&r[R_DK], "dk", r[R_K].bytes);
        region_new(&r[R_DV], "dv", r[R_V].bytes);
        region_random(&r[R_DOUT], p->dtype);
        fa_bwd_args *b = &p->bargs;
        memset(b, 0, sizeof *b);
        b->q = p->args.q;
        b->k = p->args.k;
        b->v = p->args.v;
        b->out = p->args.out;
        b->lse = p->args.lse;
        b->dout = mk(rdata(&r[R_DOUT]), p->dtype, 4, B, SQ, HQ, DV, 0);
        b->dq = mk(rdata(&r[R_DQ]), p->dtype, 4, B, SQ, HQ, HD, 0);
        b->dk = mk(rdata(&r[R_DK]), p->dtype, 4, B, SK, HK, HD, 0);
        b->dv = mk(rdata(&r[R_DV]), p->dtype, 4, B, SK, HK, DV, 0);
        snap_all(p); /* out and lse hold the forward results: inputs of the backward pass */
        return 0;
    }
    reset_outputs(p);
    snap_all(p);
    return 0;
}

static int teardown_problem(void **state)
{
    problem *p = *state;
    if (p) {
        fa_plan_destroy(p->plan);
        for (int i = 0; i < R_COUNT; i++)
            region_free(&p->r[i]);
        free(p);
    }
    return 0;
}

/* ---------------------------------------------------------------- tensor selection */

enum { T_Q, T_K, T_V, T_OUT, T_LSE, T_ALIBI, T_NT };
static const char *const k_tname[T_NT] = {"q", "k", "v", "out", "lse", "alibi_slopes"};

static fa_tensor *targ(fa_fwd_args *a, int t)
{
    switch (t) {
    case T_Q: return &a->q;
    case T_K: return &a->k;
    case T_V: return &a->v;
    case T_OUT: return &a->out;
    case T_LSE: return &a->lse;
    default: return &a->alibi_slopes;
    }
}

static char *fmt(char *buf, size_t n, const char *f, const char *s)
{
    snprintf(buf, n, f, s);
    return buf;
}

/* ================================================================ desc / plan-level tests */

static fa_tile_config g_cfg; /* first candidate of the dense f32 problem */
static int g_have_cfg;

static void expect_desc(const fa_attn_desc *d, fa_status want, const char *needle, const char *value,
                        const char *what, int use_cfg, int line)
{
    char msg[1024], w[300];
    /* fa_plan_create */
    fa_plan *const sentinel = (fa_plan *)(void *)&g_cfg;
    fa_plan *plan = sentinel;
    fa_status st = fa_plan_create(&plan, 0, d);
    copy_last_error(msg, sizeof msg);
    snprintf(w, sizeof w, "fa_plan_create: %s", what);
    check_result(NULL, st, msg, want, needle, value, w, line);
    if (st == FA_OK) {
        fa_plan_destroy(plan);
    } else if (plan != sentinel && plan != NULL) {
        print_error("  FAIL line %d [%s]: *plan was set to %p on failure\n", line, w, (void *)plan);
        g_failures++;
    }

    /* fa_plan_candidates validates the same descriptor */
    fa_tile_config cfgs[4], sent[4];
    memset(cfgs, 0x6B, sizeof cfgs);
    memcpy(sent, cfgs, sizeof cfgs);
    int count = -7;
    st = fa_plan_candidates(0, d, cfgs, 4, &count);
    copy_last_error(msg, sizeof msg);
    snprintf(w, sizeof w, "fa_plan_candidates: %s", what);
    if (want == FA_ERR_UNSUPPORTED && st == FA_OK && count == 0) {
        g_checks++; /* "no candidate on this device" is an acceptable answer too */
    } else {
        check_result(NULL, st, msg, want, needle, value, w, line);
        if (st != FA_OK && (memcmp(cfgs, sent, sizeof cfgs) != 0 || (count != -7 && count != 0))) {
            print_error("  FAIL line %d [%s]: outputs written on failure (count=%d)\n", line, w, count);
            g_failures++;
        }
    }

    /* fa_plan_create_with_config too */
    if (g_have_cfg && use_cfg) {
        plan = sentinel;
        st = fa_plan_create_with_config(&plan, 0, d, &g_cfg);
        copy_last_error(msg, sizeof msg);
        snprintf(w, sizeof w, "fa_plan_create_with_config: %s", what);
        check_result(NULL, st, msg, want, needle, value, w, line);
        if (st == FA_OK)
            fa_plan_destroy(plan);
    }
}

#define EXPECT_DESC(d, want, needle, value, what, use_cfg) expect_desc(&(d), want, needle, value, what, use_cfg, __LINE__)

/* One test per descriptor corruption. */
#define DESC_TEST(name, kind, want, needle, value, ...)                                                 \
    static void test_desc_##name(void **state)                                                          \
    {                                                                                                   \
        (void)state;                                                                                    \
        begin();                                                                                        \
        fa_attn_desc d = make_desc(kind, FA_DTYPE_F32);                                                 \
        __VA_ARGS__;                                                                                    \
        EXPECT_DESC(d, want, needle, value, #__VA_ARGS__, kind == K_DENSE);                                              \
        d = make_desc(kind, FA_DTYPE_BF16);                                                             \
        __VA_ARGS__;                                                                                    \
        EXPECT_DESC(d, want, needle, value, "bf16: " #__VA_ARGS__, kind == K_DENSE);                                     \
        finish();                                                                                       \
    }

static void test_desc_baselines_valid(void **state)
{
    (void)state;
    begin();
    const kind_t kinds[] = {K_DENSE, K_ALIBI, K_VARLEN, K_PAGED, K_KVCACHE};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        for (int dt = 0; dt < 2; dt++) {
            fa_attn_desc d = make_desc(kinds[i], dt ? FA_DTYPE_BF16 : FA_DTYPE_F32);
            EXPECT_DESC(d, FA_OK, NULL, NULL, "baseline descriptor", kinds[i] == K_DENSE && !dt);
        }
    finish();
}

DESC_TEST(batch_zero, K_DENSE, INV, "batch", NULL, d.batch = 0)
DESC_TEST(batch_negative, K_DENSE, INV, "batch", "-2", d.batch = -2)
DESC_TEST(seqlen_q_negative, K_DENSE, INV, "seqlen_q", "-5", d.seqlen_q = -5)
DESC_TEST(seqlen_k_negative, K_DENSE, INV, "seqlen_k", "-1", d.seqlen_k = -1)
DESC_TEST(heads_q_zero, K_DENSE, INV, "heads_q", NULL, d.heads_q = 0)
DESC_TEST(heads_q_negative, K_DENSE, INV, "heads_q", NULL, d.heads_q = -4)
DESC_TEST(heads_kv_zero, K_DENSE, INV, "heads_kv", NULL, d.heads_kv = 0)
DESC_TEST(heads_kv_not_divisor, K_DENSE, INV, "heads_kv", "3", d.heads_kv = 3)
DESC_TEST(heads_kv_more_than_heads_q, K_DENSE, INV, "heads_kv", "8", d.heads_kv = 8)
DESC_TEST(heads_kv_gqa_not_divisor, K_DENSE, INV, "heads_kv", "7", d.heads_q = 32; d.heads_kv = 7)
DESC_TEST(head_dim_qk_zero, K_DENSE, INV, "head_dim_qk", NULL, d.head_dim_qk = 0)
DESC_TEST(head_dim_qk_negative, K_DENSE, INV, "head_dim_qk", NULL, d.head_dim_qk = -64)
DESC_TEST(head_dim_v_zero, K_DENSE, INV, "head_dim_v", NULL, d.head_dim_v = 0)
DESC_TEST(head_dim_v_negative, K_DENSE, INV, "head_dim_v", NULL, d.head_dim_v = -1)
DESC_TEST(overflow_batch_max, K_DENSE, INV, "batch|seqlen|heads|head_dim|overflow", NULL, d.batch = INT64_MAX)
DESC_TEST(overflow_seqlen_max, K_DENSE, INV, "seqlen|batch|overflow", NULL, d.seqlen_q = INT64_MAX;
          d.seqlen_k = INT64_MAX)
/* 2^20 * 2^22 * 2^14 * 2^7 = 2^63 elements */
DESC_TEST(overflow_elements, K_DENSE, INV, "batch|seqlen|heads|head_dim|overflow", NULL, d.batch = (int64_t)1 << 20;
          d.seqlen_q = d.seqlen_k = (int64_t)1 << 22; d.heads_q = d.heads_kv = (int64_t)1 << 14;
          d.head_dim_qk = d.head_dim_v = 128)
/* 2^31 * 2^15 * 2^9 * 2^7 = 2^62 elements: fits in int64, but not in bytes */
DESC_TEST(overflow_bytes, K_DENSE, INV, "batch|seqlen|heads|head_dim|overflow", NULL, d.batch = (int64_t)1 << 31;
          d.seqlen_q = d.seqlen_k = (int64_t)1 << 15; d.heads_q = d.heads_kv = (int64_t)1 << 9;
          d.head_dim_qk = d.head_dim_v = 128)
DESC_TEST(overflow_heads, K_DENSE, INV, "heads|overflow", NULL, d.heads_q = INT64_MAX; d.heads_kv = 1)
DESC_TEST(overflow_head_dim, K_DENSE, INV, "head_dim|overflow", NULL, d.head_dim_qk = INT64_MAX / 2)
DESC_TEST(dtype_count, K_DENSE, INV, "dtype", NULL, d.dtype = FA_DTYPE_COUNT)
DESC_TEST(dtype_99, K_DENSE, INV, "dtype", "99", d.dtype = (fa_dtype)99)
DESC_TEST(dtype_negative, K_DENSE, INV, "dtype", NULL, d.dtype = (fa_dtype)-1)
DESC_TEST(dtype_fp8_e4m3_cpu, K_DENSE, FA_ERR_UNSUPPORTED, "dtype|f8|fp8|e4m3", NULL, d.dtype = FA_DTYPE_F8_E4M3)
DESC_TEST(dtype_fp8_e5m2_cpu, K_DENSE, FA_ERR_UNSUPPORTED, "dtype|f8|fp8|e5m2", NULL, d.dtype = FA_DTYPE_F8_E5M2)
DESC_TEST(softmax_scale_nan, K_DENSE, INV, "softmax_scale", NULL, d.softmax_scale = NAN)
DESC_TEST(softmax_scale_inf, K_DENSE, INV, "softmax_scale", NULL, d.softmax_scale = INFINITY)
DESC_TEST(softmax_scale_neg_inf, K_DENSE, INV, "softmax_scale", NULL, d.softmax_scale = -INFINITY)
DESC_TEST(softmax_scale_negative, K_DENSE, INV, "softmax_scale", NULL, d.softmax_scale = -0.125f)
DESC_TEST(softcap_nan, K_DENSE, INV, "softcap", NULL, d.softcap = NAN)
DESC_TEST(softcap_negative, K_DENSE, INV, "softcap", NULL, d.softcap = -30.0f)
DESC_TEST(window_left_below_minus_one, K_DENSE, INV, "window_left", "-7", d.window_left = -7)
DESC_TEST(window_left_int64_min, K_DENSE, INV, "window_left", NULL, d.window_left = INT64_MIN)
DESC_TEST(window_right_below_minus_one, K_DENSE, INV, "window_right", "-2", d.window_right = -2)
DESC_TEST(dropout_p_one, K_DENSE, INV, "dropout_p", NULL, d.dropout_p = 1.0f)
DESC_TEST(dropout_p_above_one, K_DENSE, INV, "dropout_p", NULL, d.dropout_p = 1.5f)
DESC_TEST(dropout_p_negative, K_DENSE, INV, "dropout_p", NULL, d.dropout_p = -0.1f)
DESC_TEST(dropout_p_nan, K_DENSE, INV, "dropout_p", NULL, d.dropout_p = NAN)
DESC_TEST(dropout_p_inf, K_DENSE, INV, "dropout_p", NULL, d.dropout_p = INFINITY)
DESC_TEST(alibi_mode_out_of_range, K_DENSE, INV, "alibi", NULL, d.alibi = (fa_alibi_mode)7)
DESC_TEST(num_splits_negative, K_DENSE, INV, "num_splits", NULL, d.num_splits = -1)
DESC_TEST(paged_page_size_zero, K_PAGED, INV, "page_size", NULL, d.page_size = 0)
DESC_TEST(paged_page_size_negative, K_PAGED, INV, "page_size", NULL, d.page_size = -16)
DESC_TEST(paged_num_pages_zero, K_PAGED, INV, "num_pages", NULL, d.num_pages = 0)
DESC_TEST(paged_max_pages_zero, K_PAGED, INV, "max_pages_per_seq", NULL, d.max_pages_per_seq = 0)
DESC_TEST(paged_capacity_below_seqlen_k, K_PAGED, INV, "max_pages_per_seq|page_size|seqlen_k", NULL,
          d.max_pages_per_seq = 3 /* 48 < 53 */)
DESC_TEST(paged_capacity_overflow, K_PAGED, INV, "max_pages_per_seq|page_size|num_pages|overflow", NULL,
          d.page_size = INT64_MAX / 2; d.max_pages_per_seq = 4)
DESC_TEST(varlen_total_q_zero, K_VARLEN, INV, "total_q", NULL, d.total_q = 0)
DESC_TEST(varlen_total_q_negative, K_VARLEN, INV, "total_q", NULL, d.total_q = -69)
DESC_TEST(varlen_total_k_zero, K_VARLEN, INV, "total_k", NULL, d.total_k = 0)
DESC_TEST(varlen_total_q_overflow, K_VARLEN, INV, "total_q|overflow", NULL, d.total_q = INT64_MAX)

static void test_null_pointers_plan_api(void **state)
{
    (void)state;
    begin();
    fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
    fa_plan *plan = NULL;
    fa_tile_config cfgs[4];
    int count = -7;
    EXPECT(NULL, fa_plan_create(NULL, 0, &d), INV, "plan", NULL, "fa_plan_create(plan=NULL)");
    EXPECT(NULL, fa_plan_create(&plan, 0, NULL), INV, "desc", NULL, "fa_plan_create(desc=NULL)");
    EXPECT(NULL, fa_plan_create_with_config(NULL, 0, &d, &g_cfg), INV, "plan", NULL,
           "fa_plan_create_with_config(plan=NULL)");
    EXPECT(NULL, fa_plan_create_with_config(&plan, 0, NULL, &g_cfg), INV, "desc", NULL,
           "fa_plan_create_with_config(desc=NULL)");
    EXPECT(NULL, fa_plan_create_with_config(&plan, 0, &d, NULL), INV, "config", NULL,
           "fa_plan_create_with_config(config=NULL)");
    EXPECT(NULL, fa_plan_candidates(0, NULL, cfgs, 4, &count), INV, "desc", NULL, "fa_plan_candidates(desc=NULL)");
    EXPECT(NULL, fa_plan_candidates(0, &d, cfgs, 4, NULL), INV, "count", NULL, "fa_plan_candidates(count=NULL)");
    EXPECT(NULL, fa_plan_candidates(0, &d, NULL, 4, &count), INV, "configs", NULL,
           "fa_plan_candidates(configs=NULL, max=4)");
    EXPECT(NULL, fa_plan_candidates(0, &d, cfgs, -1, &count), INV, "max", NULL, "fa_plan_candidates(max=-1)");
    fa_device_props props;
    EXPECT(NULL, fa_device_get(0, NULL), INV, "props", NULL, "fa_device_get(props=NULL)");
    fa_tile_config c;
    EXPECT(NULL, fa_plan_config(NULL, &c), INV, "plan", NULL, "fa_plan_config(plan=NULL)");
    EXPECT(NULL, fa_fwd(NULL, NULL, NULL), INV, "plan|args", NULL, "fa_fwd(NULL, NULL)");
    EXPECT(NULL, fa_bwd(NULL, NULL, NULL), INV, "plan|args", NULL, "fa_bwd(NULL, NULL)");
    EXPECT(NULL, fa_combine(0, NULL, NULL), INV, "args", NULL, "fa_combine(args=NULL)");
    (void)props;

    /* query functions on NULL must not crash */
    fa_plan_destroy(NULL);
    (void)fa_plan_workspace_size(NULL);
    char buf[32];
    memset(buf, '#', sizeof buf);
    (void)fa_plan_describe(NULL, buf, sizeof buf);
    (void)fa_plan_describe(NULL, NULL, 0);

    /* a real plan with NULL outputs */
    assert_int_equal(fa_plan_create(&plan, 0, &d), FA_OK);
    EXPECT(NULL, fa_plan_config(plan, NULL), INV, "config", NULL, "fa_plan_config(config=NULL)");
    (void)fa_plan_describe(plan, NULL, 64); /* NULL buffer with a size: must not crash */
    fa_plan_destroy(plan);
    finish();
}

static void test_plan_untouched_on_error(void **state)
{
    (void)state;
    begin();
    fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
    d.heads_kv = 3;
    fa_plan *const sentinel = (fa_plan *)(void *)&g_cfg;
    fa_plan *plan = sentinel;
    fa_status st = fa_plan_create(&plan, 0, &d);
    if (st == FA_OK)
        fa_plan_destroy(plan);
    if (st != INV)
        SOFT_FAIL("fa_plan_create(heads_kv=3): %s", sname(st));
    if (plan != sentinel)
        SOFT_FAIL("fa_plan_create wrote *plan (%p) on failure; the header promises no output byte is written",
                  (void *)plan);
    d.heads_kv = HK;
    plan = sentinel;
    st = fa_plan_create(&plan, -1, &d);
    if (plan != sentinel)
        SOFT_FAIL("fa_plan_create(device=-1) wrote *plan (%p) on failure", (void *)plan);
    if (st == FA_OK)
        fa_plan_destroy(plan);
    fa_device_props props, before;
    memset(&props, 0x3C, sizeof props);
    memcpy(&before, &props, sizeof props);
    (void)fa_device_get(-1, &props);
    if (memcmp(&props, &before, sizeof props) != 0)
        SOFT_FAIL("fa_device_get(-1) wrote props on failure");
    finish();
}

static void test_bad_device(void **state)
{
    (void)state;
    begin();
    const int n = fa_device_count();
    const int devs[] = {-1, n, n + 1, INT_MAX, INT_MIN};
    fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        const int dev = devs[i];
        char val[32];
        snprintf(val, sizeof val, "%d", dev);
        fa_plan *plan = NULL;
        EXPECT(NULL, fa_plan_create(&plan, dev, &d), FA_ERR_NO_DEVICE, "device", val, "fa_plan_create(device=%d)",
               dev);
        if (plan) {
            fa_plan_destroy(plan);
            plan = NULL;
        }
        EXPECT(NULL, fa_plan_create_with_config(&plan, dev, &d, &g_cfg), FA_ERR_NO_DEVICE, "device", NULL,
               "fa_plan_create_with_config(device=%d)", dev);
        if (plan) {
            fa_plan_destroy(plan);
            plan = NULL;
        }
        fa_tile_config cfgs[4];
        int count = -7;
        EXPECT(NULL, fa_plan_candidates(dev, &d, cfgs, 4, &count), FA_ERR_NO_DEVICE, "device", NULL,
               "fa_plan_candidates(device=%d)", dev);
        fa_device_props props;
        EXPECT(NULL, fa_device_get(dev, &props), FA_ERR_NO_DEVICE, "device", NULL, "fa_device_get(device=%d)", dev);
    }
    finish();
}

static void test_config_invalid(void **state)
{
    (void)state;
    begin();
    assert_true(g_have_cfg);
    fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
    fa_plan *plan = NULL;
    EXPECT(NULL, fa_plan_create_with_config(&plan, 0, &d, &g_cfg), FA_OK, NULL, NULL, "first candidate");
    fa_plan_destroy(plan);
    struct {
        const char *what, *needle, *value;
        fa_tile_config c;
    } cases[16];
    int n = 0;
#define CFG_CASE(field, val, needle_, value_)                                                           \
    do {                                                                                                \
        cases[n].c = g_cfg;                                                                             \
        cases[n].c.field = (val);                                                                       \
        cases[n].what = #field "=" #val;                                                                \
        cases[n].needle = needle_;                                                                      \
        cases[n].value = value_;                                                                        \
        n++;                                                                                            \
    } while (0)
    CFG_CASE(block_q, 0, "block_q", NULL);
    CFG_CASE(block_q, -16, "block_q", "-16");
    CFG_CASE(block_q, 7777, "block_q", "7777");
    CFG_CASE(block_q, INT_MAX, "block_q", NULL);
    CFG_CASE(block_kv, 0, "block_kv", NULL);
    CFG_CASE(block_kv, -64, "block_kv", NULL);
    CFG_CASE(warps, 0, "warps", NULL);
    CFG_CASE(warps, -1, "warps", NULL);
    CFG_CASE(stages, 0, "stages", NULL);
    CFG_CASE(stages, -2, "stages", NULL);
    CFG_CASE(num_splits, 0, "num_splits", NULL);
    CFG_CASE(num_splits, -1, "num_splits", NULL);
#undef CFG_CASE
    for (int i = 0; i < n; i++) {
        fa_plan *const sentinel = (fa_plan *)(void *)&g_cfg;
        plan = sentinel;
        EXPECT(NULL, fa_plan_create_with_config(&plan, 0, &d, &cases[i].c), INV, cases[i].needle, cases[i].value,
               "config %s", cases[i].what);
        if (plan != sentinel && plan != NULL) {
            fa_plan_destroy(plan);
            SOFT_FAIL("[config %s] *plan set to a plan on failure", cases[i].what);
        }
    }
    finish();
}

/* ================================================================ fa_fwd tests (dense fixture) */

static void test_fwd_baseline_repeatable(void **state)
{
    problem *p = *state;
    begin();
    EXPECT(NULL, fwd(p, &p->args), FA_OK, NULL, NULL, "baseline fa_fwd again");
    const int skip[] = {R_OUT, R_LSE};
    unchanged_all(p, "baseline: only out and lse written", skip, 2);
    int changed = 0;
    for (size_t i = 0; i < p->r[R_OUT].bytes; i++)
        changed |= ((unsigned char *)rdata(&p->r[R_OUT]))[i] != FILL;
    if (!changed)
        SOFT_FAIL("baseline fa_fwd did not write out");
    finish();
}

static void test_fwd_null_plan_args_stream(void **state)
{
    problem *p = *state;
    begin();
    EXPECT(p, fa_fwd(NULL, &p->args, NULL), INV, "plan", NULL, "fa_fwd(plan=NULL)");
    EXPECT(p, fa_fwd(p->plan, NULL, NULL), INV, "args", NULL, "fa_fwd(args=NULL)");
    int dummy_queue = 0;
    EXPECT(p, fa_fwd(p->plan, &p->args, &dummy_queue), INV, "stream", NULL, "fa_fwd(stream!=NULL on the CPU)");
    finish();
}

static void test_fwd_null_data(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    for (int t = T_Q; t <= T_LSE; t++) {
        fa_fwd_args a = p->args;
        targ(&a, t)->data = NULL;
        EXPECT(p, fwd(p, &a), INV, t == T_LSE ? "lse" : fmt(nd, sizeof nd, "%s.data", k_tname[t]), NULL,
               "%s.data=NULL", k_tname[t]);
    }
    /* an all-zero tensor (as if the caller forgot to fill it) */
    for (int t = T_Q; t <= T_LSE; t++) {
        fa_fwd_args a = p->args;
        memset(targ(&a, t), 0, sizeof(fa_tensor));
        EXPECT(p, fwd(p, &a), INV, k_tname[t], NULL, "%s = {0}", k_tname[t]);
    }
    finish();
}

static void test_fwd_wrong_dtype(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    const fa_dtype other = p->dtype == FA_DTYPE_F32 ? FA_DTYPE_BF16 : FA_DTYPE_F32;
    const int bad[] = {(int)other, FA_DTYPE_F16, FA_DTYPE_F8_E4M3, FA_DTYPE_COUNT, 99, -1};
    for (int t = T_Q; t <= T_OUT; t++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            fa_fwd_args a = p->args;
            targ(&a, t)->dtype = (fa_dtype)bad[i];
            EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.dtype", k_tname[t]), NULL, "%s.dtype=%d",
                   k_tname[t], bad[i]);
        }
    const int bad_lse[] = {FA_DTYPE_BF16, FA_DTYPE_F16, FA_DTYPE_COUNT, -1};
    for (size_t i = 0; i < sizeof bad_lse / sizeof bad_lse[0]; i++) {
        fa_fwd_args a = p->args;
        a.lse.dtype = (fa_dtype)bad_lse[i];
        EXPECT(p, fwd(p, &a), INV, "lse.dtype", NULL, "lse.dtype=%d", bad_lse[i]);
    }
    finish();
}

static void test_fwd_wrong_rank(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    for (int t = T_Q; t <= T_LSE; t++) {
        const int r0 = targ(&p->args, t)->rank;
        const int ranks[] = {r0 - 1, r0 + 1, 0, -1, FA_MAX_RANK + 1, 1000, INT_MIN};
        for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
            if (ranks[i] == r0)
                continue;
            fa_fwd_args a = p->args;
            targ(&a, t)->rank = ranks[i];
            EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.rank", k_tname[t]), NULL, "%s.rank=%d", k_tname[t],
                   ranks[i]);
        }
    }
    finish();
}

static void shape_cases(problem *p, int t_first, int t_last)
{
    char nd[64];
    for (int t = t_first; t <= t_last; t++) {
        const fa_tensor *base = targ(&p->args, t);
        for (int dim = 0; dim < base->rank; dim++) {
            const int64_t s0 = base->shape[dim];
            const int64_t vals[] = {s0 - 1, s0 + 1, 0, -1, INT64_MAX, INT64_MIN};
            for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                fa_fwd_args a = p->args;
                targ(&a, t)->shape[dim] = vals[i];
                EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.shape", k_tname[t]), NULL, "%s.shape[%d]=%lld",
                       k_tname[t], dim, (long long)vals[i]);
            }
        }
    }
}

static void test_fwd_shape_mismatch(void **state)
{
    problem *p = *state;
    begin();
    shape_cases(p, T_Q, T_LSE);
    finish();
}

static void stride_cases(problem *p, int t_first, int t_last)
{
    char nd[64];
    for (int t = t_first; t <= t_last; t++) {
        const fa_tensor *base = targ(&p->args, t);
        const int last = base->rank - 1;
        /* the last dimension must be contiguous */
        const int64_t last_vals[] = {0, 2, -1, INT64_MAX};
        for (size_t i = 0; i < sizeof last_vals / sizeof last_vals[0]; i++) {
            fa_fwd_args a = p->args;
            targ(&a, t)->stride[last] = last_vals[i];
            EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.stride", k_tname[t]), NULL, "%s.stride[%d]=%lld",
                   k_tname[t], last, (long long)last_vals[i]);
        }
        /* other strides: non-negative, and no overflow when addressing */
        for (int dim = 0; dim < last; dim++) {
            const int64_t s0 = base->stride[dim];
            const int64_t vals[] = {-s0, -1, INT64_MIN, INT64_MAX, (int64_t)1 << 62};
            for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                fa_fwd_args a = p->args;
                targ(&a, t)->stride[dim] = vals[i];
                EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.stride", k_tname[t]), NULL,
                       "%s.stride[%d]=%lld", k_tname[t], dim, (long long)vals[i]);
            }
        }
    }
}

static void test_fwd_bad_strides(void **state)
{
    problem *p = *state;
    begin();
    stride_cases(p, T_Q, T_LSE);
    finish();
}

static void test_fwd_misaligned(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    for (int t = T_Q; t <= T_LSE; t++) {
        fa_tensor *base = targ(&p->args, t);
        const int es = (int)dsize(base->dtype);
        for (int off = 1; off < es; off++) {
            fa_fwd_args a = p->args;
            targ(&a, t)->data = (unsigned char *)base->data + off;
            EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.data", k_tname[t]), NULL, "%s.data misaligned by %d",
                   k_tname[t], off);
        }
    }
    finish();
}

static void test_fwd_out_overlaps_input(void **state)
{
    problem *p = *state;
    begin();
    const size_t es = dsize(p->dtype);
    const size_t out_bytes = (size_t)tnumel(&p->args.out) * es, lse_bytes = (size_t)tnumel(&p->args.lse) * 4;
    struct {
        const char *what, *needle;
        int t, r;
        size_t off;
    } cases[] = {
        {"out == q", "out", T_OUT, R_Q, 0},
        {"out at the end of q", "out", T_OUT, R_Q, p->r[R_Q].bytes - out_bytes},
        {"out one row into q", "out", T_OUT, R_Q, HD * es},
        {"out inside k", "out", T_OUT, R_K, 0},
        {"lse inside out", "lse|out", T_LSE, R_OUT, 0},
        {"lse at the end of out", "lse|out", T_LSE, R_OUT, (out_bytes - lse_bytes) & ~(size_t)3},
        {"lse inside q", "lse", T_LSE, R_Q, 4 * es},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(cases[i].off + (cases[i].t == T_OUT ? out_bytes : lse_bytes) <= p->r[cases[i].r].bytes);
        fa_fwd_args a = p->args;
        targ(&a, cases[i].t)->data = (unsigned char *)rdata(&p->r[cases[i].r]) + cases[i].off;
        EXPECT(p, fwd(p, &a), INV, cases[i].needle, NULL, "%s", cases[i].what);
    }
    finish();
}

static void test_fwd_out_self_overlap(void **state)
{
    problem *p = *state;
    begin();
    struct {
        int t, dim;
        int64_t stride;
    } cases[] = {
        {T_OUT, 2, 1}, {T_OUT, 2, DV - 1}, {T_OUT, 1, 0}, {T_OUT, 0, 0}, {T_OUT, 1, DV}, /* rows alias heads */
        {T_LSE, 1, 0}, {T_LSE, 0, SQ}, {T_LSE, 1, SQ - 1},
    };
    char nd[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fa_fwd_args a = p->args;
        targ(&a, cases[i].t)->stride[cases[i].dim] = cases[i].stride;
        EXPECT(p, fwd(p, &a), INV, fmt(nd, sizeof nd, "%s.stride", k_tname[cases[i].t]), NULL,
               "%s.stride[%d]=%lld (self-overlapping output)", k_tname[cases[i].t], cases[i].dim,
               (long long)cases[i].stride);
    }
    finish();
}

static void test_fwd_workspace(void **state)
{
    problem *p = *state;
    begin();
    const int64_t ws = fa_plan_workspace_size(p->plan);
    if (ws < 0) {
        SOFT_FAIL("fa_plan_workspace_size(valid plan) = %lld", (long long)ws);
        finish();
        return;
    }
    region_new(&p->r[R_X1], "workspace", (size_t)ws + 1);
    snap_all(p);
    fa_fwd_args a = p->args;
    a.workspace = rdata(&p->r[R_X1]);
    if (ws > 0) {
        a.workspace_size = ws - 1;
        EXPECT(p, fwd(p, &a), INV, "workspace", NULL, "workspace_size=%lld < %lld", (long long)(ws - 1),
               (long long)ws);
        a.workspace_size = 1;
        EXPECT(p, fwd(p, &a), INV, "workspace", NULL, "workspace_size=1 < %lld", (long long)ws);
        a.workspace_size = 0;
        EXPECT(p, fwd(p, &a), INV, "workspace", NULL, "workspace given with workspace_size=0 < %lld", (long long)ws);
    }
    a.workspace_size = -1;
    EXPECT(p, fwd(p, &a), INV, "workspace", NULL, "workspace_size=-1");
    a.workspace_size = INT64_MIN;
    EXPECT(p, fwd(p, &a), INV, "workspace", NULL, "workspace_size=INT64_MIN");
    if (ws > 1) {
        a.workspace = (unsigned char *)rdata(&p->r[R_X1]) + 1;
        a.workspace_size = ws;
        EXPECT(p, fwd(p, &a), INV, "workspace", NULL, "workspace misaligned by 1 byte");
    }
    /* exactly the size asked for works, and only out/lse (and the workspace) are written */
    a.workspace = rdata(&p->r[R_X1]);
    a.workspace_size = ws;
    fa_status st = fwd(p, &a);
    if (st != FA_OK)
        SOFT_FAIL("fa_fwd with workspace_size=%lld (exact) = %s, \"%s\"", (long long)ws, sname(st), fa_last_error());
    const int skip[] = {R_OUT, R_LSE, R_X1};
    unchanged_all(p, "fa_fwd with exact workspace", skip, 3);
    finish();
}

/* padded / permuted strides are valid; the result matches the contiguous run and padding is untouched */
static void test_fwd_valid_layouts_accepted(void **state)
{
    problem *p = *state;
    begin();
    const fa_dtype dt = p->dtype;
    const size_t es = dsize(dt);
    /* reference run */
    fa_status st = fwd(p, &p->args);
    assert_int_equal(st, FA_OK);
    const size_t n_out = (size_t)tnumel(&p->args.out), n_lse = (size_t)tnumel(&p->args.lse);
    float *ref_out = malloc(n_out * sizeof(float)), *ref_lse = malloc(n_lse * sizeof(float));
    assert_true(ref_out && ref_lse);
    for (size_t i = 0; i < n_out; i++)
        ref_out[i] = load(rdata(&p->r[R_OUT]), dt, i);
    memcpy(ref_lse, rdata(&p->r[R_LSE]), n_lse * 4);

    /* q in (B, HQ, SQ, HD) memory order */
    region_new(&p->r[R_X1], "q (BHSD copy)", p->r[R_Q].bytes);
    const unsigned char *q = rdata(&p->r[R_Q]);
    unsigned char *qt = rdata(&p->r[R_X1]);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < SQ; s++)
            for (int h = 0; h < HQ; h++)
                memcpy(qt + (((size_t)(b * HQ + h) * SQ + s) * HD) * es, q + (((size_t)(b * SQ + s) * HQ + h) * HD) * es,
                       HD * es);
    /* padded out and lse */
    const int64_t DVP = DV + 8, SQP = SQ + 3;
    region_new(&p->r[R_X2], "out (padded)", (size_t)B * SQ * HQ * DVP * es);
    region_new(&p->r[R_X3], "lse (padded)", (size_t)B * HQ * SQP * 4);
    snap_all(p);

    fa_fwd_args a = p->args;
    a.q.data = qt;
    a.q.stride[0] = HQ * SQ * HD;
    a.q.stride[1] = HD;
    a.q.stride[2] = SQ * HD;
    a.out.data = rdata(&p->r[R_X2]);
    a.out.stride[2] = DVP;
    a.out.stride[1] = HQ * DVP;
    a.out.stride[0] = SQ * HQ * DVP;
    a.lse.data = rdata(&p->r[R_X3]);
    a.lse.stride[1] = SQP;
    a.lse.stride[0] = HQ * SQP;
    st = fwd(p, &a);
    if (st != FA_OK) {
        SOFT_FAIL("fa_fwd with BHSD q and padded out/lse = %s, \"%s\"", sname(st), fa_last_error());
    } else {
        const int skip[] = {R_X2, R_X3};
        unchanged_all(p, "strided fa_fwd", skip, 2);
        const unsigned char *o = rdata(&p->r[R_X2]);
        const float *l = rdata(&p->r[R_X3]);
        int bad = 0;
        for (int b = 0; b < B && !bad; b++)
            for (int s = 0; s < SQ && !bad; s++)
                for (int h = 0; h < HQ && !bad; h++)
                    for (int d = 0; d < DVP && !bad; d++) {
                        const size_t i = (((size_t)(b * SQ + s) * HQ + h) * DVP + d);
                        if (d >= DV) {
                            for (size_t k = 0; k < es; k++)
                                if (o[i * es + k] != FILL) {
                                    SOFT_FAIL("out padding written at b=%d s=%d h=%d d=%d", b, s, h, d);
                                    bad = 1;
                                }
                            continue;
                        }
                        const float g = load(o, dt, i), r = ref_out[((size_t)(b * SQ + s) * HQ + h) * DV + d];
                        const float tol = dt == FA_DTYPE_F32 ? 1e-5f * (1 + fabsf(r)) : 1e-2f * (1 + fabsf(r));
                        if (!(fabsf(g - r) <= tol)) {
                            SOFT_FAIL("strided out differs at b=%d s=%d h=%d d=%d: %g vs %g", b, s, h, d, (double)g,
                                      (double)r);
                            bad = 1;
                        }
                    }
        for (int b = 0; b < B && !bad; b++)
            for (int h = 0; h < HQ && !bad; h++)
                for (int s = 0; s < SQP && !bad; s++) {
                    const size_t i = (size_t)(b * HQ + h) * SQP + s;
                    if (s >= SQ) {
                        unsigned char pat[4];
                        memcpy(pat, &l[i], 4);
                        if (pat[0] != FILL || pat[1] != FILL || pat[2] != FILL || pat[3] != FILL) {
                            SOFT_FAIL("lse padding written at b=%d h=%d s=%d", b, h, s);
                            bad = 1;
                        }
                        continue;
                    }
                    const float r = ref_lse[(size_t)(b * HQ + h) * SQ + s];
                    if (!(fabsf(l[i] - r) <= 1e-4f * (1 + fabsf(r)))) {
                        SOFT_FAIL("strided lse differs at b=%d h=%d s=%d: %g vs %g", b, h, s, (double)l[i], (double)r);
                        bad = 1;
                    }
                }
    }

    /* k and v broadcast over the batch (stride 0 on an input is allowed) */
    a = p->args;
    a.k.stride[0] = 0;
    a.v.stride[0] = 0;
    st = fwd(p, &a);
    if (st != FA_OK)
        SOFT_FAIL("fa_fwd with k/v batch stride 0 (broadcast input) = %s, \"%s\"", sname(st), fa_last_error());
    free(ref_out);
    free(ref_lse);
    finish();
}

/* ================================================================ alibi fixture */

static void test_alibi_bad_slopes(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a;
    a = p->args;
    a.alibi_slopes.data = NULL;
    EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes.data=NULL with desc.alibi set");
    a = p->args;
    memset(&a.alibi_slopes, 0, sizeof a.alibi_slopes);
    EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes missing with desc.alibi set");
    const int64_t shapes[] = {HQ + 1, HQ - 1, 0, -1};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        a = p->args;
        a.alibi_slopes.shape[0] = shapes[i];
        EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes.shape[0]=%lld", (long long)shapes[i]);
    }
    a = p->args;
    a.alibi_slopes.dtype = FA_DTYPE_BF16;
    EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes.dtype=bf16");
    a = p->args;
    a.alibi_slopes.rank = 3;
    EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes.rank=3");
    a = p->args;
    a.alibi_slopes.stride[0] = 2;
    EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes.stride[0]=2");
    a = p->args;
    a.alibi_slopes.data = (unsigned char *)a.alibi_slopes.data + 1;
    EXPECT(p, fwd(p, &a), INV, "alibi_slopes", NULL, "alibi_slopes misaligned");

    /* per-(batch, head) mode needs (batch, heads_q) slopes */
    fa_attn_desc d = p->desc;
    d.alibi = FA_ALIBI_PER_BATCH_HEAD;
    fa_plan *plan2 = NULL;
    fa_status st = fa_plan_create(&plan2, 0, &d);
    if (st != FA_OK) {
        SOFT_FAIL("fa_plan_create(alibi=PER_BATCH_HEAD) = %s, \"%s\"", sname(st), fa_last_error());
    } else {
        a = p->args;
        EXPECT(p, fa_fwd(plan2, &a, NULL), INV, "alibi_slopes", NULL, "PER_BATCH_HEAD with (heads_q) slopes");
        fa_plan_destroy(plan2);
    }
    finish();
}

/* Input arrays placed inside an output buffer (holding valid contents, so only an aliasing check rejects
 * them): the kernel would overwrite what it is still reading. */
enum { A_ALIBI, A_CUQ, A_CUK, A_USED, A_BT };

static void alias_case(problem *p, int which, int out_region, size_t off, const void *content, size_t n,
                       const char *needle, const char *what)
{
    assert_true(off + n <= p->r[out_region].bytes);
    unsigned char *dst = (unsigned char *)rdata(&p->r[out_region]) + off;
    memcpy(dst, content, n);
    snap_all(p);
    fa_fwd_args a = p->args;
    switch (which) {
    case A_ALIBI: a.alibi_slopes.data = dst; break;
    case A_CUQ: a.cu_seqlens_q = (const int32_t *)(const void *)dst; break;
    case A_CUK: a.cu_seqlens_k = (const int32_t *)(const void *)dst; break;
    case A_USED: a.seqused_k = (const int32_t *)(const void *)dst; break;
    default: a.block_table = (const int32_t *)(const void *)dst; break;
    }
    EXPECT(p, fwd(p, &a), INV, needle, NULL, "%s", what);
    reset_outputs(p);
    snap_all(p);
}

static void test_alibi_slopes_alias_output(void **state)
{
    problem *p = *state;
    begin();
    const region *s = &p->r[R_ALIBI];
    alias_case(p, A_ALIBI, R_OUT, 0, rdata((region *)s), s->bytes, "alibi_slopes", "alibi_slopes inside out");
    alias_case(p, A_ALIBI, R_LSE, 64, rdata((region *)s), s->bytes, "alibi_slopes", "alibi_slopes inside lse");
    finish();
}

/* ================================================================ varlen fixture */

static void cu_case(problem *p, int which, const int32_t *vals, const char *needle, const char *what)
{
    int32_t *copy = malloc(sizeof(int32_t) * (VB + 1)); /* heap: ASan sees reads past batch + 1 */
    assert_non_null(copy);
    memcpy(copy, vals, sizeof(int32_t) * (VB + 1));
    fa_fwd_args a = p->args;
    if (which == 0)
        a.cu_seqlens_q = copy;
    else
        a.cu_seqlens_k = copy;
    EXPECT(p, fwd(p, &a), INV, needle, NULL, "%s", what);
    free(copy);
}

static void test_varlen_bad_cu_seqlens(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a = p->args;
    a.cu_seqlens_q = NULL;
    EXPECT(p, fwd(p, &a), INV, "cu_seqlens_q", NULL, "cu_seqlens_q=NULL");
    a = p->args;
    a.cu_seqlens_k = NULL;
    EXPECT(p, fwd(p, &a), INV, "cu_seqlens_k", NULL, "cu_seqlens_k=NULL");

    {
        const int32_t v[] = {0, 36, 33, 69};
        cu_case(p, 0, v, "cu_seqlens_q", "cu_seqlens_q non-monotonic {0,36,33,69}");
    }
    {
        const int32_t v[] = {0, -1, 32, 69};
        cu_case(p, 0, v, "cu_seqlens_q", "cu_seqlens_q negative entry {0,-1,32,69}");
    }
    {
        const int32_t v[] = {0, 50, 45, 92};
        cu_case(p, 1, v, "cu_seqlens_k", "cu_seqlens_k non-monotonic {0,50,45,92}");
    }
    {
        const int32_t v[] = {1, 21, 58, 69};
        cu_case(p, 0, v, "cu_seqlens_q", "cu_seqlens_q[0]=1");
    }
    {
        const int32_t v[] = {0, 20, 57, 68};
        cu_case(p, 0, v, "cu_seqlens_q", "cu_seqlens_q[batch]=68 != total_q=69");
    }
    {
        const int32_t v[] = {0, 20, 57, 70};
        cu_case(p, 0, v, "cu_seqlens_q", "cu_seqlens_q[batch]=70 != total_q=69");
    }
    {
        const int32_t v[] = {0, 53, 61, 91};
        cu_case(p, 1, v, "cu_seqlens_k", "cu_seqlens_k[batch]=91 != total_k=92");
    }
    {
        const int32_t v[] = {0, 53, 61, INT32_MAX};
        cu_case(p, 1, v, "cu_seqlens_k", "cu_seqlens_k[batch]=INT32_MAX");
    }
    {
        const int32_t v[] = {0, 38, 57, 69};
        cu_case(p, 0, v, "cu_seqlens_q", "sequence 0 has 38 > seqlen_q=37 queries");
    }
    {
        const int32_t v[] = {0, 54, 62, 92};
        cu_case(p, 1, v, "cu_seqlens_k", "sequence 0 has 54 > seqlen_k=53 keys");
    }
    {
        const int32_t v[] = {0, 20, 20, 69};
        cu_case(p, 0, v, "cu_seqlens_q", "sequence 2 has 49 > seqlen_q=37 queries");
    }
    finish();
}

/* misaligned int32 pointers (reading them is undefined behaviour: UBSan aborts) */
static void test_varlen_cu_misaligned(void **state)
{
    problem *p = *state;
    begin();
    unsigned char *raw = malloc(sizeof(int32_t) * (VB + 1) * 2 + 8);
    assert_non_null(raw);
    memcpy(raw + 1, k_cu_q, sizeof k_cu_q);
    memcpy(raw + 2 + sizeof k_cu_q, k_cu_k, sizeof k_cu_k);
    fa_fwd_args a = p->args;
    a.cu_seqlens_q = (const int32_t *)(const void *)(raw + 1);
    EXPECT(p, fwd(p, &a), INV, "cu_seqlens_q", NULL, "cu_seqlens_q misaligned");
    a = p->args;
    a.cu_seqlens_k = (const int32_t *)(const void *)(raw + 2 + sizeof k_cu_q);
    EXPECT(p, fwd(p, &a), INV, "cu_seqlens_k", NULL, "cu_seqlens_k misaligned");
    free(raw);
    finish();
}

static void test_varlen_bad_tensors(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a;
    /* (batch, seqlen, heads, dim) tensors where (total, heads, dim) are expected */
    a = p->args;
    a.q = mk(a.q.data, p->dtype, 4, 1, TQ, HQ, HD, 0);
    EXPECT(p, fwd(p, &a), INV, "q.rank|q.shape", NULL, "varlen q given with rank 4");
    a = p->args;
    a.lse = mk(a.lse.data, FA_DTYPE_F32, 3, 1, HQ, TQ, 0, 0);
    EXPECT(p, fwd(p, &a), INV, "lse.rank|lse.shape", NULL, "varlen lse given with rank 3");
    shape_cases(p, T_Q, T_LSE);
    finish();
}

static void test_varlen_metadata_alias_output(void **state)
{
    problem *p = *state;
    begin();
    alias_case(p, A_CUQ, R_OUT, 0, k_cu_q, sizeof k_cu_q, "cu_seqlens_q", "cu_seqlens_q inside out");
    alias_case(p, A_CUK, R_LSE, 16, k_cu_k, sizeof k_cu_k, "cu_seqlens_k", "cu_seqlens_k inside lse");
    finish();
}

/* ================================================================ paged fixture */

static void bt_case(problem *p, int idx, int32_t val, const char *what)
{
    int32_t *copy = malloc(sizeof(int32_t) * B * MAXP);
    assert_non_null(copy);
    memcpy(copy, rdata(&p->r[R_BT]), sizeof(int32_t) * B * MAXP);
    copy[idx] = val;
    fa_fwd_args a = p->args;
    a.block_table = copy;
    EXPECT(p, fwd(p, &a), INV, "block_table", NULL, "%s", what);
    free(copy);
}

static void test_paged_bad_block_table(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a = p->args;
    a.block_table = NULL;
    EXPECT(p, fwd(p, &a), INV, "block_table", NULL, "block_table=NULL");
    bt_case(p, 0, NP, "block_table[0][0]=num_pages");
    bt_case(p, 0, -1, "block_table[0][0]=-1");
    bt_case(p, 0, INT32_MAX, "block_table[0][0]=INT32_MAX");
    bt_case(p, 0, INT32_MIN, "block_table[0][0]=INT32_MIN");
    bt_case(p, 3, NP + 5, "block_table[0][3]=num_pages+5 (last page of sequence 0)");
    bt_case(p, MAXP + 1, -3, "block_table[1][1]=-3 (used by sequence 1)");
    a = p->args;
    a.block_table_stride = -MAXP;
    EXPECT(p, fwd(p, &a), INV, "block_table_stride", NULL, "block_table_stride=%d", -MAXP);
    finish();
}

static void test_paged_block_table_stride_overflow(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a;
    /* row offsets that overflow: row 1 of a stride of 2^62 int32s is 2^64 bytes away (wraps to row 0), of
     * INT64_MAX int32s wraps to element -1. The element just before the table holds a valid page index, so
     * only a check of the stride itself (not of what happens to be read) rejects these. */
    {
        int32_t *raw = malloc(sizeof(int32_t) * (B * MAXP + 1));
        assert_non_null(raw);
        raw[0] = 0;
        memcpy(raw + 1, rdata(&p->r[R_BT]), sizeof(int32_t) * B * MAXP);
        const int64_t strides[] = {INT64_MAX, (int64_t)1 << 62, ((int64_t)1 << 62) + 1};
        for (size_t i = 0; i < sizeof strides / sizeof strides[0]; i++) {
            a = p->args;
            a.block_table = raw + 1;
            a.block_table_stride = strides[i];
            EXPECT(p, fwd(p, &a), INV, "block_table_stride", NULL, "block_table_stride=%lld (row offset overflows)",
                   (long long)strides[i]);
        }
        free(raw);
    }
    finish();
}

static void test_paged_metadata_misaligned(void **state)
{
    problem *p = *state;
    begin();
    unsigned char *raw = malloc(sizeof(int32_t) * B * MAXP + sizeof k_used_paged + 8);
    assert_non_null(raw);
    memcpy(raw + 2, rdata(&p->r[R_BT]), sizeof(int32_t) * B * MAXP);
    fa_fwd_args a = p->args;
    a.block_table = (const int32_t *)(const void *)(raw + 2);
    EXPECT(p, fwd(p, &a), INV, "block_table", NULL, "block_table misaligned");
    unsigned char *u = raw + 4 + sizeof(int32_t) * B * MAXP + 1;
    memcpy(u, k_used_paged, sizeof k_used_paged);
    a = p->args;
    a.seqused_k = (const int32_t *)(const void *)u;
    EXPECT(p, fwd(p, &a), INV, "seqused_k", NULL, "seqused_k misaligned");
    free(raw);
    finish();
}

static void used_case(problem *p, const int32_t *base, int idx, int32_t val, const char *what)
{
    int32_t *copy = malloc(sizeof(int32_t) * B);
    assert_non_null(copy);
    memcpy(copy, base, sizeof(int32_t) * B);
    copy[idx] = val;
    fa_fwd_args a = p->args;
    a.seqused_k = copy;
    EXPECT(p, fwd(p, &a), INV, "seqused_k", NULL, "%s", what);
    free(copy);
}

static void test_paged_bad_seqused(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a = p->args;
    a.seqused_k = NULL;
    EXPECT(p, fwd(p, &a), INV, "seqused_k", NULL, "seqused_k=NULL with kv_cache_lengths");
    used_case(p, k_used_paged, 0, PS * MAXP + 1, "seqused_k[0]=65 > max_pages_per_seq*page_size=64");
    used_case(p, k_used_paged, 1, -1, "seqused_k[1]=-1");
    used_case(p, k_used_paged, 1, INT32_MAX, "seqused_k[1]=INT32_MAX");
    used_case(p, k_used_paged, 0, INT32_MIN, "seqused_k[0]=INT32_MIN");
    finish();
}

static void test_paged_bad_kv_shapes(void **state)
{
    problem *p = *state;
    begin();
    shape_cases(p, T_K, T_V);
    fa_fwd_args a = p->args;
    a.k = mk(a.k.data, p->dtype, 3, NP * PS, HK, HD, 0, 0);
    EXPECT(p, fwd(p, &a), INV, "k.rank|k.shape", NULL, "paged k given with rank 3");
    finish();
}

static void test_paged_metadata_alias_output(void **state)
{
    problem *p = *state;
    begin();
    int32_t bt[B * MAXP];
    memcpy(bt, rdata(&p->r[R_BT]), sizeof bt);
    alias_case(p, A_BT, R_OUT, 256, bt, sizeof bt, "block_table", "block_table inside out");
    alias_case(p, A_USED, R_LSE, 0, k_used_paged, sizeof k_used_paged, "seqused_k", "seqused_k inside lse");
    finish();
}

/* ================================================================ kv-cache fixture */

static void test_kvcache_bad_seqused(void **state)
{
    problem *p = *state;
    begin();
    fa_fwd_args a = p->args;
    a.seqused_k = NULL;
    EXPECT(p, fwd(p, &a), INV, "seqused_k", NULL, "seqused_k=NULL with kv_cache_lengths");
    used_case(p, k_used_dense, 0, SK + 1, "seqused_k[0]=54 > k.shape[1]=53");
    used_case(p, k_used_dense, 1, -1, "seqused_k[1]=-1");
    used_case(p, k_used_dense, 1, INT32_MAX, "seqused_k[1]=INT32_MAX");
    finish();
}

static void test_kvcache_metadata_alias_output(void **state)
{
    problem *p = *state;
    begin();
    alias_case(p, A_USED, R_OUT, 0, k_used_dense, sizeof k_used_dense, "seqused_k", "seqused_k inside out");
    finish();
}

/* ================================================================ backward */

static void test_bwd_cpu(void **state)
{
    problem *p = *state;
    begin();
    EXPECT(p, fa_bwd(NULL, &p->bargs, NULL), INV, "plan", NULL, "fa_bwd(plan=NULL)");
    if (!p->bwd_plan_hint) {
        /* The CPU refused desc.with_backward=1 at plan time with FA_ERR_UNSUPPORTED (the setup accepts only
         * that). fa_bwd on the forward-only plan must be refused, say why, and write nothing. */
        fa_status st = fa_bwd(p->plan, &p->bargs, NULL);
        char msg[1024];
        copy_last_error(msg, sizeof msg);
        g_checks++;
        if (st != INV && st != FA_ERR_UNSUPPORTED)
            SOFT_FAIL("fa_bwd on a plan without backward = %s, want INVALID_ARGUMENT or UNSUPPORTED; \"%s\"",
                      sname(st), msg);
        else if (!strstr(msg, "backward"))
            SOFT_FAIL("fa_bwd on a plan without backward: message does not say so: \"%s\"", msg);
        unchanged_all(p, "fa_bwd on a forward-only plan", NULL, 0);
        EXPECT(p, fa_bwd(p->plan, NULL, NULL), INV, "args|with_backward", NULL, "fa_bwd(args=NULL)");
        print_message("note: fa_bwd on the CPU is refused at plan time: %s\n", p->bwd_note);
        finish();
        return;
    }
    EXPECT(p, fa_bwd(p->plan, NULL, NULL), INV, "args", NULL, "fa_bwd(args=NULL)");

    /* malformed arguments: rejected (as invalid, or as unsupported if the CPU has no backward yet) */
    const struct {
        const char *what, *needle;
        int field;
    } bad[] = {{"dq.data=NULL", "dq", 0}, {"dk.shape[1]+1", "dk", 1}, {"dout.dtype=99", "dout", 2}, {"lse.data=NULL", "lse", 3}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fa_bwd_args b = p->bargs;
        switch (bad[i].field) {
        case 0: b.dq.data = NULL; break;
        case 1: b.dk.shape[1]++; break;
        case 2: b.dout.dtype = (fa_dtype)99; break;
        default: b.lse.data = NULL; break;
        }
        fa_status st = fa_bwd(p->plan, &b, NULL);
        char msg[1024];
        copy_last_error(msg, sizeof msg);
        check_result(p, st == FA_ERR_UNSUPPORTED ? INV : st, msg, INV,
                     st == FA_ERR_UNSUPPORTED ? NULL : bad[i].needle, NULL, bad[i].what, __LINE__);
    }

    /* a valid call: works, or says FA_ERR_UNSUPPORTED and writes nothing */
    fa_status st = fa_bwd(p->plan, &p->bargs, NULL);
    char msg[1024];
    copy_last_error(msg, sizeof msg);
    if (st == FA_OK) {
        print_message("note: fa_bwd is implemented on the CPU (with_backward plan hint %s)\n",
                      p->bwd_plan_hint ? "accepted" : "refused");
    } else if (st == FA_ERR_UNSUPPORTED) {
        if (!msg[0])
            SOFT_FAIL("fa_bwd unsupported but fa_last_error() is empty");
        unchanged_all(p, "fa_bwd unsupported on the CPU", NULL, 0);
        print_message("note: fa_bwd on the CPU: FA_ERR_UNSUPPORTED (\"%s\")\n", msg);
    } else {
        SOFT_FAIL("fa_bwd(valid args) = %s, want FA_OK or FA_ERR_UNSUPPORTED; \"%s\"", sname(st), msg);
    }
    finish();
}

/* ================================================================ combine fixture */

enum { C_OP, C_LP, C_OUT, C_LSE, C_NT };
static const char *const k_cname[C_NT] = {"out_partial", "lse_partial", "out", "lse"};

static fa_tensor *cten(fa_combine_args *a, int t)
{
    switch (t) {
    case C_OP: return &a->out_partial;
    case C_LP: return &a->lse_partial;
    case C_OUT: return &a->out;
    default: return &a->lse;
    }
}

static fa_status comb(const fa_combine_args *a)
{
    return fa_combine(0, a, NULL);
}

static void test_combine_null_and_device(void **state)
{
    problem *p = *state;
    begin();
    EXPECT(p, fa_combine(0, NULL, NULL), INV, "args", NULL, "fa_combine(args=NULL)");
    int dummy_queue = 0;
    EXPECT(p, fa_combine(0, &p->cargs, &dummy_queue), INV, "stream", NULL, "fa_combine(stream!=NULL on the CPU)");
    const int n = fa_device_count();
    const int devs[] = {-1, n, INT_MAX};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
        EXPECT(p, fa_combine(devs[i], &p->cargs, NULL), FA_ERR_NO_DEVICE, "device", NULL, "fa_combine(device=%d)",
               devs[i]);
    char nd[64];
    for (int t = C_OP; t <= C_OUT; t++) { /* lse is optional */
        fa_combine_args a = p->cargs;
        cten(&a, t)->data = NULL;
        EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.data", k_cname[t]), NULL, "%s.data=NULL", k_cname[t]);
    }
    finish();
}

static void test_combine_dtype_rank(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    for (int t = C_OP; t < C_NT; t++) {
        const int bad[] = {FA_DTYPE_BF16, FA_DTYPE_COUNT, -1};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            if (t == C_OUT && bad[i] == FA_DTYPE_BF16)
                continue; /* out may legitimately be bf16 */
            fa_combine_args a = p->cargs;
            cten(&a, t)->dtype = (fa_dtype)bad[i];
            EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.dtype", k_cname[t]), NULL, "%s.dtype=%d", k_cname[t],
                   bad[i]);
        }
        const int r0 = cten(&p->cargs, t)->rank;
        const int ranks[] = {r0 - 1, r0 + 1, 0, -1};
        for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
            if (ranks[i] > FA_MAX_RANK + 1)
                continue;
            fa_combine_args a = p->cargs;
            cten(&a, t)->rank = ranks[i];
            EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.rank", k_cname[t]), NULL, "%s.rank=%d", k_cname[t],
                   ranks[i]);
        }
    }
    finish();
}

static void test_combine_shape_mismatch(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    for (int t = C_LP; t < C_NT; t++) { /* out_partial is the reference */
        const fa_tensor *base = cten(&p->cargs, t);
        for (int dim = 0; dim < base->rank; dim++) {
            const int64_t vals[] = {base->shape[dim] - 1, base->shape[dim] + 1, -1};
            for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                fa_combine_args a = p->cargs;
                cten(&a, t)->shape[dim] = vals[i];
                EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.shape", k_cname[t]), NULL, "%s.shape[%d]=%lld",
                       k_cname[t], dim, (long long)vals[i]);
            }
        }
    }
    for (int dim = 0; dim < 5; dim++) {
        fa_combine_args a = p->cargs;
        a.out_partial.shape[dim] = -1;
        EXPECT(p, comb(&a), INV, "out_partial.shape", NULL, "out_partial.shape[%d]=-1", dim);
        a = p->cargs;
        a.out_partial.shape[dim] = INT64_MAX;
        EXPECT(p, comb(&a), INV, "out_partial.shape|overflow", NULL, "out_partial.shape[%d]=INT64_MAX", dim);
    }
    finish();
}

static void test_combine_bad_strides_alignment(void **state)
{
    problem *p = *state;
    begin();
    char nd[64];
    for (int t = C_OP; t < C_NT; t++) {
        const fa_tensor *base = cten(&p->cargs, t);
        const int last = base->rank - 1;
        const int64_t lv[] = {0, 2, -1};
        for (size_t i = 0; i < sizeof lv / sizeof lv[0]; i++) {
            fa_combine_args a = p->cargs;
            cten(&a, t)->stride[last] = lv[i];
            EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.stride", k_cname[t]), NULL, "%s.stride[%d]=%lld",
                   k_cname[t], last, (long long)lv[i]);
        }
        for (int dim = 0; dim < last; dim++) {
            const int64_t vals[] = {-base->stride[dim], (int64_t)1 << 62};
            for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                fa_combine_args a = p->cargs;
                cten(&a, t)->stride[dim] = vals[i];
                EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.stride", k_cname[t]), NULL, "%s.stride[%d]=%lld",
                       k_cname[t], dim, (long long)vals[i]);
            }
        }
        for (int off = 1; off < 4; off++) {
            fa_combine_args a = p->cargs;
            cten(&a, t)->data = (unsigned char *)base->data + off;
            EXPECT(p, comb(&a), INV, fmt(nd, sizeof nd, "%s.data", k_cname[t]), NULL, "%s.data misaligned by %d",
                   k_cname[t], off);
        }
    }
    finish();
}

static void test_combine_overlap(void **state)
{
    problem *p = *state;
    begin();
    fa_combine_args a;
    a = p->cargs;
    a.out.data = rdata(&p->r[R_OP]);
    EXPECT(p, comb(&a), INV, "out", NULL, "out inside out_partial");
    a = p->cargs;
    a.lse.data = rdata(&p->r[R_LP]);
    EXPECT(p, comb(&a), INV, "lse", NULL, "lse inside lse_partial");
    a = p->cargs;
    a.lse.data = rdata(&p->r[R_OUT]);
    EXPECT(p, comb(&a), INV, "lse|out", NULL, "lse inside out");
    a = p->cargs;
    a.out.stride[2] = 0;
    EXPECT(p, comb(&a), INV, "out.stride", NULL, "out.stride[2]=0 (self-overlap)");
    a = p->cargs;
    a.out.stride[0] = 0;
    EXPECT(p, comb(&a), INV, "out.stride", NULL, "out.stride[0]=0 (self-overlap)");
    a = p->cargs;
    a.lse.stride[1] = 0;
    EXPECT(p, comb(&a), INV, "lse.stride", NULL, "lse.stride[1]=0 (self-overlap)");
    finish();
}

static void test_combine_lse_optional(void **state)
{
    problem *p = *state;
    begin();
    fa_combine_args a = p->cargs;
    memset(&a.lse, 0, sizeof a.lse);
    fa_status st = comb(&a);
    if (st != FA_OK)
        SOFT_FAIL("fa_combine without lse = %s, \"%s\"", sname(st), fa_last_error());
    const int skip[] = {R_OUT};
    unchanged_all(p, "fa_combine without lse writes only out", skip, 1);
    finish();
}

/* ================================================================ per-thread last error */

typedef struct {
    int id;
    char first[512];
    char after[512];
    int wrong;
} thread_ctx;

static void *thread_main(void *arg)
{
    thread_ctx *c = arg;
    copy_last_error(c->first, sizeof c->first); /* fresh thread: nothing failed yet */
    fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
    const int64_t batch = -(1000 + c->id);
    char val[32];
    snprintf(val, sizeof val, "%lld", (long long)batch);
    for (int i = 0; i < 200; i++) {
        d.batch = batch;
        fa_plan *plan = NULL;
        fa_status st = fa_plan_create(&plan, 0, &d);
        if (st == FA_OK)
            fa_plan_destroy(plan);
        const char *e = fa_last_error();
        if (st != INV || !e || !strstr(e, "batch") || !strstr(e, val))
            c->wrong++;
    }
    copy_last_error(c->after, sizeof c->after);
    return NULL;
}

static void test_last_error_per_thread(void **state)
{
    (void)state;
    begin();
    fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
    fa_plan *plan = NULL;
    fa_status st = fa_plan_create(&plan, -1, &d);
    if (st == FA_OK)
        fa_plan_destroy(plan);
    char mine[1024];
    copy_last_error(mine, sizeof mine);
    if (!strstr(mine, "device"))
        SOFT_FAIL("main thread: fa_plan_create(device=-1) message \"%s\" does not name the device", mine);

    enum { NT = 4 };
    pthread_t th[NT];
    thread_ctx ctx[NT];
    for (int i = 0; i < NT; i++) {
        memset(&ctx[i], 0, sizeof ctx[i]);
        ctx[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &ctx[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < NT; i++) {
        if (ctx[i].first[0])
            SOFT_FAIL("thread %d: fa_last_error() on a fresh thread is \"%s\", want \"\"", i, ctx[i].first);
        if (ctx[i].wrong)
            SOFT_FAIL("thread %d: %d of 200 failing calls did not see their own message (last: \"%s\")", i,
                      ctx[i].wrong, ctx[i].after);
    }
    char now[1024];
    copy_last_error(now, sizeof now);
    if (strcmp(now, mine) != 0)
        SOFT_FAIL("main thread message changed while other threads failed: \"%s\" -> \"%s\"", mine, now);
    finish();
}

/* ================================================================ main */

#define FX(f) cmocka_unit_test_setup_teardown(f, setup_problem, teardown_problem)

static int run_group(const char *name, kind_t kind, fa_dtype dt, const struct CMUnitTest *tests, size_t n)
{
    g_setup_kind = kind;
    g_setup_dtype = dt;
    return _cmocka_run_group_tests(name, tests, n, NULL, NULL);
}

#define RUN(name, kind, dt, arr) run_group(name, kind, dt, arr, sizeof arr / sizeof arr[0])

int main(void)
{
    rng_seed_from_env();
    g_verbose = getenv("FA_TEST_VERBOSE") && atoi(getenv("FA_TEST_VERBOSE")) > 0;
    printf("test_validation: seed=%llu (set FA_TEST_SEED to reproduce)\n", (unsigned long long)g_seed);
    fflush(stdout);

    {
        fa_attn_desc d = make_desc(K_DENSE, FA_DTYPE_F32);
        int count = 0;
        if (fa_plan_candidates(0, &d, &g_cfg, 1, &count) == FA_OK && count >= 1)
            g_have_cfg = 1;
        else
            printf("warning: no candidate config for the baseline problem (\"%s\")\n", fa_last_error());
    }

    const struct CMUnitTest plan_tests[] = {
        cmocka_unit_test(test_desc_baselines_valid),
        cmocka_unit_test(test_null_pointers_plan_api),
        cmocka_unit_test(test_plan_untouched_on_error),
        cmocka_unit_test(test_bad_device),
        cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_last_error_per_thread),
        cmocka_unit_test(test_desc_batch_zero),
        cmocka_unit_test(test_desc_batch_negative),
        cmocka_unit_test(test_desc_seqlen_q_negative),
        cmocka_unit_test(test_desc_seqlen_k_negative),
        cmocka_unit_test(test_desc_heads_q_zero),
        cmocka_unit_test(test_desc_heads_q_negative),
        cmocka_unit_test(test_desc_heads_kv_zero),
        cmocka_unit_test(test_desc_heads_kv_not_divisor),
        cmocka_unit_test(test_desc_heads_kv_more_than_heads_q),
        cmocka_unit_test(test_desc_heads_kv_gqa_not_divisor),
        cmocka_unit_test(test_desc_head_dim_qk_zero),
        cmocka_unit_test(test_desc_head_dim_qk_negative),
        cmocka_unit_test(test_desc_head_dim_v_zero),
        cmocka_unit_test(test_desc_head_dim_v_negative),
        cmocka_unit_test(test_desc_overflow_batch_max),
        cmocka_unit_test(test_desc_overflow_seqlen_max),
        cmocka_unit_test(test_desc_overflow_elements),
        cmocka_unit_test(test_desc_overflow_bytes),
        cmocka_unit_test(test_desc_overflow_heads),
        cmocka_unit_test(test_desc_overflow_head_dim),
        cmocka_unit_test(test_desc_dtype_count),
        cmocka_unit_test(test_desc_dtype_99),
        cmocka_unit_test(test_desc_dtype_negative),
        cmocka_unit_test(test_desc_dtype_fp8_e4m3_cpu),
        cmocka_unit_test(test_desc_dtype_fp8_e5m2_cpu),
        cmocka_unit_test(test_desc_softmax_scale_nan),
        cmocka_unit_test(test_desc_softmax_scale_inf),
        cmocka_unit_test(test_desc_softmax_scale_neg_inf),
        cmocka_unit_test(test_desc_softmax_scale_negative),
        cmocka_unit_test(test_desc_softcap_nan),
        cmocka_unit_test(test_desc_softcap_negative),
        cmocka_unit_test(test_desc_window_left_below_minus_one),
        cmocka_unit_test(test_desc_window_left_int64_min),
        cmocka_unit_test(test_desc_window_right_below_minus_one),
        cmocka_unit_test(test_desc_dropout_p_one),
        cmocka_unit_test(test_desc_dropout_p_above_one),
        cmocka_unit_test(test_desc_dropout_p_negative),
        cmocka_unit_test(test_desc_dropout_p_nan),
        cmocka_unit_test(test_desc_dropout_p_inf),
        cmocka_unit_test(test_desc_alibi_mode_out_of_range),
        cmocka_unit_test(test_desc_num_splits_negative),
        cmocka_unit_test(test_desc_paged_page_size_zero),
        cmocka_unit_test(test_desc_paged_page_size_negative),
        cmocka_unit_test(test_desc_paged_num_pages_zero),
        cmocka_unit_test(test_desc_paged_max_pages_zero),
        cmocka_unit_test(test_desc_paged_capacity_below_seqlen_k),
        cmocka_unit_test(test_desc_paged_capacity_overflow),
        cmocka_unit_test(test_desc_varlen_total_q_zero),
        cmocka_unit_test(test_desc_varlen_total_q_negative),
        cmocka_unit_test(test_desc_varlen_total_k_zero),
        cmocka_unit_test(test_desc_varlen_total_q_overflow),
    };
    const struct CMUnitTest dense_tests[] = {
        FX(test_fwd_baseline_repeatable), FX(test_fwd_null_plan_args_stream), FX(test_fwd_null_data),
        FX(test_fwd_wrong_dtype),         FX(test_fwd_wrong_rank),            FX(test_fwd_shape_mismatch),
        FX(test_fwd_bad_strides),         FX(test_fwd_misaligned),            FX(test_fwd_out_overlaps_input),
        FX(test_fwd_out_self_overlap),    FX(test_fwd_workspace),             FX(test_fwd_valid_layouts_accepted),
    };
    const struct CMUnitTest alibi_tests[] = {FX(test_fwd_baseline_repeatable), FX(test_alibi_bad_slopes)};
    const struct CMUnitTest varlen_tests[] = {FX(test_fwd_baseline_repeatable), FX(test_varlen_bad_cu_seqlens),
                                              FX(test_varlen_bad_tensors), FX(test_fwd_bad_strides)};
    const struct CMUnitTest paged_tests[] = {FX(test_fwd_baseline_repeatable), FX(test_paged_bad_block_table),
                                             FX(test_paged_bad_seqused), FX(test_paged_bad_kv_shapes)};
    const struct CMUnitTest kvcache_tests[] = {FX(test_fwd_baseline_repeatable), FX(test_kvcache_bad_seqused)};
    const struct CMUnitTest bwd_tests[] = {FX(test_bwd_cpu)};
    const struct CMUnitTest combine_tests[] = {FX(test_combine_null_and_device), FX(test_combine_dtype_rank),
                                               FX(test_combine_shape_mismatch), FX(test_combine_bad_strides_alignment),
                                               FX(test_combine_overlap), FX(test_combine_lse_optional)};

    int failed = 0;
    failed += RUN("validation_plan", K_DENSE, FA_DTYPE_F32, plan_tests);
    failed += RUN("validation_fwd_f32", K_DENSE, FA_DTYPE_F32, dense_tests);
    failed += RUN("validation_fwd_bf16", K_DENSE, FA_DTYPE_BF16, dense_tests);
    failed += RUN("validation_alibi", K_ALIBI, FA_DTYPE_F32, alibi_tests);
    failed += RUN("validation_varlen_f32", K_VARLEN, FA_DTYPE_F32, varlen_tests);
    failed += RUN("validation_varlen_bf16", K_VARLEN, FA_DTYPE_BF16, varlen_tests);
    failed += RUN("validation_paged", K_PAGED, FA_DTYPE_F32, paged_tests);
    failed += RUN("validation_kvcache", K_KVCACHE, FA_DTYPE_BF16, kvcache_tests);
    failed += RUN("validation_bwd", K_BWD, FA_DTYPE_F32, bwd_tests);
    failed += RUN("validation_combine", K_COMBINE, FA_DTYPE_F32, combine_tests);

    /* Last: inputs that a library without the check turns into undefined behaviour (misaligned or
     * overflowing metadata reads, metadata overwritten while it is read). Should one crash the process,
     * every group above has already reported. */
    const struct CMUnitTest hz_alibi[] = {FX(test_alibi_slopes_alias_output)};
    const struct CMUnitTest hz_kvcache[] = {FX(test_kvcache_metadata_alias_output)};
    const struct CMUnitTest hz_paged[] = {FX(test_paged_block_table_stride_overflow), FX(test_paged_metadata_misaligned)};
    const struct CMUnitTest hz_varlen[] = {FX(test_varlen_cu_misaligned)};
    const struct CMUnitTest hz_paged_alias[] = {FX(test_paged_metadata_alias_output)};
    const struct CMUnitTest hz_varlen_alias[] = {FX(test_varlen_metadata_alias_output)};
    failed += RUN("validation_hazards_alibi", K_ALIBI, FA_DTYPE_F32, hz_alibi);
    failed += RUN("validation_hazards_paged", K_PAGED, FA_DTYPE_F32, hz_paged);
    failed += RUN("validation_hazards_varlen", K_VARLEN, FA_DTYPE_F32, hz_varlen);
    failed += RUN("validation_hazards_kvcache_alias", K_KVCACHE, FA_DTYPE_F32, hz_kvcache);
    failed += RUN("validation_hazards_paged_alias", K_PAGED, FA_DTYPE_F32, hz_paged_alias);
    failed += RUN("validation_hazards_varlen_alias", K_VARLEN, FA_DTYPE_F32, hz_varlen_alias);
    printf("test_validation: %ld bad-input cases checked, %d test(s) failed; seed=%llu\n", g_checks, failed,
           (unsigned long long)g_seed);
    return failed ? 1 : 0;
}
