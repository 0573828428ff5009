/* Picks the SIMD kernel table from what the CPU reports at run time. */
#include <stdlib.h>
#include <string.h>

#include "cpu_simd.h"

extern const cpu_simd cpu_simd_portable;
#if defined(__x86_64__)
extern const cpu_simd cpu_simd_avx2;
extern const cpu_simd cpu_simd_avx512;
extern const cpu_simd cpu_simd_avx512bf16;
#endif

static int supported(const cpu_simd *s)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (s == &cpu_simd_avx512bf16)
        return supported(&cpu_simd_avx512) && __builtin_cpu_supports("avx512bf16");
    if (s == &cpu_simd_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("fma");
    if (s == &cpu_simd_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return s == &cpu_simd_portable;
}

static const cpu_simd *const all[] = {
#if defined(__x86_64__)
    &cpu_simd_avx512bf16, &cpu_simd_avx512, &cpu_simd_avx2,
#endif
    &cpu_simd_portable,
};

const cpu_simd *cpu_simd_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return supported(all[i]) ? all[i] : NULL;
    return NULL;
}

/* Read at plan time (not cached), so a process can compare instruction sets plan by plan. */
const cpu_simd *cpu_simd_get(void)
{
    const char *force = getenv("FLASHPORT_CPU_ISA");
    const cpu_simd *s = force && force[0] ? cpu_simd_by_name(force) : NULL;
    for (size_t i = 0; !s && i < sizeof all / sizeof all[0]; i++)
        if (supported(all[i])) s = all[i];
    return s;
}
