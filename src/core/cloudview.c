#include <stdlib.h>
#include <string.h>

#include "drwatch/cloudview.h"

/* What the lists say about one Genesys Edge id. */
struct slot {
    const char *id;
    enum { ST_ABSENT = 0, ST_ONLINE, ST_OFFLINE, ST_UNUSABLE } status;
    int in_service, connected;
};

const char *dw_cloud_why_name(enum dw_cloud_why w)
{
    switch (w) {
    case DW_CLOUD_ABSENT:
        return "absent";
    case DW_CLOUD_OFFLINE:
        return "offline";
    case DW_CLOUD_DISCONNECTED:
        return "trunks disconnected";
    case DW_CLOUD_ONLINE:
        return "online";
    case DW_CLOUD_NO_STATUS:
        return "no status";
    }
    return "absent";
}

bool dw_cloudview_watched(const struct dw_site *site, const struct dw_edge *edge)
{
    return site->combine != DW_COMBINE_PROBES && edge->genesys_edge_id[0] != '\0';
}

static int slot_cmp(const void *a, const void *b)
{
    return strcmp(((const struct slot *)a)->id, ((const struct slot *)b)->id);
}

static struct slot *find(struct slot *slots, int n, const char *id)
{
    struct slot key = {.id = id};

    return bsearch(&key, slots, (size_t)n, sizeof *slots, slot_cmp);
}

static const char *str_item(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool deleted(const cJSON *entity)
{
    const char *state = str_item(entity, "state");

    return state != NULL && strcmp(state, "deleted") == 0;
}

static void read_edges(const cJSON *edges, struct slot *slots, int n, int *ignored)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, edges) {
        const char *id = cJSON_IsObject(e) ? str_item(e, "id") : NULL;
        struct slot *s;

        if (id == NULL) {
            (*ignored)++;
            continue;
        }
        if ((s = find(slots, n, id)) == NULL || deleted(e))
            continue;
        /* a listing that shifted between pages may repeat an Edge: OFFLINE wins */
        const char *os = str_item(e, "onlineStatus");
        if (os != NULL && strcmp(os, "OFFLINE") == 0)
            s->status = ST_OFFLINE;
        else if (s->status == ST_OFFLINE)
            continue;
        else if (os != NULL && strcmp(os, "ONLINE") == 0)
            s->status = ST_ONLINE;
        else if (s->status == ST_ABSENT)
            s->status = ST_UNUSABLE;
    }
}

static void read_trunks(const cJSON *trunks, struct slot *slots, int n, int *ignored)
{
    const cJSON *t;

    cJSON_ArrayForEach(t, trunks) {
        if (!cJSON_IsObject(t) || str_item(t, "id") == NULL) {
            (*ignored)++;
            continue;
        }
        const char *edge = str_item(cJSON_GetObjectItemCaseSensitive(t, "edge"), "id");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "trunkType");
        struct slot *s;

        /* a trunk without an Edge (BYOC Cloud) belongs to no Edge */
        if (edge == NULL || (s = find(slots, n, edge)) == NULL || deleted(t))
            continue;
        if (type != NULL && !(cJSON_IsString(type) && strcmp(type->valuestring, "EXTERNAL") == 0))
            continue;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "inService")))
            continue;
        const cJSON *conn = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(t, "connectedStatus"), "connected");
        /* Absent or mistyped data is no evidence: it must never count as "disconnected". */
        if (!cJSON_IsBool(conn)) {
            (*ignored)++;
            continue;
        }
        s->in_service++;
        if (cJSON_IsTrue(conn))
            s->connected++;
    }
}

static void judge(const struct slot *s, struct dw_cloud_edge *out)
{
    out->trunks_in_service = s->in_service;
    out->trunks_connected = s->connected;
    if (s->status == ST_ABSENT) {
        out->state = DW_UNKNOWN;
        out->why = DW_CLOUD_ABSENT;
    } else if (s->status == ST_OFFLINE) {
        out->state = DW_DOWN;
        out->why = DW_CLOUD_OFFLINE;
    } else if (s->in_service > 0 && s->connected == 0) {
        out->state = DW_DOWN;
        out->why = DW_CLOUD_DISCONNECTED;
    } else if (s->status == ST_ONLINE) {
        out->state = DW_UP;
        out->why = DW_CLOUD_ONLINE;
    } else {
        out->state = DW_UNKNOWN;
        out->why = DW_CLOUD_NO_STATUS;
    }
}

int dw_cloudview_derive(const cJSON *edges, const cJSON *trunks, const char *const *ids, int n,
                        struct dw_cloud_edge *out, int *ignored)
{
    struct slot *slots = NULL;
    int n_slots = 0, skipped = 0;

    for (int i = 0; i < n; i++)
        memset(&out[i], 0, sizeof out[i]); /* UNKNOWN, ABSENT */
    if (ignored != NULL)
        *ignored = 0;
    if (!cJSON_IsArray(edges) || !cJSON_IsArray(trunks))
        return -1;
    if (n <= 0)
        return 0;
    slots = calloc((size_t)n, sizeof *slots);
    if (slots == NULL)
        return -1;
    /* sorted, de-duplicated ids: lookups stay O(log n) for large deployments */
    for (int i = 0; i < n; i++)
        slots[i].id = ids[i];
    qsort(slots, (size_t)n, sizeof *slots, slot_cmp);
    for (int i = 0; i < n; i++) {
        if (n_slots == 0 || strcmp(slots[n_slots - 1].id, slots[i].id) != 0)
            slots[n_slots++] = slots[i];
    }
    read_edges(edges, slots, n_slots, &skipped);
    read_trunks(trunks, slots, n_slots, &skipped);
    for (int i = 0; i < n; i++)
        judge(find(slots, n_slots, ids[i]), &out[i]);
    free(slots);
    if (ignored != NULL)
        *ignored = skipped;
    return 0;
}

int dw_cloud_report_parse(const char *s, enum dw_health *state, bool *disconnected)
{
    bool disc = s != NULL && strcmp(s, DW_CLOUD_REPORT_DISCONNECTED) == 0;

    if (disconnected != NULL)
        *disconnected = disc;
    if (disc) {
        *state = DW_DOWN;
        return 0;
    }
    return dw_health_parse(s, state);
}
