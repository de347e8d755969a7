#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/cloudview.h"
#include "drwatch/detector.h"
#include "drwatch/fsm.h"
#include "drwatch/verdict.h"

#define FSM_SCHEMA_VERSION 2
#define JSON_INT_MAX 9007199254740992.0 /* 2^53 */

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE nodes(id INTEGER PRIMARY KEY, last_refresh INTEGER NOT NULL,"
    " tilt INTEGER NOT NULL);"
    "CREATE TABLE observations(node INTEGER NOT NULL, site TEXT NOT NULL, state TEXT NOT NULL,"
    " ts INTEGER NOT NULL, PRIMARY KEY(node, site));"
    "CREATE TABLE sites(id TEXT PRIMARY KEY, verdict TEXT NOT NULL, since INTEGER NOT NULL,"
    " probe_verdict TEXT NOT NULL DEFAULT 'unknown', cloud_verdict TEXT NOT NULL DEFAULT 'unknown');"
    "CREATE TABLE cloud(edge TEXT PRIMARY KEY, state TEXT NOT NULL, ts INTEGER NOT NULL);"
    "CREATE TABLE groups(id TEXT PRIMARY KEY, active INTEGER NOT NULL, hold INTEGER NOT NULL);"
    "CREATE TABLE operations(id INTEGER PRIMARY KEY, grp TEXT NOT NULL, kind TEXT NOT NULL,"
    " from_target TEXT NOT NULL, to_target TEXT NOT NULL, status TEXT NOT NULL,"
    " created INTEGER NOT NULL, finished INTEGER, reason TEXT NOT NULL);"
    "CREATE INDEX operations_by_group ON operations(grp, status);"
    "CREATE TABLE steps(op INTEGER NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL,"
    " target TEXT NOT NULL, status TEXT NOT NULL, started INTEGER, finished INTEGER, detail TEXT,"
    " PRIMARY KEY(op, seq));"
    "CREATE TABLE history(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,"
    " detail TEXT NOT NULL);"
    "INSERT INTO meta(key, value) VALUES('schema', 2), ('applied', 0), ('rejected', 0),"
    " ('last_ts', 0), ('leader_epoch', 0), ('last_stamp', 0);";

/* Dump order and each table's primary-key ordering. */
static const struct {
    const char *table;
    const char *order;
} dump_tables[] = {
    {"meta", "key"},
    {"nodes", "id"},
    {"observations", "node, site"},
    {"sites", "id"},
    {"cloud", "edge"},
    {"groups", "id"},
    {"operations", "id"},
    {"steps", "op, seq"},
    {"history", "id"},
};

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
    ST_COUNT
};

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
                     " created, finished, reason)"
                     " VALUES((SELECT COALESCE(MAX(id), 0) + 1 FROM operations),"
                     " ?1, ?2, ?3, ?4, 'running', ?5, NULL, ?6)",
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
                      " AND kind IN ('failover', 'cleanup'))",
    [ST_HISTORY_NEWEST] = "SELECT COALESCE(MAX(id), 0) FROM history",
    [ST_HISTORY_OLDEST] = "SELECT id, ts FROM history ORDER BY id LIMIT ?1",
    [ST_HISTORY_PRUNE] = "DELETE FROM history WHERE id <= ?1",
};

struct dw_fsm {
    sqlite3 *db;
    const struct dw_config *cfg;
    char digest[17];
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
};

/* Outcome of applying one entry inside its transaction. */
enum { APPLY_OK = 0, APPLY_REJECT = 1, APPLY_SQL_ERROR = -1 };

/* ---- small helpers ------------------------------------------------------------------------ */

static void set_msg(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int group_index(const struct dw_config *cfg, const char *id)
{
    for (int i = 0; i < cfg->n_groups; i++) {
        if (strcmp(cfg->groups[i].id, id) == 0)
            return i;
    }
    return -1;
}

static int target_index(const struct dw_group *g, const char *id)
{
    for (int i = 0; i < g->n_targets; i++) {
        if (strcmp(g->targets[i].id, id) == 0)
            return i;
    }
    return -1;
}

static int site_index(const struct dw_config *cfg, const char *id)
{
    for (int i = 0; i < cfg->n_sites; i++) {
        if (strcmp(cfg->sites[i].id, id) == 0)
            return i;
    }
    return -1;
}

static bool is_member(const struct dw_config *cfg, int64_t id)
{
    for (int i = 0; i < cfg->n_members; i++) {
        if ((int64_t)cfg->members[i].id == id)
            return true;
    }
    return false;
}

static bool json_int(const cJSON *obj, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;

    if (!cJSON_IsNumber(v))
        return false;
    d = v->valuedouble;
    if (!isfinite(d) || d < -JSON_INT_MAX || d > JSON_INT_MAX || d != (double)(int64_t)d)
        return false;
    *out = (int64_t)d;
    return true;
}

static const char *col_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    return t ? (const char *)t : "";
}

static enum dw_health health_of(const char *s)
{
    enum dw_health h = DW_UNKNOWN;

    if (dw_health_parse(s, &h) != 0)
        h = DW_UNKNOWN;
    return h;
}

/* ---- statements ----------------------------------------------------------------------------- */

static void finalize_all(sqlite3_stmt **st)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

/* Preparing every statement also proves that a restored database has the expected tables. */
static int prepare_all(sqlite3 *db, sqlite3_stmt **st, char *errmsg, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) !=
            SQLITE_OK) {
            set_msg(errmsg, errlen, "prepare: %s", sqlite3_errmsg(db));
            finalize_all(st);
            return -1;
        }
    }
    return 0;
}

/* A cached statement, reset and unbound, ready for new bindings. */
static sqlite3_stmt *stmt(struct dw_fsm *f, enum stmt_id id)
{
    sqlite3_stmt *s = f->st[id];

    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement expected to return no rows; leaves it reset. */
static int run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : -1;
}

/* ---- meta and history ----------------------------------------------------------------------- */

static int meta_get(struct dw_fsm *f, const char *key, int64_t *out)
{
    sqlite3_stmt *s = stmt(f, ST_META_GET);
    int rc = -1;

    bind_text(s, 1, key);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

static int meta_add(struct dw_fsm *f, const char *key, int64_t delta)
{
    sqlite3_stmt *s = stmt(f, ST_META_ADD);

    bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, delta);
    return run(s);
}

static int meta_set(struct dw_fsm *f, const char *key, int64_t value)
{
    sqlite3_stmt *s = stmt(f, ST_META_SET);

    bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, value);
    return run(s);
}

static int history(struct dw_fsm *f, int64_t ts, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int history(struct dw_fsm *f, int64_t ts, const char *kind, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    sqlite3_stmt *s;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    s = stmt(f, ST_HISTORY_ADD);
    sqlite3_bind_int64(s, 1, ts);
    bind_text(s, 2, kind);
    bind_text(s, 3, detail);
    return run(s);
}

/* Rows one entry may delete: a long backlog (a lowered limit, a restored old snapshot) drains
 * over many entries instead of one long delete on the loop. */
#define HISTORY_PRUNE_BATCH 256
#define MS_PER_DAY 86400000LL

/* Retention, relative to the entry's time and never a clock, so every node deletes the same
 * rows at the same index. Only the oldest rows go, in id order: older than the retention, or
 * beyond the newest history_max_rows (ids stay contiguous because only a prefix is deleted).
 * 0 in either limit disables it. */
static int history_prune(struct dw_fsm *f, int64_t ts)
{
    int64_t days = f->cfg->cluster.history_retention_days;
    int64_t max_rows = f->cfg->cluster.history_max_rows;
    int64_t newest = 0, last = 0;
    sqlite3_stmt *s;
    int rc;

    if (days == 0 && max_rows == 0)
        return 0;
    s = stmt(f, ST_HISTORY_NEWEST);
    if (sqlite3_step(s) == SQLITE_ROW)
        newest = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    s = stmt(f, ST_HISTORY_OLDEST);
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
    s = stmt(f, ST_HISTORY_PRUNE);
    sqlite3_bind_int64(s, 1, last);
    return run(s);
}

static void load_counters(struct dw_fsm *f)
{
    int64_t v;

    f->applied = meta_get(f, "applied", &v) == 0 ? (uint64_t)v : 0;
    f->rejected = meta_get(f, "rejected", &v) == 0 ? (uint64_t)v : 0;
    f->last_ts = meta_get(f, "last_ts", &v) == 0 ? v : 0;
    f->last_stamp = meta_get(f, "last_stamp", &v) == 0 ? v : f->last_ts;
}

/* ---- reads shared by apply and the views ---------------------------------------------------- */

/* The site's verdict and its two signals (NULL for the ones not wanted). */
static int site_row(struct dw_fsm *f, const char *site, enum dw_health *verdict,
                    enum dw_health *probe, enum dw_health *cloud)
{
    sqlite3_stmt *s = stmt(f, ST_SITE_GET);
    int rc = -1;

    bind_text(s, 1, site);
    if (sqlite3_step(s) == SQLITE_ROW) {
        if (verdict != NULL)
            *verdict = health_of(col_text(s, 0));
        if (probe != NULL)
            *probe = health_of(col_text(s, 1));
        if (cloud != NULL)
            *cloud = health_of(col_text(s, 2));
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

static int site_verdict_by_id(struct dw_fsm *f, const char *site, enum dw_health *out)
{
    return site_row(f, site, out, NULL, NULL);
}

static int group_get(struct dw_fsm *f, const char *group, int *active, bool *hold)
{
    sqlite3_stmt *s = stmt(f, ST_GROUP_GET);
    int rc = -1;

    bind_text(s, 1, group);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *active = sqlite3_column_int(s, 0);
        *hold = sqlite3_column_int(s, 1) != 0;
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

/* A siteless target (BYOC Cloud) is always up. */
static int target_health(struct dw_fsm *f, const struct dw_target *t, enum dw_health *out)
{
    if (t->site < 0 || t->site >= f->cfg->n_sites) {
        *out = DW_UP;
        return 0;
    }
    return site_verdict_by_id(f, f->cfg->sites[t->site].id, out);
}

/* Fills one observation slot per configured member for a site. */
static int load_observations(struct dw_fsm *f, const char *site, struct dw_observation *obs)
{
    const struct dw_config *cfg = f->cfg;

    for (int i = 0; i < cfg->n_members && i < DW_MAX_MEMBERS; i++) {
        sqlite3_stmt *s = stmt(f, ST_OBS_GET);
        int rc;

        memset(&obs[i], 0, sizeof obs[i]);
        sqlite3_bind_int64(s, 1, (sqlite3_int64)cfg->members[i].id);
        bind_text(s, 2, site);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            obs[i].present = true;
            obs[i].state = health_of(col_text(s, 0));
            obs[i].refreshed_ms = sqlite3_column_int64(s, 1);
            obs[i].tilt = sqlite3_column_int(s, 2) != 0;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return -1;
    }
    return 0;
}

/* ---- entry types ---------------------------------------------------------------------------- */

static int apply_observe(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    int64_t node;
    const cJSON *digest = cJSON_GetObjectItemCaseSensitive(e, "digest");
    const cJSON *tilt = cJSON_GetObjectItemCaseSensitive(e, "tilt");
    const cJSON *sites = cJSON_GetObjectItemCaseSensitive(e, "sites");
    const cJSON *it;
    sqlite3_stmt *s;

    if (!json_int(e, "node", &node) || !cJSON_IsString(digest) || !cJSON_IsBool(tilt) ||
        !cJSON_IsObject(sites)) {
        set_msg(why, whylen, "malformed observe entry");
        return APPLY_REJECT;
    }
    if (!is_member(f->cfg, node)) {
        set_msg(why, whylen, "observation from node %" PRId64 ", not a member", node);
        return APPLY_REJECT;
    }
    if (strcmp(digest->valuestring, f->digest) != 0) {
        set_msg(why, whylen, "topology mismatch from node %" PRId64, node);
        return APPLY_REJECT;
    }
    cJSON_ArrayForEach(it, sites) {
        enum dw_health h;

        if (!cJSON_IsString(it) || dw_health_parse(it->valuestring, &h) != 0) {
            set_msg(why, whylen, "observe from node %" PRId64 ": bad state for site %s", node,
                    it->string ? it->string : "?");
            return APPLY_REJECT;
        }
    }

    s = stmt(f, ST_NODE_UPSERT);
    sqlite3_bind_int64(s, 1, node);
    sqlite3_bind_int64(s, 2, ts);
    sqlite3_bind_int(s, 3, cJSON_IsTrue(tilt));
    if (run(s) != 0)
        return APPLY_SQL_ERROR;

    cJSON_ArrayForEach(it, sites) {
        /* a site this node's config lacks cannot be decided here; the digest makes it rare */
        if (it->string == NULL || site_index(f->cfg, it->string) < 0)
            continue;
        s = stmt(f, ST_OBS_UPSERT);
        sqlite3_bind_int64(s, 1, node);
        bind_text(s, 2, it->string);
        bind_text(s, 3, it->valuestring);
        sqlite3_bind_int64(s, 4, ts);
        if (run(s) != 0)
            return APPLY_SQL_ERROR;
    }
    return APPLY_OK;
}

/* Operations and steps as the FSM reasons about them; the names are what the database and the
 * views show. */
enum op_kind { OP_FAILOVER, OP_ROLLBACK, OP_CLEANUP, OP_KIND_COUNT };
enum op_status { OP_RUNNING, OP_DONE, OP_FAILED, OP_ABORTED, OP_STATUS_COUNT };
enum step_action { ACT_ACTIVATE, ACT_VERIFY, ACT_DEACTIVATE, ACT_COUNT };

static const char *const op_kind_names[OP_KIND_COUNT] = {"failover", "rollback", "cleanup"};
static const char *const op_status_names[OP_STATUS_COUNT] = {"running", "done", "failed",
                                                             "aborted"};
static const char *const action_names[ACT_COUNT] = {"activate", "verify", "deactivate"};

/* Index of name in names[0..n), or fallback. */
static int name_index(const char *const *names, int n, const char *name, int fallback)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    return fallback;
}

struct op_row {
    int64_t id;
    char grp[DW_ID_MAX];
    enum op_kind kind;
    char from[DW_ID_MAX]; /* "" when no target carried calls */
    char to[DW_ID_MAX];   /* "" for a cleanup that leaves nothing in service */
    enum op_status status;
};

/* Reads one operation row (columns as in ST_OP_GET) from an executed statement and resets it:
 * 1 found, 0 none, -1 error. An unknown kind or status (never written) reads as a finished
 * cleanup, which nothing acts on. */
static int op_read(sqlite3_stmt *s, struct op_row *row)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        row->id = sqlite3_column_int64(s, 0);
        snprintf(row->grp, sizeof row->grp, "%s", col_text(s, 1));
        row->kind = name_index(op_kind_names, OP_KIND_COUNT, col_text(s, 2), OP_CLEANUP);
        snprintf(row->from, sizeof row->from, "%s", col_text(s, 3));
        snprintf(row->to, sizeof row->to, "%s", col_text(s, 4));
        row->status = name_index(op_status_names, OP_STATUS_COUNT, col_text(s, 5), OP_DONE);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int op_get(struct dw_fsm *f, int64_t op, struct op_row *row)
{
    sqlite3_stmt *s = stmt(f, ST_OP_GET);

    sqlite3_bind_int64(s, 1, op);
    return op_read(s, row);
}

/* The group's most recent operation. */
static int op_latest(struct dw_fsm *f, const char *group, struct op_row *row)
{
    sqlite3_stmt *s = stmt(f, ST_OP_LATEST);

    bind_text(s, 1, group);
    return op_read(s, row);
}

struct step_row {
    int seq;
    enum step_action action;
    char target[DW_ID_MAX];
    enum dw_step_status status;
};

/* The first step of an operation that is not DONE: 1 found, 0 none, -1 error. */
static int step_next(struct dw_fsm *f, int64_t op, struct step_row *row)
{
    sqlite3_stmt *s = stmt(f, ST_STEP_NEXT);
    int rc;

    sqlite3_bind_int64(s, 1, op);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        row->seq = sqlite3_column_int(s, 0);
        row->action = name_index(action_names, ACT_COUNT, col_text(s, 1), ACT_DEACTIVATE);
        snprintf(row->target, sizeof row->target, "%s", col_text(s, 2));
        if (dw_step_status_parse(col_text(s, 3), &row->status) != 0)
            row->status = DW_STEP_PENDING;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Status of the operation's first step with this action, PENDING when it has none. */
static int step_status_of(struct dw_fsm *f, int64_t op, enum step_action a,
                          enum dw_step_status *out)
{
    sqlite3_stmt *s = stmt(f, ST_STEP_BY_ACTION);
    int rc;

    sqlite3_bind_int64(s, 1, op);
    bind_text(s, 2, action_names[a]);
    rc = sqlite3_step(s);
    *out = DW_STEP_PENDING;
    if (rc == SQLITE_ROW && dw_step_status_parse(col_text(s, 0), out) != 0)
        *out = DW_STEP_PENDING;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Reads n integer columns of the one row a bound statement returns, and resets it. */
static int int_row(sqlite3_stmt *s, int64_t *out, int n)
{
    int rc = sqlite3_step(s);

    for (int i = 0; rc == SQLITE_ROW && i < n; i++)
        out[i] = sqlite3_column_int64(s, i);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int scalar(sqlite3_stmt *s, int64_t *out)
{
    return int_row(s, out, 1);
}

static int finish_operation(struct dw_fsm *f, int64_t op, enum op_status status, int64_t ts)
{
    sqlite3_stmt *s = stmt(f, ST_OP_FINISH);

    sqlite3_bind_int64(s, 1, op);
    bind_text(s, 2, op_status_names[status]);
    sqlite3_bind_int64(s, 3, ts);
    return run(s);
}

static int group_set(struct dw_fsm *f, enum stmt_id id, const char *group, int value)
{
    sqlite3_stmt *s = stmt(f, id);

    bind_text(s, 1, group);
    sqlite3_bind_int(s, 2, value);
    return run(s);
}

/* Index of a target id in a group, -1 for "" (none) or an unknown id. */
static int target_or_none(const struct dw_group *g, const char *id)
{
    return id[0] == '\0' ? -1 : target_index(g, id);
}

static const char *shown(const char *target_id)
{
    return target_id[0] != '\0' ? target_id : "(none)";
}

/* What carries calls once a failover stops short of DONE: its destination once verified (the
 * source may already be switched off), else its source, which it had not touched yet. */
static int carrier_after(struct dw_fsm *f, const struct dw_group *g, const struct op_row *o,
                         int *carrier)
{
    enum dw_step_status verified;

    if (step_status_of(f, o->id, ACT_VERIFY, &verified) != 0)
        return -1;
    *carrier = target_or_none(g, verified == DW_STEP_DONE ? o->to : o->from);
    return 0;
}

/* Ends a running operation short of DONE; the group's active target then says what the journal
 * left carrying calls. */
static int end_operation(struct dw_fsm *f, const struct dw_group *g, const struct op_row *o,
                         enum op_status status, int64_t ts)
{
    int carrier;

    if (finish_operation(f, o->id, status, ts) != 0)
        return -1;
    if (o->kind != OP_FAILOVER)
        return 0; /* it only switched targets off, never the carrier */
    if (carrier_after(f, g, o, &carrier) != 0)
        return -1;
    return group_set(f, ST_GROUP_SET_ACTIVE, g->id, carrier);
}

/* The last step is DONE: the group now runs on the operation's target (none after a cleanup
 * that found no target up). */
static int complete_operation(struct dw_fsm *f, const struct op_row *o, int64_t ts, char *why,
                              size_t whylen)
{
    int g = group_index(f->cfg, o->grp);
    int t = g >= 0 ? target_or_none(&f->cfg->groups[g], o->to) : -1;

    if (g < 0 || (t < 0 && o->to[0] != '\0')) {
        set_msg(why, whylen, "operation %" PRId64 ": target %s of group %s is not configured",
                o->id, o->to, o->grp);
        return APPLY_REJECT;
    }
    if (finish_operation(f, o->id, OP_DONE, ts) != 0 ||
        group_set(f, ST_GROUP_SET_ACTIVE, o->grp, t) != 0 ||
        history(f, ts, "operation", "%s: %s #%" PRId64 " %s -> %s done", o->grp,
                op_kind_names[o->kind], o->id, shown(o->from), shown(o->to)) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

/* A failed step ends the operation and holds the group: no discretionary move until an operator
 * releases it. The planner still undoes a failed activation and still moves calls off a target
 * voted DOWN (plan_group). */
static int fail_operation(struct dw_fsm *f, const struct op_row *o, const struct step_row *st,
                          int64_t ts, char *why, size_t whylen)
{
    int g = group_index(f->cfg, o->grp);

    if (g < 0) {
        set_msg(why, whylen, "operation %" PRId64 ": group %s is not configured", o->id, o->grp);
        return APPLY_REJECT;
    }
    if (end_operation(f, &f->cfg->groups[g], o, OP_FAILED, ts) != 0 ||
        group_set(f, ST_GROUP_SET_HOLD, o->grp, 1) != 0 ||
        history(f, ts, "operation",
                "%s: %s #%" PRId64 " %s -> %s failed at step %d %s %s; group held", o->grp,
                op_kind_names[o->kind], o->id, shown(o->from), shown(o->to), st->seq,
                action_names[st->action], st->target) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

static bool step_transition_ok(enum dw_step_status from, enum dw_step_status to)
{
    return (from == DW_STEP_PENDING && to == DW_STEP_STARTED) ||
           (from == DW_STEP_STARTED && (to == DW_STEP_DONE || to == DW_STEP_FAILED));
}

static int apply_step(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    int64_t op, seq;
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(e, "detail");
    enum dw_step_status to;
    struct op_row o;
    struct step_row st;
    sqlite3_stmt *s;
    int rc;

    if (!json_int(e, "op", &op) || !json_int(e, "seq", &seq) || !cJSON_IsString(status) ||
        dw_step_status_parse(status->valuestring, &to) != 0 ||
        (detail != NULL && !cJSON_IsString(detail))) {
        set_msg(why, whylen, "malformed step entry");
        return APPLY_REJECT;
    }
    rc = op_get(f, op, &o);
    if (rc < 0)
        return APPLY_SQL_ERROR;
    if (rc == 0) {
        set_msg(why, whylen, "step for unknown operation %" PRId64, op);
        return APPLY_REJECT;
    }
    if (o.status != OP_RUNNING) {
        set_msg(why, whylen, "step for operation %" PRId64 ", which is %s", op,
                op_status_names[o.status]);
        return APPLY_REJECT;
    }
    rc = step_next(f, op, &st);
    if (rc < 0)
        return APPLY_SQL_ERROR;
    if (rc == 0 || seq < st.seq) {
        set_msg(why, whylen, "operation %" PRId64 ": step %" PRId64 " is already done", op, seq);
        return APPLY_REJECT;
    }
    if (seq != st.seq) {
        set_msg(why, whylen, "operation %" PRId64 ": step %" PRId64 " is not the next step (%d is)",
                op, seq, st.seq);
        return APPLY_REJECT;
    }
    /* this check makes a retried or resumed step harmless: a second "done" is refused */
    if (!step_transition_ok(st.status, to)) {
        set_msg(why, whylen, "operation %" PRId64 " step %d: %s -> %s not allowed", op, st.seq,
                dw_step_status_name(st.status), dw_step_status_name(to));
        return APPLY_REJECT;
    }

    if (to == DW_STEP_STARTED) {
        s = stmt(f, ST_STEP_START);
        sqlite3_bind_int64(s, 1, op);
        sqlite3_bind_int(s, 2, st.seq);
        sqlite3_bind_int64(s, 3, ts);
    } else {
        s = stmt(f, ST_STEP_FINISH);
        sqlite3_bind_int64(s, 1, op);
        sqlite3_bind_int(s, 2, st.seq);
        bind_text(s, 3, dw_step_status_name(to));
        sqlite3_bind_int64(s, 4, ts);
        if (detail != NULL)
            bind_text(s, 5, detail->valuestring);
    }
    if (run(s) != 0)
        return APPLY_SQL_ERROR;
    if (history(f, ts, "step", "%s: #%" PRId64 " step %d %s %s: %s%s%s", o.grp, op, st.seq,
                action_names[st.action], st.target, dw_step_status_name(to), detail ? " - " : "",
                detail ? detail->valuestring : "") != 0)
        return APPLY_SQL_ERROR;

    if (to == DW_STEP_FAILED)
        return fail_operation(f, &o, &st, ts, why, whylen);
    if (to == DW_STEP_DONE) {
        rc = step_next(f, op, &st);
        if (rc < 0)
            return APPLY_SQL_ERROR;
        if (rc == 0)
            return complete_operation(f, &o, ts, why, whylen);
    }
    return APPLY_OK;
}

static int apply_leader(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    int64_t node;

    if (!json_int(e, "node", &node) || node < 1) {
        set_msg(why, whylen, "malformed leader entry");
        return APPLY_REJECT;
    }
    if (meta_add(f, "leader_epoch", 1) != 0 ||
        history(f, ts, "leader", "node %" PRId64 " took office", node) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

static void released_key(char *buf, size_t len, const char *group)
{
    snprintf(buf, len, "released:%s", group);
}

/* An operator lifts a group's hold. Targets that failed in the group's finished operations may
 * be chosen again (the release is recorded as the last operation id it covers). */
static int apply_hold(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(e, "group");
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(e, "action");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(e, "by_operator");
    char key[DW_ID_MAX + 16];
    int64_t last_op = 0;
    int active;
    bool hold;
    sqlite3_stmt *s;

    if (!cJSON_IsString(group) || !cJSON_IsString(action) ||
        strcmp(action->valuestring, "release") != 0 || !cJSON_IsString(by)) {
        set_msg(why, whylen, "malformed hold entry");
        return APPLY_REJECT;
    }
    if (group_index(f->cfg, group->valuestring) < 0) {
        set_msg(why, whylen, "hold release for unknown group \"%.64s\"", group->valuestring);
        return APPLY_REJECT;
    }
    if (group_get(f, group->valuestring, &active, &hold) != 0)
        return APPLY_SQL_ERROR;
    released_key(key, sizeof key, group->valuestring);
    s = stmt(f, ST_OP_MAX);
    bind_text(s, 1, group->valuestring);
    if (scalar(s, &last_op) != 0)
        return APPLY_SQL_ERROR;
    s = stmt(f, ST_META_PUT);
    bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, last_op);
    if (run(s) != 0 || group_set(f, ST_GROUP_SET_HOLD, group->valuestring, 0) != 0 ||
        history(f, ts, "hold", "%s: hold %s by %.64s", group->valuestring,
                hold ? "released" : "release (was not held)", by->valuestring) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool edge_configured(const struct dw_fsm *f, const char *id)
{
    return f->n_edge_ids > 0 && bsearch(&id, f->edge_ids, (size_t)f->n_edge_ids,
                                        sizeof *f->edge_ids, cmp_str_ptr) != NULL;
}

/* The leader's view of Edges as Genesys reports them. Edges absent from the entry keep their
 * last state and its time (a large view is split over several entries). */
static int apply_cloud(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const cJSON *digest = cJSON_GetObjectItemCaseSensitive(e, "digest");
    const cJSON *edges = cJSON_GetObjectItemCaseSensitive(e, "edges");
    const cJSON *it;

    if (!cJSON_IsString(digest) || !cJSON_IsObject(edges)) {
        set_msg(why, whylen, "malformed cloud entry");
        return APPLY_REJECT;
    }
    if (strcmp(digest->valuestring, f->digest) != 0) {
        set_msg(why, whylen, "topology mismatch in cloud entry");
        return APPLY_REJECT;
    }
    cJSON_ArrayForEach(it, edges) {
        enum dw_health h;

        if (!cJSON_IsString(it) || dw_cloud_report_parse(it->valuestring, &h, NULL) != 0) {
            set_msg(why, whylen, "cloud entry: bad state for Edge %s",
                    it->string ? it->string : "?");
            return APPLY_REJECT;
        }
    }
    cJSON_ArrayForEach(it, edges) {
        sqlite3_stmt *s;

        if (it->string == NULL || !edge_configured(f, it->string))
            continue;
        s = stmt(f, ST_CLOUD_UPSERT);
        bind_text(s, 1, it->string);
        bind_text(s, 2, it->valuestring);
        sqlite3_bind_int64(s, 3, ts);
        if (run(s) != 0)
            return APPLY_SQL_ERROR;
    }
    return APPLY_OK;
}

/* ---- after every entry: verdicts, then planning --------------------------------------------- */

static const char *combine_name(enum dw_combine c)
{
    switch (c) {
    case DW_COMBINE_AND_GENESYS:
        return "probes_and_genesys";
    case DW_COMBINE_OR_GENESYS:
        return "probes_or_genesys";
    case DW_COMBINE_PROBES:
        break;
    }
    return "probes";
}

static const char *rule_name(enum dw_site_rule r)
{
    switch (r) {
    case DW_RULE_ALL:
        return "all";
    case DW_RULE_AT_LEAST:
        return "at_least";
    case DW_RULE_ANY:
        break;
    }
    return "any";
}

/* One Edge's cloud state as of now: UNKNOWN without a genesys_edge_id, without a report, or
 * when the report is older than genesys.cloud_ttl_ms. *ts_out gets the report's time (0 none);
 * *disc_out whether a fresh DOWN comes only from unconnected trunks (the Edge not OFFLINE). */
static int cloud_edge_state(struct dw_fsm *f, const struct dw_edge *edge, int64_t now,
                            enum dw_health *out, int64_t *ts_out, bool *fresh_out, bool *disc_out)
{
    sqlite3_stmt *s;
    int rc;

    *out = DW_UNKNOWN;
    *ts_out = 0;
    *fresh_out = false;
    *disc_out = false;
    if (edge->genesys_edge_id[0] == '\0')
        return 0;
    s = stmt(f, ST_CLOUD_GET);
    bind_text(s, 1, edge->id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *ts_out = sqlite3_column_int64(s, 1);
        /* a report stamped later than now (a leader's clock ahead) counts as fresh */
        *fresh_out = now - *ts_out <= (int64_t)f->cfg->genesys.cloud_ttl_ms;
        if (*fresh_out && dw_cloud_report_parse(col_text(s, 0), out, disc_out) != 0)
            *out = DW_UNKNOWN;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

struct signal_counts {
    int up, down, unknown, n, connecting;
};

/* When a failover last started activating a target at this site (the committed step time,
 * never a clock): *at = INT64_MIN when none ever did. */
static int site_activated_at(struct dw_fsm *f, int site, int64_t *at)
{
    *at = INT64_MIN;
    for (int g = 0; g < f->cfg->n_groups; g++) {
        const struct dw_group *grp = &f->cfg->groups[g];

        for (int t = 0; t < grp->n_targets; t++) {
            sqlite3_stmt *s;
            int rc;

            if (grp->targets[t].site != site)
                continue;
            s = stmt(f, ST_ACTIVATE_STARTED);
            bind_text(s, 1, grp->id);
            bind_text(s, 2, grp->targets[t].id);
            rc = sqlite3_step(s);
            if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL &&
                sqlite3_column_int64(s, 0) > *at)
                *at = sqlite3_column_int64(s, 0);
            sqlite3_reset(s);
            if (rc != SQLITE_ROW)
                return -1;
        }
    }
    return 0;
}

/* The site rule applied to its Edges' cloud states (not sticky: stale reports count as
 * UNKNOWN). Within genesys.cloud_grace_ms after an activate step started at the site, an Edge
 * whose only fault is unconnected trunks counts as UNKNOWN: freshly activated trunks report
 * disconnected while they connect, and calling that DOWN would fail the site over by itself.
 * An OFFLINE Edge is not connecting and still counts as DOWN. */
static int cloud_site_verdict(struct dw_fsm *f, const struct dw_site *site, int64_t now,
                              enum dw_health *out, struct signal_counts *cnt)
{
    enum dw_health states[DW_MAX_EDGES];
    int n = site->n_edges < DW_MAX_EDGES ? site->n_edges : DW_MAX_EDGES;
    int64_t activated;
    bool grace;

    memset(cnt, 0, sizeof *cnt);
    if (site_activated_at(f, (int)(site - f->cfg->sites), &activated) != 0)
        return -1;
    /* a step stamped after now (a leader's clock ahead) keeps the grace too */
    grace = activated != INT64_MIN && now - activated < (int64_t)f->cfg->genesys.cloud_grace_ms;
    for (int j = 0; j < n; j++) {
        int64_t ts;
        bool fresh, disc;

        if (cloud_edge_state(f, &site->edges[j], now, &states[j], &ts, &fresh, &disc) != 0)
            return -1;
        if (disc && grace) {
            states[j] = DW_UNKNOWN;
            cnt->connecting++;
        }
        cnt->up += states[j] == DW_UP;
        cnt->down += states[j] == DW_DOWN;
        cnt->unknown += states[j] == DW_UNKNOWN;
    }
    cnt->n = n;
    *out = dw_site_verdict(states, n, site->rule, site->at_least);
    return 0;
}

/* How the site's two signals make its verdict (docs/detection.md). */
static enum dw_health combine(enum dw_combine how, enum dw_health cur, enum dw_health probe,
                              enum dw_health cloud)
{
    /* no fresh probe majority: only Genesys may still say DOWN (and only where it alone can) */
    if (probe == DW_UNKNOWN)
        return how == DW_COMBINE_OR_GENESYS && cloud == DW_DOWN ? DW_DOWN : DW_UNKNOWN;
    switch (how) {
    case DW_COMBINE_AND_GENESYS:
        if (probe == DW_DOWN && cloud == DW_DOWN)
            return DW_DOWN;
        return probe == DW_UP ? DW_UP : cur;
    case DW_COMBINE_OR_GENESYS:
        if (probe == DW_DOWN || cloud == DW_DOWN)
            return DW_DOWN;
        return probe == DW_UP ? DW_UP : cur;
    case DW_COMBINE_PROBES:
        break;
    }
    return probe;
}

static int update_site(struct dw_fsm *f, const struct dw_site *site, int64_t now, bool *changed)
{
    const struct dw_config *cfg = f->cfg;
    int64_t ttl = cfg->cluster.observation_ttl_ms;
    struct dw_observation obs[DW_MAX_MEMBERS];
    int n = cfg->n_members < DW_MAX_MEMBERS ? cfg->n_members : DW_MAX_MEMBERS;
    enum dw_health cur, cur_probe, cur_cloud, probe, cloud = DW_UNKNOWN, next;
    struct signal_counts cc = {0};
    bool uses_cloud = site->combine != DW_COMBINE_PROBES;
    char probes_txt[64], cloud_txt[128] = "";
    const char *mover;
    int up = 0, down = 0;
    sqlite3_stmt *s;

    if (load_observations(f, site->id, obs) != 0 ||
        site_row(f, site->id, &cur, &cur_probe, &cur_cloud) != 0)
        return -1;
    probe = dw_quorum_verdict(cur_probe, obs, n, now, ttl);
    if (uses_cloud && cloud_site_verdict(f, site, now, &cloud, &cc) != 0)
        return -1;
    next = combine(site->combine, cur, probe, cloud);
    if (probe == cur_probe && cloud == cur_cloud && next == cur)
        return 0;

    for (int m = 0; m < n; m++) {
        if (obs[m].tilt || !dw_observation_fresh(&obs[m], now, ttl))
            continue;
        down += obs[m].state == DW_DOWN;
        up += obs[m].state == DW_UP;
    }
    snprintf(probes_txt, sizeof probes_txt, "down %d/%d fresh, up %d/%d", down, n, up, n);
    if (uses_cloud)
        snprintf(cloud_txt, sizeof cloud_txt, "%d/%d Edges down, %d up, %d unknown%s, rule %s",
                 cc.down, cc.n, cc.up, cc.unknown,
                 cc.connecting > 0 ? " (trunks connecting after an activation)" : "",
                 rule_name(site->rule));

    if (probe != cur_probe || cloud != cur_cloud) {
        s = stmt(f, ST_SITE_SET_SIGNALS);
        bind_text(s, 1, site->id);
        bind_text(s, 2, dw_health_name(probe));
        bind_text(s, 3, dw_health_name(cloud));
        if (run(s) != 0)
            return -1;
    }
    /* with one signal the verdict row says it all; with two, each signal's moves are kept */
    if (uses_cloud && probe != cur_probe &&
        history(f, now, "signal", "%s: probes %s -> %s (%s)", site->id, dw_health_name(cur_probe),
                dw_health_name(probe), probes_txt) != 0)
        return -1;
    if (uses_cloud && cloud != cur_cloud &&
        history(f, now, "signal", "%s: genesys %s -> %s (%s)", site->id, dw_health_name(cur_cloud),
                dw_health_name(cloud), cloud_txt) != 0)
        return -1;
    if (next == cur)
        return 0;

    mover = probe != cur_probe && cloud != cur_cloud ? "probes+genesys"
            : cloud != cur_cloud                     ? "genesys"
                                                     : "probes";
    s = stmt(f, ST_SITE_SET);
    bind_text(s, 1, site->id);
    bind_text(s, 2, dw_health_name(next));
    sqlite3_bind_int64(s, 3, now);
    if (run(s) != 0)
        return -1;
    if (!uses_cloud) {
        if (history(f, now, "verdict", "%s: %s -> %s (%s) by probes", site->id,
                    dw_health_name(cur), dw_health_name(next), probes_txt) != 0)
            return -1;
    } else if (history(f, now, "verdict",
                       "%s: %s -> %s (%s; probes %s, genesys %s: %s) by %s, combine %s", site->id,
                       dw_health_name(cur), dw_health_name(next), probes_txt,
                       dw_health_name(probe), dw_health_name(cloud), cloud_txt, mover,
                       combine_name(site->combine)) != 0) {
        return -1;
    }
    *changed = true;
    return 0;
}

static int update_verdicts(struct dw_fsm *f, int64_t now, bool *changed)
{
    *changed = false;
    for (int i = 0; i < f->cfg->n_sites; i++) {
        if (update_site(f, &f->cfg->sites[f->site_order[i]], now, changed) != 0)
            return -1;
    }
    return 0;
}

static int insert_step(struct dw_fsm *f, int64_t op, int seq, enum step_action a,
                       const char *target)
{
    sqlite3_stmt *s = stmt(f, ST_STEP_INSERT);

    sqlite3_bind_int64(s, 1, op);
    sqlite3_bind_int(s, 2, seq);
    bind_text(s, 3, action_names[a]);
    bind_text(s, 4, target);
    return run(s);
}

static const char *target_id(const struct dw_group *g, int t)
{
    return t >= 0 ? g->targets[t].id : "";
}

/* Inserts a running operation of the group from one target to another (-1: none). */
static int insert_operation(struct dw_fsm *f, const struct dw_group *g, enum op_kind kind,
                            int from, int to, const char *reason, int64_t ts, int64_t *op)
{
    sqlite3_stmt *s = stmt(f, ST_OP_INSERT);

    bind_text(s, 1, g->id);
    bind_text(s, 2, op_kind_names[kind]);
    bind_text(s, 3, target_id(g, from));
    bind_text(s, 4, target_id(g, to));
    sqlite3_bind_int64(s, 5, ts);
    bind_text(s, 6, reason);
    if (run(s) != 0)
        return -1;
    *op = sqlite3_last_insert_rowid(f->db);
    return history(f, ts, "operation", "%s: %s #%" PRId64 " %s -> %s planned (%s)", g->id,
                   op_kind_names[kind], *op, shown(target_id(g, from)), shown(target_id(g, to)),
                   reason);
}

/* Steps: activate and verify the new target, then deactivate every other target of the group,
 * the one being left first. Deactivating targets that are already out of service costs a read
 * and no write, and it also takes out a target that an aborted or failed operation had
 * activated, so at most one target stays in service (design.md §5, invariant 4). */
static int create_failover(struct dw_fsm *f, const struct dw_group *g, int from, int to,
                           const char *reason, int64_t ts)
{
    int64_t op;
    int seq = 0;

    if (insert_operation(f, g, OP_FAILOVER, from, to, reason, ts, &op) != 0 ||
        insert_step(f, op, seq++, ACT_ACTIVATE, g->targets[to].id) != 0 ||
        insert_step(f, op, seq++, ACT_VERIFY, g->targets[to].id) != 0 ||
        (from >= 0 && insert_step(f, op, seq++, ACT_DEACTIVATE, g->targets[from].id) != 0))
        return -1;
    for (int t = 0; t < g->n_targets; t++) {
        if (t != from && t != to &&
            insert_step(f, op, seq++, ACT_DEACTIVATE, g->targets[t].id) != 0)
            return -1;
    }
    return 0;
}

/* Switch-off only: a rollback takes out the one target whose activation failed; a cleanup takes
 * out every target but the one kept (none when no target is up). Neither is ever aborted:
 * switching off is always possible and makes nothing worse. */
static int create_switch_off(struct dw_fsm *f, const struct dw_group *g, enum op_kind kind,
                             int from, int keep, const char *reason, int64_t ts)
{
    int64_t op;
    int seq = 0;

    if (insert_operation(f, g, kind, from, keep, reason, ts, &op) != 0)
        return -1;
    if (kind == OP_ROLLBACK)
        return insert_step(f, op, 0, ACT_DEACTIVATE, g->targets[from].id);
    for (int t = 0; t < g->n_targets; t++) {
        if (t != keep && insert_step(f, op, seq++, ACT_DEACTIVATE, g->targets[t].id) != 0)
            return -1;
    }
    return 0;
}

/* 1 with *op set when the group has a running operation, 0 when not, -1 on error. */
static int running_op(struct dw_fsm *f, const char *group, int64_t *op)
{
    sqlite3_stmt *s = stmt(f, ST_OP_RUNNING);
    int rc;

    bind_text(s, 1, group);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *op = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* A running failover whose destination went DOWN can never verify: abort it so the group is
 * planned again from what the journal left in service. 1 aborted, 0 still valid, -1 error. */
static int abort_if_destination_down(struct dw_fsm *f, const struct dw_group *g, int64_t op,
                                     int64_t now)
{
    struct op_row o;
    enum dw_health h;
    int t, rc = op_get(f, op, &o);

    if (rc <= 0)
        return rc;
    if (o.kind != OP_FAILOVER)
        return 0; /* a rollback or cleanup only switches things off: it can always finish */
    t = target_index(g, o.to);
    if (t < 0 || target_health(f, &g->targets[t], &h) != 0)
        return -1;
    if (h != DW_DOWN)
        return 0;
    if (end_operation(f, g, &o, OP_ABORTED, now) != 0 ||
        history(f, now, "operation", "%s: failover #%" PRId64 " %s -> %s aborted: %s is down",
                o.grp, op, shown(o.from), o.to, o.to) != 0)
        return -1;
    return 1;
}

/* A target whose activation or verification failed is not chosen again until its site's
 * verdict changes or an operator releases the group's hold: it would only fail again. */
static int target_failed(struct dw_fsm *f, const struct dw_group *g, int t, int64_t released,
                         bool *out)
{
    const struct dw_target *tg = &g->targets[t];
    sqlite3_stmt *s = stmt(f, ST_TARGET_FAILED);
    int64_t n = 0;

    bind_text(s, 1, g->id);
    sqlite3_bind_int64(s, 2, released);
    bind_text(s, 3, tg->id);
    if (tg->site >= 0 && tg->site < f->cfg->n_sites)
        bind_text(s, 4, f->cfg->sites[tg->site].id);
    if (scalar(s, &n) != 0)
        return -1;
    *out = n > 0;
    return 0;
}

/* The highest-priority target that is UP and has not failed since (-1: none). */
static int best_target(struct dw_fsm *f, const struct dw_group *g, int *best)
{
    char key[DW_ID_MAX + 16];
    int64_t released = 0;

    released_key(key, sizeof key, g->id);
    if (meta_get(f, key, &released) != 0)
        released = 0;
    *best = -1;
    for (int t = 0; t < g->n_targets; t++) {
        enum dw_health h;
        bool failed;

        if (target_health(f, &g->targets[t], &h) != 0)
            return -1;
        if (h != DW_UP)
            continue;
        if (target_failed(f, g, t, released, &failed) != 0)
            return -1;
        if (!failed) {
            *best = t;
            return 0;
        }
    }
    return 0;
}

/* Since the group's last completed failover or cleanup (each leaves exactly one target, or
 * none, in service): how many operations failed, how many were aborted after a step had
 * started, and how many of the failures were cleanups. */
enum { DIRT_FAILED, DIRT_ABORTED, DIRT_FAILED_CLEANUPS, DIRT_N };

static int group_dirt(struct dw_fsm *f, const char *group, int64_t dirt[DIRT_N])
{
    sqlite3_stmt *s = stmt(f, ST_GROUP_DIRT);

    bind_text(s, 1, group);
    return int_row(s, dirt, DIRT_N);
}

/* 1 when the failover failed bringing its destination in (activate or verify). */
static int failed_bringing_in(struct dw_fsm *f, const struct op_row *last)
{
    sqlite3_stmt *s;
    int rc;
    enum step_action a = ACT_DEACTIVATE;

    if (last->kind != OP_FAILOVER || last->status != OP_FAILED)
        return 0;
    s = stmt(f, ST_STEP_FAILED);
    sqlite3_bind_int64(s, 1, last->id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        a = name_index(action_names, ACT_COUNT, col_text(s, 0), ACT_DEACTIVATE);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    return a == ACT_ACTIVATE || a == ACT_VERIFY;
}

/* The planner. Wanted: the highest-priority UP target carries calls and every other target is
 * out of service. In order:
 * 1. a failover that failed to bring its destination in is rolled back (the destination off);
 * 2. a carrier voted DOWN (or no carrier at all) moves to the best UP target, even when the
 *    group is held: a hold stops discretionary moves, not the escape from a dead target;
 * 3. what operations aborted or failed since the last completed failover or cleanup may have
 *    left in service is switched off: all but the carrier, or everything when the carrier is
 *    DOWN and nothing is up (no finished operation leaves a DOWN target in service).
 * Failback to a higher-priority target that came back is not planned yet. */
static int plan_group(struct dw_fsm *f, const struct dw_group *g, int64_t now, bool verdict_changed)
{
    const struct dw_config *cfg = f->cfg;
    int active, busy, best = -1, rc;
    int64_t op;
    bool hold, carrier_down;
    enum dw_health h = DW_DOWN;
    int64_t dirt[DIRT_N] = {0};
    struct op_row last;
    char reason[2 * DW_ID_MAX + 32];

    busy = running_op(f, g->id, &op);
    if (busy == 1) {
        rc = abort_if_destination_down(f, g, op, now);
        if (rc < 0)
            return -1;
        busy = rc == 1 ? 0 : 1;
    }
    if (busy != 0)
        return busy < 0 ? -1 : 0;
    if (group_get(f, g->id, &active, &hold) != 0)
        return -1;
    if (active >= g->n_targets)
        active = -1;
    rc = op_latest(f, g->id, &last);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        int undo = failed_bringing_in(f, &last);

        if (undo < 0)
            return -1;
        if (undo == 1 && target_index(g, last.to) >= 0) {
            snprintf(reason, sizeof reason, "#%" PRId64 " failed", last.id);
            return create_switch_off(f, g, OP_ROLLBACK, target_index(g, last.to), active, reason,
                                     now);
        }
    }
    if (group_dirt(f, g->id, dirt) != 0)
        return -1;

    if (active >= 0 && target_health(f, &g->targets[active], &h) != 0)
        return -1;
    carrier_down = active < 0 || h == DW_DOWN;
    if (carrier_down && best_target(f, g, &best) != 0)
        return -1;
    if (carrier_down && best >= 0) {
        if (active < 0)
            snprintf(reason, sizeof reason, "no target in service");
        else if (g->targets[active].site >= 0)
            snprintf(reason, sizeof reason, "%s down", cfg->sites[g->targets[active].site].id);
        else
            snprintf(reason, sizeof reason, "%s down", g->targets[active].id);
        return create_failover(f, g, active, best, reason, now);
    }
    /* Held, a cleanup still follows an abort, but a failed cleanup is not retried (it would
     * fail again while Genesys is unreachable, again and again). */
    if ((dirt[DIRT_FAILED] > 0 || dirt[DIRT_ABORTED] > 0) &&
        (!hold || (dirt[DIRT_ABORTED] > 0 && dirt[DIRT_FAILED_CLEANUPS] == 0))) {
        int keep = carrier_down ? -1 : active;

        if (g->n_targets - (keep >= 0) == 0)
            return 0;
        snprintf(reason, sizeof reason, "after an %s operation%s",
                 dirt[DIRT_ABORTED] > 0 ? "aborted" : "failed", keep < 0 ? ", no target up" : "");
        return create_switch_off(f, g, OP_CLEANUP, active, keep, reason, now);
    }
    if (carrier_down && verdict_changed)
        return history(f, now, "operation", "%s: no target up", g->id);
    return 0;
}

static int after_entry(struct dw_fsm *f, int64_t ts)
{
    bool changed;

    if (update_verdicts(f, ts, &changed) != 0)
        return -1;
    for (int i = 0; i < f->cfg->n_groups; i++) {
        if (plan_group(f, &f->cfg->groups[f->group_order[i]], ts, changed) != 0)
            return -1;
    }
    if (meta_add(f, "applied", 1) != 0 || meta_set(f, "last_ts", ts) != 0 ||
        history_prune(f, ts) != 0)
        return -1;
    return 0;
}

/* ---- apply ---------------------------------------------------------------------------------- */

/* The entry's time from its stamp (docs/architecture.md, "Entries and time"). Never backwards; a
 * stamp behind the cluster's time (a lagging leader, or the cluster's time was pushed ahead by a
 * clock that ran ahead) advances it by what the stamping clock moved since the previous entry,
 * so time does not stand still and a refresh stamped ahead still ages at the real rate. A jump
 * past the TTL is accepted (a full-cluster restart looks the same) and leaves every earlier
 * observation stale. */
static int entry_time(struct dw_fsm *f, int64_t stamp, int64_t *ts)
{
    int64_t ttl = f->cfg->cluster.observation_ttl_ms;

    if (stamp >= f->last_ts) {
        *ts = stamp;
        if (f->applied > 0 && stamp - f->last_ts > ttl)
            return history(f, stamp, "time",
                           "entry stamped %.1f s after the previous one (ttl %.1f s): every "
                           "earlier observation is stale",
                           (double)(stamp - f->last_ts) / 1000, (double)ttl / 1000);
        return 0;
    }
    *ts = f->last_ts + (stamp > f->last_stamp ? stamp - f->last_stamp : 0);
    /* one row when stamps fall behind, not one per entry while they stay behind */
    if (f->last_ts - stamp > ttl && f->last_ts - f->last_stamp <= ttl)
        return history(f, *ts, "time",
                       "entry stamped %.1f s before the cluster's time: time runs on from it",
                       (double)(f->last_ts - stamp) / 1000);
    return 0;
}

static int apply_parsed(struct dw_fsm *f, const cJSON *e, int64_t *ts, char *why, size_t whylen)
{
    int64_t v, by, stamp;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    int rc;

    if (!cJSON_IsObject(e)) {
        set_msg(why, whylen, "entry is not a JSON object");
        return APPLY_REJECT;
    }
    if (json_int(e, "ts", &v))
        *ts = v;
    if (!json_int(e, "v", &v) || v != DW_ENTRY_VERSION) {
        set_msg(why, whylen, "unsupported entry version");
        return APPLY_REJECT;
    }
    if (!json_int(e, "ts", &stamp) || !json_int(e, "by", &by)) {
        set_msg(why, whylen, "entry is not stamped");
        return APPLY_REJECT;
    }
    if (!cJSON_IsString(type)) {
        set_msg(why, whylen, "entry has no type");
        return APPLY_REJECT;
    }
    if (entry_time(f, stamp, ts) != 0)
        return APPLY_SQL_ERROR;
    if (strcmp(type->valuestring, "observe") == 0)
        rc = apply_observe(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "step") == 0)
        rc = apply_step(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "leader") == 0)
        rc = apply_leader(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "cloud") == 0)
        rc = apply_cloud(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "hold") == 0)
        rc = apply_hold(f, e, *ts, why, whylen);
    else {
        set_msg(why, whylen, "unknown entry type \"%.32s\"", type->valuestring);
        return APPLY_REJECT;
    }
    if (rc != APPLY_OK)
        return rc;
    if (after_entry(f, *ts) != 0 || meta_set(f, "last_stamp", stamp) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

/* Only whitespace or NUL may follow the JSON value (some senders include the terminator). */
static bool only_trailing_space(const char *p, const char *end)
{
    if (p == NULL)
        return false;
    for (; p < end; p++) {
        if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    }
    return true;
}

static int exec(struct dw_fsm *f, const char *sql)
{
    return sqlite3_exec(f->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Records a refused entry in its own transaction; the entry's own changes were rolled back.
 * Every node records the same row, so failing to record it is fatal too. */
static int record_rejection(struct dw_fsm *f, int64_t ts, const char *why)
{
    if (exec(f, "BEGIN") != 0)
        return -1;
    if (history(f, ts, "rejected", "%s", why) != 0 || meta_add(f, "rejected", 1) != 0 ||
        exec(f, "COMMIT") != 0) {
        exec(f, "ROLLBACK");
        return -1;
    }
    load_counters(f);
    return 0;
}

/* This node could not apply what every other node applies: nothing is kept, the caller must
 * stop and replay rather than diverge. */
static int fatal(struct dw_fsm *f, const char *what)
{
    set_msg(f->error, sizeof f->error, "%s: %s", what, sqlite3_errmsg(f->db));
    return DW_FSM_FATAL;
}

static int reject(struct dw_fsm *f, int64_t ts, const char *why)
{
    if (record_rejection(f, ts, why) != 0)
        return fatal(f, "cannot record a rejected entry");
    return DW_FSM_REJECTED;
}

int dw_fsm_apply(struct dw_fsm *f, const void *buf, size_t len)
{
    char why[512] = "";
    int64_t ts = f->last_ts;
    const char *end = NULL;
    cJSON *e;
    int rc;

    f->error[0] = '\0';
    e = buf != NULL && len > 0 ? cJSON_ParseWithLengthOpts(buf, len, &end, false) : NULL;
    if (e != NULL && !only_trailing_space(end, (const char *)buf + len)) {
        cJSON_Delete(e);
        e = NULL;
    }
    if (e == NULL)
        return reject(f, ts, "entry is not valid JSON");
    if (exec(f, "BEGIN") != 0) {
        cJSON_Delete(e);
        return fatal(f, "cannot begin transaction");
    }
    rc = apply_parsed(f, e, &ts, why, sizeof why);
    cJSON_Delete(e);
    if (rc == APPLY_OK && exec(f, "COMMIT") == 0) {
        load_counters(f);
        return DW_FSM_APPLIED;
    }
    if (rc == APPLY_SQL_ERROR || rc == APPLY_OK) {
        rc = fatal(f, rc == APPLY_OK ? "commit" : "database error");
        exec(f, "ROLLBACK");
        return rc;
    }
    exec(f, "ROLLBACK");
    return reject(f, ts, why);
}

const char *dw_fsm_last_error(const struct dw_fsm *f)
{
    return f->error;
}

sqlite3 *dw_fsm_db(struct dw_fsm *f)
{
    return f->db;
}

/* ---- open, close, snapshot ------------------------------------------------------------------ */

static int ensure_config_rows(struct dw_fsm *f)
{
    for (int i = 0; i < f->cfg->n_sites; i++) {
        sqlite3_stmt *s = stmt(f, ST_SITE_ENSURE);

        bind_text(s, 1, f->cfg->sites[i].id);
        if (run(s) != 0)
            return -1;
    }
    for (int i = 0; i < f->cfg->n_groups; i++) {
        sqlite3_stmt *s = stmt(f, ST_GROUP_ENSURE);

        bind_text(s, 1, f->cfg->groups[i].id);
        if (run(s) != 0)
            return -1;
    }
    return 0;
}

static int open_memory_db(sqlite3 **db, char *errmsg, size_t errlen)
{
    if (sqlite3_open_v2(":memory:", db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        set_msg(errmsg, errlen, "sqlite open: %s", *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

static int index_edges(struct dw_fsm *f)
{
    const struct dw_config *cfg = f->cfg;
    int n = 0;

    for (int i = 0; i < cfg->n_sites; i++)
        n += cfg->sites[i].n_edges;
    if (n == 0)
        return 0;
    f->edge_ids = calloc((size_t)n, sizeof *f->edge_ids);
    if (f->edge_ids == NULL)
        return -1;
    for (int i = 0; i < cfg->n_sites; i++) {
        for (int j = 0; j < cfg->sites[i].n_edges; j++)
            f->edge_ids[f->n_edge_ids++] = cfg->sites[i].edges[j].id;
    }
    qsort(f->edge_ids, (size_t)f->n_edge_ids, sizeof *f->edge_ids, cmp_str_ptr);
    return 0;
}

/* Fills order[0..n) with 0..n-1 sorted by the id each index names. */
static void order_by_id(int *order, int n, const char *(*id_of)(const struct dw_config *, int),
                        const struct dw_config *cfg)
{
    struct {
        const char *id; /* first: cmp_str_ptr compares it */
        int idx;
    } slot[DW_MAX_SITES > DW_MAX_GROUPS ? DW_MAX_SITES : DW_MAX_GROUPS];

    for (int i = 0; i < n; i++) {
        slot[i].id = id_of(cfg, i);
        slot[i].idx = i;
    }
    qsort(slot, (size_t)n, sizeof slot[0], cmp_str_ptr);
    for (int i = 0; i < n; i++)
        order[i] = slot[i].idx;
}

static const char *site_id(const struct dw_config *cfg, int i)
{
    return cfg->sites[i].id;
}

static const char *group_id(const struct dw_config *cfg, int i)
{
    return cfg->groups[i].id;
}

int dw_fsm_open(struct dw_fsm **out, const struct dw_config *cfg, char *errmsg, size_t errlen)
{
    struct dw_fsm *f = calloc(1, sizeof *f);

    *out = NULL;
    if (f == NULL) {
        set_msg(errmsg, errlen, "out of memory");
        return -1;
    }
    f->cfg = cfg;
    snprintf(f->digest, sizeof f->digest, "%016" PRIx64,
             cfg->topology_digest ? cfg->topology_digest : dw_config_topology_digest(cfg));
    if (index_edges(f) != 0) {
        set_msg(errmsg, errlen, "out of memory");
        goto fail;
    }
    order_by_id(f->site_order, cfg->n_sites, site_id, cfg);
    order_by_id(f->group_order, cfg->n_groups, group_id, cfg);
    if (open_memory_db(&f->db, errmsg, errlen) != 0)
        goto fail;
    if (sqlite3_exec(f->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        set_msg(errmsg, errlen, "schema: %s", sqlite3_errmsg(f->db));
        goto fail;
    }
    if (prepare_all(f->db, f->st, errmsg, errlen) != 0)
        goto fail;
    if (ensure_config_rows(f) != 0) {
        set_msg(errmsg, errlen, "initial rows: %s", sqlite3_errmsg(f->db));
        goto fail;
    }
    load_counters(f);
    *out = f;
    return 0;
fail:
    dw_fsm_close(f);
    return -1;
}

void dw_fsm_close(struct dw_fsm *f)
{
    if (f == NULL)
        return;
    finalize_all(f->st);
    sqlite3_close(f->db);
    free(f->edge_ids);
    free(f);
}

int dw_fsm_snapshot(struct dw_fsm *f, void **buf, size_t *len)
{
    sqlite3_int64 size = 0;
    unsigned char *data = sqlite3_serialize(f->db, "main", &size, 0);

    if (data == NULL)
        return -1;
    *buf = data;
    *len = (size_t)size;
    return 0;
}

/* Snapshots of schema 1 (before the Genesys signal) gain the signal columns and the cloud
 * table; in schema 1 the site verdict was the probe verdict. Idempotent: a schema 2 database
 * passes untouched. */
static int migrate(sqlite3 *db)
{
    static const char v1_to_v2[] =
        "BEGIN;"
        "ALTER TABLE sites ADD COLUMN probe_verdict TEXT NOT NULL DEFAULT 'unknown';"
        "ALTER TABLE sites ADD COLUMN cloud_verdict TEXT NOT NULL DEFAULT 'unknown';"
        "UPDATE sites SET probe_verdict = verdict;"
        "CREATE TABLE cloud(edge TEXT PRIMARY KEY, state TEXT NOT NULL, ts INTEGER NOT NULL);"
        "UPDATE meta SET value = 2 WHERE key = 'schema';"
        "COMMIT;";
    sqlite3_stmt *s;
    int64_t schema = -1;

    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        schema = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (schema == 1 && sqlite3_exec(db, v1_to_v2, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    /* older snapshots lack the previous stamp: the last applied time stands in for it */
    if (sqlite3_exec(db, "INSERT OR IGNORE INTO meta(key, value) SELECT 'last_stamp', value"
                         " FROM meta WHERE key = 'last_ts'", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    return 0; /* the caller checks the version */
}

/* The snapshot is loaded into a new connection first, so a bad one leaves the state intact. */
int dw_fsm_restore(struct dw_fsm *f, const void *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st[ST_COUNT] = {0};
    unsigned char *copy;
    struct dw_fsm probe;
    int64_t schema;

    if (buf == NULL || len == 0 || open_memory_db(&db, NULL, 0) != 0)
        return -1;
    copy = sqlite3_malloc64(len);
    if (copy == NULL) {
        sqlite3_close(db);
        return -1;
    }
    memcpy(copy, buf, len);
    /* with FREEONCLOSE, sqlite owns copy from here on, even when this fails */
    if (sqlite3_deserialize(db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
                            SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) !=
            SQLITE_OK ||
        migrate(db) != 0 || prepare_all(db, st, NULL, 0) != 0) {
        sqlite3_close(db);
        return -1;
    }
    probe = *f;
    probe.db = db;
    memcpy(probe.st, st, sizeof st);
    if (meta_get(&probe, "schema", &schema) != 0 || schema != FSM_SCHEMA_VERSION ||
        ensure_config_rows(&probe) != 0) {
        finalize_all(st);
        sqlite3_close(db);
        return -1;
    }
    finalize_all(f->st);
    sqlite3_close(f->db);
    f->db = db;
    memcpy(f->st, st, sizeof st);
    load_counters(f);
    return 0;
}

/* ---- reads ---------------------------------------------------------------------------------- */

uint64_t dw_fsm_applied(const struct dw_fsm *f)
{
    return f->applied;
}

uint64_t dw_fsm_rejected(const struct dw_fsm *f)
{
    return f->rejected;
}

int64_t dw_fsm_last_ts(const struct dw_fsm *f)
{
    return f->last_ts;
}

enum dw_health dw_fsm_site_verdict(struct dw_fsm *f, int site)
{
    enum dw_health h = DW_UNKNOWN;

    if (site < 0 || site >= f->cfg->n_sites ||
        site_verdict_by_id(f, f->cfg->sites[site].id, &h) != 0)
        return DW_UNKNOWN;
    return h;
}

enum dw_health dw_fsm_probe_verdict(struct dw_fsm *f, int site)
{
    enum dw_health h = DW_UNKNOWN;

    if (site < 0 || site >= f->cfg->n_sites ||
        site_row(f, f->cfg->sites[site].id, NULL, &h, NULL) != 0)
        return DW_UNKNOWN;
    return h;
}

enum dw_health dw_fsm_cloud_verdict(struct dw_fsm *f, int site)
{
    enum dw_health h = DW_UNKNOWN;

    if (site < 0 || site >= f->cfg->n_sites ||
        site_row(f, f->cfg->sites[site].id, NULL, NULL, &h) != 0)
        return DW_UNKNOWN;
    return h;
}

int dw_fsm_active_target(struct dw_fsm *f, int group)
{
    int active;
    bool hold;

    if (group < 0 || group >= f->cfg->n_groups ||
        group_get(f, f->cfg->groups[group].id, &active, &hold) != 0)
        return -1;
    return active;
}

int dw_fsm_next_steps(struct dw_fsm *f, struct dw_step_ref *out, int max)
{
    static const char sql[] =
        "SELECT o.id, o.grp, s.seq, s.action, s.target, s.status,"
        " (SELECT COUNT(*) FROM steps c WHERE c.op = o.id)"
        " FROM operations o JOIN steps s ON s.op = o.id"
        " WHERE o.status = 'running' AND s.seq ="
        " (SELECT MIN(n.seq) FROM steps n WHERE n.op = o.id AND n.status <> 'done')"
        " ORDER BY o.id";
    sqlite3_stmt *s;
    int n = 0, rc = SQLITE_DONE;

    if (max <= 0)
        return 0;
    if (sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct dw_step_ref *r = &out[n++];
        int g = group_index(f->cfg, col_text(s, 1));

        memset(r, 0, sizeof *r);
        r->op = sqlite3_column_int64(s, 0);
        r->seq = sqlite3_column_int(s, 2);
        snprintf(r->action, sizeof r->action, "%s", col_text(s, 3));
        r->group = g;
        r->target = g >= 0 ? target_index(&f->cfg->groups[g], col_text(s, 4)) : -1;
        if (dw_step_status_parse(col_text(s, 5), &r->status) != 0)
            r->status = DW_STEP_PENDING;
        r->n_steps = sqlite3_column_int(s, 6);
    }
    if (n < max && rc != SQLITE_DONE)
        n = -1;
    sqlite3_finalize(s);
    return n;
}

/* ---- dump ----------------------------------------------------------------------------------- */

struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (b->len + (size_t)n + 1 > cap)
            cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void dump_value(struct strbuf *b, sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_NULL:
        sb_add(b, "NULL");
        break;
    case SQLITE_INTEGER:
        sb_add(b, "%lld", (long long)sqlite3_column_int64(s, col));
        break;
    case SQLITE_FLOAT:
        sb_add(b, "%.17g", sqlite3_column_double(s, col));
        break;
    case SQLITE_BLOB: {
        const unsigned char *p = sqlite3_column_blob(s, col);
        int n = sqlite3_column_bytes(s, col);

        sb_add(b, "x'");
        for (int i = 0; i < n; i++)
            sb_add(b, "%02x", p[i]);
        sb_add(b, "'");
        break;
    }
    default:
        sb_add(b, "%s", col_text(s, col));
        break;
    }
}

char *dw_fsm_dump_max(struct dw_fsm *f, size_t max)
{
    struct strbuf b = {0};

    f->error[0] = '\0';
    sb_add(&b, "%s", "");
    for (size_t t = 0; t < sizeof dump_tables / sizeof dump_tables[0]; t++) {
        char sql[128];
        sqlite3_stmt *s;
        int rc;

        snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY %s", dump_tables[t].table,
                 dump_tables[t].order);
        if (sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
            goto fail;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (max > 0 && b.len > max) {
                sqlite3_finalize(s);
                set_msg(f->error, sizeof f->error,
                        "dump: the state is larger than %zu bytes; read it with history", max);
                goto fail;
            }
            sb_add(&b, "%s", dump_tables[t].table);
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                sb_add(&b, "|%s=", sqlite3_column_name(s, c));
                dump_value(&b, s, c);
            }
            sb_add(&b, "\n");
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            goto fail;
    }
    if (b.oom)
        goto fail;
    return b.p;
fail:
    if (f->error[0] == '\0')
        set_msg(f->error, sizeof f->error, "dump: %s",
                b.oom ? "out of memory" : sqlite3_errmsg(f->db));
    free(b.p);
    return NULL;
}

char *dw_fsm_dump(struct dw_fsm *f)
{
    return dw_fsm_dump_max(f, 0);
}

/* ---- JSON views ----------------------------------------------------------------------------- */

/* Adds a column as a JSON value of the matching type (NULL becomes null). */
static bool json_add_col(cJSON *obj, const char *name, sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_NULL:
        return cJSON_AddNullToObject(obj, name) != NULL;
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
        return cJSON_AddNumberToObject(obj, name, (double)sqlite3_column_int64(s, col)) != NULL;
    default:
        return cJSON_AddStringToObject(obj, name, col_text(s, col)) != NULL;
    }
}

static bool status_observations(struct dw_fsm *f, cJSON *site_obj, const char *site)
{
    static const char sql[] = "SELECT o.node, o.state, n.last_refresh, n.tilt FROM observations o"
                              " JOIN nodes n ON n.id = o.node WHERE o.site = ?1 ORDER BY o.node";
    cJSON *arr = cJSON_AddArrayToObject(site_obj, "observations");
    sqlite3_stmt *s;
    bool ok = arr != NULL;

    if (!ok || sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    bind_text(s, 1, site);
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        struct dw_observation obs = {
            .present = true,
            .state = health_of(col_text(s, 1)),
            .refreshed_ms = sqlite3_column_int64(s, 2),
            .tilt = sqlite3_column_int(s, 3) != 0,
        };

        bool fresh = dw_observation_fresh(&obs, f->last_ts, f->cfg->cluster.observation_ttl_ms);

        ok = o != NULL && cJSON_AddItemToArray(arr, o) &&
             json_add_col(o, "node", s, 0) && json_add_col(o, "state", s, 1) &&
             json_add_col(o, "refreshed", s, 2) && cJSON_AddBoolToObject(o, "fresh", fresh) &&
             cJSON_AddBoolToObject(o, "tilt", obs.tilt);
    }
    sqlite3_finalize(s);
    return ok;
}

/* The Genesys signal of a site that uses it: each Edge's last report, judged at last_ts. */
static bool status_cloud(struct dw_fsm *f, cJSON *site_obj, const struct dw_site *site)
{
    cJSON *arr;

    if (site->combine == DW_COMBINE_PROBES)
        return true;
    arr = cJSON_AddArrayToObject(site_obj, "cloud");
    if (arr == NULL)
        return false;
    for (int j = 0; j < site->n_edges; j++) {
        const struct dw_edge *e = &site->edges[j];
        cJSON *o = cJSON_CreateObject();
        enum dw_health h;
        int64_t ts;
        bool fresh, disc;

        if (o == NULL || !cJSON_AddItemToArray(arr, o) ||
            cloud_edge_state(f, e, f->last_ts, &h, &ts, &fresh, &disc) != 0 ||
            !cJSON_AddStringToObject(o, "edge", e->id) ||
            !cJSON_AddStringToObject(o, "genesys_edge_id", e->genesys_edge_id) ||
            !cJSON_AddStringToObject(o, "state", dw_health_name(h)) ||
            !cJSON_AddNumberToObject(o, "reported", (double)ts) ||
            !cJSON_AddBoolToObject(o, "fresh", fresh) ||
            !cJSON_AddBoolToObject(o, "trunks_disconnected", disc))
            return false;
    }
    return true;
}

static bool status_sites(struct dw_fsm *f, cJSON *root)
{
    cJSON *arr = cJSON_AddArrayToObject(root, "sites");
    bool ok = arr != NULL;

    /* configured order, which is how operators read their own config */
    for (int i = 0; ok && i < f->cfg->n_sites; i++) {
        static const char sql[] = "SELECT id, verdict, since, probe_verdict, cloud_verdict"
                                  " FROM sites WHERE id = ?1";
        const struct dw_site *site = &f->cfg->sites[i];
        cJSON *o = cJSON_CreateObject();
        sqlite3_stmt *s;

        ok = o != NULL && cJSON_AddItemToArray(arr, o) &&
             sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) == SQLITE_OK;
        if (!ok)
            break;
        bind_text(s, 1, site->id);
        ok = sqlite3_step(s) == SQLITE_ROW && json_add_col(o, "id", s, 0) &&
             json_add_col(o, "verdict", s, 1) && json_add_col(o, "since", s, 2) &&
             json_add_col(o, "probe_verdict", s, 3) && json_add_col(o, "cloud_verdict", s, 4) &&
             cJSON_AddStringToObject(o, "combine", combine_name(site->combine)) &&
             cJSON_AddStringToObject(o, "rule", rule_name(site->rule)) &&
             (site->rule != DW_RULE_AT_LEAST ||
              cJSON_AddNumberToObject(o, "at_least", site->at_least));
        sqlite3_finalize(s);
        ok = ok && status_observations(f, o, site->id) && status_cloud(f, o, site);
    }
    return ok;
}

static bool status_nodes(struct dw_fsm *f, cJSON *root)
{
    static const char sql[] = "SELECT id, last_refresh, tilt FROM nodes ORDER BY id";
    cJSON *arr = cJSON_AddArrayToObject(root, "nodes");
    sqlite3_stmt *s;
    bool ok = arr != NULL;

    if (!ok || sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();

        ok = o != NULL && cJSON_AddItemToArray(arr, o) && json_add_col(o, "id", s, 0) &&
             json_add_col(o, "last_refresh", s, 1) &&
             cJSON_AddBoolToObject(o, "tilt", sqlite3_column_int(s, 2) != 0);
    }
    sqlite3_finalize(s);
    return ok;
}

static bool status_groups(struct dw_fsm *f, cJSON *root)
{
    cJSON *arr = cJSON_AddArrayToObject(root, "groups");
    bool ok = arr != NULL;

    for (int i = 0; ok && i < f->cfg->n_groups; i++) {
        const struct dw_group *g = &f->cfg->groups[i];
        cJSON *o = cJSON_CreateObject();
        int active;
        bool hold;

        ok = o != NULL && cJSON_AddItemToArray(arr, o) &&
             group_get(f, g->id, &active, &hold) == 0 && cJSON_AddStringToObject(o, "id", g->id) &&
             (active >= 0 && active < g->n_targets
                  ? cJSON_AddStringToObject(o, "active", g->targets[active].id) != NULL
                  : cJSON_AddNullToObject(o, "active") != NULL) &&
             cJSON_AddBoolToObject(o, "hold", hold);
    }
    return ok;
}

static bool status_steps(struct dw_fsm *f, cJSON *op_obj, int64_t op)
{
    static const char sql[] = "SELECT seq, action, target, status, started, finished, detail"
                              " FROM steps WHERE op = ?1 ORDER BY seq";
    static const char *const cols[] = {"seq", "action", "target", "status", "started", "finished",
                                       "detail"};
    cJSON *arr = cJSON_AddArrayToObject(op_obj, "steps");
    sqlite3_stmt *s;
    bool ok = arr != NULL;

    if (!ok || sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_int64(s, 1, op);
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();

        ok = o != NULL && cJSON_AddItemToArray(arr, o);
        for (int c = 0; ok && c < 7; c++)
            ok = json_add_col(o, cols[c], s, c);
    }
    sqlite3_finalize(s);
    return ok;
}

static bool status_operations(struct dw_fsm *f, cJSON *root)
{
    static const char sql[] =
        "SELECT id, grp, kind, from_target, to_target, status, created, finished, reason"
        " FROM operations WHERE status = 'running' OR id IN"
        " (SELECT id FROM operations WHERE status <> 'running' ORDER BY id DESC LIMIT 10)"
        " ORDER BY id DESC";
    static const char *const cols[] = {"id", "group", "kind", "from", "to", "status", "created",
                                       "finished", "reason"};
    cJSON *arr = cJSON_AddArrayToObject(root, "operations");
    sqlite3_stmt *s;
    bool ok = arr != NULL;

    if (!ok || sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();

        ok = o != NULL && cJSON_AddItemToArray(arr, o);
        for (int c = 0; ok && c < 9; c++)
            ok = json_add_col(o, cols[c], s, c);
        ok = ok && status_steps(f, o, sqlite3_column_int64(s, 0));
    }
    sqlite3_finalize(s);
    return ok;
}

cJSON *dw_fsm_status_json(struct dw_fsm *f)
{
    cJSON *root = cJSON_CreateObject();

    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "last_ts", (double)f->last_ts) ||
        !cJSON_AddNumberToObject(root, "applied", (double)f->applied) ||
        !cJSON_AddNumberToObject(root, "rejected", (double)f->rejected) || !status_sites(f, root) ||
        !status_nodes(f, root) || !status_groups(f, root) || !status_operations(f, root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *dw_fsm_history_json(struct dw_fsm *f, int limit)
{
    static const char sql[] = "SELECT id, ts, kind, detail FROM history ORDER BY id DESC LIMIT ?1";
    static const char *const cols[] = {"id", "ts", "kind", "detail"};
    cJSON *arr = cJSON_CreateArray();
    sqlite3_stmt *s;
    bool ok = arr != NULL;

    if (!ok || sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK) {
        cJSON_Delete(arr);
        return NULL;
    }
    sqlite3_bind_int(s, 1, limit > 0 && limit < DW_FSM_HISTORY_MAX ? limit : DW_FSM_HISTORY_MAX);
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();

        ok = o != NULL && cJSON_AddItemToArray(arr, o);
        for (int c = 0; ok && c < 4; c++)
            ok = json_add_col(o, cols[c], s, c);
    }
    sqlite3_finalize(s);
    if (!ok) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}
