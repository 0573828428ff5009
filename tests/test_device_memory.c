/*
 * fa_device_alloc / fa_device_free / fa_device_copy / fa_device_synchronize on the CPU device (device 0), where
 * they are aligned malloc, free, memcpy and nothing, and every error path: each bad argument gives its status,
 * a message naming the argument and its value, and touches no memory. GPU devices take the same checks in the
 * core before their backend's hooks run (the hooks themselves need a GPU: tests/cuda and the conformance suite).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "flashport.h"

#define CPU 0

/* The call's status, and its message containing what (the argument's name and value). */
#define ASSERT_ERROR(call, status, what)                                                                      \
    do {                                                                                                      \
        assert_int_equal((call), (status));                                                                   \
        if (!strstr(fa_last_error(), (what)))                                                                 \
            fail_msg("message '%s' does not name '%s'", fa_last_error(), (what));                             \
    } while (0)

static void cpu_alloc_is_aligned_and_writable(void **state)
{
    (void)state;
    for (int64_t bytes = 1; bytes <= (1 << 20); bytes *= 7) {
        void *p = NULL;
        assert_int_equal(fa_device_alloc(CPU, bytes, &p), FA_OK);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, 0x5a, (size_t)bytes); /* ASan: the whole extent is ours */
        assert_int_equal(fa_device_free(CPU, p), FA_OK);
    }
}

static void zero_bytes_allocates_nothing(void **state)
{
    (void)state;
    void *p = (void *)&p;
    assert_int_equal(fa_device_alloc(CPU, 0, &p), FA_OK);
    assert_null(p);
    assert_int_equal(fa_device_free(CPU, NULL), FA_OK);
    assert_int_equal(fa_device_copy(CPU, NULL, NULL, 0, FA_COPY_HOST_TO_DEVICE, NULL), FA_OK);
}

static void every_copy_kind_round_trips(void **state)
{
    (void)state;
    enum { N = 4099 }; /* not a multiple of any vector width */
    unsigned char host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (unsigned char)(i * 37 + 11);
    void *a = NULL, *b = NULL;
    assert_int_equal(fa_device_alloc(CPU, N, &a), FA_OK);
    assert_int_equal(fa_device_alloc(CPU, N, &b), FA_OK);
    assert_int_equal(fa_device_copy(CPU, a, host, N, FA_COPY_HOST_TO_DEVICE, NULL), FA_OK);
    assert_int_equal(fa_device_copy(CPU, b, a, N, FA_COPY_DEVICE_TO_DEVICE, NULL), FA_OK);
    memset(back, 0, sizeof back);
    assert_int_equal(fa_device_copy(CPU, back, b, N, FA_COPY_DEVICE_TO_HOST, NULL), FA_OK);
    assert_int_equal(fa_device_synchronize(CPU, NULL), FA_OK);
    assert_memory_equal(back, host, N);
    assert_int_equal(fa_device_free(CPU, a), FA_OK);
    assert_int_equal(fa_device_free(CPU, b), FA_OK);
}

static void overlapping_device_copy_is_a_move(void **state)
{
    (void)state;
    unsigned char *p = NULL;
    assert_int_equal(fa_device_alloc(CPU, 64, (void **)&p), FA_OK);
    for (int i = 0; i < 64; i++) p[i] = (unsigned char)i;
    assert_int_equal(fa_device_copy(CPU, p + 1, p, 32, FA_COPY_DEVICE_TO_DEVICE, NULL), FA_OK);
    for (int i = 0; i < 32; i++) assert_int_equal(p[i + 1], i);
    assert_int_equal(fa_device_free(CPU, p), FA_OK);
}

static void device_out_of_range(void **state)
{
    (void)state;
    char buf[8];
    void *p = (void *)buf;
    int n = fa_device_count();
    char name[32];
    snprintf(name, sizeof name, "device=%d", n);
    ASSERT_ERROR(fa_device_alloc(n, 8, &p), FA_ERR_NO_DEVICE, name);
    assert_null(p); /* never left pointing at something that is not an allocation */
    ASSERT_ERROR(fa_device_alloc(-1, 8, &p), FA_ERR_NO_DEVICE, "device=-1");
    ASSERT_ERROR(fa_device_free(n, buf), FA_ERR_NO_DEVICE, name);
    ASSERT_ERROR(fa_device_copy(n, buf, buf, 8, FA_COPY_HOST_TO_DEVICE, NULL), FA_ERR_NO_DEVICE, name);
    ASSERT_ERROR(fa_device_copy(-7, buf, buf, 8, FA_COPY_DEVICE_TO_HOST, NULL), FA_ERR_NO_DEVICE, "device=-7");
    ASSERT_ERROR(fa_device_synchronize(n, NULL), FA_ERR_NO_DEVICE, name);
    ASSERT_ERROR(fa_device_synchronize(-1, NULL), FA_ERR_NO_DEVICE, "device=-1");
}

static void bad_alloc_arguments(void **state)
{
    (void)state;
    void *p = (void *)&p;
    ASSERT_ERROR(fa_device_alloc(CPU, 8, NULL), FA_ERR_INVALID_ARGUMENT, "ptr=NULL");
    ASSERT_ERROR(fa_device_alloc(CPU, -5, &p), FA_ERR_INVALID_ARGUMENT, "bytes=-5");
    assert_null(p);
    /* More than any machine has: refused with the size in the message, no crash, no allocation. */
    ASSERT_ERROR(fa_device_alloc(CPU, INT64_MAX, &p), FA_ERR_OUT_OF_MEMORY, "bytes=9223372036854775807");
    assert_null(p);
}

static void bad_copy_arguments(void **state)
{
    (void)state;
    unsigned char a[16] = {1}, b[16] = {2};
    ASSERT_ERROR(fa_device_copy(CPU, a, b, -1, FA_COPY_HOST_TO_DEVICE, NULL), FA_ERR_INVALID_ARGUMENT, "bytes=-1");
    ASSERT_ERROR(fa_device_copy(CPU, NULL, b, 16, FA_COPY_HOST_TO_DEVICE, NULL), FA_ERR_INVALID_ARGUMENT,
                 "dst=NULL with bytes=16");
    ASSERT_ERROR(fa_device_copy(CPU, a, NULL, 16, FA_COPY_DEVICE_TO_HOST, NULL), FA_ERR_INVALID_ARGUMENT,
                 "src=NULL with bytes=16");
    ASSERT_ERROR(fa_device_copy(CPU, a, b, 16, (fa_copy_kind)3, NULL), FA_ERR_INVALID_ARGUMENT, "kind=3");
    ASSERT_ERROR(fa_device_copy(CPU, a, b, 16, (fa_copy_kind)-1, NULL), FA_ERR_INVALID_ARGUMENT, "kind=-1");
    /* the CPU runs everything at once: a stream there is a mistake in the caller's device choice */
    ASSERT_ERROR(fa_device_copy(CPU, a, b, 16, FA_COPY_DEVICE_TO_DEVICE, (void *)a), FA_ERR_INVALID_ARGUMENT,
                 "stream=");
    ASSERT_ERROR(fa_device_synchronize(CPU, (void *)a), FA_ERR_INVALID_ARGUMENT, "stream=");
    assert_int_equal(a[0], 1); /* nothing was copied by any of them */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_alloc_is_aligned_and_writable),
        cmocka_unit_test(zero_bytes_allocates_nothing),
        cmocka_unit_test(every_copy_kind_round_trips),
        cmocka_unit_test(overlapping_device_copy_is_a_move),
        cmocka_unit_test(device_out_of_range),
        cmocka_unit_test(bad_alloc_arguments),
        cmocka_unit_test(bad_copy_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
