/* flashport-tune's progress bar on stderr: share done, the current bucket and candidate, and the time left. */
#ifndef TUNE_PROGRESS_H
#define TUNE_PROGRESS_H

typedef struct tune_progress {
    double start;      /* bench_now() when the device's run began */
    double budget;     /* seconds */
    int buckets;
    int tty;           /* redraw one line in place; otherwise print a line per bucket */
    int last_bucket;
} tune_progress;

void tune_progress_start(tune_progress *p, int buckets, double budget);
/* bucket (0-based) with a fraction of its own work done; label names the bucket, what the step. */
void tune_progress_update(tune_progress *p, int bucket, double fraction, const char *label, const char *what);
void tune_progress_end(tune_progress *p);

#endif
