#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drwatch/admin.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"

struct admin_client {
    uv_pipe_t pipe;
    struct dw_admin *admin;
    struct admin_client *next;
    struct dw_admin_lines in;
    struct dw_admin_call *pending; /* the request being answered; later lines wait for it */
    int resume;  /* a deferred reply went out: handle the lines that waited for it */
    int paused;  /* reading stopped: enough waits behind a deferred call */
    int closing;
    int eof; /* the client finished sending: close once its replies are written */
};

struct dw_admin_call {
    struct admin_client *client; /* NULL once the client or the whole admin socket went */
    int in_handler;
    int deferred;
    int answered;
};

#define MAX_QUEUED_REPLY_BYTES (8u << 20)
#define KEEP_IDLE_BUF (4 * DW_ADMIN_READ_CHUNK) /* larger buffers are freed when they empty */

struct dw_admin {
    uv_pipe_t server;
    uv_idle_t resume; /* handles the lines that waited, outside dw_admin_reply's caller */
    int open_handles;
    char path[256];
    dw_admin_handler handler;
    void *data;
    struct admin_client *clients;
    int n_clients;
};

struct admin_write {
    uv_write_t req;
    char *text;
};

static void client_closed(uv_handle_t *h)
{
    struct admin_client *c = h->data;
    dw_admin_lines_free(&c->in);
    free(c);
}

static void client_close(struct admin_client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->pending != NULL)
        c->pending->client = NULL;
    c->pending = NULL;
    struct dw_admin *a = c->admin;
    for (struct admin_client **pp = &a->clients; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    a->n_clients--;
    uv_close((uv_handle_t *)&c->pipe, client_closed);
}

/* After EOF: closes c once it is owed nothing more. */
static void client_finish(struct admin_client *c)
{
    if (c->eof && !c->closing && c->pending == NULL && !c->resume &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) == 0)
        client_close(c);
}

static void write_done(uv_write_t *req, int status)
{
    struct admin_write *w = (struct admin_write *)req;
    uv_stream_t *stream = req->handle;
    struct admin_client *c = stream->data;
    free(w->text);
    free(w);
    if (status != 0)
        client_close(c); /* the client is gone: what it is still owed cannot reach it */
    else
        client_finish(c);
}

static void client_send(struct admin_client *c, const cJSON *reply)
{
    char *text = cJSON_PrintUnformatted(reply);
    if (text == NULL)
        return;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (line == NULL) {
        free(text);
        return;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    struct admin_write *w = malloc(sizeof *w);
    if (w == NULL || uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > MAX_QUEUED_REPLY_BYTES) {
        /* A client that asks and never reads must not grow the daemon without bound. */
        free(line);
        free(w);
        client_close(c);
        return;
    }
    w->text = line;
    uv_buf_t buf = uv_buf_init(line, (unsigned)(n + 1));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, write_done) != 0) {
        free(line);
        free(w);
        client_close(c);
    }
}

static void send_error(struct admin_client *c, const char *msg)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 0);
    cJSON_AddStringToObject(r, "error", msg);
    client_send(c, r);
    cJSON_Delete(r);
}

static void call_handler(struct admin_client *c, const cJSON *req)
{
    struct dw_admin_call *call = calloc(1, sizeof *call);
    cJSON *reply = cJSON_CreateObject();
    if (call == NULL || reply == NULL) {
        send_error(c, "out of memory");
        free(call);
        cJSON_Delete(reply);
        return;
    }
    /* pending from the start: a client closed by the handler detaches the call */
    call->client = c;
    call->in_handler = 1;
    c->pending = call;
    c->admin->handler(c->admin->data, req, reply, call);
    call->in_handler = 0;
    if (call->answered) {
        free(call); /* dw_admin_reply ran inside the handler and sent its reply */
    } else if (!call->deferred) {
        if (call->client != NULL)
            client_send(c, reply);
        c->pending = NULL;
        free(call);
    }
    cJSON_Delete(reply);
}

void dw_admin_lines_init(struct dw_admin_lines *l, size_t max_line)
{
    memset(l, 0, sizeof *l);
    l->max_line = max_line;
}

void dw_admin_lines_free(struct dw_admin_lines *l)
{
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = l->start = l->scan = 0;
}

int dw_admin_lines_room(struct dw_admin_lines *l, char **at, size_t *room)
{
    /* Growing by doubling: an 8 MiB line costs O(size) copies, not one per read. */
    if (l->cap - l->len < DW_ADMIN_READ_CHUNK) {
        size_t cap = l->cap ? l->cap : DW_ADMIN_READ_CHUNK;
        while (cap - l->len < DW_ADMIN_READ_CHUNK)
            cap *= 2;
        char *grown = realloc(l->buf, cap);
        if (grown == NULL)
            return -1;
        l->buf = grown;
        l->cap = cap;
    }
    *at = l->buf + l->len;
    *room = l->cap - l->len;
    return 0;
}

int dw_admin_lines_drain(struct dw_admin_lines *l, int waiting, dw_admin_line_cb cb, void *data)
{
    int stop = waiting;
    while (!stop && l->scan < l->len) {
        char *nl = memchr(l->buf + l->scan, '\n', l->len - l->scan);
        if (nl == NULL) {
            l->scan = l->len;
            break;
        }
        size_t begin = l->start, end = (size_t)(nl - l->buf);
        l->start = l->scan = end + 1;
        if (end - begin > l->max_line)
            stop = cb(data, NULL, end - begin);
        else if (end > begin)
            stop = cb(data, l->buf + begin, end - begin);
    }
    if (l->start > 0) {
        memmove(l->buf, l->buf + l->start, l->len - l->start);
        l->len -= l->start;
        l->scan -= l->start;
        l->start = 0;
    }
    if (l->len == 0 && l->cap > KEEP_IDLE_BUF)
        dw_admin_lines_free(l);
    /* what is left is one line, still without its end */
    return !stop && l->len > l->max_line;
}

/* Only blanks (and control bytes, which cJSON skips as such) may follow the object: text after
 * it, a second request on the line, say, must not be dropped in silence. */
static bool only_blanks(const char *p, const char *end)
{
    while (p < end && (unsigned char)*p <= ' ')
        p++;
    return p == end;
}

cJSON *dw_admin_request(const char *line, size_t len, const char **error)
{
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(line, len, &end, false);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "v");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    if (req == NULL || !cJSON_IsObject(req))
        *error = "request: not a JSON object";
    else if (end == NULL || !only_blanks(end, line + len))
        *error = "request: text after the JSON object";
    else if (v != NULL && (!cJSON_IsNumber(v) || v->valuedouble != DW_ADMIN_VERSION))
        *error = "v: unsupported admin protocol version (this daemon speaks 1)";
    else if (!cJSON_IsString(cmd))
        *error = "cmd: expected a string";
    else
        return req;
    cJSON_Delete(req);
    return NULL;
}

static void refuse_long_line(struct admin_client *c)
{
    char msg[64];
    snprintf(msg, sizeof msg, "request: line longer than %u bytes", DW_ADMIN_MAX_LINE);
    send_error(c, msg);
    client_close(c);
}

static int client_line(void *data, const char *line, size_t len)
{
    struct admin_client *c = data;
    if (line == NULL) {
        refuse_long_line(c);
        return 1;
    }
    const char *error;
    cJSON *req = dw_admin_request(line, len, &error);
    if (req == NULL) {
        send_error(c, error);
    } else {
        call_handler(c, req);
        cJSON_Delete(req);
    }
    return c->closing || c->pending != NULL;
}

/* Handles c's complete buffered lines in order, stopping at a deferred one. */
static void client_drain(struct admin_client *c)
{
    if (!c->closing && dw_admin_lines_drain(&c->in, c->pending != NULL, client_line, c))
        refuse_long_line(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_client *c = h->data;
    char *at;
    size_t room;
    (void)suggested;
    /* Reads land in the client's own buffer: no copy per read. */
    if (dw_admin_lines_room(&c->in, &at, &room) != 0)
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
    else
        *buf = uv_buf_init(at, (unsigned)room);
}

/* At EOF the client may only have half-closed and still read its replies; POLLHUP says it
 * closed both ways, so nothing it is owed can reach it. */
static int peer_gone(struct admin_client *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0)
        return 1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_client *c = s->data;
    (void)buf;
    if (nread < 0) {
        /* A client may half-close after its request: finish writing the replies first. */
        uv_read_stop(s);
        c->eof = 1;
        if (nread != UV_EOF || peer_gone(c))
            client_close(c);
        else
            client_finish(c);
        return;
    }
    c->in.len += (size_t)nread;
    client_drain(c);
    /* Behind a deferred call, a full line's worth waiting is enough: the rest waits in the
     * kernel, and the client, until the call is answered. */
    if (!c->closing && c->pending != NULL && c->in.len > c->in.max_line) {
        uv_read_stop(s);
        c->paused = 1;
    }
}

static void resume_cb(uv_idle_t *idle)
{
    struct dw_admin *a = idle->data;
    struct admin_client *c;
    uv_idle_stop(idle);
    /* From the head each time: a handler may close any client, and so unlink it. */
    for (;;) {
        for (c = a->clients; c != NULL && !c->resume; c = c->next)
            ;
        if (c == NULL)
            break;
        c->resume = 0;
        client_drain(c);
        if (!c->closing && c->paused && (c->pending == NULL || c->in.len <= c->in.max_line)) {
            c->paused = 0;
            uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
        }
        client_finish(c);
    }
}

void dw_admin_defer(struct dw_admin_call *call)
{
    call->deferred = 1;
}

void dw_admin_reply(struct dw_admin_call *call, const cJSON *reply)
{
    if (call == NULL)
        return;
    struct admin_client *c = call->client;
    call->answered = 1;
    call->client = NULL;
    if (c != NULL) {
        c->pending = NULL;
        if (reply != NULL)
            client_send(c, reply);
        else
            send_error(c, "out of memory");
        if (!call->in_handler && !c->closing) {
            /* Not here: the owner answering may be in the middle of its own bookkeeping, and
             * the next line's handler would run inside it. */
            c->resume = 1;
            uv_idle_start(&c->admin->resume, resume_cb);
        }
    }
    if (!call->in_handler)
        free(call);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct dw_admin *a = server->data;
    if (status < 0) {
        dw_log(DW_LOG_WARN, "admin", "accept failed: %s", uv_strerror(status));
        return;
    }
    struct admin_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->admin = a;
    dw_admin_lines_init(&c->in, DW_ADMIN_MAX_LINE);
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        uv_close((uv_handle_t *)&c->pipe, client_closed);
        return;
    }
    c->next = a->clients;
    a->clients = c;
    a->n_clients++;
    if (a->n_clients > DW_ADMIN_MAX_CLIENTS) {
        send_error(c, "too many admin clients (limit 32)");
        client_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
}

static void admin_handle_closed(uv_handle_t *h)
{
    struct dw_admin *a = h->data;
    if (--a->open_handles == 0)
        free(a);
}

static void admin_free(struct dw_admin *a)
{
    uv_close((uv_handle_t *)&a->server, admin_handle_closed);
    uv_close((uv_handle_t *)&a->resume, admin_handle_closed);
}

int dw_admin_start(struct dw_admin **out, uv_loop_t *loop, const char *path,
                   dw_admin_handler handler, void *data, char *errmsg, size_t errlen)
{
    struct dw_admin *a = calloc(1, sizeof *a);
    if (a == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    if (strlen(path) >= sizeof a->path) {
        snprintf(errmsg, errlen, "admin socket path too long: %s", path);
        free(a);
        return -1;
    }
    snprintf(a->path, sizeof a->path, "%s", path);
    a->handler = handler;
    a->data = data;
    uv_pipe_init(loop, &a->server, 0);
    a->server.data = a;
    uv_idle_init(loop, &a->resume);
    a->resume.data = a;
    a->open_handles = 2;
    /* A stale socket from a killed daemon would make bind fail; the data_dir flock already
     * guarantees no other live daemon owns this node. */
    unlink(path);
    /* The socket is born 0660 (owner and group, for drctl): a chmod after bind would leave it
     * with the process umask's mode for a while, and a failed chmod would leave it so. The
     * umask is process-wide; it is restored at once. */
    mode_t old_mask = umask(0117);
    int rc = uv_pipe_bind(&a->server, path);
    umask(old_mask);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->server, 16, on_connection);
    if (rc == UV_ENOENT) {
        /* the usual cause: /run/drwatch, made by systemd's RuntimeDirectory=, not made here */
        char dir[sizeof a->path];
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash && slash != path ? (int)(slash - path) : 1,
                 slash ? path : ".");
        snprintf(errmsg, errlen, "node.admin_socket: directory %s does not exist; create it "
                 "(mkdir -m 0750 %s) or, under systemd, RuntimeDirectory=drwatch creates it",
                 dir, dir);
        admin_free(a);
        return -1;
    }
    if (rc != 0) {
        snprintf(errmsg, errlen, "admin socket %s: %s", path, uv_strerror(rc));
        admin_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void dw_admin_close(struct dw_admin *a)
{
    if (a == NULL)
        return;
    while (a->clients)
        client_close(a->clients);
    unlink(a->path);
    admin_free(a);
}

void dw_admin_error(cJSON *reply, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON_AddBoolToObject(reply, "ok", 0);
    cJSON_AddStringToObject(reply, "error", msg);
}

bool dw_admin_leader_or_fail(struct dw_raft *raft, cJSON *reply)
{
    uint64_t l;

    if (dw_raft_is_leader(raft))
        return true;
    l = dw_raft_leader_id(raft);
    if (l)
        dw_admin_error(reply, "not the leader: run this on node %" PRIu64 ", the leader", l);
    else
        dw_admin_error(reply, "no leader at the moment: try again shortly");
    cJSON_AddNumberToObject(reply, "leader", (double)l);
    return false;
}
