/* One bucket's checked and timed search (tune_search.h). */
#include "tune_search.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "conf_config_check.h"
#include "tune_measure.h"

#define MAX_CANDIDATES 256

static int same(const fa_tile_config *a, const fa_tile_config *b) { return !memcmp(a, b, sizeof *a); }

typedef struct pass_ctx {
    int device, index, bwd;
    const tune_spec *spec;
    const tune_settings *set;
    conf_config_check *check;
    tune_bench *bench;
    tune_progress *pg;
    const fa_tile_config *fwd_fixed; /* the backward search's forward config */
    double start, budget;            /* this pass's share */
    double progress0, progress1;     /* its part of the bucket's progress */
} pass_ctx;

static int time_config(pass_ctx *c, const fa_tile_config *cfg, int repeats, double *ms, char *err, size_t errlen)
{
    double s = 0;
    const fa_tile_config *fwd = c->bwd ? c->fwd_fixed : cfg, *bwd = c->bwd ? cfg : NULL;
    if (tune_bench_time(c->bench, fwd, bwd, c->bwd, c->set->warmup, repeats, &s, err, errlen)) return -1;
    *ms = s * 1e3;
    return 0;
}

/* Searches one pass's candidates. 0, or -1 with the reason in err (the heuristic itself could not run). */
static int search_pass(pass_ctx *c, const fa_tile_config *cands, int n, tune_pass_result *pr, char *err, size_t errlen)
{
    char label[128];
    fa_tune_bucket_format(&c->spec->bucket, label, sizeof label);
    memset(pr, 0, sizeof *pr);
    pr->candidates = n;
    pr->heuristic = pr->tuned = cands[0];
    int limit = c->set->max_candidates > 0 && n > c->set->max_candidates ? c->set->max_candidates : n;
    double best = -1;
    for (int i = 0; i < limit; i++) {
        double spent = bench_now() - c->start;
        if (i > 0 && spent > c->budget) break; /* the heuristic is always measured */
        char what[96], t[64];
        fa_tile_format(&cands[i], t, sizeof t);
        snprintf(what, sizeof what, "%s %s %d/%d", c->bwd ? "bwd" : "fwd", t, i + 1, limit);
        double frac = spent / c->budget > (double)i / limit ? spent / c->budget : (double)i / limit;
        tune_progress_update(c->pg, c->index, c->progress0 + (c->progress1 - c->progress0) * frac, label, what);
        char msg[1024];
        const fa_tile_config *fwd = c->bwd ? c->fwd_fixed : &cands[i], *bwd = c->bwd ? &cands[i] : NULL;
        int passed = conf_config_check_run(c->check, fwd, bwd, NULL, msg, sizeof msg) == 0;
        if (i == 0) pr->heuristic_passed = passed;
        if (!passed) {
            pr->rejected++;
            if (getenv("FLASHPORT_TUNE_VERBOSE")) fprintf(stderr, "\n[flashport-tune] %s %s rejected: %s\n", label, t, msg);
            if (i > 0) continue;
        }
        double ms;
        if (time_config(c, &cands[i], c->set->repeats, &ms, msg, sizeof msg)) {
            if (i == 0) {
                snprintf(err, errlen, "heuristic %s: %.400s", t, msg);
                return -1;
            }
            pr->rejected++;
            continue;
        }
        pr->measured++;
        if (i == 0) pr->heuristic_ms = ms;
        if (passed && (best < 0 || ms < best)) {
            best = ms;
            pr->tuned = cands[i];
        }
    }
    if (best < 0) { /* nothing passed: the heuristic stays, as the library would run it anyway */
        pr->tuned_ms = pr->heuristic_ms;
        return 0;
    }
    pr->tuned_passed = 1;
    pr->tuned_ms = best;
    if (same(&pr->tuned, &pr->heuristic)) return 0;
    /* A second look at the two, so a lucky sample does not replace the heuristic. */
    double h2, t2;
    char msg[512];
    if (time_config(c, &pr->heuristic, 2 * c->set->repeats, &h2, msg, sizeof msg) ||
        time_config(c, &pr->tuned, 2 * c->set->repeats, &t2, msg, sizeof msg))
        return 0;
    pr->heuristic_ms = h2;
    if (t2 < h2 || !pr->heuristic_passed) {
        pr->tuned_ms = t2;
    } else { /* not faster after all (the heuristic passed too) */
        pr->tuned = pr->heuristic;
        pr->tuned_ms = h2;
    }
    return 0;
}

void tune_search_bucket(int device, const fa_device_props *props, const tune_spec *spec, int index,
                        const tune_settings *set, double budget_s, tune_progress *pg, tune_result *r)
{
    memset(r, 0, sizeof *r);
    r->plan_picks = -1;
    r->status = "error";
    double t0 = bench_now();
    const fa_attn_desc *d = &spec->desc;
    r->has_bwd = d->with_backward;
    fa_tile_config *fc = malloc(sizeof *fc * MAX_CANDIDATES), *bc = malloc(sizeof *bc * MAX_CANDIDATES);
    int nf = 0, nb = 0;
    conf_config_check *check = NULL;
    tune_bench *bench = NULL;
    fa_status st = fc && bc ? fa_plan_candidates(device, d, fc, MAX_CANDIDATES, &nf) : FA_ERR_OUT_OF_MEMORY;
    if (st == FA_OK && r->has_bwd) st = fa_plan_bwd_candidates(device, d, bc, MAX_CANDIDATES, &nb);
    if (st != FA_OK) {
        r->status = st == FA_ERR_UNSUPPORTED ? "unsupported" : "error";
        snprintf(r->reason, sizeof r->reason, "candidates: %s: %s", fa_status_string(st), fa_last_error());
        goto done;
    }
    if (nf > MAX_CANDIDATES) nf = MAX_CANDIDATES;
    if (nb > MAX_CANDIDATES) nb = MAX_CANDIDATES;
    char err[512];
    /* a fixed seed per bucket: reruns check the same inputs */
    if (!(check = conf_config_check_open(device, &spec->check, 0x7e57ull + (uint64_t)index, err, sizeof err))) {
        snprintf(r->reason, sizeof r->reason, "conformance check: %s", err);
        goto done;
    }
    if (!(bench = tune_bench_create(device, props, d, err, sizeof err))) {
        snprintf(r->reason, sizeof r->reason, "buffers: %s", err);
        goto done;
    }
    pass_ctx c = {device, index, 0, spec, set, check, bench, pg, NULL, bench_now(), budget_s, 0.0, 1.0};
    if (r->has_bwd) c.budget = 0.5 * budget_s, c.progress1 = 0.5;
    if (search_pass(&c, fc, nf, &r->fwd, err, sizeof err)) {
        snprintf(r->reason, sizeof r->reason, "forward: %s", err);
        goto done;
    }
    r->heuristic_ms = r->fwd.heuristic_ms;
    r->tuned_ms = r->fwd.tuned_ms;
    if (r->has_bwd) {
        pass_ctx b = c;
        b.bwd = 1;
        b.fwd_fixed = &r->fwd.tuned;
        b.start = bench_now();
        b.budget = budget_s - (b.start - t0);
        b.progress0 = 0.5, b.progress1 = 1.0;
        if (search_pass(&b, bc, nb, &r->bwd, err, sizeof err)) {
            snprintf(r->reason, sizeof r->reason, "backward: %s", err);
            goto done;
        }
        r->heuristic_ms += r->bwd.heuristic_ms;
        r->tuned_ms += r->bwd.tuned_ms;
    }
    r->status = "tuned";
    if (!r->fwd.tuned_passed || (r->has_bwd && !r->bwd.tuned_passed))
        snprintf(r->reason, sizeof r->reason, "no candidate passed the conformance check: the heuristic's kept");
    else if (!r->fwd.heuristic_passed || (r->has_bwd && !r->bwd.heuristic_passed))
        snprintf(r->reason, sizeof r->reason, "the heuristic's config failed the conformance check");
done:
    r->seconds = bench_now() - t0;
    tune_bench_free(bench);
    conf_config_check_close(check);
    free(fc);
    free(bc);
}
