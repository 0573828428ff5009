/* The progress bar (tune_progress.h). */
#include "tune_progress.h"

#include <stdio.h>
#include <unistd.h>

#include "bench_time.h"

void tune_progress_start(tune_progress *p, int buckets, double budget)
{
    p->start = bench_now();
    p->budget = budget;
    p->buckets = buckets > 0 ? buckets : 1;
    p->tty = isatty(2);
    p->last_bucket = -1;
}

static void clock_text(char *buf, size_t size, double s)
{
    if (s < 0) s = 0;
    if (s >= 60) snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, size, "%ds", (int)s);
}

void tune_progress_update(tune_progress *p, int bucket, double fraction, const char *label, const char *what)
{
    if (!p->tty && bucket == p->last_bucket) return; /* a log gets one line per bucket */
    p->last_bucket = bucket;
    double done = (bucket + (fraction < 0 ? 0 : fraction > 1 ? 1 : fraction)) / p->buckets;
    double elapsed = bench_now() - p->start;
    /* the rate so far, bounded by what is left of the budget */
    double left = done > 0.01 ? elapsed / done - elapsed : p->budget - elapsed;
    if (left > p->budget - elapsed) left = p->budget - elapsed;
    char bar[31], eta[32], spent[32];
    int fill = (int)(done * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    clock_text(eta, sizeof eta, left);
    clock_text(spent, sizeof spent, elapsed);
    fprintf(stderr, "%s[%s] %3d%% %d/%d %s %s (%s, ~%s left)%s", p->tty ? "\r\033[K" : "", bar, (int)(done * 100),
            bucket + 1, p->buckets, label, what, spent, eta, p->tty ? "" : "\n");
    fflush(stderr);
}

void tune_progress_end(tune_progress *p)
{
    if (p->tty) fprintf(stderr, "\r\033[K");
    fflush(stderr);
}
