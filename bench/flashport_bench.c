/*
 * flashport-bench: FlashAttention throughput over a grid of shapes, beside the machine's own ceilings.
 *
 *   forward / backward grid: hidden 2048 (heads = 2048 / hdim), 16k tokens per batch (batch = 16384 / seqlen),
 *     hdim 64/128/256, seqlen 512..16k (CPU default: <= 4096), causal off/on, fwd and fwd+bwd.
 *     FLOPs (FlashAttention's convention): fwd 4*b*h*sq*sk*d, halved when causal; bwd 2.5x fwd (fwd+bwd 3.5x).
 *   decode grid (--decode): batch 1/16/64, KV 8k..128k, GQA 32:8, hdim 128, one query token, the cache's
 *     lengths given per sequence (desc.kv_cache_lengths). Reports time and GB/s of K/V read.
 *
 * Method: plan once per point, fill several sets of inputs and cycle through them (so caches do not
 * flatter the result; a decode point's sets add up to several times the last-level cache), warm up, then
 * report the median of --repeats timed calls. On the CPU the same run measures an fp32 FMA peak for the
 * instruction set the plan's kernels use and a read bandwidth, and prints each result as a fraction of them.
 * On a GPU the sets are device memory (fa_device_alloc, filled on the host and copied over; enough of them to
 * outgrow the L2), each call is timed in host wall time between two fa_device_synchronize calls (so launch
 * overhead is included), and no ceilings are measured: the CPU's loops say nothing about a GPU. Points a
 * backend declines (the CUDA backward, decode) report "unsupported" with the backend's reason.
 * Run `flashport-bench --help` for the options.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench_buffers.h"
#include "bench_ceilings.h"
#include "bench_data.h"
#include "bench_time.h"
#include "bench_timing.h"
#include "flashport.h"

#define MAX_LIST 32

typedef struct list {
    int n;
    int64_t v[MAX_LIST];
} list;

enum { GRID_FWD = 1, GRID_DECODE = 2 };
enum { PASS_FWD = 1, PASS_FWDBWD = 2 };
enum { CAUSAL_OFF = 1, CAUSAL_ON = 2 };

typedef struct options {
    int device;          /* -1: best, -2: all */
    int dtype;           /* -1: per device (bf16 on GPUs, fp32 on the CPU) */
    int grids, passes, causal;
    list hdim, seqlen, batch, decode_batch, kv;
    int64_t heads, hidden, tokens, decode_hq, decode_hk;
    int quick, repeats, warmup, json, ceilings;
    int device_memory;   /* --device-memory: fa_device_alloc buffers and copies even on the CPU */
    double mem_gb;       /* buffer budget; 0: half the device's memory */
    fa_tile_config tile;     /* --tile: forward tile forced on every point (block_q 0: the planner picks) */
    fa_tile_config bwd_tile; /* --bwd-tile: the same for the backward of fwd+bwd points */
} options;

typedef struct point {
    int grid, pass;      /* GRID_*, PASS_* (decode: 0) */
    fa_dtype dtype;
    int64_t batch, hq, hk, sq, sk, d;
    int causal;
} point;

typedef struct result {
    int device;
    point pt;
    const char *status;  /* "ok", "unsupported", "skipped", "error" */
    char reason[512];
    int have_config;
    fa_tile_config config;
    char bwd_config[32]; /* "block_q=.. block_kv=.." from the plan's description, "" if none */
    char isa[16];
    int sets, repeats;
    int64_t set_bytes;
    double ms_median, ms_min, ms_max;
    double flops, bytes;  /* per call: FLOPs counted (fwd grid), K/V bytes read (decode) */
    double gflops, gbps, frac_peak, frac_bw; /* fractions < 0: not measured */
    double peak_gflops, read_gbs;            /* the ceilings the fractions are of (< 0: none) */
} result;

typedef struct ceilings {
    int measured;
    char isa[16];
    double peak_gflops;
    char other_isa[4][16]; /* peaks of instruction sets other plans used */
    double other_peak[4];
    double bf16_dot_gflops; /* AVX512_BF16 dot-product peak (bf16 inputs), 0 where absent */
    double read_gbs;
    int64_t read_bytes, llc_bytes;
    int threads;
    double load_before; /* 1-minute load average when the device's run began */
} ceilings;

/* Human-readable tables; NULL with --json, whose document goes to stdout. */
static FILE *txt;
#define TXT(...)                                                                                              \
    do {                                                                                                      \
        if (txt) fprintf(txt, __VA_ARGS__);                                                                   \
    } while (0)

static result *results;
static int n_results, cap_results;


static int omp_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flashport-bench [options]\n"
            "  --device N|best|all   device index (default: best = first GPU, else the CPU)\n"
            "  --grid fwd|decode|all which grid (default fwd); --decode is --grid decode\n"
            "  --dtype fp32|fp16|bf16  (default: bf16 on GPUs, fp32 on the CPU)\n"
            "  --hdim LIST           head dims (default 64,128,256; decode 128)\n"
            "  --seqlen LIST         seqlens, k = 1024 (default 512..16k; CPU 512..4k)\n"
            "  --causal off|on|both  (default both)\n"
            "  --pass fwd|fwdbwd|both  (default both)\n"
            "  --hidden N            heads = hidden / hdim (default 2048)\n"
            "  --tokens N            batch = tokens / seqlen (default 16384; 4096 with --quick on a CPU)\n"
            "  --batch LIST          fixed batch sizes instead of --tokens\n"
            "  --heads N             fixed query heads instead of --hidden\n"
            "  --decode-batch LIST   decode batches (default 1,16,64)\n"
            "  --kv LIST             decode KV lengths (default 8k,16k,32k,64k,128k)\n"
            "  --gqa HQ:HK           decode query:kv heads (default 32:8)\n"
            "  --quick               a small subset: hdim 128, seqlen 512,1k (GPU 1k,4k);\n"
            "                        decode batch 1,16 x kv 8k,16k\n"
            "  --repeats N           timed calls per point, median reported (default CPU 5, decode 10; GPU 20)\n"
            "  --warmup N            untimed calls first (default 1 on the CPU, 2 for decode; GPU 5)\n"
            "  --mem-gb X            most memory the input sets of one point may take (default: half of it)\n"
            "  --no-ceilings         skip measuring FMA peak and read bandwidth (CPU only: never on GPUs)\n"
            "  --tile BQxBKV[xSPLITS][wWARPS][sSTAGES] force this forward tile on every point (A/B runs,\n"
            "                        tuning; GPUs name warps and stages, e.g. 128x64w4s2);\n"
            "                        a point whose kernel cannot take it reports the error\n"
            "  --bwd-tile BQxBKV[wWARPS][sSTAGES] the same for the backward of fwd+bwd points\n"
            "  --json                one JSON document on stdout (progress on stderr)\n"
            "  --device-memory       buffers from fa_device_alloc, filled by fa_device_copy, on the CPU too\n"
            "                        (the GPU path, checked where there is no GPU)\n"
            "LIST: comma-separated, e.g. 512,1k,4096. OMP_NUM_THREADS sets the CPU threads;\n"
            "FLASHPORT_CPU_ISA=avx512bf16|avx512|avx2|portable forces the library's (and the peak loop's)\n"
            "instruction set.\n");
}

/* BQxBKV[xSPLITS][wWARPS][sSTAGES], e.g. 256x128 on a CPU or 128x64w4s2 on a GPU (which name warps and stages) */
static int parse_tile(const char *v, fa_tile_config *out)
{
    int bq, bkv, splits = 1, warps = 1, stages = 1;
    int got = sscanf(v, "%dx%dx%d", &bq, &bkv, &splits);
    const char *w = strchr(v, 'w'), *st = strchr(v, 's');
    if (w && sscanf(w + 1, "%d", &warps) != 1) return 0;
    if (st && sscanf(st + 1, "%d", &stages) != 1) return 0;
    if (got < 2 || bq <= 0 || bkv <= 0 || splits <= 0 || warps <= 0 || stages <= 0) return 0;
    *out = (fa_tile_config){bq, bkv, warps, stages, splits};
    return 1;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s) return 0;
    if (*end == 'k' || *end == 'K') {
        v *= 1024;
        end++;
    }
    if (*end) return 0;
    *out = v;
    return 1;
}

static int parse_list(const char *s, list *l)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    l->n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (l->n == MAX_LIST || !parse_int(tok, &l->v[l->n]) || l->v[l->n] <= 0) return 0;
        l->n++;
    }
    return l->n > 0;
}

static void set_list(list *l, int n, const int64_t *v)
{
    l->n = n;
    for (int i = 0; i < n; i++) l->v[i] = v[i];
}

static int parse_dtype(const char *s)
{
    if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32")) return FA_DTYPE_F32;
    if (!strcmp(s, "fp16") || !strcmp(s, "f16") || !strcmp(s, "float16")) return FA_DTYPE_F16;
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) return FA_DTYPE_BF16;
    return -1;
}

static const char *dtype_label(fa_dtype d)
{
    return d == FA_DTYPE_F32 ? "fp32" : d == FA_DTYPE_F16 ? "fp16" : d == FA_DTYPE_BF16 ? "bf16" : fa_dtype_name(d);
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->device = -1;
    o->dtype = -1;
    o->grids = GRID_FWD;
    o->passes = PASS_FWD | PASS_FWDBWD;
    o->causal = CAUSAL_OFF | CAUSAL_ON;
    o->hidden = 2048;
    o->decode_hq = 32;
    o->decode_hk = 8;
    o->ceilings = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                            \
    do {                                                                                                      \
        if (!v) return fprintf(stderr, "flashport-bench: %s needs a value\n", a), 0;                          \
        i++;                                                                                                  \
    } while (0)
#define BAD_VALUE return fprintf(stderr, "flashport-bench: bad value for %s: '%s'\n", a, v), 0
        int64_t n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--device")) {
            NEED_VALUE;
            if (!strcmp(v, "all")) o->device = -2;
            else if (!strcmp(v, "best")) o->device = -1;
            else if (parse_int(v, &n) && n >= 0) o->device = (int)n;
            else BAD_VALUE;
        } else if (!strcmp(a, "--grid")) {
            NEED_VALUE;
            if (!strcmp(v, "fwd")) o->grids = GRID_FWD;
            else if (!strcmp(v, "decode")) o->grids = GRID_DECODE;
            else if (!strcmp(v, "all")) o->grids = GRID_FWD | GRID_DECODE;
            else BAD_VALUE;
        } else if (!strcmp(a, "--decode")) {
            o->grids = GRID_DECODE;
        } else if (!strcmp(a, "--dtype")) {
            NEED_VALUE;
            if ((o->dtype = parse_dtype(v)) < 0) BAD_VALUE;
        } else if (!strcmp(a, "--hdim")) {
            NEED_VALUE;
            if (!parse_list(v, &o->hdim)) BAD_VALUE;
        } else if (!strcmp(a, "--seqlen")) {
            NEED_VALUE;
            if (!parse_list(v, &o->seqlen)) BAD_VALUE;
        } else if (!strcmp(a, "--batch")) {
            NEED_VALUE;
            if (!parse_list(v, &o->batch)) BAD_VALUE;
        } else if (!strcmp(a, "--decode-batch")) {
            NEED_VALUE;
            if (!parse_list(v, &o->decode_batch)) BAD_VALUE;
        } else if (!strcmp(a, "--kv")) {
            NEED_VALUE;
            if (!parse_list(v, &o->kv)) BAD_VALUE;
        } else if (!strcmp(a, "--causal")) {
            NEED_VALUE;
            if (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "no")) o->causal = CAUSAL_OFF;
            else if (!strcmp(v, "on") || !strcmp(v, "1") || !strcmp(v, "yes")) o->causal = CAUSAL_ON;
            else if (!strcmp(v, "both")) o->causal = CAUSAL_OFF | CAUSAL_ON;
            else BAD_VALUE;
        } else if (!strcmp(a, "--pass")) {
            NEED_VALUE;
            if (!strcmp(v, "fwd")) o->passes = PASS_FWD;
            else if (!strcmp(v, "fwdbwd") || !strcmp(v, "bwd")) o->passes = PASS_FWDBWD;
            else if (!strcmp(v, "both")) o->passes = PASS_FWD | PASS_FWDBWD;
            else BAD_VALUE;
        } else if (!strcmp(a, "--hidden")) {
            NEED_VALUE;
            if (!parse_int(v, &o->hidden) || o->hidden <= 0) BAD_VALUE;
        } else if (!strcmp(a, "--tokens")) {
            NEED_VALUE;
            if (!parse_int(v, &o->tokens) || o->tokens <= 0) BAD_VALUE;
        } else if (!strcmp(a, "--heads")) {
            NEED_VALUE;
            if (!parse_int(v, &o->heads) || o->heads <= 0) BAD_VALUE;
        } else if (!strcmp(a, "--gqa")) {
            NEED_VALUE;
            long long hq, hk;
            if (sscanf(v, "%lld:%lld", &hq, &hk) != 2 || hq <= 0 || hk <= 0 || hq % hk) BAD_VALUE;
            o->decode_hq = hq;
            o->decode_hk = hk;
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else if (!strcmp(a, "--repeats")) {
            NEED_VALUE;
            if (!parse_int(v, &n) || n <= 0 || n > 100000) BAD_VALUE;
            o->repeats = (int)n;
        } else if (!strcmp(a, "--warmup")) {
            NEED_VALUE;
            if (!parse_int(v, &n) || n < 0 || n > 100000) BAD_VALUE;
            o->warmup = (int)n + 1; /* stored +1 so 0 means "default" */
        } else if (!strcmp(a, "--mem-gb")) {
            NEED_VALUE;
            o->mem_gb = atof(v);
            if (!(o->mem_gb > 0)) BAD_VALUE;
        } else if (!strcmp(a, "--tile") || !strcmp(a, "--bwd-tile")) {
            NEED_VALUE;
            if (!parse_tile(v, !strcmp(a, "--tile") ? &o->tile : &o->bwd_tile)) BAD_VALUE;
        } else if (!strcmp(a, "--no-ceilings")) {
            o->ceilings = 0;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--device-memory")) {
            o->device_memory = 1;
        } else {
            fprintf(stderr, "flashport-bench: unknown option '%s'\n", a);
            usage(stderr);
            return 0;
        }
#undef NEED_VALUE
#undef BAD_VALUE
    }
    return 1;
}

/* ---------------------------------------------------------------- the grids */

static int is_cpu(const fa_device_props *p) { return p->backend == FA_BACKEND_CPU; }

/* Points of the forward / backward grid for one device, in table order. Returns the count. */
static int fwd_points(const options *o, const fa_device_props *props, fa_dtype dtype, point *pts, int max)
{
    int cpu = is_cpu(props), n = 0;
    list hdim = o->hdim, seqlen = o->seqlen;
    if (!hdim.n) {
        if (o->quick) set_list(&hdim, 1, (int64_t[]){128});
        else set_list(&hdim, 3, (int64_t[]){64, 128, 256});
    }
    if (!seqlen.n) {
        if (o->quick) set_list(&seqlen, 2, cpu ? (int64_t[]){512, 1024} : (int64_t[]){1024, 4096});
        else if (cpu) set_list(&seqlen, 4, (int64_t[]){512, 1024, 2048, 4096});
        else set_list(&seqlen, 6, (int64_t[]){512, 1024, 2048, 4096, 8192, 16384});
    }
    list batch = o->batch;
    if (!batch.n) set_list(&batch, 1, (int64_t[]){0}); /* 0: tokens / seqlen */
    /* 16k tokens per batch; --quick on a CPU takes a quarter of that, so a 2-core machine finishes in minutes. */
    int64_t tokens = o->tokens ? o->tokens : o->quick && cpu ? 4096 : 16384;
    for (int pa = PASS_FWD; pa <= PASS_FWDBWD; pa <<= 1) {
        if (!(o->passes & pa)) continue;
        for (int ih = 0; ih < hdim.n; ih++)
            for (int is = 0; is < seqlen.n; is++)
                for (int ib = 0; ib < batch.n; ib++)
                    for (int c = 0; c <= 1; c++) {
                        if (!(o->causal & (c ? CAUSAL_ON : CAUSAL_OFF)) || n == max) continue;
                        point *p = &pts[n++];
                        memset(p, 0, sizeof *p);
                        p->grid = GRID_FWD;
                        p->pass = pa;
                        p->dtype = dtype;
                        p->d = hdim.v[ih];
                        p->sq = p->sk = seqlen.v[is];
                        p->batch = batch.v[ib] ? batch.v[ib] : (tokens / p->sq > 0 ? tokens / p->sq : 1);
                        p->hq = p->hk = o->heads ? o->heads : (o->hidden / p->d > 0 ? o->hidden / p->d : 1);
                        p->causal = c;
                    }
    }
    return n;
}

static int decode_points(const options *o, fa_dtype dtype, point *pts, int max)
{
    int n = 0;
    list batch = o->decode_batch, kv = o->kv, hdim = o->hdim;
    if (!batch.n) {
        if (o->quick) set_list(&batch, 2, (int64_t[]){1, 16});
        else set_list(&batch, 3, (int64_t[]){1, 16, 64});
    }
    if (!kv.n) {
        if (o->quick) set_list(&kv, 2, (int64_t[]){8192, 16384});
        else set_list(&kv, 5, (int64_t[]){8192, 16384, 32768, 65536, 131072});
    }
    if (!hdim.n) set_list(&hdim, 1, (int64_t[]){128});
    for (int ih = 0; ih < hdim.n; ih++)
        for (int ib = 0; ib < batch.n; ib++)
            for (int ik = 0; ik < kv.n && n < max; ik++) {
                point *p = &pts[n++];
                memset(p, 0, sizeof *p);
                p->grid = GRID_DECODE;
                p->dtype = dtype;
                p->batch = batch.v[ib];
                p->hq = o->decode_hq;
                p->hk = o->decode_hk;
                p->sq = 1;
                p->sk = kv.v[ik];
                p->d = hdim.v[ih];
            }
    return n;
}

/*
 * Last-level cache of a CPU: sysfs where it says (the library's figure comes from sysconf, which on some
 * virtual machines reports a multiple of the real L3), else the device's own figure, else 32 MiB.
 */
static int64_t llc_bytes(const fa_device_props *props)
{
    int64_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[64];
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (level < 2 || !(f = fopen(path, "r"))) continue;
        long long kb = 0;
        if (fgets(buf, sizeof buf, f) && sscanf(buf, "%lldK", &kb) == 1 && kb * 1024 > best) best = kb * 1024;
        fclose(f);
    }
    if (best > 0) return best;
    return props->l3_cache_bytes > 0 ? props->l3_cache_bytes : (int64_t)32 << 20;
}

/* ---------------------------------------------------------------- one point */

typedef struct bufset {
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv;
    float *lse;
} bufset;

static void free_set(bench_mem *m, bufset *s)
{
    void *all[] = {s->q, s->k, s->v, s->out, s->dout, s->dq, s->dk, s->dv, s->lse};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) bench_mem_free(m, all[i]);
    memset(s, 0, sizeof *s);
}

/*
 * The cache a round of input sets must outgrow so that no call finds its inputs already cached: the CPU's
 * last level, a GPU's L2.
 */
static int64_t cache_to_outgrow(const fa_device_props *props)
{
    if (is_cpu(props)) return llc_bytes(props);
    return props->l2_cache_bytes > 0 ? props->l2_cache_bytes : (int64_t)32 << 20;
}

static double fwd_flops(const point *p)
{
    double f = 4.0 * (double)p->batch * (double)p->hq * (double)p->sq * (double)p->sk * (double)p->d;
    if (p->causal) f *= 0.5;
    return p->pass == PASS_FWDBWD ? 3.5 * f : f;
}

static void fail(result *r, fa_status st, const char *what)
{
    r->status = st == FA_ERR_UNSUPPORTED ? "unsupported" : "error";
    snprintf(r->reason, sizeof r->reason, "%s: %s: %s", what, fa_status_string(st), fa_last_error());
}

/* The kernels' instruction set and the backward tiles, from the plan's description. */
static void read_description(const fa_plan *plan, result *r)
{
    char text[4096];
    fa_plan_describe(plan, text, sizeof text);
    const char *k = strstr(text, "cpu kernels: ");
    if (k) sscanf(k, "cpu kernels: %15s", r->isa);
    const char *b = strstr(text, "backward kernel ");
    if (b) {
        int bq = 0, bkv = 0;
        const char *c = strstr(b, "block_q=");
        if (c && sscanf(c, "block_q=%d block_kv=%d", &bq, &bkv) == 2)
            snprintf(r->bwd_config, sizeof r->bwd_config, "%dx%d", bq, bkv);
    }
}

/* One timed call of a point: fa_fwd (and fa_bwd) on input set call % sets. */
typedef struct point_calls {
    const point *pt;
    bufset *bs;
    int sets;
    const fa_plan *plan;
    const int32_t *seqused;
    void *ws;
    int64_t ws_size;
} point_calls;

static fa_status point_call(void *ctx, int call, const char **what)
{
    const point_calls *c = ctx;
    const point *pt = c->pt;
    bufset *x = &c->bs[call % c->sets];
    fa_fwd_args fa;
    memset(&fa, 0, sizeof fa);
    fa.q = fa_tensor_4d(x->q, pt->dtype, pt->batch, pt->sq, pt->hq, pt->d);
    fa.k = fa_tensor_4d(x->k, pt->dtype, pt->batch, pt->sk, pt->hk, pt->d);
    fa.v = fa_tensor_4d(x->v, pt->dtype, pt->batch, pt->sk, pt->hk, pt->d);
    fa.out = fa_tensor_4d(x->out, pt->dtype, pt->batch, pt->sq, pt->hq, pt->d);
    if (pt->pass == PASS_FWDBWD) fa.lse = fa_tensor_3d(x->lse, FA_DTYPE_F32, pt->batch, pt->hq, pt->sq);
    fa.seqused_k = c->seqused;
    fa.workspace = c->ws;
    fa.workspace_size = c->ws_size;
    fa_status st = fa_fwd(c->plan, &fa, NULL);
    if (st != FA_OK) {
        *what = "fa_fwd";
        return st;
    }
    if (pt->pass != PASS_FWDBWD) return FA_OK;
    fa_bwd_args ba;
    memset(&ba, 0, sizeof ba);
    ba.q = fa.q;
    ba.k = fa.k;
    ba.v = fa.v;
    ba.out = fa.out;
    ba.lse = fa.lse;
    ba.dout = fa_tensor_4d(x->dout, pt->dtype, pt->batch, pt->sq, pt->hq, pt->d);
    ba.dq = fa_tensor_4d(x->dq, pt->dtype, pt->batch, pt->sq, pt->hq, pt->d);
    ba.dk = fa_tensor_4d(x->dk, pt->dtype, pt->batch, pt->sk, pt->hk, pt->d);
    ba.dv = fa_tensor_4d(x->dv, pt->dtype, pt->batch, pt->sk, pt->hk, pt->d);
    ba.workspace = c->ws;
    ba.workspace_size = c->ws_size;
    st = fa_bwd(c->plan, &ba, NULL);
    if (st != FA_OK) *what = "fa_bwd";
    return st;
}

static void run_point(int device, const fa_device_props *props, const options *o, const point *pt, result *r)
{
    memset(r, 0, sizeof *r);
    r->device = device;
    r->pt = *pt;
    r->status = "ok";
    r->frac_peak = r->frac_bw = -1;
    const int decode = pt->grid == GRID_DECODE, bwd = pt->pass == PASS_FWDBWD;
    const int es = fa_dtype_size(pt->dtype);
    r->flops = decode ? 4.0 * (double)pt->batch * (double)pt->hq * (double)pt->sk * (double)pt->d : fwd_flops(pt);
    r->bytes = decode ? 2.0 * (double)pt->batch * (double)pt->sk * (double)pt->hk * (double)pt->d * es : 0.0;

    fa_attn_desc desc;
    fa_attn_desc_init(&desc);
    desc.dtype = pt->dtype;
    desc.batch = pt->batch;
    desc.seqlen_q = pt->sq;
    desc.seqlen_k = pt->sk;
    desc.heads_q = pt->hq;
    desc.heads_kv = pt->hk;
    desc.head_dim_qk = desc.head_dim_v = pt->d;
    desc.causal = pt->causal;
    desc.kv_cache_lengths = decode;
    desc.return_lse = bwd;
    desc.with_backward = bwd;
    fa_plan *plan = NULL;
    const fa_tile_config *fwd_tile = o->tile.block_q > 0 ? &o->tile : NULL;
    const fa_tile_config *bwd_tile = bwd && o->bwd_tile.block_q > 0 ? &o->bwd_tile : NULL;
    int forced = fwd_tile || bwd_tile;
    fa_status st = forced ? fa_plan_create_with_configs(&plan, device, &desc, fwd_tile, bwd_tile)
                          : fa_plan_create(&plan, device, &desc);
    if (st != FA_OK) {
        fail(r, st, forced ? "fa_plan_create_with_configs" : "fa_plan_create");
        return;
    }
    r->have_config = fa_plan_config(plan, &r->config) == FA_OK;
    read_description(plan, r);

    /* Sizes of one set of inputs and outputs. */
    int64_t nq = pt->batch * pt->sq * pt->hq * pt->d, nkv = pt->batch * pt->sk * pt->hk * pt->d;
    int64_t nlse = pt->batch * pt->hq * pt->sq;
    int64_t set_bytes = (2 * nq + 2 * nkv) * es;
    if (bwd) set_bytes += (3 * nq + 2 * nkv) * es + nlse * 4; /* dout, dq, dk, dv, lse */
    r->set_bytes = set_bytes;

    /* Enough sets that one round of them is several times the last-level cache, within the memory budget. */
    int64_t l3 = cache_to_outgrow(props);
    double budget = o->mem_gb > 0 ? o->mem_gb * 1e9 : 0.5 * (double)props->memory_bytes;
    if (budget <= 0) budget = 4e9;
    int64_t want = (4 * l3 + set_bytes - 1) / set_bytes;
    if (want < 2) want = 2;
    if (want > 16) want = 16;
    int64_t fit = (int64_t)(budget / (double)set_bytes);
    int sets = (int)(want < fit ? want : fit);
    if (sets < 1) {
        r->status = "skipped";
        snprintf(r->reason, sizeof r->reason, "one set of buffers needs %.1f GB, over the %.1f GB budget (--mem-gb)",
                 (double)set_bytes * 1e-9, budget * 1e-9);
        fa_plan_destroy(plan);
        return;
    }
    r->sets = sets;

    /*
     * Every buffer the calls see, the workspace and seqused_k included, is memory of the measured device: host
     * memory on the CPU, fa_device_alloc memory on a GPU (filled on the host and copied over).
     */
    bench_mem mem;
    bench_mem_init(&mem, device, is_cpu(props) && !o->device_memory);
    bufset *bs = calloc((size_t)sets, sizeof *bs);
    int32_t *seqused = NULL;
    int64_t ws_size = fa_plan_workspace_size(plan);
    void *ws = ws_size > 0 ? bench_mem_uninit(&mem, ws_size) : NULL;
    int ok = bs && (ws_size <= 0 || ws);
    if (!bs) snprintf(mem.error, sizeof mem.error, "out of host memory");
    if (decode && ok) {
        int32_t *lengths = malloc(sizeof(int32_t) * (size_t)pt->batch);
        for (int64_t b = 0; lengths && b < pt->batch; b++) lengths[b] = (int32_t)pt->sk; /* a full cache */
        seqused = lengths ? bench_mem_copy_of(&mem, lengths, pt->batch * 4) : NULL;
        if (!lengths) snprintf(mem.error, sizeof mem.error, "out of host memory");
        free(lengths);
        ok = seqused != NULL;
    }
    for (int s = 0; ok && s < sets; s++) {
        bufset *x = &bs[s];
        uint64_t seed = 1000u * (uint64_t)s;
        /* Outputs are filled too: every page is touched before the clock runs. */
        ok = (x->q = bench_mem_filled(&mem, pt->dtype, nq, seed + 1)) &&
             (x->k = bench_mem_filled(&mem, pt->dtype, nkv, seed + 2)) &&
             (x->v = bench_mem_filled(&mem, pt->dtype, nkv, seed + 3)) &&
             (x->out = bench_mem_filled(&mem, pt->dtype, nq, seed + 4));
        if (ok && bwd)
            ok = (x->dout = bench_mem_filled(&mem, pt->dtype, nq, seed + 5)) &&
                 (x->dq = bench_mem_filled(&mem, pt->dtype, nq, seed + 6)) &&
                 (x->dk = bench_mem_filled(&mem, pt->dtype, nkv, seed + 7)) &&
                 (x->dv = bench_mem_filled(&mem, pt->dtype, nkv, seed + 8)) &&
                 (x->lse = bench_mem_filled(&mem, FA_DTYPE_F32, nlse, seed + 9));
    }
    bench_mem_done(&mem); /* the staging buffer is not needed past the fills */
    if (!ok) {
        r->status = "skipped";
        snprintf(r->reason, sizeof r->reason, "%d set(s) of %.2f GB: %.400s", sets, (double)set_bytes * 1e-9, mem.error);
        goto done;
    }

    const int gpu = !is_cpu(props);
    int repeats = o->repeats ? o->repeats : gpu ? 20 : decode ? 10 : 5;
    int warmup = o->warmup ? o->warmup - 1 : gpu ? 5 : decode ? 2 : 1;
    r->repeats = repeats;
    double *times = malloc(sizeof(double) * (size_t)repeats);
    if (!times) {
        r->status = "error";
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    point_calls pc = {pt, bs, sets, plan, seqused, ws, ws_size > 0 ? ws_size : 0};
    const char *what = "";
    st = bench_time_calls(device, warmup, repeats, point_call, &pc, times, &what);
    if (st != FA_OK) {
        fail(r, st, what);
    } else {
        double med = bench_median(times, repeats); /* sorts: min and max are the ends */
        r->ms_median = med * 1e3;
        r->ms_min = times[0] * 1e3;
        r->ms_max = times[repeats - 1] * 1e3;
        r->gflops = r->flops / med * 1e-9;
        if (decode) r->gbps = r->bytes / med * 1e-9;
    }
    free(times);
done:
    for (int s = 0; bs && s < sets; s++) free_set(&mem, &bs[s]);
    free(bs);
    bench_mem_free(&mem, seqused);
    bench_mem_free(&mem, ws);
    fa_plan_destroy(plan);
}

/* ---------------------------------------------------------------- ceilings */

static double peak_for(ceilings *c, const char *isa)
{
    if (!c->measured || !isa[0]) return -1;
    if (!strcmp(isa, c->isa)) return c->peak_gflops;
    for (int i = 0; i < 4; i++)
        if (!strcmp(c->other_isa[i], isa)) return c->other_peak[i];
    for (int i = 0; i < 4; i++)
        if (!c->other_isa[i][0]) {
            snprintf(c->other_isa[i], sizeof c->other_isa[i], "%s", isa);
            c->other_peak[i] = bench_fma_peak_gflops(isa);
            return c->other_peak[i];
        }
    return -1;
}

static void measure_ceilings(const options *o, const fa_device_props *props, fa_dtype dtype, ceilings *c)
{
    double load = c->load_before;
    memset(c, 0, sizeof *c);
    c->load_before = load;
    if (!o->ceilings || !is_cpu(props)) return;
    c->measured = 1;
    c->threads = omp_threads();
    snprintf(c->isa, sizeof c->isa, "%s", bench_default_isa());
    c->peak_gflops = bench_fma_peak_gflops(c->isa);
    if (dtype == FA_DTYPE_BF16) c->bf16_dot_gflops = bench_bf16_dot_peak_gflops();
    int64_t l3 = llc_bytes(props);
    c->llc_bytes = l3;
    c->read_bytes = 16 * l3 > ((int64_t)1 << 30) ? 16 * l3 : ((int64_t)1 << 30);
    if (props->memory_bytes > 0 && c->read_bytes > props->memory_bytes / 4) c->read_bytes = props->memory_bytes / 4;
    c->read_gbs = bench_read_bandwidth_gbs(c->read_bytes);
}

/* The 1-minute load average, or -1: a busy machine makes every number here low. */
static double load_average(void)
{
    double l[1];
    return getloadavg(l, 1) == 1 ? l[0] : -1.0;
}

static void print_ceilings(const ceilings *c)
{
    if (!c->measured) return;
    TXT("machine ceilings (%d OpenMP threads): fp32 FMA peak %.1f GFLOP/s (FMA loop for the %s kernels)",
        c->threads, c->peak_gflops, c->isa);
    for (int i = 0; i < 4; i++)
        if (c->other_isa[i][0]) TXT(", %.1f GFLOP/s (%s loop)", c->other_peak[i], c->other_isa[i]);
    if (c->bf16_dot_gflops > 0) TXT("; bf16 dot-product peak %.1f GFLOP/s (VDPBF16PS)", c->bf16_dot_gflops);
    TXT("; read bandwidth %.1f GB/s (%.0f MiB buffer; last-level cache %.0f MiB)\n", c->read_gbs,
        (double)c->read_bytes / (1 << 20), (double)c->llc_bytes / (1 << 20));
    double load = load_average();
    if (load > 0.5 * c->threads)
        TXT("warning: load average %.2f before this run on %d threads: other work shares the cores, numbers are "
            "low\n",
            load, c->threads);
}

/* ---------------------------------------------------------------- output */

static void tile_text(const result *r, char *buf, size_t size)
{
    if (!r->have_config) {
        snprintf(buf, size, "-");
        return;
    }
    int n = snprintf(buf, size, "%dx%d", r->config.block_q, r->config.block_kv);
    if (r->config.num_splits > 1 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " s%d", r->config.num_splits);
    if (r->config.warps > 1 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " w%d", r->config.warps);
    if (r->bwd_config[0] && n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, " b%s", r->bwd_config);
}

/* The table's rate unit: GFLOP/s on a CPU, TFLOP/s on a GPU (JSON keeps GFLOP/s everywhere). */
static int g_tflops;

static void print_fwd_header(fa_dtype dtype)
{
    TXT("\nforward / backward, %s. FLOPs: fwd 4*b*h*s^2*d (halved when causal), fwd+bwd 3.5x fwd. "
           "tile = block_q x block_kv [sN splits] [b: backward tile]\n",
           dtype_label(dtype));
    TXT("%-7s %4s %6s %5s %5s %-6s %-16s %4s %10s %10s %7s\n", "pass", "hdim", "seqlen", "batch", "heads", "causal",
           "tile", "sets", "median ms", g_tflops ? "TFLOP/s" : "GFLOP/s", "peak");
}

static void print_fwd_row(const result *r)
{
    char tile[128], frac[16] = "-";
    tile_text(r, tile, sizeof tile);
    const point *p = &r->pt;
    TXT("%-7s %4lld %6lld %5lld %5lld %-6s %-16s ", p->pass == PASS_FWD ? "fwd" : "fwd+bwd", (long long)p->d,
           (long long)p->sq, (long long)p->batch, (long long)p->hq, p->causal ? "yes" : "no", tile);
    if (strcmp(r->status, "ok")) {
        TXT("%s: %s\n", r->status, r->reason);
    } else {
        if (r->frac_peak >= 0) snprintf(frac, sizeof frac, "%.1f%%", 100 * r->frac_peak);
        TXT("%4d %10.2f %10.1f %7s\n", r->sets, r->ms_median, r->gflops / (g_tflops ? 1000 : 1), frac);
    }
    if (txt) fflush(txt);
}

static void print_decode_header(fa_dtype dtype, int64_t hq, int64_t hk)
{
    TXT("\ndecode, %s, one query token, GQA %lld:%lld, KV cache lengths per sequence. GB/s = K and V bytes read "
           "/ time\n",
           dtype_label(dtype), (long long)hq, (long long)hk);
    TXT("%5s %7s %4s %-16s %4s %8s %10s %9s %7s\n", "batch", "kv", "hdim", "tile", "sets", "KV MiB", "median ms",
           "GB/s", "bw");
}

static void print_decode_row(const result *r)
{
    char tile[128], frac[16] = "-";
    tile_text(r, tile, sizeof tile);
    const point *p = &r->pt;
    TXT("%5lld %7lld %4lld %-16s ", (long long)p->batch, (long long)p->sk, (long long)p->d, tile);
    if (strcmp(r->status, "ok")) {
        TXT("%s: %s\n", r->status, r->reason);
    } else {
        if (r->frac_bw >= 0) snprintf(frac, sizeof frac, "%.1f%%", 100 * r->frac_bw);
        TXT("%4d %8.0f %10.3f %9.1f %7s\n", r->sets, r->bytes / (1 << 20), r->ms_median, r->gbps, frac);
    }
    if (txt) fflush(txt);
}

static void progress(const result *r)
{
    const point *p = &r->pt;
    fprintf(stderr, "[flashport-bench] dev %d %s %s b=%lld hq=%lld hk=%lld sq=%lld sk=%lld d=%lld%s: ", r->device,
            p->grid == GRID_DECODE ? "decode" : p->pass == PASS_FWD ? "fwd" : "fwd+bwd", dtype_label(p->dtype),
            (long long)p->batch, (long long)p->hq, (long long)p->hk, (long long)p->sq, (long long)p->sk,
            (long long)p->d, p->causal ? " causal" : "");
    if (strcmp(r->status, "ok")) fprintf(stderr, "%s\n", r->status);
    else fprintf(stderr, "%.3f ms\n", r->ms_median);
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') printf("\\n");
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void json_number(double x)
{
    if (isfinite(x)) printf("%.6g", x);
    else printf("null");
}

static void json_ceilings(const ceilings *c, const char *grid, int first)
{
    printf("%s{\"grid\": \"%s\", \"load_average_before\": ", first ? "" : ", ", grid);
    json_number(c->load_before);
    printf(", \"threads\": %d, \"isa\": ", c->threads);
    json_string(c->isa);
    printf(", \"fma_peak_gflops\": ");
    json_number(c->peak_gflops);
    printf(", \"other_isa_peaks\": {");
    for (int i = 0, k = 0; i < 4; i++)
        if (c->other_isa[i][0]) {
            printf("%s", k++ ? ", " : "");
            json_string(c->other_isa[i]);
            printf(": ");
            json_number(c->other_peak[i]);
        }
    printf("}, \"bf16_dot_peak_gflops\": ");
    json_number(c->bf16_dot_gflops);
    printf(", \"read_gbs\": ");
    json_number(c->read_gbs);
    printf(", \"read_buffer_bytes\": %lld, \"llc_bytes\": %lld}", (long long)c->read_bytes, (long long)c->llc_bytes);
}

/* c: the device's two measurements, before its forward table and before its decode table. */
static void json_device(int index, const fa_device_props *p, const ceilings *c, const char *skip, int first)
{
    printf("%s\n    {\"index\": %d, \"backend\": ", first ? "" : ",", index);
    json_string(fa_backend_name(p->backend));
    printf(", \"name\": ");
    json_string(p->name);
    printf(", \"arch\": ");
    json_string(p->arch);
    printf(", \"compute_units\": %d, \"simd_width\": %d, \"memory_bytes\": %lld, \"l2_bytes\": %lld, "
           "\"l3_bytes\": %lld",
           p->compute_units, p->simd_width, (long long)p->memory_bytes, (long long)p->l2_cache_bytes,
           (long long)p->l3_cache_bytes);
    printf(", \"ceilings\": [");
    for (int g = 0, k = 0; g < 2; g++)
        if (c[g].measured) json_ceilings(&c[g], g ? "decode" : "fwd", k++ == 0);
    printf("]");
    if (skip) {
        printf(", \"skipped\": ");
        json_string(skip);
    }
    printf("}");
}

static void json_result(const result *r, int first)
{
    const point *p = &r->pt;
    printf("%s\n    {\"device\": %d, \"grid\": \"%s\", \"pass\": \"%s\", \"dtype\": \"%s\", \"batch\": %lld, "
           "\"heads_q\": %lld, \"heads_kv\": %lld, \"seqlen_q\": %lld, \"seqlen_k\": %lld, \"hdim\": %lld, "
           "\"causal\": %s, \"status\": \"%s\"",
           first ? "" : ",", r->device, p->grid == GRID_DECODE ? "decode" : "fwd",
           p->grid == GRID_DECODE ? "decode" : p->pass == PASS_FWD ? "fwd" : "fwdbwd", dtype_label(p->dtype),
           (long long)p->batch, (long long)p->hq, (long long)p->hk, (long long)p->sq, (long long)p->sk,
           (long long)p->d, p->causal ? "true" : "false", r->status);
    if (r->reason[0]) {
        printf(", \"reason\": ");
        json_string(r->reason);
    }
    if (r->have_config)
        printf(", \"config\": {\"block_q\": %d, \"block_kv\": %d, \"warps\": %d, \"stages\": %d, \"num_splits\": %d}",
               r->config.block_q, r->config.block_kv, r->config.warps, r->config.stages, r->config.num_splits);
    if (r->bwd_config[0]) printf(", \"bwd_tile\": \"%s\"", r->bwd_config);
    if (r->isa[0]) printf(", \"isa\": \"%s\"", r->isa);
    if (!strcmp(r->status, "ok")) {
        printf(", \"sets\": %d, \"set_bytes\": %lld, \"repeats\": %d, \"ms\": ", r->sets, (long long)r->set_bytes,
               r->repeats);
        json_number(r->ms_median);
        printf(", \"ms_min\": ");
        json_number(r->ms_min);
        printf(", \"ms_max\": ");
        json_number(r->ms_max);
        printf(", \"flops\": ");
        json_number(r->flops);
        printf(", \"gflops\": ");
        json_number(r->gflops);
        if (p->grid == GRID_DECODE) {
            printf(", \"kv_bytes\": ");
            json_number(r->bytes);
            printf(", \"gbps\": ");
            json_number(r->gbps);
        }
        if (r->peak_gflops > 0) {
            printf(", \"peak_gflops\": ");
            json_number(r->peak_gflops);
        }
        if (r->read_gbs > 0) {
            printf(", \"read_gbs\": ");
            json_number(r->read_gbs);
        }
        if (r->frac_peak >= 0) {
            printf(", \"frac_peak\": ");
            json_number(r->frac_peak);
        }
        if (r->frac_bw >= 0) {
            printf(", \"frac_bw\": ");
            json_number(r->frac_bw);
        }
    }
    printf("}");
}

static result *new_result(void)
{
    if (n_results == cap_results) {
        int cap = cap_results ? 2 * cap_results : 64;
        result *r = realloc(results, sizeof *r * (size_t)cap);
        if (!r) return NULL;
        results = r;
        cap_results = cap;
    }
    return &results[n_results++];
}

/* ---------------------------------------------------------------- main */

#define MAX_POINTS 4096

int main(int argc, char **argv)
{
    options o;
    if (!parse_options(argc, argv, &o)) return 2;
    int count = fa_device_count();
    if (count <= 0) {
        fprintf(stderr, "flashport-bench: no device: %s\n", fa_last_error());
        return 1;
    }
    int first_dev = o.device == -2 ? 0 : o.device == -1 ? fa_device_best() : o.device;
    int last_dev = o.device == -2 ? count - 1 : first_dev;
    if (first_dev < 0 || first_dev >= count) {
        fprintf(stderr, "flashport-bench: --device %d: there are %d device(s)\n", first_dev, count);
        return 2;
    }
    txt = o.json ? NULL : stdout;
    static point pts[MAX_POINTS];
    ceilings *ceil_of = calloc((size_t)count * 2, sizeof *ceil_of); /* per device: fwd table, decode table */
    const char **skipped = calloc((size_t)count, sizeof *skipped);
    fa_device_props *props_of = calloc((size_t)count, sizeof *props_of);
    if (!ceil_of || !skipped || !props_of) return fprintf(stderr, "flashport-bench: out of memory\n"), 1;
    int failures = 0;

    TXT("flashport %s, flashport-bench; %d device(s)\n", fa_version_string(), count);
    for (int dev = first_dev; dev <= last_dev; dev++) {
        fa_device_props *props = &props_of[dev];
        fa_status st = fa_device_get(dev, props);
        if (st != FA_OK) {
            fprintf(stderr, "flashport-bench: device %d: %s\n", dev, fa_last_error());
            failures++;
            continue;
        }
        TXT("\n== device %d: %s backend, %s (%s), %d compute units\n", dev, fa_backend_name(props->backend),
               props->name, props->arch, props->compute_units);
        fa_dtype dtype = o.dtype >= 0 ? (fa_dtype)o.dtype : is_cpu(props) ? FA_DTYPE_F32 : FA_DTYPE_BF16;
        g_tflops = !is_cpu(props);
        if (!is_cpu(props))
            /* The FMA and bandwidth loops run on the host's cores: as a GPU's ceilings they would be wrong. */
            TXT("ceilings: not measured on a GPU (the peak and bw columns stay empty); times are host wall time "
                "with the device synchronized around each call, launch overhead included\n");
        for (int g = GRID_FWD; g <= GRID_DECODE; g <<= 1) {
            if (!(o.grids & g)) continue;
            /* Ceilings measured right before each table, so a table and its fractions share conditions. */
            ceilings *c = &ceil_of[2 * dev + (g == GRID_DECODE)];
            c->load_before = load_average();
            measure_ceilings(&o, props, dtype, c);
            if (c->measured)
                fprintf(stderr, "[flashport-bench] ceilings: %.1f GFLOP/s fp32 (%s), %.1f GB/s read, load %.2f\n",
                        c->peak_gflops, c->isa, c->read_gbs, c->load_before);
            int n = g == GRID_FWD ? fwd_points(&o, props, dtype, pts, MAX_POINTS)
                                  : decode_points(&o, dtype, pts, MAX_POINTS);
            print_ceilings(c);
            if (g == GRID_FWD) print_fwd_header(dtype);
            else print_decode_header(dtype, o.decode_hq, o.decode_hk);
            for (int i = 0; i < n; i++) {
                result *r = new_result();
                if (!r) return fprintf(stderr, "flashport-bench: out of memory\n"), 1;
                run_point(dev, props, &o, &pts[i], r);
                double peak = peak_for(c, r->isa);
                r->peak_gflops = peak;
                r->read_gbs = c->measured ? c->read_gbs : -1;
                if (!strcmp(r->status, "ok") && peak > 0) r->frac_peak = r->gflops / peak;
                if (!strcmp(r->status, "ok") && g == GRID_DECODE && r->read_gbs > 0) r->frac_bw = r->gbps / r->read_gbs;
                if (!strcmp(r->status, "error")) failures++;
                progress(r);
                if (g == GRID_FWD) print_fwd_row(r);
                else print_decode_row(r);
            }
        }
    }

    if (o.json) {
        char date[64];
        time_t t = time(NULL);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S%z", localtime(&t));
        printf("{\n  \"tool\": \"flashport-bench\", \"version\": ");
        json_string(fa_version_string());
        printf(", \"date\": \"%s\", \"omp_threads\": %d, \"load_average_after\": ", date, omp_threads());
        json_number(load_average());
        printf(",\n  \"flop_convention\": ");
        json_string("fwd 4*b*h*sq*sk*d, halved when causal; fwd+bwd 3.5x fwd; decode reports K/V bytes read");
        printf(",\n  \"devices\": [");
        for (int dev = first_dev, k = 0; dev <= last_dev; dev++)
            json_device(dev, &props_of[dev], &ceil_of[2 * dev], skipped[dev], k++ == 0);
        printf("\n  ],\n  \"results\": [");
        for (int i = 0; i < n_results; i++) json_result(&results[i], i == 0);
        printf("\n  ]\n}\n");
    }
    free(results);
    free(ceil_of);
    free(skipped);
    free(props_of);
    return failures ? 1 : 0;
}
