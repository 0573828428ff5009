/*
 * The HIP plugins on a machine without their GPU: each loads, and its init reports the backend absent with a
 * reason instead of failing to load or adding a device. libflashport_hip.so: no AMD GPU (or no ROCm at all).
 * libflashport_hipnv.so (the NVIDIA verification build): off unless FLASHPORT_HIP_NVIDIA=1, and with it, absent
 * without a CUDA driver. Where the GPU does exist the checks that need its absence are skipped.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fa_backend.h"

/* Opens a plugin and runs its init; returns its status, the reason in why. */
static fa_status init_plugin(const char *path, char *why, size_t why_size)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) fail_msg("%s does not load: %s", path, dlerror());
    fa_backend_plugin_init_fn init = (fa_backend_plugin_init_fn)dlsym(lib, FA_BACKEND_PLUGIN_ENTRY);
    assert_non_null(init);
    const fa_backend_iface *iface = NULL;
    void *ctx = NULL;
    why[0] = 0;
    fa_status st = init(FA_BACKEND_ABI_VERSION, &iface, &ctx, why, why_size);
    if (st == FA_OK) {
        assert_non_null(iface);
        assert_int_equal(iface->kind, FA_BACKEND_HIP);
        assert_true(iface->device_count(ctx) > 0);
    }
    return st; /* left open, as the registry leaves loaded plugins (their runtimes do not survive an unload) */
}

/* Runs first: the registry itself, with the verification build off, lists no HIP device unless an AMD GPU is here. */
static void registry_lists_no_hip_device(void **state)
{
    (void)state;
    unsetenv("FLASHPORT_HIP_NVIDIA");
    char why[512];
    if (init_plugin(FA_TEST_HIP_PLUGIN, why, sizeof why) == FA_OK) skip(); /* an AMD GPU is here */
    int n = fa_device_count();
    for (int i = 0; i < n; i++) {
        fa_device_props p;
        assert_int_equal(fa_device_get(i, &p), FA_OK);
        assert_int_not_equal(p.backend, FA_BACKEND_HIP);
    }
}

static void hip_absent_without_amd_gpu(void **state)
{
    (void)state;
    char why[512];
    fa_status st = init_plugin(FA_TEST_HIP_PLUGIN, why, sizeof why);
    if (st == FA_OK) skip();
    assert_int_equal(st, FA_ERR_UNSUPPORTED);
    print_message("hip: %s\n", why);
    assert_true(strstr(why, "no HIP runtime") || strstr(why, "no usable GPU") || strstr(why, "lacks"));
}

static void hipnv_off_without_its_switch(void **state)
{
    (void)state;
    unsetenv("FLASHPORT_HIP_NVIDIA");
    char why[512];
    assert_int_equal(init_plugin(FA_TEST_HIPNV_PLUGIN, why, sizeof why), FA_ERR_UNSUPPORTED);
    print_message("hipnv: %s\n", why);
    assert_non_null(strstr(why, "FLASHPORT_HIP_NVIDIA=1"));
    setenv("FLASHPORT_HIP_NVIDIA", "0", 1);
    assert_int_equal(init_plugin(FA_TEST_HIPNV_PLUGIN, why, sizeof why), FA_ERR_UNSUPPORTED);
    assert_non_null(strstr(why, "FLASHPORT_HIP_NVIDIA=1"));
    unsetenv("FLASHPORT_HIP_NVIDIA");
}

static void hipnv_switched_on(void **state)
{
    (void)state;
    setenv("FLASHPORT_HIP_NVIDIA", "1", 1);
    char why[512];
    fa_status st = init_plugin(FA_TEST_HIPNV_PLUGIN, why, sizeof why);
    unsetenv("FLASHPORT_HIP_NVIDIA");
    if (st == FA_OK) return; /* an NVIDIA GPU: init_plugin checked its devices */
    assert_int_equal(st, FA_ERR_UNSUPPORTED);
    print_message("hipnv with FLASHPORT_HIP_NVIDIA=1: %s\n", why);
    assert_null(strstr(why, "FLASHPORT_HIP_NVIDIA=1"));
    assert_true(why[0] != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registry_lists_no_hip_device),
        cmocka_unit_test(hip_absent_without_amd_gpu),
        cmocka_unit_test(hipnv_off_without_its_switch),
        cmocka_unit_test(hipnv_switched_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
