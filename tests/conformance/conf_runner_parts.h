/*
 * Pieces of the case runner (conf_runner.c) that other checkers reuse: the float64 and naive references of a
 * problem, and one library call on the device with its buffers carried over and back (conf_config_check.c runs
 * the tuner's candidate configs through them).
 */
#ifndef CONF_RUNNER_PARTS_H
#define CONF_RUNNER_PARTS_H

#include <stddef.h>

#include "conf_check.h"
#include "conf_mirror.h"
#include "conf_problem.h"
#include "conf_runner.h"

/* The forward references (out, LSE, their naive twins, LSE magnitudes). 0, or -1 when out of memory. */
int conf_compute_refs(const conf_problem *p, conf_refs *refs);
void conf_free_refs(conf_refs *refs);
/* The gradient references of a backward case. 0, or -1 when out of memory. */
int conf_compute_grad_refs(const conf_problem *p, conf_grad_refs *g);
void conf_free_grad_refs(conf_grad_refs *g);

/*
 * One call (bwd: fa_bwd, else fa_fwd) on the device: upload the (poisoned) host buffers, call, synchronize,
 * download. r->lib_seconds accumulates the call's time. Returns the call's status with the reason in err.
 */
fa_status conf_run_on_device(conf_problem *p, conf_mirror *m, const fa_plan *plan, int bwd, conf_buf *ws,
                             conf_result *r, char *err, size_t errlen);

#endif
