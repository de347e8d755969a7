/* Owns the event journal: events the notifier delivers, deliveries confirmed through the log. */

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fsm_internal.h"

static const char *const event_kinds[] = {
    "failover",        "failback",        "switchover",          "rollback",
    "operation_failed", "hold",           "hold_released",       "maintenance_set",
    "maintenance_cleared", "maintenance_expired", "no_target_up",
};

bool dw_event_kind_known(const char *kind)
{
    for (size_t i = 0; kind != NULL && i < sizeof event_kinds / sizeof event_kinds[0]; i++) {
        if (strcmp(kind, event_kinds[i]) == 0)
            return true;
    }
    return false;
}

/* The history kind existing readers know the event by. */
static const char *history_kind(const char *kind)
{
    if (strncmp(kind, "hold", 4) == 0)
        return "hold";
    if (strncmp(kind, "maintenance", 11) == 0)
        return "maintenance";
    return "operation";
}

/* with_history: the history row too, under the kind existing readers know it by. */
static int event_v(struct dw_fsm *f, int64_t ts, const char *kind, const char *group,
                   bool with_history, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

static int event_v(struct dw_fsm *f, int64_t ts, const char *kind, const char *group,
                   bool with_history, const char *fmt, va_list ap)
{
    char summary[DW_EVENT_SUMMARY_MAX];
    sqlite3_stmt *s;

    vsnprintf(summary, sizeof summary, fmt, ap);
    f->in_event = true;
    int rc = with_history ? fsm_history(f, ts, history_kind(kind), "%s", summary) : 0;
    f->in_event = false;
    if (rc != 0)
        return -1;
    if (f->record_cb != NULL)
        f->record_cb(f->record_data, &(struct dw_fsm_record){.ts = ts, .kind = kind,
                                                             .group = group, .detail = summary});
    if (!dw_event_kind_known(kind))
        return 0;
    s = fsm_stmt(f, ST_EVENT_ADD);
    sqlite3_bind_int64(s, 1, ts);
    fsm_bind_text(s, 2, kind);
    fsm_bind_text(s, 3, group);
    fsm_bind_text(s, 4, summary);
    return fsm_run(s);
}

int fsm_event(struct dw_fsm *f, int64_t ts, const char *kind, const char *group,
              const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = event_v(f, ts, kind, group, true, fmt, ap);
    va_end(ap);
    return rc;
}

int fsm_event_note(struct dw_fsm *f, int64_t ts, const char *kind, const char *group,
                   const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = event_v(f, ts, kind, group, false, fmt, ap);
    va_end(ap);
    return rc;
}

int fsm_events_prune(struct dw_fsm *f)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_EVENT_PRUNE_LAST);
    int64_t last = 0;

    if (fsm_scalar(s, &last) != 0)
        return -1;
    if (last == 0)
        return 0;
    s = fsm_stmt(f, ST_DELIVERY_PRUNE);
    sqlite3_bind_int64(s, 1, last);
    if (fsm_run(s) != 0)
        return -1;
    s = fsm_stmt(f, ST_EVENT_PRUNE);
    sqlite3_bind_int64(s, 1, last);
    return fsm_run(s);
}

/* A delivery confirmed by the leader's notifier. A second confirmation (a new leader resent
 * what the old one had sent) and an event pruned meanwhile change nothing: neither is an error
 * worth a rejected row. */
int fsm_apply_notified(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(e, "event");
    const cJSON *channel = cJSON_GetObjectItemCaseSensitive(e, "channel");
    int64_t id, n = 0;
    sqlite3_stmt *s;

    if (!cJSON_IsNumber(ev) || ev->valuedouble < 1 || ev->valuedouble > 9007199254740992.0 ||
        ev->valuedouble != (double)(int64_t)ev->valuedouble || !cJSON_IsString(channel) ||
        channel->valuestring[0] == '\0' || strlen(channel->valuestring) >= DW_ID_MAX) {
        fsm_set_msg(why, whylen, "malformed notified entry");
        return APPLY_REJECT;
    }
    id = (int64_t)ev->valuedouble;
    s = fsm_stmt(f, ST_EVENT_EXISTS);
    sqlite3_bind_int64(s, 1, id);
    if (fsm_scalar(s, &n) != 0)
        return APPLY_SQL_ERROR;
    if (n == 0)
        return APPLY_OK;
    s = fsm_stmt(f, ST_DELIVERY_ADD);
    sqlite3_bind_int64(s, 1, id);
    fsm_bind_text(s, 2, channel->valuestring);
    sqlite3_bind_int64(s, 3, ts);
    return fsm_run(s) == 0 ? APPLY_OK : APPLY_SQL_ERROR;
}

int dw_fsm_undelivered(struct dw_fsm *f, const char *channel, int64_t since,
                       struct dw_event *out, int max, int64_t *pending)
{
    static const char sql[] =
        "SELECT id, ts, kind, grp, summary, COUNT(*) OVER () FROM events e WHERE ts > ?2"
        " AND NOT EXISTS(SELECT 1 FROM deliveries d WHERE d.event = e.id AND d.channel = ?1)"
        " ORDER BY id";
    sqlite3_stmt *s;
    int n = 0, rc;

    if (pending != NULL)
        *pending = 0;
    if (sqlite3_prepare_v2(f->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    fsm_bind_text(s, 1, channel);
    sqlite3_bind_int64(s, 2, since);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct dw_event *ev;

        if (pending != NULL)
            *pending = sqlite3_column_int64(s, 5);
        if (n >= max)
            break;
        ev = &out[n++];
        ev->id = sqlite3_column_int64(s, 0);
        ev->ts = sqlite3_column_int64(s, 1);
        snprintf(ev->kind, sizeof ev->kind, "%s", fsm_col_text(s, 2));
        snprintf(ev->group, sizeof ev->group, "%s", fsm_col_text(s, 3));
        snprintf(ev->summary, sizeof ev->summary, "%s", fsm_col_text(s, 4));
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? n : -1;
}

void dw_event_time(int64_t ts, char *buf, size_t len)
{
    time_t sec = (time_t)(ts / 1000);
    struct tm tm;

    if (gmtime_r(&sec, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, len, "%" PRId64, ts);
        return;
    }
    snprintf(buf + strlen(buf), len - strlen(buf), ".%03dZ", (int)(ts % 1000));
}

cJSON *dw_event_json(const struct dw_event *ev, const char *cluster)
{
    cJSON *o = cJSON_CreateObject();
    char when[40];

    dw_event_time(ev->ts, when, sizeof when);
    if (o == NULL || !cJSON_AddNumberToObject(o, "v", 1) ||
        !cJSON_AddNumberToObject(o, "id", (double)ev->id) ||
        !cJSON_AddNumberToObject(o, "ts", (double)ev->ts) ||
        !cJSON_AddStringToObject(o, "time", when) ||
        !cJSON_AddStringToObject(o, "kind", ev->kind) ||
        !cJSON_AddStringToObject(o, "group", ev->group) ||
        !cJSON_AddStringToObject(o, "summary", ev->summary) ||
        !cJSON_AddStringToObject(o, "cluster", cluster != NULL ? cluster : "")) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* What a history row is about, from its detail's prefix: "G: " for operations, steps and holds,
 * "S: " for verdicts and signals, "group G: " or "site S: " for maintenance. */
static void history_subject(const struct dw_config *cfg, const char *kind, const char *detail,
                            char *out, size_t len)
{
    const char *colon = strstr(detail, ": ");
    size_t n = colon ? (size_t)(colon - detail) : 0;
    char head[DW_ID_MAX + 8];

    out[0] = '\0';
    if (n == 0 || n >= sizeof head)
        return;
    memcpy(head, detail, n);
    head[n] = '\0';
    if (strcmp(kind, "maintenance") == 0) {
        if (strncmp(head, "group ", 6) == 0 || strncmp(head, "site ", 5) == 0)
            snprintf(out, len, "%s", head);
        return;
    }
    if (strcmp(kind, "verdict") == 0 || strcmp(kind, "signal") == 0) {
        if (dw_config_site_index(cfg, head) >= 0)
            snprintf(out, len, "site %s", head);
        return;
    }
    for (int g = 0; g < cfg->n_groups; g++) {
        if (strcmp(cfg->groups[g].id, head) == 0) {
            snprintf(out, len, "group %s", head);
            return;
        }
    }
}

/* Whether subject concerns group g: the group itself or a site one of its targets runs at. */
static bool subject_of_group(const struct dw_config *cfg, int g, const char *subject)
{
    const struct dw_group *grp = &cfg->groups[g];

    if (strncmp(subject, "group ", 6) == 0)
        return strcmp(subject + 6, grp->id) == 0;
    if (strncmp(subject, "site ", 5) != 0)
        return false;
    for (int t = 0; t < grp->n_targets; t++) {
        int s = grp->targets[t].site;

        if (s >= 0 && s < cfg->n_sites && strcmp(cfg->sites[s].id, subject + 5) == 0)
            return true;
    }
    return false;
}

cJSON *dw_fsm_history_query(struct dw_fsm *f, const struct dw_history_query *q, int64_t *newest)
{
    static const char asc[] = "SELECT id, ts, kind, detail FROM history WHERE id > ?1 AND ts >= ?2"
                              " ORDER BY id";
    static const char desc[] = "SELECT id, ts, kind, detail FROM history WHERE id > ?1"
                               " AND ts >= ?2 ORDER BY id DESC";
    const struct dw_config *cfg = f->cfg;
    int g = dw_config_group_index(cfg, q->group), limit = q->limit > 0 && q->limit < DW_FSM_HISTORY_MAX ? q->limit
                                                                        : DW_FSM_HISTORY_MAX;
    cJSON *rows = cJSON_CreateArray();
    sqlite3_stmt *s;
    bool ok = rows != NULL;
    int n = 0, rc = SQLITE_DONE;

    s = fsm_stmt(f, ST_HISTORY_NEWEST);
    if (!ok || fsm_scalar(s, newest) != 0 ||
        sqlite3_prepare_v2(f->db, q->oldest_first ? asc : desc, -1, &s, NULL) != SQLITE_OK) {
        cJSON_Delete(rows);
        return NULL;
    }
    sqlite3_bind_int64(s, 1, q->after);
    sqlite3_bind_int64(s, 2, q->since);
    while (ok && n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *kind = fsm_col_text(s, 2), *detail = fsm_col_text(s, 3);
        char subject[DW_ID_MAX + 16], when[40];
        cJSON *o;

        history_subject(cfg, kind, detail, subject, sizeof subject);
        if (q->group != NULL && (g < 0 || !subject_of_group(cfg, g, subject)))
            continue;
        dw_event_time(sqlite3_column_int64(s, 1), when, sizeof when);
        ok = (o = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(rows, o) &&
             cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(s, 0)) &&
             cJSON_AddNumberToObject(o, "ts", (double)sqlite3_column_int64(s, 1)) &&
             cJSON_AddStringToObject(o, "time", when) && cJSON_AddStringToObject(o, "kind", kind) &&
             cJSON_AddStringToObject(o, "subject", subject) &&
             cJSON_AddStringToObject(o, "detail", detail);
        n++;
    }
    sqlite3_finalize(s);
    if (!ok || (rc != SQLITE_ROW && rc != SQLITE_DONE)) {
        cJSON_Delete(rows);
        return NULL;
    }
    return rows;
}
