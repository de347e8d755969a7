/* Raft entry codec. Entries are versioned JSON objects:
 *   {"v":1,"type":"observe","node":2,"cv":3,"tilt":false,
 *    "sites":{"site-a":"down","site-b":"up"}}          a node's full local view (also its refresh),
 *                                    "cv": the committed config version it probed by
 *   {"v":1,"type":"step","op":7,"seq":1,"status":"started"|"done"|"failed","detail":"..."}
 *   {"v":1,"type":"leader","node":1}                    a new leader took office
 *   {"v":1,"type":"cloud","cv":3,"edges":{"site-a-e1":"down","site-b-e1":"up"}}
 *                                    the cloud's view of Edges (keys are drwatch Edge ids),
 *                                    proposed by the leader only; peers never forward it
 *   {"v":1,"type":"hold","group":"carrier-1","action":"release","by_operator":"alice"}
 *                                    an operator lifts a group's hold; proposed through the
 *                                    leader's admin socket only, never forwarded by peers
 *   {"v":1,"type":"maintenance","action":"set"|"clear","scope":"site"|"group","id":"site-a",
 *    "by_operator":"alice","reason":"UPS swap","ttl_ms":7200000}
 *                                    a maintenance window (reason and ttl_ms with "set" only);
 *                                    proposed through the leader's admin socket only
 *   {"v":1,"type":"operate","action":"switchover"|"failback","group":"carrier-1",
 *    "to":"premise-b","by_operator":"alice","request":"r-2-17"}
 *                                    an operator's move ("to" for a switchover); request names
 *                                    it so the admin socket finds the operation it created
 *   {"v":1,"type":"config","format":1,"base":2,"by_operator":"alice","reason":"apply",
 *    "config":{...}}                 the cluster configuration, version base+1 (docs/config.md);
 *                                    proposed by the leader only (admin socket, bootstrap)
 *   {"v":1,"type":"notified","event":12,"channel":"slack"}
 *                                    the leader's notifier delivered event 12 to its channel
 *                                    "slack" (docs/notifications.md); proposed by the leader only
 * Before raft_apply the leader stamps "ts" (its wall clock in ms since the epoch, bounded per
 * stamp.h) and "by" (its id); this is the only way time enters the FSM. */
#ifndef DRWATCH_ENTRY_H
#define DRWATCH_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "drwatch/config.h"
#include "drwatch/health.h"

#define DW_ENTRY_VERSION 1
#define DW_ENTRY_MAX 65536 /* bytes; larger entries are refused before proposing */
#define DW_ENTRY_CONFIG_MAX (8 << 20) /* a config entry carries the whole cluster document */
/* The config document format this build writes and understands; a config entry of a newer
 * format stops the node (upgrade it) rather than letting it run on a config it half reads. */
#define DW_CONFIG_FORMAT 1

enum dw_step_status { DW_STEP_PENDING = 0, DW_STEP_STARTED, DW_STEP_DONE, DW_STEP_FAILED };
const char *dw_step_status_name(enum dw_step_status s);
int dw_step_status_parse(const char *s, enum dw_step_status *out);

/* Each returns a malloc'd NUL-terminated JSON string (free()) or NULL on allocation failure. */
char *dw_entry_observe(const struct dw_config *cfg, uint64_t node, bool tilt,
                       const enum dw_health *site_states /* cfg->n_sites */);
char *dw_entry_step(int64_t op, int seq, enum dw_step_status status, const char *detail);
char *dw_entry_leader(uint64_t node);
/* doc: the canonical cluster document (dw_config_cluster_doc); base: the version it replaces. */
char *dw_entry_config(const cJSON *doc, int64_t base, const char *by_operator,
                      const char *reason);
#define DW_OPERATOR_MAX 64 /* bytes of an operator's name in a hold entry */
char *dw_entry_hold_release(const char *group, const char *by_operator);
#define DW_MAINT_TTL_MIN 10000LL            /* ten seconds (drills and tests) */
#define DW_MAINT_TTL_MAX (30LL * 86400000)  /* thirty days */
/* action "set" (reason, ttl_ms used) or "clear"; scope "site" or "group". */
char *dw_entry_maintenance(const char *action, const char *scope, const char *id,
                           const char *by_operator, const char *reason, int64_t ttl_ms);
/* action "switchover" (to: a target id) or "failback" (to NULL). */
char *dw_entry_operate(const char *action, const char *group, const char *to,
                       const char *by_operator, const char *request);
/* channel: a notification channel's name, 1 to DW_ID_MAX - 1 bytes. */
char *dw_entry_notified(int64_t event, const char *channel);

/* Cloud entries. states has one slot per configured Edge in flat order: sites[0].edges[0..],
 * then sites[1].edges[0..], ... (dw_entry_edge_count() slots). Only Edges in the cloud view
 * (dw_cloudview_watched) are written. */
int dw_entry_edge_count(const struct dw_config *cfg);
char *dw_entry_cloud(const struct dw_config *cfg, const enum dw_health *states);
/* Large views are split: writes at most max_edges watched Edges starting at flat index first and
 * sets *next to the flat index to continue from (dw_entry_edge_count() when done). With
 * max_edges <= DW_ENTRY_CLOUD_EDGES_MAX the entry stays well below DW_ENTRY_MAX. */
#define DW_ENTRY_CLOUD_EDGES_MAX 512
/* disconnected (flat, may be NULL) marks DOWN Edges whose trunks are in service but not
 * connected while the Edge is not OFFLINE: written "disconnected" instead of "down". */
char *dw_entry_cloud_part(const struct dw_config *cfg, const enum dw_health *states,
                          const bool *disconnected, int first, int max_edges, int *next);

/* Validates an unstamped entry received from a peer (type known, fields well-typed, size within
 * DW_ENTRY_MAX) and returns a stamped copy with "ts" and "by" set; NULL with errmsg otherwise. */
char *dw_entry_stamp(const char *json, size_t len, int64_t ts_ms, uint64_t leader_id,
                     char *errmsg, size_t errlen);

#endif
