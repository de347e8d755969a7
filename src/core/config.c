/* Config parsing and validation. One table per JSON object drives type checks, defaults, ranges
 * and the unknown-key check; cross-field, uniqueness and secret-file rules run after the walk.
 * Every problem is collected so an operator fixes a file in one round. */
#include "drwatch/config.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MS_MAX 86400000u          /* one day: beyond that a setting is a typo */
#define THRESHOLD_MAX 100u
#define SNAPSHOT_MAX 100000000u
#define UNIX_PATH_MAX 107u        /* sizeof(sun_path) - 1 on Linux */
#define CONFIG_FILE_MAX (16u << 20)  /* room for DW_MAX_EDGES_TOTAL Edges with probes */
#define SECRET_CHECK_MAX 4096u    /* secrets longer than this are refused */

enum kind {
    K_STR,    /* char buffer, checked by fmt */
    K_UINT,   /* unsigned, def/min/max */
    K_BOOL,
    K_RAFTID, /* uint64_t, integer 1..INT32_MAX */
    K_OBJ,    /* nested object described by sub */
    K_ARRAY,  /* array of objects (sub) or of strings (fmt) */
    K_ENUM,   /* string from names, stored as its index in an int-sized enum; def */
    K_FUNC,   /* custom: fn gets the value, NULL when absent */
};

enum fmt { F_TEXT, F_ID, F_ADDR, F_URL, F_PATH, F_SIPURI };

/* Bits remembering which keys were present, for rules that depend on presence. */
enum seen { SEEN_GENESYS = 1, SEEN_REGION = 2, SEEN_API_URL = 4, SEEN_LOGIN_URL = 8,
            SEEN_ADMIN_SOCKET = 16 };

struct ctx;
struct table;

struct field {
    const char *key;
    enum kind kind;
    bool required;
    size_t off;               /* into the struct the table describes */
    size_t size;              /* K_STR: buffer size; K_ARRAY: element size */
    enum fmt fmt;             /* K_STR, K_ARRAY of strings */
    unsigned def, min, max;   /* K_UINT, K_BOOL, K_ENUM: default; K_UINT: range;
                                 K_ARRAY: entry count range */
    const char *const *names; /* K_ENUM: accepted strings, NULL-terminated */
    unsigned only;            /* variant bits the key is valid for, 0 = always (see variant) */
    const struct table *sub;  /* K_OBJ, K_ARRAY of objects */
    size_t count_off;         /* K_ARRAY: int holding the entry count */
    bool alloc;               /* K_ARRAY: off holds a pointer to an array allocated to the count */
    unsigned seen;            /* enum seen bit set when the key is present */
    void (*fn)(struct ctx *c, const cJSON *v, void *base);
};

struct table {
    const struct field *f;
    size_t n;
    /* Optional: which variant an object is (e.g. a probe's kind), read from the raw object so
     * keys of other variants are refused by name; 0 = unknown, no such check. */
    unsigned (*variant)(const cJSON *obj);
    const char *(*variant_name)(unsigned variant, unsigned only);
    /* Optional: rules within one object, run after its fields with the object's path. */
    void (*check)(struct ctx *c, const cJSON *obj, void *base);
};

struct ctx {
    struct dw_config *cfg;
    struct dw_config_errors *errs;
    int total;
    unsigned seen;
    bool members_bad;         /* an error under cluster.members: skip the per-member secrets */
    size_t len;
    char path[512];
};

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

/* Error at the current path. */
__attribute__((format(printf, 2, 3)))
static void err(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(c, NULL, fmt, ap);
    va_end(ap);
}

/* Error at an explicit path (checks made after the walk). */
__attribute__((format(printf, 3, 4)))
static void err_at(struct ctx *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(c, path, fmt, ap);
    va_end(ap);
}

static size_t push_key(struct ctx *c, const char *key);
static void pop(struct ctx *c, size_t old);

/* Error at a key below the current path (rules checked once an object is parsed). */
__attribute__((format(printf, 3, 4)))
static void err_key(struct ctx *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    size_t old = push_key(c, key);
    va_start(ap, fmt);
    verr(c, NULL, fmt, ap);
    va_end(ap);
    pop(c, old);
}

static size_t push_key(struct ctx *c, const char *key)
{
    size_t old = c->len;
    int n = snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
    c->len = (n < 0 || (size_t)n >= sizeof c->path - old) ? sizeof c->path - 1 : old + (size_t)n;
    return old;
}

static size_t push_index(struct ctx *c, int i)
{
    size_t old = c->len;
    int n = snprintf(c->path + old, sizeof c->path - old, "[%d]", i);
    c->len = (n < 0 || (size_t)n >= sizeof c->path - old) ? sizeof c->path - 1 : old + (size_t)n;
    return old;
}

static void pop(struct ctx *c, size_t old)
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
static bool parse_str(struct ctx *c, const cJSON *v, char *dst, size_t size, enum fmt fmt)
{
    if (!cJSON_IsString(v)) {
        err(c, "expected a string");
        return false;
    }
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n >= size) {
        err(c, "too long (max %zu)", size - 1);
        return false;
    }
    bool ok = n > 0;
    switch (fmt) {
    case F_ID:
        for (size_t i = 0; ok && i < n; i++)
            ok = is_id_char(s[i]);
        if (!ok)
            err(c, "invalid id \"%.64s\" (use 1 to %zu of A-Z a-z 0-9 . _ -)", s, size - 1);
        break;
    case F_ADDR:
        ok = valid_addr(s);
        if (!ok)
            err(c, "invalid address \"%.64s\" (expected IPv4 a.b.c.d:port, port 1-65535)", s);
        break;
    case F_URL:
        if (url_has_userinfo(s)) {
            /* not echoed: it holds a credential */
            err(c, "credentials in a URL are not supported (they would appear in logs)");
            return false;
        }
        ok = valid_url(s);
        if (!ok)
            err(c, "invalid URL \"%.100s\" (expected http:// or https:// and a host)", s);
        break;
    case F_SIPURI:
        ok = valid_sip_uri(s);
        if (!ok)
            err(c, "invalid SIP URI \"%.100s\" (expected sip: or sips: and no spaces)", s);
        break;
    case F_TEXT:
    case F_PATH:
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)s[i] >= ' ' && s[i] != 0x7f;
        if (!ok)
            err(c, n ? "must not contain control characters" : "must not be empty");
        break;
    }
    if (ok)
        memcpy(dst, s, n + 1);
    return ok;
}

/* JSON numbers are doubles: accept only integers in [lo, hi]. */
static bool parse_int(struct ctx *c, const cJSON *v, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(v)) {
        err(c, "expected an integer");
        return false;
    }
    double d = v->valuedouble;
    if (d > -1e15 && d < 1e15) {
        long long ll = (long long)d;
        if ((double)ll != d) {
            err(c, "expected an integer");
            return false;
        }
        if (ll >= lo && ll <= hi) {
            *out = ll;
            return true;
        }
    }
    err(c, "must be between %lld and %lld", lo, hi);
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
    err(c, "must be %s", list);
    return false;
}

/* ---- the table walk ---- */

static void parse_object(struct ctx *c, const cJSON *obj, const struct table *t, void *base);

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
        parse_object(c, NULL, f->sub, p);
    else if (f->kind == K_FUNC)
        f->fn(c, NULL, base);
}

static void parse_array(struct ctx *c, const struct field *f, const cJSON *v, void *base)
{
    char *first = (char *)base + f->off;
    int *count = (int *)((char *)base + f->count_off);
    if (!cJSON_IsArray(v)) {
        err(c, "expected an array");
        return;
    }
    int n = cJSON_GetArraySize(v);
    if (n < (int)f->min || n > (int)f->max)
        err(c, "needs %u to %u entries (has %d)", f->min, f->max, n);
    if (f->alloc) {
        size_t cap = (size_t)(n < (int)f->max ? n : (int)f->max);
        first = cap ? calloc(cap, f->size) : NULL;
        *(void **)((char *)base + f->off) = first;
        if (cap && !first) {
            err(c, "out of memory");
            return;
        }
    }
    int i = 0;
    for (const cJSON *item = v->child; item && i < (int)f->max; item = item->next, i++) {
        size_t old = push_index(c, i);
        char *elem = first + (size_t)i * f->size;
        if (f->sub)
            parse_object(c, item, f->sub, elem);
        else
            parse_str(c, item, elem, f->size, f->fmt);
        pop(c, old);
    }
    *count = i;
}

static void parse_field(struct ctx *c, const struct field *f, const cJSON *v, void *base)
{
    char *p = (char *)base + f->off;
    long long ll;
    switch (f->kind) {
    case K_STR:
        parse_str(c, v, p, f->size, f->fmt);
        break;
    case K_UINT:
        /* an invalid number stays 0 so cross-field checks skip it */
        if (parse_int(c, v, f->min, f->max, &ll))
            *(unsigned *)p = (unsigned)ll;
        break;
    case K_RAFTID:
        if (parse_int(c, v, 1, 2147483647, &ll))
            *(uint64_t *)p = (uint64_t)ll;
        break;
    case K_BOOL:
        if (cJSON_IsBool(v))
            *(bool *)p = cJSON_IsTrue(v);
        else
            err(c, "expected a boolean");
        break;
    case K_ENUM:
        parse_enum(c, v, f->names, (int *)p);
        break;
    case K_OBJ:
        parse_object(c, v, f->sub, p);
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
static void parse_object(struct ctx *c, const cJSON *obj, const struct table *t, void *base)
{
    if (obj && !cJSON_IsObject(obj)) {
        err(c, "expected an object");
        obj = NULL;
    }
    unsigned variant = obj && t->variant ? t->variant(obj) : 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, f->key) : NULL;
        size_t old = push_key(c, f->key);
        if (v && variant && f->only && !(f->only & variant)) {
            err(c, "not valid for %s", t->variant_name(variant, f->only));
            apply_default(c, f, base);
        } else if (v) {
            if (f->kind != K_OBJ || cJSON_IsObject(v))
                c->seen |= f->seen;
            parse_field(c, f, v, base);
        } else {
            if (obj && f->required)
                err(c, "missing");
            apply_default(c, f, base);
        }
        pop(c, old);
    }
    if (!obj)
        return;
    for (const cJSON *k = obj->child; k && k->string; k = k->next) {
        size_t old = push_key(c, k->string);
        bool known = false;
        for (size_t i = 0; i < t->n && !known; i++)
            known = strcmp(t->f[i].key, k->string) == 0;
        bool dup = false;
        for (const cJSON *e = obj->child; e != k && !dup; e = e->next)
            dup = strcmp(e->string, k->string) == 0;
        if (!known)
            err(c, "unknown key");
        else if (dup)
            err(c, "duplicate key (only the first is used)");
        pop(c, old);
    }
    if (t->check)
        t->check(c, obj, base);
}

/* A target's site: absent means siteless (BYOC Cloud), otherwise a configured site id. */
static void parse_target_site(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_target *t = base;
    char id[DW_ID_MAX];
    t->site = -1;
    if (!v || !parse_str(c, v, id, sizeof id, F_ID))
        return;
    t->site = dw_config_site_index(c->cfg, id);
    if (t->site < 0)
        err(c, "unknown site \"%s\"", id);
}

/* ---- tables ---- */

#define STR(k, req, type, m, f) \
    { .key = k, .kind = K_STR, .required = req, .off = offsetof(type, m), \
      .size = sizeof(((type *)0)->m), .fmt = f }
#define NUM(k, type, m, d, lo, hi) \
    { .key = k, .kind = K_UINT, .off = offsetof(type, m), .def = d, .min = lo, .max = hi }
#define ARR(k, type, m, cnt, lo, hi, s, f) \
    { .key = k, .kind = K_ARRAY, .required = true, .off = offsetof(type, m), \
      .size = sizeof(((type *)0)->m[0]), .count_off = offsetof(type, cnt), .min = lo, .max = hi, \
      .sub = s, .fmt = f }
/* Like ARR, for a member that points to an array allocated to the configured count. */
#define ARR_ALLOC(k, type, m, cnt, lo, hi, s) \
    { .key = k, .kind = K_ARRAY, .required = true, .off = offsetof(type, m), \
      .size = sizeof(((type *)0)->m[0]), .count_off = offsetof(type, cnt), .min = lo, .max = hi, \
      .sub = s, .alloc = true }
#define OBJ(k, req, s) { .key = k, .kind = K_OBJ, .required = req, .sub = s }
#define TABLE(a) { .f = a, .n = sizeof a / sizeof a[0] }

typedef struct dw_config cfg_t;

/* ---- rules within a probe, an Edge, a site ---- */

/* Probe variants: which keys a probe object may have depends on its kind (and SIP transport). */
enum { V_HTTP = 1, V_SIP_UDP = 2, V_SIP_TCP = 4, V_SIP_TLS = 8, V_TCP = 16 };
#define V_SIP (V_SIP_UDP | V_SIP_TCP | V_SIP_TLS)
#define V_TLS (V_HTTP | V_SIP_TLS)

static const char *const probe_kinds[] = { "http", "sip", "tcp", NULL };
static const char *const sip_transports[] = { "udp", "tcp", "tls", NULL };
static const char *const combines[] = { "probes", "probes_and_genesys", "probes_or_genesys", NULL };
static const char *const site_rules[] = { "any", "all", NULL };

static const cJSON *get(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int name_index(const cJSON *v, const char *const *names)
{
    for (int i = 0; cJSON_IsString(v) && names[i]; i++)
        if (strcmp(v->valuestring, names[i]) == 0)
            return i;
    return -1;
}

static unsigned probe_variant(const cJSON *obj)
{
    const cJSON *t;
    int i;
    switch (name_index(get(obj, "kind"), probe_kinds)) {
    case DW_PROBE_HTTP:
        return V_HTTP;
    case DW_PROBE_TCP:
        return V_TCP;
    case DW_PROBE_SIP:
        t = get(obj, "transport");
        i = t ? name_index(t, sip_transports) : DW_SIP_UDP;
        /* an invalid transport is reported on its own: meanwhile every SIP key is fine */
        return i == DW_SIP_UDP ? V_SIP_UDP : i == DW_SIP_TCP ? V_SIP_TCP
                                         : i == DW_SIP_TLS ? V_SIP_TLS : V_SIP;
    default:
        return 0; /* kind missing or invalid: reported on "kind" */
    }
}

static const char *probe_variant_name(unsigned variant, unsigned only)
{
    if (variant == V_HTTP)
        return "an http probe";
    if (variant == V_TCP)
        return "a tcp probe";
    if (!(only & V_SIP))
        return "a sip probe";
    return variant == V_SIP_UDP ? "a sip probe over udp (only with \"transport\": \"tls\")"
                                : "a sip probe over tcp (only with \"transport\": \"tls\")";
}

/* Status codes: integers lo..hi, or with classes also "2xx".."6xx" stored as 2..6. */
static void parse_codes(struct ctx *c, const cJSON *v, int *out, int *count, int lo, int hi,
                        bool classes)
{
    if (!v)
        return;
    if (!cJSON_IsArray(v)) {
        err(c, "expected an array");
        return;
    }
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > DW_MAX_CODES)
        err(c, "needs 1 to %d entries (has %d)", DW_MAX_CODES, n);
    int i = 0;
    for (const cJSON *it = v->child; it && i < DW_MAX_CODES; it = it->next, i++) {
        size_t old = push_index(c, i);
        long long code = 0;
        if (classes && cJSON_IsString(it)) {
            const char *t = it->valuestring;
            if (t[0] >= '2' && t[0] <= '6' && (t[1] == 'x' || t[1] == 'X') &&
                (t[2] == 'x' || t[2] == 'X') && !t[3])
                code = t[0] - '0';
            else
                err(c, "invalid class \"%.16s\" (expected \"2xx\" to \"6xx\")", t);
        } else if (classes && !cJSON_IsNumber(it)) {
            err(c, "expected an integer %d to %d or a class \"2xx\" to \"6xx\"", lo, hi);
        } else {
            parse_int(c, it, lo, hi, &code);
        }
        for (int k = 0; code && k < *count; k++)
            if (out[k] == code) {
                if (code < 10)
                    err(c, "duplicate class \"%lldxx\"", code);
                else
                    err(c, "duplicate code %lld", code);
                code = 0;
            }
        if (code)
            out[(*count)++] = (int)code;
        pop(c, old);
    }
}

static void parse_expect_status(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_probe_spec *p = base;
    parse_codes(c, v, p->expect_status, &p->n_expect_status, 100, 599, false);
}

static void parse_alive_codes(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_probe_spec *p = base;
    parse_codes(c, v, p->alive_codes, &p->n_alive_codes, 100, 699, true);
}

/* TLS material is read by the prober much later: refuse a file it could not open now. */
static void check_readable(struct ctx *c, const char *key, const char *file)
{
    struct stat st;
    int fd;
    if (!file[0])
        return;
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st) != 0)
        err_key(c, key, "cannot read \"%s\": %s", file, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        err_key(c, key, "cannot read \"%s\": not a regular file", file);
    if (fd >= 0)
        close(fd);
}

static void probe_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_probe_spec *p = base;
    const struct dw_probe_cfg *pc = &c->cfg->probe;
    unsigned v = obj ? probe_variant(obj) : 0;
    if (!v)
        return;
    if (!get(obj, "timeout_ms"))
        p->timeout_ms = pc->timeout_ms;
    else if (p->timeout_ms && pc->interval_ms && p->timeout_ms > pc->interval_ms)
        err_key(c, "timeout_ms", "must be at most probe.interval_ms (%u > %u)", p->timeout_ms,
                pc->interval_ms);
    const char *need = v == V_HTTP ? "url" : "address";
    if (!get(obj, need))
        err_key(c, need, "missing (required for %s)", probe_variant_name(v, 0));
    if ((v & V_SIP) && !get(obj, "request_uri") && p->address[0])
        snprintf(p->request_uri, sizeof p->request_uri, "%s:%s",
                 p->transport == DW_SIP_TLS ? "sips" : "sip", p->address);
    if (!(v & V_TLS))
        return;
    bool cert = get(obj, "client_cert"), key = get(obj, "client_key");
    if (cert != key)
        err_key(c, cert ? "client_key" : "client_cert", "missing (required with %s)",
                cert ? "client_cert" : "client_key");
    check_readable(c, "ca_file", p->ca_file);
    check_readable(c, "client_cert", p->client_cert);
    check_readable(c, "client_key", p->client_key);
}

/* health_url is shorthand for an http probe with the defaults, placed first. */
static void edge_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_edge *e = base;
    if (!obj)
        return;
    const cJSON *url = get(obj, "health_url"), *probes = get(obj, "probes");
    if (!url && !probes) {
        err(c, "needs health_url or probes");
        return;
    }
    /* more than DW_MAX_PROBES in the array alone is reported by the array */
    if (url && cJSON_IsArray(probes) && cJSON_GetArraySize(probes) == DW_MAX_PROBES)
        err_key(c, "probes", "too many probes: health_url counts as one (max %d in all)",
                DW_MAX_PROBES);
    if (!e->health_url[0])
        return;
    int n = e->n_probes < DW_MAX_PROBES - 1 ? e->n_probes : DW_MAX_PROBES - 1;
    struct dw_probe_spec *grown = realloc(e->probes, (size_t)(n + 1) * sizeof *grown);
    if (!grown) {
        err(c, "out of memory");
        return;
    }
    e->probes = grown;
    memmove(&e->probes[1], &e->probes[0], (size_t)n * sizeof e->probes[0]);
    struct dw_probe_spec *p = &e->probes[0];
    memset(p, 0, sizeof *p);
    p->kind = DW_PROBE_HTTP;
    p->timeout_ms = c->cfg->probe.timeout_ms;
    p->verify_tls = true;
    memcpy(p->url, e->health_url, sizeof p->url);
    e->n_probes = n + 1;
}

static const struct field at_least_f[] = {
    { .key = "at_least", .kind = K_UINT, .required = true, .off = offsetof(struct dw_site, at_least),
      .min = 1, .max = DW_MAX_EDGES },
};
static const struct table at_least_t = TABLE(at_least_f);

/* "any" | "all" | {"at_least": k}; absent means "any". */
static void parse_rule(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_site *s = base;
    int i;
    if (!v)
        return;
    if (cJSON_IsObject(v)) {
        s->rule = DW_RULE_AT_LEAST;
        parse_object(c, v, &at_least_t, s);
    } else if ((i = name_index(v, site_rules)) >= 0) {
        s->rule = (enum dw_site_rule)i;
    } else {
        err(c, "must be \"any\", \"all\" or {\"at_least\": k}");
    }
}

static void site_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_site *s = base;
    char site_path[sizeof c->path];
    if (!obj)
        return;
    if (s->rule == DW_RULE_AT_LEAST && s->at_least > 0 && s->n_edges > 0 &&
        s->at_least > s->n_edges)
        err_key(c, "rule.at_least", "must be at most the number of edges (%d > %d)",
                s->at_least, s->n_edges);
    if (s->combine == DW_COMBINE_PROBES)
        return;
    /* the cloud view is per Edge: an Edge Genesys cannot name would never count */
    memcpy(site_path, c->path, sizeof site_path);
    const cJSON *edges = get(obj, "edges");
    int j = 0;
    for (const cJSON *it = cJSON_IsArray(edges) ? edges->child : NULL; it && j < s->n_edges;
         it = it->next, j++) {
        if (!cJSON_IsObject(it) || get(it, "genesys_edge_id"))
            continue;
        size_t old = push_key(c, "edges");
        push_index(c, j);
        push_key(c, "genesys_edge_id");
        err(c, "required when %s.combine uses genesys", site_path);
        pop(c, old);
    }
}

static const struct field node_f[] = {
    { .key = "id", .kind = K_RAFTID, .required = true, .off = offsetof(cfg_t, node_id) },
    STR("data_dir", true, cfg_t, data_dir, F_PATH),
    { .key = "admin_socket", .kind = K_STR, .off = offsetof(cfg_t, admin_socket),
      .size = DW_PATH_MAX, .fmt = F_PATH, .seen = SEEN_ADMIN_SOCKET },
    { .key = "debug", .kind = K_BOOL, .off = offsetof(cfg_t, debug) },
    STR("metrics_address", false, cfg_t, metrics_address, F_ADDR),
};

static const struct field member_f[] = {
    { .key = "id", .kind = K_RAFTID, .required = true, .off = offsetof(struct dw_member, id) },
    STR("name", false, struct dw_member, name, F_ID),
    STR("raft_address", true, struct dw_member, raft_address, F_ADDR),
    STR("peer_address", true, struct dw_member, peer_address, F_ADDR),
};
static const struct table member_t = TABLE(member_f);

/* One secret shared by every member let any holder speak for every node: refused by name so
 * the operator learns what replaced it. */
static void refuse_shared_secret(struct ctx *c, const cJSON *v, void *base)
{
    (void)base;
    if (v)
        err(c, "no longer supported: a secret shared by all members lets any of them speak for "
               "the others; use cluster.peer_secret_dir (see docs/config.md)");
}

static const struct field cluster_f[] = {
    ARR("members", cfg_t, members, n_members, 1, DW_MAX_MEMBERS, &member_t, F_ID),
    STR("peer_secret_dir", true, cfg_t, cluster.peer_secret_dir, F_PATH),
    { .key = "peer_secret_file", .kind = K_FUNC, .fn = refuse_shared_secret },
    NUM("election_timeout_ms", cfg_t, cluster.election_timeout_ms, 1000, 1, MS_MAX),
    NUM("heartbeat_ms", cfg_t, cluster.heartbeat_ms, 100, 1, MS_MAX),
    NUM("observation_ttl_ms", cfg_t, cluster.observation_ttl_ms, 15000, 1, MS_MAX),
    NUM("refresh_interval_ms", cfg_t, cluster.refresh_interval_ms, 5000, 1, MS_MAX),
    NUM("snapshot_threshold", cfg_t, cluster.snapshot_threshold, 1024, 1, SNAPSHOT_MAX),
    NUM("snapshot_trailing", cfg_t, cluster.snapshot_trailing, 256, 1, SNAPSHOT_MAX),
    NUM("min_submit_interval_ms", cfg_t, cluster.min_submit_interval_ms, 250, 1, MS_MAX),
    NUM("history_retention_days", cfg_t, cluster.history_retention_days, 90, 1, 3650),
    NUM("history_max_rows", cfg_t, cluster.history_max_rows, 100000, 1000, 10000000),
};

static const struct field genesys_f[] = {
    { .key = "region", .kind = K_STR, .off = offsetof(cfg_t, genesys.region), .size = DW_ID_MAX,
      .fmt = F_TEXT, .seen = SEEN_REGION },
    { .key = "api_base_url", .kind = K_STR, .off = offsetof(cfg_t, genesys.api_base_url),
      .size = DW_URL_MAX, .fmt = F_URL, .seen = SEEN_API_URL },
    { .key = "login_base_url", .kind = K_STR, .off = offsetof(cfg_t, genesys.login_base_url),
      .size = DW_URL_MAX, .fmt = F_URL, .seen = SEEN_LOGIN_URL },
    STR("client_id", true, cfg_t, genesys.client_id, F_TEXT),
    STR("client_secret_file", true, cfg_t, genesys.client_secret_file, F_PATH),
    NUM("request_timeout_ms", cfg_t, genesys.request_timeout_ms, 10000, 1, MS_MAX),
    NUM("verify_timeout_ms", cfg_t, genesys.verify_timeout_ms, 60000, 1, MS_MAX),
    NUM("verify_interval_ms", cfg_t, genesys.verify_interval_ms, 2000, 1, MS_MAX),
    NUM("step_timeout_ms", cfg_t, genesys.step_timeout_ms, 180000, 1, MS_MAX),
    NUM("poll_interval_ms", cfg_t, genesys.poll_interval_ms, 10000, 1, MS_MAX),
    NUM("cloud_ttl_ms", cfg_t, genesys.cloud_ttl_ms, 35000, 1, MS_MAX),
    NUM("cloud_grace_ms", cfg_t, genesys.cloud_grace_ms, 60000, 0, MS_MAX),
    NUM("rate_budget_per_min", cfg_t, genesys.rate_budget_per_min, 120, 1, 300),
};

static const struct field tilt_f[] = {
    NUM("stall_ms", cfg_t, tilt.stall_ms, 2000, 1, MS_MAX),
    NUM("clock_jump_ms", cfg_t, tilt.clock_jump_ms, 2000, 1, MS_MAX),
    NUM("abstain_ms", cfg_t, tilt.abstain_ms, 30000, 1, MS_MAX),
};

static const struct field probe_f[] = {
    NUM("interval_ms", cfg_t, probe.interval_ms, 1000, 1, MS_MAX),
    NUM("timeout_ms", cfg_t, probe.timeout_ms, 800, 1, MS_MAX),
    NUM("fail_threshold", cfg_t, probe.fail_threshold, 3, 1, THRESHOLD_MAX),
    NUM("recover_threshold", cfg_t, probe.recover_threshold, 2, 1, THRESHOLD_MAX),
};

typedef struct dw_probe_spec spec_t;
#define PSTR(k, m, f, o) \
    { .key = k, .kind = K_STR, .off = offsetof(spec_t, m), .size = sizeof(((spec_t *)0)->m), \
      .fmt = f, .only = o }

/* All keys of all kinds: .only refuses a key by name where its kind has no use for it. */
static const struct field spec_f[] = {
    { .key = "kind", .kind = K_ENUM, .required = true, .off = offsetof(spec_t, kind),
      .names = probe_kinds },
    /* 0 until probe_check applies probe.timeout_ms */
    { .key = "timeout_ms", .kind = K_UINT, .off = offsetof(spec_t, timeout_ms), .min = 1,
      .max = MS_MAX },
    PSTR("url", url, F_URL, V_HTTP),
    { .key = "expect_status", .kind = K_FUNC, .fn = parse_expect_status, .only = V_HTTP },
    PSTR("body_match", body_match, F_TEXT, V_HTTP),
    PSTR("ca_file", ca_file, F_PATH, V_TLS),
    PSTR("client_cert", client_cert, F_PATH, V_TLS),
    PSTR("client_key", client_key, F_PATH, V_TLS),
    { .key = "verify_tls", .kind = K_BOOL, .off = offsetof(spec_t, verify_tls), .def = 1,
      .only = V_TLS },
    PSTR("address", address, F_ADDR, V_SIP | V_TCP),
    { .key = "transport", .kind = K_ENUM, .off = offsetof(spec_t, transport),
      .names = sip_transports, .only = V_SIP },
    PSTR("request_uri", request_uri, F_SIPURI, V_SIP),
    PSTR("tls_server_name", tls_server_name, F_TEXT, V_SIP_TLS),
    { .key = "alive_codes", .kind = K_FUNC, .fn = parse_alive_codes, .only = V_SIP },
};
static const struct table spec_t_table = {
    .f = spec_f, .n = sizeof spec_f / sizeof spec_f[0], .variant = probe_variant,
    .variant_name = probe_variant_name, .check = probe_check,
};

static const struct field edge_f[] = {
    STR("id", true, struct dw_edge, id, F_ID),
    STR("genesys_edge_id", false, struct dw_edge, genesys_edge_id, F_ID),
    STR("health_url", false, struct dw_edge, health_url, F_URL),
    { .key = "probes", .kind = K_ARRAY, .off = offsetof(struct dw_edge, probes),
      .size = sizeof(spec_t), .count_off = offsetof(struct dw_edge, n_probes), .min = 1,
      .max = DW_MAX_PROBES, .sub = &spec_t_table, .alloc = true },
};
static const struct table edge_t = { .f = edge_f, .n = sizeof edge_f / sizeof edge_f[0],
                                     .check = edge_check };

static const struct field site_f[] = {
    STR("id", true, struct dw_site, id, F_ID),
    { .key = "rule", .kind = K_FUNC, .fn = parse_rule },
    { .key = "combine", .kind = K_ENUM, .off = offsetof(struct dw_site, combine),
      .names = combines },
    ARR_ALLOC("edges", struct dw_site, edges, n_edges, 1, DW_MAX_EDGES, &edge_t),
};
static const struct table site_t = { .f = site_f, .n = sizeof site_f / sizeof site_f[0],
                                     .check = site_check };

static const struct field target_f[] = {
    STR("id", true, struct dw_target, id, F_ID),
    { .key = "site", .kind = K_FUNC, .fn = parse_target_site },
    ARR("trunk_base_ids", struct dw_target, trunk_base_ids, n_trunk_bases, 1,
        DW_MAX_TRUNK_BASES, NULL, F_ID),
};
static const struct table target_t = TABLE(target_f);

static const struct field group_f[] = {
    STR("id", true, struct dw_group, id, F_ID),
    ARR("targets", struct dw_group, targets, n_targets, 2, DW_MAX_TARGETS, &target_t, F_ID),
};
static const struct table group_t = TABLE(group_f);

static const struct table node_t = TABLE(node_f), cluster_t = TABLE(cluster_f),
                          genesys_t = TABLE(genesys_f), probe_t = TABLE(probe_f),
                          tilt_t = TABLE(tilt_f);

/* Sections share the dw_config base (offsets are from cfg), so OBJ rows have off 0. Sites come
 * before groups: a target's site is resolved against the sites already parsed; probe comes
 * before sites: its values are the defaults and limits of each Edge's probes. */
static const struct field top_f[] = {
    OBJ("node", true, &node_t),
    OBJ("cluster", true, &cluster_t),
    { .key = "genesys", .kind = K_OBJ, .required = true, .sub = &genesys_t, .seen = SEEN_GENESYS },
    OBJ("probe", false, &probe_t),
    OBJ("tilt", false, &tilt_t),
    ARR_ALLOC("sites", cfg_t, sites, n_sites, 1, DW_MAX_SITES, &site_t),
    ARR("failover_groups", cfg_t, groups, n_groups, 1, DW_MAX_GROUPS, &group_t, F_ID),
};
static const struct table top_t = TABLE(top_f);

/* ---- checks after the walk ---- */

static const struct {
    const char *region, *domain;
} regions[] = {
    { "us-east-1", "mypurecloud.com" },      { "us-east-2", "use2.us-gov-pure.cloud" },
    { "us-west-2", "usw2.pure.cloud" },      { "ca-central-1", "cac1.pure.cloud" },
    { "sa-east-1", "sae1.pure.cloud" },      { "eu-west-1", "mypurecloud.ie" },
    { "eu-west-2", "euw2.pure.cloud" },      { "eu-central-1", "mypurecloud.de" },
    { "eu-central-2", "euc2.pure.cloud" },   { "me-central-1", "mec1.pure.cloud" },
    { "ap-south-1", "aps1.pure.cloud" },     { "ap-southeast-1", "apse1.pure.cloud" },
    { "ap-southeast-2", "mypurecloud.com.au" }, { "ap-northeast-1", "mypurecloud.jp" },
    { "ap-northeast-2", "apne2.pure.cloud" }, { "ap-northeast-3", "apne3.pure.cloud" },
    { "mx-central-1", "mxc1.pure.cloud" },
};

static void check_genesys(struct ctx *c)
{
    struct dw_genesys_cfg *g = &c->cfg->genesys;
    bool region = c->seen & SEEN_REGION, api = c->seen & SEEN_API_URL,
         login = c->seen & SEEN_LOGIN_URL;
    if (!(c->seen & SEEN_GENESYS))
        return;
    if (!region) {
        if (!api && !login)
            err_at(c, "genesys.region", "missing (or set genesys.api_base_url and "
                                        "genesys.login_base_url)");
        else if (!api || !login)
            err_at(c, api ? "genesys.login_base_url" : "genesys.api_base_url",
                   "missing (needed when genesys.region is not set)");
        return;
    }
    if (!g->region[0])
        return; /* present but invalid: already reported */
    const char *domain = NULL;
    for (size_t i = 0; i < sizeof regions / sizeof regions[0] && !domain; i++)
        if (strcmp(regions[i].region, g->region) == 0)
            domain = regions[i].domain;
    if (!domain) {
        err_at(c, "genesys.region", "unknown region \"%s\"", g->region);
        return;
    }
    if (!api)
        snprintf(g->api_base_url, sizeof g->api_base_url, "https://api.%s", domain);
    if (!login)
        snprintf(g->login_base_url, sizeof g->login_base_url, "https://login.%s", domain);
}

/* Two listeners collide on one port when the hosts match or either is the wildcard. */
static bool same_listener(const char *a, const char *b)
{
    const char *pa = strrchr(a, ':'), *pb = strrchr(b, ':');
    if (!pa || !pb || strcmp(pa, pb) != 0)
        return false;
    size_t na = (size_t)(pa - a), nb = (size_t)(pb - b);
    return (na == nb && memcmp(a, b, na) == 0) || strncmp(a, "0.0.0.0:", 8) == 0 ||
           strncmp(b, "0.0.0.0:", 8) == 0;
}

static void check_metrics_address(struct ctx *c)
{
    const struct dw_config *cfg = c->cfg;
    const struct dw_member *m = dw_config_member(cfg, cfg->node_id);
    if (!cfg->metrics_address[0] || !m)
        return;
    int i = (int)(m - cfg->members);
    if (m->raft_address[0] && same_listener(cfg->metrics_address, m->raft_address))
        err_at(c, "node.metrics_address", "\"%s\" collides with this node's "
               "cluster.members[%d].raft_address \"%s\"", cfg->metrics_address, i, m->raft_address);
    else if (m->peer_address[0] && same_listener(cfg->metrics_address, m->peer_address))
        err_at(c, "node.metrics_address", "\"%s\" collides with this node's "
               "cluster.members[%d].peer_address \"%s\"", cfg->metrics_address, i, m->peer_address);
}

static void check_node(struct ctx *c)
{
    struct dw_config *cfg = c->cfg;
    /* a repeated id gets no default name: its duplicate is reported once, on the id */
    for (int i = 0; i < cfg->n_members; i++)
        if (!cfg->members[i].name[0] && cfg->members[i].id &&
            dw_config_member(cfg, cfg->members[i].id) == &cfg->members[i])
            snprintf(cfg->members[i].name, sizeof cfg->members[i].name, "n%llu",
                     (unsigned long long)cfg->members[i].id);
    if (cfg->node_id && cfg->n_members > 0 && !dw_config_member(cfg, cfg->node_id))
        err_at(c, "node.id", "%llu is not the id of any cluster.members entry",
               (unsigned long long)cfg->node_id);

    check_metrics_address(c);

    if (!(c->seen & SEEN_ADMIN_SOCKET) && cfg->data_dir[0]) {
        size_t n = strlen(cfg->data_dir);
        const char *sep = cfg->data_dir[n - 1] == '/' ? "" : "/";
        if (n + strlen(sep) + strlen("admin.sock") > UNIX_PATH_MAX)
            err_at(c, "node.admin_socket", "the default <data_dir>/admin.sock is longer than a "
                                           "Unix socket path allows (max %u); set it",
                   UNIX_PATH_MAX);
        else if (snprintf(cfg->admin_socket, sizeof cfg->admin_socket, "%s%sadmin.sock",
                          cfg->data_dir, sep) >= (int)sizeof cfg->admin_socket)
            err_at(c, "node.admin_socket", "the default <data_dir>/admin.sock is too long; set it");
    } else if (strlen(cfg->admin_socket) > UNIX_PATH_MAX) {
        err_at(c, "node.admin_socket", "too long for a Unix socket path (max %u)", UNIX_PATH_MAX);
    }
}

/* Invalid numbers were left at 0; skip those to avoid a follow-up error. */
static void check_order(struct ctx *c, const char *a_path, unsigned a, const char *b_path,
                        unsigned b, bool strict)
{
    if (a && b && (strict ? a >= b : a > b))
        err_at(c, a_path, "must be %s %s (%u %s %u)", strict ? "less than" : "at most", b_path, a,
               strict ? ">=" : ">", b);
}

static void check_numbers(struct ctx *c)
{
    const struct dw_config *cfg = c->cfg;
    check_order(c, "probe.timeout_ms", cfg->probe.timeout_ms, "probe.interval_ms",
                cfg->probe.interval_ms, false);
    check_order(c, "cluster.heartbeat_ms", cfg->cluster.heartbeat_ms,
                "cluster.election_timeout_ms", cfg->cluster.election_timeout_ms, true);
    check_order(c, "cluster.refresh_interval_ms", cfg->cluster.refresh_interval_ms,
                "cluster.observation_ttl_ms", cfg->cluster.observation_ttl_ms, true);
    check_order(c, "genesys.verify_interval_ms", cfg->genesys.verify_interval_ms,
                "genesys.verify_timeout_ms", cfg->genesys.verify_timeout_ms, false);
    check_order(c, "cluster.min_submit_interval_ms", cfg->cluster.min_submit_interval_ms,
                "cluster.refresh_interval_ms", cfg->cluster.refresh_interval_ms, true);
    /* a view must survive one late poll, or every poll hiccup turns the cloud signal unknown */
    if (cfg->genesys.cloud_ttl_ms && cfg->genesys.poll_interval_ms &&
        cfg->genesys.cloud_ttl_ms <= cfg->genesys.poll_interval_ms)
        err_at(c, "genesys.cloud_ttl_ms", "must be greater than genesys.poll_interval_ms (%u <= %u)",
               cfg->genesys.cloud_ttl_ms, cfg->genesys.poll_interval_ms);
}

/* Values already seen in one uniqueness scope, with where each was first seen. A hash index
 * keeps tens of thousands of Edge ids linear. */
struct seen_entry {
    char val[DW_ID_MAX];
    char path[96];
};
struct seen_buf {
    struct seen_entry *e;
    int *slot;  /* index into e, -1 = free */
    size_t mask;
};
struct seen_set {
    struct seen_buf *b;
    int n;
    const char *what;
    bool quote;
};

static struct seen_set seen_scope(struct seen_buf *b, const char *what, bool quote)
{
    memset(b->slot, 0xff, (b->mask + 1) * sizeof b->slot[0]);
    return (struct seen_set){ .b = b, .what = what, .quote = quote };
}

static size_t seen_hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

__attribute__((format(printf, 4, 5)))
static void seen_add(struct ctx *c, struct seen_set *s, const char *val, const char *fmt, ...)
{
    struct seen_entry *e = &s->b->e[s->n];
    va_list ap;
    if (!val[0])
        return; /* invalid or absent: already reported */
    va_start(ap, fmt);
    vsnprintf(e->path, sizeof e->path, fmt, ap);
    va_end(ap);
    size_t h = seen_hash(val) & s->b->mask;
    for (; s->b->slot[h] >= 0; h = (h + 1) & s->b->mask) {
        const struct seen_entry *first = &s->b->e[s->b->slot[h]];
        if (strcmp(first->val, val) == 0) {
            err_at(c, e->path, "duplicate %s %s%s%s (first at %s)", s->what, s->quote ? "\"" : "",
                   val, s->quote ? "\"" : "", first->path);
            return;
        }
    }
    snprintf(e->val, sizeof e->val, "%s", val);
    s->b->slot[h] = s->n++;
}

/* Entries of the largest scope the document can have. */
static size_t seen_cap(const struct dw_config *cfg)
{
    size_t n = 2 * (size_t)cfg->n_members + (size_t)cfg->n_sites + (size_t)cfg->n_groups +
               DW_MAX_TARGETS * DW_MAX_TRUNK_BASES + 1;
    for (int i = 0; i < cfg->n_sites; i++)
        n += (size_t)cfg->sites[i].n_edges;
    return n;
}

static void check_unique(struct ctx *c, struct seen_buf *buf)
{
    const struct dw_config *cfg = c->cfg;
    char num[24];

    struct seen_set ids = seen_scope(buf, "id", false);
    for (int i = 0; i < cfg->n_members; i++) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)cfg->members[i].id);
        seen_add(c, &ids, cfg->members[i].id ? num : "", "cluster.members[%d].id", i);
    }
    struct seen_set names = seen_scope(buf, "name", true);
    for (int i = 0; i < cfg->n_members; i++)
        seen_add(c, &names, cfg->members[i].name, "cluster.members[%d].name", i);
    /* raft and peer listeners share the host's port space: one scope for both */
    struct seen_set addrs = seen_scope(buf, "address", true);
    for (int i = 0; i < cfg->n_members; i++) {
        seen_add(c, &addrs, cfg->members[i].raft_address, "cluster.members[%d].raft_address", i);
        seen_add(c, &addrs, cfg->members[i].peer_address, "cluster.members[%d].peer_address", i);
    }

    struct seen_set sid = seen_scope(buf, "id", true);
    for (int i = 0; i < cfg->n_sites; i++)
        seen_add(c, &sid, cfg->sites[i].id, "sites[%d].id", i);
    struct seen_set eid = seen_scope(buf, "edge id", true);
    for (int i = 0; i < cfg->n_sites; i++)
        for (int j = 0; j < cfg->sites[i].n_edges; j++)
            seen_add(c, &eid, cfg->sites[i].edges[j].id, "sites[%d].edges[%d].id", i, j);

    struct seen_set gid = seen_scope(buf, "id", true);
    for (int i = 0; i < cfg->n_groups; i++)
        seen_add(c, &gid, cfg->groups[i].id, "failover_groups[%d].id", i);
    for (int i = 0; i < cfg->n_groups; i++) {
        const struct dw_group *g = &cfg->groups[i];
        struct seen_set tid = seen_scope(buf, "id", true);
        for (int j = 0; j < g->n_targets; j++)
            seen_add(c, &tid, g->targets[j].id, "failover_groups[%d].targets[%d].id", i, j);
        struct seen_set tb = seen_scope(buf, "trunk base id", true);
        for (int j = 0; j < g->n_targets; j++)
            for (int k = 0; k < g->targets[j].n_trunk_bases; k++)
                seen_add(c, &tb, g->targets[j].trunk_base_ids[k],
                         "failover_groups[%d].targets[%d].trunk_base_ids[%d]", i, j, k);
    }
}

static void run_check_unique(struct ctx *c)
{
    size_t cap = seen_cap(c->cfg), slots = 16;
    while (slots < 2 * cap)
        slots *= 2;
    struct seen_buf b = { .e = malloc(cap * sizeof *b.e), .slot = malloc(slots * sizeof *b.slot),
                          .mask = slots - 1 };
    if (b.e && b.slot)
        check_unique(c, &b);
    else
        err_at(c, "$", "out of memory");
    free(b.e);
    free(b.slot);
}

/* Edges in all sites: each costs a probe timer and a row in every observation. */
static void check_limits(struct ctx *c)
{
    long total = 0;
    for (int i = 0; i < c->cfg->n_sites; i++)
        total += c->cfg->sites[i].n_edges;
    if (total > DW_MAX_EDGES_TOTAL)
        err_at(c, "sites", "too many edges in all (%ld, max %d)", total, DW_MAX_EDGES_TOTAL);
}

static void check_secret(struct ctx *c, const char *json_path, const char *file)
{
    char buf[SECRET_CHECK_MAX + 1], msg[200];
    if (!file[0])
        return;
    if (dw_config_read_secret(file, buf, sizeof buf, msg, sizeof msg) != 0)
        err_at(c, json_path, "%s", msg);
    explicit_bzero(buf, sizeof buf);
}

/* Reads what this node shares with each other member into out (see dw_peer_secrets); every
 * problem is reported at cluster.peer_secret_dir. */
static void check_peer_secrets(struct ctx *c, struct dw_peer_secrets *out)
{
    const struct dw_config *cfg = c->cfg;
    const char *jp = "cluster.peer_secret_dir", *dir = cfg->cluster.peer_secret_dir;
    char path[DW_PATH_MAX + 32], msg[200];
    struct stat st;

    memset(out, 0, sizeof *out);
    if (!dir[0] || !dw_config_member(cfg, cfg->node_id) || c->members_bad)
        return;
    if (stat(dir, &st) != 0) {
        err_at(c, jp, "cannot read \"%s\": %s", dir, strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        err_at(c, jp, "\"%s\" is not a directory", dir);
        return;
    }
    /* Present when a whole directory was copied between nodes, or when every member was given
     * one secret of its own: both leave some node able to authenticate as another. */
    if (dw_config_peer_secret_path(cfg, cfg->node_id, path, sizeof path) == 0 &&
        access(path, F_OK) == 0)
        err_at(c, jp, "\"%s\" names this node: a node holds only the secrets it shares with each "
               "other member", path);
    for (int i = 0; i < cfg->n_members; i++) {
        const struct dw_member *m = &cfg->members[i];
        if (m->id == cfg->node_id || !m->id)
            continue;
        if (dw_config_peer_secret_path(cfg, m->id, path, sizeof path) != 0) {
            err_at(c, jp, "too long to hold the secret files");
            return;
        }
        if (dw_config_read_secret(path, out->s[i], sizeof out->s[i], msg, sizeof msg) != 0) {
            err_at(c, jp, "secret shared with member %llu: %s", (unsigned long long)m->id, msg);
            continue;
        }
        if (strlen(out->s[i]) < DW_PEER_SECRET_MIN) {
            err_at(c, jp, "\"%s\" is shorter than %d bytes", path, DW_PEER_SECRET_MIN);
            continue;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(out->s[i], out->s[j]) == 0) {
                err_at(c, jp, "\"%s\" holds the same secret as the file for member %llu: every "
                       "pair of members needs its own", path,
                       (unsigned long long)cfg->members[j].id);
                break;
            }
    }
}

/* ---- public ---- */

int dw_config_parse(const char *json, size_t len, struct dw_config *cfg,
                    struct dw_config_errors *errs)
{
    struct ctx c = { .cfg = cfg, .errs = errs };
    const char *end = NULL;
    cJSON *root = NULL;

    memset(cfg, 0, sizeof *cfg);
    if (errs)
        errs->n = 0;
    if (!json) {
        err(&c, "no input");
        return -1;
    }
    /* return_parse_end carries the same position as cJSON_GetErrorPtr(), without the global */
    root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (root && end) {
        while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
        if (end < json + len) { /* trailing garbage after the document */
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        const char *at = end && end >= json && end <= json + len ? end : json;
        int line = 1, col = 1;
        for (const char *p = json; p < at; p++, col++)
            if (*p == '\n') {
                line++;
                col = 0;
            }
        err(&c, "not valid JSON (line %d, column %d)", line, col);
        return -1;
    }

    parse_object(&c, root, &top_t, cfg);
    cJSON_Delete(root);
    check_node(&c);
    check_genesys(&c);
    check_numbers(&c);
    check_limits(&c);
    run_check_unique(&c);
    struct dw_peer_secrets peer;
    check_peer_secrets(&c, &peer);
    explicit_bzero(&peer, sizeof peer);
    check_secret(&c, "genesys.client_secret_file", cfg->genesys.client_secret_file);
    if (!c.total) {
        cfg->topology_digest = dw_config_topology_digest(cfg);
        return 0;
    }
    /* nothing to free for a caller that only reports the errors */
    dw_config_free(cfg);
    return -1;
}

void dw_config_free(struct dw_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; cfg->sites && i < cfg->n_sites; i++) {
        for (int j = 0; cfg->sites[i].edges && j < cfg->sites[i].n_edges; j++)
            free(cfg->sites[i].edges[j].probes);
        free(cfg->sites[i].edges);
    }
    free(cfg->sites);
    cfg->sites = NULL;
    cfg->n_sites = 0;
}

int dw_config_load(const char *path, struct dw_config *cfg, struct dw_config_errors *errs)
{
    struct ctx c = { .cfg = cfg, .errs = errs };
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    memset(cfg, 0, sizeof *cfg);
    if (errs)
        errs->n = 0;
    if (fd < 0 || fstat(fd, &st) != 0) {
        err(&c, "cannot read \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > CONFIG_FILE_MAX) {
        err(&c, "cannot read \"%s\": %s", path,
            S_ISREG(st.st_mode) ? "larger than 16 MiB" : "not a regular file");
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        err(&c, "out of memory");
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err(&c, "cannot read \"%s\": %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    rc = dw_config_parse(buf, n, cfg, errs);
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int dw_config_read_secret(const char *path, char *out, size_t out_len, char *errmsg,
                          size_t errlen)
{
    size_t n = 0;
    bool too_long = false;
    int fd;

    if (!out || out_len < 2) {
        snprintf(errmsg, errlen, "no room for the secret of \"%s\"", path);
        return -1;
    }
    out[0] = '\0';
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        goto fail_errno;
    for (;;) {
        char extra[256];
        bool full = n == out_len - 1;
        ssize_t r = full ? read(fd, extra, sizeof extra) : read(fd, out + n, out_len - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail_errno;
        if (r == 0)
            break;
        if (!full)
            n += (size_t)r;
        /* trailing whitespace past the buffer is fine; anything else would be cut off */
        for (ssize_t i = 0; full && i < r; i++)
            too_long |= !is_space(extra[i]);
        explicit_bzero(extra, sizeof extra);
    }
    close(fd);
    while (n > 0 && is_space(out[n - 1]))
        n--;
    out[n] = '\0';
    if (too_long) {
        snprintf(errmsg, errlen, "\"%s\" is longer than %zu bytes", path, out_len - 1);
        explicit_bzero(out, out_len);
        return -1;
    }
    if (n == 0) {
        snprintf(errmsg, errlen, "\"%s\" is empty", path);
        return -1;
    }
    return 0;

fail_errno:
    snprintf(errmsg, errlen, "cannot read \"%s\": %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    explicit_bzero(out, out_len);
    return -1;
}

int dw_config_peer_secret_path(const struct dw_config *cfg, uint64_t member_id, char *out,
                               size_t len)
{
    const char *dir = cfg->cluster.peer_secret_dir;
    size_t n = strlen(dir);
    const char *sep = n && dir[n - 1] == '/' ? "" : "/";
    int w = snprintf(out, len, "%s%s%llu.secret", dir, sep, (unsigned long long)member_id);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

int dw_config_read_peer_secrets(const struct dw_config *cfg, struct dw_peer_secrets *out,
                                char *errmsg, size_t errlen)
{
    struct dw_config_errors *errs = calloc(1, sizeof *errs);
    if (!errs) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    /* check_peer_secrets only reads the configuration */
    struct ctx c = { .cfg = (struct dw_config *)cfg, .errs = errs };
    check_peer_secrets(&c, out);
    if (!dw_config_member(cfg, cfg->node_id) && !c.total)
        err_at(&c, "node.id", "%llu is not the id of any cluster.members entry",
               (unsigned long long)cfg->node_id);
    int rc = c.total ? -1 : 0;
    if (rc != 0) {
        snprintf(errmsg, errlen, "%s", errs->msg[0]);
        explicit_bzero(out, sizeof *out);
    }
    free(errs);
    return rc;
}

const struct dw_member *dw_config_member(const struct dw_config *cfg, uint64_t id)
{
    for (int i = 0; cfg && i < cfg->n_members; i++)
        if (cfg->members[i].id == id)
            return &cfg->members[i];
    return NULL;
}

int dw_config_site_index(const struct dw_config *cfg, const char *site_id)
{
    for (int i = 0; cfg && site_id && i < cfg->n_sites; i++)
        if (strcmp(cfg->sites[i].id, site_id) == 0)
            return i;
    return -1;
}
