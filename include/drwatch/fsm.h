/* The replicated state machine: applies committed entries to an in-memory SQLite database
 * (site verdicts, observations, failover groups, operations and steps, history).
 * Deterministic: reads no clock and no network; time comes only from entries' "ts".
 * The database is derived state: rebuilt from snapshot + log replay at every start. */
#ifndef DRWATCH_FSM_H
#define DRWATCH_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <sqlite3.h>

#include "drwatch/config.h"
#include "drwatch/entry.h"
#include "drwatch/health.h"

struct dw_fsm;

/* The FSM decides by the committed config (config entries, docs/config.md), never by a node's
 * file. seed: what it decides by until the first config entry, as version 0; a node passes NULL
 * (no sites, groups or members until one is committed); tests and tools pass their config, which
 * must outlive the fsm. */
int dw_fsm_open(struct dw_fsm **out, const struct dw_config *seed, char *errmsg, size_t errlen);
void dw_fsm_close(struct dw_fsm *f); /* accepts NULL */

/* Applies one stamped entry in one transaction. A malformed or inapplicable entry (every node
 * refuses it alike) changes nothing but a "rejected" history row and a counter, and returns
 * DW_FSM_REJECTED; the log never stalls. DW_FSM_FATAL means this node failed to apply it
 * (SQLite error, out of memory): nothing changed, dw_fsm_last_error says why, and the caller
 * must stop rather than go on with a state that differs from every other node's. */
enum { DW_FSM_APPLIED = 0, DW_FSM_REJECTED = 1, DW_FSM_FATAL = 2 };
int dw_fsm_apply(struct dw_fsm *f, const void *buf, size_t len);
/* What applying an entry recorded, one call per history row or journal event, as it happens
 * (inside the entry's transaction: the caller keeps them until dw_fsm_apply says APPLIED).
 * kind: the event kind for the event journal's events ("hold", "maintenance_set", "failover",
 * ...), else the history kind ("verdict", "operation", "step", "leader", ...); group may be
 * NULL. The daemon logs them (docs/logging.md); the FSM itself never logs. */
struct dw_fsm_record {
    int64_t ts;
    const char *kind;
    const char *group;
    const char *detail;
};
typedef void (*dw_fsm_record_cb)(void *data, const struct dw_fsm_record *rec);
void dw_fsm_on_record(struct dw_fsm *f, dw_fsm_record_cb cb, void *data);
const char *dw_fsm_last_error(const struct dw_fsm *f);
/* The database, for tests that inject faults. */
sqlite3 *dw_fsm_db(struct dw_fsm *f);

/* Serialised database (sqlite3_serialize); free *buf with sqlite3_free. */
int dw_fsm_snapshot(struct dw_fsm *f, void **buf, size_t *len);
/* Replaces the whole state with a snapshot; buf is copied. */
int dw_fsm_restore(struct dw_fsm *f, const void *buf, size_t len);
/* The same in place, for tests and fuzzers that return to one base state many times: the
 * connection and its statements stay (dw_fsm_restore checks a snapshot in a new connection
 * first, which costs as much as an open). buf must be a current-schema snapshot of an FSM opened
 * with the same seed; it is copied. Afterwards the FSM is as dw_fsm_restore leaves it: the same
 * tables, counters, committed config (or the seed at version 0) and no error. -1: the state is
 * undefined and only dw_fsm_close may follow. */
int dw_fsm_rewind(struct dw_fsm *f, const void *buf, size_t len);

/* Deterministic text dump of every table, rows in primary-key order (free()). */
char *dw_fsm_dump(struct dw_fsm *f);
/* The same, or NULL (dw_fsm_last_error says why) once it passes about max bytes (0: no limit):
 * the admin dump is a debugging tool and must not hold the loop for long. */
#define DW_FSM_DUMP_MAX (16u << 20)
char *dw_fsm_dump_max(struct dw_fsm *f, size_t max);

uint64_t dw_fsm_applied(const struct dw_fsm *f);  /* entries applied since open/restore base */
uint64_t dw_fsm_rejected(const struct dw_fsm *f);
int64_t dw_fsm_last_ts(const struct dw_fsm *f);   /* ts of the last applied entry */

/* The committed config version (0: none yet, the seed) and the config the FSM decides by: valid
 * until the next dw_fsm_apply or dw_fsm_restore. cfg->version is the version. */
int64_t dw_fsm_config_version(const struct dw_fsm *f);
const struct dw_config *dw_fsm_config(const struct dw_fsm *f);
/* The ts of node's last committed observation refresh, -1 when it has none. */
int64_t dw_fsm_node_refreshed(struct dw_fsm *f, uint64_t node);
/* The committed cluster document as stored (malloc'd), NULL when none is committed. */
char *dw_fsm_config_doc(struct dw_fsm *f);
/* Whether next may replace the committed config now: 0, 1 with why (a running operation's group
 * would change, or a group's active target would go), -1 on a database error. Config entries are
 * refused by the same rule; the admin socket asks first to give the operator the reason. */
int dw_fsm_config_check(struct dw_fsm *f, const struct dw_config *next, char *why, size_t whylen);

/* The step the actuator must run next for each running operation (the first step that is not
 * DONE). At most one per operation, ordered by operation id. */
struct dw_step_ref {
    int64_t op;
    int seq;
    int n_steps;
    char action[16];         /* "activate" | "verify" | "deactivate" */
    int group;               /* index into cfg->groups */
    int target;              /* index into the group's targets */
    enum dw_step_status status;
};
int dw_fsm_next_steps(struct dw_fsm *f, struct dw_step_ref *out, int max);
/* 1 when another operation of the group (index into the config's groups) ended with a step
 * STARTED and never finished: a write of it may still have been on its way to Genesys when this
 * term began. 0 otherwise, -1 on a database error. */
int dw_fsm_group_write_unsettled(struct dw_fsm *f, int group, int64_t op);

enum dw_health dw_fsm_site_verdict(struct dw_fsm *f, int site);
/* The site's two signals (docs/detection.md): the probe quorum verdict (sticky while a fresh
 * majority vouches, else UNKNOWN) and the site rule over its Edges' fresh cloud reports;
 * dw_fsm_site_verdict combines them per the site's "combine". */
enum dw_health dw_fsm_probe_verdict(struct dw_fsm *f, int site);
enum dw_health dw_fsm_cloud_verdict(struct dw_fsm *f, int site);
int dw_fsm_active_target(struct dw_fsm *f, int group); /* index into the group's targets */

/* Cluster view for drctl status: {"last_ts","applied","rejected",
 *   "sites":[{"id","verdict","since","observations":[{"node","state","refreshed","fresh","tilt"}]}],
 *   "nodes":[{"id","last_refresh","tilt"}],
 *   "groups":[{"id","active","hold","hold_reason" ("failed" | "flapping" | ""),"failback"
 *              ("auto" | "manual"),"pinned","failback_failures","failback_retry_at",
 *              "maintenance"}],
 *   "operations":[{"id","group","kind","from","to","status","created","finished","reason",
 *                  "operator" ("" when automatic),
 *                  "steps":[{"seq","action","target","status","started","finished","detail"}]}],
 *   "maintenance":[as dw_fsm_maintenance_json]}
 * Operations, newest first: every running one plus the 10 most recent finished ones. */
cJSON *dw_fsm_status_json(struct dw_fsm *f);
/* Each site also has "probe_verdict", "cloud_verdict", "combine" ("probes" |
 * "probes_and_genesys" | "probes_or_genesys"), "rule" ("any" | "all" | "at_least", with
 * "at_least": k), and, when it combines with Genesys,
 * "cloud":[{"edge","genesys_edge_id","state","reported","fresh"}] judged at last_ts. */

/* An operator's move planned against the current state, as an operate entry applied now would
 * plan it: action "switchover" (to: a target id) or "failback" (to ignored). 0 with *out =
 * {"group","kind","from","to","steps":[{"seq","action","target"}]} (cJSON_Delete it), 1 refused
 * with why, -1 on a database error. */
int dw_fsm_manual_plan(struct dw_fsm *f, const char *group, const char *action, const char *to,
                       cJSON **out, char *why, size_t whylen);
/* The operation an operate entry with this request id created, 0 none (it was refused). */
int64_t dw_fsm_operation_by_request(struct dw_fsm *f, const char *request);
/* What binds a group's automatic operations, for metrics. -1 on a database error. */
struct dw_group_state {
    bool held;
    bool flapping;        /* held for flapping (else for a failure) */
    bool pinned;          /* an operator's switchover chose the carrier */
    bool maintenance;     /* the group itself is in maintenance */
    int failback_failures; /* failed failbacks in a row */
};
int dw_fsm_group_state(struct dw_fsm *f, int group, struct dw_group_state *out);
/* 1 when the site (index into the committed config) is in maintenance, 0 not, -1 error. */
int dw_fsm_site_maintenance(struct dw_fsm *f, int site);
/* Maintenance windows: [{"scope","id","reason","owner","since","expires"}]; NULL on error. */
cJSON *dw_fsm_maintenance_json(struct dw_fsm *f);

/* The most rows one history view returns, whatever limit asks for (0 too). */
#define DW_FSM_HISTORY_MAX 10000

/* History rows, newest first, at most limit: [{"id","ts","kind","detail"}]. */
cJSON *dw_fsm_history_json(struct dw_fsm *f, int limit);

/* A filtered history view (drctl history and watch). group: only rows about that group (its
 * operations, steps, holds and maintenance) or about a site one of its targets runs at (verdicts,
 * signals, site maintenance); NULL for every row. */
struct dw_history_query {
    int64_t after;     /* rows with a greater id */
    int64_t since;     /* rows with ts >= since (ms since the epoch) */
    const char *group; /* a group id of the committed config, or NULL */
    int limit;         /* at most this many (capped at DW_FSM_HISTORY_MAX) */
    bool oldest_first; /* else newest first */
};
/* [{"id","ts","time","kind","subject","detail"}] (subject: "group G", "site S" or ""); *newest
 * is the highest id in the table (a cursor for the next view). NULL on a database error. */
cJSON *dw_fsm_history_query(struct dw_fsm *f, const struct dw_history_query *q, int64_t *newest);

/* The event journal (docs/notifications.md): operations done or failed, holds, maintenance and
 * "no target up", each once, by the entry that caused it. Kinds are stable names: "failover",
 * "failback", "switchover", "rollback", "operation_failed", "hold", "hold_released",
 * "maintenance_set", "maintenance_cleared", "maintenance_expired", "no_target_up". A channel's
 * delivery is confirmed by a "notified" entry; events are pruned with history. */
#define DW_EVENT_KIND_MAX 32
#define DW_EVENT_SUMMARY_MAX 1024
struct dw_event {
    int64_t id;
    int64_t ts; /* the entry's time, ms since the epoch */
    char kind[DW_EVENT_KIND_MAX];
    char group[DW_ID_MAX];
    char summary[DW_EVENT_SUMMARY_MAX];
};
bool dw_event_kind_known(const char *kind);
/* The events with ts > since not yet delivered to channel, oldest first, at most max of them:
 * returns how many were written to out, -1 on a database error. *pending (may be NULL): how
 * many there are in all. */
int dw_fsm_undelivered(struct dw_fsm *f, const char *channel, int64_t since,
                       struct dw_event *out, int max, int64_t *pending);
/* {"v":1,"id","ts","time","kind","group","summary","cluster"}; time is ts in ISO 8601 UTC. */
cJSON *dw_event_json(const struct dw_event *ev, const char *cluster);
/* ts as "2026-01-31T12:00:00.000Z". */
void dw_event_time(int64_t ts, char *buf, size_t len);

#endif
