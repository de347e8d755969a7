/* What drctl's command files share: the admin socket call and reply accessors. */
#ifndef DRCTL_H
#define DRCTL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cJSON.h>

#define TIMEOUT_MS 10000
/* config apply, members add/remove and operators' moves answer after a commit; a new member
 * must catch up first */
#define SLOW_TIMEOUT_MS 60000

/* EXIT_NO_LEADER: status and list when this node sees no leader (a health check's failure). */
enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_NO_LEADER = 4 };

/* What building a request came to: main() prints the usage for BAD_ARGS; FAILED said why. */
enum { BUILT, BAD_ARGS, FAILED };

struct sub_opts {
    bool dry_run;                                  /* config apply, switchover, failback */
    const char *raft_address, *peer_address, *name; /* members add */
    const char *ttl, *reason;                      /* maintenance set */
    const char *to;                                /* switchover */
    bool wait;                                     /* switchover, failback */
    const char *timeout;                           /* --wait's limit in seconds */
};

/* Sends one request line and reads one reply line, waiting at most timeout_ms for each part of
 * it; NULL with a message on stderr and *rc set on failure. */
cJSON *call(const char *path, cJSON *req, int timeout_ms, int *rc);

/* One connection held open for several requests (watch). Each prints why it failed and sets
 * *rc; conn_recv returns NULL with *rc 0 after SIGINT or SIGTERM (conn_interrupted). */
struct conn {
    int fd;
    const char *path;
    char *buf;
    size_t len, cap;
};
extern volatile sig_atomic_t conn_interrupted;
int conn_open(struct conn *c, const char *path, int *rc);
int conn_send(struct conn *c, cJSON *req, int *rc);
cJSON *conn_recv(struct conn *c, int timeout_ms, int *rc);
void conn_close(struct conn *c);
const char *str(const cJSON *o, const char *k); /* "" when absent */
double num(const cJSON *o, const char *k);      /* 0 when absent */
const cJSON *arr(const cJSON *o, const char *k);
void fmt_time(double ms, char *out, size_t len);
void fmt_iso(double ms, char *out, size_t len); /* 2026-01-31T12:00:00.000Z, "-" for none */
long long duration_ms(const char *s);           /* 90s, 30m, 2h, 1d; -1 when none of these */
void put_text(FILE *f, const char *text);
const char *who(char *buf, size_t len); /* $USER, else the uid */

/* ops.c: maintenance, switchover, failback. ops_request builds req (BUILT, BAD_ARGS, FAILED);
 * ops_print shows a successful reply and, with --wait, follows the operation to its end; it
 * returns the exit code. */
int ops_request(cJSON *req, const char *cmd, int nargs, char **args, const struct sub_opts *o);
int ops_print(const char *sock, const char *cmd, int nargs, char **args, const cJSON *reply,
              const struct sub_opts *o);
/* --json --wait: follows the operation and adds its ended object as reply's "result" (null
 * when it did not end in time); the exit code as ops_print's. */
int ops_wait_json(const char *sock, cJSON *reply, const struct sub_opts *o);

/* show.c: status, list, history, watch and version. Each takes the daemon's reply (or runs its
 * own requests) and returns the exit code. */
int show_status(const cJSON *reply, bool json);
int show_list(const cJSON *status, bool json);
int show_history(const cJSON *reply, bool json);
int show_version(const char *sock, bool json);
int show_watch(const char *sock, const char *group, bool json);

#endif
