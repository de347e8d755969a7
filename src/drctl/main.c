/* drctl: operator CLI talking newline-delimited JSON to a drwatchd admin socket.
 * Exit codes: 0 success, 1 the daemon refused the request, 2 usage error, 3 no daemon reachable. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#define DEFAULT_SOCKET "/run/drwatch/admin.sock"
#define REPLY_MAX (16u << 20)
#define TIMEOUT_MS 10000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drctl [--socket PATH] [--json] COMMAND\n"
            "commands:\n"
            "  status                       leader, members, sites, active targets, operations\n"
            "  history [N | --limit N]      the N most recent history rows (default 50, at most\n"
            "                               10000)\n"
            "  dump                         the replicated state, one line per row (a debugging\n"
            "                               tool: refused past 16 MiB)\n"
            "  debug crash-before STEP      (node.debug only) SIGKILL this node before STEP of an\n"
            "                               operation it began\n"
            "  hold release GROUP           (on the leader) lift GROUP's hold after a failed step,\n"
            "                               recorded in history under $USER\n"
            "the socket defaults to $DRWATCH_SOCKET, else " DEFAULT_SOCKET "\n");
}

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

/* Sends one request line and reads one reply line; NULL with a message on stderr and *rc set on
 * failure. */
static cJSON *call(const char *path, cJSON *req, int *rc)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    *rc = EXIT_UNREACHABLE;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "drctl: --socket: path longer than %zu bytes: %s\n",
                sizeof sa.sun_path - 1, path);
        *rc = EXIT_USAGE;
        return NULL;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    strcpy(sa.sun_path, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "drctl: cannot connect to %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(req);
    if (text == NULL) {
        fprintf(stderr, "drctl: out of memory\n");
        close(fd);
        return NULL;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the terminator; the length below excludes it again */
    size_t off = 0;
    while (off < n + 1) {
        ssize_t w = write(fd, text + off, n + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "drctl: write to %s: %s\n", path, strerror(errno));
            free(text);
            close(fd);
            return NULL;
        }
        off += (size_t)w;
    }
    free(text);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fprintf(stderr, "drctl: out of memory\n");
        close(fd);
        return NULL;
    }
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, TIMEOUT_MS);
        if (pr == 0) {
            fprintf(stderr, "drctl: no reply from %s within %d ms\n", path, TIMEOUT_MS);
            goto fail;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        if (len + 4096 > cap) {
            if (cap >= REPLY_MAX) {
                fprintf(stderr, "drctl: reply larger than %u bytes\n", REPLY_MAX);
                goto fail;
            }
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                fprintf(stderr, "drctl: out of memory\n");
                goto fail;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "drctl: connection to %s closed before a reply\n", path);
            goto fail;
        }
        len += (size_t)r;
        if (memchr(buf, '\n', len))
            break;
    }
    close(fd);
    cJSON *reply = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (reply == NULL) {
        fprintf(stderr, "drctl: the daemon's reply is not JSON\n");
        *rc = EXIT_REFUSED;
    }
    return reply;
fail:
    free(buf);
    close(fd);
    return NULL;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const cJSON *arr(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static void fmt_time(double ms, char *out, size_t len)
{
    if (ms <= 0) {
        snprintf(out, len, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, len, "%02d:%02d:%02d.%03dZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)((long long)ms % 1000));
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

static void print_status(const cJSON *r)
{
    const cJSON *node = arr(r, "node"), *leader = arr(r, "leader"), *cl = arr(r, "cluster");
    double now = num(r, "now");
    printf("node %.0f (%s): %s%s\n", num(node, "id"), str(node, "name"), str(node, "raft_state"),
           cJSON_IsTrue(arr(node, "acting_leader")) ? ", acting" : "");
    if (num(leader, "id") > 0)
        printf("leader %.0f (%s), term %.0f\n", num(leader, "id"), str(leader, "name"),
               num(leader, "term"));
    else
        printf("leader: none known\n");

    printf("\n%-4s %-16s %-7s %s\n", "ID", "MEMBER", "ROLE", "LAST CONTACT");
    const cJSON *m;
    cJSON_ArrayForEach(m, arr(r, "members")) {
        double age = num(m, "last_contact_age_ms");
        char ago[32];
        if (num(m, "last_contact") <= 0)
            snprintf(ago, sizeof ago, "never");
        else
            snprintf(ago, sizeof ago, "%.1fs ago", age / 1000.0);
        printf("%-4.0f %-16s %-7s %s\n", num(m, "id"), str(m, "name"), str(m, "role"), ago);
    }

    printf("\n%-16s %-8s %-8s %-14s %s\n", "SITE", "LOCAL", "CLUSTER", "SINCE", "OBSERVATIONS");
    const cJSON *s;
    cJSON_ArrayForEach(s, arr(cl, "sites")) {
        const char *local = "";
        const cJSON *ls;
        cJSON_ArrayForEach(ls, arr(r, "local")) {
            if (strcmp(str(ls, "id"), str(s, "id")) == 0)
                local = str(ls, "local");
        }
        char since[32];
        fmt_time(num(s, "since"), since, sizeof since);
        printf("%-16s %-8s %-8s %-14s", str(s, "id"), local, str(s, "verdict"), since);
        const cJSON *o;
        cJSON_ArrayForEach(o, arr(s, "observations")) {
            printf(" %s=%s%s%s", member_name(r, num(o, "node")), str(o, "state"),
                   cJSON_IsTrue(arr(o, "fresh")) ? "" : "(stale)",
                   cJSON_IsTrue(arr(o, "tilt")) ? "(tilt)" : "");
        }
        printf("\n");
    }

    printf("\n%-16s %-16s %s\n", "GROUP", "ACTIVE", "HOLD");
    const cJSON *g;
    cJSON_ArrayForEach(g, arr(cl, "groups")) {
        printf("%-16s %-16s %s\n", str(g, "id"), str(g, "active"),
               cJSON_IsTrue(arr(g, "hold")) ? "yes (drctl hold release)" : "no");
    }

    int shown = 0;
    const cJSON *op;
    cJSON_ArrayForEach(op, arr(cl, "operations")) {
        if (!shown++)
            printf("\nOPERATIONS\n");
        char created[32];
        fmt_time(num(op, "created"), created, sizeof created);
        printf("#%.0f %s %s %s -> %s: %s (created %s, %s)\n", num(op, "id"), str(op, "group"),
               str(op, "kind"), str(op, "from"), str(op, "to"), str(op, "status"), created,
               str(op, "reason"));
        const cJSON *st;
        cJSON_ArrayForEach(st, arr(op, "steps")) {
            printf("   %.0f %-10s %-14s %-8s %s\n", num(st, "seq"), str(st, "action"),
                   str(st, "target"), str(st, "status"), str(st, "detail"));
        }
    }
    if (!shown)
        printf("\nno operations\n");
    const char *act = str(node, "actuator");
    if (act[0])
        printf("\nactuator: %s\n", act);
    (void)now;
}

static void print_history(const cJSON *r)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, arr(r, "history")) {
        char ts[32];
        fmt_time(num(h, "ts"), ts, sizeof ts);
        printf("%-14s %-10s %s\n", ts, str(h, "kind"), str(h, "detail"));
    }
}

int main(int argc, char **argv)
{
    const char *sock = getenv("DRWATCH_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        sock = DEFAULT_SOCKET;
    int json = 0;
    const char *limit = NULL;
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "v", 1);
    if (limit != NULL && strcmp(cmd, "history") != 0)
        goto bad_usage;
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "dump") == 0) {
        if (nargs != 0)
            goto bad_usage;
        cJSON_AddStringToObject(req, "cmd", cmd);
    } else if (strcmp(cmd, "history") == 0) {
        cJSON_AddStringToObject(req, "cmd", "history");
        if (nargs > 1 || (nargs == 1 && limit != NULL))
            goto bad_usage;
        if (nargs == 1)
            limit = args[0];
        if (limit != NULL) {
            char *end;
            long lim = strtol(limit, &end, 10);
            if (*end || lim < 1 || lim > 10000) {
                fprintf(stderr, "drctl: history: N must be an integer from 1 to 10000\n");
                cJSON_Delete(req);
                return 2;
            }
            cJSON_AddNumberToObject(req, "limit", (double)lim);
        }
    } else if (strcmp(cmd, "debug") == 0) {
        if (nargs != 2 || strcmp(args[0], "crash-before") != 0)
            goto bad_usage;
        cJSON_AddStringToObject(req, "cmd", "debug");
        cJSON_AddStringToObject(req, "crash_before", args[1]);
    } else if (strcmp(cmd, "hold") == 0) {
        const char *user = getenv("USER");
        if (nargs != 2 || strcmp(args[0], "release") != 0)
            goto bad_usage;
        cJSON_AddStringToObject(req, "cmd", "hold");
        cJSON_AddStringToObject(req, "action", "release");
        cJSON_AddStringToObject(req, "group", args[1]);
        cJSON_AddStringToObject(req, "by", user != NULL && user[0] != '\0' ? user : "unknown");
    } else {
        fprintf(stderr, "drctl: unknown command \"%s\"\n", cmd);
        goto bad_usage_quiet;
    }

    /* A daemon that closes early must give exit code 3, not death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    int rc;
    cJSON *reply = call(sock, req, &rc);
    cJSON_Delete(req);
    if (reply == NULL)
        return rc;
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"));
    if (json) {
        char *text = cJSON_Print(reply);
        printf("%s\n", text);
        free(text);
    } else if (!ok) {
        fprintf(stderr, "drctl: %s\n", str(reply, "error"));
    } else if (strcmp(cmd, "status") == 0) {
        print_status(reply);
    } else if (strcmp(cmd, "history") == 0) {
        print_history(reply);
    } else if (strcmp(cmd, "dump") == 0) {
        fputs(str(reply, "dump"), stdout);
    } else if (strcmp(cmd, "hold") == 0) {
        printf("hold release proposed; see drctl status\n");
    } else {
        printf("ok\n");
    }
    cJSON_Delete(reply);
    return ok ? 0 : 1;

bad_usage:
    fprintf(stderr, "drctl: wrong arguments for \"%s\"\n", cmd);
bad_usage_quiet:
    cJSON_Delete(req);
    usage(stderr);
    return 2;
}
