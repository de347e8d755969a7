/* Admin socket: a Unix stream socket speaking newline-delimited JSON.
 *   request  {"v":1,"cmd":"status", ...}\n
 *   reply    {"ok":true, ...}\n   or   {"ok":false,"error":"what is wrong"}\n
 * A connection may send several requests; replies come in order, deferred ones included (a
 * client's later lines wait until its deferred call is answered). Lines are limited to
 * DW_ADMIN_MAX_LINE bytes (a whole config document rides in one) and clients to
 * DW_ADMIN_MAX_CLIENTS. */
#ifndef DRWATCH_ADMIN_H
#define DRWATCH_ADMIN_H

#include <stdbool.h>

#include <cJSON.h>
#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/raftnode.h"

#define DW_ADMIN_VERSION 1
#define DW_ADMIN_MAX_LINE (8u << 20)
#define DW_ADMIN_MAX_CLIENTS 32

struct dw_admin;
struct dw_admin_call; /* one request being answered */

/* The byte-stream side of one connection, without the socket (the fuzzer drives it too): bytes
 * read are appended at buf+len and split into request lines of at most max_line bytes. */
struct dw_admin_lines {
    char *buf;
    size_t len, cap;
    size_t start;    /* first byte of the next line not yet handled */
    size_t scan;     /* start..scan holds no '\n': each byte is searched once */
    size_t max_line; /* DW_ADMIN_MAX_LINE for clients; smaller in the fuzzer */
};

#define DW_ADMIN_READ_CHUNK 65536

void dw_admin_lines_init(struct dw_admin_lines *l, size_t max_line);
void dw_admin_lines_free(struct dw_admin_lines *l);

/* Room for the next read: *at = buf+len, *room >= DW_ADMIN_READ_CHUNK; the buffer grows by
 * doubling. -1 when out of memory. The caller then adds what it read to len. */
int dw_admin_lines_room(struct dw_admin_lines *l, char **at, size_t *room);

/* Called with each complete non-empty line (no '\n'), or with line NULL for one longer than
 * max_line. Returns nonzero to stop: a request waits for its answer, or the connection closes. */
typedef int (*dw_admin_line_cb)(void *data, const char *line, size_t len);

/* Unless waiting (a request is still being answered), hands the complete lines in order to cb
 * until it says stop; then drops the handled bytes (and a large emptied buffer). Returns 1 when
 * neither waiting nor stopped and the unfinished line left is already longer than max_line. A
 * line passed to cb is valid until the next call on l. */
int dw_admin_lines_drain(struct dw_admin_lines *l, int waiting, dw_admin_line_cb cb, void *data);

/* Parses one request line, one JSON object and nothing after it but blanks: the request
 * (cJSON_Delete it), or NULL with *error saying what is wrong, naming the field first
 * ("request: ", "v: ", "cmd: "). */
cJSON *dw_admin_request(const char *line, size_t len, const char **error);

/* Fills reply (an object) for a well-formed request object; sets "ok" itself. A handler that
 * can only answer later (after a Raft commit, say) calls dw_admin_defer(call) instead: reply is
 * then discarded and nothing is sent until dw_admin_reply(call, ...). */
typedef void (*dw_admin_handler)(void *data, const cJSON *req, cJSON *reply,
                                 struct dw_admin_call *call);

/* Only from inside the handler that was given call. */
void dw_admin_defer(struct dw_admin_call *call);

/* Answers a deferred call exactly once (inside its handler too) and frees it; reply is the
 * caller's still (NULL answers "out of memory"). When the client has gone, or the admin socket
 * was closed, the call is just freed. The client's waiting lines are handled on a later loop
 * turn, never inside this call. */
void dw_admin_reply(struct dw_admin_call *call, const cJSON *reply);

int dw_admin_start(struct dw_admin **out, uv_loop_t *loop, const char *path,
                   dw_admin_handler handler, void *data, char *errmsg, size_t errlen);
void dw_admin_close(struct dw_admin *a); /* accepts NULL; unlinks the socket path */

/* true on the leader; elsewhere fills reply with an error naming the leader ("leader": its id,
 * 0 while there is none) and returns false. */
bool dw_admin_leader_or_fail(struct dw_raft *raft, cJSON *reply);

/* Sets {"ok":false,"error":MESSAGE} on reply (the message is cut at 511 bytes). */
void dw_admin_error(cJSON *reply, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
