/* Tuning buckets and the text form of tile configs (fa_tune_bucket.h). */
#include "fa_tune_bucket.h"

#include <stdio.h>
#include <string.h>

static const char *const pass_names[] = {"fwd", "bwd", "decode"};
static const char *const mask_names[] = {"none", "causal", "window"};

int fa_tune_pow2_class(long long n)
{
    long long c = 1;
    while (c < n && c < (1ll << 30)) c *= 2;
    return (int)c;
}

void fa_tune_bucket_of(const fa_attn_desc *d, fa_tune_bucket *b)
{
    memset(b, 0, sizeof *b);
    b->pass = d->with_backward ? FA_TUNE_BWD : d->seqlen_q <= FA_TUNE_DECODE_MAX_Q ? FA_TUNE_DECODE : FA_TUNE_FWD;
    b->dtype = d->dtype;
    b->dqk = (int)d->head_dim_qk;
    b->dv = (int)d->head_dim_v;
    b->mask = (d->window_left >= 0 || d->window_right >= 0) ? FA_TUNE_MASK_WINDOW
              : d->causal                                   ? FA_TUNE_MASK_CAUSAL
                                                            : FA_TUNE_MASK_NONE;
    /* Decode time is the KV length's; prefill's grows with the longer side. */
    long long s = b->pass == FA_TUNE_DECODE ? d->seqlen_k : d->seqlen_q > d->seqlen_k ? d->seqlen_q : d->seqlen_k;
    b->seq_class = fa_tune_pow2_class(s < 16 ? 16 : s);
    b->gqa_class = fa_tune_pow2_class(d->heads_kv > 0 ? d->heads_q / d->heads_kv : 1);
}

int fa_tune_bucket_equal(const fa_tune_bucket *a, const fa_tune_bucket *b)
{
    return a->pass == b->pass && a->dtype == b->dtype && a->dqk == b->dqk && a->dv == b->dv && a->mask == b->mask &&
           a->seq_class == b->seq_class && a->gqa_class == b->gqa_class;
}

int fa_tune_bucket_format(const fa_tune_bucket *b, char *buf, size_t size)
{
    return snprintf(buf, size, "%s/%s/d%dx%d/%s/s%d/g%d", pass_names[b->pass], fa_dtype_name(b->dtype), b->dqk, b->dv,
                    mask_names[b->mask], b->seq_class, b->gqa_class);
}

/* A decimal int >= 1 filling [s, end); -1 otherwise. */
static int parse_positive(const char *s, const char *end, int *out)
{
    if (s == end || *s < '0' || *s > '9') return -1;
    long v = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v > (1l << 30)) return -1;
    }
    if (v < 1) return -1;
    *out = (int)v;
    return 0;
}

static int lookup_name(const char *s, size_t n, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == n && !strncmp(s, names[i], n)) return i;
    return -1;
}

int fa_tune_bucket_parse(const char *text, fa_tune_bucket *b)
{
    const char *part[6];
    size_t len[6];
    const char *s = text;
    for (int i = 0; i < 6; i++) { /* exactly six '/'-separated fields */
        const char *slash = strchr(s, '/');
        part[i] = s;
        len[i] = slash ? (size_t)(slash - s) : strlen(s);
        if ((i < 5) != (slash != NULL)) return -1;
        if (slash) s = slash + 1;
    }
    memset(b, 0, sizeof *b);
    int pass = lookup_name(part[0], len[0], pass_names, 3), mask = lookup_name(part[3], len[3], mask_names, 3);
    int dtype = -1;
    for (int t = 0; t < FA_DTYPE_COUNT; t++)
        if (strlen(fa_dtype_name((fa_dtype)t)) == len[1] && !strncmp(part[1], fa_dtype_name((fa_dtype)t), len[1]))
            dtype = t;
    if (pass < 0 || mask < 0 || dtype < 0) return -1;
    b->pass = (fa_tune_pass)pass;
    b->mask = (fa_tune_mask)mask;
    b->dtype = (fa_dtype)dtype;
    const char *x = memchr(part[2], 'x', len[2]);
    if (part[2][0] != 'd' || !x || parse_positive(part[2] + 1, x, &b->dqk) ||
        parse_positive(x + 1, part[2] + len[2], &b->dv))
        return -1;
    if (part[4][0] != 's' || parse_positive(part[4] + 1, part[4] + len[4], &b->seq_class)) return -1;
    if (part[5][0] != 'g' || parse_positive(part[5] + 1, part[5] + len[5], &b->gqa_class)) return -1;
    if (fa_tune_pow2_class(b->seq_class) != b->seq_class || fa_tune_pow2_class(b->gqa_class) != b->gqa_class)
        return -1;
    return 0;
}

int fa_tile_format(const fa_tile_config *c, char *buf, size_t size)
{
    return snprintf(buf, size, "%dx%dx%dw%ds%d", c->block_q, c->block_kv, c->num_splits, c->warps, c->stages);
}

/* The number at *s (>= 1); advances *s. -1 if there is none. */
static int take_number(const char **s, int *out)
{
    const char *p = *s;
    while (*p >= '0' && *p <= '9') p++;
    if (parse_positive(*s, p, out)) return -1;
    *s = p;
    return 0;
}

int fa_tile_parse(const char *text, fa_tile_config *c)
{
    if (!text) return -1;
    fa_tile_config t = {0, 0, 1, 1, 1};
    const char *s = text;
    if (take_number(&s, &t.block_q) || *s++ != 'x' || take_number(&s, &t.block_kv)) return -1;
    if (*s == 'x' && (s++, take_number(&s, &t.num_splits))) return -1;
    if (*s == 'w' && (s++, take_number(&s, &t.warps))) return -1;
    if (*s == 's' && (s++, take_number(&s, &t.stages))) return -1;
    if (*s) return -1;
    *c = t;
    return 0;
}
