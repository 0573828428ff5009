/* Conformance checks of given tile configurations, references computed once (conf_config_check.h). */
#include "conf_config_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_runner_parts.h"

struct conf_config_check {
    int device, mirror;
    conf_case c;             /* the problem points at it */
    uint64_t seed;
    conf_problem p;
    conf_mirror m;
    int built, used;         /* p and m exist; p has run a backward (its out/lse are inputs now) */
    conf_refs refs;
    conf_tolerance tol;
    conf_grad_refs g;
    conf_grad_tolerance gtol;
};

/* The problem and its device copies; the same seed gives the same inputs every time. */
static int build(conf_config_check *cc, char *err, size_t errlen)
{
    if (conf_problem_build(&cc->p, &cc->c, cc->seed, err, errlen)) return -1;
    if (conf_mirror_create(&cc->m, &cc->p, cc->device, cc->mirror, err, errlen)) {
        conf_problem_free(&cc->p);
        return -1;
    }
    cc->built = 1;
    cc->used = 0;
    return 0;
}

static void unbuild(conf_config_check *cc)
{
    if (!cc->built) return;
    conf_mirror_free(&cc->m);
    conf_problem_free(&cc->p);
    cc->built = 0;
}

void conf_config_check_close(conf_config_check *cc)
{
    if (!cc) return;
    unbuild(cc);
    conf_free_refs(&cc->refs);
    conf_free_grad_refs(&cc->g);
    free(cc);
}

conf_config_check *conf_config_check_open(int device, const conf_case *c, uint64_t seed, char *err, size_t errlen)
{
    conf_config_check *cc = calloc(1, sizeof *cc);
    if (!cc) {
        snprintf(err, errlen, "out of host memory");
        return NULL;
    }
    cc->device = device;
    cc->c = *c;
    cc->seed = seed;
    fa_device_props props;
    if (fa_device_get(device, &props) != FA_OK) {
        snprintf(err, errlen, "fa_device_get(%d): %s", device, fa_last_error());
        free(cc);
        return NULL;
    }
    cc->mirror = props.backend != FA_BACKEND_CPU; /* a GPU's kernels read its own memory */
    if (build(cc, err, errlen)) {
        free(cc);
        return NULL;
    }
    if (conf_compute_refs(&cc->p, &cc->refs) || (c->kind == CONF_BWD && conf_compute_grad_refs(&cc->p, &cc->g))) {
        snprintf(err, errlen, "out of host memory for the references");
        conf_config_check_close(cc);
        return NULL;
    }
    cc->tol = conf_tolerance_compute(&cc->p, &cc->refs);
    if (c->kind == CONF_BWD) cc->gtol = conf_grad_tolerance_compute(&cc->p, &cc->refs, &cc->g);
    return cc;
}

static int same_config(const fa_tile_config *a, const fa_tile_config *b)
{
    return a->block_q == b->block_q && a->block_kv == b->block_kv && a->warps == b->warps &&
           a->stages == b->stages && a->num_splits == b->num_splits;
}

/* One pass on poisoned outputs, then memory and value checks. 0 on pass. */
static int run_pass(conf_config_check *cc, const fa_plan *plan, int bwd, double *ratio, char *msg, size_t msglen)
{
    conf_result r;
    memset(&r, 0, sizeof r);
    char err[512], mem[512];
    cc->p.args.workspace = NULL, cc->p.args.workspace_size = 0;
    cc->p.bargs.workspace = NULL, cc->p.bargs.workspace_size = 0;
    conf_problem_poison(&cc->p);
    fa_status st = conf_run_on_device(&cc->p, &cc->m, plan, bwd, NULL, &r, err, sizeof err);
    const char *what = bwd ? "fa_bwd" : "fa_fwd";
    if (st != FA_OK) {
        snprintf(msg, msglen, "%s returned %s: %s", what, fa_status_string(st), err);
        return -1;
    }
    if (conf_problem_check_memory(&cc->p, mem, sizeof mem)) {
        snprintf(msg, msglen, "%s: %s", what, mem);
        return -1;
    }
    conf_check_result cr;
    int rc = bwd ? conf_check_grads(&cc->p, &cc->refs, &cc->g, &cc->gtol, &cr)
                 : conf_check_outputs(&cc->p, &cc->refs, &cc->tol, &cr);
    if (ratio && cr.ratio > *ratio) *ratio = cr.ratio;
    if (rc) snprintf(msg, msglen, "%s: %s", what, cr.msg);
    return rc;
}

int conf_config_check_run(conf_config_check *cc, const fa_tile_config *fwd, const fa_tile_config *bwd,
                          double *ratio, char *msg, size_t msglen)
{
    int backward = cc->c.kind == CONF_BWD;
    if (ratio) *ratio = 0.0;
    /* a backward run turned out and lse into inputs: start again from the same inputs */
    if (cc->used) unbuild(cc);
    if (!cc->built && build(cc, msg, msglen)) return -1;
    fa_plan *plan = NULL;
    fa_status st = fa_plan_create_with_configs(&plan, cc->device, &cc->p.desc, fwd, backward ? bwd : NULL);
    if (st != FA_OK) {
        snprintf(msg, msglen, "plan creation failed: %s: %s", fa_status_string(st), fa_last_error());
        return -1;
    }
    fa_tile_config got;
    if (fwd && (fa_plan_config(plan, &got) != FA_OK || !same_config(&got, fwd))) {
        snprintf(msg, msglen, "fa_plan_config reports another forward configuration than the one requested");
        fa_plan_destroy(plan);
        return -1;
    }
    int rc = run_pass(cc, plan, 0, ratio, msg, msglen);
    if (rc == 0 && backward) {
        cc->used = 1;
        if (conf_problem_begin_bwd(&cc->p)) {
            snprintf(msg, msglen, "out of host memory");
            rc = -1;
        } else {
            rc = run_pass(cc, plan, 1, ratio, msg, msglen);
        }
    }
    fa_plan_destroy(plan);
    return rc;
}
