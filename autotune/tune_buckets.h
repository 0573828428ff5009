/*
 * flashport-tune's buckets: for a device, the list of shape buckets to tune, each with a representative problem
 * (timed) and a smaller problem of the same bucket and candidate space (checked against the float64 reference by
 * the conformance rule; batch 1, one KV head, and fewer query rows when the reference would cost too much).
 */
#ifndef TUNE_BUCKETS_H
#define TUNE_BUCKETS_H

#include "conf_cases.h"
#include "fa_tune_bucket.h"
#include "flashport.h"

typedef struct tune_spec {
    fa_tune_bucket bucket;
    fa_attn_desc desc;   /* the representative problem the candidates are timed on */
    conf_case check;     /* the conformance problem every candidate must pass first */
    double flops;        /* of desc, forward (+ backward): the progress bar's weight */
} tune_spec;

/* The buckets for this device, most used first (the budget cuts from the end). quick: a few small ones. */
int tune_bucket_list(const fa_device_props *props, int quick, tune_spec *out, int max);

#endif
