/* Owns what a step changes in Genesys for its target: the order of the changes, the route and
 * Edge bodies, and the dry run of a step's requests. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/actions.h"
#include "drwatch/genesys_parse.h"

#define AS_READ "<as read>"

/* ---- the items of a step ---- */

static void add_item(struct dw_action_item *out, int max, int *n, enum dw_item_kind kind,
                     const char *id, const struct dw_route_action *r)
{
    if (*n < max) {
        struct dw_action_item *it = &out[*n];
        memset(it, 0, sizeof *it);
        it->kind = kind;
        snprintf(it->id, sizeof it->id, "%s", id);
        if (r != NULL) {
            it->mode = r->mode;
            snprintf(it->site_id, sizeof it->site_id, "%s", r->site_id);
        }
    }
    (*n)++;
}

static void add_edges(const struct dw_config *cfg, const struct dw_target *t,
                      struct dw_action_item *out, int max, int *n)
{
    if (!t->drain_edges || t->site < 0 || t->site >= cfg->n_sites)
        return;
    const struct dw_site *s = &cfg->sites[t->site];
    for (int i = 0; i < s->n_edges; i++)
        if (s->edges[i].genesys_edge_id[0])
            add_item(out, max, n, DW_ITEM_EDGE, s->edges[i].genesys_edge_id, NULL);
}

int dw_action_items(const struct dw_config *cfg, const struct dw_target *t, bool activate,
                    struct dw_action_item *out, int max)
{
    int n = 0;
    /* Activate brings Edges back before their trunks are needed and points routes at trunk
     * bases only once they are on; deactivate undoes it in reverse. */
    if (activate)
        add_edges(cfg, t, out, max, &n);
    for (int i = 0; !activate && i < t->n_routes; i++)
        if (t->routes[i].mode == DW_ROUTE_ENABLED)
            add_item(out, max, &n, DW_ITEM_ROUTE, t->routes[i].route_id, &t->routes[i]);
    for (int i = 0; i < t->n_trunk_bases; i++)
        add_item(out, max, &n, DW_ITEM_TRUNK_BASE, t->trunk_base_ids[i], NULL);
    for (int i = 0; activate && i < t->n_routes; i++)
        add_item(out, max, &n, DW_ITEM_ROUTE, t->routes[i].route_id, &t->routes[i]);
    if (!activate)
        add_edges(cfg, t, out, max, &n);
    return n;
}

/* ---- bodies ---- */

static enum dw_change_rc badf(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "%s", what);
    return DW_CHANGE_BAD;
}

static const char *entry_id(const cJSON *e)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

/* The route's trunk bases with tbs first, in their order; NULL put when already so. */
static enum dw_change_rc reorder(cJSON *list, const char (*tbs)[DW_ID_MAX], int n_tbs,
                                 bool *already, char *why, size_t whylen)
{
    int n = cJSON_GetArraySize(list);
    for (const cJSON *e = list->child; e != NULL; e = e->next)
        if (!cJSON_IsObject(e) || entry_id(e) == NULL)
            return badf(why, whylen, "externalTrunkBases entry without a string id");
    *already = n >= n_tbs;
    for (int i = 0; i < n_tbs && *already; i++)
        *already = strcmp(entry_id(cJSON_GetArrayItem(list, i)), tbs[i]) == 0;
    if (*already)
        return DW_CHANGE_OK;
    cJSON *front = cJSON_CreateArray();
    if (front == NULL)
        return DW_CHANGE_NOMEM;
    for (int i = 0; i < n_tbs; i++) {
        cJSON *e = list->child;
        while (e != NULL && strcmp(entry_id(e), tbs[i]) != 0)
            e = e->next;
        if (e == NULL) {
            snprintf(why, whylen, "the route does not list trunk base %s (drwatch reorders a "
                     "route's trunk bases, it never adds one)", tbs[i]);
            cJSON_Delete(front);
            return DW_CHANGE_REFUSED;
        }
        cJSON_AddItemToArray(front, cJSON_DetachItemViaPointer(list, e));
    }
    cJSON *e;
    while ((e = cJSON_DetachItemFromArray(list, 0)) != NULL)
        cJSON_AddItemToArray(front, e);
    while ((e = cJSON_DetachItemFromArray(front, 0)) != NULL)
        cJSON_AddItemToArray(list, e);
    cJSON_Delete(front);
    return DW_CHANGE_OK;
}

enum dw_change_rc dw_route_change(const char *body, size_t len, enum dw_route_mode mode,
                                  bool activate, const char (*tbs)[DW_ID_MAX], int n_tbs,
                                  char **put_body, long long *version, char *why, size_t whylen)
{
    *put_body = NULL;
    cJSON *root = cJSON_ParseWithLength(body, strnlen(body, len));
    enum dw_change_rc rc = DW_CHANGE_OK;
    bool already = true;

    if (!cJSON_IsObject(root)) {
        rc = badf(why, whylen, "route is not a JSON object");
    } else if (!dw_json_int_in(cJSON_GetObjectItemCaseSensitive(root, "version"), 0, INT_MAX,
                               version)) {
        rc = badf(why, whylen, "route version missing or not an integer in [0, INT_MAX]");
    } else if (mode == DW_ROUTE_ENABLED) {
        cJSON *en = cJSON_GetObjectItemCaseSensitive(root, "enabled");
        if (!cJSON_IsBool(en))
            rc = badf(why, whylen, "route enabled is not a boolean");
        else if ((already = (cJSON_IsTrue(en) == activate)) == false)
            en->type = (en->type & ~(cJSON_True | cJSON_False)) |
                       (activate ? cJSON_True : cJSON_False); /* old cJSON: no SetBoolValue */
    } else if (activate) {
        cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "externalTrunkBases");
        if (!cJSON_IsArray(list))
            rc = badf(why, whylen, "route externalTrunkBases is not an array");
        else
            rc = reorder(list, tbs, n_tbs, &already, why, whylen);
    }
    if (rc == DW_CHANGE_OK && !already &&
        (*put_body = cJSON_PrintUnformatted(root)) == NULL)
        rc = DW_CHANGE_NOMEM;
    if (rc == DW_CHANGE_NOMEM)
        snprintf(why, whylen, "out of memory");
    cJSON_Delete(root);
    return rc;
}

enum dw_change_rc dw_edge_service(const char *body, size_t len, bool *in_service, char *state,
                                  size_t statelen, char *why, size_t whylen)
{
    cJSON *root = cJSON_ParseWithLength(body, strnlen(body, len));
    enum dw_change_rc rc = DW_CHANGE_OK;

    if (!cJSON_IsObject(root)) {
        rc = badf(why, whylen, "Edge is not a JSON object");
    } else {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "callDrainingState");
        if (s != NULL && !cJSON_IsNull(s) && !cJSON_IsString(s)) {
            rc = badf(why, whylen, "Edge callDrainingState is not a string");
        } else {
            const char *v = cJSON_IsString(s) ? s->valuestring : "NONE";
            snprintf(state, statelen, "%.32s", v);
            *in_service = strcmp(v, "NONE") == 0;
        }
    }
    cJSON_Delete(root);
    return rc;
}

char *dw_edge_statuscode_body(bool in_service, unsigned wait_s)
{
    char *out = NULL;
    if (in_service)
        return strdup("{\"inService\":true}");
    if (asprintf(&out, "{\"inService\":false,\"callDrainingWaitTimeSeconds\":%u}", wait_s) < 0)
        return NULL;
    return out;
}

/* ---- dry run ---- */

static bool add_request(cJSON *out, const char *method, const char *path, cJSON *body,
                        const char *note)
{
    cJSON *r = cJSON_CreateObject();
    if (r == NULL || !cJSON_AddStringToObject(r, "method", method) ||
        !cJSON_AddStringToObject(r, "path", path) ||
        !cJSON_AddItemToObject(r, "body", body ? body : cJSON_CreateNull()) ||
        (note && !cJSON_AddStringToObject(r, "note", note)) || !cJSON_AddItemToArray(out, r)) {
        cJSON_Delete(r);
        return false;
    }
    return true;
}

/* GET, the write, GET again: the shape of every change. */
static bool plan_change(cJSON *out, const char *path, const char *method, const char *wpath,
                        cJSON *body, const char *note, const char *readback)
{
    return add_request(out, "GET", path, NULL, NULL) &&
           add_request(out, method, wpath, body, note) &&
           add_request(out, "GET", path, NULL, readback);
}

static cJSON *versioned(void)
{
    cJSON *b = cJSON_CreateObject();
    if (b != NULL && !cJSON_AddStringToObject(b, "version", AS_READ)) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

static bool plan_trunk_base(cJSON *out, const char *id, bool on)
{
    char path[256], note[256], back[128];
    snprintf(path, sizeof path, DW_GENESYS_PREFIX "/trunkbasesettings/%s", id);
    cJSON *b = versioned(), *v = cJSON_CreateObject();
    cJSON *p = cJSON_AddObjectToObject(b, "properties");
    cJSON *te = cJSON_AddObjectToObject(p, "trunk_enabled");
    if (b == NULL || v == NULL || te == NULL || !cJSON_AddBoolToObject(v, "instance", on)) {
        cJSON_Delete(b);
        cJSON_Delete(v);
        return false;
    }
    cJSON_AddItemToObject(te, "value", v);
    snprintf(note, sizeof note, "only if the GET reads trunk_enabled other than %s; every other "
             "field of the trunk base is sent back as read; a 409 reads again and retries",
             on ? "true" : "false");
    snprintf(back, sizeof back, "read back: trunk_enabled must be %s", on ? "true" : "false");
    return plan_change(out, path, "PUT", path, b, note, back);
}

static bool plan_route(cJSON *out, const struct dw_target *t, const struct dw_action_item *it,
                       bool on)
{
    char path[256], note[256];
    snprintf(path, sizeof path, DW_GENESYS_PREFIX "/sites/%s/outboundroutes/%s", it->site_id,
             it->id);
    cJSON *b = versioned();
    if (b == NULL)
        return false;
    if (it->mode == DW_ROUTE_ENABLED) {
        if (!cJSON_AddBoolToObject(b, "enabled", on))
            goto oom;
        snprintf(note, sizeof note, "only if the GET reads enabled other than %s; every other "
                 "field of the route is sent back as read; a 409 reads again and retries",
                 on ? "true" : "false");
    } else {
        cJSON *list = cJSON_AddArrayToObject(b, "externalTrunkBases");
        if (list == NULL)
            goto oom;
        for (int i = 0; i < t->n_trunk_bases; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(list, e);
            if (e == NULL || !cJSON_AddStringToObject(e, "id", t->trunk_base_ids[i]))
                goto oom;
        }
        cJSON *rest = cJSON_CreateString("<the route's other trunk bases, as read, in their order>");
        if (rest == NULL)
            goto oom;
        cJSON_AddItemToArray(list, rest);
        snprintf(note, sizeof note, "only if the route does not already list these trunk bases "
                 "first, in this order; fails if the route lacks one; every other field of the "
                 "route is sent back as read; a 409 reads again and retries");
    }
    return plan_change(out, path, "PUT", path, b, note, "read back: the change must show");
oom:
    cJSON_Delete(b);
    return false;
}

static bool plan_edge(cJSON *out, const struct dw_target *t, const char *id, bool on)
{
    char path[256], wpath[256], note[160];
    snprintf(path, sizeof path, DW_GENESYS_PREFIX "/%s", id);
    snprintf(wpath, sizeof wpath, DW_GENESYS_PREFIX "/%s/statuscode", id);
    char *text = dw_edge_statuscode_body(on, t->drain_wait_s);
    cJSON *b = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (b == NULL)
        return false;
    snprintf(note, sizeof note, "only if the GET reads callDrainingState %s",
             on ? "other than NONE (out of service)" : "NONE (in service)");
    return plan_change(out, path, "POST", wpath, b, note,
                       on ? "read back: callDrainingState must be NONE"
                          : "read back: callDrainingState must be other than NONE (drain "
                            "accepted)");
}

int dw_actions_plan(const struct dw_config *cfg, int group, int target, const char *action,
                    cJSON *out, char *err, size_t errlen)
{
    if (group < 0 || group >= cfg->n_groups || target < 0 ||
        target >= cfg->groups[group].n_targets) {
        snprintf(err, errlen, "no such group or target");
        return -1;
    }
    const struct dw_target *t = &cfg->groups[group].targets[target];
    bool ok = true;
    if (action != NULL && strcmp(action, "verify") == 0) {
        char path[256], note[160];
        snprintf(note, sizeof note, "repeated every %u ms until every trunk is in service and "
                 "connected, for at most %u ms", cfg->genesys.verify_interval_ms,
                 cfg->genesys.verify_timeout_ms);
        for (int i = 0; ok && i < t->n_trunk_bases; i++) {
            snprintf(path, sizeof path, DW_GENESYS_PREFIX "/trunks?trunkBase.id=%s&pageSize=100",
                     t->trunk_base_ids[i]);
            ok = add_request(out, "GET", path, NULL, note);
        }
    } else if (action != NULL &&
               (strcmp(action, "activate") == 0 || strcmp(action, "deactivate") == 0)) {
        bool on = action[0] == 'a';
        struct dw_action_item *items = malloc(DW_MAX_ACTION_ITEMS * sizeof *items);
        int n = items ? dw_action_items(cfg, t, on, items, DW_MAX_ACTION_ITEMS) : 0;
        ok = items != NULL;
        for (int i = 0; ok && i < n && i < DW_MAX_ACTION_ITEMS; i++) {
            const struct dw_action_item *it = &items[i];
            ok = it->kind == DW_ITEM_EDGE         ? plan_edge(out, t, it->id, on)
                 : it->kind == DW_ITEM_TRUNK_BASE ? plan_trunk_base(out, it->id, on)
                                                  : plan_route(out, t, it, on);
        }
        free(items);
    } else {
        snprintf(err, errlen, "unknown action \"%s\" (activate, verify or deactivate)",
                 action ? action : "");
        return -1;
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}
