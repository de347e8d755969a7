#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "drwatch/genesys_parse.h"
#include "drwatch/http.h"

/* One record per running transfer; kept in a list so close can abort them all. */
struct xfer {
    struct xfer *prev, *next;
    CURL *easy;
    dw_curlm_done_cb cb;
    void *data;
    int embedded; /* lives inside a dw_http_job: not freed here */
};

/* A curl socket watched by libuv; freed in its close callback. */
struct sock {
    uv_poll_t poll;
    struct sock *prev, *next;
    struct dw_curlm *m;
    curl_socket_t fd;
};

struct dw_curlm {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct xfer *xfers;
    struct sock *socks; /* watched and not yet closing */
    int open_handles; /* timer + polls still open; memory goes when it reaches 0 while closing */
    int closing;
};

static void curlm_maybe_free(struct dw_curlm *m)
{
    if (m->closing && m->open_handles == 0)
        free(m);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *s = h->data;
    struct dw_curlm *m = s->m;

    free(s);
    m->open_handles--;
    curlm_maybe_free(m);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct dw_curlm *m = h->data;

    m->open_handles--;
    curlm_maybe_free(m);
}

static void sock_close(struct dw_curlm *m, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        m->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void xfer_unlink(struct dw_curlm *m, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        m->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void finish(struct dw_curlm *m, struct xfer *x, CURLcode result)
{
    /* Removed before the callback so the callback may clean up or reuse the easy handle. */
    curl_multi_remove_handle(m->multi, x->easy);
    xfer_unlink(m, x);
    int embedded = x->embedded; /* the callback may free a job and its xfer with it */
    x->cb(x->easy, result, x->data);
    if (!embedded)
        free(x);
}

static void drain_done(struct dw_curlm *m)
{
    CURLMsg *msg;
    int left;

    /* A callback may close the multi handle: stop as soon as that happens. */
    while (!m->closing && (msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL)
            finish(m, x, result);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    struct dw_curlm *m = s->m;
    int flags = 0;
    int running;

    if (m->closing)
        return;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(m->multi, s->fd, flags, &running);
    drain_done(m);
}

static void on_timer(uv_timer_t *t)
{
    struct dw_curlm *m = t->data;
    int running;

    if (m->closing)
        return;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(m);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct dw_curlm *m = userp;
    struct sock *s = socketp;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(m->multi, fd, NULL);
            sock_close(m, s);
        }
        return 0;
    }
    if (s == NULL && m->closing)
        return 0;
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -1;
        s->m = m;
        s->fd = fd;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        m->open_handles++;
        s->next = m->socks;
        if (m->socks)
            m->socks->prev = s;
        m->socks = s;
        curl_multi_assign(m->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct dw_curlm *m = userp;

    (void)multi;
    if (timeout_ms < 0)
        return uv_timer_stop(&m->timer);
    /* curl forbids socket_action from inside this callback: a 0 ms timer defers it. */
    return uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
}

int dw_curlm_init(struct dw_curlm **out, uv_loop_t *loop)
{
    struct dw_curlm *m = calloc(1, sizeof *m);

    *out = NULL;
    if (m == NULL)
        return -1;
    m->loop = loop;
    m->multi = curl_multi_init();
    if (m->multi == NULL)
        goto err_after_alloc;
    if (uv_timer_init(loop, &m->timer) != 0)
        goto err_after_multi;
    m->timer.data = m;
    m->open_handles = 1;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    *out = m;
    return 0;

err_after_multi:
    curl_multi_cleanup(m->multi);
err_after_alloc:
    free(m);
    return -1;
}

void dw_curlm_close(struct dw_curlm *m)
{
    if (m == NULL || m->closing)
        return;
    m->closing = 1;
    while (m->xfers != NULL)
        finish(m, m->xfers, CURLE_ABORTED_BY_CALLBACK);
    /* Cleanup may still report sockets of cached connections through socket_cb (REMOVE). */
    curl_multi_cleanup(m->multi);
    m->multi = NULL;
    while (m->socks != NULL)
        sock_close(m, m->socks);
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

static int curlm_add_xfer(struct dw_curlm *m, struct xfer *x)
{
    /* CURLOPT_PRIVATE belongs to this module while the transfer runs. */
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    if (curl_multi_add_handle(m->multi, x->easy) != CURLM_OK)
        return -1;
    x->prev = NULL;
    x->next = m->xfers;
    if (m->xfers)
        m->xfers->prev = x;
    m->xfers = x;
    return 0;
}

int dw_curlm_add(struct dw_curlm *m, CURL *easy, dw_curlm_done_cb cb, void *data)
{
    if (m == NULL || m->closing || easy == NULL || cb == NULL)
        return -1;
    struct xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return -1;
    x->easy = easy;
    x->cb = cb;
    x->data = data;
    if (curlm_add_xfer(m, x) != 0) {
        free(x);
        return -1;
    }
    return 0;
}

/* ---- one request ---- */

#define DW_HTTP_DEFAULT_MAX_BODY (1024 * 1024)

struct req {
    CURL *easy;
    struct curl_slist *headers;
    char *buf;
    size_t len, cap, max;
    int truncated;
    int retry_after_s;
    long rl_allowed, rl_count, rl_reset_s;
    char errbuf[CURL_ERROR_SIZE];
    dw_http_cb cb;
    void *data;
    /* jobs only */
    int job;
    const struct dw_http_opts *opts;
    struct dw_curlm *m;
    struct xfer x;
};

struct dw_http_job {
    struct req r;
};

static void req_free(struct req *r)
{
    if (r == NULL)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->buf);
    free(r);
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nmemb;

    if (n > r->max - r->len) {
        r->truncated = 1;
        return 0; /* aborts the transfer: a bounded body is a resource limit */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (nb == NULL)
            return 0;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, ptr, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nitems, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nitems;
    int v = dw_gparse_retry_after(ptr, n);

    long l;

    if (v >= 0)
        r->retry_after_s = v;
    else if ((l = dw_gparse_header_num(ptr, n, "inin-ratelimit-allowed")) >= 0)
        r->rl_allowed = l;
    else if ((l = dw_gparse_header_num(ptr, n, "inin-ratelimit-count")) >= 0)
        r->rl_count = l;
    else if ((l = dw_gparse_header_num(ptr, n, "inin-ratelimit-reset")) >= 0)
        r->rl_reset_s = l;
    return n;
}

static void request_done(CURL *easy, CURLcode result, void *data)
{
    struct req *r = data;
    struct dw_http_resp resp;
    curl_off_t total_us = 0;

    memset(&resp, 0, sizeof resp);
    resp.curl_code = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
    resp.total_ms = (double)total_us / 1000.0;
    resp.body = r->buf ? r->buf : "";
    resp.body_len = r->len;
    resp.retry_after_s = r->retry_after_s;
    resp.rl_allowed = r->rl_allowed;
    resp.rl_count = r->rl_count;
    resp.rl_reset_s = r->rl_reset_s;
    resp.truncated = r->truncated;
    if (result != CURLE_OK)
        resp.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);
    if (!r->job) {
        r->cb(&resp, r->data);
        req_free(r);
        return;
    }
    /* Everything resp needs is copied out or lives in r: the easy can go before cb, which
     * may free the job. */
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    r->cb(&resp, r->data);
}

static int set_method(CURL *e, const struct dw_http_opts *o)
{
    const char *method = o->method ? o->method : "GET";
    CURLcode rc = CURLE_OK;

    if (strcmp(method, "GET") == 0 && o->body == NULL)
        return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK ? 0 : -1;
    if (strcmp(method, "POST") != 0)
        rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    /* POSTFIELDS carries the body for PUT too; COPYPOSTFIELDS so the caller's buffer may go. */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                              (curl_off_t)(o->body ? o->body_len : 0));
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "");
    return rc == CURLE_OK ? 0 : -1;
}

static int add_header(struct req *r, const char *h)
{
    struct curl_slist *l = curl_slist_append(r->headers, h);

    if (l == NULL)
        return -1;
    r->headers = l;
    return 0;
}

static int req_headers(struct req *r, const struct dw_http_opts *opts)
{
    for (const char *const *h = opts->headers; h != NULL && *h != NULL; h++)
        if (add_header(r, *h) != 0)
            return -1;
    /* Without this curl waits up to 1 s for "100 Continue" on larger bodies. */
    if (opts->body != NULL && add_header(r, "Expect:") != 0)
        return -1;
    return 0;
}

/* A fresh easy handle per run: cheap next to a connection, and idle handles would cost ~8 KiB
 * each across thousands of probes. */
static int req_easy(struct req *r, const struct dw_http_opts *opts)
{
    r->easy = curl_easy_init();
    if (r->easy == NULL)
        return -1;

    CURL *e = r->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, opts->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)opts->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) !=
           CURLE_OK;
#endif
    if (opts->direct)
        bad |= curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK; /* "" overrides the env */
    if (opts->fresh_connect) {
        bad |= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK;
    }
    if (opts->ca_pem) {
        /* loaded at start: no file read at the handshake, on the loop */
        struct curl_blob b = {(void *)opts->ca_pem, opts->ca_pem_len, CURL_BLOB_NOCOPY};
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b) != CURLE_OK;
    } else if (opts->ca_file) {
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, opts->ca_file) != CURLE_OK;
    }
    if (opts->client_cert)
        bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, opts->client_cert) != CURLE_OK;
    if (opts->client_key)
        bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, opts->client_key) != CURLE_OK;
    if (opts->recv_buffer > 0)
        bad |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, opts->recv_buffer) != CURLE_OK;
    if (opts->tls_no_verify) {
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    if (opts->basic_user) {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_USERNAME, opts->basic_user) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_PASSWORD,
                                opts->basic_password ? opts->basic_password : "") != CURLE_OK;
    }
    if (bad || set_method(e, opts) != 0)
        return -1;
    if (r->headers && curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK)
        return -1;
    return 0;
}

int dw_http_request(struct dw_curlm *m, const struct dw_http_opts *opts, dw_http_cb cb, void *data)
{
    if (m == NULL || m->closing || opts == NULL || opts->url == NULL || cb == NULL)
        return -1;
    struct req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->cb = cb;
    r->data = data;
    r->retry_after_s = -1;
    r->rl_allowed = r->rl_count = r->rl_reset_s = -1;
    r->max = opts->max_body ? opts->max_body : DW_HTTP_DEFAULT_MAX_BODY;
    if (req_headers(r, opts) != 0 || req_easy(r, opts) != 0)
        goto err;
    if (dw_curlm_add(m, r->easy, request_done, r) != 0)
        goto err;
    return 0;

err:
    req_free(r);
    return -1;
}

/* ---- a request run many times ---- */

int dw_http_job_new(struct dw_http_job **out, const struct dw_http_opts *opts)
{
    *out = NULL;
    if (opts == NULL || opts->url == NULL)
        return -1;
    struct dw_http_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return -1;
    struct req *r = &j->r;
    r->job = 1;
    r->opts = opts;
    r->max = opts->max_body ? opts->max_body : DW_HTTP_DEFAULT_MAX_BODY;
    r->x.embedded = 1;
    if (req_headers(r, opts) != 0) {
        curl_slist_free_all(r->headers);
        free(j);
        return -1;
    }
    *out = j;
    return 0;
}

int dw_http_job_running(const struct dw_http_job *j)
{
    return j != NULL && j->r.easy != NULL;
}

int dw_http_job_run(struct dw_curlm *m, struct dw_http_job *j, dw_http_cb cb, void *data)
{
    if (m == NULL || m->closing || j == NULL || cb == NULL || j->r.easy != NULL)
        return -1;
    struct req *r = &j->r;
    r->cb = cb;
    r->data = data;
    r->m = m;
    r->len = 0;
    if (r->buf)
        r->buf[0] = '\0';
    r->truncated = 0;
    r->retry_after_s = -1;
    r->rl_allowed = r->rl_count = r->rl_reset_s = -1;
    r->errbuf[0] = '\0';
    if (req_easy(r, r->opts) != 0)
        goto err;
    r->x.easy = r->easy;
    r->x.cb = request_done;
    r->x.data = r;
    if (curlm_add_xfer(m, &r->x) != 0)
        goto err;
    return 0;

err:
    if (r->easy)
        curl_easy_cleanup(r->easy);
    r->easy = NULL;
    return -1;
}

void dw_http_job_free(struct dw_http_job *j)
{
    if (j == NULL)
        return;
    struct req *r = &j->r;
    /* A running transfer: its multi is alive, since closing the multi finishes every transfer. */
    if (r->easy != NULL) {
        curl_multi_remove_handle(r->m->multi, r->easy);
        xfer_unlink(r->m, &r->x);
    }
    r->job = 0;
    req_free(r);
}
