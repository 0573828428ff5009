/* The tuning cache file: format, strict parser, atomic writer (fa_tune_cache.h). */
#include "fa_tune_cache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fa_disk_cache.h"

static void say(char *why, size_t size, const char *fmt, ...)
{
    if (!why || !size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
}

void fa_tune_file_name(const fa_tune_ident *id, char *buf, size_t size)
{
    snprintf(buf, size, "%s-%s-%s.tune", id->backend, id->device, id->arch);
    for (char *c = buf; *c; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
                 *c == '-' || *c == '_';
        if (!ok) *c = '_';
    }
}

int fa_tune_ident_match(const fa_tune_ident *want, const fa_tune_ident *got, char *why, size_t why_size)
{
    const char *names[] = {"version", "backend", "kernel_hash", "runtime", "device", "arch"};
    const char *w[] = {want->version, want->backend, want->kernel_hash, want->runtime, want->device, want->arch};
    const char *g[] = {got->version, got->backend, got->kernel_hash, got->runtime, got->device, got->arch};
    for (int i = 0; i < 6; i++)
        if (strcmp(w[i], g[i])) {
            say(why, why_size, "%s is '%s', this device has '%s'", names[i], g[i], w[i]);
            return 0;
        }
    if (want->shared_mem != got->shared_mem) {
        say(why, why_size, "shared_mem is %lld, this device has %lld", got->shared_mem, want->shared_mem);
        return 0;
    }
    return 1;
}

void fa_tune_file_init(fa_tune_file *f, const fa_tune_ident *ident)
{
    memset(f, 0, sizeof *f);
    if (ident) f->ident = *ident;
}

void fa_tune_file_free(fa_tune_file *f)
{
    free(f->entries);
    f->entries = NULL;
    f->count = f->cap = 0;
}

const fa_tune_entry *fa_tune_file_find(const fa_tune_file *f, const fa_tune_bucket *b)
{
    for (int i = 0; i < f->count; i++)
        if (fa_tune_bucket_equal(&f->entries[i].bucket, b)) return &f->entries[i];
    return NULL;
}

int fa_tune_file_put(fa_tune_file *f, const fa_tune_entry *e)
{
    fa_tune_entry *old = (fa_tune_entry *)fa_tune_file_find(f, &e->bucket);
    if (old) {
        *old = *e;
        return 0;
    }
    if (f->count == f->cap) {
        int cap = f->cap ? 2 * f->cap : 16;
        fa_tune_entry *n = realloc(f->entries, sizeof *n * (size_t)cap);
        if (!n) return -1;
        f->entries = n;
        f->cap = cap;
    }
    f->entries[f->count++] = *e;
    return 0;
}

/* ---------------------------------------------------------------- writing */

/* Text for a header value: one line, so newlines become spaces; empty becomes "-". */
static void one_line(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src && *src ? src : "-");
    for (char *c = dst; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

char *fa_tune_format(const fa_tune_file *f)
{
    size_t cap = 2048 + (size_t)f->count * 256;
    char *text = malloc(cap);
    if (!text) return NULL;
    const fa_tune_ident *id = &f->ident;
    char v[7][300];
    one_line(v[0], sizeof v[0], id->version);
    one_line(v[1], sizeof v[1], id->backend);
    one_line(v[2], sizeof v[2], id->kernel_hash);
    one_line(v[3], sizeof v[3], id->runtime);
    one_line(v[4], sizeof v[4], id->device);
    one_line(v[5], sizeof v[5], id->arch);
    size_t n = (size_t)snprintf(text, cap,
                                "flashport-tune %d\nversion %s\nbackend %s\nkernel_hash %s\nruntime %s\ndevice %s\n"
                                "arch %s\nshared_mem %lld\n",
                                FA_TUNE_FORMAT, v[0], v[1], v[2], v[3], v[4], v[5], id->shared_mem);
    for (int i = 0; i < f->count && n < cap; i++) {
        const fa_tune_entry *e = &f->entries[i];
        char b[128], fw[64], bw[64];
        fa_tune_bucket_format(&e->bucket, b, sizeof b);
        fa_tile_format(&e->fwd, fw, sizeof fw);
        if (e->has_bwd) fa_tile_format(&e->bwd, bw, sizeof bw);
        else snprintf(bw, sizeof bw, "-");
        n += (size_t)snprintf(text + n, cap - n, "bucket %s fwd=%s bwd=%s tuned_ms=%.6g heuristic_ms=%.6g\n", b, fw, bw,
                              e->tuned_ms, e->heuristic_ms);
    }
    if (n < cap) n += (size_t)snprintf(text + n, cap - n, "end %d\n", f->count);
    if (n >= cap) { /* cannot happen with 256 bytes a line; refuse rather than write a cut file */
        free(text);
        return NULL;
    }
    return text;
}

int fa_tune_write(const char *path, const fa_tune_file *f, char *why, size_t why_size)
{
    char *text = fa_tune_format(f);
    if (!text) {
        say(why, why_size, "out of memory formatting the tuning cache");
        return -1;
    }
    /* one temporary per writer (mkstemp), fsync, rename: concurrent tuners and readers never see half a file */
    const int rc = fa_cache_write_atomic(path, text, strlen(text)), err = errno;
    free(text);
    if (rc != 0) {
        say(why, why_size, "cannot write %s: %s", path, strerror(err));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- parsing */

/* The next line of *s into line (without its '\n'); -1 at the end or for a line without '\n' (truncated). */
static int next_line(const char **s, char *line, size_t size)
{
    const char *nl = strchr(*s, '\n');
    if (!**s || !nl) return -1;
    size_t n = (size_t)(nl - *s);
    if (n >= size) return -1;
    memcpy(line, *s, n);
    line[n] = 0;
    *s = nl + 1;
    return 0;
}

/* "key value" with the expected key; the value (non-empty, at most size-1 bytes) into out. */
static int header_value(const char *line, const char *key, char *out, size_t size)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) || line[k] != ' ' || !line[k + 1] || strlen(line + k + 1) >= size) return -1;
    snprintf(out, size, "%s", line + k + 1);
    return 0;
}

static int parse_ms(const char *s, const char *key, double *out)
{
    size_t k = strlen(key);
    if (strncmp(s, key, k)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s + k, &end);
    if (errno || end == s + k || *end || !(v >= 0.0) || v > 1e12) return -1;
    *out = v;
    return 0;
}

static int parse_entry(char *line, fa_tune_entry *e)
{
    char *save = NULL, *tok[6];
    int n = 0;
    for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (n == 6) return -1;
        tok[n++] = t;
    }
    memset(e, 0, sizeof *e);
    if (n != 6 || strcmp(tok[0], "bucket") || fa_tune_bucket_parse(tok[1], &e->bucket)) return -1;
    if (strncmp(tok[2], "fwd=", 4) || fa_tile_parse(tok[2] + 4, &e->fwd)) return -1;
    if (strncmp(tok[3], "bwd=", 4)) return -1;
    e->has_bwd = strcmp(tok[3] + 4, "-") != 0;
    if (e->has_bwd && fa_tile_parse(tok[3] + 4, &e->bwd)) return -1;
    /* a backward bucket holds both configs, the others only the forward's */
    if (e->has_bwd != (e->bucket.pass == FA_TUNE_BWD)) return -1;
    return parse_ms(tok[4], "tuned_ms=", &e->tuned_ms) || parse_ms(tok[5], "heuristic_ms=", &e->heuristic_ms) ? -1 : 0;
}

int fa_tune_parse(const char *text, fa_tune_file *f, char *why, size_t why_size)
{
    fa_tune_file_init(f, NULL);
    const char *s = text;
    char line[1024], num[32];
    int lineno = 1;
    if (next_line(&s, line, sizeof line) || strcmp(line, "flashport-tune 1")) {
        say(why, why_size, "line 1: not a flashport-tune format %d file", FA_TUNE_FORMAT);
        return -1;
    }
    fa_tune_ident *id = &f->ident;
    struct {
        const char *key;
        char *out;
        size_t size;
    } hdr[] = {{"version", id->version, sizeof id->version},   {"backend", id->backend, sizeof id->backend},
               {"kernel_hash", id->kernel_hash, sizeof id->kernel_hash}, {"runtime", id->runtime, sizeof id->runtime},
               {"device", id->device, sizeof id->device},      {"arch", id->arch, sizeof id->arch},
               {"shared_mem", num, sizeof num}};
    for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++) {
        lineno++;
        if (next_line(&s, line, sizeof line) || header_value(line, hdr[i].key, hdr[i].out, hdr[i].size)) {
            say(why, why_size, "line %d: expected '%s <value>'", lineno, hdr[i].key);
            return -1;
        }
    }
    char *end;
    id->shared_mem = strtoll(num, &end, 10);
    if (*end || end == num || id->shared_mem < 0) {
        say(why, why_size, "line %d: shared_mem '%s' is not a byte count", lineno, num);
        return -1;
    }
    for (;;) {
        lineno++;
        if (next_line(&s, line, sizeof line)) {
            say(why, why_size, "line %d: file ends without its 'end' line (truncated?)", lineno);
            fa_tune_file_free(f);
            return -1;
        }
        if (!strncmp(line, "end ", 4)) break;
        fa_tune_entry e;
        if (parse_entry(line, &e)) {
            say(why, why_size, "line %d: malformed bucket line", lineno);
            fa_tune_file_free(f);
            return -1;
        }
        if (fa_tune_file_find(f, &e.bucket)) {
            say(why, why_size, "line %d: bucket listed twice", lineno);
            fa_tune_file_free(f);
            return -1;
        }
        if (fa_tune_file_put(f, &e)) {
            say(why, why_size, "out of memory");
            fa_tune_file_free(f);
            return -1;
        }
    }
    long count = strtol(line + 4, &end, 10);
    if (*end || end == line + 4 || count != f->count || *s) {
        say(why, why_size, "line %d: 'end %s' does not close %d bucket lines at the end of the file", lineno, line + 4,
            f->count);
        fa_tune_file_free(f);
        return -1;
    }
    return 0;
}

fa_tune_load_result fa_tune_load(const char *path, const fa_tune_ident *want, fa_tune_file *f, char *why,
                                 size_t why_size)
{
    fa_tune_file_init(f, NULL);
    void *data = NULL;
    size_t size = 0;
    struct stat st;
    if (stat(path, &st) != 0) return FA_TUNE_MISSING;
    if (fa_cache_read(path, 1, &data, &size) != 0) {
        say(why, why_size, "cannot read it (empty or unreadable)");
        return FA_TUNE_INVALID;
    }
    if (strlen(data) + 1 != size) { /* a NUL inside: not text */
        free(data);
        say(why, why_size, "it holds a NUL byte");
        return FA_TUNE_INVALID;
    }
    int rc = fa_tune_parse(data, f, why, why_size);
    free(data);
    if (rc) return FA_TUNE_INVALID;
    char mismatch[512];
    if (want && !fa_tune_ident_match(want, &f->ident, mismatch, sizeof mismatch)) {
        say(why, why_size, "stale validators: %s", mismatch);
        fa_tune_file_free(f);
        return FA_TUNE_INVALID;
    }
    return FA_TUNE_LOADED;
}
