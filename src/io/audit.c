#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/audit.h"

struct dw_audit_rec {
    int64_t ts;
    char *kind, *group, *detail;
};

void dw_audit_init(struct dw_audit *a, int64_t since_ms)
{
    memset(a, 0, sizeof *a);
    a->since = since_ms;
}

static void drop(struct dw_audit *a)
{
    for (int i = 0; i < a->n; i++) {
        free(a->v[i].kind);
        free(a->v[i].group);
        free(a->v[i].detail);
    }
    a->n = 0;
}

void dw_audit_free(struct dw_audit *a)
{
    drop(a);
    free(a->v);
    a->v = NULL;
    a->cap = 0;
}

void dw_audit_record(void *data, const struct dw_fsm_record *rec)
{
    struct dw_audit *a = data;

    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        struct dw_audit_rec *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (v == NULL)
            return; /* the log line is lost, nothing else */
        a->v = v;
        a->cap = cap;
    }
    struct dw_audit_rec *r = &a->v[a->n];
    r->ts = rec->ts;
    r->kind = strdup(rec->kind ? rec->kind : "?");
    r->group = rec->group ? strdup(rec->group) : NULL;
    r->detail = strdup(rec->detail ? rec->detail : "");
    if (r->kind == NULL || r->detail == NULL) {
        free(r->kind);
        free(r->group);
        free(r->detail);
        return;
    }
    a->n++;
}

void dw_audit_end(struct dw_audit *a, bool applied)
{
    for (int i = 0; i < a->n; i++) {
        struct dw_audit_line l;
        const struct dw_audit_rec *r = &a->v[i];
        /* a refused entry's changes were rolled back; its "rejected" row was written after */
        if (!applied && strcmp(r->kind, "rejected") != 0)
            continue;
        dw_audit_describe(&(struct dw_fsm_record){.ts = r->ts, .kind = r->kind,
                                                  .group = r->group, .detail = r->detail},
                          &l);
        /* replayed at start or caught up after a while away: history, not news */
        if (r->ts < a->since)
            l.level = DW_LOG_DEBUG;
        dw_log_kv(l.level, "fsm", l.f, "%s", l.msg);
    }
    drop(a);
}

struct builder {
    struct dw_audit_line *o;
    int n;
};

static void add(struct builder *b, struct dw_log_field f)
{
    if (b->n < DW_AUDIT_FIELDS)
        b->o->f[b->n++] = f;
}

static bool has(const struct builder *b, const char *key)
{
    for (int i = 0; i < b->n; i++) {
        if (strcmp(b->o->f[i].key, key) == 0)
            return true;
    }
    return false;
}

static bool is(const char *kind, const char *want)
{
    return strcmp(kind, want) == 0;
}

/* The operation part of "G: KIND #OP FROM -> TO ...": group, kind, op, from, to. */
static bool op_fields(struct builder *b, const char *d)
{
    char(*st)[96] = b->o->store;
    long long op;

    if (sscanf(d, "%95[^:]: %95s #%lld %95s -> %95s", st[0], st[1], &op, st[2], st[3]) != 5)
        return false;
    add(b, DW_LS("group", st[0]));
    add(b, DW_LS("kind", st[1]));
    add(b, DW_LI("op", op));
    add(b, DW_LS("from", st[2]));
    add(b, DW_LS("to", st[3]));
    return true;
}

void dw_audit_describe(const struct dw_fsm_record *rec, struct dw_audit_line *out)
{
    struct builder b = {.o = out};
    char(*st)[96] = out->store;
    const char *k = rec->kind ? rec->kind : "?", *d = rec->detail ? rec->detail : "";
    long long op;
    int step;

    memset(out, 0, sizeof *out);
    out->level = DW_LOG_INFO;
    snprintf(out->msg, sizeof out->msg, "%s", k);
    if (is(k, "verdict") &&
        sscanf(d, "%95[^:]: %95s -> %95s", st[0], st[1], st[2]) == 3) {
        char up[16];
        size_t i = 0;
        for (; st[2][i] && i < sizeof up - 1; i++)
            up[i] = (char)toupper((unsigned char)st[2][i]);
        up[i] = '\0';
        snprintf(out->msg, sizeof out->msg, "site %s", up);
        out->level = is(st[2], "down") ? DW_LOG_WARN : DW_LOG_INFO;
        add(&b, DW_LS("site", st[0]));
        add(&b, DW_LS("from", st[1]));
        add(&b, DW_LS("to", st[2]));
    } else if (is(k, "signal")) {
        out->level = DW_LOG_DEBUG;
        snprintf(out->msg, sizeof out->msg, "site signal");
        if (sscanf(d, "%95[^:]:", st[0]) == 1)
            add(&b, DW_LS("site", st[0]));
    } else if (is(k, "operation") && strstr(d, " planned (") != NULL) {
        snprintf(out->msg, sizeof out->msg, "operation planned");
        op_fields(&b, d);
        const char *r = strstr(d, " planned (") + 10;
        size_t rl = strlen(r);
        snprintf(st[4], sizeof st[4], "%.*s", (int)(rl > 0 && r[rl - 1] == ')' ? rl - 1 : rl), r);
        add(&b, DW_LS("reason", st[4]));
    } else if (is(k, "operation") && strstr(d, " aborted") != NULL) {
        out->level = DW_LOG_WARN;
        snprintf(out->msg, sizeof out->msg, "operation aborted");
        if (!op_fields(&b, d) && sscanf(d, "%95[^:]: %95s #%lld", st[0], st[1], &op) == 3) {
            add(&b, DW_LS("group", st[0]));
            add(&b, DW_LS("kind", st[1]));
            add(&b, DW_LI("op", op));
        }
    } else if (is(k, "failover") || is(k, "failback") || is(k, "switchover") ||
               is(k, "rollback")) {
        snprintf(out->msg, sizeof out->msg, "operation done");
        op_fields(&b, d);
    } else if (is(k, "operation_failed")) {
        out->level = DW_LOG_WARN;
        snprintf(out->msg, sizeof out->msg, "operation failed");
        op_fields(&b, d);
        const char *at = strstr(d, " failed at step ");
        if (at != NULL && sscanf(at, " failed at step %d %*s %95[^;]", &step, st[4]) == 2) {
            add(&b, DW_LI("step", step));
            add(&b, DW_LS("target", st[4]));
        }
    } else if (is(k, "step") && sscanf(d, "%95[^:]: #%lld step %d %95s %95[^:]: %95[a-z_]",
                                       st[0], &op, &step, st[1], st[2], st[3]) == 6) {
        snprintf(out->msg, sizeof out->msg, "step %s", st[3]);
        out->level = is(st[3], "failed") ? DW_LOG_WARN : DW_LOG_INFO;
        add(&b, DW_LS("group", st[0]));
        add(&b, DW_LI("op", op));
        add(&b, DW_LI("step", step));
        add(&b, DW_LS("action", st[1]));
        add(&b, DW_LS("target", st[2]));
        add(&b, DW_LS("status", st[3]));
    } else if (is(k, "hold")) {
        out->level = DW_LOG_WARN;
        snprintf(out->msg, sizeof out->msg, "group held");
    } else if (is(k, "hold_released")) {
        snprintf(out->msg, sizeof out->msg, "hold released");
    } else if (strncmp(k, "maintenance_", 12) == 0) {
        snprintf(out->msg, sizeof out->msg, "maintenance %s", k + 12);
        if (sscanf(d, "%95s %95[^:]:", st[0], st[1]) == 2) {
            add(&b, DW_LS("scope", st[0]));
            add(&b, DW_LS(is(st[0], "edge") ? "edge" : is(st[0], "site") ? "site" : "group",
                          st[1]));
        }
    } else if (is(k, "no_target_up")) {
        out->level = DW_LOG_WARN;
        snprintf(out->msg, sizeof out->msg, "no target up");
    } else if (is(k, "leader")) {
        /* raft's own "became leader"/"following" lines say it first */
        out->level = DW_LOG_DEBUG;
        snprintf(out->msg, sizeof out->msg, "leader took office");
        if (sscanf(d, "node %lld", &op) == 1)
            add(&b, DW_LI("member", op));
    } else if (is(k, "rejected")) {
        out->level = DW_LOG_WARN;
        snprintf(out->msg, sizeof out->msg, "entry rejected");
    } else if (is(k, "config")) {
        out->level = DW_LOG_DEBUG; /* the node logs the config it runs by */
        snprintf(out->msg, sizeof out->msg, "config committed");
    }
    if (rec->group != NULL && !has(&b, "group"))
        add(&b, DW_LS("group", rec->group));
    add(&b, DW_LS("detail", d));
    out->f[b.n] = DW_LOG_END;
}
