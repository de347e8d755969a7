#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "drwatch/httpd.h"
#include "drwatch/log.h"

#define HTTPD_CONN_LIMIT 256
#define HTTPD_CONN_TIMEOUT_S 30
/* An oversize body is read and dropped up to this much, so the client sees the 413 rather than
 * a reset while it is still sending; beyond it the connection is cut. */
#define HTTPD_DRAIN_MAX (1024 * 1024)

struct dw_httpd_req {
    struct dw_httpd *h;
    struct MHD_Connection *conn;
    char *body;             /* always NUL-terminated once the handler runs */
    size_t len, cap;
    size_t received;
    bool too_big;
    bool dispatched;
    bool in_handler;        /* a reply made now is queued when the handler returns */
    bool suspended;
    unsigned status;
    struct MHD_Response *resp;
    struct dw_httpd_req *prev, *next; /* suspended requests, answered 503 at close */
};

struct dw_httpd {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    bool closing;
    size_t max_body;
    dw_httpd_handler handler;
    void *data;
    struct dw_httpd_req *waiting;
    char *start_err;        /* MHD's last message while starting */
    size_t start_errlen;
};

static void httpd_run(struct dw_httpd *h);

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct dw_httpd *h = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (h->start_err != NULL) {
        snprintf(h->start_err, h->start_errlen, "%s", msg);
        return;
    }
    dw_log(DW_LOG_WARN, "httpd", "%s", msg);
}

static struct MHD_Response *make_response(const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(body != NULL ? body : ""),
                                        MHD_RESPMEM_MUST_COPY);
    if (resp != NULL && content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return resp;
}

static enum MHD_Result queue_simple(struct MHD_Connection *conn, unsigned status, const char *json)
{
    struct MHD_Response *resp = make_response("application/json", json, strlen(json));
    if (resp == NULL)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue_stored(struct dw_httpd_req *req)
{
    enum MHD_Result ret = MHD_queue_response(req->conn, req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return ret;
}

static void unlink_waiting(struct dw_httpd_req *req)
{
    if (!req->suspended)
        return;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        req->h->waiting = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    req->suspended = false;
}

static void append_body(struct dw_httpd_req *req, const char *data, size_t n)
{
    if (req->too_big)
        return;
    if (req->len + n > req->h->max_body) {
        req->too_big = true;
        return;
    }
    if (req->len + n + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 1024;
        while (cap < req->len + n + 1)
            cap *= 2;
        char *b = realloc(req->body, cap);
        if (b == NULL) {
            req->too_big = true; /* cannot hold it: refuse rather than truncate */
            return;
        }
        req->body = b;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, n);
    req->len += n;
    req->body[req->len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct dw_httpd *h = cls;
    struct dw_httpd_req *req = *con_cls;
    (void)version;

    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO;
        req->h = h;
        req->conn = conn;
        *con_cls = req;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > h->max_body + HTTPD_DRAIN_MAX) {
            req->too_big = true;
            return queue_simple(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                "{\"ok\":false,\"error\":\"body too large\"}");
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        req->received += *upload_data_size;
        if (req->received > h->max_body + HTTPD_DRAIN_MAX)
            return MHD_NO;
        append_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->resp != NULL) /* resumed after dw_httpd_reply */
        return queue_stored(req);
    if (req->too_big)
        return queue_simple(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                            "{\"ok\":false,\"error\":\"body too large\"}");
    if (req->dispatched)
        return MHD_YES;
    if (h->closing)
        return queue_simple(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                            "{\"ok\":false,\"error\":\"shutting down\"}");

    req->dispatched = true;
    req->in_handler = true;
    h->handler(h->data, req, method, url, req->body != NULL ? req->body : "", req->len);
    req->in_handler = false;
    if (req->resp != NULL)
        return queue_stored(req);

    MHD_suspend_connection(conn);
    req->suspended = true;
    req->prev = NULL;
    req->next = h->waiting;
    if (h->waiting != NULL)
        h->waiting->prev = req;
    h->waiting = req;
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct dw_httpd_req *req = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (req == NULL)
        return;
    unlink_waiting(req);
    if (req->resp != NULL)
        MHD_destroy_response(req->resp);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

const char *dw_httpd_header(struct dw_httpd_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

static void on_timer(uv_timer_t *t)
{
    httpd_run(t->data);
}

void dw_httpd_reply(struct dw_httpd_req *req, unsigned status, const char *content_type,
                    const char *body, size_t len)
{
    if (req->resp != NULL)
        return; /* replied already */
    req->status = status;
    req->resp = make_response(content_type, body, len);
    if (req->resp == NULL) {
        req->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        req->resp = make_response(NULL, "", 0);
    }
    if (req->in_handler)
        return;
    struct dw_httpd *h = req->h;
    unlink_waiting(req);
    MHD_resume_connection(req->conn);
    /* Run MHD on the next loop turn so the answer leaves without waiting for its timeout;
     * not now, since the caller may be inside MHD's own callbacks. */
    if (!h->closing)
        uv_timer_start(&h->timer, on_timer, 0, 0);
}

static void httpd_run(struct dw_httpd *h)
{
    if (h->closing)
        return;
    MHD_run(h->d);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    httpd_run(p->data);
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= INET_ADDRSTRLEN)
        return -1;
    char host[INET_ADDRSTRLEN];
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

int dw_httpd_start(struct dw_httpd **out, uv_loop_t *loop, const char *addr, size_t max_body,
                   dw_httpd_handler handler, void *data, char *errmsg, size_t errlen)
{
    struct sockaddr_in sa;
    *out = NULL;
    if (parse_addr(addr, &sa) != 0) {
        snprintf(errmsg, errlen, "invalid listen address \"%s\" (want a.b.c.d:port)", addr);
        return -1;
    }
    struct dw_httpd *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    h->loop = loop;
    h->max_body = max_body;
    h->handler = handler;
    h->data = data;

    char mhd_err[256] = "";
    h->start_err = mhd_err;
    h->start_errlen = sizeof mhd_err;
    errno = 0;
    /* MHD sets SO_REUSEADDR by default on POSIX; its LISTENING_ADDRESS_REUSE option would add
     * SO_REUSEPORT and let a second daemon share the port silently. */
    h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTPD_CONN_LIMIT,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_CONN_TIMEOUT_S,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_END);
    int saved_errno = errno;
    h->start_err = NULL;
    if (h->d == NULL) {
        snprintf(errmsg, errlen, "cannot serve HTTP on %s: %s", addr,
                 mhd_err[0] ? mhd_err : saved_errno ? strerror(saved_errno) : "MHD_start_daemon failed");
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = info != NULL ? uv_poll_init(loop, &h->poll, info->epoll_fd) : UV_EINVAL;
    if (rc != 0) {
        snprintf(errmsg, errlen, "cannot watch the HTTP server on %s: %s", addr, uv_strerror(rc));
        MHD_stop_daemon(h->d);
        free(h);
        return -1;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h;
    h->timer.data = h;
    h->open_handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    httpd_run(h);
    *out = h;
    return 0;
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct dw_httpd *h = handle->data;
    if (--h->open_handles == 0)
        free(h);
}

void dw_httpd_close(struct dw_httpd *h)
{
    if (h == NULL)
        return;
    h->closing = true;
    /* MHD refuses to stop with suspended connections: answer and resume them first. */
    while (h->waiting != NULL) {
        struct dw_httpd_req *req = h->waiting;
        static const char busy[] = "{\"ok\":false,\"error\":\"shutting down\"}";
        dw_httpd_reply(req, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", busy,
                       sizeof busy - 1);
    }
    MHD_run(h->d); /* best effort to send those answers */
    /* The poll handle must leave the loop before MHD closes the fd it watches. */
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    MHD_stop_daemon(h->d);
    h->d = NULL;
}
