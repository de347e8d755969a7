/* Owns reading Genesys Cloud API answers: token, trunk base settings, pages, error bodies. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "drwatch/genesys_parse.h"

static cJSON *parse(const char *body, size_t len)
{
    return cJSON_ParseWithLength(body, strnlen(body, len));
}

static enum dw_gparse_rc badf(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "%s", what);
    return DW_GPARSE_BAD;
}

bool dw_json_int_in(const cJSON *v, long long min, long long max, long long *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    /* Within +-2^53 the cast is defined and exact; NaN fails the comparison. */
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0))
        return false;
    long long i = (long long)d;
    if ((double)i != d || i < min || i > max)
        return false;
    *out = i;
    return true;
}

/* Integer member key of obj into *out; an absent optional one leaves *out alone. Anything
 * else (wrong type, fraction, out of [min, max]) is a bad response: false and why set. */
static bool int_member(const cJSON *obj, const char *key, bool optional, long long min,
                       long long max, long long *out, char *why, size_t whylen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    if ((v == NULL && optional) || dw_json_int_in(v, min, max, out))
        return true;
    if (v == NULL)
        snprintf(why, whylen, "%s missing", key);
    else if (cJSON_IsNumber(v))
        snprintf(why, whylen, "%s %.10g is not an integer in [%lld, %lld]", key, v->valuedouble,
                 min, max);
    else
        snprintf(why, whylen, "%s is not a number", key);
    return false;
}

enum dw_gparse_rc dw_gparse_token(const char *body, size_t len, char **token,
                                  long long *expires_in, char *why, size_t whylen)
{
    cJSON *root = parse(body, len);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    enum dw_gparse_rc rc = DW_GPARSE_OK;

    *token = NULL;
    if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0') {
        cJSON_Delete(root);
        return badf(why, whylen, root ? "token response without access_token" : "invalid JSON");
    }
    if (!int_member(root, "expires_in", false, 1, DW_GPARSE_TOKEN_MAX_TTL_S, expires_in, why,
                    whylen))
        rc = DW_GPARSE_BAD;
    else if ((*token = strdup(tok->valuestring)) == NULL)
        rc = DW_GPARSE_NOMEM;
    explicit_bzero(tok->valuestring, strlen(tok->valuestring));
    cJSON_Delete(root);
    if (rc == DW_GPARSE_NOMEM)
        snprintf(why, whylen, "out of memory");
    return rc;
}

/* Drops the members named key after the first, the one read: a reader that takes the last
 * one would see another value in the PUT body than the one the client read and decided on. */
static void drop_later_dups(cJSON *obj, const char *key)
{
    cJSON *first = cJSON_GetObjectItemCaseSensitive(obj, key);
    cJSON *x, *next;

    for (x = first ? first->next : NULL; x != NULL; x = next) {
        next = x->next;
        if (x->string != NULL && strcmp(x->string, key) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, x));
    }
}

/* Sets properties.trunk_enabled.value.instance, creating what is missing; the document sent
 * back holds one of each member on that path, and one version. */
static int set_enabled_prop(cJSON *root, bool wanted)
{
    drop_later_dups(root, "version");
    drop_later_dups(root, "properties");
    cJSON *props = cJSON_GetObjectItemCaseSensitive(root, "properties");
    if (props == NULL) {
        props = cJSON_AddObjectToObject(root, "properties");
        if (props == NULL)
            return -1;
    }
    if (!cJSON_IsObject(props))
        return -1;
    drop_later_dups(props, "trunk_enabled");
    cJSON *te = cJSON_GetObjectItemCaseSensitive(props, "trunk_enabled");
    if (!cJSON_IsObject(te)) {
        cJSON_DeleteItemFromObjectCaseSensitive(props, "trunk_enabled");
        te = cJSON_AddObjectToObject(props, "trunk_enabled");
        if (te == NULL || cJSON_AddStringToObject(te, "type", "boolean") == NULL)
            return -1;
    }
    drop_later_dups(te, "value");
    cJSON *val = cJSON_GetObjectItemCaseSensitive(te, "value");
    if (!cJSON_IsObject(val)) {
        cJSON_DeleteItemFromObjectCaseSensitive(te, "value");
        val = cJSON_AddObjectToObject(te, "value");
        if (val == NULL || cJSON_AddBoolToObject(val, "default", 1) == NULL)
            return -1;
    }
    drop_later_dups(val, "instance");
    cJSON_DeleteItemFromObjectCaseSensitive(val, "instance");
    return cJSON_AddBoolToObject(val, "instance", wanted) != NULL ? 0 : -1;
}

enum dw_gparse_rc dw_gparse_settings(const char *body, size_t len, bool wanted,
                                     struct dw_gparse_settings *out, char *why, size_t whylen)
{
    cJSON *root = parse(body, len);

    out->version = -1;
    out->instance = -1;
    out->put_body = NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return badf(why, whylen, "invalid JSON");
    }
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(root, "properties");
    if (props != NULL && !cJSON_IsObject(props)) {
        cJSON_Delete(root);
        return badf(why, whylen, "trunk base settings properties is not an object");
    }
    if (!int_member(root, "version", false, 0, INT_MAX, &out->version, why, whylen)) {
        cJSON_Delete(root);
        return DW_GPARSE_BAD;
    }
    const cJSON *te = cJSON_GetObjectItemCaseSensitive(props, "trunk_enabled");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(te, "value");
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(val, "instance");
    if (cJSON_IsBool(inst))
        out->instance = cJSON_IsTrue(inst) != 0;
    if (out->instance == (int)wanted) {
        cJSON_Delete(root);
        return DW_GPARSE_OK;
    }
    if (set_enabled_prop(root, wanted) == 0)
        out->put_body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (out->put_body == NULL)
        return badf(why, whylen, "cannot rewrite trunk base settings");
    return DW_GPARSE_OK;
}

enum dw_gparse_rc dw_gparse_put_answer(const char *body, size_t len, long long *version,
                                       char *why, size_t whylen)
{
    cJSON *root = parse(body, len);

    *version = -1;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return badf(why, whylen, "invalid JSON");
    }
    bool ok = int_member(root, "version", true, 0, INT_MAX, version, why, whylen);
    cJSON_Delete(root);
    return ok ? DW_GPARSE_OK : DW_GPARSE_BAD;
}

static int json_true(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (b != NULL)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsTrue(x);
}

enum dw_gparse_rc dw_gparse_trunks_page(const char *body, size_t len,
                                        struct dw_gparse_trunks *out, char *why, size_t whylen)
{
    cJSON *root = parse(body, len);
    const cJSON *ents = cJSON_GetObjectItemCaseSensitive(root, "entities");

    memset(out, 0, sizeof *out);
    out->page_count = 1;
    if (!cJSON_IsArray(ents)) {
        cJSON_Delete(root);
        return badf(why, whylen, root ? "trunk list without entities" : "invalid JSON");
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, ents) {
        if (!cJSON_IsObject(t))
            continue;
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(t, "state");
        if (cJSON_IsString(state) && strcmp(state->valuestring, "deleted") == 0)
            continue; /* a deleted record carries no calls */
        out->n_trunks++;
        int in_service = json_true(t, "inService", NULL);
        int connected = json_true(t, "connectedStatus", "connected");
        if (in_service && connected) {
            out->n_ok++;
        } else if (out->first_bad[0] == '\0') {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
            snprintf(out->first_bad, sizeof out->first_bad, "%.60s %s",
                     cJSON_IsString(id) ? id->valuestring : "?",
                     !in_service ? "not in service" : "not connected");
        }
    }
    bool ok = int_member(root, "pageCount", true, 0, INT_MAX, &out->page_count, why, whylen);
    cJSON_Delete(root);
    return ok ? DW_GPARSE_OK : DW_GPARSE_BAD;
}

enum dw_gparse_rc dw_gparse_list_page(const char *body, size_t len, cJSON **entities,
                                      long long *page_count, char *why, size_t whylen)
{
    cJSON *root = parse(body, len);
    const cJSON *ents = cJSON_GetObjectItemCaseSensitive(root, "entities");

    *entities = NULL;
    *page_count = 1;
    if (!cJSON_IsArray(ents)) {
        cJSON_Delete(root);
        return badf(why, whylen, root ? "list without entities" : "invalid JSON");
    }
    if (!int_member(root, "pageCount", true, 0, INT_MAX, page_count, why, whylen)) {
        cJSON_Delete(root);
        return DW_GPARSE_BAD;
    }
    /* the page's array moves out instead of being copied */
    *entities = cJSON_DetachItemViaPointer(root, (cJSON *)ents);
    cJSON_Delete(root);
    return DW_GPARSE_OK;
}

void dw_gparse_error_text(const char *body, size_t len, char *out, size_t outlen)
{
    cJSON *root = parse(body, len);
    const cJSON *a = NULL, *b = NULL;

    out[0] = '\0';
    if (cJSON_IsObject(root)) {
        a = cJSON_GetObjectItemCaseSensitive(root, "code");
        b = cJSON_GetObjectItemCaseSensitive(root, "message");
        if (!cJSON_IsString(a) && !cJSON_IsString(b)) {
            a = cJSON_GetObjectItemCaseSensitive(root, "error");
            b = cJSON_GetObjectItemCaseSensitive(root, "error_description");
        }
    }
    if (cJSON_IsString(a) && cJSON_IsString(b))
        snprintf(out, outlen, " %.60s: %.150s", a->valuestring, b->valuestring);
    else if (cJSON_IsString(a) || cJSON_IsString(b))
        snprintf(out, outlen, " %.150s", cJSON_IsString(a) ? a->valuestring : b->valuestring);
    cJSON_Delete(root);
}

long dw_gparse_header_num(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return -1;
    const char *p = line + k + 1, *end = line + n;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    long v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && v < DW_GPARSE_RETRY_AFTER_MAX) {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    return digits == 0 ? -1 : v > DW_GPARSE_RETRY_AFTER_MAX ? DW_GPARSE_RETRY_AFTER_MAX : v;
}

int dw_gparse_retry_after(const char *line, size_t n)
{
    return (int)dw_gparse_header_num(line, n, "retry-after");
}
