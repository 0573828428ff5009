/*
 * KV-cache append with rotary embedding on the host (flash_attn_with_kvcache), as cuda/cuda_append.c: for a
 * plan with desc.seqlen_new > 0, the program of kernels/append.cl (disk cache, cl_program_get), and per call
 * every pointer bound and checked, then the append enqueued on the forward's queue just before the forward. It
 * writes k_new/v_new into the cache, the key counts seqused_k[b] + seqlen_new into the workspace and, with
 * rotary, the rotated q into the workspace; the forward then reads q and the key counts from there
 * (cl_append_out says where).
 *
 * Workspace (the end of the plan's, after whatever the forward keeps at its start):
 *   int32 lens[batch], padded to 256 bytes; rotary: q_rot (batch, seqlen_q, heads_q, head_dim_qk) in the dtype.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_backend.h"
#include "kernels/fa_cl_append_params.h"

extern const char fa_opencl_src_fa_cl_append_params[]; /* opencl/kernels/fa_cl_append_params.h, embedded */
extern const char fa_opencl_src_append[];              /* opencl/kernels/append.cl */

struct cl_append_state {
    cl_program prog;
    cl_kernel fn;
    int from_cache;
    double compile_ms;
    char options[96];
};

/* fa_append_cl's buffer arguments, in order */
enum { KN, VN, Q, K, V, QROT, LENS, SEQUSED, BT, COS, SIN, NBUF };

static int64_t round256(int64_t x) { return (x + 255) / 256 * 256; }

static int64_t lens_bytes(const fa_attn_desc *d) { return round256(4 * d->batch); }

/* Bytes the append adds at the end of the plan's workspace (a multiple of 256). */
static int64_t append_bytes(const fa_attn_desc *d)
{
    if (d->seqlen_new <= 0) return 0;
    int64_t bytes = lens_bytes(d);
    if (d->rotary_dim > 0)
        bytes += round256((int64_t)fa_dtype_size(d->dtype) * d->batch * d->seqlen_q * d->heads_q * d->head_dim_qk);
    return bytes;
}

int64_t cl_append_workspace(const fa_attn_desc *d, int64_t own)
{
    const int64_t extra = append_bytes(d);
    return extra ? round256(own) + extra : own;
}

fa_status cl_append_prepare(cl_ctx *c, const fa_plan_info *plan, cl_append_state **out)
{
    const fa_attn_desc *d = &plan->desc;
    *out = NULL;
    if (d->seqlen_new <= 0) return FA_OK;
    cl_append_state *s = calloc(1, sizeof *s);
    if (!s) return fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no memory for an append plan");
    /* the storage type is the only specialisation: one program per dtype and device, cached on disk */
    const int dtype = d->dtype == FA_DTYPE_F32 ? 0 : d->dtype == FA_DTYPE_F16 ? 1 : 2;
    snprintf(s->options, sizeof s->options, "-cl-std=CL1.2 -DFA_DTYPE=%d -DFA_DROPOUT=0", dtype);
    const char *const parts[] = {fa_opencl_src_fa_cl_append_params, fa_opencl_src_common, fa_opencl_src_append};
    fa_status st = cl_program_get(c, plan->backend_device, parts, 3, s->options, &s->prog, &s->from_cache,
                                  &s->compile_ms);
    cl_int err = CL_SUCCESS;
    if (st == FA_OK) s->fn = clCreateKernel(s->prog, "fa_append_cl", &err);
    if (st == FA_OK && err != CL_SUCCESS)
        st = fa_set_error(FA_ERR_BACKEND, "opencl: kernel fa_append_cl of append.cl: %s", cl_error_name(err));
    if (st != FA_OK) {
        cl_append_release(s);
        return st;
    }
    *out = s;
    return FA_OK;
}

void cl_append_release(cl_append_state *s)
{
    if (!s) return;
    if (s->fn) clReleaseKernel(s->fn);
    if (s->prog) clReleaseProgram(s->prog);
    free(s);
}

size_t cl_append_describe(const cl_append_state *s, char *buf, size_t size)
{
    int n = snprintf(buf, size, "opencl kv-cache append fa_append_cl (rotary in fp32): %s; %s", s->options,
                     s->from_cache ? "program binary from the disk cache" : "built from source");
    if (!s->from_cache && n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, " in %.0f ms", s->compile_ms);
    return n < 0 ? 0 : (size_t)n;
}

/* Binds every buffer of the append (nothing is enqueued before all of them check out). */
static fa_status bind_all(int dev, const fa_plan_info *plan, const fa_fwd_args *a, const char *area, cl_mem *buf,
                          fa_cl_append_params *p)
{
    const fa_attn_desc *d = &plan->desc;
    fa_status st;
    if ((st = cl_bind(dev, "workspace (kv append)", area, 4 * d->batch, 4, &buf[LENS], &p->lens_off)) != FA_OK)
        return st;
    /* what this problem does not use is bound to the workspace's buffer, never read or written */
    for (int i = 0; i < NBUF; i++) buf[i] = buf[LENS];
    if ((st = cl_bind_tensor(dev, "k_new.data", &a->k_new, &buf[KN], &p->kn_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "v_new.data", &a->v_new, &buf[VN], &p->vn_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "k.data", &a->k, &buf[K], &p->k_off)) != FA_OK ||
        (st = cl_bind_tensor(dev, "v.data", &a->v, &buf[V], &p->v_off)) != FA_OK ||
        (st = cl_bind(dev, "seqused_k", a->seqused_k, 4 * d->batch, 4, &buf[SEQUSED], &p->seqused_off)) != FA_OK)
        return st;
    if (d->paged_kv) {
        p->bt_stride = a->block_table_stride ? a->block_table_stride : d->max_pages_per_seq;
        const int64_t bt_bytes = 4 * ((d->batch - 1) * p->bt_stride + d->max_pages_per_seq);
        if ((st = cl_bind(dev, "block_table", a->block_table, bt_bytes, 4, &buf[BT], &p->bt_off)) != FA_OK) return st;
    }
    if (d->rotary_dim > 0) {
        const int64_t size = fa_dtype_size(d->dtype);
        const int64_t qrot_bytes = size * d->batch * d->seqlen_q * d->heads_q * d->head_dim_qk;
        if ((st = cl_bind_tensor(dev, "q.data", &a->q, &buf[Q], &p->q_off)) != FA_OK ||
            (st = cl_bind(dev, "workspace (rotated q)", area + lens_bytes(d), qrot_bytes, size, &buf[QROT],
                          &p->qrot_off)) != FA_OK ||
            (st = cl_bind_tensor(dev, "rotary_cos.data", &a->rotary_cos, &buf[COS], &p->cos_off)) != FA_OK ||
            (st = cl_bind_tensor(dev, "rotary_sin.data", &a->rotary_sin, &buf[SIN], &p->sin_off)) != FA_OK)
            return st;
    }
    return FA_OK;
}

fa_status cl_append_run(cl_ctx *c, const fa_plan_info *plan, const cl_append_state *s, const fa_fwd_args *a,
                        void *workspace, cl_command_queue queue, cl_append_out *out)
{
    const fa_attn_desc *d = &plan->desc;
    const int dev = plan->backend_device;
    if (!s) return fa_set_error(FA_ERR_INTERNAL, "opencl append: the plan has no append program");
    if (d->varlen) /* fa_validate refuses it already; the kernel indexes dense q */
        return fa_set_error(FA_ERR_UNSUPPORTED, "opencl append: varlen q is not supported with desc.seqlen_new");
    const int64_t extra = append_bytes(d);
    if (!workspace || plan->workspace_bytes < extra)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "opencl append: needs its %lld B at the end of the plan's "
                                                     "workspace", (long long)extra);
    const char *area = (const char *)workspace + (plan->workspace_bytes - extra);

    fa_cl_append_params p;
    memset(&p, 0, sizeof p);
    cl_mem buf[NBUF];
    fa_status st = bind_all(dev, plan, a, area, buf, &p);
    if (st != FA_OK) return st;
    p.kn_sb = a->k_new.stride[0], p.kn_ss = a->k_new.stride[1], p.kn_sh = a->k_new.stride[2];
    p.vn_sb = a->v_new.stride[0], p.vn_ss = a->v_new.stride[1], p.vn_sh = a->v_new.stride[2];
    p.q_sb = a->q.stride[0], p.q_ss = a->q.stride[1], p.q_sh = a->q.stride[2];
    /* dense (batch, seqlen_k, heads_kv, dim), paged (num_pages, page_size, heads_kv, dim): the same strides */
    p.k_sb = a->k.stride[0], p.k_ss = a->k.stride[1], p.k_sh = a->k.stride[2];
    p.v_sb = a->v.stride[0], p.v_ss = a->v.stride[1], p.v_sh = a->v.stride[2];
    if (d->paged_kv) p.paged = 1, p.page_size = (int)d->page_size, p.num_pages = (int)d->num_pages;
    p.batch = (int)d->batch, p.seqlen_new = (int)d->seqlen_new, p.seqlen_q = (int)d->seqlen_q;
    p.seqlen_k = (int)d->seqlen_k, p.heads_q = (int)d->heads_q, p.heads_kv = (int)d->heads_kv;
    p.dqk = (int)d->head_dim_qk, p.dv = (int)d->head_dim_v;
    if (d->rotary_dim > 0) {
        p.cos_s = a->rotary_cos.stride[0], p.sin_s = a->rotary_sin.stride[0];
        p.rotary_dim = (int)d->rotary_dim, p.interleaved = d->rotary_interleaved != 0;
        p.rotary_seqlen = (int)d->rotary_seqlen;
        p.q_moving = d->causal || plan->window_left >= 0 || plan->window_right >= 0; /* as cpu_rotary_q_position */
    }

    /* FA_CL_APPEND_LANES work-items per k/v row and (rotary) per q row; at least batch tasks for lens */
    int64_t tasks = d->batch * d->seqlen_new * d->heads_kv + (d->rotary_dim > 0 ? d->batch * d->seqlen_q * d->heads_q : 0);
    if (tasks < d->batch) tasks = d->batch;
    const size_t local = 128, global = (size_t)((tasks * FA_CL_APPEND_LANES + 127) / 128 * 128);
    /* a device whose work-groups are smaller picks its own size (the kernel takes any) */
    const size_t *lp = c->dev[dev].props.max_threads_per_block >= 128 ? &local : NULL;
    cl_int err = CL_SUCCESS;
    for (cl_uint i = 0; i < NBUF && err == CL_SUCCESS; i++) err = clSetKernelArg(s->fn, i, sizeof(cl_mem), &buf[i]);
    if (err == CL_SUCCESS) err = clSetKernelArg(s->fn, NBUF, sizeof p, &p);
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: arguments of fa_append_cl: %s", cl_error_name(err));
    if (global > 0) err = clEnqueueNDRangeKernel(queue, s->fn, 1, NULL, &global, lp, 0, NULL, NULL);
    /* a caller's out-of-order queue would let the forward start before the append has written */
    cl_command_queue_properties props = 0;
    if (err == CL_SUCCESS && global > 0 &&
        clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL) == CL_SUCCESS &&
        (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE))
        err = clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: launching fa_append_cl: %s", cl_error_name(err));

    out->seqused = buf[LENS], out->seqused_off = p.lens_off;
    out->q = NULL;
    if (d->rotary_dim > 0) {
        /* the rotated copy, contiguous (batch, seqlen_q, heads_q, head_dim_qk) */
        out->q = buf[QROT], out->q_off = p.qrot_off;
        out->q_sh = d->head_dim_qk, out->q_ss = d->heads_q * d->head_dim_qk, out->q_sb = d->seqlen_q * out->q_ss;
    }
    return FA_OK;
}
