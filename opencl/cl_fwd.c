/*
 * The OpenCL forward: per plan, the program for the problem's specialisation (kernels/fwd.cl behind the shared
 * parameter header); per call, every pointer turned back into its buffer and offset, checked to lie inside one
 * allocation of the device before anything is enqueued, then the forward and (split-KV) the combine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_backend.h"
#include "fa_philox.h" /* fa_dropout_key_for: the mask every backend draws */
#include "kernels/fa_cl_params.h"

extern const char fa_opencl_src_fa_cl_params[]; /* opencl/kernels/fa_cl_params.h, embedded by the build */
extern const char fa_opencl_src_fwd[];          /* opencl/kernels/fwd.cl */
extern const char fa_opencl_src_fwd_cpu[];      /* opencl/kernels/fwd_cpu.cl: the CPU-shaped forward */

typedef struct plan_state {
    cl_program prog;
    cl_kernel fwd, combine; /* CPU-shaped forward (CL_KERNEL_FWD_CPU): fa_fwd_cpu and, as combine, its pack */
    int cpu, block_q, block_kv; /* the CPU forward's tile (its grids) */
    cl_mem dummy;        /* bound where an optional buffer is absent; never read */
    cl_append_state *append; /* NULL unless desc.seqlen_new > 0 (cl_append.c) */
    int from_cache;
    double compile_ms;
    char options[512];
} plan_state;

/* fwd.cl's local memory: the Q tile, one K-then-V tile, the P tile and the row exchange (the formula atop fwd.cl). */
int64_t cl_fwd_local_bytes(const fa_attn_desc *d, const fa_tile_config *t)
{
    int64_t dqk4 = (d->head_dim_qk + 3) / 4 * 4, qstr = dqk4 + ((dqk4 / 4) % 2 ? 0 : 4);
    int64_t vstr = 64 * ((d->head_dim_v + 63) / 64), kv = qstr > vstr ? qstr : vstr;
    return 4 * ((int64_t)t->block_q * qstr + (int64_t)t->block_kv * kv + (int64_t)t->block_q * (t->block_kv + 4) +
                16 * (int64_t)t->block_q);
}

fa_status cl_fwd_prepare(cl_ctx *c, fa_plan_info *plan)
{
    const fa_attn_desc *d = &plan->desc;
    const fa_tile_config *t = &plan->fwd_config;
    plan_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no memory for a plan");
    int n = cl_program_options(c, plan, t, s->options, sizeof s->options);
    const int packed = plan->fwd_family->id == CL_KERNEL_FWD_DECODE;
    s->cpu = plan->fwd_family->id == CL_KERNEL_FWD_CPU;
    s->block_q = t->block_q, s->block_kv = t->block_kv;
    /*
     * fwd_cpu.cl: the vector width as FA_VW_HOST, which the kernel takes only where FLASHPORT_OPENCL_DEFINE (in
     * the options before it) sets no FA_VW, so an A/B run can still pick another width
     */
    if (s->cpu)
        snprintf(s->options + n, sizeof s->options - (size_t)n, " -DFA_VW_HOST=%d -DFA_PAGED=%d",
                 c->dev[plan->backend_device].vec_float, d->paged_kv != 0);
    else
        snprintf(s->options + n, sizeof s->options - (size_t)n, " -DFA_PAGED=%d -DFA_SPLIT=%d -DFA_PACK=%d -DFA_GROUP=%d",
                 d->paged_kv != 0, t->num_splits > 1, packed, packed ? (int)(d->heads_q / d->heads_kv) : 1);
    /* the parameter header first (host and kernel compile the same struct), then what the kernels share */
    const char *const parts[] = {fa_opencl_src_fa_cl_params, fa_opencl_src_common,
                                 s->cpu ? fa_opencl_src_fwd_cpu : fa_opencl_src_fwd};
    fa_status st = cl_program_get(c, plan->backend_device, parts, 3, s->options, &s->prog, &s->from_cache,
                                  &s->compile_ms);
    cl_int err = CL_SUCCESS;
    if (st == FA_OK) s->fwd = clCreateKernel(s->prog, s->cpu ? "fa_fwd_cpu" : "fa_fwd_cl", &err);
    if (st == FA_OK && err == CL_SUCCESS)
        s->combine = clCreateKernel(s->prog, s->cpu ? "fa_fwd_cpu_pack" : "fa_combine_cl", &err);
    if (st == FA_OK && err == CL_SUCCESS)
        s->dummy = clCreateBuffer(c->dev[plan->backend_device].ctx, CL_MEM_READ_WRITE, 16, NULL, &err);
    if (st == FA_OK && err != CL_SUCCESS)
        st = fa_set_error(FA_ERR_BACKEND, "opencl: kernels of %s: %s", s->cpu ? "fwd_cpu.cl" : "fwd.cl", cl_error_name(err));
    if (st == FA_OK) st = cl_append_prepare(c, plan, &s->append); /* KV-cache append (seqlen_new > 0) */
    if (st != FA_OK) {
        plan->backend_state = s;
        cl_fwd_release(c, plan);
        return st;
    }
    plan->backend_state = s;
    return FA_OK;
}

void cl_fwd_release(cl_ctx *c, fa_plan_info *plan)
{
    (void)c;
    plan_state *s = plan->backend_state;
    if (!s) return;
    if (s->fwd) clReleaseKernel(s->fwd);
    if (s->combine) clReleaseKernel(s->combine);
    if (s->prog) clReleaseProgram(s->prog);
    if (s->dummy) clReleaseMemObject(s->dummy);
    cl_append_release(s->append);
    free(s);
    plan->backend_state = NULL;
}

size_t cl_fwd_describe(cl_ctx *c, const fa_plan_info *plan, char *buf, size_t size)
{
    const plan_state *s = plan->backend_state;
    int n = snprintf(buf, size, "opencl %s on %s (%s): %s; %s", s->cpu ? "fwd_cpu.cl" : "fwd.cl",
                     c->dev[plan->backend_device].props.name, c->dev[plan->backend_device].driver, s->options,
                     s->from_cache ? "program binary from the disk cache" : "built from source");
    if (!s->from_cache && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, " in %.0f ms", s->compile_ms);
    if (s->append && n >= 0 && (size_t)n + 1 < size) {
        buf[n++] = '\n';
        n += (int)cl_append_describe(s->append, buf + n, size - (size_t)n);
    }
    return n < 0 ? 0 : (size_t)n;
}

/* fwd_cpu.cl's packed panels: per (batch, KV head, key tile) the K^T panel and the V panel (DVP columns) */
int64_t cl_fwd_cpu_workspace(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t cw = 2 * 16, dvp = (d->head_dim_v + cw - 1) / cw * cw; /* the widest FA_VW: enough for any */
    const int64_t ntk = (d->seqlen_k + t->block_kv - 1) / t->block_kv;
    return 4 * d->batch * d->heads_kv * ntk * (int64_t)t->block_kv * (d->head_dim_qk + dvp);
}

static int64_t part_rows(const fa_attn_desc *d) { return d->varlen ? d->total_q : d->batch * d->seqlen_q; }

int64_t cl_fwd_workspace(const fa_attn_desc *d, const fa_tile_config *t)
{
    const int64_t own = t->num_splits <= 1 ? 0 : 4 * (int64_t)t->num_splits * part_rows(d) * d->heads_q * (d->head_dim_v + 1);
    return cl_append_workspace(d, own); /* + KV-cache append's area at the end (cl_append.c) */
}

/*
 * fwd_cpu.cl's two launches, work-groups of 1: the pack of every (key tile, KV head, sequence), then the forward
 * over (query block, query head, sequence); the in-order queue puts the second after the first.
 */
static fa_status cpu_launch(const plan_state *s, const fa_attn_desc *d, const fa_cl_fwd_params *p, const cl_mem *buf,
                            int nbuf, cl_command_queue queue, void *stream)
{
    const int64_t bq = s->block_q, bkv = s->block_kv;
    const size_t gp[3] = {(size_t)((d->seqlen_k + bkv - 1) / bkv), (size_t)d->heads_kv, (size_t)d->batch};
    const size_t gf[3] = {(size_t)((d->seqlen_q + bq - 1) / bq), (size_t)d->heads_q, (size_t)d->batch};
    const size_t one[3] = {1, 1, 1};
    cl_int err = CL_SUCCESS;
    for (int i = 0; i < nbuf && err == CL_SUCCESS; i++) {
        err = clSetKernelArg(s->combine, (cl_uint)i, sizeof(cl_mem), &buf[i]);
        if (err == CL_SUCCESS) err = clSetKernelArg(s->fwd, (cl_uint)i, sizeof(cl_mem), &buf[i]);
    }
    if (err == CL_SUCCESS) err = clSetKernelArg(s->combine, (cl_uint)nbuf, sizeof *p, p);
    if (err == CL_SUCCESS) err = clSetKernelArg(s->fwd, (cl_uint)nbuf, sizeof *p, p);
    if (err != CL_SUCCESS)
        return fa_set_error(FA_ERR_BACKEND, "opencl: arguments of fa_fwd_cpu: %s", cl_error_name(err));
    if (gf[0] == 0 || d->batch == 0) return FA_OK; /* nothing to compute */
    if (gp[0] > 0) err = clEnqueueNDRangeKernel(queue, s->combine, 3, NULL, gp, one, 0, NULL, NULL);
    if (err == CL_SUCCESS) err = clEnqueueNDRangeKernel(queue, s->fwd, 3, NULL, gf, one, 0, NULL, NULL);
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: launching fa_fwd_cpu: %s", cl_error_name(err));
    if (!stream) clFlush(queue); /* as cl_fwd */
    return FA_OK;
}

fa_status cl_fwd(cl_ctx *c, const fa_plan_info *plan, const fa_fwd_args *a, void *workspace, void *stream)
{
    const plan_state *s = plan->backend_state;
    const fa_attn_desc *d = &plan->desc;
    const int dev = plan->backend_device;
    cl_command_queue queue = NULL;
    fa_status st = cl_queue_of(c, dev, stream, &queue);
    if (st != FA_OK) return st;

    fa_cl_fwd_params p;
    memset(&p, 0, sizeof p);
    enum { Q, K, V, OUT, LSE, ALIBI, CU_Q, CU_K, SEQUSED, BT, PART_O, PART_LSE, NBUF };
    cl_mem buf[NBUF];
    for (int i = 0; i < NBUF; i++) buf[i] = s->dummy;
    if ((st = cl_bind_tensor(dev, "q.data", &a->q, &buf[Q], &p.q_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "k.data", &a->k, &buf[K], &p.k_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "v.data", &a->v, &buf[V], &p.v_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "out.data", &a->out, &buf[OUT], &p.o_off)) != FA_OK)
        return st;
    /* (batch, seq, heads, dim); varlen (total, heads, dim); paged k/v (pages, page_size, heads, dim) */
    const int qv = d->varlen ? 1 : 0, kv = d->varlen && !d->paged_kv ? 1 : 0;
    FA_BSH_STRIDES(p, q, a->q, qv);
    FA_BSH_STRIDES(p, o, a->out, qv);
    FA_BSH_STRIDES(p, k, a->k, kv);
    FA_BSH_STRIDES(p, v, a->v, kv);
    const int64_t batch = d->batch;
    if (d->paged_kv) {
        p.k_sp = a->k.stride[0], p.v_sp = a->v.stride[0];
        p.bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
        p.page_size = (int)d->page_size, p.num_pages = (int)d->num_pages;
        int64_t bt_bytes = 4 * ((batch - 1) * p.bt_stride + d->max_pages_per_seq);
        if ((st = cl_bind(dev, "block_table", a->block_table, bt_bytes, 4, &buf[BT], &p.bt_off)) != FA_OK) return st;
    }
    if (d->varlen) {
        p.total_q = (int)d->total_q, p.total_k = (int)d->total_k;
        if ((st = cl_bind(dev, "cu_seqlens_q", a->cu_seqlens_q, 4 * (batch + 1), 4, &buf[CU_Q], &p.cu_q_off)) != FA_OK)
            return st;
    }
    if (fa_uses_cu_seqlens_k(d)) {
        p.has_cu_k = 1;
        if ((st = cl_bind(dev, "cu_seqlens_k", a->cu_seqlens_k, 4 * (batch + 1), 4, &buf[CU_K], &p.cu_k_off)) != FA_OK)
            return st;
    }
    if (d->kv_cache_lengths) {
        p.has_seqused = 1;
        if ((st = cl_bind(dev, "seqused_k", a->seqused_k, 4 * batch, 4, &buf[SEQUSED], &p.seqused_off)) != FA_OK) return st;
    }
    if (d->return_lse) {
        p.has_lse = 1;
        FA_LSE_STRIDES(p, a->lse, qv);
        if ((st = cl_bind_tensor(dev, "lse.data", &a->lse, &buf[LSE], &p.lse_off)) != FA_OK)
            return st;
    }
    if (d->alibi != FA_ALIBI_NONE) {
        p.has_alibi = 1;
        p.alibi_sb = d->alibi == FA_ALIBI_PER_HEAD ? 0 : a->alibi_slopes.stride[0];
        if (a->alibi_slopes.stride[a->alibi_slopes.rank - 1] != 1)
            return fa_set_error(FA_ERR_UNSUPPORTED, "opencl fwd: alibi_slopes must be contiguous along heads");
        if ((st = cl_bind_tensor(dev, "alibi_slopes.data", &a->alibi_slopes, &buf[ALIBI],
                       &p.alibi_off)) != FA_OK)
            return st;
    }
    const int splits = plan->fwd_config.num_splits > 1 ? plan->fwd_config.num_splits : 1;
    if (s->cpu) {
        /* fwd_cpu.cl: the packed K^T / V panels live in the workspace, bound where fwd.cl's partials go */
        if ((st = cl_bind(dev, "workspace", workspace, cl_fwd_cpu_workspace(d, &plan->fwd_config), 4, &buf[PART_O],
                          &p.part_o_off)) != FA_OK)
            return st;
    }
    if (splits > 1) {
        p.num_splits = splits, p.part_rows = (int)part_rows(d);
        int64_t o_elems = (int64_t)splits * p.part_rows * d->heads_q * d->head_dim_v;
        int64_t l_elems = (int64_t)splits * d->heads_q * p.part_rows;
        if ((st = cl_bind(dev, "workspace", workspace, 4 * (o_elems + l_elems), 4, &buf[PART_O], &p.part_o_off)) != FA_OK)
            return st;
        buf[PART_LSE] = buf[PART_O];
        p.part_lse_off = p.part_o_off + o_elems;
    } else {
        p.num_splits = 1;
    }
    p.seqlen_q = (int)d->seqlen_q, p.seqlen_k = (int)d->seqlen_k;
    p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.window_left = (int)plan->window_left, p.window_right = (int)plan->window_right;
    p.scale = plan->scale, p.softcap = d->softcap;
    if (d->dropout_p > 0.0f) {
        const fa_dropout_key dk = fa_dropout_key_for(d->dropout_p, a->dropout_seed, a->dropout_offset);
        p.drop_k0 = dk.k0, p.drop_k1 = dk.k1, p.drop_ctr3 = dk.ctr3, p.drop_threshold = dk.threshold;
        p.keep_scale = dk.keep_scale;
    }

    if (s->append) {
        /* KV-cache append first, on the same queue; the forward then reads q and the key counts it leaves */
        cl_append_out ao;
        if ((st = cl_append_run(c, plan, s->append, a, workspace, queue, &ao)) != FA_OK) return st;
        if (ao.q) buf[Q] = ao.q, p.q_off = ao.q_off, p.q_sb = ao.q_sb, p.q_ss = ao.q_ss, p.q_sh = ao.q_sh;
        buf[SEQUSED] = ao.seqused, p.seqused_off = ao.seqused_off;
    }
    if (s->cpu) return cpu_launch(s, d, &p, buf, NBUF, queue, stream);
    const size_t wg = (size_t)plan->fwd_config.warps * (size_t)c->dev[dev].props.simd_width;
    /* packed decode (fwd.cl FA_PACK): one work-group row per (position, query head) of a KV head's group */
    const int packed = plan->fwd_family->id == CL_KERNEL_FWD_DECODE;
    const int64_t rows = d->seqlen_q * (packed ? d->heads_q / d->heads_kv : 1);
    const int64_t qblocks = (rows + plan->fwd_config.block_q - 1) / plan->fwd_config.block_q;
    const size_t global[3] = {(size_t)qblocks * wg, (size_t)(packed ? d->heads_kv : d->heads_q), (size_t)(batch * splits)};
    const size_t local[3] = {wg, 1, 1};
    cl_int err = CL_SUCCESS;
    for (int i = 0; i < NBUF && err == CL_SUCCESS; i++) err = clSetKernelArg(s->fwd, (cl_uint)i, sizeof(cl_mem), &buf[i]);
    if (err == CL_SUCCESS) err = clSetKernelArg(s->fwd, NBUF, sizeof p, &p);
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: arguments of fa_fwd_cl: %s", cl_error_name(err));
    if (qblocks == 0 || batch == 0) return FA_OK; /* nothing to compute */
    err = clEnqueueNDRangeKernel(queue, s->fwd, 3, NULL, global, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: launching fa_fwd_cl: %s", cl_error_name(err));
    if (splits > 1) {
        for (int i = 0; i < NBUF && err == CL_SUCCESS; i++)
            err = clSetKernelArg(s->combine, (cl_uint)i, sizeof(cl_mem), &buf[i]);
        if (err == CL_SUCCESS) err = clSetKernelArg(s->combine, NBUF, sizeof p, &p);
        /* one 32-lane group per (row, query head), four to a work-group of 128 (fwd.cl's contract) */
        const size_t cg[1] = {(size_t)((int64_t)p.part_rows * d->heads_q + 3) / 4 * 128}, cl[1] = {128};
        if (err == CL_SUCCESS) err = clEnqueueNDRangeKernel(queue, s->combine, 1, NULL, cg, cl, 0, NULL, NULL);
        if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: fa_combine_cl: %s", cl_error_name(err));
    }
    if (!stream) {
        /* NULL stream: the device's own queue, flushed so the work starts; fa_device_synchronize waits for it */
        clFlush(queue);
    }
    return FA_OK;
}
