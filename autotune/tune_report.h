/* flashport-tune's output: the per-bucket table and the JSON document (one bucket object per line). */
#ifndef TUNE_REPORT_H
#define TUNE_REPORT_H

#include <stdio.h>

#include "tune_search.h"

typedef struct tune_device_report {
    int device;
    fa_device_props props;
    char file[1200];      /* the cache file written ("" if none) */
    char error[600];      /* why the device was not tuned or its file not written */
    double budget_s, wall_s;
    int n;
    const tune_spec *specs;
    const tune_result *results;
} tune_device_report;

void tune_report_table(FILE *f, const tune_device_report *d);
/* first: the first device of the document (opens it); last: closes it. */
void tune_report_json(FILE *f, const tune_device_report *d, int quick, int first, int last);

#endif
