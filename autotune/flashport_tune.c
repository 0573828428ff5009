/*
 * flashport-tune: measures the planner's tile candidates on this machine's devices and writes the fastest
 * correct one per shape bucket into the tuning cache that fa_plan_create reads (autotune/fa_tune_cache.h).
 *
 *   flashport-tune [--device N|all] [--budget SECONDS] [--quick] [--out DIR] [--json] [--max-candidates N]
 *                  [--bucket SUBSTR]
 *
 * Per device: the buckets of tune_buckets.c, each searched by tune_search.c (conformance check, then timing)
 * within its share of the budget; the results merged into the device's cache file (entries of buckets not tuned
 * now are kept when the file's validators still match), written atomically; then a plan is made for every
 * tuned bucket, which compiles and caches the GPU kernels of the tuned configs (the first real call does not
 * compile) and shows whether fa_plan_create now picks them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "conf_dtype.h"
#include "fa_tune_cache.h"
#include "tune_buckets.h"
#include "tune_report.h"
#include "tune_search.h"

#define MAX_BUCKETS 128

typedef struct options {
    int device;        /* -1: all */
    double budget;     /* seconds per device; 0: default */
    int quick, json, max_candidates;
    char out[600];     /* "" = the user's tuning cache directory */
    char bucket[128];  /* "" = every bucket; else only those whose name contains it */
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flashport-tune [options]\n"
            "  --device N|all        device to tune (default all; see flashport-demo for the list)\n"
            "  --budget SECONDS      time per device (default 300; --quick 60); buckets share it, the\n"
            "                        best-ranked candidates of each are measured first\n"
            "  --quick               a few small buckets (a CI run, a first look)\n"
            "  --out DIR             where the cache files go (default: the user's tuning cache,\n"
            "                        $FLASHPORT_TUNE_DIR, else $XDG_CACHE_HOME/flashport/tune,\n"
            "                        else ~/.cache/flashport/tune)\n"
            "  --max-candidates N    candidates measured per pass at most (default: all within budget)\n"
            "  --bucket SUBSTR       only the buckets whose name contains SUBSTR (e.g. bwd/, s16384); the\n"
            "                        others keep what the device's file already holds\n"
            "  --json                one JSON document on stdout (the table goes to stderr)\n"
            "Every candidate is checked against a float64 reference (the conformance rule) before it is timed.\n"
            "FLASHPORT_TUNE_VERBOSE=1 prints why candidates are rejected.\n");
}

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->device = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!v) {
            fprintf(stderr, "flashport-tune: unknown option or missing value: %s\n", a);
            return 0;
        } else if (!strcmp(a, "--device")) {
            i++;
            if (!strcmp(v, "all")) o->device = -1;
            else if ((o->device = (int)strtol(v, &end, 10)) < 0 || *end || end == v) goto bad;
        } else if (!strcmp(a, "--budget")) {
            i++;
            o->budget = strtod(v, &end);
            if (*end || end == v || !(o->budget > 0)) goto bad;
        } else if (!strcmp(a, "--max-candidates")) {
            i++;
            if ((o->max_candidates = (int)strtol(v, &end, 10)) < 1 || *end) goto bad;
        } else if (!strcmp(a, "--out")) {
            i++;
            snprintf(o->out, sizeof o->out, "%s", v);
        } else if (!strcmp(a, "--bucket")) {
            i++;
            snprintf(o->bucket, sizeof o->bucket, "%s", v);
        } else {
            fprintf(stderr, "flashport-tune: unknown option '%s'\n", a);
            usage(stderr);
            return 0;
        }
        continue;
    bad:
        fprintf(stderr, "flashport-tune: bad value for %s: '%s'\n", a, v);
        return 0;
    }
    return 1;
}

static int same(const fa_tile_config *a, const fa_tile_config *b) { return !memcmp(a, b, sizeof *a); }

/* Merges the tuned buckets into the device's file (kept entries need matching validators) and writes it. */
static int write_cache(const char *dir, const fa_tune_ident *id, const tune_spec *specs, const tune_result *res,
                       int n, char *path, size_t path_size, char *err, size_t errlen)
{
    char name[512];
    fa_tune_file_name(id, name, sizeof name);
    if (snprintf(path, path_size, "%s/%s", dir, name) >= (int)path_size) {
        snprintf(err, errlen, "the directory's path is too long");
        return -1;
    }
    if (fa_tune_make_dir(dir)) {
        snprintf(err, errlen, "cannot create %.400s: %s", dir, strerror(errno));
        return -1;
    }
    fa_tune_file f;
    char why[600];
    if (fa_tune_load(path, id, &f, why, sizeof why) != FA_TUNE_LOADED) fa_tune_file_init(&f, id);
    int tuned = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(res[i].status, "tuned")) continue;
        fa_tune_entry e;
        memset(&e, 0, sizeof e);
        e.bucket = specs[i].bucket;
        e.fwd = res[i].fwd.tuned;
        e.has_bwd = res[i].has_bwd;
        if (e.has_bwd) e.bwd = res[i].bwd.tuned;
        e.tuned_ms = res[i].tuned_ms;
        e.heuristic_ms = res[i].heuristic_ms;
        if (fa_tune_file_put(&f, &e)) {
            snprintf(err, errlen, "out of memory");
            fa_tune_file_free(&f);
            return -1;
        }
        tuned++;
    }
    int rc = 0;
    if (tuned == 0) {
        snprintf(err, errlen, "no bucket was tuned");
        rc = -1;
    } else if (fa_tune_write(path, &f, err, errlen)) {
        rc = -1;
    }
    fa_tune_file_free(&f);
    return rc;
}

/*
 * A plan per tuned bucket with its tuned configs: on GPUs plan creation compiles the kernels and stores them in
 * the JIT's disk cache. Then fa_plan_create, to see whether the lookup order now picks them (it does when the
 * file went where the library looks).
 */
static void warm_and_verify(int device, const tune_spec *specs, tune_result *res, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(res[i].status, "tuned")) continue;
        fa_plan *plan = NULL;
        if (fa_plan_create_with_configs(&plan, device, &specs[i].desc, &res[i].fwd.tuned,
                                        res[i].has_bwd ? &res[i].bwd.tuned : NULL) == FA_OK)
            fa_plan_destroy(plan);
        plan = NULL;
        if (fa_plan_create(&plan, device, &specs[i].desc) != FA_OK) continue;
        fa_tile_config f, b;
        int picks = fa_plan_config(plan, &f) == FA_OK && same(&f, &res[i].fwd.tuned);
        if (res[i].has_bwd) picks = picks && fa_plan_bwd_config(plan, &b) == FA_OK && same(&b, &res[i].bwd.tuned);
        res[i].plan_picks = picks;
        fa_plan_destroy(plan);
    }
}

static int tune_device(int device, const options *o, int first, int last)
{
    tune_device_report rep;
    memset(&rep, 0, sizeof rep);
    rep.device = device;
    if (fa_device_get(device, &rep.props) != FA_OK) {
        fprintf(stderr, "flashport-tune: device %d: %s\n", device, fa_last_error());
        return 1;
    }
    static tune_spec specs[MAX_BUCKETS];
    static tune_result res[MAX_BUCKETS];
    int n = tune_bucket_list(&rep.props, o->quick, specs, MAX_BUCKETS);
    if (o->bucket[0]) { /* a second run for what a first one skipped: the file merges both */
        int kept = 0;
        for (int i = 0; i < n; i++) {
            char name[128];
            fa_tune_bucket_format(&specs[i].bucket, name, sizeof name);
            if (strstr(name, o->bucket)) specs[kept++] = specs[i];
        }
        if (kept == 0) {
            fprintf(stderr, "flashport-tune: device %d: no bucket name contains '%s'\n", device, o->bucket);
            return 1;
        }
        n = kept;
    }
    rep.budget_s = o->budget > 0 ? o->budget : o->quick ? 60.0 : 300.0;
    tune_settings set = {1, o->quick ? 3 : 5, o->max_candidates};
    if (rep.props.backend != FA_BACKEND_CPU) set.warmup = 3, set.repeats = 10;
    fa_tune_ident id;
    fa_tune_device_ident(device, &id);
    fprintf(stderr, "flashport-tune: device %d (%s backend, %s, %s): %d buckets, budget %.0f s\n", device,
            fa_backend_name(rep.props.backend), rep.props.name, rep.props.arch, n, rep.budget_s);

    tune_progress pg;
    tune_progress_start(&pg, n, rep.budget_s);
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        double left = rep.budget_s - (bench_now() - t0);
        if (left <= 0) { /* the budget is spent: what is left keeps the heuristic */
            memset(&res[i], 0, sizeof res[i]);
            res[i].status = "skipped";
            res[i].plan_picks = -1;
            snprintf(res[i].reason, sizeof res[i].reason, "budget spent (--budget)");
            continue;
        }
        tune_search_bucket(device, &rep.props, &specs[i], i, &set, left / (n - i), &pg, &res[i]);
    }
    tune_progress_end(&pg);

    char dir[600];
    if (o->out[0]) snprintf(dir, sizeof dir, "%s", o->out);
    else if (!fa_tune_user_dir(dir, sizeof dir)) snprintf(rep.error, sizeof rep.error, "no user cache directory (HOME unset or FLASHPORT_TUNE_DIR=off): use --out");
    if (!rep.error[0] && write_cache(dir, &id, specs, res, n, rep.file, sizeof rep.file, rep.error, sizeof rep.error))
        rep.file[0] = 0;
    warm_and_verify(device, specs, res, n);
    rep.wall_s = bench_now() - t0;
    rep.n = n;
    rep.specs = specs;
    rep.results = res;
    tune_report_table(o->json ? stderr : stdout, &rep);
    if (o->json) tune_report_json(stdout, &rep, o->quick, first, last);
    int ok = rep.file[0] != 0;
    for (int i = 0; i < n; i++) ok = ok && strcmp(res[i].status, "error") != 0;
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse(argc, argv, &o)) return 2;
    conf_dtype_init();
    int count = fa_device_count();
    if (o.device >= count) {
        fprintf(stderr, "flashport-tune: device %d: there are %d devices\n", o.device, count);
        return 2;
    }
    int first = o.device >= 0 ? o.device : 0, last = o.device >= 0 ? o.device : count - 1, rc = 0;
    for (int d = first; d <= last; d++) rc |= tune_device(d, &o, d == first, d == last);
    return rc;
}
