/* Owns the split of a config document into the committed cluster part and the node-local part. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_internal.h"

/* Removes every node-local key the schema marks, down to the sections' own keys. */
static void strip_local(cJSON *doc)
{
    for (size_t i = 0; i < cfg_top_table.n; i++) {
        const struct field *f = &cfg_top_table.f[i];
        if (f->local) {
            cJSON_DeleteItemFromObjectCaseSensitive(doc, f->key);
            continue;
        }
        cJSON *section = cJSON_GetObjectItemCaseSensitive(doc, f->key);
        if (f->kind != K_OBJ || !cJSON_IsObject(section))
            continue;
        for (size_t j = 0; j < f->sub->n; j++)
            if (f->sub->f[j].local)
                cJSON_DeleteItemFromObjectCaseSensitive(section, f->sub->f[j].key);
    }
}

/* Copies the node-local keys of local into doc (replacing what doc has there). */
static int add_local(cJSON *doc, const cJSON *local)
{
    for (size_t i = 0; i < cfg_top_table.n; i++) {
        const struct field *f = &cfg_top_table.f[i];
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(local, f->key);
        if (!from)
            continue;
        if (f->local) {
            cJSON *copy = cJSON_Duplicate(from, true);
            if (!copy)
                return -1;
            cJSON_DeleteItemFromObjectCaseSensitive(doc, f->key);
            cJSON_AddItemToObject(doc, f->key, copy);
            continue;
        }
        if (f->kind != K_OBJ || !cJSON_IsObject(from))
            continue;
        cJSON *section = cJSON_GetObjectItemCaseSensitive(doc, f->key);
        if (!section && !(section = cJSON_AddObjectToObject(doc, f->key)))
            return -1;
        if (!cJSON_IsObject(section))
            continue;
        for (size_t j = 0; j < f->sub->n; j++) {
            const char *key = f->sub->f[j].key;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);
            if (!f->sub->f[j].local || !v)
                continue;
            cJSON *copy = cJSON_Duplicate(v, true);
            if (!copy)
                return -1;
            cJSON_DeleteItemFromObjectCaseSensitive(section, key);
            cJSON_AddItemToObject(section, key, copy);
        }
    }
    return 0;
}

int dw_config_nonlocal_key(const cJSON *local, char *path, size_t len)
{
    for (const cJSON *k = local ? local->child : NULL; k; k = k->next) {
        const struct field *f = NULL;
        for (size_t i = 0; i < cfg_top_table.n && !f; i++)
            if (strcmp(cfg_top_table.f[i].key, k->string) == 0)
                f = &cfg_top_table.f[i];
        if (f && f->local)
            continue;
        if (!f || f->kind != K_OBJ || !cJSON_IsObject(k)) {
            snprintf(path, len, "%s", k->string);
            return -1;
        }
        for (const cJSON *v = k->child; v; v = v->next) {
            const struct field *g = NULL;
            for (size_t j = 0; j < f->sub->n && !g; j++)
                if (strcmp(f->sub->f[j].key, v->string) == 0)
                    g = &f->sub->f[j];
            if (!g || !g->local) {
                snprintf(path, len, "%s.%s", k->string, v->string);
                return -1;
            }
        }
    }
    return 0;
}

struct slot {
    const char *key; /* never into the slot itself: qsort may move slots while comparing */
    int idx;
    cJSON *item;
};

static int cmp_slot(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : x->idx - y->idx;
}

/* Reorders the children of node (object: by key; array: by each element's "id", string or
 * number, elements without one first, in their order). */
static int sort_children(cJSON *node, bool by_id)
{
    int n = cJSON_GetArraySize(node);
    if (n < 2)
        return 0;
    struct slot *s = calloc((size_t)n, sizeof *s);
    /* numeric ids (members), zero-padded so text order is number order */
    char (*num)[24] = calloc((size_t)n, sizeof *num);
    if (!s || !num) {
        free(s);
        free(num);
        return -1;
    }
    int i = 0;
    for (cJSON *c = node->child; c; c = c->next, i++) {
        const cJSON *id = by_id ? cJSON_GetObjectItemCaseSensitive(c, "id") : NULL;
        s[i].idx = i;
        s[i].item = c;
        s[i].key = !by_id ? c->string : cJSON_IsString(id) ? id->valuestring : num[i];
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 1e18)
            snprintf(num[i], sizeof num[i], "%019.0f", id->valuedouble);
    }
    qsort(s, (size_t)n, sizeof *s, cmp_slot);
    node->child = s[0].item;
    for (i = 0; i < n; i++) {
        s[i].item->prev = i == 0 ? s[n - 1].item : s[i - 1].item; /* cJSON: child->prev is the tail */
        s[i].item->next = i + 1 < n ? s[i + 1].item : NULL;
    }
    free(s);
    free(num);
    return 0;
}

static int sort_keys(cJSON *node)
{
    for (cJSON *c = node->child; c; c = c->next)
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && sort_keys(c) != 0)
            return -1;
    return cJSON_IsObject(node) ? sort_children(node, false) : 0;
}

static int sort_by_id(cJSON *array)
{
    return cJSON_IsArray(array) ? sort_children(array, true) : 0;
}

cJSON *dw_config_cluster_doc(const cJSON *doc)
{
    if (!cJSON_IsObject(doc))
        return NULL;
    cJSON *out = cJSON_Duplicate(doc, true);
    if (!out)
        return NULL;
    strip_local(out);
    /* file order must not matter: every list whose order means nothing is sorted by id */
    cJSON *sites = cJSON_GetObjectItemCaseSensitive(out, "sites"), *site;
    int rc = sort_keys(out);
    rc |= sort_by_id(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(out, "cluster"), "members"));
    rc |= sort_by_id(sites);
    rc |= sort_by_id(cJSON_GetObjectItemCaseSensitive(out, "failover_groups"));
    cJSON_ArrayForEach(site, sites)
        rc |= sort_by_id(cJSON_GetObjectItemCaseSensitive(site, "edges"));
    if (rc != 0) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

cJSON *dw_config_with_local(const cJSON *cluster, const cJSON *local)
{
    cJSON *out = cJSON_IsObject(cluster) ? cJSON_Duplicate(cluster, true) : NULL;
    if (out && cJSON_IsObject(local) && add_local(out, local) != 0) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}
