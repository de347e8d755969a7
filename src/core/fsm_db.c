/* Owns the FSM's database: schema, statements, meta, history rows and shared row reads. */

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_internal.h"

const char fsm_schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE nodes(id INTEGER PRIMARY KEY, last_refresh INTEGER NOT NULL,"
    " tilt INTEGER NOT NULL);"
    "CREATE TABLE observations(node INTEGER NOT NULL, site TEXT NOT NULL, state TEXT NOT NULL,"
    " ts INTEGER NOT NULL, PRIMARY KEY(node, site));"
    "CREATE TABLE sites(id TEXT PRIMARY KEY, verdict TEXT NOT NULL, since INTEGER NOT NULL,"
    " probe_verdict TEXT NOT NULL DEFAULT 'unknown', cloud_verdict TEXT NOT NULL DEFAULT 'unknown');"
    "CREATE TABLE cloud(edge TEXT PRIMARY KEY, state TEXT NOT NULL, ts INTEGER NOT NULL);"
    "CREATE TABLE groups(id TEXT PRIMARY KEY, active INTEGER NOT NULL, hold INTEGER NOT NULL,"
    " hold_reason TEXT NOT NULL DEFAULT '', pinned INTEGER NOT NULL DEFAULT 0,"
    " fb_failures INTEGER NOT NULL DEFAULT 0, fb_retry_at INTEGER NOT NULL DEFAULT 0,"
    " resync INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE operations(id INTEGER PRIMARY KEY, grp TEXT NOT NULL, kind TEXT NOT NULL,"
    " from_target TEXT NOT NULL, to_target TEXT NOT NULL, status TEXT NOT NULL,"
    " created INTEGER NOT NULL, finished INTEGER, reason TEXT NOT NULL,"
    " operator TEXT NOT NULL DEFAULT '', request TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE maintenance(scope TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL,"
    " owner TEXT NOT NULL, since INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " PRIMARY KEY(scope, id));"
    "CREATE INDEX operations_by_group ON operations(grp, status);"
    "CREATE TABLE steps(op INTEGER NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL,"
    " target TEXT NOT NULL, status TEXT NOT NULL, started INTEGER, finished INTEGER, detail TEXT,"
    " PRIMARY KEY(op, seq));"
    "CREATE TABLE history(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,"
    " detail TEXT NOT NULL);"
    "CREATE TABLE config(version INTEGER PRIMARY KEY, doc TEXT NOT NULL, ts INTEGER NOT NULL,"
    " by_operator TEXT NOT NULL, reason TEXT NOT NULL);"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,"
    " grp TEXT NOT NULL, summary TEXT NOT NULL);"
    "CREATE TABLE deliveries(event INTEGER NOT NULL, channel TEXT NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY(event, channel));"
    "INSERT INTO meta(key, value) VALUES('schema', 4), ('applied', 0), ('rejected', 0),"
    " ('last_ts', 0), ('leader_epoch', 0), ('last_stamp', 0);";

static const char *const stmt_sql[ST_COUNT] = {
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_ADD] = "UPDATE meta SET value = value + ?2 WHERE key = ?1",
    [ST_META_SET] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [ST_HISTORY_ADD] = "INSERT INTO history(ts, kind, detail) VALUES(?1, ?2, ?3)",
    [ST_NODE_UPSERT] = "INSERT INTO nodes(id, last_refresh, tilt) VALUES(?1, ?2, ?3)"
                       " ON CONFLICT(id) DO UPDATE SET last_refresh = excluded.last_refresh,"
                       " tilt = excluded.tilt",
    [ST_OBS_UPSERT] = "INSERT INTO observations(node, site, state, ts) VALUES(?1, ?2, ?3, ?4)"
                      " ON CONFLICT(node, site) DO UPDATE SET state = excluded.state,"
                      " ts = excluded.ts",
    [ST_OBS_GET] = "SELECT o.state, n.last_refresh, n.tilt FROM observations o"
                   " JOIN nodes n ON n.id = o.node WHERE o.node = ?1 AND o.site = ?2",
    [ST_SITE_ENSURE] = "INSERT OR IGNORE INTO sites(id, verdict, since) VALUES(?1, 'unknown', 0)",
    [ST_SITE_GET] = "SELECT verdict, probe_verdict, cloud_verdict FROM sites WHERE id = ?1",
    [ST_SITE_SET] = "UPDATE sites SET verdict = ?2, since = ?3 WHERE id = ?1",
    [ST_SITE_SET_SIGNALS] = "UPDATE sites SET probe_verdict = ?2, cloud_verdict = ?3 WHERE id = ?1",
    [ST_CLOUD_UPSERT] = "INSERT INTO cloud(edge, state, ts) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT(edge) DO UPDATE SET state = excluded.state, ts = excluded.ts",
    [ST_CLOUD_GET] = "SELECT state, ts FROM cloud WHERE edge = ?1",
    [ST_GROUP_ENSURE] = "INSERT OR IGNORE INTO groups(id, active, hold) VALUES(?1, 0, 0)",
    [ST_GROUP_GET] = "SELECT active, hold FROM groups WHERE id = ?1",
    [ST_GROUP_SET_ACTIVE] = "UPDATE groups SET active = ?2 WHERE id = ?1",
    [ST_GROUP_SET_HOLD] = "UPDATE groups SET hold = ?2 WHERE id = ?1",
    [ST_OP_RUNNING] = "SELECT id FROM operations WHERE grp = ?1 AND status = 'running'"
                      " ORDER BY id LIMIT 1",
    [ST_OP_GET] = "SELECT id, grp, kind, from_target, to_target, status FROM operations"
                  " WHERE id = ?1",
    [ST_OP_LATEST] = "SELECT id, grp, kind, from_target, to_target, status FROM operations"
                     " WHERE grp = ?1 ORDER BY id DESC LIMIT 1",
    [ST_OP_INSERT] = "INSERT INTO operations(id, grp, kind, from_target, to_target, status,"
                     " created, finished, reason, operator, request)"
                     " VALUES((SELECT COALESCE(MAX(id), 0) + 1 FROM operations),"
                     " ?1, ?2, ?3, ?4, 'running', ?5, NULL, ?6, ?7, ?8)",
    [ST_OP_FINISH] = "UPDATE operations SET status = ?2, finished = ?3 WHERE id = ?1",
    [ST_STEP_INSERT] = "INSERT INTO steps(op, seq, action, target, status)"
                       " VALUES(?1, ?2, ?3, ?4, 'pending')",
    [ST_STEP_NEXT] = "SELECT seq, action, target, status FROM steps"
                     " WHERE op = ?1 AND status <> 'done' ORDER BY seq LIMIT 1",
    [ST_STEP_COUNT] = "SELECT COUNT(*) FROM steps WHERE op = ?1",
    [ST_STEP_START] = "UPDATE steps SET status = 'started', started = ?3"
                      " WHERE op = ?1 AND seq = ?2",
    [ST_STEP_FINISH] = "UPDATE steps SET status = ?3, finished = ?4, detail = ?5"
                       " WHERE op = ?1 AND seq = ?2",
    [ST_STEP_BY_ACTION] = "SELECT status FROM steps WHERE op = ?1 AND action = ?2"
                          " ORDER BY seq LIMIT 1",
    [ST_STEP_FAILED] = "SELECT action FROM steps WHERE op = ?1 AND status = 'failed'",
    /* failures to bring the target in since the group's last release and since its site's
     * verdict last changed (?4: the site, NULL for a siteless target) */
    [ST_TARGET_FAILED] = "SELECT COUNT(*) FROM steps s JOIN operations o ON o.id = s.op"
                         " WHERE o.grp = ?1 AND o.id > ?2 AND s.target = ?3"
                         " AND s.status = 'failed' AND s.action IN ('activate', 'verify')"
                         " AND o.kind <> 'failback'"
                         " AND s.finished >= COALESCE((SELECT since FROM sites WHERE id = ?4), 0)",
    [ST_ACTIVATE_STARTED] = "SELECT MAX(s.started) FROM steps s JOIN operations o ON o.id = s.op"
                            " WHERE o.grp = ?1 AND s.target = ?2 AND s.action = 'activate'",
    [ST_META_PUT] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    /* a running operation is newer than the group's finished ones; its failures count */
    [ST_OP_MAX] = "SELECT COALESCE(MAX(id), 0) FROM operations WHERE grp = ?1"
                  " AND status <> 'running'",
    [ST_GROUP_DIRT] = "SELECT COALESCE(SUM(o.status = 'failed'), 0),"
                      " COALESCE(SUM(o.status = 'aborted' AND EXISTS(SELECT 1 FROM steps s"
                      " WHERE s.op = o.id AND s.status <> 'pending')), 0),"
                      " COALESCE(SUM(o.status = 'failed' AND o.kind = 'cleanup'), 0)"
                      " FROM operations o WHERE o.grp = ?1 AND o.id > (SELECT COALESCE(MAX(id), 0)"
                      " FROM operations WHERE grp = ?1 AND status = 'done'"
                      " AND kind IN ('failover', 'cleanup', 'failback', 'switchover'))",
    [ST_HISTORY_NEWEST] = "SELECT COALESCE(MAX(id), 0) FROM history",
    [ST_HISTORY_OLDEST] = "SELECT id, ts FROM history ORDER BY id LIMIT ?1",
    [ST_HISTORY_PRUNE] = "DELETE FROM history WHERE id <= ?1",
    /* the actuator asks on every tick: the next step of every running operation */
    [ST_NEXT_STEPS] = "SELECT o.id, o.grp, s.seq, s.action, s.target, s.status,"
                      " (SELECT COUNT(*) FROM steps c WHERE c.op = o.id)"
                      " FROM operations o JOIN steps s ON s.op = o.id"
                      " WHERE o.status = 'running' AND s.seq ="
                      " (SELECT MIN(n.seq) FROM steps n WHERE n.op = o.id AND n.status <> 'done')"
                      " ORDER BY o.id",
    [ST_WRITE_UNSETTLED] = "SELECT 1 FROM operations o JOIN steps s ON s.op = o.id"
                           " WHERE o.grp = ?1 AND o.id <> ?2 AND o.status <> 'running'"
                           " AND s.status = 'started' LIMIT 1",
    [ST_GROUP_ROW] = "SELECT active, hold, hold_reason, pinned, fb_failures, fb_retry_at,"
                     " resync FROM groups WHERE id = ?1",
    [ST_GROUP_SET_RESYNC] = "UPDATE groups SET resync = ?2 WHERE id = ?1",
    [ST_GROUP_SET_HOLD_REASON] = "UPDATE groups SET hold = ?2 <> '', hold_reason = ?2 WHERE id = ?1",
    [ST_GROUP_SET_PINNED] = "UPDATE groups SET pinned = ?2 WHERE id = ?1",
    [ST_GROUP_SET_BACKOFF] = "UPDATE groups SET fb_failures = ?2, fb_retry_at = ?3 WHERE id = ?1",
    [ST_SITE_SINCE] = "SELECT verdict, since FROM sites WHERE id = ?1",
    [ST_MAINT_GET] = "SELECT 1 FROM maintenance WHERE scope = ?1 AND id = ?2",
    [ST_MAINT_PUT] = "INSERT INTO maintenance(scope, id, reason, owner, since, expires)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(scope, id) DO UPDATE SET"
                     " reason = excluded.reason, owner = excluded.owner,"
                     " expires = excluded.expires",
    [ST_MAINT_DEL] = "DELETE FROM maintenance WHERE scope = ?1 AND id = ?2",
    [ST_MAINT_EXPIRED] = "SELECT scope, id, owner, reason FROM maintenance WHERE expires <= ?1"
                         " ORDER BY scope, id",
    /* automatic moves since the window's start and since the group's last release (?3) */
    [ST_AUTO_OPS] = "SELECT COUNT(*) FROM operations WHERE grp = ?1 AND operator = ''"
                    " AND kind IN ('failover', 'failback') AND created > ?2 AND id > ?3",
    [ST_OFF_PENDING] = "SELECT target FROM steps WHERE op = ?1 AND action = 'deactivate'"
                       " AND status <> 'done'",
    [ST_OP_BY_REQUEST] = "SELECT id FROM operations WHERE request = ?1 AND request <> ''",
    [ST_EVENT_ADD] = "INSERT INTO events(ts, kind, grp, summary) VALUES(?1, ?2, ?3, ?4)",
    [ST_EVENT_EXISTS] = "SELECT COUNT(*) FROM events WHERE id = ?1",
    [ST_DELIVERY_ADD] = "INSERT OR IGNORE INTO deliveries(event, channel, ts) VALUES(?1, ?2, ?3)",
    /* entry time never runs backwards, so the events older than a time are an id prefix; the
     * newest stays, so that its id is never handed out again */
    [ST_EVENT_PRUNE_LAST] = "SELECT COALESCE(MAX(id), 0) FROM events"
                            " WHERE ts < (SELECT MIN(ts) FROM history)"
                            " AND id < (SELECT MAX(id) FROM events)",
    [ST_EVENT_PRUNE] = "DELETE FROM events WHERE id <= ?1",
    [ST_DELIVERY_PRUNE] = "DELETE FROM deliveries WHERE event <= ?1",
};

void fsm_set_msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

int fsm_target_index(const struct dw_group *g, const char *id)
{
    for (int i = 0; i < g->n_targets; i++) {
        if (strcmp(g->targets[i].id, id) == 0)
            return i;
    }
    return -1;
}

int fsm_site_index(const struct dw_config *cfg, const char *id)
{
    for (int i = 0; i < cfg->n_sites; i++) {
        if (strcmp(cfg->sites[i].id, id) == 0)
            return i;
    }
    return -1;
}

const char *fsm_col_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    return t ? (const char *)t : "";
}

enum dw_health fsm_health_of(const char *s)
{
    enum dw_health h = DW_UNKNOWN;

    if (dw_health_parse(s, &h) != 0)
        h = DW_UNKNOWN;
    return h;
}

void fsm_finalize_all(sqlite3_stmt **st)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

/* Preparing every statement also proves that a restored database has the expected tables. */
int fsm_prepare_all(sqlite3 *db, sqlite3_stmt **st, char *errmsg, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) !=
            SQLITE_OK) {
            fsm_set_msg(errmsg, errlen, "prepare: %s", sqlite3_errmsg(db));
            fsm_finalize_all(st);
            return -1;
        }
    }
    return 0;
}

/* A cached statement, reset and unbound, ready for new bindings. */
sqlite3_stmt *fsm_stmt(struct dw_fsm *f, enum stmt_id id)
{
    sqlite3_stmt *s = f->st[id];

    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement expected to return no rows; leaves it reset. */
int fsm_run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int fsm_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : -1;
}

int fsm_meta_get(struct dw_fsm *f, const char *key, int64_t *out)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_META_GET);
    int rc = -1;

    fsm_bind_text(s, 1, key);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

int fsm_meta_add(struct dw_fsm *f, const char *key, int64_t delta)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_META_ADD);

    fsm_bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, delta);
    return fsm_run(s);
}

int fsm_meta_set(struct dw_fsm *f, const char *key, int64_t value)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_META_SET);

    fsm_bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, value);
    return fsm_run(s);
}

int fsm_history(struct dw_fsm *f, int64_t ts, const char *kind, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    sqlite3_stmt *s;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    s = fsm_stmt(f, ST_HISTORY_ADD);
    sqlite3_bind_int64(s, 1, ts);
    fsm_bind_text(s, 2, kind);
    fsm_bind_text(s, 3, detail);
    if (fsm_run(s) != 0)
        return -1;
    if (f->record_cb != NULL && !f->in_event)
        f->record_cb(f->record_data,
                     &(struct dw_fsm_record){.ts = ts, .kind = kind, .detail = detail});
    return 0;
}

void dw_fsm_on_record(struct dw_fsm *f, dw_fsm_record_cb cb, void *data)
{
    f->record_cb = cb;
    f->record_data = data;
}

/* Rows one entry may delete: a long backlog (a lowered limit, a restored old snapshot) drains
 * over many entries instead of one long delete on the loop. */
#define HISTORY_PRUNE_BATCH 256
#define MS_PER_DAY 86400000LL

/* Retention, relative to the entry's time and never a clock, so every node deletes the same
 * rows at the same index. Only the oldest rows go, in id order: older than the retention, or
 * beyond the newest history_max_rows (ids stay contiguous because only a prefix is deleted).
 * 0 in either limit disables it. */
int fsm_history_prune(struct dw_fsm *f, int64_t ts)
{
    int64_t days = f->cfg->cluster.history_retention_days;
    int64_t max_rows = f->cfg->cluster.history_max_rows;
    int64_t newest = 0, last = 0;
    sqlite3_stmt *s;
    int rc;

    if (days == 0 && max_rows == 0)
        return 0;
    s = fsm_stmt(f, ST_HISTORY_NEWEST);
    if (sqlite3_step(s) == SQLITE_ROW)
        newest = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    s = fsm_stmt(f, ST_HISTORY_OLDEST);
    sqlite3_bind_int(s, 1, HISTORY_PRUNE_BATCH);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        bool too_many = max_rows > 0 && newest - id >= max_rows;
        bool too_old = days > 0 && sqlite3_column_int64(s, 1) < ts - days * MS_PER_DAY;

        if (!too_many && !too_old)
            break;
        last = id;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    if (last == 0)
        return 0;
    s = fsm_stmt(f, ST_HISTORY_PRUNE);
    sqlite3_bind_int64(s, 1, last);
    return fsm_run(s) == 0 ? fsm_events_prune(f) : -1;
}

void fsm_load_counters(struct dw_fsm *f)
{
    int64_t v;

    f->applied = fsm_meta_get(f, "applied", &v) == 0 ? (uint64_t)v : 0;
    f->rejected = fsm_meta_get(f, "rejected", &v) == 0 ? (uint64_t)v : 0;
    f->last_ts = fsm_meta_get(f, "last_ts", &v) == 0 ? v : 0;
    f->last_stamp = fsm_meta_get(f, "last_stamp", &v) == 0 ? v : f->last_ts;
}

/* The site's verdict and its two signals (NULL for the ones not wanted). */
int fsm_site_row(struct dw_fsm *f, const char *site, enum dw_health *verdict,
                 enum dw_health *probe, enum dw_health *cloud)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_SITE_GET);
    int rc = -1;

    fsm_bind_text(s, 1, site);
    if (sqlite3_step(s) == SQLITE_ROW) {
        if (verdict != NULL)
            *verdict = fsm_health_of(fsm_col_text(s, 0));
        if (probe != NULL)
            *probe = fsm_health_of(fsm_col_text(s, 1));
        if (cloud != NULL)
            *cloud = fsm_health_of(fsm_col_text(s, 2));
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

int fsm_site_verdict_by_id(struct dw_fsm *f, const char *site, enum dw_health *out)
{
    return fsm_site_row(f, site, out, NULL, NULL);
}

int fsm_group_get(struct dw_fsm *f, const char *group, int *active, bool *hold)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_GET);
    int rc = -1;

    fsm_bind_text(s, 1, group);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *active = sqlite3_column_int(s, 0);
        *hold = sqlite3_column_int(s, 1) != 0;
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

int fsm_group_row(struct dw_fsm *f, const char *group, struct group_row *out)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_ROW);
    int rc = -1;

    memset(out, 0, sizeof *out);
    fsm_bind_text(s, 1, group);
    if (sqlite3_step(s) == SQLITE_ROW) {
        out->active = sqlite3_column_int(s, 0);
        out->hold = sqlite3_column_int(s, 1) != 0;
        snprintf(out->hold_reason, sizeof out->hold_reason, "%s", fsm_col_text(s, 2));
        out->pinned = sqlite3_column_int(s, 3) != 0;
        out->fb_failures = sqlite3_column_int(s, 4);
        out->fb_retry_at = sqlite3_column_int64(s, 5);
        out->resync = sqlite3_column_int64(s, 6);
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

int64_t fsm_next_op_id(struct dw_fsm *f)
{
    sqlite3_stmt *s;
    int64_t id = 0;

    if (sqlite3_prepare_v2(f->db, "SELECT COALESCE(MAX(id), 0) + 1 FROM operations", -1, &s,
                           NULL) != SQLITE_OK)
        return INT64_MAX; /* never reached: nothing is swept, which only costs a read */
    if (sqlite3_step(s) == SQLITE_ROW)
        id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return id;
}

/* reason "" lifts the hold. */
int fsm_group_hold(struct dw_fsm *f, const char *group, const char *reason)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_SET_HOLD_REASON);

    fsm_bind_text(s, 1, group);
    fsm_bind_text(s, 2, reason);
    return fsm_run(s);
}

int fsm_in_maintenance(struct dw_fsm *f, const char *scope, const char *id)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_MAINT_GET);
    int rc;

    fsm_bind_text(s, 1, scope);
    fsm_bind_text(s, 2, id);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* A siteless target (BYOC Cloud) is always up. */
int fsm_target_health(struct dw_fsm *f, const struct dw_target *t, enum dw_health *out)
{
    if (t->site < 0 || t->site >= f->cfg->n_sites) {
        *out = DW_UP;
        return 0;
    }
    return fsm_site_verdict_by_id(f, f->cfg->sites[t->site].id, out);
}

/* Reads one operation row (columns as in ST_OP_GET) from an executed statement and resets it:
 * 1 found, 0 none, -1 error. An unknown kind or status (never written) reads as a finished
 * cleanup, which nothing acts on. */
static int op_read(sqlite3_stmt *s, struct op_row *row)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        row->id = sqlite3_column_int64(s, 0);
        snprintf(row->grp, sizeof row->grp, "%s", fsm_col_text(s, 1));
        if (dw_op_kind_parse(fsm_col_text(s, 2), &row->kind) != 0)
            row->kind = DW_OP_CLEANUP;
        snprintf(row->from, sizeof row->from, "%s", fsm_col_text(s, 3));
        snprintf(row->to, sizeof row->to, "%s", fsm_col_text(s, 4));
        if (dw_op_status_parse(fsm_col_text(s, 5), &row->status) != 0)
            row->status = DW_OP_DONE;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int fsm_op_get(struct dw_fsm *f, int64_t op, struct op_row *row)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_GET);

    sqlite3_bind_int64(s, 1, op);
    return op_read(s, row);
}

/* The group's most recent operation. */
int fsm_op_latest(struct dw_fsm *f, const char *group, struct op_row *row)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_LATEST);

    fsm_bind_text(s, 1, group);
    return op_read(s, row);
}

/* The first step of an operation that is not DONE: 1 found, 0 none, -1 error. */
int fsm_step_next(struct dw_fsm *f, int64_t op, struct step_row *row)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_STEP_NEXT);
    int rc;

    sqlite3_bind_int64(s, 1, op);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        row->seq = sqlite3_column_int(s, 0);
        if (dw_step_action_parse(fsm_col_text(s, 1), &row->action) != 0)
            row->action = DW_ACT_DEACTIVATE;
        snprintf(row->target, sizeof row->target, "%s", fsm_col_text(s, 2));
        if (dw_step_status_parse(fsm_col_text(s, 3), &row->status) != 0)
            row->status = DW_STEP_PENDING;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Status of the operation's first step with this action, PENDING when it has none. */
int fsm_step_status_of(struct dw_fsm *f, int64_t op, enum dw_step_action a,
                       enum dw_step_status *out)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_STEP_BY_ACTION);
    int rc;

    sqlite3_bind_int64(s, 1, op);
    fsm_bind_text(s, 2, dw_step_action_name(a));
    rc = sqlite3_step(s);
    *out = DW_STEP_PENDING;
    if (rc == SQLITE_ROW && dw_step_status_parse(fsm_col_text(s, 0), out) != 0)
        *out = DW_STEP_PENDING;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Reads n integer columns of the one row a bound statement returns, and resets it. */
int fsm_int_row(sqlite3_stmt *s, int64_t *out, int n)
{
    int rc = sqlite3_step(s);

    for (int i = 0; rc == SQLITE_ROW && i < n; i++)
        out[i] = sqlite3_column_int64(s, i);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

int fsm_scalar(sqlite3_stmt *s, int64_t *out)
{
    return fsm_int_row(s, out, 1);
}

int fsm_group_set(struct dw_fsm *f, enum stmt_id id, const char *group, int value)
{
    sqlite3_stmt *s = fsm_stmt(f, id);

    fsm_bind_text(s, 1, group);
    sqlite3_bind_int(s, 2, value);
    return fsm_run(s);
}

int fsm_cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
