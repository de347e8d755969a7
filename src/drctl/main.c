/* drctl: operator CLI talking newline-delimited JSON to a drwatchd admin socket.
 * Exit codes: 0 success, 1 the daemon refused the request, 2 usage error (or a config file the
 * daemon found invalid), 3 no daemon reachable, 4 no leader seen (status, list). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "drctl.h"

#ifndef DRWATCH_VERSION
#define DRWATCH_VERSION "0.1.0"
#endif
#define DEFAULT_SOCKET "/run/drwatch/admin.sock"
#define REPLY_MAX (16u << 20)
#define REQUEST_MAX (8u << 20) /* the daemon's DW_ADMIN_MAX_LINE */

#define USAGE_LINE "usage: drctl [--socket PATH] [--json] COMMAND [ARGS]\n"

/* The usage line and where the rest is: after a wrong command or option. */
static int short_usage(void)
{
    fprintf(stderr, USAGE_LINE "run \"drctl help\" for the commands and their options\n");
    return EXIT_USAGE;
}

static void usage(FILE *f)
{
    fprintf(f,
            USAGE_LINE
            "commands:\n"
            "  status                       one-screen summary: leader, members (state,\n"
            "                               reachability, lag), sites, groups, operations;\n"
            "                               exit 4 when this node sees no leader\n"
            "  list                         one line per member (exit 4 without a leader)\n"
            "  history [N | --limit N] [--since DURATION|TIME] [--group G]\n"
            "                               history rows, newest first (default 50, at most\n"
            "                               10000); --since 30m or 2026-01-31T12:00:00Z (UTC);\n"
            "                               --group: rows about G and its targets' sites\n"
            "  watch [--group G]            follow new history rows as they commit, one line\n"
            "                               each, until Ctrl-C\n"
            "  version                      drctl's version and the daemon's, with its node\n"
            "  help                         this text\n"
            "  dump                         the replicated state, one line per row (a debugging\n"
            "                               tool: refused past 16 MiB)\n"
            "  debug crash-before STEP      (node.debug only) SIGKILL this node before STEP of an\n"
            "                               operation it began\n"
            "  hold release GROUP           (on the leader) lift GROUP's hold after a failed step,\n"
            "                               recorded in history under $USER\n"
            "  config show                  the committed cluster config and its version; notes\n"
            "                               where this node's local file differs\n"
            "  config diff FILE             what FILE would change against the committed config\n"
            "  config apply FILE [--dry-run]\n"
            "                               commit FILE as the cluster config (recorded under\n"
            "                               $USER); --dry-run only checks it and shows the changes\n"
            "  members list                 the committed members beside raft's own view\n"
            "  members add ID --raft-address HOST:PORT --peer-address HOST:PORT [--name NAME]\n"
            "                               add node ID (1 to 2147483647); answers once it has\n"
            "                               caught up and joined (up to 60 s)\n"
            "  members remove ID            remove node ID from the cluster\n"
            "  maintenance list             the maintenance windows in force\n"
            "  maintenance set site|group ID --ttl DURATION --reason TEXT\n"
            "                               (on the leader) no automatic operation touches ID\n"
            "                               until cleared or DURATION (90s, 30m, 2h, 1d) passes\n"
            "  maintenance clear site|group ID\n"
            "  switchover GROUP --to TARGET [--dry-run] [--wait [--timeout SEC]]\n"
            "                               (on the leader) move GROUP's calls to TARGET (make\n"
            "                               before break); refused when TARGET is not up, is in\n"
            "                               maintenance, or an operation runs; --dry-run prints\n"
            "                               the Genesys requests and sends none; --wait follows\n"
            "                               it to its end (exit 1 unless done)\n"
            "  failback GROUP [--dry-run] [--wait [--timeout SEC]]\n"
            "                               (on the leader) move GROUP back to its highest-\n"
            "                               priority target that is up\n"
            "options:\n"
            "  --socket PATH                the daemon's admin socket (default $DRCTL_SOCKET,\n"
            "                               else $DRWATCH_SOCKET, else " DEFAULT_SOCKET ")\n"
            "  --json                       JSON output (schemas in docs/schema/)\n"
            "  --version                    drctl's version only\n"
            "exit codes: 0 done, 1 refused by the daemon, 2 usage error or an invalid config file,\n"
            "3 no daemon reachable, 4 no leader (status, list)\n");
}

/* --since: a duration back from now (90s, 30m, 2h, 1d) or a UTC time (2026-01-31T12:00:00Z,
 * seconds, Z and the time optional); ms since the epoch, -1 when it is neither. */
static long long since_ms(const char *s)
{
    long long d = duration_ms(s);
    struct timespec now;
    struct tm tm = {0};
    int used = 0, n;

    if (d > 0) {
        clock_gettime(CLOCK_REALTIME, &now);
        return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 - d;
    }
    n = sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &used);
    if (n != 3 || used != 10)
        return -1;
    if (s[used] == 'T' || s[used] == ' ') {
        int more = 0;
        n = sscanf(s + used + 1, "%2d:%2d%n:%2d%n", &tm.tm_hour, &tm.tm_min, &more, &tm.tm_sec,
                   &more);
        if (n < 2)
            return -1;
        used += 1 + more;
    }
    if (s[used] == 'Z')
        used++;
    if (s[used] != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
        tm.tm_year < 1970)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (long long)t * 1000;
}

/* Why connect() failed, and what to do about it. */
static void connect_error(const char *path, int err)
{
    fprintf(stderr, "drctl: cannot connect to %s: %s", path, strerror(err));
    if (err == EACCES || err == EPERM) {
        struct stat st;
        char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL && slash != dir)
            *slash = '\0';
        const char *what = stat(path, &st) == 0 ? path : stat(dir, &st) == 0 ? dir : NULL;
        if (what == NULL) {
            fprintf(stderr, "; run drctl as the user drwatchd runs as, or as root\n");
            return;
        }
        struct passwd *pw = getpwuid(st.st_uid);
        struct group *gr = getgrgid(st.st_gid);
        char uid[16], gid[16];
        snprintf(uid, sizeof uid, "%u", (unsigned)st.st_uid);
        snprintf(gid, sizeof gid, "%u", (unsigned)st.st_gid);
        fprintf(stderr, "; %s belongs to user %s and group %s (mode %04o): run drctl as %s, or "
                        "as a member of group %s (usermod -aG %s USER, then log in again)\n",
                what, pw ? pw->pw_name : uid, gr ? gr->gr_name : gid,
                (unsigned)(st.st_mode & 07777), pw ? pw->pw_name : uid, gr ? gr->gr_name : gid,
                gr ? gr->gr_name : gid);
        return;
    }
    fprintf(stderr, "; is drwatchd running on this machine? Point drctl elsewhere with --socket "
                    "PATH or DRCTL_SOCKET=PATH\n");
}

int conn_open(struct conn *c, const char *path, int *rc)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    *c = (struct conn){.fd = -1, .path = path};
    *rc = EXIT_UNREACHABLE;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "drctl: --socket: path longer than %zu bytes: %s\n",
                sizeof sa.sun_path - 1, path);
        *rc = EXIT_USAGE;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    strcpy(sa.sun_path, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        connect_error(path, errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    c->fd = fd;
    return 0;
}

void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    *c = (struct conn){.fd = -1};
}

int conn_send(struct conn *c, cJSON *req, int *rc)
{
    char *text = cJSON_PrintUnformatted(req);
    *rc = EXIT_UNREACHABLE;
    if (text == NULL) {
        fprintf(stderr, "drctl: out of memory\n");
        return -1;
    }
    size_t n = strlen(text);
    if (n > REQUEST_MAX) {
        fprintf(stderr, "drctl: the request is %zu bytes: the daemon takes at most %u\n", n,
                REQUEST_MAX);
        free(text);
        *rc = EXIT_USAGE;
        return -1;
    }
    text[n] = '\n'; /* replaces the terminator; the length below excludes it again */
    size_t off = 0;
    while (off < n + 1) {
        ssize_t w = write(c->fd, text + off, n + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            break; /* the daemon hung up, perhaps after saying why: read it */
        if (w <= 0) {
            fprintf(stderr, "drctl: write to %s: %s\n", c->path, strerror(errno));
            free(text);
            return -1;
        }
        off += (size_t)w;
    }
    free(text);
    return 0;
}

cJSON *conn_recv(struct conn *c, int timeout_ms, int *rc)
{
    *rc = EXIT_UNREACHABLE;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL) {
            size_t line = (size_t)(nl - c->buf);
            cJSON *reply = cJSON_ParseWithLength(c->buf, line);
            memmove(c->buf, nl + 1, c->len - line - 1);
            c->len -= line + 1;
            if (reply == NULL) {
                fprintf(stderr, "drctl: the daemon's reply is not JSON\n");
                *rc = EXIT_REFUSED;
            }
            return reply;
        }
        if (conn_interrupted) {
            *rc = 0;
            return NULL;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&p, 1, timeout_ms);
        if (pr == 0) {
            fprintf(stderr, "drctl: no reply from %s within %d ms\n", c->path, timeout_ms);
            return NULL;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        if (c->len + 4096 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            if (cap > REPLY_MAX) {
                fprintf(stderr, "drctl: reply larger than %u bytes\n", REPLY_MAX);
                return NULL;
            }
            char *grown = realloc(c->buf, cap);
            if (grown == NULL) {
                fprintf(stderr, "drctl: out of memory\n");
                return NULL;
            }
            c->buf = grown;
            c->cap = cap;
        }
        ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "drctl: connection to %s closed before a reply: the daemon stopped "
                            "or restarted\n", c->path);
            return NULL;
        }
        c->len += (size_t)r;
    }
}

volatile sig_atomic_t conn_interrupted;

/* Sends one request line and reads one reply line, waiting at most timeout_ms for each part of
 * it; NULL with a message on stderr and *rc set on failure. */
cJSON *call(const char *path, cJSON *req, int timeout_ms, int *rc)
{
    struct conn c;
    if (conn_open(&c, path, rc) != 0)
        return NULL;
    cJSON *reply = conn_send(&c, req, rc) == 0 ? conn_recv(&c, timeout_ms, rc) : NULL;
    conn_close(&c);
    return reply;
}

const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const cJSON *arr(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

void fmt_time(double ms, char *out, size_t len)
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

/* Text from the daemon, which ends its lines itself; a last line without one gets it. */
void put_text(FILE *f, const char *text)
{
    size_t n = strlen(text);
    fputs(text, f);
    if (n > 0 && text[n - 1] != '\n')
        fputc('\n', f);
}

static void print_config_show(const cJSON *r)
{
    char *doc = cJSON_Print(arr(r, "config"));
    printf("config version %.0f\n%s\n", num(r, "version"), doc != NULL ? doc : "null");
    free(doc);
    if (cJSON_IsTrue(arr(r, "local_differs"))) {
        fflush(stdout); /* the note after the document, also when both go to one file */
        fprintf(stderr, "this node's local file differs from the committed config:\n");
        put_text(stderr, str(r, "differences"));
    }
}

static void print_config_change(const cJSON *r, const char *action)
{
    const char *diff = str(r, "differences");
    if (strcmp(action, "diff") == 0 && diff[0] == '\0')
        printf("no differences against config version %.0f\n", num(r, "version"));
    else if (strcmp(action, "apply") == 0 && cJSON_IsTrue(arr(r, "dry_run")))
        printf("dry run: would change %.0f settings (config version %.0f stays)\n", num(r, "count"),
               num(r, "version"));
    else if (strcmp(action, "apply") == 0 && num(r, "count") == 0)
        printf("nothing to apply: the file matches config version %.0f\n", num(r, "version"));
    else if (strcmp(action, "apply") == 0)
        printf("applied: config version %.0f at log index %.0f\n", num(r, "version"),
               num(r, "index"));
    put_text(stdout, diff);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static const cJSON *find_id(const cJSON *list, double id)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, list) {
        if (num(m, "id") == id)
            return m;
    }
    return NULL;
}

/* One row per node id in either view: the committed member list, and raft's configuration. */
static void print_members(const cJSON *r)
{
    const cJSON *committed = arr(r, "committed"), *raft = arr(r, "raft"), *m;
    int n = 0, cap = cJSON_GetArraySize(committed) + cJSON_GetArraySize(raft);
    double *ids = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
    char disagree[256] = "";
    size_t dlen = 0;

    if (ids == NULL) {
        fprintf(stderr, "drctl: out of memory\n");
        return;
    }
    cJSON_ArrayForEach(m, committed) ids[n++] = num(m, "id");
    cJSON_ArrayForEach(m, raft) ids[n++] = num(m, "id");
    qsort(ids, (size_t)n, sizeof *ids, cmp_double);
    if (num(r, "leader") > 0)
        printf("config version %.0f, leader %.0f\n", num(r, "version"), num(r, "leader"));
    else
        printf("config version %.0f, leader: none known\n", num(r, "version"));
    printf("\n%-10s %-16s %-22s %-22s %-6s %s\n", "ID", "NAME", "RAFT ADDRESS", "PEER ADDRESS",
           "VOTER", "RAFT ROLE");
    for (int i = 0; i < n; i++) {
        if (i > 0 && ids[i] == ids[i - 1])
            continue;
        const cJSON *c = find_id(committed, ids[i]), *q = find_id(raft, ids[i]);
        const char *role = q != NULL ? str(q, "role") : "-";
        bool voter = c != NULL && cJSON_IsTrue(arr(c, "voter"));
        printf("%-10.0f %-16s %-22s %-22s %-6s %s\n", ids[i], c != NULL ? str(c, "name") : "-",
               c != NULL ? str(c, "raft_address") : str(q, "address"),
               c != NULL ? str(c, "peer_address") : "-", c == NULL ? "-" : voter ? "yes" : "no",
               role);
        bool differ = c == NULL || q == NULL || voter != (strcmp(role, "voter") == 0) ||
                      strcmp(str(c, "raft_address"), str(q, "address")) != 0;
        if (differ && dlen < sizeof disagree) /* a long list is cut, never overrun */
            dlen += (size_t)snprintf(disagree + dlen, sizeof disagree - dlen, "%s%.0f",
                                     dlen > 0 ? ", " : "", ids[i]);
    }
    fflush(stdout);
    if (dlen > 0)
        fprintf(stderr, "warning: the committed members and raft's configuration disagree on node%s "
                        "%s: a membership change is under way or stopped half-way\n",
                strchr(disagree, ',') != NULL ? "s" : "", disagree);
    free(ids);
}

/* $USER, else the uid: who asked, for history. */
const char *who(char *buf, size_t len)
{
    const char *user = getenv("USER");
    if (user != NULL && user[0] != '\0')
        return user;
    snprintf(buf, len, "uid %u", (unsigned)getuid());
    return buf;
}

/* FILE's whole content, NUL-terminated; NULL with a message naming the file. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "drctl: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, len = 0, r = 1;
    char *buf = malloc(cap);
    bool oom = buf == NULL;
    /* bounded: a FILE such as /dev/zero must not fill memory */
    while (!oom && r > 0 && len <= REQUEST_MAX) {
        if (cap - len < 2) {
            char *grown = realloc(buf, cap * 2);
            oom = grown == NULL;
            if (oom)
                break;
            buf = grown;
            cap *= 2;
        }
        r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    const char *why = err != 0 ? strerror(err)
                      : oom ? "out of memory"
                      : len > REQUEST_MAX ? "larger than the daemon takes (8 MiB)"
                      : memchr(buf, '\0', len) != NULL ? "contains a NUL byte: not a JSON document"
                      : NULL;
    if (why != NULL) {
        fprintf(stderr, "drctl: cannot read %s: %s\n", path, why);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* An integer node id from 1 to 2147483647, or -1. */
static long parse_id(const char *s)
{
    char *end;
    errno = 0;
    long v = s[0] >= '0' && s[0] <= '9' ? strtol(s, &end, 10) : -1;
    return v < 1 || v > 2147483647 || errno != 0 || *end != '\0' ? -1 : v;
}

/* HOST:PORT, the port from 1 to 65535: the daemon checks the host. */
static bool address_ok(const char *a)
{
    const char *colon = strrchr(a, ':');
    char *end;
    if (colon == NULL || colon == a || colon[1] < '0' || colon[1] > '9')
        return false;
    long port = strtol(colon + 1, &end, 10);
    return *end == '\0' && port >= 1 && port <= 65535;
}

/* Options that belong to one subcommand each. */

/* "CMD ACTION [OPERAND]": alone takes no operand, with_a and with_b one. Fills in cmd and
 * action; false when the arguments do not fit. */
static bool sub_action(cJSON *req, const char *cmd, int nargs, char **args, const char *alone,
                       const char *with_a, const char *with_b)
{
    const char *action = nargs > 0 ? args[0] : "";
    if (!(strcmp(action, alone) == 0 && nargs == 1) &&
        !((strcmp(action, with_a) == 0 || strcmp(action, with_b) == 0) && nargs == 2))
        return false;
    cJSON_AddStringToObject(req, "cmd", cmd);
    cJSON_AddStringToObject(req, "action", action);
    return true;
}

/* config show | diff FILE | apply FILE */
static int config_request(cJSON *req, int nargs, char **args, const struct sub_opts *o)
{
    char by[32];

    if (!sub_action(req, "config", nargs, args, "show", "diff", "apply"))
        return BAD_ARGS;
    bool apply = strcmp(args[0], "apply") == 0;
    if (o->dry_run && !apply)
        return BAD_ARGS;
    if (nargs == 1)
        return BUILT;
    char *text = read_file(args[1]);
    if (text == NULL)
        return FAILED;
    cJSON_AddStringToObject(req, "text", text);
    free(text);
    if (apply) {
        cJSON_AddBoolToObject(req, "dry_run", o->dry_run);
        cJSON_AddStringToObject(req, "by", who(by, sizeof by));
    }
    return BUILT;
}

/* members list | add ID --raft-address A:P --peer-address A:P [--name NAME] | remove ID */
static int members_request(cJSON *req, int nargs, char **args, const struct sub_opts *o)
{
    char by[32];

    if (!sub_action(req, "members", nargs, args, "list", "add", "remove"))
        return BAD_ARGS;
    const char *action = args[0];
    bool add = strcmp(action, "add") == 0;
    if (!add && (o->raft_address != NULL || o->peer_address != NULL || o->name != NULL))
        return BAD_ARGS;
    if (nargs == 1)
        return BUILT;
    long id = parse_id(args[1]);
    if (id < 0) {
        fprintf(stderr, "drctl: members %s: ID must be an integer from 1 to 2147483647, not \"%s\"\n",
                action, args[1]);
        return FAILED;
    }
    cJSON_AddNumberToObject(req, "id", (double)id);
    if (add) {
        if (o->raft_address == NULL || o->peer_address == NULL) {
            fprintf(stderr, "drctl: members add: --raft-address and --peer-address are required\n");
            return FAILED;
        }
        const char *bad = !address_ok(o->raft_address) ? "--raft-address"
                          : !address_ok(o->peer_address) ? "--peer-address"
                                                         : NULL;
        if (bad != NULL) {
            fprintf(stderr, "drctl: members add: %s: expected HOST:PORT with a port from 1 to "
                            "65535, not \"%s\"\n",
                    bad, strcmp(bad, "--raft-address") == 0 ? o->raft_address : o->peer_address);
            return FAILED;
        }
        cJSON_AddStringToObject(req, "raft_address", o->raft_address);
        cJSON_AddStringToObject(req, "peer_address", o->peer_address);
        if (o->name != NULL)
            cJSON_AddStringToObject(req, "name", o->name);
    }
    cJSON_AddStringToObject(req, "by", who(by, sizeof by));
    return BUILT;
}

int main(int argc, char **argv)
{
    const char *sock = getenv("DRCTL_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        sock = getenv("DRWATCH_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        sock = DEFAULT_SOCKET;
    int json = 0;
    const char *limit = NULL, *since = NULL, *group = NULL;
    struct sub_opts so = {0};
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"dry-run", no_argument, NULL, 'd'},
        {"raft-address", required_argument, NULL, 'r'},
        {"peer-address", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"ttl", required_argument, NULL, 'T'},
        {"reason", required_argument, NULL, 'R'},
        {"to", required_argument, NULL, 't'},
        {"wait", no_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 'W'},
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"since", required_argument, NULL, 'S'},
        {"group", required_argument, NULL, 'g'},
        {"version", no_argument, NULL, 'V'},
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
        case 'd':
            so.dry_run = true;
            break;
        case 'r':
            so.raft_address = optarg;
            break;
        case 'p':
            so.peer_address = optarg;
            break;
        case 'n':
            so.name = optarg;
            break;
        case 'T':
            so.ttl = optarg;
            break;
        case 'R':
            so.reason = optarg;
            break;
        case 't':
            so.to = optarg;
            break;
        case 'w':
            so.wait = true;
            break;
        case 'W':
            so.timeout = optarg;
            break;
        case 'S':
            since = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'V':
            printf("drctl %s\n", DRWATCH_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return short_usage(); /* getopt said which option */
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "drctl: no command given\n");
        return short_usage();
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "v", 1);
    if (strcmp(cmd, "help") == 0 && nargs == 0) {
        cJSON_Delete(req);
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 && nargs == 0 && !limit && !since && !group) {
        cJSON_Delete(req);
        signal(SIGPIPE, SIG_IGN);
        return show_version(sock, json);
    }
    if (strcmp(cmd, "watch") == 0 && nargs == 0 && !limit && !since) {
        cJSON_Delete(req);
        signal(SIGPIPE, SIG_IGN);
        return show_watch(sock, group, json);
    }
    if ((limit != NULL || since != NULL) && strcmp(cmd, "history") != 0)
        goto bad_usage;
    if (group != NULL && strcmp(cmd, "history") != 0)
        goto bad_usage;
    char by[32];
    int built = BUILT;
    bool slow = false;
    bool lifecycle = strcmp(cmd, "maintenance") == 0 || strcmp(cmd, "switchover") == 0 ||
                     strcmp(cmd, "failback") == 0;
    if (strcmp(cmd, "config") != 0 && !lifecycle && so.dry_run)
        goto bad_usage;
    if (!lifecycle && (so.ttl || so.reason || so.to || so.wait || so.timeout))
        goto bad_usage;
    if (strcmp(cmd, "members") != 0 && (so.raft_address || so.peer_address || so.name))
        goto bad_usage;
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "dump") == 0 || strcmp(cmd, "list") == 0) {
        if (nargs != 0)
            goto bad_usage;
        cJSON_AddStringToObject(req, "cmd", strcmp(cmd, "list") == 0 ? "status" : cmd);
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
        if (since != NULL) {
            long long ms = since_ms(since);
            if (ms < 0) {
                fprintf(stderr, "drctl: history: --since: expected a duration like 90s, 30m, 2h "
                                "or 1d, or a UTC time like 2026-01-31T12:00:00Z, not \"%s\"\n",
                        since);
                cJSON_Delete(req);
                return EXIT_USAGE;
            }
            cJSON_AddNumberToObject(req, "since", (double)ms);
        }
        if (group != NULL)
            cJSON_AddStringToObject(req, "group", group);
    } else if (strcmp(cmd, "debug") == 0) {
        if (nargs != 2 || strcmp(args[0], "crash-before") != 0)
            goto bad_usage;
        cJSON_AddStringToObject(req, "cmd", "debug");
        cJSON_AddStringToObject(req, "crash_before", args[1]);
    } else if (strcmp(cmd, "hold") == 0) {
        if (nargs != 2 || strcmp(args[0], "release") != 0)
            goto bad_usage;
        cJSON_AddStringToObject(req, "cmd", "hold");
        cJSON_AddStringToObject(req, "action", "release");
        cJSON_AddStringToObject(req, "group", args[1]);
        cJSON_AddStringToObject(req, "by", who(by, sizeof by));
        slow = true; /* answered once committed */
    } else if (strcmp(cmd, "config") == 0) {
        built = config_request(req, nargs, args, &so);
        slow = nargs > 0 && strcmp(args[0], "apply") == 0;
    } else if (strcmp(cmd, "members") == 0) {
        built = members_request(req, nargs, args, &so);
        slow = nargs > 0 && strcmp(args[0], "list") != 0;
    } else if (lifecycle) {
        built = ops_request(req, cmd, nargs, args, &so);
        slow = true;
    } else {
        fprintf(stderr, "drctl: unknown command \"%s\"\n", cmd);
        cJSON_Delete(req);
        return short_usage();
    }
    if (built == BAD_ARGS)
        goto bad_usage;
    if (built == FAILED) {
        cJSON_Delete(req);
        return EXIT_USAGE;
    }

    /* A daemon that closes early must give exit code 3, not death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    int rc;
    cJSON *reply = call(sock, req, slow ? SLOW_TIMEOUT_MS : TIMEOUT_MS, &rc);
    cJSON_Delete(req);
    if (reply == NULL)
        return rc;
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"));
    /* A config the daemon found invalid is the operator's input at fault, as with usage. */
    const cJSON *errors = arr(reply, "errors");
    bool invalid = !ok && cJSON_IsArray(errors);
    if (ok && (strcmp(cmd, "status") == 0 || strcmp(cmd, "list") == 0 ||
               strcmp(cmd, "history") == 0)) {
        int code = strcmp(cmd, "status") == 0 ? show_status(reply, json)
                   : strcmp(cmd, "list") == 0 ? show_list(reply, json)
                                              : show_history(reply, json);
        cJSON_Delete(reply);
        return code;
    }
    if (json) {
        /* one document: the reply, and with --wait how the operation ended */
        int code = ok && lifecycle && so.wait && !so.dry_run ? ops_wait_json(sock, reply, &so) : -1;
        char *text = cJSON_Print(reply);
        printf("%s\n", text);
        free(text);
        if (code >= 0) {
            cJSON_Delete(reply);
            return code;
        }
    } else if (!ok) {
        fprintf(stderr, "drctl: %s\n", str(reply, "error"));
        if (str(reply, "leader_name")[0])
            fprintf(stderr, "drctl: the leader is node %.0f (%s), peer address %s: run drctl on "
                            "that machine\n", num(reply, "leader"), str(reply, "leader_name"),
                    str(reply, "leader_peer_address"));
        else if (cJSON_IsNumber(arr(reply, "leader")) && num(reply, "leader") == 0)
            fprintf(stderr, "drctl: this node sees no leader: drctl status shows which members "
                            "it reaches\n");
        const cJSON *e, *lines = invalid ? errors : NULL;
        cJSON_ArrayForEach(e, lines)
            fprintf(stderr, "  %s\n", cJSON_IsString(e) ? e->valuestring : "(not a string)");
    } else if (lifecycle) {
        int code = ops_print(sock, cmd, nargs, args, reply, &so);
        cJSON_Delete(reply);
        return code;
    } else if (strcmp(cmd, "dump") == 0) {
        fputs(str(reply, "dump"), stdout);
    } else if (strcmp(cmd, "hold") == 0) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "was_held")))
            printf("%s: hold (%s) released\n", args[1], str(reply, "hold_reason"));
        else
            printf("%s: was not held; release recorded (its flap window starts afresh)\n",
                   args[1]);
    } else if (strcmp(cmd, "config") == 0 && strcmp(args[0], "show") == 0) {
        print_config_show(reply);
    } else if (strcmp(cmd, "config") == 0) {
        print_config_change(reply, args[0]);
    } else if (strcmp(cmd, "members") == 0 && strcmp(args[0], "list") == 0) {
        print_members(reply);
    } else if (strcmp(cmd, "members") == 0) {
        printf("member %ld %s (config version %.0f)\n", parse_id(args[1]),
               strcmp(args[0], "add") == 0 ? "added" : "removed", num(reply, "version"));
    } else {
        printf("ok\n");
    }
    cJSON_Delete(reply);
    return ok ? 0 : invalid ? EXIT_USAGE : EXIT_REFUSED;

bad_usage:
    fprintf(stderr, "drctl: wrong arguments for \"%s\"\n", cmd);
    cJSON_Delete(req);
    return short_usage();
}
