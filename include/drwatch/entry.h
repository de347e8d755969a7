/* Raft entry codec. Entries are versioned JSON objects:
 *   {"v":1,"type":"observe","node":2,"digest":"<16 hex>","tilt":false,
 *    "sites":{"site-a":"down","site-b":"up"}}          a node's full local view (also its refresh)
 *   {"v":1,"type":"step","op":7,"seq":1,"status":"started"|"done"|"failed","detail":"..."}
 *   {"v":1,"type":"leader","node":1}                    a new leader took office
 * Before raft_apply the leader stamps "ts" (its wall clock, ms since the epoch) and "by" (its id);
 * this is the only way time enters the FSM. */
#ifndef DRWATCH_ENTRY_H
#define DRWATCH_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drwatch/config.h"
#include "drwatch/health.h"

#define DW_ENTRY_VERSION 1
#define DW_ENTRY_MAX 65536 /* bytes; larger entries are refused before proposing */

enum dw_step_status { DW_STEP_PENDING = 0, DW_STEP_STARTED, DW_STEP_DONE, DW_STEP_FAILED };
const char *dw_step_status_name(enum dw_step_status s);
int dw_step_status_parse(const char *s, enum dw_step_status *out);

/* Each returns a malloc'd NUL-terminated JSON string (free()) or NULL on allocation failure. */
char *dw_entry_observe(const struct dw_config *cfg, uint64_t node, bool tilt,
                       const enum dw_health *site_states /* cfg->n_sites */);
char *dw_entry_step(int64_t op, int seq, enum dw_step_status status, const char *detail);
char *dw_entry_leader(uint64_t node);

/* Validates an unstamped entry received from a peer (type known, fields well-typed, size within
 * DW_ENTRY_MAX) and returns a stamped copy with "ts" and "by" set; NULL with errmsg otherwise. */
char *dw_entry_stamp(const char *json, size_t len, int64_t ts_ms, uint64_t leader_id,
                     char *errmsg, size_t errlen);

#endif
