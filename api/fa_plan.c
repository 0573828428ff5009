/* Plans: validate the problem once, ask the backend's selector for a kernel family, let the planner pick. */
#include "fa_internal.h"
#include "fa_tune_bucket.h"
#include "fa_tune_lookup.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CANDIDATES 4096

static int same_config(const fa_tile_config *a, const fa_tile_config *b)
{
    return a->block_q == b->block_q && a->block_kv == b->block_kv && a->warps == b->warps &&
           a->stages == b->stages && a->num_splits == b->num_splits;
}

/* A pass's kernel family and its ranked candidates, best first (all: malloc'd, MAX_CANDIDATES entries). */
typedef struct pass_candidates {
    const fa_kernel_family *family;
    fa_planned *all;
    int n;
} pass_candidates;

static fa_status enumerate(const fa_device_entry *e, int device, const fa_attn_desc *desc, fa_pass pass,
                           pass_candidates *pc)
{
    char why[512] = "";
    pc->all = NULL;
    pc->n = 0;
    fa_status st = e->backend->iface->select(e->backend->ctx, e->backend_device, desc, pass, &pc->family, why, sizeof why);
    if (st != FA_OK)
        return fa_set_error(st, "device %d (%s) cannot run this %s pass: %s", device, e->backend->iface->name,
                            pass == FA_PASS_FWD ? "forward" : "backward", why);
    pc->all = malloc(sizeof(*pc->all) * MAX_CANDIDATES);
    if (!pc->all) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "out of memory while planning");
    int n = fa_planner_enumerate(pc->family, &e->props, desc, pc->all, MAX_CANDIDATES, why, sizeof why);
    pc->n = n > MAX_CANDIDATES ? MAX_CANDIDATES : n;
    if (pc->n == 0) {
        free(pc->all);
        pc->all = NULL;
        return fa_set_error(FA_ERR_UNSUPPORTED, "device %d (%s): no tile configuration of %s fits: %s", device,
                            e->props.name, pc->family->name, why);
    }
    return FA_OK;
}

static int find_candidate(const pass_candidates *pc, const fa_tile_config *c)
{
    for (int i = 0; i < pc->n; i++)
        if (same_config(&pc->all[i].config, c)) return i;
    return -1;
}

static fa_status not_a_candidate(const pass_candidates *pc, const fa_tile_config *c, const char *what, int device)
{
    return fa_set_error(FA_ERR_INVALID_ARGUMENT,
                        "%s=(block_q=%d block_kv=%d warps=%d stages=%d num_splits=%d) is not one of the %d "
                        "candidates of %s for this problem on device %d (see fa_plan_candidates)",
                        what, c->block_q, c->block_kv, c->warps, c->stages, c->num_splits, pc->n, pc->family->name,
                        device);
}

/*
 * The candidate a pass runs: the forced one (explicit API), else the first proposal (FLASHPORT_TILE, tuning
 * caches) that the planner lists for this problem, else the planner's best. source says which.
 */
static fa_status pick(const pass_candidates *pc, int device, fa_pass pass, const fa_tile_config *forced,
                      const fa_tune_proposal *props, int nprops, int *index, char *source, size_t source_size)
{
    const char *what = pass == FA_PASS_FWD ? "config" : "bwd_config";
    if (forced) {
        if ((*index = find_candidate(pc, forced)) < 0) return not_a_candidate(pc, forced, what, device);
        snprintf(source, source_size, "explicit config");
        return FA_OK;
    }
    for (int i = 0; i < nprops; i++) {
        int has = pass == FA_PASS_FWD ? props[i].has_fwd : props[i].has_bwd;
        const fa_tile_config *c = pass == FA_PASS_FWD ? &props[i].fwd : &props[i].bwd;
        if (!has) continue;
        if ((*index = find_candidate(pc, c)) >= 0) {
            snprintf(source, source_size, "%s", props[i].source);
            return FA_OK;
        }
        char t[64];
        fa_tile_format(c, t, sizeof t);
        fa_log("tuning: %s %s from %s is not one of the %d candidates of %s for this problem; ignored",
               pass == FA_PASS_FWD ? "forward" : "backward", t, props[i].source, pc->n, pc->family->name);
    }
    *index = 0;
    snprintf(source, source_size, "planner heuristic");
    return FA_OK;
}

static void resolve_semantics(fa_plan_info *info)
{
    const fa_attn_desc *d = &info->desc;
    info->scale = d->softmax_scale > 0.0f ? d->softmax_scale : (float)(1.0 / sqrt((double)d->head_dim_qk));
    info->window_left = d->window_left;
    info->window_right = d->window_right;
    /* Causal is a window whose right edge is the diagonal. */
    if (d->causal) info->window_right = 0;
}

static fa_status check_forced(const fa_tile_config *c, const char *what)
{
    if (!c) return FA_OK;
    const char *names[5] = {"block_q", "block_kv", "warps", "stages", "num_splits"};
    int values[5] = {c->block_q, c->block_kv, c->warps, c->stages, c->num_splits};
    for (int i = 0; i < 5; i++)
        if (values[i] < 1) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s.%s=%d must be >= 1", what, names[i], values[i]);
    return FA_OK;
}

/* explicit: the caller named the configs (either may be NULL = heuristic); otherwise the lookup order runs. */
static fa_status plan_create(fa_plan **out, int device, const fa_attn_desc *desc, int explicit_configs,
                             const fa_tile_config *forced, const fa_tile_config *forced_bwd)
{
    if (!out) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "plan=NULL must point to an fa_plan *");
    fa_status st = fa_validate_desc(desc);
    if (st != FA_OK) return st;
    const fa_device_entry *e = fa_registry_device(device);
    if (!e) return FA_ERR_NO_DEVICE;
    if ((st = check_forced(forced, "config")) != FA_OK || (st = check_forced(forced_bwd, "bwd_config")) != FA_OK)
        return st;
    if (forced_bwd && !desc->with_backward)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "bwd_config given but desc.with_backward=0: the plan has no backward");

    fa_plan *p = calloc(1, sizeof *p);
    if (!p) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "out of memory allocating a plan");
    p->device = device;
    p->entry = e;
    p->info.desc = *desc;
    p->info.backend_device = e->backend_device;
    resolve_semantics(&p->info);

    fa_tune_proposal props[FA_TUNE_MAX_PROPOSALS];
    int nprops = explicit_configs ? 0 : fa_tune_proposals(e, desc, props, FA_TUNE_MAX_PROPOSALS);
    pass_candidates fwd = {0}, bwd = {0};
    int pick_fwd = 0, pick_bwd = 0;
    st = enumerate(e, device, desc, FA_PASS_FWD, &fwd);
    if (st == FA_OK) st = pick(&fwd, device, FA_PASS_FWD, forced, props, nprops, &pick_fwd, p->fwd_source, sizeof p->fwd_source);
    if (st == FA_OK) {
        p->info.fwd_family = fwd.family;
        p->fwd_rank = fwd.all[pick_fwd];
        p->info.fwd_config = p->fwd_rank.config;
        if (desc->with_backward) {
            st = enumerate(e, device, desc, FA_PASS_BWD, &bwd);
            if (st == FA_OK)
                st = pick(&bwd, device, FA_PASS_BWD, forced_bwd, props, nprops, &pick_bwd, p->bwd_source,
                          sizeof p->bwd_source);
            if (st == FA_OK) {
                p->info.bwd_family = bwd.family;
                p->info.bwd_config = bwd.all[pick_bwd].config;
            }
        }
    }
    free(fwd.all);
    free(bwd.all);
    if (st == FA_OK) {
        int64_t ws = 0;
        if (p->info.fwd_family->workspace_bytes) ws = p->info.fwd_family->workspace_bytes(desc, &p->info.fwd_config);
        if (p->info.bwd_family && p->info.bwd_family->workspace_bytes) {
            int64_t b = p->info.bwd_family->workspace_bytes(desc, &p->info.bwd_config);
            if (b > ws) ws = b;
        }
        p->info.workspace_bytes = ws;
        if (e->backend->iface->plan_prepare) st = e->backend->iface->plan_prepare(e->backend->ctx, &p->info);
    }
    if (st != FA_OK) {
        free(p);
        return st;
    }
    fa_log("plan on device %d: %s block_q=%d block_kv=%d splits=%d (%s)", device, p->info.fwd_family->name,
           p->info.fwd_config.block_q, p->info.fwd_config.block_kv, p->info.fwd_config.num_splits, p->fwd_source);
    *out = p;
    return FA_OK;
}

fa_status fa_plan_create(fa_plan **plan, int device, const fa_attn_desc *desc)
{
    return plan_create(plan, device, desc, 0, NULL, NULL);
}

fa_status fa_plan_create_with_config(fa_plan **plan, int device, const fa_attn_desc *desc,
                                     const fa_tile_config *config)
{
    if (!config) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "config=NULL: use fa_plan_create for the planner's choice");
    return plan_create(plan, device, desc, 1, config, NULL);
}

fa_status fa_plan_create_with_configs(fa_plan **plan, int device, const fa_attn_desc *desc,
                                      const fa_tile_config *fwd_config, const fa_tile_config *bwd_config)
{
    return plan_create(plan, device, desc, 1, fwd_config, bwd_config);
}

void fa_plan_destroy(fa_plan *plan)
{
    if (!plan) return;
    const fa_backend_iface *b = plan->entry->backend->iface;
    if (b->plan_release) b->plan_release(plan->entry->backend->ctx, &plan->info);
    free(plan);
}

int64_t fa_plan_workspace_size(const fa_plan *plan) { return plan ? plan->info.workspace_bytes : 0; }

fa_status fa_plan_config(const fa_plan *plan, fa_tile_config *config)
{
    if (!plan || !config) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s=NULL", plan ? "config" : "plan");
    *config = plan->info.fwd_config;
    return FA_OK;
}

fa_status fa_plan_bwd_config(const fa_plan *plan, fa_tile_config *config)
{
    if (!plan || !config) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s=NULL", plan ? "config" : "plan");
    if (!plan->info.bwd_family)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "the plan has no backward pass (desc.with_backward=0)");
    *config = plan->info.bwd_config;
    return FA_OK;
}

size_t fa_plan_describe(const fa_plan *plan, char *buf, size_t size)
{
    char text[4096]; /* room for two tuning-cache paths */
    if (!plan) {
        snprintf(text, sizeof text, "(no plan)");
    } else {
        const fa_plan_info *i = &plan->info;
        const fa_attn_desc *d = &i->desc;
        const fa_planned *r = &plan->fwd_rank;
        int n = snprintf(text, sizeof text,
                         "device %d: %s backend, %s (%s)\n"
                         "problem: %s b=%lld sq=%lld sk=%lld hq=%lld hk=%lld d=%lld dv=%lld scale=%g%s%s%s%s%s%s\n"
                         "forward kernel %s: block_q=%d block_kv=%d warps=%d stages=%d splits=%d\n"
                         "  chosen by %s: score %.3f = wave efficiency %.3f (%lld work items over %d compute "
                         "units x %d resident) x tile efficiency %.3f; needs %lld B of %lld B shared/local memory\n",
                         plan->device, plan->entry->backend->iface->name, plan->entry->props.name,
                         plan->entry->props.arch, fa_dtype_name(d->dtype), (long long)d->batch, (long long)d->seqlen_q,
                         (long long)d->seqlen_k, (long long)d->heads_q, (long long)d->heads_kv,
                         (long long)d->head_dim_qk, (long long)d->head_dim_v, (double)i->scale,
                         d->causal ? " causal" : "", (d->window_left >= 0 || d->window_right >= 0) ? " window" : "",
                         d->softcap > 0 ? " softcap" : "", d->alibi ? " alibi" : "", d->varlen ? " varlen" : "",
                         d->paged_kv ? " paged" : "", i->fwd_family->name, i->fwd_config.block_q,
                         i->fwd_config.block_kv, i->fwd_config.warps, i->fwd_config.stages, i->fwd_config.num_splits,
                         plan->fwd_source, r->score, r->wave_efficiency, (long long)r->work_items,
                         plan->entry->props.compute_units, r->blocks_per_cu, r->tile_efficiency,
                         (long long)r->smem_bytes,
                         (long long)(plan->entry->props.shared_mem_per_block_optin > plan->entry->props.shared_mem_per_block
                                         ? plan->entry->props.shared_mem_per_block_optin
                                         : plan->entry->props.shared_mem_per_block));
        if (n > 0 && (size_t)n < sizeof text && i->bwd_family)
            n += snprintf(text + n, sizeof text - (size_t)n,
                          "backward kernel %s: block_q=%d block_kv=%d warps=%d stages=%d splits=%d\n  chosen by %s\n",
                          i->bwd_family->name, i->bwd_config.block_q, i->bwd_config.block_kv, i->bwd_config.warps,
                          i->bwd_config.stages, i->bwd_config.num_splits, plan->bwd_source);
        const fa_backend *be = plan->entry->backend;
        if (n > 0 && (size_t)n < sizeof text && be->iface->describe)
            n += (int)be->iface->describe(be->ctx, i, text + n, sizeof text - (size_t)n);
        if (n > 0 && (size_t)n < sizeof text)
            snprintf(text + n, sizeof text - (size_t)n, "workspace: %lld B\n", (long long)i->workspace_bytes);
    }
    size_t len = strlen(text);
    if (buf && size > 0) {
        size_t c = len < size - 1 ? len : size - 1;
        memcpy(buf, text, c);
        buf[c] = 0;
    }
    return len;
}

static fa_status candidates(int device, const fa_attn_desc *desc, fa_pass pass, fa_tile_config *configs, int max,
                            int *count)
{
    if (!count) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "count=NULL must point to an int");
    if (max < 0 || (max > 0 && !configs))
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "configs=%p max=%d: need room for max configs", (void *)configs, max);
    fa_status st = fa_validate_desc(desc);
    if (st != FA_OK) return st;
    const fa_device_entry *e = fa_registry_device(device);
    if (!e) return FA_ERR_NO_DEVICE;
    fa_attn_desc d = *desc;
    if (pass == FA_PASS_BWD) d.with_backward = 1; /* as plan_create plans the backward */
    pass_candidates pc;
    if ((st = enumerate(e, device, &d, pass, &pc)) != FA_OK) return st;
    for (int i = 0; i < pc.n && i < max; i++) configs[i] = pc.all[i].config;
    free(pc.all);
    *count = pc.n;
    return FA_OK;
}

fa_status fa_plan_candidates(int device, const fa_attn_desc *desc, fa_tile_config *configs, int max, int *count)
{
    return candidates(device, desc, FA_PASS_FWD, configs, max, count);
}

fa_status fa_plan_bwd_candidates(int device, const fa_attn_desc *desc, fa_tile_config *configs, int max, int *count)
{
    return candidates(device, desc, FA_PASS_BWD, configs, max, count);
}
