/*
 * A sampling profiler to LD_PRELOAD where perf is not available (containers without perf_event_open, such as
 * the lent GPU machines' hosts): SIGPROF every FLASHPORT_SIGPROF_US microseconds of the process's CPU time
 * (default 1000; the kernel rounds to its tick), the interrupted instruction address of each sample kept in
 * a fixed array, and at exit the addresses plus /proc/self/maps written to $FLASHPORT_SIGPROF_OUT.
 * bench/sigprof_report.py turns that file into a table of functions.
 *
 *   FLASHPORT_SIGPROF_OUT=/tmp/prof.txt LD_PRELOAD=libflashport-sigprof.so flashport-bench ...
 *
 * Only async-signal-safe work happens in the handler: one atomic increment and one store.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>

enum { MAX_SAMPLES = 1 << 20 };

static uintptr_t samples[MAX_SAMPLES];
static atomic_size_t taken;

static uintptr_t interrupted_pc(const ucontext_t *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    return 0;
#endif
}

static void on_sigprof(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)info;
    size_t i = atomic_fetch_add_explicit(&taken, 1, memory_order_relaxed);
    if (i < MAX_SAMPLES) samples[i] = interrupted_pc(ctx);
}

__attribute__((constructor)) static void sigprof_start(void)
{
    if (!getenv("FLASHPORT_SIGPROF_OUT")) return;
    const char *us = getenv("FLASHPORT_SIGPROF_US");
    long period = us ? strtol(us, NULL, 10) : 1000;
    if (period <= 0) period = 1000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, NULL) != 0) {
        perror("sigprof: sigaction");
        return;
    }
    struct itimerval t = {{period / 1000000, period % 1000000}, {period / 1000000, period % 1000000}};
    if (setitimer(ITIMER_PROF, &t, NULL) != 0) perror("sigprof: setitimer");
}

__attribute__((destructor)) static void sigprof_stop(void)
{
    const char *path = getenv("FLASHPORT_SIGPROF_OUT");
    if (!path) return;
    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_PROF, &off, NULL);
    FILE *out = fopen(path, "w");
    if (!out) {
        perror("sigprof: output file");
        return;
    }
    size_t n = atomic_load(&taken);
    if (n > MAX_SAMPLES) n = MAX_SAMPLES;
    fprintf(out, "# samples %zu\n", n);
    for (size_t i = 0; i < n; i++) fprintf(out, "%lx\n", (unsigned long)samples[i]);
    fprintf(out, "# maps\n");
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps) {
        char line[4096];
        while (fgets(line, sizeof line, maps)) fputs(line, out);
        fclose(maps);
    }
    fclose(out);
}
