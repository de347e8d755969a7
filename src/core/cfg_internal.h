/* Private to the config parser (config.c, cfg_*.c): walker types and shared helpers. */
#ifndef DRWATCH_CFG_INTERNAL_H
#define DRWATCH_CFG_INTERNAL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "drwatch/config.h"

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

/* Bits remembering which keys were present, for rules that depend on presence (set by the
 * schema's rows, read by the checks). */
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
    bool local;               /* node-local setting, never part of the committed cluster config */
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

/* One walk over one document: where it is, what it found. */
struct ctx {
    struct dw_config *cfg;
    struct dw_config_errors *errs;
    const struct dw_config_files *files; /* NULL: no file checks */
    bool cluster_only;        /* a committed cluster document: local settings absent */
    int total;
    unsigned seen;
    bool members_bad;         /* an error under cluster.members: skip the per-member secrets */
    size_t len;
    char path[512];
};

/* Rows of a table (cfg_schema.c); off is from the struct the table describes. */
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

/* Probe variants: which keys a probe object may have depends on its kind (and SIP transport). */
enum { V_HTTP = 1, V_SIP_UDP = 2, V_SIP_TCP = 4, V_SIP_TLS = 8, V_TCP = 16 };
#define V_SIP (V_SIP_UDP | V_SIP_TCP | V_SIP_TLS)
#define V_TLS (V_HTTP | V_SIP_TLS)

/* ---- cfg_walk.c: errors, paths, values, the walk ---- */

/* Error at the current path. */
__attribute__((format(printf, 2, 3)))
void cfg_err(struct ctx *c, const char *fmt, ...);
/* Error at an explicit path (checks made after the walk). */
__attribute__((format(printf, 3, 4)))
void cfg_err_at(struct ctx *c, const char *path, const char *fmt, ...);
/* Error at a key below the current path (rules checked once an object is parsed). */
__attribute__((format(printf, 3, 4)))
void cfg_err_key(struct ctx *c, const char *key, const char *fmt, ...);

/* Append ".key" or "[i]" to the path; return what to give cfg_pop to undo it. */
size_t cfg_push_key(struct ctx *c, const char *key);
size_t cfg_push_index(struct ctx *c, int i);
void cfg_pop(struct ctx *c, size_t old);

bool cfg_parse_str(struct ctx *c, const cJSON *v, char *dst, size_t size, enum fmt fmt);
bool cfg_parse_int(struct ctx *c, const cJSON *v, long long lo, long long hi, long long *out);
/* Walks obj against t into base; obj NULL applies the defaults only. */
void cfg_parse_object(struct ctx *c, const cJSON *obj, const struct table *t, void *base);

const cJSON *cfg_get(const cJSON *obj, const char *key);
/* Index of v's string in names (NULL-terminated), -1 when absent or not a string. */
int cfg_name_index(const cJSON *v, const char *const *names);

/* ---- cfg_schema.c: the drwatch document ---- */

extern const struct table cfg_top_table;
/* cfg_notify.c: the node-local "notifications" section */
extern const struct table cfg_notify_table;
unsigned cfg_probe_variant(const cJSON *obj);
const char *cfg_probe_variant_name(unsigned variant, unsigned only);

/* ---- cfg_check.c: rules across fields, references, uniqueness, files ---- */

void cfg_probe_check(struct ctx *c, const cJSON *obj, void *base);
void cfg_edge_check(struct ctx *c, const cJSON *obj, void *base);
void cfg_site_check(struct ctx *c, const cJSON *obj, void *base);
void cfg_parse_target_site(struct ctx *c, const cJSON *v, void *base);
void cfg_target_check(struct ctx *c, const cJSON *obj, void *base);
/* Everything checked once the whole document is walked, in the order errors are reported. */
void cfg_check_document(struct ctx *c);
void cfg_check_peer_secrets(struct ctx *c, struct dw_peer_secrets *out);

#endif
