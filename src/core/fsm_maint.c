/* Owns maintenance windows: set and cleared through the log, lifted by expiry at the first entry
 * whose time reaches them, so every node lifts one at the same index. */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fsm_internal.h"

static bool scope_known(const struct dw_fsm *f, const char *scope, const char *id)
{
    if (strcmp(scope, "site") == 0)
        return fsm_site_index(f->cfg, id) >= 0;
    return strcmp(scope, "group") == 0 && dw_config_group_index(f->cfg, id) >= 0;
}

/* The group an event about a window names: the group itself, none for a site's. */
static const char *group_of(const char *scope, const char *id)
{
    return strcmp(scope, "group") == 0 ? id : "";
}

static int maint_delete(struct dw_fsm *f, const char *scope, const char *id)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_MAINT_DEL);

    fsm_bind_text(s, 1, scope);
    fsm_bind_text(s, 2, id);
    return fsm_run(s);
}

/* Operations from the next id on sweep what the window kept out. */
static int set_resync(struct dw_fsm *f, const char *group)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_SET_RESYNC);

    fsm_bind_text(s, 1, group);
    sqlite3_bind_int64(s, 2, fsm_next_op_id(f));
    return fsm_run(s);
}

/* A window ended: each group it covered checks what it left in service (a target skipped by
 * every operation meanwhile may be on). */
static int resync(struct dw_fsm *f, const char *scope, const char *id)
{
    for (int i = 0; i < f->cfg->n_groups; i++) {
        const struct dw_group *g = &f->cfg->groups[i];
        bool hit = strcmp(scope, "group") == 0 && strcmp(g->id, id) == 0;

        for (int t = 0; !hit && strcmp(scope, "site") == 0 && t < g->n_targets; t++)
            hit = g->targets[t].site >= 0 && strcmp(f->cfg->sites[g->targets[t].site].id, id) == 0;
        if (hit && set_resync(f, g->id) != 0)
            return -1;
    }
    return 0;
}

int fsm_apply_maintenance(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const char *action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "action"));
    const char *scope = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "scope"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "id"));
    const char *by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "by_operator"));
    const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "reason"));
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(e, "ttl_ms");
    bool set = action && strcmp(action, "set") == 0;
    sqlite3_stmt *s;
    int was;

    if (action == NULL || (!set && strcmp(action, "clear") != 0) || scope == NULL || id == NULL ||
        by == NULL || (set && (reason == NULL || reason[0] == '\0' || !cJSON_IsNumber(ttl) ||
                               ttl->valuedouble < DW_MAINT_TTL_MIN ||
                               ttl->valuedouble > DW_MAINT_TTL_MAX))) {
        fsm_set_msg(why, whylen, "malformed maintenance entry");
        return APPLY_REJECT;
    }
    if (!scope_known(f, scope, id)) {
        fsm_set_msg(why, whylen, "maintenance: no %.8s \"%.64s\"", scope, id);
        return APPLY_REJECT;
    }
    if ((was = fsm_in_maintenance(f, scope, id)) < 0)
        return APPLY_SQL_ERROR;
    if (!set) {
        if (maint_delete(f, scope, id) != 0 || (was && resync(f, scope, id) != 0) ||
            fsm_event(f, ts, "maintenance_cleared", group_of(scope, id),
                      "%s %s: maintenance %s by %.64s", scope, id,
                      was ? "cleared" : "clear (was not in maintenance)", by) != 0)
            return APPLY_SQL_ERROR;
        return APPLY_OK;
    }
    s = fsm_stmt(f, ST_MAINT_PUT);
    fsm_bind_text(s, 1, scope);
    fsm_bind_text(s, 2, id);
    fsm_bind_text(s, 3, reason);
    fsm_bind_text(s, 4, by);
    sqlite3_bind_int64(s, 5, ts);
    sqlite3_bind_int64(s, 6, ts + (int64_t)ttl->valuedouble);
    if (fsm_run(s) != 0 ||
        fsm_event(f, ts, "maintenance_set", group_of(scope, id),
                  "%s %s: maintenance %s by %.64s for %.0f %s: %.200s", scope, id,
                  was ? "extended" : "set", by,
                  ttl->valuedouble < 60000 ? ttl->valuedouble / 1000 : ttl->valuedouble / 60000,
                  ttl->valuedouble < 60000 ? "s" : "min", reason) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

int fsm_expire_maintenance(struct dw_fsm *f, int64_t ts)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_MAINT_EXPIRED);
    char scope[16][8], id[16][DW_ID_MAX];
    int n = 0, rc;

    /* a handful expire at once at most; the rest go at the next entry */
    sqlite3_bind_int64(s, 1, ts);
    while (n < 16 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        snprintf(scope[n], sizeof scope[n], "%s", fsm_col_text(s, 0));
        snprintf(id[n], sizeof id[n], "%s", fsm_col_text(s, 1));
        n++;
    }
    sqlite3_reset(s);
    for (int i = 0; i < n; i++) {
        if (maint_delete(f, scope[i], id[i]) != 0 || resync(f, scope[i], id[i]) != 0 ||
            fsm_event(f, ts, "maintenance_expired", group_of(scope[i], id[i]),
                      "%s %s: maintenance expired", scope[i], id[i]) != 0)
            return -1;
    }
    return 0;
}

/* Drops the windows of sites and groups a new config no longer has. */
int fsm_maintenance_prune(struct dw_fsm *f)
{
    sqlite3_stmt *s;
    char scope[DW_MAX_GROUPS][8], id[DW_MAX_GROUPS][DW_ID_MAX];
    int n, rc;

again:
    n = 0;
    if (sqlite3_prepare_v2(f->db, "SELECT scope, id FROM maintenance ORDER BY scope, id", -1, &s,
                           NULL) != SQLITE_OK)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < DW_MAX_GROUPS) {
        const char *sc = fsm_col_text(s, 0), *i = fsm_col_text(s, 1);

        if (scope_known(f, sc, i))
            continue;
        snprintf(scope[n], sizeof scope[n], "%s", sc);
        snprintf(id[n], sizeof id[n], "%s", i);
        n++;
    }
    sqlite3_finalize(s);
    for (int k = 0; k < n; k++) {
        if (maint_delete(f, scope[k], id[k]) != 0)
            return -1;
    }
    if (n == DW_MAX_GROUPS)
        goto again;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int dw_fsm_site_maintenance(struct dw_fsm *f, int site)
{
    if (site < 0 || site >= f->cfg->n_sites)
        return 0;
    return fsm_in_maintenance(f, "site", f->cfg->sites[site].id);
}

int dw_fsm_group_state(struct dw_fsm *f, int group, struct dw_group_state *out)
{
    struct group_row r;
    int m;

    memset(out, 0, sizeof *out);
    if (group < 0 || group >= f->cfg->n_groups)
        return -1;
    if (fsm_group_row(f, f->cfg->groups[group].id, &r) != 0 ||
        (m = fsm_in_maintenance(f, "group", f->cfg->groups[group].id)) < 0)
        return -1;
    out->held = r.hold;
    out->flapping = r.hold && strcmp(r.hold_reason, "flapping") == 0;
    out->pinned = r.pinned;
    out->maintenance = m == 1;
    out->failback_failures = r.fb_failures;
    return 0;
}

cJSON *dw_fsm_maintenance_json(struct dw_fsm *f)
{
    cJSON *list = cJSON_CreateArray();
    sqlite3_stmt *s;

    if (list == NULL || sqlite3_prepare_v2(f->db, "SELECT scope, id, reason, owner, since, expires"
                                           " FROM maintenance ORDER BY scope, id", -1, &s,
                                           NULL) != SQLITE_OK) {
        cJSON_Delete(list);
        return NULL;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        cJSON *m = cJSON_CreateObject();

        cJSON_AddStringToObject(m, "scope", fsm_col_text(s, 0));
        cJSON_AddStringToObject(m, "id", fsm_col_text(s, 1));
        cJSON_AddStringToObject(m, "reason", fsm_col_text(s, 2));
        cJSON_AddStringToObject(m, "owner", fsm_col_text(s, 3));
        cJSON_AddNumberToObject(m, "since", (double)sqlite3_column_int64(s, 4));
        cJSON_AddNumberToObject(m, "expires", (double)sqlite3_column_int64(s, 5));
        cJSON_AddItemToArray(list, m);
    }
    sqlite3_finalize(s);
    return list;
}
