/* The FSM's private header: the state struct, statements and helpers its files share. */
#ifndef DRWATCH_FSM_INTERNAL_H
#define DRWATCH_FSM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <sqlite3.h>

#include "drwatch/cloudview.h"
#include "drwatch/detector.h"
#include "drwatch/fsm.h"
#include "drwatch/opsm.h"

#define FSM_SCHEMA_VERSION 4

extern const char fsm_schema_sql[];

enum stmt_id {
    ST_META_GET,
    ST_META_ADD,
    ST_META_SET,
    ST_HISTORY_ADD,
    ST_NODE_UPSERT,
    ST_OBS_UPSERT,
    ST_OBS_GET,
    ST_SITE_ENSURE,
    ST_SITE_GET,
    ST_SITE_SET,
    ST_SITE_SET_SIGNALS,
    ST_CLOUD_UPSERT,
    ST_CLOUD_GET,
    ST_GROUP_ENSURE,
    ST_GROUP_GET,
    ST_GROUP_SET_ACTIVE,
    ST_GROUP_SET_HOLD,
    ST_OP_RUNNING,
    ST_OP_GET,
    ST_OP_LATEST,
    ST_OP_INSERT,
    ST_OP_FINISH,
    ST_STEP_INSERT,
    ST_STEP_NEXT,
    ST_STEP_COUNT,
    ST_STEP_START,
    ST_STEP_FINISH,
    ST_STEP_BY_ACTION,
    ST_STEP_FAILED,
    ST_TARGET_FAILED,
    ST_ACTIVATE_STARTED,
    ST_META_PUT,
    ST_OP_MAX,
    ST_GROUP_DIRT,
    ST_HISTORY_NEWEST,
    ST_HISTORY_OLDEST,
    ST_HISTORY_PRUNE,
    ST_NEXT_STEPS,
    ST_WRITE_UNSETTLED,
    ST_GROUP_ROW,
    ST_GROUP_SET_HOLD_REASON,
    ST_GROUP_SET_PINNED,
    ST_GROUP_SET_BACKOFF,
    ST_SITE_SINCE,
    ST_MAINT_GET,
    ST_MAINT_PUT,
    ST_MAINT_DEL,
    ST_MAINT_EXPIRED,
    ST_AUTO_OPS,
    ST_OP_BY_REQUEST,
    ST_OFF_PENDING,
    ST_GROUP_SET_RESYNC,
    ST_EVENT_ADD,
    ST_EVENT_EXISTS,
    ST_DELIVERY_ADD,
    ST_EVENT_PRUNE_LAST,
    ST_EVENT_PRUNE,
    ST_DELIVERY_PRUNE,
    ST_COUNT
};

struct dw_fsm {
    sqlite3 *db;
    const struct dw_config *cfg; /* the committed config (fsm_config.c), or the open() seed */
    struct dw_config *owned;     /* cfg when the FSM parsed it from a config entry */
    int64_t cfg_version;         /* 0 before the first config entry */
    const struct dw_config *seed; /* what open() was given (or the empty config): version 0 */
    struct {                     /* the config a config entry replaced, until its commit */
        bool pending;
        const struct dw_config *cfg;
        struct dw_config *owned;
        int64_t version;
        const char **edge_ids;
        int n_edge_ids;
    } undo;
    const char **edge_ids; /* every configured Edge id, sorted: cloud entries name Edges */
    int n_edge_ids;
    /* sites and groups by id: verdict history rows and operation ids must not depend on the
     * order of a config file (two nodes may list them differently) */
    int site_order[DW_MAX_SITES];
    int group_order[DW_MAX_GROUPS];
    sqlite3_stmt *st[ST_COUNT];
    /* mirrors of meta, refreshed after every commit and restore */
    uint64_t applied;
    uint64_t rejected;
    int64_t last_ts;
    int64_t last_stamp; /* the previous entry's ts as stamped, before entry_time's rule */
    char error[512]; /* why the last apply returned DW_FSM_FATAL */
    dw_fsm_record_cb record_cb;
    void *record_data;
    bool in_event; /* an event's history row: reported once, as the event */
};

/* Outcome of applying one entry inside its transaction. */
enum { APPLY_OK = 0, APPLY_REJECT = 1, APPLY_SQL_ERROR = -1, APPLY_TOO_NEW = 2 };

struct op_row {
    int64_t id;
    char grp[DW_ID_MAX];
    enum dw_op_kind kind;
    char from[DW_ID_MAX]; /* "" when no target carried calls */
    char to[DW_ID_MAX];   /* "" for a cleanup that leaves nothing in service */
    enum dw_op_status status;
};

/* A group's row: who carries calls and what binds automatic operations. */
struct group_row {
    int active;
    bool hold;
    char hold_reason[16]; /* "failed" | "flapping" | "" */
    bool pinned;
    int fb_failures;     /* failed failbacks in a row */
    int64_t fb_retry_at; /* no automatic failback before this time */
    int64_t resync;      /* a maintenance window ended: what it left in service is checked by
                            the first operation from this id on; 0 none */
};

struct step_row {
    int seq;
    enum dw_step_action action;
    char target[DW_ID_MAX];
    enum dw_step_status status;
};

/* fsm_db.c */
void fsm_set_msg(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int fsm_target_index(const struct dw_group *g, const char *id);
int fsm_site_index(const struct dw_config *cfg, const char *id);
const char *fsm_col_text(sqlite3_stmt *s, int col);
enum dw_health fsm_health_of(const char *s);
void fsm_finalize_all(sqlite3_stmt **st);
int fsm_prepare_all(sqlite3 *db, sqlite3_stmt **st, char *errmsg, size_t errlen);
sqlite3_stmt *fsm_stmt(struct dw_fsm *f, enum stmt_id id);
int fsm_run(sqlite3_stmt *s);
int fsm_bind_text(sqlite3_stmt *s, int i, const char *v);
int fsm_meta_get(struct dw_fsm *f, const char *key, int64_t *out);
int fsm_meta_add(struct dw_fsm *f, const char *key, int64_t delta);
int fsm_meta_set(struct dw_fsm *f, const char *key, int64_t value);
int fsm_history(struct dw_fsm *f, int64_t ts, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Deletes the oldest history rows past the configured retention, judged at the entry's ts. */
int fsm_history_prune(struct dw_fsm *f, int64_t ts);
void fsm_load_counters(struct dw_fsm *f);
int fsm_site_row(struct dw_fsm *f, const char *site, enum dw_health *verdict,
                 enum dw_health *probe, enum dw_health *cloud);
int fsm_site_verdict_by_id(struct dw_fsm *f, const char *site, enum dw_health *out);
int fsm_group_get(struct dw_fsm *f, const char *group, int *active, bool *hold);
int fsm_target_health(struct dw_fsm *f, const struct dw_target *t, enum dw_health *out);
int fsm_group_row(struct dw_fsm *f, const char *group, struct group_row *out);
int64_t fsm_next_op_id(struct dw_fsm *f); /* the id the next operation gets */
int fsm_group_hold(struct dw_fsm *f, const char *group, const char *reason);
/* Whether scope ("site" | "group") id is in maintenance now: 1 yes, 0 no, -1 error. */
int fsm_in_maintenance(struct dw_fsm *f, const char *scope, const char *id);
int fsm_op_get(struct dw_fsm *f, int64_t op, struct op_row *row);
int fsm_op_latest(struct dw_fsm *f, const char *group, struct op_row *row);
int fsm_step_next(struct dw_fsm *f, int64_t op, struct step_row *row);
int fsm_step_status_of(struct dw_fsm *f, int64_t op, enum dw_step_action a,
                       enum dw_step_status *out);
int fsm_int_row(sqlite3_stmt *s, int64_t *out, int n);
int fsm_scalar(sqlite3_stmt *s, int64_t *out);
int fsm_group_set(struct dw_fsm *f, enum stmt_id id, const char *group, int value);
int fsm_cmp_str_ptr(const void *a, const void *b);

/* fsm_maint.c */
int fsm_apply_maintenance(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen);
/* Lifts every window whose expiry ts reached, each with a history row. */
int fsm_expire_maintenance(struct dw_fsm *f, int64_t ts);
int fsm_maintenance_prune(struct dw_fsm *f);

/* fsm_ops.c: an operator's switchover or failback */
int fsm_apply_operate(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen);

/* fsm_verdict.c */
const char *fsm_combine_name(enum dw_combine c);
const char *fsm_rule_name(enum dw_site_rule r);
int fsm_cloud_edge_state(struct dw_fsm *f, const struct dw_edge *edge, int64_t now,
                         enum dw_health *out, int64_t *ts_out, bool *fresh_out, bool *disc_out);
int fsm_update_verdicts(struct dw_fsm *f, int64_t now, bool *changed);

/* fsm_events.c */
/* Journals an event (docs/notifications.md): the history row as before (kind "operation",
 * "hold" or "maintenance" by the event's kind, detail the summary) and, for the stable event
 * kinds (DW_EVENT_KINDS), an events row the leader's notifier delivers. Other kinds ("cleanup":
 * internal) go to history only. 0 or -1. */
int fsm_event(struct dw_fsm *f, int64_t ts, const char *kind, const char *group,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The events row alone, for an event whose history row another one already tells (the hold a
 * failed operation puts on its group). */
int fsm_event_note(struct dw_fsm *f, int64_t ts, const char *kind, const char *group,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Deletes the events (and their deliveries) older than the oldest history row kept. */
int fsm_events_prune(struct dw_fsm *f);
int fsm_apply_notified(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen);

/* fsm_ops.c */
int fsm_complete_operation(struct dw_fsm *f, const struct op_row *o, int64_t ts, char *why,
                           size_t whylen);
int fsm_fail_operation(struct dw_fsm *f, const struct op_row *o, const struct step_row *st,
                       int64_t ts, char *why, size_t whylen);
void fsm_released_key(char *buf, size_t len, const char *group);
/* An APPLY_ code: a refused status move refuses the entry. */
int fsm_plan_group(struct dw_fsm *f, const struct dw_group *g, int64_t now, bool verdict_changed,
                   char *why, size_t whylen);

/* fsm_config.c */
int fsm_config_init(struct dw_fsm *f, const struct dw_config *seed);
void fsm_config_close(struct dw_fsm *f);
/* After a transaction: keep (commit) or undo (rollback) a config a config entry installed. */
void fsm_config_settle(struct dw_fsm *f, bool keep);
/* The committed config stored in db: 0 with *out NULL when there is none. */
int fsm_config_read(sqlite3 *db, struct dw_config **out);
/* Takes cfg; NULL returns to the seed at version 0 (a snapshot without a config). */
int fsm_config_adopt(struct dw_fsm *f, struct dw_config *cfg);
void fsm_config_discard(struct dw_config *cfg);
int fsm_apply_config(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen);
/* The ids of the voting members, at most DW_MAX_MEMBERS; returns how many. */
int fsm_voters(const struct dw_config *cfg, uint64_t *ids);

/* fsm_snapshot.c */
int fsm_ensure_config_rows(struct dw_fsm *f);
int fsm_open_memory_db(sqlite3 **db, char *errmsg, size_t errlen);

#endif
