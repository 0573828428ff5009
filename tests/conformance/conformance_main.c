/*
 * flashport-conformance: the conformance suite as an installed tool, so that a user can check the library on
 * their own hardware. Prints one line per case, then per device a table by feature group: cases passed /
 * failed / unsupported / skipped, configurations run and the worst error ratio (1.0 = at the tolerance).
 * On the CPU it prints the instruction set its kernels run on (fa_plan_describe's "cpu kernels:" line).
 * FLASHPORT_CPU_ISA=avx512bf16|avx512|avx2|portable forces one (the library reads it at plan creation): a forced
 * set that this CPU lacks skips the run (exit 77), a forced set the CPU has but the library does not honour fails.
 * On a GPU the buffers live in its memory (fa_device_alloc; uploaded before each call, checked on the host after
 * downloading them); --device-memory does the same on the CPU. A case a backend declines is counted unsupported,
 * with its reason, never as a pass or a failure. The run ends with one line of counts per device.
 * Exit status: 0 if nothing failed, 1 on any failure, 2 on bad usage, 77 when skipped.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf_cases.h"
#include "conf_runner.h"
#include "flashport.h"

typedef struct group_stats {
    int n[4]; /* by conf_verdict */
    int configs;
    double worst;
    int worst_case;
} group_stats;

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: flashport-conformance [--device N] [--quick] [--case SUBSTRING] [--seed S] [--max-configs N]\n"
            "                             [--max-gflop G] [--device-memory]\n"
            "                             [--list-devices] [--list-cases]\n"
            "  --device N       only device N (default: every device found)\n"
            "  --quick          skip big cases (float64 reference above ~0.3 GFLOP)\n"
            "  --case SUBSTR    only cases whose name contains SUBSTR (names start with cNNN)\n"
            "  --seed S         input seed (default: FLASHPORT_CONFORMANCE_SEED, else the clock)\n"
            "  --max-configs N  run at most N candidate tile configs per case (default: all)\n"
            "  --max-gflop G    skip cases whose float64 reference costs more than G GFLOP\n"
            "  --device-memory  buffers in fa_device_alloc memory on the CPU too (always so on GPUs)\n");
}

static void list_devices(void) {
    int n = fa_device_count();
    printf("%d device(s)\n", n);
    for (int d = 0; d < n; d++) {
        fa_device_props p;
        if (fa_device_get(d, &p) != FA_OK) {
            printf("  %d: fa_device_get failed: %s\n", d, fa_last_error());
            continue;
        }
        printf("  %d: %s  [%s, %s]  %d compute units, simd %d, %.1f GiB\n", d, p.name, fa_backend_name(p.backend),
               p.arch, p.compute_units, p.simd_width, (double)p.memory_bytes / (1 << 30));
    }
}

static void add(group_stats *g, const conf_result *r, int case_index) {
    g->n[r->verdict]++;
    g->configs += r->configs_run;
    if (r->verdict == CONF_PASS || r->verdict == CONF_FAIL) {
        if (r->configs_run > 0 && (g->worst_case < 0 || r->worst_ratio > g->worst)) {
            g->worst = r->worst_ratio;
            g->worst_case = case_index;
        }
    }
}

static void print_row(const char *name, const group_stats *g) {
    char worst[32] = "-";
    if (g->worst_case >= 0) snprintf(worst, sizeof worst, "%.3f (c%03d)", g->worst, g->worst_case);
    printf("  %-14s %5d %5d %6d %5d %8d   %s\n", name, g->n[CONF_PASS], g->n[CONF_FAIL], g->n[CONF_UNSUPPORTED],
           g->n[CONF_SKIPPED], g->configs, worst);
}

/* Runs the selected cases on one device; returns the number of failures, the device's counts in total. */
static int run_device(int dev, const conf_options *o, const char *filter, group_stats *total) {
    fa_device_props p;
    memset(&p, 0, sizeof p);
    if (fa_device_get(dev, &p) != FA_OK) {
        printf("device %d: fa_device_get failed: %s\n", dev, fa_last_error());
        return 1;
    }
    char isa[32] = "", isa_line[128] = "";
    int has_isa = conf_device_isa(dev, isa, sizeof isa, isa_line, sizeof isa_line) == 0;
    printf("\n== device %d: %s  [backend %s, arch %s, %d compute units]\n", dev, p.name, fa_backend_name(p.backend),
           p.arch, p.compute_units);
    if (has_isa) printf("   cpu kernels: %s\n", isa_line);
    group_stats groups[CONF_G_COUNT], all;
    for (int g = 0; g < CONF_G_COUNT; g++) memset(&groups[g], 0, sizeof groups[g]), groups[g].worst_case = -1;
    memset(&all, 0, sizeof all);
    all.worst_case = -1;
    double ref_s = 0.0, lib_s = 0.0, t0 = wall_s();
    for (int k = 0; k < conf_case_count(); k++) {
        const conf_case *c = conf_case_get(k);
        if (filter && !strstr(c->name, filter)) continue;
        conf_result r;
        conf_run_case(dev, c, o, &r);
        ref_s += r.ref_seconds;
        lib_s += r.lib_seconds;
        if (r.verdict == CONF_PASS)
            printf("  PASS  ratio %6.3f  %3d cfg  %6.2fs  %s\n", r.worst_ratio, r.configs_run,
                   r.ref_seconds + r.lib_seconds, c->name);
        else
            printf("  %-11s %s\n      %s\n", conf_verdict_name(r.verdict), c->name, r.message);
        fflush(stdout);
        uint32_t mask = conf_case_groups(c);
        for (int g = 0; g < CONF_G_COUNT; g++)
            if (mask & (1u << g)) add(&groups[g], &r, k);
        add(&all, &r, k);
    }
    printf("\n-- device %d summary: %s [%s, %s%s%s], seed %llu%s\n", dev, p.name, fa_backend_name(p.backend), p.arch,
           has_isa ? ", cpu kernels " : "", isa, (unsigned long long)o->seed, o->quick ? ", quick" : "");
    printf("  %-14s %5s %5s %6s %5s %8s   %s\n", "group", "pass", "fail", "unsup", "skip", "configs",
           "worst ratio (case)");
    for (int g = 0; g < CONF_G_COUNT; g++)
        if (groups[g].n[0] + groups[g].n[1] + groups[g].n[2] + groups[g].n[3] > 0)
            print_row(conf_group_name((conf_group)g), &groups[g]);
    print_row("ALL", &all);
    printf("  time: reference %.1fs, library %.1fs, all %.1fs\n", ref_s, lib_s, wall_s() - t0);
    *total = all;
    return all.n[CONF_FAIL];
}

int main(int argc, char **argv) {
    conf_options o;
    conf_options_from_env(&o);
    const char *filter = NULL;
    int device = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--quick")) o.quick = 1;
        else if (!strcmp(a, "--list-devices")) return list_devices(), 0;
        else if (!strcmp(a, "--list-cases")) {
            conf_cases_init();
            for (int k = 0; k < conf_case_count(); k++)
                printf("%s%s\n", conf_case_get(k)->name, conf_case_get(k)->big ? "  [big]" : "");
            return 0;
        } else if (!strcmp(a, "--device") && has_val) device = atoi(argv[++i]);
        else if (!strcmp(a, "--case") && has_val) filter = argv[++i];
        else if (!strcmp(a, "--seed") && has_val) o.seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--max-configs") && has_val) o.max_configs = atoi(argv[++i]);
        else if (!strcmp(a, "--max-gflop") && has_val) o.max_gflop = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--device-memory")) o.device_memory = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        else {
            fprintf(stderr, "flashport-conformance: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    conf_cases_init();
    int ndev = fa_device_count();
    if (device >= ndev || (device < 0 && ndev <= 0) || device < -1) {
        fprintf(stderr, "flashport-conformance: device %d not found (%d device(s))\n", device, ndev);
        return 2;
    }
    if (filter) {
        int any = 0;
        for (int k = 0; k < conf_case_count(); k++) any |= strstr(conf_case_get(k)->name, filter) != NULL;
        if (!any) {
            fprintf(stderr, "flashport-conformance: no case matches '%s'\n", filter);
            return 2;
        }
    }
    printf("flashport-conformance: library %s, %d cases, seed %llu%s\n", fa_version_string(), conf_case_count(),
           (unsigned long long)o.seed, o.quick ? ", quick (big cases skipped)" : "");
    const char *forced = getenv("FLASHPORT_CPU_ISA");
    for (int d = 0; forced && *forced && d < ndev; d++) { /* a run for one instruction set: is it honoured? */
        char isa[32] = "?";
        fa_device_props p;
        if (fa_device_get(d, &p) != FA_OK || p.backend != FA_BACKEND_CPU || (device >= 0 && d != device)) continue;
        if (conf_device_isa(d, isa, sizeof isa, NULL, 0) == 0 && strcmp(isa, forced) == 0) {
            printf("FLASHPORT_CPU_ISA=%s: device %d's plans run %s kernels\n", forced, d, isa);
            continue;
        }
        int supported = conf_cpu_supports_isa(forced);
        if (supported == 1) {
            printf("FAILED: FLASHPORT_CPU_ISA=%s, which this CPU supports, but device %d's plans run '%s' kernels\n",
                   forced, d, isa);
            return 1;
        }
        printf("FLASHPORT_CPU_ISA=%s: %s (device %d runs %s kernels): skipped\n", forced,
               supported < 0 ? "not an instruction set this suite knows" : "this CPU cannot run it", d, isa);
        return 77;
    }
    int failures = 0;
    group_stats *totals = calloc((size_t)ndev, sizeof *totals);
    if (!totals) return fprintf(stderr, "flashport-conformance: out of memory\n"), 1;
    for (int d = 0; d < ndev; d++)
        if (device < 0 || d == device) failures += run_device(d, &o, filter, &totals[d]);
    printf("\n");
    for (int d = 0; d < ndev; d++) {
        if (device >= 0 && d != device) continue;
        fa_device_props p;
        memset(&p, 0, sizeof p);
        const group_stats *t = &totals[d];
        const char *backend = fa_device_get(d, &p) == FA_OK ? fa_backend_name(p.backend) : "?";
        printf("device %d (%s%s%s): %d passed, %d failed, %d unsupported, %d skipped, %d configs%s\n", d, backend,
               p.name[0] ? ", " : "", p.name,
               t->n[CONF_PASS], t->n[CONF_FAIL], t->n[CONF_UNSUPPORTED], t->n[CONF_SKIPPED], t->configs,
               p.backend != FA_BACKEND_CPU || o.device_memory ? ", buffers in device memory" : "");
    }
    free(totals);
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
    return failures ? 1 : 0;
}
