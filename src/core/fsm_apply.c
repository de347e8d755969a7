/* Owns applying one committed entry: decoding, its time, each entry type, the transaction. */

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_internal.h"

#define JSON_INT_MAX 9007199254740992.0 /* 2^53 */

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

/* An observation or cloud view made under another config version than the committed one is
 * dropped, not refused: it is expected around every config change, and the sender repeats its
 * view under the new version at once. */
static bool stale(const struct dw_fsm *f, const cJSON *e)
{
    int64_t cv;

    return json_int(e, "cv", &cv) && cv != f->cfg_version;
}

static int apply_observe(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    int64_t node, cv;
    const cJSON *tilt = cJSON_GetObjectItemCaseSensitive(e, "tilt");
    const cJSON *sites = cJSON_GetObjectItemCaseSensitive(e, "sites");
    const cJSON *it;
    sqlite3_stmt *s;

    if (!json_int(e, "node", &node) || !json_int(e, "cv", &cv) || !cJSON_IsBool(tilt) ||
        !cJSON_IsObject(sites)) {
        fsm_set_msg(why, whylen, "malformed observe entry");
        return APPLY_REJECT;
    }
    if (stale(f, e) || f->cfg->n_members == 0) /* n_members 0: no config committed yet */
        return APPLY_OK;
    if (!is_member(f->cfg, node)) {
        fsm_set_msg(why, whylen, "observation from node %" PRId64 ", not a member", node);
        return APPLY_REJECT;
    }
    cJSON_ArrayForEach(it, sites) {
        enum dw_health h;

        if (!cJSON_IsString(it) || dw_health_parse(it->valuestring, &h) != 0) {
            fsm_set_msg(why, whylen, "observe from node %" PRId64 ": bad state for site %s", node,
                        it->string ? it->string : "?");
            return APPLY_REJECT;
        }
    }

    s = fsm_stmt(f, ST_NODE_UPSERT);
    sqlite3_bind_int64(s, 1, node);
    sqlite3_bind_int64(s, 2, ts);
    sqlite3_bind_int(s, 3, cJSON_IsTrue(tilt));
    if (fsm_run(s) != 0)
        return APPLY_SQL_ERROR;

    cJSON_ArrayForEach(it, sites) {
        /* sites the committed config lacks are ignored (a sender's view may be ahead of it) */
        if (it->string == NULL || fsm_site_index(f->cfg, it->string) < 0)
            continue;
        s = fsm_stmt(f, ST_OBS_UPSERT);
        sqlite3_bind_int64(s, 1, node);
        fsm_bind_text(s, 2, it->string);
        fsm_bind_text(s, 3, it->valuestring);
        sqlite3_bind_int64(s, 4, ts);
        if (fsm_run(s) != 0)
            return APPLY_SQL_ERROR;
    }
    return APPLY_OK;
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
        fsm_set_msg(why, whylen, "malformed step entry");
        return APPLY_REJECT;
    }
    rc = fsm_op_get(f, op, &o);
    if (rc < 0)
        return APPLY_SQL_ERROR;
    if (rc == 0) {
        fsm_set_msg(why, whylen, "step for unknown operation %" PRId64, op);
        return APPLY_REJECT;
    }
    if (o.status != DW_OP_RUNNING) {
        fsm_set_msg(why, whylen, "step for operation %" PRId64 ", which is %s", op,
                    dw_op_status_name(o.status));
        return APPLY_REJECT;
    }
    rc = fsm_step_next(f, op, &st);
    if (rc < 0)
        return APPLY_SQL_ERROR;
    if (rc == 0 || seq < st.seq) {
        fsm_set_msg(why, whylen, "operation %" PRId64 ": step %" PRId64 " is already done", op,
                    seq);
        return APPLY_REJECT;
    }
    if (seq != st.seq) {
        fsm_set_msg(why, whylen,
                    "operation %" PRId64 ": step %" PRId64 " is not the next step (%d is)", op, seq,
                    st.seq);
        return APPLY_REJECT;
    }
    /* the step table (opsm.c) makes a retried or resumed step harmless: a second "done" is
     * refused */
    if (!dw_step_move_ok(st.status, to)) {
        fsm_set_msg(why, whylen, "operation %" PRId64 " step %d: %s -> %s not allowed", op, st.seq,
                    dw_step_status_name(st.status), dw_step_status_name(to));
        return APPLY_REJECT;
    }

    if (to == DW_STEP_STARTED) {
        s = fsm_stmt(f, ST_STEP_START);
        sqlite3_bind_int64(s, 1, op);
        sqlite3_bind_int(s, 2, st.seq);
        sqlite3_bind_int64(s, 3, ts);
    } else {
        s = fsm_stmt(f, ST_STEP_FINISH);
        sqlite3_bind_int64(s, 1, op);
        sqlite3_bind_int(s, 2, st.seq);
        fsm_bind_text(s, 3, dw_step_status_name(to));
        sqlite3_bind_int64(s, 4, ts);
        if (detail != NULL)
            fsm_bind_text(s, 5, detail->valuestring);
    }
    if (fsm_run(s) != 0)
        return APPLY_SQL_ERROR;
    if (fsm_history(f, ts, "step", "%s: #%" PRId64 " step %d %s %s: %s%s%s", o.grp, op, st.seq,
                    dw_step_action_name(st.action), st.target, dw_step_status_name(to),
                    detail ? " - " : "", detail ? detail->valuestring : "") != 0)
        return APPLY_SQL_ERROR;

    if (to == DW_STEP_FAILED)
        return fsm_fail_operation(f, &o, &st, ts, why, whylen);
    if (to == DW_STEP_DONE) {
        rc = fsm_step_next(f, op, &st);
        if (rc < 0)
            return APPLY_SQL_ERROR;
        if (rc == 0)
            return fsm_complete_operation(f, &o, ts, why, whylen);
    }
    return APPLY_OK;
}

static int apply_leader(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    int64_t node;

    if (!json_int(e, "node", &node) || node < 1) {
        fsm_set_msg(why, whylen, "malformed leader entry");
        return APPLY_REJECT;
    }
    if (fsm_meta_add(f, "leader_epoch", 1) != 0 ||
        fsm_history(f, ts, "leader", "node %" PRId64 " took office", node) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
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
        fsm_set_msg(why, whylen, "malformed hold entry");
        return APPLY_REJECT;
    }
    if (dw_config_group_index(f->cfg, group->valuestring) < 0) {
        fsm_set_msg(why, whylen, "hold release for unknown group \"%.64s\"", group->valuestring);
        return APPLY_REJECT;
    }
    if (fsm_group_get(f, group->valuestring, &active, &hold) != 0)
        return APPLY_SQL_ERROR;
    fsm_released_key(key, sizeof key, group->valuestring);
    s = fsm_stmt(f, ST_OP_MAX);
    fsm_bind_text(s, 1, group->valuestring);
    if (fsm_scalar(s, &last_op) != 0)
        return APPLY_SQL_ERROR;
    s = fsm_stmt(f, ST_META_PUT);
    fsm_bind_text(s, 1, key);
    sqlite3_bind_int64(s, 2, last_op);
    if (fsm_run(s) != 0 || fsm_group_hold(f, group->valuestring, "") != 0 ||
        fsm_event(f, ts, "hold_released", group->valuestring, "%s: hold %s by %.64s",
                  group->valuestring, hold ? "released" : "release (was not held)",
                  by->valuestring) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

static bool edge_configured(const struct dw_fsm *f, const char *id)
{
    return f->n_edge_ids > 0 && bsearch(&id, f->edge_ids, (size_t)f->n_edge_ids,
                                        sizeof *f->edge_ids, fsm_cmp_str_ptr) != NULL;
}

/* The leader's view of Edges as Genesys reports them. Edges absent from the entry keep their
 * last state and its time (a large view is split over several entries). */
static int apply_cloud(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const cJSON *edges = cJSON_GetObjectItemCaseSensitive(e, "edges");
    const cJSON *it;
    int64_t cv;

    if (!json_int(e, "cv", &cv) || !cJSON_IsObject(edges)) {
        fsm_set_msg(why, whylen, "malformed cloud entry");
        return APPLY_REJECT;
    }
    if (stale(f, e))
        return APPLY_OK;
    cJSON_ArrayForEach(it, edges) {
        enum dw_health h;

        if (!cJSON_IsString(it) || dw_cloud_report_parse(it->valuestring, &h, NULL) != 0) {
            fsm_set_msg(why, whylen, "cloud entry: bad state for Edge %s",
                        it->string ? it->string : "?");
            return APPLY_REJECT;
        }
    }
    cJSON_ArrayForEach(it, edges) {
        sqlite3_stmt *s;

        if (it->string == NULL || !edge_configured(f, it->string))
            continue;
        s = fsm_stmt(f, ST_CLOUD_UPSERT);
        fsm_bind_text(s, 1, it->string);
        fsm_bind_text(s, 2, it->valuestring);
        sqlite3_bind_int64(s, 3, ts);
        if (fsm_run(s) != 0)
            return APPLY_SQL_ERROR;
    }
    return APPLY_OK;
}

/* Verdicts, then planning, then the counters: an APPLY_ code. */
static int after_entry(struct dw_fsm *f, int64_t ts, char *why, size_t whylen)
{
    bool changed;
    int rc;

    if (fsm_expire_maintenance(f, ts) != 0 || fsm_update_verdicts(f, ts, &changed) != 0)
        return APPLY_SQL_ERROR;
    for (int i = 0; i < f->cfg->n_groups; i++) {
        rc = fsm_plan_group(f, &f->cfg->groups[f->group_order[i]], ts, changed, why, whylen);
        if (rc != APPLY_OK)
            return rc;
    }
    if (fsm_meta_add(f, "applied", 1) != 0 || fsm_meta_set(f, "last_ts", ts) != 0 ||
        fsm_history_prune(f, ts) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

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
            return fsm_history(f, stamp, "time",
                               "entry stamped %.1f s after the previous one (ttl %.1f s): every "
                               "earlier observation is stale",
                               (double)(stamp - f->last_ts) / 1000, (double)ttl / 1000);
        return 0;
    }
    *ts = f->last_ts + (stamp > f->last_stamp ? stamp - f->last_stamp : 0);
    /* one row when stamps fall behind, not one per entry while they stay behind */
    if (f->last_ts - stamp > ttl && f->last_ts - f->last_stamp <= ttl)
        return fsm_history(f, *ts, "time",
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
        fsm_set_msg(why, whylen, "entry is not a JSON object");
        return APPLY_REJECT;
    }
    if (json_int(e, "ts", &v))
        *ts = v;
    if (json_int(e, "v", &v) && v > DW_ENTRY_VERSION) {
        /* Written by a newer drwatchd: refusing it would leave this node's state unlike the
         * upgraded nodes', so this node stops until it is upgraded. */
        fsm_set_msg(why, whylen, "entry version %lld is newer than this drwatchd understands "
                    "(%d): upgrade this node", (long long)v, DW_ENTRY_VERSION);
        return APPLY_TOO_NEW;
    }
    if (!json_int(e, "v", &v) || v != DW_ENTRY_VERSION) {
        fsm_set_msg(why, whylen, "unsupported entry version");
        return APPLY_REJECT;
    }
    if (!json_int(e, "ts", &stamp) || !json_int(e, "by", &by)) {
        fsm_set_msg(why, whylen, "entry is not stamped");
        return APPLY_REJECT;
    }
    if (!cJSON_IsString(type)) {
        fsm_set_msg(why, whylen, "entry has no type");
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
    else if (strcmp(type->valuestring, "maintenance") == 0)
        rc = fsm_apply_maintenance(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "operate") == 0)
        rc = fsm_apply_operate(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "config") == 0)
        rc = fsm_apply_config(f, e, *ts, why, whylen);
    else if (strcmp(type->valuestring, "notified") == 0)
        rc = fsm_apply_notified(f, e, *ts, why, whylen);
    else {
        fsm_set_msg(why, whylen, "unknown entry type \"%.32s\"", type->valuestring);
        return APPLY_REJECT;
    }
    if (rc != APPLY_OK)
        return rc;
    rc = after_entry(f, *ts, why, whylen);
    if (rc != APPLY_OK)
        return rc;
    if (fsm_meta_set(f, "last_stamp", stamp) != 0)
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
    if (fsm_history(f, ts, "rejected", "%s", why) != 0 || fsm_meta_add(f, "rejected", 1) != 0 ||
        exec(f, "COMMIT") != 0) {
        exec(f, "ROLLBACK");
        return -1;
    }
    fsm_load_counters(f);
    return 0;
}

/* This node could not apply what every other node applies: nothing is kept, the caller must
 * stop and replay rather than diverge. */
static int fatal(struct dw_fsm *f, const char *what)
{
    fsm_set_msg(f->error, sizeof f->error, "%s: %s", what, sqlite3_errmsg(f->db));
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
        fsm_config_settle(f, true);
        fsm_load_counters(f);
        return DW_FSM_APPLIED;
    }
    fsm_config_settle(f, false);
    if (rc == APPLY_SQL_ERROR || rc == APPLY_OK) {
        rc = fatal(f, rc == APPLY_OK ? "commit" : "database error");
        exec(f, "ROLLBACK");
        return rc;
    }
    if (rc == APPLY_TOO_NEW) {
        exec(f, "ROLLBACK");
        fsm_set_msg(f->error, sizeof f->error, "%s", why);
        return DW_FSM_FATAL;
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
