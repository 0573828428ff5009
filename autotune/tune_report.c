/* Table and JSON output of flashport-tune (tune_report.h). */
#include "tune_report.h"

#include <string.h>

static void tile(const fa_tile_config *c, char *buf, size_t size) { fa_tile_format(c, buf, size); }

/* "fwd / bwd" configs of a pass pair as one cell. */
static void cell(const tune_result *r, int tuned, char *buf, size_t size)
{
    char f[64], b[64];
    tile(tuned ? &r->fwd.tuned : &r->fwd.heuristic, f, sizeof f);
    if (!r->has_bwd) {
        snprintf(buf, size, "%s", f);
        return;
    }
    tile(tuned ? &r->bwd.tuned : &r->bwd.heuristic, b, sizeof b);
    snprintf(buf, size, "%.40s / %.40s", f, b);
}

void tune_report_table(FILE *f, const tune_device_report *d)
{
    fprintf(f, "\ndevice %d: %s backend, %s (%s)\n", d->device, fa_backend_name(d->props.backend), d->props.name,
            d->props.arch);
    fprintf(f, "%-40s %-28s %-28s %10s %10s %8s %s\n", "bucket", "heuristic (fwd / bwd)", "tuned (fwd / bwd)",
            "heur ms", "tuned ms", "speedup", "measured/candidates, rejected");
    for (int i = 0; i < d->n; i++) {
        const tune_result *r = &d->results[i];
        char b[128], h[128], t[128];
        fa_tune_bucket_format(&d->specs[i].bucket, b, sizeof b);
        if (strcmp(r->status, "tuned")) {
            fprintf(f, "%-40s %s: %s\n", b, r->status, r->reason);
            continue;
        }
        cell(r, 0, h, sizeof h);
        cell(r, 1, t, sizeof t);
        fprintf(f, "%-40s %-28s %-28s %10.3f %10.3f %7.2fx %d/%d, %d%s\n", b, h, t, r->heuristic_ms, r->tuned_ms,
                r->tuned_ms > 0 ? r->heuristic_ms / r->tuned_ms : 0.0,
                r->fwd.measured + (r->has_bwd ? r->bwd.measured : 0),
                r->fwd.candidates + (r->has_bwd ? r->bwd.candidates : 0),
                r->fwd.rejected + (r->has_bwd ? r->bwd.rejected : 0), r->reason[0] ? " (!)" : "");
        if (r->reason[0]) fprintf(f, "    (!) %s\n", r->reason);
    }
    fprintf(f, "tuning wall time: %.1f s (budget %.0f s)\n", d->wall_s, d->budget_s);
    if (d->file[0]) fprintf(f, "written: %s\n", d->file);
    if (d->error[0]) fprintf(f, "not written: %s\n", d->error);
}

/* s as a JSON string body (quotes, backslashes and control characters escaped). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void json_pass(FILE *f, const char *name, const tune_pass_result *p)
{
    char h[64], t[64];
    tile(&p->heuristic, h, sizeof h);
    tile(&p->tuned, t, sizeof t);
    fprintf(f, ", \"%s\": {\"heuristic\": \"%s\", \"tuned\": \"%s\", \"heuristic_ms\": %.6g, \"tuned_ms\": %.6g, "
               "\"candidates\": %d, \"measured\": %d, \"rejected\": %d, \"heuristic_passed\": %s, "
               "\"tuned_passed\": %s}",
            name, h, t, p->heuristic_ms, p->tuned_ms, p->candidates, p->measured, p->rejected,
            p->heuristic_passed ? "true" : "false", p->tuned_passed ? "true" : "false");
}

void tune_report_json(FILE *f, const tune_device_report *d, int quick, int first, int last)
{
    if (first) fprintf(f, "{\"tool\": \"flashport-tune\", \"version\": \"%s\", \"quick\": %s, \"devices\": [\n",
                       fa_version_string(), quick ? "true" : "false");
    fprintf(f, "{\"device\": %d, \"backend\": \"%s\", \"name\": ", d->device, fa_backend_name(d->props.backend));
    json_str(f, d->props.name);
    fprintf(f, ", \"arch\": ");
    json_str(f, d->props.arch);
    fprintf(f, ", \"file\": ");
    json_str(f, d->file);
    fprintf(f, ", \"error\": ");
    json_str(f, d->error);
    fprintf(f, ", \"budget_s\": %.1f, \"wall_s\": %.3f, \"buckets\": [\n", d->budget_s, d->wall_s);
    for (int i = 0; i < d->n; i++) {
        const tune_result *r = &d->results[i];
        const fa_attn_desc *x = &d->specs[i].desc;
        char b[128];
        fa_tune_bucket_format(&d->specs[i].bucket, b, sizeof b);
        fprintf(f, "{\"bucket\": \"%s\", \"status\": \"%s\", \"reason\": ", b, r->status);
        json_str(f, r->reason);
        fprintf(f, ", \"problem\": {\"dtype\": %d, \"batch\": %lld, \"seqlen_q\": %lld, \"seqlen_k\": %lld, "
                   "\"heads_q\": %lld, \"heads_kv\": %lld, \"head_dim\": %lld, \"causal\": %d, \"kv_cache_lengths\": %d, "
                   "\"with_backward\": %d}",
                (int)x->dtype, (long long)x->batch, (long long)x->seqlen_q, (long long)x->seqlen_k,
                (long long)x->heads_q, (long long)x->heads_kv, (long long)x->head_dim_qk, x->causal,
                x->kv_cache_lengths, x->with_backward);
        if (!strcmp(r->status, "tuned")) {
            json_pass(f, "fwd", &r->fwd);
            if (r->has_bwd) json_pass(f, "bwd", &r->bwd);
            int checked = r->fwd.tuned_passed && (!r->has_bwd || r->bwd.tuned_passed);
            fprintf(f, ", \"bucket_heuristic_ms\": %.6g, \"bucket_tuned_ms\": %.6g, \"speedup\": %.4f, "
                       "\"tuned_checked\": %s, \"plan_picks_tuned\": %s",
                    r->heuristic_ms, r->tuned_ms, r->tuned_ms > 0 ? r->heuristic_ms / r->tuned_ms : 0.0,
                    checked ? "true" : "false", r->plan_picks < 0 ? "null" : r->plan_picks ? "true" : "false");
        }
        fprintf(f, ", \"seconds\": %.3f}%s\n", r->seconds, i + 1 < d->n ? "," : "");
    }
    fprintf(f, "]}%s\n", last ? "" : ",");
    if (last) fprintf(f, "]}\n");
}
