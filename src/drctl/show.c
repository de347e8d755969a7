/* drctl's read-only views: status, list, history, watch and version. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drctl.h"

#ifndef DRWATCH_VERSION
#define DRWATCH_VERSION "0.1.0"
#endif

#define WATCH_WAIT_MS 25000
#define WATCH_BATCH 500

void fmt_iso(double ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || gmtime_r(&t, &tm) == NULL) {
        snprintf(out, len, "-");
        return;
    }
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((long long)ms % 1000));
}

static void print_json(const cJSON *o, bool pretty)
{
    char *text = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);

    printf("%s\n", text ? text : "null");
    free(text);
}

static void fmt_age(double ms, char *out, size_t len)
{
    if (ms < 0)
        snprintf(out, len, "never");
    else if (ms < 100000)
        snprintf(out, len, "%.1fs", ms / 1000);
    else
        snprintf(out, len, "%.0fs", ms / 1000);
}

static const char *member_name(const cJSON *reply, double id)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, arr(reply, "members")) {
        if (num(m, "id") == id)
            return str(m, "name");
    }
    return "?";
}

static bool has_leader(const cJSON *r)
{
    return num(arr(r, "leader"), "id") > 0;
}

/* The members' table: shared by status and list. */
static void print_members(const cJSON *r)
{
    const cJSON *m;

    printf("%-4s %-14s %-12s %-9s %-8s %-22s %s\n", "ID", "MEMBER", "STATE", "REACHABLE", "LAG",
           "PEER ADDRESS", "VOTER");
    cJSON_ArrayForEach(m, arr(r, "members")) {
        char lag[24], name[40];

        fmt_age(num(m, "lag_ms"), lag, sizeof lag);
        snprintf(name, sizeof name, "%s%s", str(m, "name"),
                 cJSON_IsTrue(arr(m, "self")) ? " *" : "");
        printf("%-4.0f %-14s %-12s %-9s %-8s %-22s %s\n", num(m, "id"), name, str(m, "state"),
               cJSON_IsTrue(arr(m, "reachable")) ? "yes" : "no",
               cJSON_IsTrue(arr(m, "self")) ? "-" : lag, str(m, "peer_address"),
               cJSON_IsTrue(arr(m, "voter")) ? "yes" : "no");
    }
}

static void cluster_line(const cJSON *r)
{
    const cJSON *leader = arr(r, "leader"), *node = arr(r, "node"), *conf = arr(r, "config");

    if (has_leader(r))
        printf("cluster: leader %.0f (%s) at %s, term %.0f, applied index %.0f, config version "
               "%.0f\n", num(leader, "id"), str(leader, "name"), str(leader, "peer_address"),
               num(leader, "term"), num(node, "last_applied"), num(conf, "committed_version"));
    else
        printf("cluster: NO LEADER seen by this node (term %.0f, applied index %.0f, config "
               "version %.0f)\n", num(leader, "term"), num(node, "last_applied"),
               num(conf, "committed_version"));
}

static const char *site_local(const cJSON *r, const char *id)
{
    const cJSON *ls;

    cJSON_ArrayForEach(ls, arr(r, "local")) {
        if (strcmp(str(ls, "id"), id) == 0)
            return str(ls, "local");
    }
    return "-";
}

/* Whether a maintenance window covers scope id. */
static bool in_maintenance(const cJSON *cl, const char *scope, const char *id)
{
    const cJSON *mw;

    cJSON_ArrayForEach(mw, arr(cl, "maintenance")) {
        if (strcmp(str(mw, "scope"), scope) == 0 && strcmp(str(mw, "id"), id) == 0)
            return true;
    }
    return false;
}

int show_status(const cJSON *r, bool json)
{
    const cJSON *node = arr(r, "node"), *cl = arr(r, "cluster"), *conf = arr(r, "config");
    const cJSON *s, *g, *op, *tilt = arr(node, "tilt");

    if (json) {
        print_json(r, true);
        return has_leader(r) ? 0 : EXIT_NO_LEADER;
    }
    cluster_line(r);
    printf("this node: %.0f (%s), %s%s, drwatchd %s\n", num(node, "id"), str(node, "name"),
           str(node, "raft_state"), cJSON_IsTrue(arr(node, "acting_leader")) ? " (acting)" : "",
           str(r, "version"));
    if (cJSON_IsTrue(arr(tilt, "active")))
        printf("TILT: this node abstains: %s\n", str(tilt, "reason"));
    if (num(conf, "running_version") != num(conf, "committed_version"))
        printf("this node runs config version %.0f\n", num(conf, "running_version"));
    if (str(conf, "error")[0])
        printf("config error: %s\n", str(conf, "error"));
    if (cJSON_IsTrue(arr(conf, "local_differs")))
        printf("this node's file differs from the committed config (it runs by the committed "
               "one):\n%s\n", str(conf, "differences"));

    printf("\n");
    print_members(r);

    printf("\n%-16s %-8s %-25s %-6s %-12s %s\n", "SITE", "VERDICT", "SINCE", "LOCAL",
           "MAINTENANCE", "OBSERVATIONS");
    cJSON_ArrayForEach(s, arr(cl, "sites")) {
        char since[40];
        const cJSON *o;

        fmt_iso(num(s, "since"), since, sizeof since);
        printf("%-16s %-8s %-25s %-6s %-12s", str(s, "id"), str(s, "verdict"), since,
               site_local(r, str(s, "id")),
               in_maintenance(cl, "site", str(s, "id")) ? "yes" : "no");
        cJSON_ArrayForEach(o, arr(s, "observations")) {
            printf(" %s=%s%s%s", member_name(r, num(o, "node")), str(o, "state"),
                   cJSON_IsTrue(arr(o, "fresh")) ? "" : "(stale)",
                   cJSON_IsTrue(arr(o, "tilt")) ? "(tilt)" : "");
        }
        printf("\n");
    }

    /* STATE says what stops automatic operations: a hold, maintenance, a pin, failed failbacks */
    printf("\n%-16s %-16s %-9s %s\n", "GROUP", "ACTIVE", "FAILBACK", "STATE");
    cJSON_ArrayForEach(g, arr(cl, "groups")) {
        char state[300] = "", at[40];
        size_t used = 0;

        if (cJSON_IsTrue(arr(g, "hold")))
            used += (size_t)snprintf(state + used, sizeof state - used,
                                     "held: %s (drctl hold release) ", str(g, "hold_reason"));
        if (cJSON_IsTrue(arr(g, "maintenance")) && used < sizeof state)
            used += (size_t)snprintf(state + used, sizeof state - used, "in maintenance ");
        if (cJSON_IsTrue(arr(g, "pinned")) && used < sizeof state)
            used += (size_t)snprintf(state + used, sizeof state - used,
                                     "pinned by a switchover (drctl failback) ");
        if (num(g, "failback_failures") > 0 && used < sizeof state) {
            fmt_iso(num(g, "failback_retry_at"), at, sizeof at);
            used += (size_t)snprintf(state + used, sizeof state - used,
                                     "%.0f failed failback(s), next try %s ",
                                     num(g, "failback_failures"), at);
        }
        printf("%-16s %-16s %-9s %s\n", str(g, "id"),
               cJSON_IsString(arr(g, "active")) ? str(g, "active") : "",
               str(g, "failback"), used ? state : "ok");
    }
    const cJSON *mw;
    int nm = 0;
    cJSON_ArrayForEach(mw, arr(cl, "maintenance")) {
        char until[40];

        if (!nm++)
            printf("\nMAINTENANCE\n");
        fmt_iso(num(mw, "expires"), until, sizeof until);
        printf("%s %s by %s until %s: %s\n", str(mw, "scope"), str(mw, "id"), str(mw, "owner"),
               until, str(mw, "reason"));
    }

    int shown = 0;
    cJSON_ArrayForEach(op, arr(cl, "operations")) {
        char created[40];
        const cJSON *st;

        if (!shown++)
            printf("\nOPERATIONS\n");
        fmt_iso(num(op, "created"), created, sizeof created);
        printf("#%.0f %s %s %s -> %s: %s (created %s, %s%s%s)\n", num(op, "id"), str(op, "group"),
               str(op, "kind"), str(op, "from"), str(op, "to"), str(op, "status"), created,
               str(op, "reason"), str(op, "operator")[0] ? ", by " : "", str(op, "operator"));
        if (strcmp(str(op, "status"), "running") != 0 && shown > 3)
            continue; /* one screen: steps of the running and the newest ones only */
        cJSON_ArrayForEach(st, arr(op, "steps")) {
            printf("   %.0f %-10s %-14s %-8s %s\n", num(st, "seq"), str(st, "action"),
                   str(st, "target"), str(st, "status"), str(st, "detail"));
        }
    }
    if (!shown)
        printf("\nno operations\n");
    if (str(node, "actuator")[0])
        printf("\nactuator: %s\n", str(node, "actuator"));
    return has_leader(r) ? 0 : EXIT_NO_LEADER;
}

int show_list(const cJSON *r, bool json)
{
    const cJSON *m, *leader = arr(r, "leader");

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", 1);
        cJSON *l = cJSON_AddObjectToObject(o, "leader");
        static const char *const keys[] = {"id", "name", "state", "reachable", "lag_ms",
                                           "peer_address", "raft_address", "voter", "self"};

        cJSON_AddNumberToObject(l, "id", num(leader, "id"));
        cJSON_AddStringToObject(l, "name", str(leader, "name"));
        cJSON_AddNumberToObject(l, "term", num(leader, "term"));
        cJSON_AddNumberToObject(o, "config_version", num(arr(r, "config"), "committed_version"));
        cJSON *ms = cJSON_AddArrayToObject(o, "members");
        cJSON_ArrayForEach(m, arr(r, "members")) {
            cJSON *x = cJSON_CreateObject();

            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                const cJSON *v = arr(m, keys[k]);

                if (v != NULL)
                    cJSON_AddItemToObject(x, keys[k], cJSON_Duplicate(v, 1));
            }
            cJSON_AddItemToArray(ms, x);
        }
        print_json(o, true);
        cJSON_Delete(o);
        return has_leader(r) ? 0 : EXIT_NO_LEADER;
    }
    cluster_line(r);
    print_members(r);
    return has_leader(r) ? 0 : EXIT_NO_LEADER;
}

static void history_line(const cJSON *h, bool json)
{
    char ts[40];

    if (json) {
        print_json(h, false);
        return;
    }
    fmt_iso(num(h, "ts"), ts, sizeof ts);
    printf("%-24s  %-11s %s\n", ts, str(h, "kind"), str(h, "detail"));
}

int show_history(const cJSON *r, bool json)
{
    const cJSON *h;

    if (json) {
        print_json(r, true);
        return 0;
    }
    cJSON_ArrayForEach(h, arr(r, "history")) history_line(h, false);
    return 0;
}

int show_version(const char *sock, bool json)
{
    cJSON *req = cJSON_CreateObject(), *reply;
    int rc;

    cJSON_AddNumberToObject(req, "v", 1);
    cJSON_AddStringToObject(req, "cmd", "version");
    if (!json)
        printf("drctl %s\n", DRWATCH_VERSION);
    fflush(stdout);
    reply = call(sock, req, TIMEOUT_MS, &rc);
    cJSON_Delete(req);
    if (reply == NULL)
        return rc;
    if (!cJSON_IsTrue(arr(reply, "ok"))) {
        /* a daemon older than the version command */
        fprintf(stderr, "drctl: the daemon did not tell its version: %s\n", str(reply, "error"));
        cJSON_Delete(reply);
        return EXIT_REFUSED;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(o, "daemon");

        cJSON_AddBoolToObject(o, "ok", 1);
        cJSON_AddStringToObject(o, "drctl", DRWATCH_VERSION);
        cJSON_AddStringToObject(d, "version", str(reply, "version"));
        cJSON_AddItemToObject(d, "node", cJSON_Duplicate(arr(reply, "node"), 1));
        print_json(o, true);
        cJSON_Delete(o);
    } else {
        printf("drwatchd %s on node %.0f (%s)\n", str(reply, "version"),
               num(arr(reply, "node"), "id"), str(arr(reply, "node"), "name"));
    }
    cJSON_Delete(reply);
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    conn_interrupted = 1;
}

/* One history request on c; NULL (with *rc) when the connection failed or was refused. */
static cJSON *poll_once(struct conn *c, cJSON *req, int timeout_ms, int *rc)
{
    cJSON *reply;

    if (conn_send(c, req, rc) != 0 || (reply = conn_recv(c, timeout_ms, rc)) == NULL)
        return NULL;
    if (!cJSON_IsTrue(arr(reply, "ok"))) {
        fprintf(stderr, "drctl: watch: %s\n", str(reply, "error"));
        cJSON_Delete(reply);
        *rc = EXIT_REFUSED;
        return NULL;
    }
    return reply;
}

int show_watch(const char *sock, const char *group, bool json)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll() returns EINTR */
    struct conn c;
    int rc;
    double cursor;
    cJSON *req, *reply;

    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (conn_open(&c, sock, &rc) != 0)
        return rc;
    /* from now on: the newest row's id is the cursor */
    req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "v", 1);
    cJSON_AddStringToObject(req, "cmd", "history");
    cJSON_AddNumberToObject(req, "limit", 1);
    if (group != NULL)
        cJSON_AddStringToObject(req, "group", group);
    reply = poll_once(&c, req, TIMEOUT_MS, &rc);
    cJSON_Delete(req);
    if (reply == NULL) {
        conn_close(&c);
        return rc;
    }
    cursor = num(reply, "cursor");
    cJSON_Delete(reply);
    fprintf(stderr, "drctl: watching %s%s%s from history row %.0f; Ctrl-C stops\n", sock,
            group ? " for group " : "", group ? group : "", cursor);
    while (!conn_interrupted) {
        const cJSON *h, *rows;
        int n = 0;

        req = cJSON_CreateObject();
        cJSON_AddNumberToObject(req, "v", 1);
        cJSON_AddStringToObject(req, "cmd", "history");
        cJSON_AddNumberToObject(req, "after", cursor);
        cJSON_AddNumberToObject(req, "wait_ms", WATCH_WAIT_MS);
        cJSON_AddNumberToObject(req, "limit", WATCH_BATCH);
        if (group != NULL)
            cJSON_AddStringToObject(req, "group", group);
        reply = poll_once(&c, req, WATCH_WAIT_MS + TIMEOUT_MS, &rc);
        cJSON_Delete(req);
        if (reply == NULL)
            break;
        rows = arr(reply, "history");
        cJSON_ArrayForEach(h, rows) {
            history_line(h, json);
            cursor = num(h, "id");
            n++;
        }
        /* a full batch may have more behind it; else every row up to the cursor was seen */
        if (n < WATCH_BATCH && num(reply, "cursor") > cursor)
            cursor = num(reply, "cursor");
        fflush(stdout);
        cJSON_Delete(reply);
    }
    conn_close(&c);
    if (conn_interrupted)
        return 0;
    if (rc == EXIT_UNREACHABLE)
        fprintf(stderr, "drctl: watch: lost the daemon at %s; run drctl watch again once it is "
                        "back\n", sock);
    return rc;
}
