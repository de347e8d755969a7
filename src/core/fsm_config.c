/* Owns the committed cluster configuration in the FSM: the config table, config entries, and
 * the derived indexes (Edge ids, site and group order) the other FSM files read. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_internal.h"

/* Before the first config entry: no members, sites or groups; time rules need a TTL and
 * history pruning its limits, so those carry their defaults. */
static const struct dw_config *empty_config(void)
{
    static struct dw_config empty;
    empty.cluster.observation_ttl_ms = 15000;
    empty.cluster.history_retention_days = 90;
    empty.cluster.history_max_rows = 100000;
    return &empty;
}

static const char **index_edges(const struct dw_config *cfg, int *n_out)
{
    int n = 0;

    *n_out = 0;
    for (int i = 0; i < cfg->n_sites; i++)
        n += cfg->sites[i].n_edges;
    const char **ids = calloc(n > 0 ? (size_t)n : 1, sizeof *ids);
    if (ids == NULL)
        return NULL;
    for (int i = 0; i < cfg->n_sites; i++)
        for (int j = 0; j < cfg->sites[i].n_edges; j++)
            ids[(*n_out)++] = cfg->sites[i].edges[j].id;
    qsort(ids, (size_t)*n_out, sizeof *ids, fsm_cmp_str_ptr);
    return ids;
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
    qsort(slot, (size_t)n, sizeof slot[0], fsm_cmp_str_ptr);
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

static void free_owned(struct dw_config *cfg)
{
    dw_config_free(cfg);
    free(cfg);
}

/* Makes cfg the FSM's configuration (owned: freed with it, NULL for a caller's seed). The one it
 * replaces is kept in f->undo until fsm_config_settle. */
static int install(struct dw_fsm *f, const struct dw_config *cfg, struct dw_config *owned,
                   int64_t version)
{
    int n_edges;
    const char **edges = index_edges(cfg, &n_edges);

    if (edges == NULL)
        return -1;
    if (!f->undo.pending) {
        f->undo.pending = true;
        f->undo.cfg = f->cfg;
        f->undo.owned = f->owned;
        f->undo.version = f->cfg_version;
        f->undo.edge_ids = f->edge_ids;
        f->undo.n_edge_ids = f->n_edge_ids;
    } else {
        /* a second install before settling: the intermediate one is dropped */
        free(f->edge_ids);
        if (f->owned)
            free_owned(f->owned);
    }
    f->cfg = cfg;
    f->owned = owned;
    f->cfg_version = version;
    f->edge_ids = edges;
    f->n_edge_ids = n_edges;
    order_by_id(f->site_order, cfg->n_sites, site_id, cfg);
    order_by_id(f->group_order, cfg->n_groups, group_id, cfg);
    return 0;
}

void fsm_config_settle(struct dw_fsm *f, bool keep)
{
    if (!f->undo.pending)
        return;
    f->undo.pending = false;
    if (keep) {
        free(f->undo.edge_ids);
        if (f->undo.owned)
            free_owned(f->undo.owned);
        return;
    }
    free(f->edge_ids);
    if (f->owned)
        free_owned(f->owned);
    f->cfg = f->undo.cfg;
    f->owned = f->undo.owned;
    f->cfg_version = f->undo.version;
    f->edge_ids = f->undo.edge_ids;
    f->n_edge_ids = f->undo.n_edge_ids;
    order_by_id(f->site_order, f->cfg->n_sites, site_id, f->cfg);
    order_by_id(f->group_order, f->cfg->n_groups, group_id, f->cfg);
}

int fsm_config_init(struct dw_fsm *f, const struct dw_config *seed)
{
    f->seed = seed ? seed : empty_config();
    int rc = install(f, f->seed, NULL, 0);
    fsm_config_settle(f, rc == 0);
    return rc;
}

void fsm_config_close(struct dw_fsm *f)
{
    fsm_config_settle(f, true);
    free(f->edge_ids);
    if (f->owned)
        free_owned(f->owned);
}

/* Parses a committed document; NULL with why when it does not parse. */
static struct dw_config *parse_doc(const char *doc, char *why, size_t whylen)
{
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_config_errors *errs = calloc(1, sizeof *errs);

    if (cfg == NULL || errs == NULL) {
        fsm_set_msg(why, whylen, "out of memory");
        free(cfg);
        free(errs);
        return NULL;
    }
    if (dw_config_parse_cluster(doc, strlen(doc), cfg, errs) != 0) {
        fsm_set_msg(why, whylen, "%s%s", errs->n > 0 ? errs->msg[0] : "invalid",
                    errs->n > 1 ? " (and more)" : "");
        free(cfg);
        cfg = NULL;
    }
    free(errs);
    return cfg;
}

int fsm_config_read(sqlite3 *db, struct dw_config **out)
{
    sqlite3_stmt *s;
    int rc = 0;

    *out = NULL;
    if (sqlite3_prepare_v2(db, "SELECT version, doc FROM config ORDER BY version DESC LIMIT 1",
                           -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW) {
        char why[256];
        *out = parse_doc((const char *)sqlite3_column_text(s, 1), why, sizeof why);
        if (*out != NULL)
            (*out)->version = sqlite3_column_int64(s, 0);
        else
            rc = -1;
    }
    sqlite3_finalize(s);
    return rc;
}

int fsm_config_adopt(struct dw_fsm *f, struct dw_config *cfg)
{
    int rc = cfg ? install(f, cfg, cfg, cfg->version) : install(f, f->seed, NULL, 0);
    if (rc != 0 && cfg)
        free_owned(cfg);
    fsm_config_settle(f, rc == 0);
    return rc;
}

void fsm_config_discard(struct dw_config *cfg)
{
    if (cfg)
        free_owned(cfg);
}

static bool target_same(const struct dw_config *a, const struct dw_target *x,
                        const struct dw_config *b, const struct dw_target *y)
{
    const char *sx = x->site >= 0 ? a->sites[x->site].id : "";
    const char *sy = y->site >= 0 ? b->sites[y->site].id : "";

    if (strcmp(x->id, y->id) != 0 || strcmp(sx, sy) != 0 || x->n_trunk_bases != y->n_trunk_bases)
        return false;
    for (int i = 0; i < x->n_trunk_bases; i++)
        if (strcmp(x->trunk_base_ids[i], y->trunk_base_ids[i]) != 0)
            return false;
    return true;
}

static bool group_same(const struct dw_config *a, const struct dw_group *x,
                       const struct dw_config *b, const struct dw_group *y)
{
    if (x->n_targets != y->n_targets)
        return false;
    for (int i = 0; i < x->n_targets; i++)
        if (!target_same(a, &x->targets[i], b, &y->targets[i]))
            return false;
    return true;
}

static int running_op(struct dw_fsm *f, const char *group, int64_t *op)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_RUNNING);
    int rc;

    fsm_bind_text(s, 1, group);
    rc = sqlite3_step(s);
    *op = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int dw_fsm_config_check(struct dw_fsm *f, const struct dw_config *next, char *why, size_t whylen)
{
    const struct dw_config *cur = f->cfg;

    for (int i = 0; i < cur->n_groups; i++) {
        const struct dw_group *g = &cur->groups[i];
        int j = dw_config_group_index(next, g->id), active;
        bool hold;
        int64_t op;

        if (running_op(f, g->id, &op) != 0)
            return -1;
        if (op != 0 && (j < 0 || !group_same(cur, g, next, &next->groups[j]))) {
            fsm_set_msg(why, whylen, "failover_groups[%s]: operation %" PRId64 " is running on "
                        "this group; change or remove it once the operation has ended", g->id, op);
            return 1;
        }
        if (j < 0)
            continue;
        if (fsm_group_get(f, g->id, &active, &hold) != 0)
            return -1; /* every configured group has its row: this is a database error */
        if (active < 0 || active >= g->n_targets)
            continue;
        if (fsm_target_index(&next->groups[j], g->targets[active].id) < 0) {
            fsm_set_msg(why, whylen, "failover_groups[%s].targets: %s carries the group's calls "
                        "now and cannot be removed", g->id, g->targets[active].id);
            return 1;
        }
    }
    return 0;
}

/* One statement run for one key (text, or the integer when text is NULL). */
static int drop_rows(struct dw_fsm *f, const char *sql, const char *text, int64_t id)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (text)
        fsm_bind_text(s, 1, text);
    else
        sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Rows of sites, Edges, groups, members and maintenance windows the new configuration no longer
 * has go; a kept
 * group's active target follows its id to its new place in the list. */
static int reconcile_rows(struct dw_fsm *f, const struct dw_config *old)
{
    for (int i = 0; i < old->n_sites; i++) {
        const struct dw_site *site = &old->sites[i];
        if (fsm_site_index(f->cfg, site->id) < 0 &&
            (drop_rows(f, "DELETE FROM observations WHERE site = ?1", site->id, 0) != 0 ||
             drop_rows(f, "DELETE FROM sites WHERE id = ?1", site->id, 0) != 0))
            return -1;
        for (int j = 0; j < site->n_edges; j++) {
            const char *id = site->edges[j].id;
            bool kept = f->n_edge_ids > 0 && bsearch(&id, f->edge_ids, (size_t)f->n_edge_ids,
                                                     sizeof *f->edge_ids, fsm_cmp_str_ptr);
            if (!kept && drop_rows(f, "DELETE FROM cloud WHERE edge = ?1", id, 0) != 0)
                return -1;
        }
    }
    for (int i = 0; i < old->n_members; i++) {
        int64_t id = (int64_t)old->members[i].id;
        if (!dw_config_member(f->cfg, old->members[i].id) &&
            (drop_rows(f, "DELETE FROM observations WHERE node = ?1", NULL, id) != 0 ||
             drop_rows(f, "DELETE FROM nodes WHERE id = ?1", NULL, id) != 0))
            return -1;
    }
    for (int i = 0; i < old->n_groups; i++) {
        const struct dw_group *g = &old->groups[i];
        int j = dw_config_group_index(f->cfg, g->id), active;
        bool hold;

        if (j < 0) {
            if (drop_rows(f, "DELETE FROM groups WHERE id = ?1", g->id, 0) != 0)
                return -1;
            continue;
        }
        if (fsm_group_get(f, g->id, &active, &hold) != 0)
            return -1;
        if (active >= 0 && active < g->n_targets &&
            fsm_group_set(f, ST_GROUP_SET_ACTIVE, g->id,
                          fsm_target_index(&f->cfg->groups[j], g->targets[active].id)) != 0)
            return -1;
    }
    if (fsm_maintenance_prune(f) != 0)
        return -1;
    return fsm_ensure_config_rows(f);
}

int fsm_apply_config(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(e, "config");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(e, "by_operator");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(e, "reason");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(e, "format");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(e, "base");
    const struct dw_config *old = f->cfg;
    struct dw_config *next;
    sqlite3_stmt *s;
    char *text;
    int rc;

    if (!cJSON_IsObject(doc) || !cJSON_IsString(by) || !cJSON_IsString(reason) ||
        !cJSON_IsNumber(format) || !cJSON_IsNumber(base)) {
        fsm_set_msg(why, whylen, "malformed config entry");
        return APPLY_REJECT;
    }
    if (format->valuedouble > DW_CONFIG_FORMAT) {
        fsm_set_msg(why, whylen, "config format %.0f is newer than this drwatchd understands "
                    "(%d): upgrade this node", format->valuedouble, DW_CONFIG_FORMAT);
        return APPLY_TOO_NEW;
    }
    if (base->valuedouble != (double)f->cfg_version) {
        fsm_set_msg(why, whylen, "config entry replaces version %.0f, but version %" PRId64
                    " is committed (a concurrent change won)", base->valuedouble, f->cfg_version);
        return APPLY_REJECT;
    }
    text = cJSON_PrintUnformatted(doc);
    if (text == NULL)
        return APPLY_SQL_ERROR; /* out of memory: this node alone fails, it must not diverge */
    next = parse_doc(text, why, whylen);
    if (next == NULL) {
        free(text);
        return APPLY_REJECT;
    }
    next->version = f->cfg_version + 1;
    rc = dw_fsm_config_check(f, next, why, whylen);
    if (rc != 0 || install(f, next, next, next->version) != 0) {
        free(text);
        free_owned(next);
        return rc > 0 ? APPLY_REJECT : APPLY_SQL_ERROR;
    }
    /* from here the caller's rollback (fsm_config_settle) undoes the install */
    rc = sqlite3_prepare_v2(f->db, "INSERT OR REPLACE INTO config(version, doc, ts, by_operator,"
                            " reason) VALUES(?1, ?2, ?3, ?4, ?5)", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, next->version);
        fsm_bind_text(s, 2, text);
        sqlite3_bind_int64(s, 3, ts);
        fsm_bind_text(s, 4, by->valuestring);
        fsm_bind_text(s, 5, reason->valuestring);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
        sqlite3_finalize(s);
    }
    free(text);
    if (rc != 0 ||
        sqlite3_exec(f->db, "DELETE FROM config WHERE version < (SELECT MAX(version) FROM config)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        reconcile_rows(f, old) != 0 ||
        fsm_history(f, ts, "config", "config version %" PRId64 " (%s, by %s): %d sites, %d "
                    "groups, %d members", next->version, reason->valuestring, by->valuestring,
                    next->n_sites, next->n_groups, next->n_members) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

int64_t dw_fsm_config_version(const struct dw_fsm *f)
{
    return f->cfg_version;
}

const struct dw_config *dw_fsm_config(const struct dw_fsm *f)
{
    return f->cfg;
}

char *dw_fsm_config_doc(struct dw_fsm *f)
{
    sqlite3_stmt *s;
    char *out = NULL;

    if (sqlite3_prepare_v2(f->db, "SELECT doc FROM config WHERE version = ?1", -1, &s, NULL) !=
        SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(s, 1, f->cfg_version);
    if (sqlite3_step(s) == SQLITE_ROW)
        out = strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

int fsm_voters(const struct dw_config *cfg, uint64_t *ids)
{
    int n = 0;

    for (int i = 0; i < cfg->n_members && n < DW_MAX_MEMBERS; i++)
        if (!cfg->members[i].non_voter)
            ids[n++] = cfg->members[i].id;
    return n;
}
