/* A problem's buffers in a device's memory, carried over before and back after each call (conf_mirror.h). */
#include "conf_mirror.h"

#include <stdio.h>
#include <string.h>

/* Bytes of a host buffer from its first canary to the end of its last. */
static size_t whole(const conf_buf *b) { return b->size + 2 * CONF_CANARY_BYTES; }

static int failed(const char *what, fa_status st, char *msg, size_t len) {
    snprintf(msg, len, "device memory: %s: %s: %s", what, fa_status_string(st), fa_last_error());
    return -1;
}

int conf_mirror_create(conf_mirror *m, const conf_problem *p, int device, int active, char *msg, size_t len) {
    memset(m, 0, sizeof *m);
    m->device = device;
    m->active = active;
    if (!active) return 0;
    for (int id = 0; id < CONF_BUF_COUNT; id++) {
        if (!p->buf[id].alloc) continue;
        m->bytes[id] = whole(&p->buf[id]);
        fa_status st = fa_device_alloc(device, (int64_t)m->bytes[id], (void **)&m->dev[id]);
        if (st != FA_OK) {
            conf_mirror_free(m);
            return failed("fa_device_alloc", st, msg, len);
        }
    }
    return 0;
}

static void release(int device, void *ptr) {
    if (ptr && fa_device_free(device, ptr) != FA_OK)
        fprintf(stderr, "conformance: fa_device_free: %s (device memory leaked)\n", fa_last_error());
}

void conf_mirror_free(conf_mirror *m) {
    for (int id = 0; id < CONF_BUF_COUNT; id++) release(m->device, m->dev[id]);
    release(m->device, m->ws_dev);
    memset(m, 0, sizeof *m);
}

int conf_mirror_set_workspace(conf_mirror *m, conf_buf *ws, char *msg, size_t len) {
    release(m->device, m->ws_dev);
    m->ws = ws;
    m->ws_dev = NULL;
    m->ws_bytes = 0;
    if (!m->active || !ws) return 0;
    m->ws_bytes = whole(ws);
    fa_status st = fa_device_alloc(m->device, (int64_t)m->ws_bytes, (void **)&m->ws_dev);
    return st == FA_OK ? 0 : failed("fa_device_alloc (workspace)", st, msg, len);
}

static int copy(int device, void *dst, const void *src, size_t bytes, fa_copy_kind kind, char *msg, size_t len) {
    fa_status st = fa_device_copy(device, dst, src, (int64_t)bytes, kind, NULL);
    return st == FA_OK ? 0 : failed(kind == FA_COPY_HOST_TO_DEVICE ? "upload" : "download", st, msg, len);
}

int conf_mirror_upload(conf_mirror *m, const conf_problem *p, char *msg, size_t len) {
    if (!m->active) return 0;
    for (int id = 0; id < CONF_BUF_COUNT; id++)
        if (m->dev[id] && copy(m->device, m->dev[id], p->buf[id].alloc, m->bytes[id], FA_COPY_HOST_TO_DEVICE, msg, len))
            return -1;
    if (m->ws_dev && copy(m->device, m->ws_dev, m->ws->alloc, m->ws_bytes, FA_COPY_HOST_TO_DEVICE, msg, len)) return -1;
    return 0;
}

int conf_mirror_download(conf_mirror *m, conf_problem *p, char *msg, size_t len) {
    if (!m->active) return 0;
    for (int id = 0; id < CONF_BUF_COUNT; id++)
        if (m->dev[id] && copy(m->device, p->buf[id].alloc, m->dev[id], m->bytes[id], FA_COPY_DEVICE_TO_HOST, msg, len))
            return -1;
    if (m->ws_dev && copy(m->device, m->ws->alloc, m->ws_dev, m->ws_bytes, FA_COPY_DEVICE_TO_HOST, msg, len)) return -1;
    return 0;
}

/* Where a host pointer into one of the problem's buffers (or the workspace) lies in device memory. A tensor may
 * start at its buffer's end when it is empty, hence <=. Returns 0, or -1 for a pointer in no buffer. */
static int translate(const conf_mirror *m, const conf_problem *p, const void *host, const void **dev) {
    const unsigned char *h = host;
    if (!h) {
        *dev = NULL;
        return 0;
    }
    for (int id = 0; id < CONF_BUF_COUNT; id++) {
        const conf_buf *b = &p->buf[id];
        if (m->dev[id] && h >= b->data && h <= b->data + b->size) {
            *dev = m->dev[id] + CONF_CANARY_BYTES + (h - b->data);
            return 0;
        }
    }
    if (m->ws_dev && h >= m->ws->data && h <= m->ws->data + m->ws->size) {
        *dev = m->ws_dev + CONF_CANARY_BYTES + (h - m->ws->data);
        return 0;
    }
    return -1;
}

/* Translates one pointer field in place; on failure names it and returns -1. */
#define MOVE(field, type)                                                                                       \
    do {                                                                                                        \
        const void *moved_;                                                                                     \
        if (translate(m, p, (field), &moved_)) {                                                                \
            snprintf(msg, len, "internal: %s=%p lies in none of the case's buffers", #field, (const void *)(field)); \
            return NULL;                                                                                        \
        }                                                                                                       \
        (field) = (type)(uintptr_t)moved_;                                                                      \
    } while (0)

const fa_fwd_args *conf_mirror_fwd_args(conf_mirror *m, const conf_problem *p, char *msg, size_t len) {
    if (!m->active) return &p->args;
    fa_fwd_args *a = &m->args;
    *a = p->args;
    MOVE(a->q.data, void *);
    MOVE(a->k.data, void *);
    MOVE(a->v.data, void *);
    MOVE(a->out.data, void *);
    MOVE(a->lse.data, void *);
    MOVE(a->alibi_slopes.data, void *);
    MOVE(a->k_new.data, void *);
    MOVE(a->v_new.data, void *);
    MOVE(a->rotary_cos.data, void *);
    MOVE(a->rotary_sin.data, void *);
    MOVE(a->cu_seqlens_q, const int32_t *);
    MOVE(a->cu_seqlens_k, const int32_t *);
    MOVE(a->seqused_k, const int32_t *);
    MOVE(a->block_table, const int32_t *);
    MOVE(a->workspace, void *);
    return a;
}

const fa_bwd_args *conf_mirror_bwd_args(conf_mirror *m, const conf_problem *p, char *msg, size_t len) {
    if (!m->active) return &p->bargs;
    fa_bwd_args *a = &m->bargs;
    *a = p->bargs;
    MOVE(a->q.data, void *);
    MOVE(a->k.data, void *);
    MOVE(a->v.data, void *);
    MOVE(a->out.data, void *);
    MOVE(a->dout.data, void *);
    MOVE(a->lse.data, void *);
    MOVE(a->dq.data, void *);
    MOVE(a->dk.data, void *);
    MOVE(a->dv.data, void *);
    MOVE(a->alibi_slopes.data, void *);
    MOVE(a->cu_seqlens_q, const int32_t *);
    MOVE(a->cu_seqlens_k, const int32_t *);
    MOVE(a->seqused_k, const int32_t *);
    MOVE(a->workspace, void *);
    return a;
}
