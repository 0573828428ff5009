/*
 * Conformance suite: runs one case on one device. Inputs are fresh random values on every run (seeded from
 * the clock, or FLASHPORT_CONFORMANCE_SEED); the references are computed once, then the planner's own choice
 * and every candidate tile configuration (fa_plan_candidates; FLASHPORT_CONFORMANCE_MAX_CONFIGS caps them) run
 * on poisoned outputs and are checked (conf_check.h, conf_problem.h). Used by both front ends; no cmocka here.
 */
#ifndef CONF_RUNNER_H
#define CONF_RUNNER_H

#include <stdint.h>

#include "conf_cases.h"
#include "flashport.h"

typedef enum conf_verdict {
    CONF_PASS = 0,
    CONF_FAIL,
    CONF_UNSUPPORTED, /* FA_ERR_UNSUPPORTED at plan creation: reported apart, never counted as a pass */
    CONF_SKIPPED      /* not run (quick mode) */
} conf_verdict;

typedef struct conf_options {
    uint64_t seed;   /* base seed; each case derives its own from it and its index */
    int max_configs; /* candidates to run per case besides the planner's choice, spread over the list; 0 = all */
    int quick;       /* skip big cases */
} conf_options;

/* Defaults from the environment: FLASHPORT_CONFORMANCE_SEED, _MAX_CONFIGS, _QUICK. */
void conf_options_from_env(conf_options *o);

typedef struct conf_result {
    conf_verdict verdict;
    int configs_run;      /* fa_fwd calls checked */
    int configs_listed;   /* candidates the planner listed */
    double worst_ratio;   /* max over configs of err / (2 * naive_err + floor) */
    char worst_config[160];
    double ref_seconds, lib_seconds;
    uint64_t seed;        /* the base seed (reproduce with it and the case name) */
    char message[2048];   /* failure or unsupported reason */
} conf_result;

const char *conf_verdict_name(conf_verdict v);

void conf_run_case(int device, const conf_case *c, const conf_options *o, conf_result *r);

#endif
