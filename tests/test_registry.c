/*
 * The backend registry with test plugins (see CMakeLists: FLASHPORT_EXTRA_PLUGINS names a plugin built for
 * the wrong ABI, a working one whose selector declines everything, and a path that does not exist).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fa_backend.h"
#include "flashport.h"

/* The ABI the bad-ABI test plugin claims (tests/plugins/bad_abi_plugin.c): the one before the core's. */
#define FA_TEST_PREVIOUS_ABI (FA_BACKEND_ABI_VERSION - 1u)

static char log_text[16384];

/* Capture what FLASHPORT_LOG prints while the registry loads. */
static int load_with_log(void **state)
{
    (void)state;
    fflush(stderr);
    FILE *tmp = tmpfile();
    if (!tmp) return -1;
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    int n = fa_device_count();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t got = fread(log_text, 1, sizeof log_text - 1, tmp);
    log_text[got] = 0;
    fclose(tmp);
    fprintf(stderr, "%s", log_text);
    return n >= 1 ? 0 : -1;
}

static void cpu_is_device_zero(void **state)
{
    (void)state;
    fa_device_props p;
    assert_int_equal(fa_device_get(0, &p), FA_OK);
    assert_int_equal(p.backend, FA_BACKEND_CPU);
    assert_true(strlen(p.name) > 0);
}

/* The null-test plugin's device: after the CPU and whatever real plugins found (PoCL adds an OpenCL device). */
static int null_device(void)
{
    for (int i = 0; i < fa_device_count(); i++) {
        fa_device_props p;
        if (fa_device_get(i, &p) == FA_OK && !strcmp(p.name, "null test device")) return i;
    }
    return -1;
}

static void working_plugin_adds_a_device(void **state)
{
    (void)state;
    /* one device from the null-test plugin; the bad-ABI plugin and the missing path add nothing */
    int dev = null_device(), found = 0;
    assert_true(dev >= 1);
    for (int i = 0; i < fa_device_count(); i++) {
        fa_device_props p;
        assert_int_equal(fa_device_get(i, &p), FA_OK);
        found += !strcmp(p.name, "null test device");
    }
    assert_int_equal(found, 1);
    fa_device_props p;
    assert_int_equal(fa_device_get(dev, &p), FA_OK);
    assert_int_equal(p.backend, FA_BACKEND_OPENCL);
    /* GPU-class (its arch has no "-cpu"): best is it, or a real GPU listed before it */
    assert_true(fa_device_best() >= 1 && fa_device_best() <= dev);
}

static void bad_abi_is_refused_and_logged(void **state)
{
    (void)state;
    assert_non_null(strstr(log_text, "refused"));
    assert_non_null(strstr(log_text, "ABI"));
    /* the refused plugin is one built for the ABI before this one */
    char expected[96];
    snprintf(expected, sizeof expected, "built for backend ABI %u", FA_TEST_PREVIOUS_ABI);
    assert_non_null(strstr(log_text, expected));
}

/* A backend without device memory: every fa_device_* call says so with the backend's name. */
static void backend_without_device_memory_is_unsupported(void **state)
{
    (void)state;
    const int dev = null_device();
    assert_true(dev >= 1);
    void *p = (void *)&p;
    char buf[8];
    assert_int_equal(fa_device_alloc(dev, 64, &p), FA_ERR_UNSUPPORTED);
    assert_null(p);
    assert_non_null(strstr(fa_last_error(), "null-test"));
    assert_int_equal(fa_device_free(dev, buf), FA_ERR_UNSUPPORTED);
    assert_int_equal(fa_device_copy(dev, buf, buf, 8, FA_COPY_DEVICE_TO_DEVICE, NULL), FA_ERR_UNSUPPORTED);
    assert_non_null(strstr(fa_last_error(), "null-test"));
    assert_int_equal(fa_device_synchronize(dev, NULL), FA_ERR_UNSUPPORTED);
    char expected[32];
    snprintf(expected, sizeof expected, "device=%d", dev);
    assert_non_null(strstr(fa_last_error(), expected));
}

static void missing_plugin_is_logged(void **state)
{
    (void)state;
    assert_non_null(strstr(log_text, "/nonexistent/libflashport_missing.so"));
    /* the real GPU plugins are not built in this tree: each absence is explained */
    assert_non_null(strstr(log_text, "cuda backend absent"));
}

static void declining_selector_gives_unsupported_with_reason(void **state)
{
    (void)state;
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    fa_plan *plan = NULL;
    const int dev = null_device();
    assert_true(dev >= 1);
    assert_int_equal(fa_plan_create(&plan, dev, &d), FA_ERR_UNSUPPORTED);
    assert_null(plan);
    assert_non_null(strstr(fa_last_error(), "null test backend runs nothing"));
    int count = -1;
    assert_int_equal(fa_plan_candidates(dev, &d, NULL, 0, &count), FA_ERR_UNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_is_device_zero),
        cmocka_unit_test(working_plugin_adds_a_device),
        cmocka_unit_test(bad_abi_is_refused_and_logged),
        cmocka_unit_test(missing_plugin_is_logged),
        cmocka_unit_test(declining_selector_gives_unsupported_with_reason),
        cmocka_unit_test(backend_without_device_memory_is_unsupported),
    };
    return cmocka_run_group_tests(tests, load_with_log, NULL);
}
