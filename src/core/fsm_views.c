/* Owns the FSM's read-only views: queries, the dump, the status and history JSON. */

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/strbuf.h"
#include "drwatch/verdict.h"
#include "fsm_internal.h"

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
    {"config", "version"},
    {"events", "id"},
    {"deliveries", "event, channel"},
};

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
        fsm_site_verdict_by_id(f, f->cfg->sites[site].id, &h) != 0)
        return DW_UNKNOWN;
    return h;
}

enum dw_health dw_fsm_probe_verdict(struct dw_fsm *f, int site)
{
    enum dw_health h = DW_UNKNOWN;

    if (site < 0 || site >= f->cfg->n_sites ||
        fsm_site_row(f, f->cfg->sites[site].id, NULL, &h, NULL) != 0)
        return DW_UNKNOWN;
    return h;
}

enum dw_health dw_fsm_cloud_verdict(struct dw_fsm *f, int site)
{
    enum dw_health h = DW_UNKNOWN;

    if (site < 0 || site >= f->cfg->n_sites ||
        fsm_site_row(f, f->cfg->sites[site].id, NULL, NULL, &h) != 0)
        return DW_UNKNOWN;
    return h;
}

int dw_fsm_active_target(struct dw_fsm *f, int group)
{
    int active;
    bool hold;

    if (group < 0 || group >= f->cfg->n_groups ||
        fsm_group_get(f, f->cfg->groups[group].id, &active, &hold) != 0)
        return -1;
    return active;
}

int dw_fsm_next_steps(struct dw_fsm *f, struct dw_step_ref *out, int max)
{
    sqlite3_stmt *s;
    int n = 0, rc = SQLITE_DONE;

    if (max <= 0)
        return 0;
    s = fsm_stmt(f, ST_NEXT_STEPS);
    while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct dw_step_ref *r = &out[n++];
        int g = dw_config_group_index(f->cfg, fsm_col_text(s, 1));

        memset(r, 0, sizeof *r);
        r->op = sqlite3_column_int64(s, 0);
        r->seq = sqlite3_column_int(s, 2);
        snprintf(r->action, sizeof r->action, "%s", fsm_col_text(s, 3));
        r->group = g;
        r->target = g >= 0 ? fsm_target_index(&f->cfg->groups[g], fsm_col_text(s, 4)) : -1;
        if (dw_step_status_parse(fsm_col_text(s, 5), &r->status) != 0)
            r->status = DW_STEP_PENDING;
        r->n_steps = sqlite3_column_int(s, 6);
    }
    if (n < max && rc != SQLITE_DONE)
        n = -1;
    sqlite3_reset(s);
    return n;
}

int dw_fsm_group_write_unsettled(struct dw_fsm *f, int group, int64_t op)
{
    if (group < 0 || group >= f->cfg->n_groups)
        return 0;
    sqlite3_stmt *s = fsm_stmt(f, ST_WRITE_UNSETTLED);
    fsm_bind_text(s, 1, f->cfg->groups[group].id);
    sqlite3_bind_int64(s, 2, op);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static void dump_value(struct dw_strbuf *b, sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_NULL:
        dw_strbuf_add(b, "NULL");
        break;
    case SQLITE_INTEGER:
        dw_strbuf_add(b, "%lld", (long long)sqlite3_column_int64(s, col));
        break;
    case SQLITE_FLOAT:
        dw_strbuf_add(b, "%.17g", sqlite3_column_double(s, col));
        break;
    case SQLITE_BLOB: {
        const unsigned char *p = sqlite3_column_blob(s, col);
        int n = sqlite3_column_bytes(s, col);

        dw_strbuf_add(b, "x'");
        for (int i = 0; i < n; i++)
            dw_strbuf_add(b, "%02x", p[i]);
        dw_strbuf_add(b, "'");
        break;
    }
    default:
        dw_strbuf_add(b, "%s", fsm_col_text(s, col));
        break;
    }
}

char *dw_fsm_dump_max(struct dw_fsm *f, size_t max)
{
    struct dw_strbuf b = {0};

    f->error[0] = '\0';
    dw_strbuf_add(&b, "%s", "");
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
                fsm_set_msg(f->error, sizeof f->error,
                            "dump: the state is larger than %zu bytes; read it with history", max);
                goto fail;
            }
            dw_strbuf_add(&b, "%s", dump_tables[t].table);
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                dw_strbuf_add(&b, "|%s=", sqlite3_column_name(s, c));
                dump_value(&b, s, c);
            }
            dw_strbuf_add(&b, "\n");
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
        fsm_set_msg(f->error, sizeof f->error, "dump: %s",
                    b.oom ? "out of memory" : sqlite3_errmsg(f->db));
    free(b.p);
    return NULL;
}

char *dw_fsm_dump(struct dw_fsm *f)
{
    return dw_fsm_dump_max(f, 0);
}

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
        return cJSON_AddStringToObject(obj, name, fsm_col_text(s, col)) != NULL;
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
    fsm_bind_text(s, 1, site);
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        struct dw_observation obs = {
            .present = true,
            .state = fsm_health_of(fsm_col_text(s, 1)),
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
            fsm_cloud_edge_state(f, e, f->last_ts, &h, &ts, &fresh, &disc) != 0 ||
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
        fsm_bind_text(s, 1, site->id);
        ok = sqlite3_step(s) == SQLITE_ROW && json_add_col(o, "id", s, 0) &&
             json_add_col(o, "verdict", s, 1) && json_add_col(o, "since", s, 2) &&
             json_add_col(o, "probe_verdict", s, 3) && json_add_col(o, "cloud_verdict", s, 4) &&
             cJSON_AddStringToObject(o, "combine", fsm_combine_name(site->combine)) &&
             cJSON_AddStringToObject(o, "rule", fsm_rule_name(site->rule)) &&
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
        struct group_row r;
        int m;

        ok = o != NULL && cJSON_AddItemToArray(arr, o) && fsm_group_row(f, g->id, &r) == 0 &&
             (m = fsm_in_maintenance(f, "group", g->id)) >= 0 &&
             cJSON_AddStringToObject(o, "id", g->id) &&
             (r.active >= 0 && r.active < g->n_targets
                  ? cJSON_AddStringToObject(o, "active", g->targets[r.active].id) != NULL
                  : cJSON_AddNullToObject(o, "active") != NULL) &&
             cJSON_AddBoolToObject(o, "hold", r.hold) &&
             cJSON_AddStringToObject(o, "hold_reason", r.hold_reason) &&
             cJSON_AddStringToObject(o, "failback", g->failback == DW_FAILBACK_MANUAL ? "manual"
                                                                                    : "auto") &&
             cJSON_AddBoolToObject(o, "pinned", r.pinned) &&
             cJSON_AddNumberToObject(o, "failback_failures", r.fb_failures) &&
             cJSON_AddNumberToObject(o, "failback_retry_at", (double)r.fb_retry_at) &&
             cJSON_AddBoolToObject(o, "maintenance", m == 1);
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
        "SELECT id, grp, kind, from_target, to_target, status, created, finished, reason,"
        " operator FROM operations WHERE status = 'running' OR id IN"
        " (SELECT id FROM operations WHERE status <> 'running' ORDER BY id DESC LIMIT 10)"
        " ORDER BY id DESC";
    static const char *const cols[] = {"id", "group", "kind", "from", "to", "status", "created",
                                       "finished", "reason", "operator"};
    cJSON *arr = cJSON_AddArrayToObject(root, "operations");
    sqlite3_stmt *s;
    bool ok = arr != NULL;

    if (!ok || sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();

        ok = o != NULL && cJSON_AddItemToArray(arr, o);
        for (int c = 0; ok && c < 10; c++)
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
        !status_nodes(f, root) || !status_groups(f, root) || !status_operations(f, root) ||
        !cJSON_AddItemToObject(root, "maintenance", dw_fsm_maintenance_json(f))) {
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

int64_t dw_fsm_node_refreshed(struct dw_fsm *f, uint64_t node)
{
    sqlite3_stmt *s;
    int64_t at = -1;

    if (sqlite3_prepare_v2(f->db, "SELECT last_refresh FROM nodes WHERE id = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)node);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        at = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return at;
}
