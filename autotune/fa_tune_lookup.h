/*
 * What fa_plan_create asks before its heuristic: configs proposed, in lookup order, by the FLASHPORT_TILE
 * override, the user's tuning cache and the install tree's. fa_plan.c takes the first proposal that is one of
 * the planner's candidates for the problem (logging the others) and falls back to the planner heuristic.
 * Core-private.
 */
#ifndef FA_TUNE_LOOKUP_H
#define FA_TUNE_LOOKUP_H

#include "fa_internal.h"

#define FA_TUNE_MAX_PROPOSALS 4

typedef struct fa_tune_proposal {
    int has_fwd, has_bwd;
    fa_tile_config fwd, bwd;
    char source[768]; /* for the plan's description: "tuning cache /path/file (bucket ...)" */
} fa_tune_proposal;

/* Proposals for desc on the device, in lookup order. Never fails: unusable sources are logged and skipped. */
int fa_tune_proposals(const fa_device_entry *e, const fa_attn_desc *desc, fa_tune_proposal *out, int max);

#endif
