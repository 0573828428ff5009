/*
 * The OpenCL backward: its kernel family (tiles, validity, local memory, workspace), per plan the program for
 * the problem's specialisation (kernels/bwd.cl behind fa_cl_bwd_params.h), per call every pointer turned back
 * into its buffer and offset and checked to lie inside one allocation of the device before anything is
 * enqueued, then the three kernels: D/LSE rows, dK/dV, dQ. Deterministic by construction (bwd.cl explains).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_backend.h"
#include "fa_philox.h" /* fa_dropout_key_for: the mask every backend draws */
#include "kernels/fa_cl_bwd_params.h"

extern const char fa_opencl_src_fa_cl_bwd_params[]; /* opencl/kernels/fa_cl_bwd_params.h, embedded by the build */
extern const char fa_opencl_src_bwd[];              /* opencl/kernels/bwd.cl */

struct cl_bwd_state {
    cl_program prog;
    cl_kernel pre, dkdv, dq;
    cl_mem dummy; /* bound where an optional buffer is absent; never read */
    int from_cache;
    double compile_ms;
    char options[512];
};

/* ---------------------------------------------------------------- the family */

static int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }
/* rows read only by dot products: an odd number of float4s (bwd.cl's KSTR / VSTR) */
static int64_t dot_stride(int64_t dim) { return round4(dim) + (round4(dim) / 4 % 2 ? 0 : 4); }
/* rows also read as columns 4 tx + 64 c (QWSTR / VWSTR) */
static int64_t wide_stride(int64_t dim) { return 64 * ((dim + 63) / 64) + 4; }

/* FA_L16: 16-bit storage with a head dim above 128 keeps its Q, K, V, dO tiles 16-bit in local memory. */
static int local16(const fa_attn_desc *d)
{
    return d->dtype != FA_DTYPE_F32 && (d->head_dim_qk > 128 || d->head_dim_v > 128);
}

int64_t cl_bwd_local_bytes(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t bq = t->block_q, bkv = t->block_kv, e = local16(d) ? 2 : 4;
    const int64_t kstr = dot_stride(d->head_dim_qk), vstr = dot_stride(d->head_dim_v);
    const int64_t qw = wide_stride(d->head_dim_qk), vw = wide_stride(d->head_dim_v);
    const int64_t dkdv = e * (bkv * kstr + bkv * vstr + bq * qw + bq * vw) + 4 * (2 * bkv * (bq + 4));
    const int64_t dq = e * (bq * kstr + bq * vstr + bkv * qw + bkv * vstr) + 4 * (bq * (bkv + 4));
    return dkdv > dq ? dkdv : dq;
}

/* Query rows of the workspace per array (D, LSE): heads_q x (batch x seqlen_q | total_q). */
static int64_t ws_rows(const fa_attn_desc *d) { return d->heads_q * (d->varlen ? d->total_q : d->batch * d->seqlen_q); }

int64_t cl_bwd_workspace(const fa_attn_desc *d, const fa_tile_config *t)
{
    (void)t;
    return 2 * 4 * ws_rows(d);
}

static int bwd_valid(const fa_attn_desc *d, const fa_device_props *dev, const fa_tile_config *c, char *why,
                     size_t why_size)
{
    const int wg = c->warps * dev->simd_width, ty = wg / 16;
    if (wg != 64 && wg != 128 && wg != 256) {
        snprintf(why, why_size, "warps=%d x simd width %d must be 64, 128 or 256 work-items", c->warps, dev->simd_width);
        return 0;
    }
    if (dev->max_threads_per_block > 0 && dev->max_threads_per_block < wg) {
        snprintf(why, why_size, "the device's largest work-group (%d) is under %d work-items", dev->max_threads_per_block, wg);
        return 0;
    }
    /* work-items hold 1, 2, 4 or 8 keys (dK/dV) and rows (dQ) of the row groups */
    const int kpt = c->block_kv / ty, rpt = c->block_q / ty;
    if (c->block_kv % ty || c->block_q % ty || kpt > 8 || rpt > 8 || kpt < 1 || rpt < 1) {
        snprintf(why, why_size, "block_q=%d and block_kv=%d must be 1, 2, 4 or 8 rows per work-item of %d row groups",
                 c->block_q, c->block_kv, ty);
        return 0;
    }
    /*
     * Accumulators per work-item: keys x (dK + dV columns) of the dK/dV kernel. Above 128 fp32 values GPUs
     * spill; those tiles are dropped there (a CPU device keeps them in cache).
     */
    const int64_t acc = (int64_t)kpt * 4 * ((d->head_dim_qk + 63) / 64 + (d->head_dim_v + 63) / 64);
    if (dev->simd_width >= 32 && acc > 128) {
        snprintf(why, why_size, "%lld dK/dV accumulators per work-item (over 128 on a GPU)", (long long)acc);
        return 0;
    }
    return 1;
}

/* Work-groups of the dK/dV kernel: one per (KV block, KV head, batch). */
static int64_t bwd_work_items(const fa_attn_desc *d, const fa_tile_config *c)
{
    return d->batch * d->heads_kv * ((d->seqlen_k + c->block_kv - 1) / c->block_kv);
}

const fa_kernel_family cl_bwd_family = {
    .name = "opencl_bwd",
    .pass = FA_PASS_BWD,
    .id = CL_KERNEL_BWD,
    .block_q = {16, 32, 64},
    .block_kv = {16, 32, 64},
    .warps = {2, 4, 8, 16},
    .stages = {1},
    .max_splits = 1,
    .smem_bytes = cl_bwd_local_bytes,
    .valid = bwd_valid,
    .workspace_bytes = cl_bwd_workspace,
    .work_items = bwd_work_items,
};

/* ---------------------------------------------------------------- plans */

void cl_bwd_release(cl_bwd_state *s)
{
    if (!s) return;
    if (s->pre) clReleaseKernel(s->pre);
    if (s->dkdv) clReleaseKernel(s->dkdv);
    if (s->dq) clReleaseKernel(s->dq);
    if (s->prog) clReleaseProgram(s->prog);
    if (s->dummy) clReleaseMemObject(s->dummy);
    free(s);
}

fa_status cl_bwd_prepare(cl_ctx *c, const fa_plan_info *plan, cl_bwd_state **out)
{
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->bwd_config;
    *out = NULL;
    cl_bwd_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no memory for a backward plan");
    int n = cl_program_options(c, plan, t, s->options, sizeof s->options);
    snprintf(s->options + n, sizeof s->options - (size_t)n, " -DFA_L16=%d", local16(d));
    /* the parameter header first (host and kernel compile the same struct), then what the kernels share */
    const char *const parts[] = {fa_opencl_src_fa_cl_bwd_params, fa_opencl_src_common, fa_opencl_src_bwd};
    fa_status st = cl_program_get(c, plan->backend_device, parts, 3, s->options, &s->prog, &s->from_cache,
                                  &s->compile_ms);
    cl_int err = CL_SUCCESS;
    if (st == FA_OK) s->pre = clCreateKernel(s->prog, "fa_bwd_pre_cl", &err);
    if (st == FA_OK && err == CL_SUCCESS) s->dkdv = clCreateKernel(s->prog, "fa_bwd_dkdv_cl", &err);
    if (st == FA_OK && err == CL_SUCCESS) s->dq = clCreateKernel(s->prog, "fa_bwd_dq_cl", &err);
    if (st == FA_OK && err == CL_SUCCESS)
        s->dummy = clCreateBuffer(c->dev[plan->backend_device].ctx, CL_MEM_READ_WRITE, 16, NULL, &err);
    if (st == FA_OK && err != CL_SUCCESS) st = fa_set_error(FA_ERR_BACKEND, "opencl: kernels of bwd.cl: %s", cl_error_name(err));
    if (st != FA_OK) {
        cl_bwd_release(s);
        return st;
    }
    *out = s;
    return FA_OK;
}

size_t cl_bwd_describe(const cl_bwd_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "opencl bwd.cl (fa_bwd_pre/dkdv/dq_cl, deterministic: no atomics): %s; %s", s->options,
                     s->from_cache ? "program binary from the disk cache" : "built from source");
    if (!s->from_cache && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, " in %.0f ms", s->compile_ms);
    if (n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, "\n");
    return n < 0 ? 0 : (size_t)n;
}

/* ---------------------------------------------------------------- calls */

fa_status cl_bwd(cl_ctx *c, const fa_plan_info *plan, const cl_bwd_state *s, const fa_bwd_args *a, void *workspace,
                 void *stream)
{
    const fa_attn_desc *d = &plan->desc;
    const int dev = plan->backend_device;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "opencl bwd: the plan has no compiled backward kernels");
    cl_command_queue queue = NULL;
    fa_status st = cl_queue_of(c, dev, stream, &queue);
    if (st != FA_OK) return st;

    fa_cl_bwd_params p;
    memset(&p, 0, sizeof p);
    enum { Q, K, V, OUT, DOUT, LSE, DQ, DK, DV, ALIBI, CU_Q, CU_K, SEQUSED, WS, NBUF };
    cl_mem buf[NBUF];
    for (int i = 0; i < NBUF; i++) buf[i] = s->dummy;
    if ((st = cl_bind_tensor(dev, "q.data", &a->q, &buf[Q], &p.q_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "k.data", &a->k, &buf[K], &p.k_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "v.data", &a->v, &buf[V], &p.v_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "out.data", &a->out, &buf[OUT], &p.o_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "dout.data", &a->dout, &buf[DOUT], &p.do_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "lse.data", &a->lse, &buf[LSE], &p.lse_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "dq.data", &a->dq, &buf[DQ], &p.dq_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "dk.data", &a->dk, &buf[DK], &p.dk_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "dv.data", &a->dv, &buf[DV], &p.dv_off)) != FA_OK)
        return st;
    /* (batch, seq, heads, dim); varlen (total, heads, dim) with batch stride 0 (rows found from cu_seqlens) */
    const int qv = d->varlen ? 1 : 0, kv = fa_uses_cu_seqlens_k(d) ? 1 : 0;
    FA_BWD_STRIDES(p, *a, qv, kv);
    const int64_t batch = d->batch;
    if (d->varlen) {
        p.total_q = (int)d->total_q, p.total_k = (int)d->total_k;
        if ((st = cl_bind(dev, "cu_seqlens_q", a->cu_seqlens_q, 4 * (batch + 1), 4, &buf[CU_Q], &p.cu_q_off)) != FA_OK)
            return st;
    }
    if (kv) {
        p.has_cu_k = 1;
        if ((st = cl_bind(dev, "cu_seqlens_k", a->cu_seqlens_k, 4 * (batch + 1), 4, &buf[CU_K], &p.cu_k_off)) != FA_OK)
            return st;
    }
    if (d->kv_cache_lengths) {
        p.has_seqused = 1;
        if ((st = cl_bind(dev, "seqused_k", a->seqused_k, 4 * batch, 4, &buf[SEQUSED], &p.seqused_off)) != FA_OK) return st;
    }
    if (d->alibi != FA_ALIBI_NONE) {
        p.has_alibi = 1;
        p.alibi_sb = d->alibi == FA_ALIBI_PER_HEAD ? 0 : a->alibi_slopes.stride[0];
        if (a->alibi_slopes.stride[a->alibi_slopes.rank - 1] != 1)
            return fa_set_error(FA_ERR_UNSUPPORTED, "opencl bwd: alibi_slopes must be contiguous along heads");
        if ((st = cl_bind_tensor(dev, "alibi_slopes.data", &a->alibi_slopes, &buf[ALIBI],
                       &p.alibi_off)) != FA_OK)
            return st;
    }
    /* workspace: D then LSE, ws_rows floats each */
    p.ws_rows = ws_rows(d);
    if (p.ws_rows > 0 &&
        (st = cl_bind(dev, "workspace", workspace, cl_bwd_workspace(d, &plan->bwd_config), 4, &buf[WS], &p.ws_off)) != FA_OK)
        return st;
    p.seqlen_q = (int)d->seqlen_q, p.seqlen_k = (int)d->seqlen_k;
    p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.window_left = (int)plan->window_left, p.window_right = (int)plan->window_right;
    p.scale = plan->scale, p.softcap = d->softcap;
    if (d->dropout_p > 0.0f) {
        const fa_dropout_key dk = fa_dropout_key_for(d->dropout_p, a->dropout_seed, a->dropout_offset);
        p.drop_k0 = dk.k0, p.drop_k1 = dk.k1, p.drop_ctr3 = dk.ctr3, p.drop_threshold = dk.threshold;
        p.keep_scale = dk.keep_scale;
    }

    cl_kernel kernels[3] = {s->pre, s->dkdv, s->dq};
    const char *names[3] = {"fa_bwd_pre_cl", "fa_bwd_dkdv_cl", "fa_bwd_dq_cl"};
    cl_int err = CL_SUCCESS;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < NBUF && err == CL_SUCCESS; i++)
            err = clSetKernelArg(kernels[k], (cl_uint)i, sizeof(cl_mem), &buf[i]);
        if (err == CL_SUCCESS) err = clSetKernelArg(kernels[k], NBUF, sizeof p, &p);
        if (err != CL_SUCCESS)
            return fa_set_error(FA_ERR_BACKEND, "opencl: arguments of %s: %s", names[k], cl_error_name(err));
    }
    if (batch == 0) return FA_OK; /* nothing to compute */

    const fa_tile_config *t = &plan->bwd_config;
    const size_t wg = (size_t)t->warps * (size_t)c->dev[dev].props.simd_width;
    const size_t hq = (size_t)d->heads_q, hk = (size_t)d->heads_kv, nb = (size_t)batch;
    const size_t qblocks = (size_t)((d->seqlen_q + t->block_q - 1) / t->block_q);
    const size_t kblocks = (size_t)((d->seqlen_k + t->block_kv - 1) / t->block_kv);
    const size_t global[3][3] = {{(size_t)(d->seqlen_q + 63) / 64 * 64, hq, nb},
                                 {kblocks * wg, hk, nb},
                                 {qblocks * wg, hq, nb}};
    const size_t local[3][3] = {{64, 1, 1}, {wg, 1, 1}, {wg, 1, 1}};
    for (int k = 0; k < 3; k++) {
        if (global[k][0] == 0) continue; /* no rows (the pre and dQ kernels) or keys: nothing to write */
        err = clEnqueueNDRangeKernel(queue, kernels[k], 3, NULL, global[k], local[k], 0, NULL, NULL);
        if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: launching %s: %s", names[k], cl_error_name(err));
    }
    if (!stream) clFlush(queue); /* the device's own queue: flushed so the work starts */
    return FA_OK;
}
