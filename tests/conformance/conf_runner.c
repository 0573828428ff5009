/* Runs a conformance case against every tile configuration of one device (see conf_runner.h). */
#define _POSIX_C_SOURCE 200809L
#include "conf_runner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf_check.h"
#include "conf_mirror.h"
#include "conf_problem.h"
#include "conf_reference.h"
#include "conf_runner_parts.h"

#ifdef _OPENMP
#include <omp.h>
#endif

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
    s = getenv("FLASHPORT_CONFORMANCE_MAX_GFLOP");
    if (s && *s) o->max_gflop = strtod(s, NULL);
    s = getenv("FLASHPORT_CONFORMANCE_DEVICE_MEMORY");
    o->device_memory = s && *s && strcmp(s, "0") != 0;
    s = getenv("FLASHPORT_CONFORMANCE_MAX_CONFIGS_OPENCL");
    if (s && *s) o->max_configs_opencl = atoi(s);
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
/*
 * One call on the device: the host buffers (poisoned by the caller) go over, the call runs and is waited for
 * (timed), and everything comes back for the checks. Returns the call's status with fa_last_error() copied to
 * err; a failure of the device memory itself is FA_ERR_BACKEND or FA_ERR_INTERNAL with the reason in err, so
 * FA_ERR_UNSUPPORTED always means the backend declined the call.
 */
typedef fa_status (*device_call)(const fa_plan *plan, const void *args);

static fa_status call_fwd(const fa_plan *plan, const void *args) { return fa_fwd(plan, args, NULL); }
static fa_status call_bwd(const fa_plan *plan, const void *args) { return fa_bwd(plan, args, NULL); }

fa_status conf_run_on_device(conf_problem *p, conf_mirror *m, const fa_plan *plan, int bwd, conf_buf *ws,
                               conf_result *r, char *err, size_t errlen) {
    err[0] = '\0';
    if (conf_mirror_set_workspace(m, ws, err, errlen) || conf_mirror_upload(m, p, err, errlen)) return FA_ERR_BACKEND;
    const void *args = bwd ? (const void *)conf_mirror_bwd_args(m, p, err, errlen)
                           : (const void *)conf_mirror_fwd_args(m, p, err, errlen);
    if (!args) return FA_ERR_INTERNAL;
    device_call fn = bwd ? call_bwd : call_fwd;
    double t0 = now_s();
    fa_status st = fn(plan, args);
    if (st != FA_OK) {
        snprintf(err, errlen, "%s", fa_last_error());
        return st;
    }
    /* A GPU call returns once launched; errors its kernel meets show up at the synchronization. */
    fa_status sync = fa_device_synchronize(m->device, NULL);
    r->lib_seconds += now_s() - t0;
    if (sync != FA_OK) {
        snprintf(err, errlen, "fa_device_synchronize after the call: %s: %s", fa_status_string(sync), fa_last_error());
        return sync;
    }
    if (conf_mirror_download(m, p, err, errlen)) return FA_ERR_BACKEND;
    return FA_OK;
}

static int run_one(conf_problem *p, conf_mirror *m, const conf_refs *refs, const conf_tolerance *tol, int device,
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
    char err[512];
    st = conf_run_on_device(p, m, plan, 0, ws.data ? &ws : NULL, r, err, sizeof err);
    char describe[512] = "";
    fa_plan_describe(plan, describe, sizeof describe);
    describe[sizeof describe - 1] = '\0';
    fa_plan_destroy(plan);
    int rc = 0;
    conf_check_result cr;
    char mem[512];
    if (st == FA_ERR_UNSUPPORTED && !cfg) {
        /* The backend takes the problem but declines these arguments (a GPU kernel's alignment, say): the
         * case is unsupported there, with the backend's reason. Later configs must agree, or they fail. */
        set_msg(r, CONF_UNSUPPORTED, "fa_fwd: %s", err);
        conf_mirror_set_workspace(m, NULL, err, sizeof err);
        conf_buf_free(&ws);
        return -1;
    } else if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "%s: fa_fwd returned %s: %s", label, fa_status_string(st), err);
        rc = -1;
    } else if (ws.data && !conf_buf_canaries_ok(&ws)) {
        set_msg(r, CONF_FAIL, "%s: canary bytes around the caller's %lld-byte workspace overwritten", label,
                (long long)ws_size);
        rc = -1;
    } else if (conf_problem_check_memory(p, mem, sizeof mem) != 0) {
        set_msg(r, CONF_FAIL, "%s: %s", label, mem);
        rc = -1;
    } else if (p->desc.seqlen_new > 0 && conf_check_append(p, mem, sizeof mem) != 0) {
        set_msg(r, CONF_FAIL, "%s: KV-cache append: %s", label, mem);
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
    conf_mirror_set_workspace(m, NULL, err, sizeof err);
    conf_buf_free(&ws);
    return rc;
}

/* Each case gets its own stream of inputs from the base seed, so one case reproduces alone (--case). */
static uint64_t case_seed(uint64_t base, int index) {
    uint64_t s = base ^ (0x51ed270b27d3a8f1ull * (uint64_t)(index + 1));
    return conf_rng_next(&s);
}

void conf_free_refs(conf_refs *refs) {
    free(refs->out64);
    free(refs->lse64);
    free(refs->out_naive);
    free(refs->lse_naive);
    free(refs->lse_mag);
}

int conf_compute_refs(const conf_problem *p, conf_refs *refs) {
    size_t n_out = (size_t)(p->rows * p->desc.heads_q * p->desc.head_dim_v) + 1;
    size_t n_lse = (size_t)(p->rows * p->desc.heads_q) + 1;
    refs->out64 = malloc(n_out * sizeof(double));
    refs->out_naive = malloc(n_out * sizeof(double));
    refs->lse64 = malloc(n_lse * sizeof(double));
    refs->lse_naive = malloc(n_lse * sizeof(double));
    refs->lse_mag = malloc(n_lse * sizeof(double));
    if (!refs->out64 || !refs->out_naive || !refs->lse64 || !refs->lse_naive || !refs->lse_mag) return -1;
    if (conf_reference_fwd(&p->desc, &p->args, CONF_REF_F64, refs->out64, refs->lse64, refs->lse_mag)) return -1;
    return conf_reference_fwd(&p->desc, &p->args, CONF_REF_NAIVE, refs->out_naive, refs->lse_naive, NULL);
}

static void run_all(conf_problem *p, conf_mirror *m, int device, const conf_options *o, conf_result *r) {
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
    int max_configs = o->max_configs;
    fa_device_props props;
    if (o->max_configs_opencl > 0 && fa_device_get(device, &props) == FA_OK && props.backend == FA_BACKEND_OPENCL &&
        (max_configs <= 0 || o->max_configs_opencl < max_configs))
        max_configs = o->max_configs_opencl;
    int runs = max_configs > 0 && count > max_configs ? max_configs : count;

    conf_refs refs = {0};
    double t0 = now_s();
    if (conf_compute_refs(p, &refs)) {
        set_msg(r, CONF_FAIL, "out of host memory for the reference");
        conf_free_refs(&refs);
        free(cfgs);
        return;
    }
    r->ref_seconds = now_s() - t0;
    conf_tolerance tol = conf_tolerance_compute(p, &refs);

    fa_tile_config chosen;
    memset(&chosen, 0, sizeof chosen);
    int failed = run_one(p, m, &refs, &tol, device, NULL, 0, r, &chosen);
    for (int k = 0; k < runs && !failed; k++) {
        /* When capped, spread the runs over the whole list (best first ... last) rather than its head: the
         * smallest and largest tiles are the ones that meet the edge cases. */
        int n = runs == count ? k : runs == 1 ? 0 : (int)((int64_t)k * (count - 1) / (runs - 1));
        if (same_config(&cfgs[n], &chosen)) continue; /* already checked as the planner's choice */
        failed = run_one(p, m, &refs, &tol, device, &cfgs[n], k % 2 == 0, r, NULL);
    }
    if (!failed) r->verdict = CONF_PASS;
    conf_free_refs(&refs);
    free(cfgs);
}

/* ------------------------------------------------------------------ backward cases */

void conf_free_grad_refs(conf_grad_refs *g) {
    for (int k = 0; k < 3; k++) {
        free(g->g64[k]);
        free(g->gnaive[k]);
    }
    free(g->key_seen);
}

int conf_compute_grad_refs(const conf_problem *p, conf_grad_refs *g) {
    const fa_attn_desc *d = &p->desc;
    size_t n[3] = {(size_t)(p->rows * d->heads_q * d->head_dim_qk) + 1,
                   (size_t)(p->key_rows * d->heads_kv * d->head_dim_qk) + 1,
                   (size_t)(p->key_rows * d->heads_kv * d->head_dim_v) + 1};
    for (int k = 0; k < 3; k++) {
        g->g64[k] = malloc(n[k] * sizeof(double));
        g->gnaive[k] = malloc(n[k] * sizeof(double));
        if (!g->g64[k] || !g->gnaive[k]) return -1;
    }
    g->key_seen = malloc((size_t)p->key_rows + 1);
    if (!g->key_seen) return -1;
    if (conf_reference_bwd(d, &p->args, &p->bargs.dout, CONF_REF_F64, g->g64[0], g->g64[1], g->g64[2], g->mag,
                           g->key_seen))
        return -1;
    return conf_reference_bwd(d, &p->args, &p->bargs.dout, CONF_REF_NAIVE, g->gnaive[0], g->gnaive[1], g->gnaive[2],
                              NULL, NULL);
}

/* The gradient buffers' bytes, gaps included (they hold 0xFF after every poisoned run). */
static int save_grads(const conf_problem *p, unsigned char *saved[3]) {
    for (int k = 0; k < 3; k++) {
        const conf_buf *b = &p->buf[CONF_BUF_DQ + k];
        if (!(saved[k] = malloc(b->size + 1))) return -1;
        memcpy(saved[k], b->data, b->size);
    }
    return 0;
}

/* 0 if dq / dk / dv hold exactly the saved bytes; else a message naming the first difference. */
static int same_grads(const conf_problem *p, unsigned char *saved[3], char *msg, size_t len) {
    static const char *const names[3] = {"dq", "dk", "dv"};
    for (int k = 0; k < 3; k++) {
        const conf_buf *b = &p->buf[CONF_BUF_DQ + k];
        if (memcmp(saved[k], b->data, b->size) == 0) continue;
        size_t i = 0;
        while (saved[k][i] == b->data[i]) i++;
        snprintf(msg, len, "%s differs from the first run at byte %zu of %zu (0x%02x, first run 0x%02x)", names[k], i,
                 b->size, b->data[i], saved[k][i]);
        return -1;
    }
    return 0;
}

/* One fa_bwd call on poisoned gradients, optionally with a caller-owned workspace. */
static fa_status bwd_call(conf_problem *p, conf_mirror *m, const fa_plan *plan, int use_workspace, conf_result *r,
                          int *ws_ok, char *err, size_t errlen) {
    conf_buf ws = {0};
    int64_t ws_size = fa_plan_workspace_size(plan);
    p->bargs.workspace = NULL;
    p->bargs.workspace_size = 0;
    *ws_ok = 1;
    if (use_workspace && ws_size > 0) {
        if (conf_buf_alloc(&ws, (size_t)ws_size)) {
            snprintf(err, errlen, "out of host memory for a %lld-byte workspace", (long long)ws_size);
            return FA_ERR_OUT_OF_MEMORY;
        }
        p->bargs.workspace = ws.data;
        p->bargs.workspace_size = ws_size;
    }
    conf_problem_poison(p);
    fa_status st = conf_run_on_device(p, m, plan, 1, ws.data ? &ws : NULL, r, err, errlen);
    r->configs_run++;
    if (ws.data) *ws_ok = conf_buf_canaries_ok(&ws);
    char ignored[64];
    conf_mirror_set_workspace(m, NULL, ignored, sizeof ignored);
    conf_buf_free(&ws);
    p->bargs.workspace = NULL;
    p->bargs.workspace_size = 0;
    return st;
}

/* Gradients checked after a call: memory first, then the values. */
static int check_bwd_run(conf_problem *p, fa_status st, const char *err, int ws_ok, const conf_refs *refs,
                         const conf_grad_refs *g, const conf_grad_tolerance *tol, const char *label, conf_result *r) {
    char mem[512];
    conf_check_result cr;
    if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "%s: fa_bwd returned %s: %s", label, fa_status_string(st), err);
        return -1;
    }
    if (!ws_ok) {
        set_msg(r, CONF_FAIL, "%s: canary bytes around the caller's workspace overwritten", label);
        return -1;
    }
    if (conf_problem_check_memory(p, mem, sizeof mem) != 0) {
        set_msg(r, CONF_FAIL, "%s: %s", label, mem);
        return -1;
    }
    int rc = conf_check_grads(p, refs, g, tol, &cr);
    if (cr.ratio > r->worst_ratio) {
        r->worst_ratio = cr.ratio;
        snprintf(r->worst_config, sizeof r->worst_config, "%s", label);
    }
    if (rc) set_msg(r, CONF_FAIL, "%s: %s", label, cr.msg);
    return rc;
}

/* desc.deterministic: the same gradients, bit for bit, run after run and under other OpenMP thread counts. */
static int check_determinism(conf_problem *p, conf_mirror *m, const fa_plan *plan, conf_result *r) {
    unsigned char *saved[3] = {NULL, NULL, NULL};
    char msg[256], err[512];
    int rc = 0, ws_ok;
    if (save_grads(p, saved)) {
        set_msg(r, CONF_FAIL, "out of host memory");
        rc = -1;
    }
    fa_status st = FA_OK;
    if (rc == 0) { /* the same call again, with a caller-owned workspace this time */
        st = bwd_call(p, m, plan, 1, r, &ws_ok, err, sizeof err);
        if (st != FA_OK || !ws_ok || same_grads(p, saved, msg, sizeof msg)) {
            set_msg(r, CONF_FAIL, "deterministic: second run (caller's workspace): %s",
                    st != FA_OK ? err : !ws_ok ? "canary bytes around the workspace overwritten" : msg);
            rc = -1;
        }
    }
#ifdef _OPENMP
    int base = omp_get_max_threads(), counts[2] = {1, base + 1};
    for (int n = 0; rc == 0 && n < 2; n++) {
        omp_set_num_threads(counts[n]);
        st = bwd_call(p, m, plan, n, r, &ws_ok, err, sizeof err);
        omp_set_num_threads(base);
        if (st != FA_OK || !ws_ok || same_grads(p, saved, msg, sizeof msg)) {
            set_msg(r, CONF_FAIL, "deterministic: run with %d OpenMP thread(s) (first run: %d): %s", counts[n], base,
                    st != FA_OK ? err : !ws_ok ? "canary bytes around the workspace overwritten" : msg);
            rc = -1;
        }
    }
#endif
    for (int k = 0; k < 3; k++) free(saved[k]);
    return rc;
}

static void run_bwd(conf_problem *p, conf_mirror *m, int device, conf_result *r) {
    fa_plan *plan = NULL;
    fa_status st = fa_plan_create(&plan, device, &p->desc);
    if (st == FA_ERR_UNSUPPORTED) {
        set_msg(r, CONF_UNSUPPORTED, "fa_plan_create (with_backward=1): %s", fa_last_error());
        return;
    }
    if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "fa_plan_create (with_backward=1) returned %s: %s", fa_status_string(st),
                fa_last_error());
        return;
    }
    r->configs_listed = 1;
    char describe[1024] = "";
    fa_plan_describe(plan, describe, sizeof describe);
    describe[sizeof describe - 1] = '\0';

    conf_refs refs = {0};
    conf_grad_refs g;
    memset(&g, 0, sizeof g);
    double t0 = now_s();
    int rc = 0;
    if (conf_compute_refs(p, &refs) || conf_compute_grad_refs(p, &g)) {
        set_msg(r, CONF_FAIL, "out of host memory for the reference");
        rc = -1;
    }
    r->ref_seconds = now_s() - t0;
    conf_tolerance tol = {0, 0, 0, 0};
    conf_grad_tolerance gtol;
    memset(&gtol, 0, sizeof gtol);
    if (rc == 0) {
        tol = conf_tolerance_compute(p, &refs);
        gtol = conf_grad_tolerance_compute(p, &refs, &g);
    }

    /* the forward, as a user runs it before the backward: its out and LSE feed fa_bwd */
    char mem[512], err[512];
    conf_check_result cr;
    int unsupported = 0;
    if (rc == 0) {
        conf_problem_poison(p);
        st = conf_run_on_device(p, m, plan, 0, NULL, r, err, sizeof err);
        if (st == FA_ERR_UNSUPPORTED) { /* declined at execution: see run_one */
            set_msg(r, CONF_UNSUPPORTED, "fa_fwd (with_backward=1): %s", err);
            rc = -1, unsupported = 1;
        } else if (st != FA_OK) {
            set_msg(r, CONF_FAIL, "forward of the with_backward plan: fa_fwd returned %s: %s", fa_status_string(st),
                    err);
            rc = -1;
        } else if (conf_problem_check_memory(p, mem, sizeof mem) != 0) {
            set_msg(r, CONF_FAIL, "forward of the with_backward plan: %s", mem);
            rc = -1;
        } else if (conf_check_outputs(p, &refs, &tol, &cr) != 0) {
            set_msg(r, CONF_FAIL, "forward of the with_backward plan: %s", cr.msg);
            rc = -1;
        } else {
            r->worst_ratio = cr.ratio;
            snprintf(r->worst_config, sizeof r->worst_config, "forward of the with_backward plan");
        }
    }
    if (rc == 0 && conf_problem_begin_bwd(p)) {
        set_msg(r, CONF_FAIL, "out of host memory");
        rc = -1;
    }
    int ws_ok = 1;
    if (rc == 0) {
        st = bwd_call(p, m, plan, 0, r, &ws_ok, err, sizeof err);
        if (st == FA_ERR_UNSUPPORTED) {
            r->configs_run--;
            set_msg(r, CONF_UNSUPPORTED, "fa_bwd: %s", err);
            rc = -1, unsupported = 1;
        } else {
            rc = check_bwd_run(p, st, err, ws_ok, &refs, &g, &gtol, "backward", r);
        }
    }
    if (rc == 0 && p->desc.deterministic) {
        rc = check_determinism(p, m, plan, r);
    } else if (rc == 0) { /* once more through a caller-owned workspace */
        st = bwd_call(p, m, plan, 1, r, &ws_ok, err, sizeof err);
        rc = check_bwd_run(p, st, err, ws_ok, &refs, &g, &gtol, "backward (caller's workspace)", r);
    }
    if (rc && !unsupported) {
        size_t n = strlen(r->message);
        snprintf(r->message + n, sizeof r->message - n, "\n    plan: %s", describe);
    } else {
        r->verdict = CONF_PASS;
    }
    fa_plan_destroy(plan);
    conf_free_refs(&refs);
    conf_free_grad_refs(&g);
}

void conf_run_case(int device, const conf_case *c, const conf_options *o, conf_result *r) {
    memset(r, 0, sizeof *r);
    r->verdict = CONF_FAIL; /* until proven otherwise */
    r->seed = o->seed;
    if (o->quick && c->big) {
        set_msg(r, CONF_SKIPPED, "big case (%.2f GFLOP reference) skipped in quick mode", c->ref_gflop);
        return;
    }
    if (o->max_gflop > 0.0 && c->ref_gflop > o->max_gflop) {
        set_msg(r, CONF_SKIPPED, "%.3f GFLOP reference is over the %.3f GFLOP budget (FLASHPORT_CONFORMANCE_MAX_GFLOP)",
                c->ref_gflop, o->max_gflop);
        return;
    }
    conf_problem p;
    char err[256];
    if (conf_problem_build(&p, c, case_seed(o->seed, c->index), err, sizeof err)) {
        set_msg(r, CONF_FAIL, "%s", err);
        return;
    }
    /* A device other than the host gets the buffers in its own memory (and the CPU too when asked). */
    fa_device_props props;
    memset(&props, 0, sizeof props);
    fa_status st = fa_device_get(device, &props);
    conf_mirror m;
    if (st != FA_OK) {
        set_msg(r, CONF_FAIL, "fa_device_get: %s", fa_last_error());
    } else if (conf_mirror_create(&m, &p, device, props.backend != FA_BACKEND_CPU || o->device_memory, err,
                                  sizeof err) == 0) {
        if (c->kind == CONF_BWD)
            run_bwd(&p, &m, device, r);
        else
            run_all(&p, &m, device, o, r);
        conf_mirror_free(&m);
    } else {
        set_msg(r, CONF_FAIL, "%s", err);
    }
    conf_problem_free(&p);
    if (r->verdict == CONF_FAIL) {
        size_t n = strlen(r->message);
        snprintf(r->message + n, sizeof r->message - n,
                 "\n    reproduce: flashport-conformance --seed %llu --device %d --case c%03d",
                 (unsigned long long)o->seed, device, c->index);
    }
}

int conf_device_isa(int device, char *isa, size_t isa_size, char *detail, size_t detail_size) {
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = FA_DTYPE_F16;
    d.batch = 1;
    d.seqlen_q = d.seqlen_k = 16;
    d.heads_q = d.heads_kv = 1;
    d.head_dim_qk = d.head_dim_v = 64;
    fa_plan *plan = NULL;
    if (fa_plan_create(&plan, device, &d) != FA_OK) return -1;
    char text[4096];
    fa_plan_describe(plan, text, sizeof text);
    text[sizeof text - 1] = '\0';
    fa_plan_destroy(plan);
    const char *key = "cpu kernels: ", *at = strstr(text, key);
    if (!at) return -1;
    at += strlen(key);
    size_t word = strcspn(at, " \n"), line = strcspn(at, "\n");
    snprintf(isa, isa_size, "%.*s", (int)word, at);
    if (detail && detail_size) snprintf(detail, detail_size, "%.*s", (int)line, at);
    return 0;
}

int conf_cpu_supports_isa(const char *isa) {
    if (!strcmp(isa, "portable")) return 1;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
    if (!strcmp(isa, "avx512")) return avx512;
    if (!strcmp(isa, "avx512bf16")) return avx512 && __builtin_cpu_supports("avx512bf16");
    if (!strcmp(isa, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    if (!strcmp(isa, "avx512bf16") || !strcmp(isa, "avx512") || !strcmp(isa, "avx2")) return 0;
#endif
    return -1;
}
