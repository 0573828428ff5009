/*
 * Conformance suite: a problem's buffers in a device's own memory. The host buffers (conf_problem.h) stay where
 * the suite writes inputs, poisons outputs and checks everything; the mirror holds a copy of each one, canaries
 * included, in fa_device_alloc memory, and carries them over before each call (upload) and back after it
 * (download). So the canaries, the poisoned gaps of outputs and the unchanged inputs are checked on exactly what
 * the device's kernels left in its memory. Every pointer the call gets is translated, the int32 metadata
 * (cu_seqlens, seqused_k, block_table) included: a GPU backend reads all of them in device memory.
 *
 * On the CPU device the mirror is inactive by default (the args point at the host buffers and nothing is
 * copied); conf_options.mirror turns it on there, which runs this path where there is no GPU.
 */
#ifndef CONF_MIRROR_H
#define CONF_MIRROR_H

#include <stddef.h>

#include "conf_problem.h"

typedef struct conf_mirror {
    int device;
    int active;                           /* 0: the host buffers are used as they are */
    unsigned char *dev[CONF_BUF_COUNT];   /* device copy of buf[id], canaries included */
    size_t bytes[CONF_BUF_COUNT];
    conf_buf *ws;                         /* caller-owned workspace of the current call, or NULL */
    unsigned char *ws_dev;
    size_t ws_bytes;
    fa_fwd_args args;                     /* the problem's args with device pointers */
    fa_bwd_args bargs;
} conf_mirror;

/* Device copies of every buffer p has (not filled yet: conf_mirror_upload). Returns 0, or -1 with a message. */
int conf_mirror_create(conf_mirror *m, const conf_problem *p, int device, int active, char *msg, size_t len);
void conf_mirror_free(conf_mirror *m);

/* The caller-owned workspace of the next call (a host conf_buf with canaries), or NULL for none. */
int conf_mirror_set_workspace(conf_mirror *m, conf_buf *ws, char *msg, size_t len);

/* Every buffer host -> device (the workspace too), after conf_problem_poison. Returns 0, or -1 with a message. */
int conf_mirror_upload(conf_mirror *m, const conf_problem *p, char *msg, size_t len);
/* Every buffer device -> host, before the checks. Returns 0, or -1 with a message. */
int conf_mirror_download(conf_mirror *m, conf_problem *p, char *msg, size_t len);

/* p->args / p->bargs as the device sees them (p's own when inactive); NULL, with a message, if a pointer lies in
 * none of the problem's buffers. */
const fa_fwd_args *conf_mirror_fwd_args(conf_mirror *m, const conf_problem *p, char *msg, size_t len);
const fa_bwd_args *conf_mirror_bwd_args(conf_mirror *m, const conf_problem *p, char *msg, size_t len);

#endif
