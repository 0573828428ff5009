/*
 * flashport-demo: one attention forward on the best device found, checked against a float64 reference on a
 * sample of query rows, with its throughput. Usage: flashport-demo [seqlen] [head_dim] [heads]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"
#include "flashport.h"

#define CHECK(call)                                                                                           \
    do {                                                                                                      \
        fa_status st_ = (call);                                                                               \
        if (st_ != FA_OK) {                                                                                   \
            fprintf(stderr, "%s failed: %s: %s\n", #call, fa_status_string(st_), fa_last_error());             \
            return 1;                                                                                         \
        }                                                                                                     \
    } while (0)


/* float64 attention for query row i of head h (batch 1, MHA, non-causal). */
static void reference_row(const float *q, const float *k, const float *v, int64_t s, int64_t h, int64_t heads,
                          int64_t d, int64_t i, double scale, double *out)
{
    double *p = malloc(sizeof(double) * (size_t)s), mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < s; j++) {
        double acc = 0;
        for (int64_t x = 0; x < d; x++) acc += (double)q[(i * heads + h) * d + x] * k[(j * heads + h) * d + x];
        p[j] = acc * scale;
        if (p[j] > mx) mx = p[j];
    }
    for (int64_t j = 0; j < s; j++) sum += (p[j] = exp(p[j] - mx));
    for (int64_t x = 0; x < d; x++) out[x] = 0;
    for (int64_t j = 0; j < s; j++)
        for (int64_t x = 0; x < d; x++) out[x] += p[j] / sum * v[(j * heads + h) * d + x];
    free(p);
}

int main(int argc, char **argv)
{
    int64_t s = argc > 1 ? atoll(argv[1]) : 2048, d = argc > 2 ? atoll(argv[2]) : 128;
    int64_t heads = argc > 3 ? atoll(argv[3]) : 8;
    int dev = fa_device_best();
    fa_device_props props;
    CHECK(fa_device_get(dev, &props));
    printf("flashport %s: %d device(s); using device %d: %s backend, %s (%s), %d compute units\n",
           fa_version_string(), fa_device_count(), dev, fa_backend_name(props.backend), props.name, props.arch,
           props.compute_units);
    if (props.backend != FA_BACKEND_CPU) {
        fprintf(stderr, "the demo runs host buffers; GPU buffers arrive with the GPU backends\n");
        return 1;
    }

    fa_attn_desc desc;
    fa_attn_desc_init(&desc);
    desc.dtype = FA_DTYPE_F32;
    desc.batch = 1;
    desc.seqlen_q = desc.seqlen_k = s;
    desc.heads_q = desc.heads_kv = heads;
    desc.head_dim_qk = desc.head_dim_v = d;
    fa_plan *plan;
    CHECK(fa_plan_create(&plan, dev, &desc));
    char text[2048];
    fa_plan_describe(plan, text, sizeof text);
    printf("%s", text);

    size_t n = (size_t)(s * heads * d);
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *o = malloc(n * 4);
    if (!q || !k || !v || !o) return fprintf(stderr, "out of memory\n"), 1;
    srand((unsigned)time(NULL));
    for (size_t i = 0; i < n; i++) {
        q[i] = (float)rand() / RAND_MAX * 2 - 1;
        k[i] = (float)rand() / RAND_MAX * 2 - 1;
        v[i] = (float)rand() / RAND_MAX * 2 - 1;
    }
    fa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.q = fa_tensor_4d(q, FA_DTYPE_F32, 1, s, heads, d);
    a.k = fa_tensor_4d(k, FA_DTYPE_F32, 1, s, heads, d);
    a.v = fa_tensor_4d(v, FA_DTYPE_F32, 1, s, heads, d);
    a.out = fa_tensor_4d(o, FA_DTYPE_F32, 1, s, heads, d);

    double times[5];
    CHECK(fa_fwd(plan, &a, NULL)); /* warm-up */
    for (int r = 0; r < 5; r++) {
        double t0 = bench_now();
        CHECK(fa_fwd(plan, &a, NULL));
        times[r] = bench_now() - t0;
    }
    qsort(times, 5, sizeof times[0], bench_cmp_double);

    /* 64 sampled rows spread over heads and positions against float64. */
    double max_err = 0, *ref = malloc(sizeof(double) * (size_t)d);
    for (int t = 0; t < 64; t++) {
        int64_t h = t % heads, i = (int64_t)((double)t / 64 * s);
        reference_row(q, k, v, s, h, heads, d, i, 1.0 / sqrt((double)d), ref);
        for (int64_t x = 0; x < d; x++) {
            double e = fabs((double)o[(i * heads + h) * d + x] - ref[x]);
            if (!(e <= max_err)) max_err = e; /* NaN propagates */
        }
    }
    double flops = 4.0 * heads * (double)s * (double)s * (double)d;
    printf("fp32 b=1 h=%lld s=%lld d=%lld: max |out - float64 reference| = %.3g over 64 sampled rows\n",
           (long long)heads, (long long)s, (long long)d, max_err);
    printf("forward: median %.2f ms over 5 runs = %.1f GFLOP/s (FlashAttention's 4*b*h*s^2*d convention)\n",
           times[2] * 1e3, flops / times[2] * 1e-9);
    free(ref);
    free(q);
    free(k);
    free(v);
    free(o);
    fa_plan_destroy(plan);
    return max_err < 1e-4 ? 0 : 1;
}
