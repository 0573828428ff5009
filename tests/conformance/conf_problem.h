/*
 * Conformance suite: turns a case into real memory: fa_attn_desc, fa_fwd_args (and for backward cases
 * fa_bwd_args) and the host buffers behind them, laid out as the case asks (strides, packing, varlen, paged
 * pools with a shuffled block table, k_new / v_new and rotary tables for the cache append).
 *
 * Every buffer sits between canary bytes. Input gaps (padding inside strided tensors) hold NaN and unused
 * cache slots hold large finite garbage, so that reading either one shows up in the output; output buffers
 * are poisoned with 0xFF (NaN) before each call, and their gaps must still hold 0xFF afterwards.
 * dq / dk / dv take the strides of q / k / v, each in a buffer of its own (so packed layouts leave gaps).
 * With the append, k / v are written by the call: only the appended rows may change (conf_buf.mutable_).
 */
#ifndef CONF_PROBLEM_H
#define CONF_PROBLEM_H

#include <stddef.h>
#include <stdint.h>

#include "conf_cases.h"
#include "flashport.h"

#define CONF_CANARY_BYTES 64

typedef enum conf_buf_id {
    CONF_BUF_Q = 0, CONF_BUF_K, CONF_BUF_V, CONF_BUF_OUT, CONF_BUF_LSE, CONF_BUF_SLOPES, CONF_BUF_CU_Q,
    CONF_BUF_CU_K, CONF_BUF_SEQUSED, CONF_BUF_BLOCK_TABLE, CONF_BUF_KNEW, CONF_BUF_VNEW, CONF_BUF_COS, CONF_BUF_SIN,
    CONF_BUF_DOUT, CONF_BUF_DQ, CONF_BUF_DK, CONF_BUF_DV, CONF_BUF_COUNT
} conf_buf_id;

typedef struct conf_buf {
    unsigned char *alloc; /* canary | data (size bytes) | canary */
    unsigned char *data;
    size_t size;
    unsigned char *snapshot; /* inputs: contents handed to the library, to prove it wrote nothing there */
    unsigned char *live;     /* outputs: 1 for bytes of a logical element, 0 for gaps that must stay 0xFF */
    unsigned char *mutable_; /* in-out inputs (the cache with append): 1 for bytes the call may write */
    int is_output;           /* poisoned before the current call */
} conf_buf;

typedef struct conf_problem {
    const conf_case *c;
    fa_attn_desc desc;
    fa_fwd_args args;
    fa_bwd_args bargs; /* backward cases: the same q/k/v/metadata, out/lse as fa_fwd wrote them, dout, grads */
    conf_buf buf[CONF_BUF_COUNT];
    int64_t rows;      /* logical query rows (see conf_reference.h) */
    int64_t key_rows;  /* logical key rows (backward cases) */
} conf_problem;

/* Builds everything from the case and a seed. Returns 0, or -1 with a message in err. */
int conf_problem_build(conf_problem *p, const conf_case *c, uint64_t seed, char *err, size_t errlen);
void conf_problem_free(conf_problem *p);

/* Fills the current call's outputs (out and lse; dq, dk, dv after conf_problem_begin_bwd) with 0xFF bytes (NaN),
 * gaps included, and puts the cache back as it was before any append. */
void conf_problem_poison(conf_problem *p);

/* After fa_fwd wrote out and lse: they become inputs (snapshotted), dq / dk / dv the outputs. Returns 0 or -1. */
int conf_problem_begin_bwd(conf_problem *p);

/* Canaries of every buffer, inputs unchanged (appended cache rows excepted), output gaps untouched.
 * Returns 0, or -1 with a message. */
int conf_problem_check_memory(const conf_problem *p, char *msg, size_t len);

/* A caller-owned buffer with canaries (for workspaces). */
int conf_buf_alloc(conf_buf *b, size_t size);
void conf_buf_free(conf_buf *b);
int conf_buf_canaries_ok(const conf_buf *b);

/* Small deterministic generator (splitmix64), so a printed seed reproduces the inputs exactly. */
uint64_t conf_rng_next(uint64_t *state);
double conf_rng_uniform(uint64_t *state); /* [0, 1) */

#endif
