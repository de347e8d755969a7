/* Fuzzes the readers of Genesys Cloud API answers (src/core/genesys_parse.c). */
/* The first byte picks the reader (its value mod 8, so seeds start with '0'..'7'); the rest is
 * the body. The Retry-After header is read by src/io/http.c, not here. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "drwatch/genesys_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum mode {
    M_TOKEN,
    M_SETTINGS_OFF, /* GET trunkbasesettings, wanting trunk_enabled false */
    M_SETTINGS_ON,
    M_PUT,
    M_TRUNKS,
    M_LIST,
    M_ERROR,
    M_INT_IN, /* the body is any JSON; its numbers go through dw_json_int_in */
};

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Versions and page counts: what an int holds, never negative. */
static bool in_int(long long v)
{
    return v >= 0 && v <= INT_MAX;
}

/* True when rc is OK; else a reason is given and fits, and the output owned is NULL. */
static bool ok_or_why(enum dw_gparse_rc rc, const char *why, const void *owned)
{
    check(rc == DW_GPARSE_OK || rc == DW_GPARSE_BAD || rc == DW_GPARSE_NOMEM);
    if (rc == DW_GPARSE_OK)
        return true;
    check(why[0] != '\0' && strlen(why) < DW_GPARSE_WHY_MAX && owned == NULL);
    return false;
}

static void token(const char *body, size_t len)
{
    char why[DW_GPARSE_WHY_MAX] = "";
    char *tok = (char *)1;
    long long ttl = -1;
    enum dw_gparse_rc rc = dw_gparse_token(body, len, &tok, &ttl, why, sizeof why);

    if (!ok_or_why(rc, why, tok))
        return;
    check(tok != NULL && tok[0] != '\0' && strlen(tok) <= len);
    check(ttl >= 1 && ttl <= DW_GPARSE_TOKEN_MAX_TTL_S);
    explicit_bzero(tok, strlen(tok));
    free(tok);
}

/* How many members of obj are named key. */
static int members(const cJSON *obj, const char *key)
{
    const cJSON *x;
    int n = 0;

    cJSON_ArrayForEach(x, obj) n += x->string != NULL && strcmp(x->string, key) == 0;
    return n;
}

/* A PUT body reads the same whichever duplicate a reader takes: there is none on the path. */
static void check_unambiguous(const char *put_body)
{
    cJSON *root = cJSON_Parse(put_body);
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(root, "properties");
    const cJSON *te = cJSON_GetObjectItemCaseSensitive(props, "trunk_enabled");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(te, "value");

    check(members(root, "version") == 1 && members(root, "properties") == 1);
    check(members(props, "trunk_enabled") == 1 && members(te, "value") == 1);
    check(members(val, "instance") == 1);
    cJSON_Delete(root);
}

/* An OK answer is rewritten, when it must be, into a document that reads back as wanted. */
static void settings(const char *body, size_t len, bool wanted)
{
    char why[DW_GPARSE_WHY_MAX] = "";
    struct dw_gparse_settings s, back;
    enum dw_gparse_rc rc = dw_gparse_settings(body, len, wanted, &s, why, sizeof why);

    if (!ok_or_why(rc, why, s.put_body))
        return;
    check(in_int(s.version));
    check(s.instance >= -1 && s.instance <= 1);
    check((s.put_body == NULL) == (s.instance == (int)wanted));
    if (s.put_body == NULL)
        return;
    rc = dw_gparse_settings(s.put_body, strlen(s.put_body), wanted, &back, why, sizeof why);
    check(rc == DW_GPARSE_OK && back.version == s.version && back.instance == (int)wanted &&
          back.put_body == NULL);
    check_unambiguous(s.put_body);
    free(s.put_body);
}

static void put_answer(const char *body, size_t len)
{
    char why[DW_GPARSE_WHY_MAX] = "";
    long long v = -2;
    enum dw_gparse_rc rc = dw_gparse_put_answer(body, len, &v, why, sizeof why);

    if (ok_or_why(rc, why, NULL))
        check(v == -1 || in_int(v));
}

static void trunks(const char *body, size_t len)
{
    char why[DW_GPARSE_WHY_MAX] = "";
    struct dw_gparse_trunks t;
    enum dw_gparse_rc rc = dw_gparse_trunks_page(body, len, &t, why, sizeof why);

    if (!ok_or_why(rc, why, NULL))
        return;
    check(in_int(t.page_count));
    check(t.n_ok >= 0 && t.n_ok <= t.n_trunks);
    check(strlen(t.first_bad) < sizeof t.first_bad);
    /* the first trunk not in order is named exactly when there is one */
    check((t.first_bad[0] == '\0') == (t.n_ok == t.n_trunks));
}

static void list(const char *body, size_t len)
{
    char why[DW_GPARSE_WHY_MAX] = "";
    cJSON *ents = (cJSON *)1;
    long long pages = -2;
    enum dw_gparse_rc rc = dw_gparse_list_page(body, len, &ents, &pages, why, sizeof why);

    if (!ok_or_why(rc, why, ents))
        return;
    check(in_int(pages) && cJSON_IsArray(ents) && ents->next == NULL && ents->prev == NULL);
    cJSON_Delete(ents);
}

static void error_text(const char *body, size_t len)
{
    /* the client's size, and a small one that must truncate cleanly */
    static const size_t sizes[] = {224, 9, 1};
    char out[224];

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(out, 'x', sizeof out);
        dw_gparse_error_text(body, len, out, sizes[i]);
        check(memchr(out, '\0', sizes[i]) != NULL);
        check(out[0] == '\0' || out[0] == ' ');
    }
    /* the same bytes as a header line: Retry-After is read from headers */
    int ra = dw_gparse_retry_after(body, len);
    check(ra >= -1 && ra <= DW_GPARSE_RETRY_AFTER_MAX);
    /* and as the rate window headers the client paces by */
    long rl = dw_gparse_header_num(body, len, "inin-ratelimit-count");
    check(rl >= -1 && rl <= DW_GPARSE_RETRY_AFTER_MAX);
}

static void int_in(const cJSON *j)
{
    static const long long ranges[][2] = {
        {0, INT_MAX}, {1, DW_GPARSE_TOKEN_MAX_TTL_S}, {LLONG_MIN, LLONG_MAX}, {-5, 5}};
    const cJSON *c;

    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        long long out = 0;
        if (!dw_json_int_in(j, ranges[i][0], ranges[i][1], &out))
            continue;
        check(cJSON_IsNumber(j) && out >= ranges[i][0] && out <= ranges[i][1]);
        check((double)out == j->valuedouble);
    }
    cJSON_ArrayForEach(c, j) int_in(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    switch ((enum mode)(data[0] % 8)) {
    case M_TOKEN:
        token(body, len);
        break;
    case M_SETTINGS_OFF:
    case M_SETTINGS_ON:
        settings(body, len, data[0] % 8 == M_SETTINGS_ON);
        break;
    case M_PUT:
        put_answer(body, len);
        break;
    case M_TRUNKS:
        trunks(body, len);
        break;
    case M_LIST:
        list(body, len);
        break;
    case M_ERROR:
        error_text(body, len);
        break;
    case M_INT_IN: {
        cJSON *j = cJSON_ParseWithLength(body, len);
        int_in(j);
        cJSON_Delete(j);
        break;
    }
    }
    return 0;
}
