#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "drwatch/cloudview.h"
#include "drwatch/entry.h"

#define DW_DETAIL_MAX 512
#define DW_JSON_INT_MAX 9007199254740992.0 /* 2^53: larger integers are not exact in JSON numbers */

const char *dw_step_status_name(enum dw_step_status s)
{
    switch (s) {
    case DW_STEP_PENDING:
        return "pending";
    case DW_STEP_STARTED:
        return "started";
    case DW_STEP_DONE:
        return "done";
    case DW_STEP_FAILED:
        return "failed";
    }
    return "pending";
}

int dw_step_status_parse(const char *s, enum dw_step_status *out)
{
    static const enum dw_step_status all[] = {DW_STEP_PENDING, DW_STEP_STARTED, DW_STEP_DONE,
                                              DW_STEP_FAILED};

    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, dw_step_status_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

static char *print_and_free(cJSON *root)
{
    char *out = root ? cJSON_PrintUnformatted(root) : NULL;

    cJSON_Delete(root);
    return out;
}

static cJSON *new_entry(const char *type)
{
    cJSON *root = cJSON_CreateObject();

    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "v", DW_ENTRY_VERSION) ||
        !cJSON_AddStringToObject(root, "type", type)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

char *dw_entry_observe(const struct dw_config *cfg, uint64_t node, bool tilt,
                       const enum dw_health *site_states)
{
    cJSON *root = new_entry("observe");
    cJSON *sites;

    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "node", (double)node) ||
        !cJSON_AddNumberToObject(root, "cv", (double)cfg->version) ||
        !cJSON_AddBoolToObject(root, "tilt", tilt) ||
        (sites = cJSON_AddObjectToObject(root, "sites")) == NULL)
        goto fail;
    for (int i = 0; i < cfg->n_sites; i++) {
        if (!cJSON_AddStringToObject(sites, cfg->sites[i].id, dw_health_name(site_states[i])))
            goto fail;
    }
    return print_and_free(root);
fail:
    cJSON_Delete(root);
    return NULL;
}

char *dw_entry_step(int64_t op, int seq, enum dw_step_status status, const char *detail)
{
    cJSON *root = new_entry("step");

    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "op", (double)op) ||
        !cJSON_AddNumberToObject(root, "seq", seq) ||
        !cJSON_AddStringToObject(root, "status", dw_step_status_name(status)))
        goto fail;
    if (detail != NULL) {
        char cut[DW_DETAIL_MAX + 1];
        size_t n = strlen(detail);

        /* longer details are cut at a UTF-8 boundary so the entry stays valid */
        if (n > DW_DETAIL_MAX) {
            n = DW_DETAIL_MAX;
            while (n > 0 && ((unsigned char)detail[n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(cut, detail, n);
        cut[n] = '\0';
        if (!cJSON_AddStringToObject(root, "detail", cut))
            goto fail;
    }
    return print_and_free(root);
fail:
    cJSON_Delete(root);
    return NULL;
}

char *dw_entry_config(const cJSON *doc, int64_t base, const char *by_operator,
                      const char *reason)
{
    cJSON *root = new_entry("config");
    cJSON *copy = cJSON_Duplicate(doc, true);

    if (root == NULL || copy == NULL ||
        !cJSON_AddNumberToObject(root, "format", DW_CONFIG_FORMAT) ||
        !cJSON_AddNumberToObject(root, "base", (double)base) ||
        !cJSON_AddStringToObject(root, "by_operator", by_operator) ||
        !cJSON_AddStringToObject(root, "reason", reason) ||
        !cJSON_AddItemToObject(root, "config", copy)) {
        cJSON_Delete(copy);
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root);
}

char *dw_entry_leader(uint64_t node)
{
    cJSON *root = new_entry("leader");

    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "node", (double)node)) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root);
}

char *dw_entry_hold_release(const char *group, const char *by_operator)
{
    cJSON *root = new_entry("hold");

    if (root == NULL)
        return NULL;
    if (!cJSON_AddStringToObject(root, "group", group) ||
        !cJSON_AddStringToObject(root, "action", "release") ||
        !cJSON_AddStringToObject(root, "by_operator", by_operator)) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root);
}

char *dw_entry_maintenance(const char *action, const char *scope, const char *id,
                           const char *by_operator, const char *reason, int64_t ttl_ms)
{
    cJSON *root = new_entry("maintenance");
    bool set = strcmp(action, "set") == 0;

    if (root == NULL)
        return NULL;
    if (!cJSON_AddStringToObject(root, "action", action) ||
        !cJSON_AddStringToObject(root, "scope", scope) ||
        !cJSON_AddStringToObject(root, "id", id) ||
        !cJSON_AddStringToObject(root, "by_operator", by_operator) ||
        (set && (!cJSON_AddStringToObject(root, "reason", reason) ||
                 !cJSON_AddNumberToObject(root, "ttl_ms", (double)ttl_ms)))) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root);
}

char *dw_entry_operate(const char *action, const char *group, const char *to,
                       const char *by_operator, const char *request)
{
    cJSON *root = new_entry("operate");

    if (root == NULL)
        return NULL;
    if (!cJSON_AddStringToObject(root, "action", action) ||
        !cJSON_AddStringToObject(root, "group", group) ||
        (to != NULL && !cJSON_AddStringToObject(root, "to", to)) ||
        !cJSON_AddStringToObject(root, "by_operator", by_operator) ||
        !cJSON_AddStringToObject(root, "request", request)) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root);
}

char *dw_entry_notified(int64_t event, const char *channel)
{
    cJSON *root = new_entry("notified");

    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "event", (double)event) ||
        !cJSON_AddStringToObject(root, "channel", channel)) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_free(root);
}

int dw_entry_edge_count(const struct dw_config *cfg)
{
    int n = 0;

    for (int i = 0; i < cfg->n_sites; i++)
        n += cfg->sites[i].n_edges;
    return n;
}

char *dw_entry_cloud_part(const struct dw_config *cfg, const enum dw_health *states,
                          const bool *disconnected, int first, int max_edges, int *next)
{
    cJSON *root = new_entry("cloud");
    cJSON *edges;
    int k = 0, written = 0;

    if (next != NULL)
        *next = dw_entry_edge_count(cfg);
    if (max_edges < 1)
        max_edges = 1; /* so that a caller looping on *next always moves on */
    if (root == NULL)
        return NULL;
    if (!cJSON_AddNumberToObject(root, "cv", (double)cfg->version) ||
        (edges = cJSON_AddObjectToObject(root, "edges")) == NULL)
        goto fail;
    for (int i = 0; i < cfg->n_sites; i++) {
        const struct dw_site *s = &cfg->sites[i];

        for (int j = 0; j < s->n_edges; j++, k++) {
            if (k < first || !dw_cloudview_watched(s, &s->edges[j]))
                continue;
            if (written == max_edges) {
                if (next != NULL)
                    *next = k;
                return print_and_free(root);
            }
            if (!cJSON_AddStringToObject(edges, s->edges[j].id,
                                         states[k] == DW_DOWN && disconnected && disconnected[k]
                                             ? DW_CLOUD_REPORT_DISCONNECTED
                                             : dw_health_name(states[k])))
                goto fail;
            written++;
        }
    }
    return print_and_free(root);
fail:
    cJSON_Delete(root);
    return NULL;
}

char *dw_entry_cloud(const struct dw_config *cfg, const enum dw_health *states)
{
    return dw_entry_cloud_part(cfg, states, NULL, 0, INT32_MAX, NULL);
}

/* ---- stamping ----------------------------------------------------------------------------- */

/* Always returns -1 so validators can "return set_err(...)". */
static int set_err(char *errmsg, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errmsg == NULL || errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static bool get_int(const cJSON *obj, const char *key, int64_t min, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;

    if (!cJSON_IsNumber(v))
        return false;
    d = v->valuedouble;
    if (!isfinite(d) || d < -DW_JSON_INT_MAX || d > DW_JSON_INT_MAX || d != (double)(int64_t)d)
        return false;
    if ((int64_t)d < min)
        return false;
    *out = (int64_t)d;
    return true;
}

static int check_observe(const cJSON *e, char *errmsg, size_t errlen)
{
    int64_t node, cv;
    const cJSON *sites, *s;

    if (!get_int(e, "node", 1, &node))
        return set_err(errmsg, errlen, "observe: \"node\" must be an integer >= 1");
    if (!get_int(e, "cv", 0, &cv))
        return set_err(errmsg, errlen, "observe: \"cv\" must be an integer >= 0");
    if (!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(e, "tilt")))
        return set_err(errmsg, errlen, "observe: \"tilt\" must be a boolean");
    sites = cJSON_GetObjectItemCaseSensitive(e, "sites");
    if (!cJSON_IsObject(sites))
        return set_err(errmsg, errlen, "observe: \"sites\" must be an object");
    cJSON_ArrayForEach(s, sites) {
        enum dw_health h;

        if (!cJSON_IsString(s) || dw_health_parse(s->valuestring, &h) != 0)
            return set_err(errmsg, errlen,
                           "observe: sites.%s must be \"up\", \"down\" or \"unknown\"",
                           s->string ? s->string : "?");
    }
    return 0;
}

static int check_step(const cJSON *e, char *errmsg, size_t errlen)
{
    int64_t op, seq;
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(e, "detail");
    enum dw_step_status st;

    if (!get_int(e, "op", 1, &op))
        return set_err(errmsg, errlen, "step: \"op\" must be an integer >= 1");
    if (!get_int(e, "seq", 0, &seq))
        return set_err(errmsg, errlen, "step: \"seq\" must be an integer >= 0");
    if (!cJSON_IsString(status) || dw_step_status_parse(status->valuestring, &st) != 0 ||
        st == DW_STEP_PENDING)
        return set_err(errmsg, errlen,
                       "step: \"status\" must be \"started\", \"done\" or \"failed\"");
    if (detail != NULL && (!cJSON_IsString(detail) || strlen(detail->valuestring) > DW_DETAIL_MAX))
        return set_err(errmsg, errlen, "step: \"detail\" must be a string of at most %d bytes",
                       DW_DETAIL_MAX);
    return 0;
}

static int check_cloud(const cJSON *e, char *errmsg, size_t errlen)
{
    const cJSON *edges, *s;
    int64_t cv;

    if (!get_int(e, "cv", 0, &cv))
        return set_err(errmsg, errlen, "cloud: \"cv\" must be an integer >= 0");
    edges = cJSON_GetObjectItemCaseSensitive(e, "edges");
    if (!cJSON_IsObject(edges))
        return set_err(errmsg, errlen, "cloud: \"edges\" must be an object");
    cJSON_ArrayForEach(s, edges) {
        enum dw_health h;

        if (s->string == NULL || s->string[0] == '\0' || strlen(s->string) >= DW_ID_MAX)
            return set_err(errmsg, errlen, "cloud: Edge ids must have 1 to %d bytes",
                           DW_ID_MAX - 1);
        if (!cJSON_IsString(s) || dw_cloud_report_parse(s->valuestring, &h, NULL) != 0)
            return set_err(errmsg, errlen,
                           "cloud: edges.%s must be \"up\", \"down\", \"disconnected\" or "
                           "\"unknown\"",
                           s->string);
    }
    return 0;
}

static int check_leader(const cJSON *e, char *errmsg, size_t errlen)
{
    int64_t node;

    if (!get_int(e, "node", 1, &node))
        return set_err(errmsg, errlen, "leader: \"node\" must be an integer >= 1");
    return 0;
}

static bool short_string(const cJSON *v, size_t max)
{
    return cJSON_IsString(v) && v->valuestring[0] != '\0' && strlen(v->valuestring) <= max;
}

static int check_hold(const cJSON *e, char *errmsg, size_t errlen)
{
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(e, "action");

    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "group"), DW_ID_MAX - 1))
        return set_err(errmsg, errlen, "hold: \"group\" must be a string of 1 to %d bytes",
                       DW_ID_MAX - 1);
    if (!cJSON_IsString(action) || strcmp(action->valuestring, "release") != 0)
        return set_err(errmsg, errlen, "hold: \"action\" must be \"release\"");
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "by_operator"), DW_OPERATOR_MAX))
        return set_err(errmsg, errlen,
                       "hold: \"by_operator\" must be a string of 1 to %d bytes",
                       DW_OPERATOR_MAX);
    return 0;
}

static bool one_of(const cJSON *v, const char *a, const char *b)
{
    return cJSON_IsString(v) && (strcmp(v->valuestring, a) == 0 || strcmp(v->valuestring, b) == 0);
}

static int check_maintenance(const cJSON *e, char *errmsg, size_t errlen)
{
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(e, "action");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(e, "ttl_ms");

    if (!one_of(action, "set", "clear"))
        return set_err(errmsg, errlen, "maintenance: \"action\" must be \"set\" or \"clear\"");
    if (!one_of(cJSON_GetObjectItemCaseSensitive(e, "scope"), "site", "group"))
        return set_err(errmsg, errlen, "maintenance: \"scope\" must be \"site\" or \"group\"");
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "id"), DW_ID_MAX - 1))
        return set_err(errmsg, errlen, "maintenance: \"id\" must be a string of 1 to %d bytes",
                       DW_ID_MAX - 1);
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "by_operator"), DW_OPERATOR_MAX))
        return set_err(errmsg, errlen,
                       "maintenance: \"by_operator\" must be a string of 1 to %d bytes",
                       DW_OPERATOR_MAX);
    if (strcmp(action->valuestring, "clear") == 0)
        return 0;
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "reason"), DW_DETAIL_MAX))
        return set_err(errmsg, errlen,
                       "maintenance: \"reason\" must be a string of 1 to %d bytes",
                       DW_DETAIL_MAX);
    if (!cJSON_IsNumber(ttl) || ttl->valuedouble < DW_MAINT_TTL_MIN ||
        ttl->valuedouble > DW_MAINT_TTL_MAX || ttl->valuedouble != (double)(int64_t)ttl->valuedouble)
        return set_err(errmsg, errlen, "maintenance: \"ttl_ms\" must be an integer from %lld to "
                       "%lld", (long long)DW_MAINT_TTL_MIN, (long long)DW_MAINT_TTL_MAX);
    return 0;
}

static int check_operate(const cJSON *e, char *errmsg, size_t errlen)
{
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(e, "action");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(e, "to");

    if (!one_of(action, "switchover", "failback"))
        return set_err(errmsg, errlen,
                       "operate: \"action\" must be \"switchover\" or \"failback\"");
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "group"), DW_ID_MAX - 1))
        return set_err(errmsg, errlen, "operate: \"group\" must be a string of 1 to %d bytes",
                       DW_ID_MAX - 1);
    if ((to != NULL || strcmp(action->valuestring, "switchover") == 0) &&
        !short_string(to, DW_ID_MAX - 1))
        return set_err(errmsg, errlen, "operate: \"to\" must be a string of 1 to %d bytes",
                       DW_ID_MAX - 1);
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "by_operator"), DW_OPERATOR_MAX))
        return set_err(errmsg, errlen,
                       "operate: \"by_operator\" must be a string of 1 to %d bytes",
                       DW_OPERATOR_MAX);
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "request"), DW_ID_MAX - 1))
        return set_err(errmsg, errlen, "operate: \"request\" must be a string of 1 to %d bytes",
                       DW_ID_MAX - 1);
    return 0;
}

static int check_config(const cJSON *e, char *errmsg, size_t errlen)
{
    int64_t base, format;

    if (!get_int(e, "base", 0, &base))
        return set_err(errmsg, errlen, "config: \"base\" must be an integer >= 0");
    if (!get_int(e, "format", 1, &format))
        return set_err(errmsg, errlen, "config: \"format\" must be an integer >= 1");
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "by_operator"), DW_OPERATOR_MAX))
        return set_err(errmsg, errlen,
                       "config: \"by_operator\" must be a string of 1 to %d bytes",
                       DW_OPERATOR_MAX);
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "reason"), DW_DETAIL_MAX))
        return set_err(errmsg, errlen, "config: \"reason\" must be a string of 1 to %d bytes",
                       DW_DETAIL_MAX);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(e, "config")))
        return set_err(errmsg, errlen, "config: \"config\" must be an object");
    return 0;
}

static int check_notified(const cJSON *e, char *errmsg, size_t errlen)
{
    int64_t ev;

    if (!get_int(e, "event", 1, &ev))
        return set_err(errmsg, errlen, "notified: \"event\" must be an integer >= 1");
    if (!short_string(cJSON_GetObjectItemCaseSensitive(e, "channel"), DW_ID_MAX - 1))
        return set_err(errmsg, errlen, "notified: \"channel\" must be a string of 1 to %d bytes",
                       DW_ID_MAX - 1);
    return 0;
}

/* Only whitespace or NUL may follow the JSON value (some senders include the terminator). */
static bool only_trailing_space(const char *p, const char *end)
{
    for (; p < end; p++) {
        if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    }
    return true;
}

char *dw_entry_stamp(const char *json, size_t len, int64_t ts_ms, uint64_t leader_id,
                     char *errmsg, size_t errlen)
{
    const char *end = NULL;
    cJSON *e = NULL;
    const cJSON *type;
    int64_t v;
    char *out = NULL;
    size_t max = DW_ENTRY_MAX;

    if (json == NULL || len == 0) {
        set_err(errmsg, errlen, "empty entry");
        return NULL;
    }
    if (len > DW_ENTRY_CONFIG_MAX) { /* config entries are the only ones this large */
        set_err(errmsg, errlen, "entry of %zu bytes exceeds %d", len, DW_ENTRY_CONFIG_MAX);
        return NULL;
    }
    e = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (e == NULL || end == NULL || !only_trailing_space(end, json + len)) {
        set_err(errmsg, errlen, "entry is not valid JSON");
        goto done;
    }
    if (!cJSON_IsObject(e)) {
        set_err(errmsg, errlen, "entry is not a JSON object");
        goto done;
    }
    if (!get_int(e, "v", 0, &v) || v != DW_ENTRY_VERSION) {
        set_err(errmsg, errlen, "entry version must be %d", DW_ENTRY_VERSION);
        goto done;
    }
    if (cJSON_HasObjectItem(e, "ts") || cJSON_HasObjectItem(e, "by")) {
        set_err(errmsg, errlen, "entry is already stamped");
        goto done;
    }
    type = cJSON_GetObjectItemCaseSensitive(e, "type");
    if (!cJSON_IsString(type)) {
        set_err(errmsg, errlen, "entry has no \"type\"");
        goto done;
    }
    if (strcmp(type->valuestring, "observe") == 0) {
        if (check_observe(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "step") == 0) {
        if (check_step(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "leader") == 0) {
        if (check_leader(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "cloud") == 0) {
        if (check_cloud(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "hold") == 0) {
        if (check_hold(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "maintenance") == 0) {
        if (check_maintenance(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "operate") == 0) {
        if (check_operate(e, errmsg, errlen) != 0)
            goto done;
    } else if (strcmp(type->valuestring, "config") == 0) {
        if (check_config(e, errmsg, errlen) != 0)
            goto done;
        max = DW_ENTRY_CONFIG_MAX;
    } else if (strcmp(type->valuestring, "notified") == 0) {
        if (check_notified(e, errmsg, errlen) != 0)
            goto done;
    } else {
        set_err(errmsg, errlen, "unknown entry type");
        goto done;
    }
    if (!cJSON_AddNumberToObject(e, "ts", (double)ts_ms) ||
        !cJSON_AddNumberToObject(e, "by", (double)leader_id)) {
        set_err(errmsg, errlen, "out of memory");
        goto done;
    }
    out = cJSON_PrintUnformatted(e);
    if (out == NULL) {
        set_err(errmsg, errlen, "out of memory");
    } else if (strlen(out) > max) {
        set_err(errmsg, errlen, "stamped entry exceeds %zu bytes", max);
        free(out);
        out = NULL;
    }
done:
    cJSON_Delete(e);
    return out;
}
