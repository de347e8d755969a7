/* drctl's DR lifecycle commands: maintenance windows, switchover and failback (dry run, wait). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drctl.h"

#define WAIT_POLL_MS 500
#define WAIT_DEFAULT_S 600

/* "90s", "30m", "2h", "1d" in ms; -1 when it is none of these. */
long long duration_ms(const char *s)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v <= 0 || end[0] == '\0' || end[1] != '\0')
        return -1;
    long long unit;
    switch (end[0]) {
    case 's': unit = 1000; break;
    case 'm': unit = 60000; break;
    case 'h': unit = 3600000; break;
    case 'd': unit = 86400000; break;
    default: return -1;
    }
    return v > LLONG_MAX / unit ? -1 : v * unit;
}

static int maintenance_request(cJSON *req, int nargs, char **args, const struct sub_opts *o)
{
    char by[32];
    long long ttl;

    if (nargs < 1)
        return BAD_ARGS;
    cJSON_AddStringToObject(req, "cmd", "maintenance");
    cJSON_AddStringToObject(req, "action", args[0]);
    if (strcmp(args[0], "list") == 0)
        return nargs == 1 && !o->ttl && !o->reason ? BUILT : BAD_ARGS;
    if ((strcmp(args[0], "set") != 0 && strcmp(args[0], "clear") != 0) || nargs != 3 ||
        (strcmp(args[1], "site") != 0 && strcmp(args[1], "group") != 0))
        return BAD_ARGS;
    cJSON_AddStringToObject(req, "scope", args[1]);
    cJSON_AddStringToObject(req, "id", args[2]);
    cJSON_AddStringToObject(req, "by", who(by, sizeof by));
    if (strcmp(args[0], "clear") == 0)
        return !o->ttl && !o->reason ? BUILT : BAD_ARGS;
    if (!o->ttl || !o->reason) {
        fprintf(stderr, "drctl: maintenance set: --ttl and --reason are required\n");
        return FAILED;
    }
    if ((ttl = duration_ms(o->ttl)) < 0) {
        fprintf(stderr, "drctl: maintenance set: --ttl: expected a duration like 90s, 30m, 2h or "
                        "1d, not \"%s\"\n", o->ttl);
        return FAILED;
    }
    cJSON_AddNumberToObject(req, "ttl_ms", (double)ttl);
    cJSON_AddStringToObject(req, "reason", o->reason);
    return BUILT;
}

/* --timeout's seconds; -1, said on stderr, when it is not a whole number from 1 to a day */
static long wait_limit_s(const char *text)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);

    if (errno != 0 || end == text || *end != '\0' || v <= 0 || v > 86400) {
        fprintf(stderr, "drctl: --timeout: expected whole seconds from 1 to 86400, not \"%s\"\n",
                text);
        return -1;
    }
    return v;
}

int ops_request(cJSON *req, const char *cmd, int nargs, char **args, const struct sub_opts *o)
{
    char by[32];

    if (strcmp(cmd, "maintenance") == 0)
        return o->to || o->wait || o->dry_run ? BAD_ARGS : maintenance_request(req, nargs, args, o);
    if (nargs != 1 || o->ttl || o->reason || (strcmp(cmd, "switchover") == 0) != (o->to != NULL))
        return BAD_ARGS;
    if (o->timeout && !o->wait)
        return BAD_ARGS;
    if (o->timeout && wait_limit_s(o->timeout) < 0)
        return FAILED; /* before anything is started */
    cJSON_AddStringToObject(req, "cmd", "operate");
    cJSON_AddStringToObject(req, "action", cmd);
    cJSON_AddStringToObject(req, "group", args[0]);
    if (o->to)
        cJSON_AddStringToObject(req, "to", o->to);
    cJSON_AddStringToObject(req, "by", who(by, sizeof by));
    if (o->dry_run)
        cJSON_AddBoolToObject(req, "dry_run", 1);
    return BUILT;
}

static void print_maintenance(const cJSON *reply)
{
    const cJSON *m;
    int n = 0;

    cJSON_ArrayForEach(m, arr(reply, "maintenance")) {
        char since[32], until[32];

        if (n++ == 0)
            printf("%-6s %-16s %-12s %-14s %-14s %s\n", "SCOPE", "ID", "OWNER", "SINCE",
                   "EXPIRES", "REASON");
        fmt_time(num(m, "since"), since, sizeof since);
        fmt_time(num(m, "expires"), until, sizeof until);
        printf("%-6s %-16s %-12s %-14s %-14s %s\n", str(m, "scope"), str(m, "id"),
               str(m, "owner"), since, until, str(m, "reason"));
    }
    if (n == 0)
        printf("nothing is in maintenance\n");
}

static void print_plan(const cJSON *plan, bool dry)
{
    const cJSON *st, *c;
    const char *from = str(plan, "from");

    printf("%s %s: %s -> %s%s\n", str(plan, "kind"), str(plan, "group"),
           from[0] ? from : "(none)", str(plan, "to"),
           dry ? " (dry run: nothing was sent)" : "");
    cJSON_ArrayForEach(st, arr(plan, "steps")) {
        printf("  step %.0f: %s %s\n", num(st, "seq"), str(st, "action"), str(st, "target"));
        cJSON_ArrayForEach(c, arr(st, "calls")) {
            const cJSON *body = arr(c, "body");
            char *text = body && !cJSON_IsNull(body) ? cJSON_PrintUnformatted(body) : NULL;

            printf("    %-4s %s%s%s\n", str(c, "method"), str(c, "path"), text ? " " : "",
                   text ? text : "");
            if (str(c, "note")[0])
                printf("         (%s)\n", str(c, "note"));
            free(text);
        }
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The operation's object in a status reply, NULL when it is not listed. */
static const cJSON *find_op(const cJSON *status, double id)
{
    const cJSON *op;

    cJSON_ArrayForEach(op, arr(arr(status, "cluster"), "operations")) {
        if (num(op, "id") == id)
            return op;
    }
    return NULL;
}

/* Follows operation id until it ends, printing each step as it finishes unless *end is asked
 * for (--json): then the ended operation's object is stored there. 0 done, 1 otherwise. */
static int wait_for(const char *sock, double id, const char *timeout, cJSON **end_op)
{
    long limit_s = timeout ? wait_limit_s(timeout) : WAIT_DEFAULT_S;
    int shown = 0;

    if (limit_s < 0)
        return EXIT_USAGE;
    for (long waited = 0; waited <= limit_s * 1000; waited += WAIT_POLL_MS) {
        cJSON *req = cJSON_CreateObject(), *reply;
        const cJSON *op, *st;
        int rc, n = 0;

        cJSON_AddNumberToObject(req, "v", 1);
        cJSON_AddStringToObject(req, "cmd", "status");
        reply = call(sock, req, TIMEOUT_MS, &rc);
        cJSON_Delete(req);
        if (reply == NULL)
            return rc;
        op = find_op(reply, id);
        const cJSON *steps = op && end_op == NULL ? arr(op, "steps") : NULL;
        cJSON_ArrayForEach(st, steps) {
            const char *s = str(st, "status");

            if (n++ < shown || (strcmp(s, "done") != 0 && strcmp(s, "failed") != 0))
                continue;
            printf("  step %.0f %s %s: %s %s\n", num(st, "seq"), str(st, "action"),
                   str(st, "target"), s, str(st, "detail"));
            shown = n;
        }
        if (op && strcmp(str(op, "status"), "running") != 0) {
            bool done = strcmp(str(op, "status"), "done") == 0;

            if (end_op != NULL)
                *end_op = cJSON_Duplicate(op, true);
            else
                printf("operation #%.0f %s\n", id, str(op, "status"));
            cJSON_Delete(reply);
            return done ? 0 : EXIT_REFUSED;
        }
        cJSON_Delete(reply);
        sleep_ms(WAIT_POLL_MS);
    }
    fprintf(stderr, "drctl: operation #%.0f still running after %ld s; see drctl status\n", id,
            limit_s);
    return EXIT_REFUSED;
}

int ops_wait_json(const char *sock, cJSON *reply, const struct sub_opts *o)
{
    cJSON *end_op = NULL;
    int rc = wait_for(sock, num(reply, "operation"), o->timeout, &end_op);

    cJSON_AddItemToObject(reply, "result", end_op ? end_op : cJSON_CreateNull());
    return rc;
}

int ops_print(const char *sock, const char *cmd, int nargs, char **args, const cJSON *reply,
              const struct sub_opts *o)
{
    if (strcmp(cmd, "maintenance") == 0) {
        if (strcmp(args[0], "list") == 0)
            print_maintenance(reply);
        else
            printf("%s %s: maintenance %s\n", args[1], args[2],
                   strcmp(args[0], "set") == 0 ? "set" : "cleared");
        return 0;
    }
    (void)nargs;
    print_plan(arr(reply, "plan"), o->dry_run);
    if (o->dry_run)
        return 0;
    printf("operation #%.0f started\n", num(reply, "operation"));
    return o->wait ? wait_for(sock, num(reply, "operation"), o->timeout, NULL) : 0;
}
