/*
 * cmocka front end of the conformance suite: one test per (device, case) over every device fa_device_count()
 * reports, plus one skipped test per backend that has no device (so the report says what was not covered).
 * FLASHPORT_CONFORMANCE_QUICK=1 skips big cases (used under AddressSanitizer); see conf_runner.h for the rest.
 * Forward, backward (gradients, determinism), decode and KV-cache append cases all come from conf_cases.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf_cases.h"
#include "conf_runner.h"
#include "flashport.h"

typedef struct entry {
    int device;              /* -1: an absent backend */
    fa_backend_kind backend; /* for absent backends */
    const conf_case *c;
} entry;

static conf_options options;

static void test_case(void **state) {
    const entry *e = *state;
    conf_result r;
    conf_run_case(e->device, e->c, &options, &r);
    switch (r.verdict) {
    case CONF_PASS:
        print_message("    ok: worst ratio %.3f over %d configs (%d listed), reference %.2fs, library %.2fs\n",
                      r.worst_ratio, r.configs_run, r.configs_listed, r.ref_seconds, r.lib_seconds);
        return;
    case CONF_UNSUPPORTED:
        print_message("    unsupported on this device: %s\n", r.message);
        skip();
        return;
    case CONF_SKIPPED:
        print_message("    %s\n", r.message);
        skip();
        return;
    default:
        fail_msg("%s\n    case: %s\n    seed: %llu", r.message, e->c->name, (unsigned long long)r.seed);
    }
}

static void test_absent_backend(void **state) {
    const entry *e = *state;
    print_message("    no %s device found at run time (backend not built, runtime not loadable, or no device): "
                  "its cases are not run\n",
                  fa_backend_name(e->backend));
    skip();
}

static void test_devices_present(void **state) {
    (void)state;
    assert_true(fa_device_count() >= 1); /* the CPU backend is always there */
}

int main(void) {
    conf_cases_init();
    conf_options_from_env(&options);
    int ndev = fa_device_count(), ncases = conf_case_count();
    if (ndev < 0) ndev = 0;
    size_t cap = 1 + (size_t)ndev * (size_t)ncases + FA_BACKEND_COUNT;
    struct CMUnitTest *tests = calloc(cap, sizeof *tests);
    entry *entries = calloc(cap, sizeof *entries);
    char **names = calloc(cap, sizeof *names);
    if (!tests || !entries || !names) return 1;
    size_t n = 0;
    tests[n].name = "devices: at least the CPU";
    tests[n++].test_func = test_devices_present;
    int present[FA_BACKEND_COUNT] = {0};
    for (int dev = 0; dev < ndev; dev++) {
        fa_device_props props;
        memset(&props, 0, sizeof props);
        if (fa_device_get(dev, &props) == FA_OK && props.backend < FA_BACKEND_COUNT) present[props.backend] = 1;
        for (int k = 0; k < ncases; k++) {
            const conf_case *c = conf_case_get(k);
            size_t len = strlen(c->name) + 64;
            if (!(names[n] = malloc(len))) return 1;
            snprintf(names[n], len, "dev%d/%s %s", dev, fa_backend_name(props.backend), c->name);
            entries[n] = (entry){dev, props.backend, c};
            tests[n] = (struct CMUnitTest){names[n], test_case, NULL, NULL, &entries[n]};
            n++;
        }
    }
    for (int b = 0; b < FA_BACKEND_COUNT; b++) {
        if (present[b]) continue;
        size_t len = 64;
        if (!(names[n] = malloc(len))) return 1;
        snprintf(names[n], len, "backend %s: absent", fa_backend_name((fa_backend_kind)b));
        entries[n] = (entry){-1, (fa_backend_kind)b, NULL};
        tests[n] = (struct CMUnitTest){names[n], test_absent_backend, NULL, NULL, &entries[n]};
        n++;
    }
    print_message("flashport conformance: %d cases x %d devices, seed %llu%s\n", ncases, ndev,
                  (unsigned long long)options.seed, options.quick ? ", quick (big cases skipped)" : "");
    for (int dev = 0; dev < ndev; dev++) {
        char isa[128];
        if (conf_device_isa(dev, isa, 32, isa + 32, sizeof isa - 32) == 0)
            print_message("device %d: cpu kernels: %s\n", dev, isa + 32);
    }
    int failed = _cmocka_run_group_tests("flashport_conformance", tests, n, NULL, NULL);
    if (failed) print_message("reproduce with FLASHPORT_CONFORMANCE_SEED=%llu\n", (unsigned long long)options.seed);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(entries);
    free(tests);
    return failed ? 1 : 0;
}
