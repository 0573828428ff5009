/*
 * Conformance suite: runs one case on one device. Inputs are fresh random values on every run (seeded from
 * the clock, or FLASHPORT_CONFORMANCE_SEED); the references are computed once, then the planner's own choice
 * and every candidate tile configuration (fa_plan_candidates; FLASHPORT_CONFORMANCE_MAX_CONFIGS caps them) run
 * on poisoned outputs and are checked (conf_check.h, conf_problem.h); with a KV-cache append the cache is put
 * back before each run and checked after it.
 * Backward cases make one plan with desc.with_backward = 1 (the backward tiles are the planner's: a forced
 * config only fixes the forward's), run its fa_fwd (checked like a forward case), hand that out and LSE to
 * fa_bwd and check dq, dk, dv; then fa_bwd again through a caller-owned workspace, or, with desc.deterministic,
 * again and under 1 and (default + 1) OpenMP threads, each bit-identical to the first run.
 * On a device other than the host the buffers live in its memory (conf_mirror.h): uploaded before each call,
 * downloaded after it, and checked on the host. A case the backend declines (at plan creation, or at the first
 * call with FA_ERR_UNSUPPORTED) is unsupported, with the backend's reason, not failed.
 * Used by both front ends; no cmocka here.
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
    double max_gflop; /* > 0: skip cases whose float64 reference costs more (a finer budget than quick) */
    int device_memory; /* buffers in fa_device_alloc memory on the CPU too (GPUs always have them: conf_mirror.h) */
    /*
     * > 0: max_configs on OpenCL devices, where each candidate is a separate program build (about a second on PoCL);
     * the test command caps them so that the whole suite stays within minutes on a 2-core machine.
     */
    int max_configs_opencl;
} conf_options;

/* Defaults from the environment: FLASHPORT_CONFORMANCE_SEED, _MAX_CONFIGS, _QUICK, _MAX_GFLOP, _DEVICE_MEMORY,
 * _MAX_CONFIGS_OPENCL. */
void conf_options_from_env(conf_options *o);

typedef struct conf_result {
    conf_verdict verdict;
    int configs_run;      /* fa_fwd calls checked (backward cases: fa_bwd calls) */
    int configs_listed;   /* candidates the planner listed */
    double worst_ratio;   /* max over configs of err / (2 * naive_err + floor) */
    char worst_config[160];
    double ref_seconds, lib_seconds;
    uint64_t seed;        /* the base seed (reproduce with it and the case name) */
    char message[2048];   /* failure or unsupported reason */
} conf_result;

const char *conf_verdict_name(conf_verdict v);

void conf_run_case(int device, const conf_case *c, const conf_options *o, conf_result *r);

/* The CPU backend's kernel instruction set for plans made now ("avx512bf16", "avx2", ...: the word after
 * "cpu kernels:" in fa_plan_describe), and the rest of that line in detail (may be NULL). Returns 0 if found,
 * -1 for a device that does not describe one (a GPU) or when no plan could be made. */
int conf_device_isa(int device, char *isa, size_t isa_size, char *detail, size_t detail_size);

/* For FLASHPORT_CPU_ISA runs: whether this CPU can run the named instruction set (mirrors what the CPU backend
 * requires of it: AVX-512 F/VL/DQ + FMA, that plus AVX512_BF16, AVX2 + FMA; "portable" everywhere). -1 for an
 * unknown name. */
int conf_cpu_supports_isa(const char *isa);

#endif
