/* What the CPU reports about itself: name, SIMD level, caches, cores, memory. */
#include "cpu_backend.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void read_model_name(char *name, size_t size)
{
    snprintf(name, size, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(name, size, "%s", colon);
        break;
    }
    fclose(f);
}

/* Size in bytes of the cache at /sys/.../cache/index<i>, or 0. */
static int64_t sysfs_cache(int level, const char *type)
{
    for (int i = 0; i < 8; i++) {
        char path[128], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) return 0;
        int lv = 0;
        if (fscanf(f, "%d", &lv) != 1) lv = 0;
        fclose(f);
        if (lv != level) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        f = fopen(path, "r");
        if (!f) continue;
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
        if (strncmp(buf, type, strlen(type)) != 0 && strncmp(buf, "Unified", 7) != 0) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (!f) continue;
        long kb = 0;
        char unit = 'K';
        int got = fscanf(f, "%ld%c", &kb, &unit);
        fclose(f);
        if (got >= 1) return (int64_t)kb * (unit == 'M' ? 1024 * 1024 : 1024);
    }
    return 0;
}

/* sysfs first: under some hypervisors sysconf reports caches 10x too large (320 MiB of L3 for 32 MiB). */
static int64_t cache_size(int level)
{
    int64_t v = sysfs_cache(level, level == 1 ? "Data" : "Unified");
    if (v > 0) return v;
#ifdef _SC_LEVEL1_DCACHE_SIZE
    if (level == 1) v = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (level == 2) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (level == 3) v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return v > 0 ? v : 0;
}

void cpu_detect(fa_device_props *p)
{
    memset(p, 0, sizeof *p);
    p->backend = FA_BACKEND_CPU;
    read_model_name(p->name, sizeof p->name);
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        snprintf(p->arch, sizeof p->arch, "x86-64-avx512");
        p->simd_width = 16;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        snprintf(p->arch, sizeof p->arch, "x86-64-avx2");
        p->simd_width = 8;
    } else {
        snprintf(p->arch, sizeof p->arch, "x86-64");
        p->simd_width = 4;
    }
#elif defined(__aarch64__)
    snprintf(p->arch, sizeof p->arch, "aarch64-neon");
    p->simd_width = 4;
#else
    snprintf(p->arch, sizeof p->arch, "generic");
    p->simd_width = 1;
#endif
#ifdef _OPENMP
    p->compute_units = omp_get_max_threads();
#else
    p->compute_units = 1;
#endif
    p->l1_cache_bytes = cache_size(1);
    p->l2_cache_bytes = cache_size(2);
    p->l3_cache_bytes = cache_size(3);
    if (p->l1_cache_bytes <= 0) p->l1_cache_bytes = 32 * 1024;
    if (p->l2_cache_bytes <= 0) p->l2_cache_bytes = 512 * 1024;
    /* A tile's working set should sit in half of L2, leaving the rest to streaming K/V. */
    p->shared_mem_per_block = p->l2_cache_bytes / 2;
    p->shared_mem_per_block_optin = p->shared_mem_per_block;
    p->shared_mem_per_cu = p->l2_cache_bytes;
    p->max_threads_per_block = 1;
    p->max_threads_per_cu = 1;
    p->registers_per_block = 0;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    p->memory_bytes = pages > 0 && page > 0 ? (int64_t)pages * page : 0;
}
