/*
 * One bucket's search: the planner's candidates for its representative problem, each first checked against the
 * float64 reference by the conformance rule (conf_config_check.h; a failing one is rejected), then timed
 * (tune_measure.h), best-ranked first until the bucket's share of the budget is spent. The heuristic's config
 * (the planner's first) is always measured. A backward bucket tunes the forward config, then the backward's
 * with that forward. The winner is timed again beside the heuristic's, and kept only if still faster, so the
 * recorded tuned time is never above the heuristic's.
 */
#ifndef TUNE_SEARCH_H
#define TUNE_SEARCH_H

#include "tune_buckets.h"
#include "tune_progress.h"

typedef struct tune_pass_result {
    fa_tile_config heuristic, tuned;
    double heuristic_ms, tuned_ms;
    int candidates, measured, rejected;
    int heuristic_passed;  /* the heuristic's config passed the conformance check */
    int tuned_passed;      /* so did the tuned one (0 only when no candidate passed) */
} tune_pass_result;

typedef struct tune_result {
    const char *status;    /* "tuned", "unsupported", "error", "skipped" (budget spent) */
    char reason[600];
    tune_pass_result fwd, bwd; /* bwd: backward buckets only */
    int has_bwd;
    double heuristic_ms, tuned_ms; /* forward (+ backward) */
    double seconds;
    int plan_picks;        /* after the cache write: fa_plan_create chose the tuned configs (-1: not checked) */
} tune_result;

typedef struct tune_settings {
    int warmup, repeats, max_candidates;
} tune_settings;

void tune_search_bucket(int device, const fa_device_props *props, const tune_spec *spec, int index,
                        const tune_settings *set, double budget_s, tune_progress *pg, tune_result *r);

#endif
