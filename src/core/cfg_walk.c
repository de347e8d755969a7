/* Generic schema walker: field tables, value formats, JSON paths and error collection. */
#include "cfg_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- errors and paths ---- */

__attribute__((format(printf, 3, 0)))
static void verr(struct ctx *c, const char *path, const char *fmt, va_list ap)
{
    char text[256];
    c->total++;
    if (!path)
        path = c->len ? c->path : "$";
    if (strncmp(path, "cluster.members", 15) == 0)
        c->members_bad = true;
    if (!c->errs)
        return;
    if (c->total > DW_CFG_MAX_ERRORS) {
        snprintf(c->errs->msg[DW_CFG_MAX_ERRORS - 1], sizeof c->errs->msg[0], "... more errors");
        return;
    }
    vsnprintf(text, sizeof text, fmt, ap);
    if (snprintf(c->errs->msg[c->errs->n], sizeof c->errs->msg[0], "%s: %s", path, text) < 0)
        c->errs->msg[c->errs->n][0] = '\0';
    c->errs->n++;
}

__attribute__((format(printf, 2, 3)))
void cfg_err(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(c, NULL, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4)))
void cfg_err_at(struct ctx *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(c, path, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4)))
void cfg_err_key(struct ctx *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    size_t old = cfg_push_key(c, key);
    va_start(ap, fmt);
    verr(c, NULL, fmt, ap);
    va_end(ap);
    cfg_pop(c, old);
}

size_t cfg_push_key(struct ctx *c, const char *key)
{
    size_t old = c->len;
    int n = snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
    c->len = (n < 0 || (size_t)n >= sizeof c->path - old) ? sizeof c->path - 1 : old + (size_t)n;
    return old;
}

size_t cfg_push_index(struct ctx *c, int i)
{
    size_t old = c->len;
    int n = snprintf(c->path + old, sizeof c->path - old, "[%d]", i);
    c->len = (n < 0 || (size_t)n >= sizeof c->path - old) ? sizeof c->path - 1 : old + (size_t)n;
    return old;
}

void cfg_pop(struct ctx *c, size_t old)
{
    c->len = old;
    c->path[old] = '\0';
}

/* ---- value formats ---- */

static bool is_id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

/* Digits only, no leading zero (inet_pton refuses "010"), value <= max. */
static bool parse_dec(const char *s, size_t n, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return v <= max;
}

static bool valid_addr(const char *s)
{
    unsigned v;
    for (int part = 0; part < 4; part++) {
        size_t n = strcspn(s, part < 3 ? "." : ":");
        if (s[n] != (part < 3 ? '.' : ':') || !parse_dec(s, n, 255, &v))
            return false;
        s += n + 1;
    }
    return parse_dec(s, strlen(s), 65535, &v) && v >= 1;
}

static bool valid_sip_uri(const char *s)
{
    size_t skip = strncasecmp(s, "sip:", 4) == 0 ? 4 : strncasecmp(s, "sips:", 5) == 0 ? 5 : 0;
    if (!skip || !s[skip])
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static bool valid_url(const char *s)
{
    size_t skip;
    if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    s += skip;
    size_t host = strcspn(s, "/?#");
    return host > 0 && s[0] != ':';
}

/* user:password@ in a URL would be copied into logs and drctl output wherever the URL is. */
static bool url_has_userinfo(const char *s)
{
    const char *p = strstr(s, "://");
    if (p == NULL)
        return false;
    p += 3;
    return memchr(p, '@', strcspn(p, "/?#")) != NULL;
}

/* Copies a JSON string into dst after checking its type, length and format. */
bool cfg_parse_str(struct ctx *c, const cJSON *v, char *dst, size_t size, enum fmt fmt)
{
    if (!cJSON_IsString(v)) {
        cfg_err(c, "expected a string");
        return false;
    }
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n >= size) {
        cfg_err(c, "too long (max %zu)", size - 1);
        return false;
    }
    bool ok = n > 0;
    switch (fmt) {
    case F_ID:
        for (size_t i = 0; ok && i < n; i++)
            ok = is_id_char(s[i]);
        if (!ok)
            cfg_err(c, "invalid id \"%.64s\" (use 1 to %zu of A-Z a-z 0-9 . _ -)", s, size - 1);
        break;
    case F_ADDR:
        ok = valid_addr(s);
        if (!ok)
            cfg_err(c, "invalid address \"%.64s\" (expected IPv4 a.b.c.d:port, port 1-65535)", s);
        break;
    case F_URL:
        if (url_has_userinfo(s)) {
            /* not echoed: it holds a credential */
            cfg_err(c, "credentials in a URL are not supported (they would appear in logs)");
            return false;
        }
        ok = valid_url(s);
        if (!ok)
            cfg_err(c, "invalid URL \"%.100s\" (expected http:// or https:// and a host)", s);
        break;
    case F_SIPURI:
        ok = valid_sip_uri(s);
        if (!ok)
            cfg_err(c, "invalid SIP URI \"%.100s\" (expected sip: or sips: and no spaces)", s);
        break;
    case F_TEXT:
    case F_PATH:
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)s[i] >= ' ' && s[i] != 0x7f;
        if (!ok)
            cfg_err(c, n ? "must not contain control characters" : "must not be empty");
        break;
    }
    if (ok)
        memcpy(dst, s, n + 1);
    return ok;
}

/* JSON numbers are doubles: accept only integers in [lo, hi]. */
bool cfg_parse_int(struct ctx *c, const cJSON *v, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(v)) {
        cfg_err(c, "expected an integer");
        return false;
    }
    double d = v->valuedouble;
    if (d > -1e15 && d < 1e15) {
        long long ll = (long long)d;
        if ((double)ll != d) {
            cfg_err(c, "expected an integer");
            return false;
        }
        if (ll >= lo && ll <= hi) {
            *out = ll;
            return true;
        }
    }
    cfg_err(c, "must be between %lld and %lld", lo, hi);
    return false;
}

/* One of names (NULL-terminated); out gets its index. */
static bool parse_enum(struct ctx *c, const cJSON *v, const char *const *names, int *out)
{
    if (cJSON_IsString(v))
        for (int i = 0; names[i]; i++)
            if (strcmp(v->valuestring, names[i]) == 0) {
                *out = i;
                return true;
            }
    char list[160] = "";
    size_t n = 0;
    for (int i = 0; names[i]; i++) {
        const char *sep = !i ? "" : names[i + 1] ? ", " : " or ";
        int w = snprintf(list + n, sizeof list - n, "%s\"%s\"", sep, names[i]);
        n = w < 0 || (size_t)w >= sizeof list - n ? sizeof list - 1 : n + (size_t)w;
    }
    cfg_err(c, "must be %s", list);
    return false;
}

/* ---- the table walk ---- */

static void apply_default(struct ctx *c, const struct field *f, void *base)
{
    char *p = (char *)base + f->off;
    if (f->kind == K_UINT)
        *(unsigned *)p = f->def;
    else if (f->kind == K_BOOL)
        *(bool *)p = f->def != 0;
    else if (f->kind == K_ENUM)
        *(int *)p = (int)f->def;
    else if (f->kind == K_OBJ)
        cfg_parse_object(c, NULL, f->sub, p);
    else if (f->kind == K_FUNC)
        f->fn(c, NULL, base);
}

static void parse_array(struct ctx *c, const struct field *f, const cJSON *v, void *base)
{
    char *first = (char *)base + f->off;
    int *count = (int *)((char *)base + f->count_off);
    if (!cJSON_IsArray(v)) {
        cfg_err(c, "expected an array");
        return;
    }
    int n = cJSON_GetArraySize(v);
    if (n < (int)f->min || n > (int)f->max)
        cfg_err(c, "needs %u to %u entries (has %d)", f->min, f->max, n);
    if (f->alloc) {
        size_t cap = (size_t)(n < (int)f->max ? n : (int)f->max);
        first = cap ? calloc(cap, f->size) : NULL;
        *(void **)((char *)base + f->off) = first;
        if (cap && !first) {
            cfg_err(c, "out of memory");
            return;
        }
    }
    int i = 0;
    for (const cJSON *item = v->child; item && i < (int)f->max; item = item->next, i++) {
        size_t old = cfg_push_index(c, i);
        char *elem = first + (size_t)i * f->size;
        if (f->sub)
            cfg_parse_object(c, item, f->sub, elem);
        else
            cfg_parse_str(c, item, elem, f->size, f->fmt);
        cfg_pop(c, old);
    }
    *count = i;
}

static void parse_field(struct ctx *c, const struct field *f, const cJSON *v, void *base)
{
    char *p = (char *)base + f->off;
    long long ll;
    switch (f->kind) {
    case K_STR:
        cfg_parse_str(c, v, p, f->size, f->fmt);
        break;
    case K_UINT:
        /* an invalid number stays 0 so cross-field checks skip it */
        if (cfg_parse_int(c, v, f->min, f->max, &ll))
            *(unsigned *)p = (unsigned)ll;
        break;
    case K_RAFTID:
        if (cfg_parse_int(c, v, 1, 2147483647, &ll))
            *(uint64_t *)p = (uint64_t)ll;
        break;
    case K_BOOL:
        if (cJSON_IsBool(v))
            *(bool *)p = cJSON_IsTrue(v);
        else
            cfg_err(c, "expected a boolean");
        break;
    case K_ENUM:
        parse_enum(c, v, f->names, (int *)p);
        break;
    case K_OBJ:
        cfg_parse_object(c, v, f->sub, p);
        break;
    case K_ARRAY:
        parse_array(c, f, v, base);
        break;
    case K_FUNC:
        f->fn(c, v, base);
        break;
    }
}

/* obj == NULL applies the defaults only (an absent optional section, or one of the wrong type
 * whose error is already reported). */
void cfg_parse_object(struct ctx *c, const cJSON *obj, const struct table *t, void *base)
{
    if (obj && !cJSON_IsObject(obj)) {
        cfg_err(c, "expected an object");
        obj = NULL;
    }
    unsigned variant = obj && t->variant ? t->variant(obj) : 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, f->key) : NULL;
        size_t old = cfg_push_key(c, f->key);
        if (c->cluster_only && f->local) {
            if (v)
                cfg_err(c, "a node-local setting, not part of the cluster configuration");
            apply_default(c, f, base);
        } else if (v && variant && f->only && !(f->only & variant)) {
            cfg_err(c, "not valid for %s", t->variant_name(variant, f->only));
            apply_default(c, f, base);
        } else if (v) {
            if (f->kind != K_OBJ || cJSON_IsObject(v))
                c->seen |= f->seen;
            parse_field(c, f, v, base);
        } else {
            if (obj && f->required)
                cfg_err(c, "missing");
            apply_default(c, f, base);
        }
        cfg_pop(c, old);
    }
    if (!obj)
        return;
    for (const cJSON *k = obj->child; k && k->string; k = k->next) {
        size_t old = cfg_push_key(c, k->string);
        bool known = false;
        for (size_t i = 0; i < t->n && !known; i++)
            known = strcmp(t->f[i].key, k->string) == 0;
        bool dup = false;
        for (const cJSON *e = obj->child; e != k && !dup; e = e->next)
            dup = strcmp(e->string, k->string) == 0;
        if (!known)
            cfg_err(c, "unknown key");
        else if (dup)
            cfg_err(c, "duplicate key (only the first is used)");
        cfg_pop(c, old);
    }
    if (t->check)
        t->check(c, obj, base);
}

const cJSON *cfg_get(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

int cfg_name_index(const cJSON *v, const char *const *names)
{
    for (int i = 0; cJSON_IsString(v) && names[i]; i++)
        if (strcmp(v->valuestring, names[i]) == 0)
            return i;
    return -1;
}
