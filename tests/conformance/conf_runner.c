/* Runs a conformance case against every tile configuration of one device (see conf_runner.h). */
#define _POSIX_C_SOURCE 200809L
#include "conf_runner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf_check.h"
#include "conf_problem.h"
#include "conf_reference.h"

#define MAX_CANDIDATES 256

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void conf_options_from_env(conf_options *o) {
    memset(o, 0, sizeof *o);
    const char *s = getenv("FLASHPORT_CONFORMANCE_SEED");
    if (s && *s) {
        o->seed = strtoull(s, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec;
    }
    s = getenv("FLASHPORT_CONFORMANCE_MAX_CONFIGS");
    if (s && *s) o->max_configs = atoi(s);
    s = getenv("FLASHPORT_CONFORMANCE_QUICK");
    o->quick = s && *s && strcmp(s, "0") != 0;
}

const char *conf_verdict_name(conf_verdict v) {
    static const char *const names[] = {"PASS", "FAIL", "UNSUPPORTED", "SKIPPED"};
    return v <= CONF_SKIPPED ? names[v] : "?";
}

static void fmt_config(char *buf, size_t size, const char *what, const fa_tile_config *t) {
    snprintf(buf, size, "%s{block_q=%d block_kv=%d warps=%d stages=%d splits=%d}", what, t->block_q, t->block_kv,
             t->warps, t->stages, t->num_splits);
}

static void set_msg(conf_result *r, conf_verdict v, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    r->verdict = v;
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

static int same_config(const fa_tile_config *a, const fa_tile_config *b) {
    return a->block_q == b->block_q && a->block_kv == b->block_kv && a->warps == b->warps &&
           a->stages == b->stages && a->num_splits == b->num_splits;
}

/* One plan (the planner's, or one with the given config): poison, run, check. Returns 0 on pass. */
static int run_one(conf_problem *p, const conf_refs *refs, const conf_tolerance *tol, int device,
                   const fa_tile_config *cfg, int use_workspace, conf_result *r, fa_tile_config *chosen) {
    char label[128];
    fa_plan *plan = NULL;
    fa_status st = cfg ? fa_plan_create_with_config(&plan, device, &p->desc, cfg)
                       : fa_plan_create(&plan, device, &p->desc);
    if (cfg) fmt_config(label, sizeof label, "config ", cfg);
    else snprintf(label, sizeof label, "planner's choice");
    if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "%s: plan creation failed: %s: %s", label, fa_status_string(st), fa_last_error());
        return -1;
    }
    if (!cfg && fa_plan_config(plan, chosen) == FA_OK) {
        char tmp[96];
        fmt_config(tmp, sizeof tmp, "", chosen);
        snprintf(label, sizeof label, "planner's choice %s", tmp);
    }
    fa_tile_config got;
    memset(&got, 0, sizeof got);
    if (cfg && (fa_plan_config(plan, &got) != FA_OK || !same_config(&got, cfg))) {
        /* otherwise "every candidate passes" would silently be "the same config passes N times" */
        char tmp[96];
        fmt_config(tmp, sizeof tmp, "", &got);
        set_msg(r, CONF_FAIL, "%s: fa_plan_config reports %s instead of the requested configuration", label, tmp);
        fa_plan_destroy(plan);
        return -1;
    }
    conf_buf ws = {0};
    int64_t ws_size = fa_plan_workspace_size(plan);
    p->args.workspace = NULL;
    p->args.workspace_size = 0;
    if (use_workspace && ws_size > 0) { /* caller-owned workspace, between canaries */
        if (conf_buf_alloc(&ws, (size_t)ws_size)) {
            fa_plan_destroy(plan);
            set_msg(r, CONF_FAIL, "out of host memory for a %lld-byte workspace", (long long)ws_size);
            return -1;
        }
        p->args.workspace = ws.data;
        p->args.workspace_size = ws_size;
    }
    conf_problem_poison(p);
    double t0 = now_s();
    st = fa_fwd(plan, &p->args, NULL);
    r->lib_seconds += now_s() - t0;
    char describe[512] = "";
    fa_plan_describe(plan, describe, sizeof describe);
    describe[sizeof describe - 1] = '\0';
    fa_plan_destroy(plan);
    int rc = 0;
    conf_check_result cr;
    char mem[512];
    if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "%s: fa_fwd returned %s: %s", label, fa_status_string(st), fa_last_error());
        rc = -1;
    } else if (ws.data && !conf_buf_canaries_ok(&ws)) {
        set_msg(r, CONF_FAIL, "%s: canary bytes around the caller's %lld-byte workspace overwritten", label,
                (long long)ws_size);
        rc = -1;
    } else if (conf_problem_check_memory(p, mem, sizeof mem) != 0) {
        set_msg(r, CONF_FAIL, "%s: %s", label, mem);
        rc = -1;
    } else {
        rc = conf_check_outputs(p, refs, tol, &cr);
        if (cr.ratio > r->worst_ratio || r->configs_run == 0) {
            r->worst_ratio = cr.ratio;
            snprintf(r->worst_config, sizeof r->worst_config, "%s", label);
        }
        if (rc) set_msg(r, CONF_FAIL, "%s: %s", label, cr.msg);
    }
    if (rc) {
        size_t n = strlen(r->message);
        snprintf(r->message + n, sizeof r->message - n, "\n    plan: %s", describe);
    }
    r->configs_run++;
    conf_buf_free(&ws);
    return rc;
}

/* Each case gets its own stream of inputs from the base seed, so one case reproduces alone (--case). */
static uint64_t case_seed(uint64_t base, int index) {
    uint64_t s = base ^ (0x51ed270b27d3a8f1ull * (uint64_t)(index + 1));
    return conf_rng_next(&s);
}

static void free_refs(conf_refs *refs) {
    free(refs->out64);
    free(refs->lse64);
    free(refs->out_naive);
    free(refs->lse_naive);
}

static int compute_refs(const conf_problem *p, conf_refs *refs) {
    size_t n_out = (size_t)(p->rows * p->desc.heads_q * p->desc.head_dim_v) + 1;
    size_t n_lse = (size_t)(p->rows * p->desc.heads_q) + 1;
    refs->out64 = malloc(n_out * sizeof(double));
    refs->out_naive = malloc(n_out * sizeof(double));
    refs->lse64 = malloc(n_lse * sizeof(double));
    refs->lse_naive = malloc(n_lse * sizeof(double));
    if (!refs->out64 || !refs->out_naive || !refs->lse64 || !refs->lse_naive) return -1;
    if (conf_reference_fwd(&p->desc, &p->args, CONF_REF_F64, refs->out64, refs->lse64)) return -1;
    return conf_reference_fwd(&p->desc, &p->args, CONF_REF_NAIVE, refs->out_naive, refs->lse_naive);
}

static void run_all(conf_problem *p, int device, const conf_options *o, conf_result *r) {
    /* The planner's choice decides whether the case is supported at all. */
    fa_plan *plan = NULL;
    fa_status st = fa_plan_create(&plan, device, &p->desc);
    if (st == FA_ERR_UNSUPPORTED) {
        set_msg(r, CONF_UNSUPPORTED, "fa_plan_create: %s", fa_last_error());
        return;
    }
    if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "fa_plan_create returned %s: %s", fa_status_string(st), fa_last_error());
        return;
    }
    fa_plan_destroy(plan);
    fa_tile_config *cfgs = malloc(sizeof(fa_tile_config) * MAX_CANDIDATES);
    int count = 0;
    if (!cfgs) {
        set_msg(r, CONF_FAIL, "out of host memory");
        return;
    }
    st = fa_plan_candidates(device, &p->desc, cfgs, MAX_CANDIDATES, &count);
    if (st != FA_OK || count <= 0) {
        set_msg(r, CONF_FAIL, "fa_plan_candidates returned %s with %d candidates although fa_plan_create succeeded: %s",
                fa_status_string(st), count, fa_last_error());
        free(cfgs);
        return;
    }
    r->configs_listed = count;
    if (count > MAX_CANDIDATES) count = MAX_CANDIDATES;
    int runs = o->max_configs > 0 && count > o->max_configs ? o->max_configs : count;

    conf_refs refs = {0};
    double t0 = now_s();
    if (compute_refs(p, &refs)) {
        set_msg(r, CONF_FAIL, "out of host memory for the reference");
        free_refs(&refs);
        free(cfgs);
        return;
    }
    r->ref_seconds = now_s() - t0;
    conf_tolerance tol = conf_tolerance_compute(p, &refs);

    fa_tile_config chosen;
    memset(&chosen, 0, sizeof chosen);
    int failed = run_one(p, &refs, &tol, device, NULL, 0, r, &chosen);
    for (int k = 0; k < runs && !failed; k++) {
        /* When capped, spread the runs over the whole list (best first ... last) rather than its head: the
         * smallest and largest tiles are the ones that meet the edge cases. */
        int n = runs == count ? k : runs == 1 ? 0 : (int)((int64_t)k * (count - 1) / (runs - 1));
        if (same_config(&cfgs[n], &chosen)) continue; /* already checked as the planner's choice */
        failed = run_one(p, &refs, &tol, device, &cfgs[n], k % 2 == 0, r, NULL);
    }
    if (!failed) r->verdict = CONF_PASS;
    free_refs(&refs);
    free(cfgs);
}

void conf_run_case(int device, const conf_case *c, const conf_options *o, conf_result *r) {
    memset(r, 0, sizeof *r);
    r->verdict = CONF_FAIL; /* until proven otherwise */
    r->seed = o->seed;
    if (c->kind != CONF_FWD) { /* backward rows need fa_bwd, a gradient reference and the 3x rule: not yet here */
        set_msg(r, CONF_SKIPPED, "backward cases are not run by this version of the runner");
        return;
    }
    if (o->quick && c->big) {
        set_msg(r, CONF_SKIPPED, "big case (%.2f GFLOP reference) skipped in quick mode", c->ref_gflop);
        return;
    }
    conf_problem p;
    char err[256];
    if (conf_problem_build(&p, c, case_seed(o->seed, c->index), err, sizeof err)) {
        set_msg(r, CONF_FAIL, "%s", err);
        return;
    }
    run_all(&p, device, o, r);
    conf_problem_free(&p);
    if (r->verdict == CONF_FAIL) {
        size_t n = strlen(r->message);
        snprintf(r->message + n, sizeof r->message - n,
                 "\n    reproduce: flashport-conformance --seed %llu --device %d --case c%03d",
                 (unsigned long long)o->seed, device, c->index);
    }
}
