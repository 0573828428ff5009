/*
 * Conformance checks of chosen tile configurations (flashport-tune: every candidate is checked before it is
 * timed). One check object holds a case's problem and its references, computed once; each run makes a plan with
 * the given forward (and backward) configs, runs it on poisoned outputs and applies the suite's rule
 * (conf_check.h), memory checks included. A backward case checks the forward's outputs and then dq, dk, dv.
 */
#ifndef CONF_CONFIG_CHECK_H
#define CONF_CONFIG_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "conf_cases.h"
#include "flashport.h"

typedef struct conf_config_check conf_config_check;

/* The case's problem and references on the device. NULL, with the reason in err, on failure. */
conf_config_check *conf_config_check_open(int device, const conf_case *c, uint64_t seed, char *err, size_t errlen);
/*
 * fwd / bwd: the configs (NULL: the planner heuristic's; bwd only for backward cases). Returns 0 if the results
 * pass, -1 otherwise with the reason in msg; *ratio (may be NULL) gets the worst error / bound.
 */
int conf_config_check_run(conf_config_check *cc, const fa_tile_config *fwd, const fa_tile_config *bwd,
                          double *ratio, char *msg, size_t msglen);
void conf_config_check_close(conf_config_check *cc);

#endif
