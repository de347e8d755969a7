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

/* ---- topology digest ---------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static void fnv_str(uint64_t *h, const char *s)
{
    for (; *s; s++) {
        *h ^= (unsigned char)*s;
        *h *= FNV_PRIME;
    }
}

static void fnv_fmt(uint64_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fnv_fmt(uint64_t *h, const char *fmt, ...)
{
    char line[4 * DW_ID_MAX + DW_ADDR_MAX + 32];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fnv_str(h, line);
}

struct id_slot {
    const char *id;
    int idx;
};

static int cmp_slot(const void *a, const void *b)
{
    return strcmp(((const struct id_slot *)a)->id, ((const struct id_slot *)b)->id);
}

/* Sorts an index array by the string each index names; sites can hold hundreds of Edges, so
 * O(n log n). Ids are unique (config validation), so the order is total. */
static void sort_by_id(int *idx, int n, const char *(*id_of)(const void *, int), const void *ctx)
{
    struct id_slot *slots = n > 0 ? malloc((size_t)n * sizeof *slots) : NULL;
    if (slots == NULL)
        return; /* n == 0, or out of memory: the caller's digest then differs and is refused */
    for (int i = 0; i < n; i++)
        slots[i] = (struct id_slot){id_of(ctx, idx[i]), idx[i]};
    qsort(slots, (size_t)n, sizeof *slots, cmp_slot);
    for (int i = 0; i < n; i++)
        idx[i] = slots[i].idx;
    free(slots);
}

static const char *site_id_of(const void *ctx, int i)
{
    return ((const struct dw_config *)ctx)->sites[i].id;
}

static const char *edge_id_of(const void *ctx, int i)
{
    return ((const struct dw_site *)ctx)->edges[i].id;
}

static const char *group_id_of(const void *ctx, int i)
{
    return ((const struct dw_config *)ctx)->groups[i].id;
}

/* Canonical text: members by id, sites and their edges by id, groups by id; targets and trunk
 * bases keep their configured order because that order is their priority. Each line is
 * tagged so different layouts cannot produce the same text. */
/* Parsed configs carry their digest (computed once: it costs milliseconds at 10,000 Edges);
 * configs built by hand, as in tests, are hashed on demand. */
static uint64_t topology_digest(const struct dw_config *cfg)
{
    return cfg->topology_digest != 0 ? cfg->topology_digest : dw_config_topology_digest(cfg);
}

uint64_t dw_config_topology_digest(const struct dw_config *cfg)
{
    uint64_t h = FNV_OFFSET;
    int idx[DW_MAX_SITES > DW_MAX_GROUPS ? DW_MAX_SITES : DW_MAX_GROUPS];
    int midx[DW_MAX_MEMBERS];
    int n_members = cfg->n_members < DW_MAX_MEMBERS ? cfg->n_members : DW_MAX_MEMBERS;
    int n_sites = cfg->n_sites < DW_MAX_SITES ? cfg->n_sites : DW_MAX_SITES;
    int n_groups = cfg->n_groups < DW_MAX_GROUPS ? cfg->n_groups : DW_MAX_GROUPS;
    bool any_cloud = false;

    for (int i = 0; i < n_members; i++) {
        int v = i, j = i;
        while (j > 0 && cfg->members[midx[j - 1]].id > cfg->members[v].id) {
            midx[j] = midx[j - 1];
            j--;
        }
        midx[j] = v;
    }
    for (int i = 0; i < n_members; i++) {
        const struct dw_member *m = &cfg->members[midx[i]];
        fnv_fmt(&h, "member %" PRIu64 " %s\n", m->id, m->raft_address);
    }

    for (int i = 0; i < n_sites; i++)
        idx[i] = i;
    sort_by_id(idx, n_sites, site_id_of, cfg);
    for (int i = 0; i < n_sites; i++) {
        const struct dw_site *s = &cfg->sites[idx[i]];
        int eidx[DW_MAX_EDGES];
        int n_edges = s->n_edges < DW_MAX_EDGES ? s->n_edges : DW_MAX_EDGES;

        fnv_fmt(&h, "site %s\n", s->id);
        /* how a site's verdict is made changes the FSM's result: every node must agree. Written
         * only when not the default, so digests of configs without them did not change. */
        if (s->rule != DW_RULE_ANY || s->combine != DW_COMBINE_PROBES) {
            fnv_fmt(&h, "site-rule %s %d %d %d\n", s->id, (int)s->rule,
                    s->rule == DW_RULE_AT_LEAST ? s->at_least : 0, (int)s->combine);
            any_cloud = any_cloud || s->combine != DW_COMBINE_PROBES;
        }
        for (int e = 0; e < n_edges; e++)
            eidx[e] = e;
        sort_by_id(eidx, n_edges, edge_id_of, s);
        for (int e = 0; e < n_edges; e++) {
            const struct dw_edge *ed = &s->edges[eidx[e]];

            fnv_fmt(&h, "edge %s %s\n", s->id, ed->id);
            if (ed->genesys_edge_id[0] != '\0')
                fnv_fmt(&h, "genesys-edge %s %s\n", ed->id, ed->genesys_edge_id);
        }
    }

    for (int i = 0; i < n_groups; i++)
        idx[i] = i;
    sort_by_id(idx, n_groups, group_id_of, cfg);
    for (int i = 0; i < n_groups; i++) {
        const struct dw_group *g = &cfg->groups[idx[i]];
        int n_targets = g->n_targets < DW_MAX_TARGETS ? g->n_targets : DW_MAX_TARGETS;

        fnv_fmt(&h, "group %s\n", g->id);
        for (int t = 0; t < n_targets; t++) {
            const struct dw_target *tg = &g->targets[t];
            const char *site = tg->site >= 0 && tg->site < n_sites ? cfg->sites[tg->site].id : "-";
            int n_bases = tg->n_trunk_bases < DW_MAX_TRUNK_BASES ? tg->n_trunk_bases
                                                                  : DW_MAX_TRUNK_BASES;

            fnv_fmt(&h, "target %s %d %s %s\n", g->id, t, tg->id, site);
            for (int b = 0; b < n_bases; b++)
                fnv_fmt(&h, "trunk %s %s %s\n", g->id, tg->id, tg->trunk_base_ids[b]);
        }
    }

    fnv_fmt(&h, "ttl %u\n", cfg->cluster.observation_ttl_ms);
    /* retention decides which history rows every node deletes, so it must match; hashed only
     * when not the default so a rolling upgrade keeps the old digest (0: unset, as default) */
    unsigned days = cfg->cluster.history_retention_days, rows = cfg->cluster.history_max_rows;
    if ((days != 0 && days != 90) || (rows != 0 && rows != 100000))
        fnv_fmt(&h, "history %u %u\n", days, rows);
    if (any_cloud)
        fnv_fmt(&h, "cloud-ttl %u\ncloud-grace %u\n", cfg->genesys.cloud_ttl_ms,
                cfg->genesys.cloud_grace_ms);
    return h;
}

/* ---- builders ----------------------------------------------------------------------------- */

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
    char digest[17];
    cJSON *root = new_entry("observe");
    cJSON *sites;

    if (root == NULL)
        return NULL;
    snprintf(digest, sizeof digest, "%016" PRIx64, topology_digest(cfg));
    if (!cJSON_AddNumberToObject(root, "node", (double)node) ||
        !cJSON_AddStringToObject(root, "digest", digest) ||
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
    char digest[17];
    cJSON *root = new_entry("cloud");
    cJSON *edges;
    int k = 0, written = 0;

    if (next != NULL)
        *next = dw_entry_edge_count(cfg);
    if (max_edges < 1)
        max_edges = 1; /* so that a caller looping on *next always moves on */
    if (root == NULL)
        return NULL;
    snprintf(digest, sizeof digest, "%016" PRIx64, topology_digest(cfg));
    if (!cJSON_AddStringToObject(root, "digest", digest) ||
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
    int64_t node;
    const cJSON *sites, *s;

    if (!get_int(e, "node", 1, &node))
        return set_err(errmsg, errlen, "observe: \"node\" must be an integer >= 1");
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "digest")))
        return set_err(errmsg, errlen, "observe: \"digest\" must be a string");
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

    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "digest")))
        return set_err(errmsg, errlen, "cloud: \"digest\" must be a string");
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

    if (json == NULL || len == 0) {
        set_err(errmsg, errlen, "empty entry");
        return NULL;
    }
    if (len > DW_ENTRY_MAX) {
        set_err(errmsg, errlen, "entry of %zu bytes exceeds %d", len, DW_ENTRY_MAX);
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
    } else if (strlen(out) > DW_ENTRY_MAX) {
        set_err(errmsg, errlen, "stamped entry exceeds %d bytes", DW_ENTRY_MAX);
        free(out);
        out = NULL;
    }
done:
    cJSON_Delete(e);
    return out;
}
