#include <errno.h>
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
    char *buf;
    size_t len;
    int closing;
    int eof; /* the client finished sending: close once its replies are written */
};

#define MAX_QUEUED_REPLY_BYTES (8u << 20)

struct dw_admin {
    uv_pipe_t server;
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
    free(c->buf);
    free(c);
}

static void client_close(struct admin_client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
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

static void write_done(uv_write_t *req, int status)
{
    struct admin_write *w = (struct admin_write *)req;
    uv_stream_t *stream = req->handle;
    struct admin_client *c = stream->data;
    free(w->text);
    free(w);
    if (status == 0 && c->eof && uv_stream_get_write_queue_size(stream) == 0)
        client_close(c);
}

static void client_send(struct admin_client *c, cJSON *reply)
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

static void handle_line(struct admin_client *c, const char *line, size_t len)
{
    cJSON *req = cJSON_ParseWithLength(line, len);
    if (req == NULL || !cJSON_IsObject(req)) {
        send_error(c, "request: not a JSON object");
        cJSON_Delete(req);
        return;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "v");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    if (v != NULL && (!cJSON_IsNumber(v) || v->valuedouble != DW_ADMIN_VERSION)) {
        send_error(c, "v: unsupported admin protocol version (this daemon speaks 1)");
    } else if (!cJSON_IsString(cmd)) {
        send_error(c, "cmd: expected a string");
    } else {
        cJSON *reply = cJSON_CreateObject();
        c->admin->handler(c->admin->data, req, reply);
        client_send(c, reply);
        cJSON_Delete(reply);
    }
    cJSON_Delete(req);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    static char slab[16384];
    /* Reads are consumed synchronously in read_cb, so one static slab suffices. */
    (void)h;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_client *c = s->data;
    if (nread < 0) {
        /* A client may half-close after its request: finish writing the replies first. */
        uv_read_stop(s);
        c->eof = 1;
        if (nread != UV_EOF || uv_stream_get_write_queue_size(s) == 0)
            client_close(c);
        return;
    }
    if (nread == 0)
        return;
    size_t n = (size_t)nread;
    if (c->len + n > DW_ADMIN_MAX_LINE) {
        send_error(c, "request: line longer than 65536 bytes");
        client_close(c);
        return;
    }
    char *grown = realloc(c->buf, c->len + n + 1);
    if (grown == NULL) {
        client_close(c);
        return;
    }
    c->buf = grown;
    memcpy(c->buf + c->len, buf->base, n);
    c->len += n;
    size_t start = 0;
    for (size_t i = 0; i < c->len && !c->closing; i++) {
        if (c->buf[i] != '\n')
            continue;
        if (i > start)
            handle_line(c, c->buf + start, i - start);
        start = i + 1;
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
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

static void server_closed(uv_handle_t *h)
{
    free(h->data);
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
    if (rc != 0) {
        snprintf(errmsg, errlen, "admin socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&a->server, server_closed);
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
    uv_close((uv_handle_t *)&a->server, server_closed);
}

static void hold_error(cJSON *reply, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hold_error(cJSON *reply, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON_AddBoolToObject(reply, "ok", 0);
    cJSON_AddStringToObject(reply, "error", msg);
}

void dw_admin_hold(struct dw_raft *raft, const struct dw_config *cfg, const cJSON *req,
                   cJSON *reply)
{
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(req, "action");
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(req, "group");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(req, "by");
    char err[256];
    bool known = false;

    if (!cJSON_IsString(action) || strcmp(action->valuestring, "release") != 0) {
        hold_error(reply, "action: expected \"release\"");
        return;
    }
    if (!cJSON_IsString(group) || !cJSON_IsString(by)) {
        hold_error(reply, "group, by: expected strings");
        return;
    }
    for (int i = 0; i < cfg->n_groups; i++)
        known = known || strcmp(cfg->groups[i].id, group->valuestring) == 0;
    if (!known) {
        hold_error(reply, "group: no group \"%.64s\"", group->valuestring);
        return;
    }
    /* Only the leader proposes it: peers may forward observations only. */
    if (!dw_raft_is_leader(raft)) {
        hold_error(reply, "hold: this node is not the leader (node %llu is); ask the leader",
                   (unsigned long long)dw_raft_leader_id(raft));
        return;
    }
    char *e = dw_entry_hold_release(group->valuestring, by->valuestring);
    if (e == NULL || dw_raft_propose(raft, e, NULL, NULL, err, sizeof err) != 0) {
        hold_error(reply, "hold: %s", e == NULL ? "out of memory" : err);
        free(e);
        return;
    }
    free(e);
    dw_log(DW_LOG_INFO, "admin", "hold release of %s proposed for %s", group->valuestring,
           by->valuestring);
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddBoolToObject(reply, "proposed", 1);
}
