#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "drwatch/entry.h"
#include "drwatch/log.h"
#include "drwatch/peer.h"

#define PEER_FORWARD_TIMEOUT_MS 3000

/* A proposal received over HTTP, waiting for raft; the peer detaches it at close. */
struct serve_ctx {
    struct serve_ctx *prev, *next;
    struct dw_peer *p;
    struct dw_httpd_req *req;
};

/* A local submission: waiting for raft, for the leader's answer, or for its deferred failure. */
struct submit {
    struct submit *prev, *next;
    struct dw_peer *p;          /* NULL once detached at close */
    dw_raft_done_cb cb;
    void *data;
    int status;                 /* deferred failure */
    char err[256];
};

struct dw_peer {
    uv_loop_t *loop;
    struct dw_curlm *curlm;
    const struct dw_config *cfg;
    struct dw_raft *raft;
    struct dw_httpd *httpd;
    char *auth;                 /* "Bearer <secret>" */
    dw_httpd_handler extra;
    void *extra_data;
    struct dw_peer_stats stats;
    struct serve_ctx *serving;
    struct submit *pending;     /* local proposals and forwards in flight */
    struct submit *failed;      /* failures waiting for failed_timer */
    uv_timer_t *failed_timer;   /* own allocation: it outlives the peer until closed */
    bool closing;
};

#define LIST_PUSH(head, n)                                                                    \
    do {                                                                                      \
        (n)->prev = NULL;                                                                     \
        (n)->next = (head);                                                                   \
        if ((head) != NULL)                                                                   \
            (head)->prev = (n);                                                               \
        (head) = (n);                                                                         \
    } while (0)

#define LIST_REMOVE(head, n)                                                                  \
    do {                                                                                      \
        if ((n)->prev != NULL)                                                                \
            (n)->prev->next = (n)->next;                                                      \
        else                                                                                  \
            (head) = (n)->next;                                                               \
        if ((n)->next != NULL)                                                                \
            (n)->next->prev = (n)->prev;                                                      \
        (n)->prev = (n)->next = NULL;                                                         \
    } while (0)

/* ---- server ---- */

static void reply_json(struct dw_httpd_req *req, unsigned status, cJSON *obj)
{
    char *text = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;
    if (text == NULL) {
        static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}";
        dw_httpd_reply(req, 500, "application/json", oom, sizeof oom - 1);
    } else {
        dw_httpd_reply(req, status, "application/json", text, strlen(text));
    }
    cJSON_free(text);
    cJSON_Delete(obj);
}

static void reply_error(struct dw_httpd_req *req, unsigned status, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddFalseToObject(o, "ok");
    cJSON_AddStringToObject(o, "error", error);
    reply_json(req, status, o);
}

/* Constant time in the content of the header; only its length can show. */
static bool auth_ok(const struct dw_peer *p, const char *hdr)
{
    if (hdr == NULL)
        return false;
    size_t want = strlen(p->auth), got = strlen(hdr);
    unsigned char diff = want != got;
    for (size_t i = 0; i < want; i++)
        diff |= (unsigned char)p->auth[i] ^ (unsigned char)(i < got ? hdr[i] : 0);
    return diff == 0;
}

static void on_served_proposal(void *data, int status, const char *errmsg)
{
    struct serve_ctx *s = data;
    if (s->p != NULL) {
        LIST_REMOVE(s->p->serving, s);
        if (status == 0) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddTrueToObject(o, "ok");
            reply_json(s->req, 200, o);
        } else {
            reply_error(s->req, 503, errmsg != NULL ? errmsg : "not committed");
        }
    }
    free(s);
}

static void serve_propose(struct dw_peer *p, struct dw_httpd_req *req, const char *body,
                          size_t body_len)
{
    p->stats.received++;
    if (!dw_raft_is_leader(p->raft)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddFalseToObject(o, "ok");
        cJSON_AddStringToObject(o, "error", "not leader");
        cJSON_AddNumberToObject(o, "leader", (double)dw_raft_leader_id(p->raft));
        reply_json(req, 421, o);
        return;
    }
    char err[256];
    /* Validated here so that a bad entry (400) is told apart from a raft failure (503). */
    char *checked = dw_entry_stamp(body, body_len, 0, p->cfg->node_id, err, sizeof err);
    if (checked == NULL) {
        p->stats.rejected_bad++;
        reply_error(req, 400, err);
        return;
    }
    free(checked);
    /* Steps and leader entries come only from the leader's own actuator and raft wiring; a
     * follower (or anyone holding the secret) may only report what it observes. */
    cJSON *e = cJSON_ParseWithLength(body, body_len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    bool observe = cJSON_IsString(type) && strcmp(type->valuestring, "observe") == 0;
    cJSON_Delete(e);
    if (!observe) {
        p->stats.rejected_bad++;
        reply_error(req, 403, "type: only observe entries may be forwarded");
        return;
    }
    struct serve_ctx *s = calloc(1, sizeof *s);
    if (s == NULL) {
        reply_error(req, 503, "out of memory");
        return;
    }
    s->p = p;
    s->req = req;
    if (dw_raft_propose(p->raft, body, on_served_proposal, s, err, sizeof err) != 0) {
        free(s);
        reply_error(req, 503, err);
        return;
    }
    LIST_PUSH(p->serving, s);
}

static void on_http(void *data, struct dw_httpd_req *req, const char *method, const char *path,
                    const char *body, size_t body_len)
{
    struct dw_peer *p = data;
    if (!auth_ok(p, dw_httpd_header(req, "Authorization"))) {
        p->stats.rejected_auth++;
        reply_error(req, 401, "unauthorized");
        return;
    }
    if (strcmp(path, "/v1/propose") == 0) {
        if (strcmp(method, "POST") != 0)
            reply_error(req, 405, "method not allowed");
        else
            serve_propose(p, req, body, body_len);
        return;
    }
    if (strcmp(path, "/v1/ping") == 0) {
        if (strcmp(method, "GET") != 0) {
            reply_error(req, 405, "method not allowed");
            return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddTrueToObject(o, "ok");
        cJSON_AddNumberToObject(o, "node", (double)p->cfg->node_id);
        cJSON_AddNumberToObject(o, "leader", (double)dw_raft_leader_id(p->raft));
        reply_json(req, 200, o);
        return;
    }
    if (p->extra != NULL) {
        p->extra(p->extra_data, req, method, path, body, body_len);
        return;
    }
    reply_error(req, 404, "not found");
}

/* ---- client ---- */

static void on_failed_timer(uv_timer_t *t)
{
    struct dw_peer *p = t->data;
    struct submit *list = p->failed;
    p->failed = NULL; /* callbacks may submit again */
    while (list != NULL) {
        struct submit *s = list;
        list = s->next;
        s->cb(s->data, s->status, s->err);
        free(s);
    }
}

/* Reports a failure on a later loop turn: callers expect the callback after submit returns. */
static void fail_later(struct dw_peer *p, struct submit *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_later(struct dw_peer *p, struct submit *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    s->status = status;
    /* Appended in order so callbacks run in submission order. */
    s->next = NULL;
    s->prev = NULL;
    struct submit **tail = &p->failed;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = s;
    uv_timer_start(p->failed_timer, on_failed_timer, 0, 0);
}

static void on_local_done(void *data, int status, const char *errmsg)
{
    struct submit *s = data;
    if (s->p != NULL) {
        LIST_REMOVE(s->p->pending, s);
        s->cb(s->data, status, status == 0 ? NULL : errmsg);
    }
    free(s);
}

static void on_forward_done(const struct dw_http_resp *resp, void *data)
{
    struct submit *s = data;
    struct dw_peer *p = s->p;
    if (p == NULL) {
        free(s);
        return;
    }
    LIST_REMOVE(p->pending, s);
    if (resp->curl_code == CURLE_OK && resp->status == 200) {
        s->cb(s->data, 0, NULL);
    } else {
        p->stats.forward_failures++;
        char msg[512];
        if (resp->curl_code != CURLE_OK)
            snprintf(msg, sizeof msg, "leader unreachable: %s",
                     resp->error != NULL ? resp->error : curl_easy_strerror(resp->curl_code));
        else
            snprintf(msg, sizeof msg, "leader answered HTTP %ld: %.300s", resp->status,
                     resp->body);
        s->cb(s->data, resp->status != 0 ? (int)resp->status : -1, msg);
    }
    free(s);
}

int dw_peer_submit(struct dw_peer *p, const char *entry_json, dw_raft_done_cb cb, void *data)
{
    if (p == NULL || p->closing || entry_json == NULL || cb == NULL)
        return -1;
    struct submit *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->p = p;
    s->cb = cb;
    s->data = data;

    if (dw_raft_is_leader(p->raft)) {
        char err[256];
        if (dw_raft_propose(p->raft, entry_json, on_local_done, s, err, sizeof err) != 0) {
            fail_later(p, s, -1, "%s", err);
            return 0;
        }
        LIST_PUSH(p->pending, s);
        return 0;
    }

    uint64_t leader = dw_raft_leader_id(p->raft);
    if (leader == 0) {
        fail_later(p, s, -1, "no leader");
        return 0;
    }
    if (leader == p->cfg->node_id) {
        fail_later(p, s, -1, "no leader ready (this node is taking office)");
        return 0;
    }
    const struct dw_member *m = NULL;
    for (int i = 0; i < p->cfg->n_members; i++)
        if (p->cfg->members[i].id == leader)
            m = &p->cfg->members[i];
    if (m == NULL) {
        fail_later(p, s, -1, "leader %llu is not a configured member", (unsigned long long)leader);
        return 0;
    }
    char url[DW_ADDR_MAX + 32];
    snprintf(url, sizeof url, "http://%s/v1/propose", m->peer_address);
    char auth_hdr[512];
    if (snprintf(auth_hdr, sizeof auth_hdr, "Authorization: %s", p->auth) >= (int)sizeof auth_hdr) {
        fail_later(p, s, -1, "peer secret too long");
        return 0;
    }
    const char *headers[] = {auth_hdr, "Content-Type: application/json", NULL};
    struct dw_http_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = entry_json,
        .body_len = strlen(entry_json),
        .timeout_ms = PEER_FORWARD_TIMEOUT_MS,
        .max_body = 4096,
        .direct = 1, /* members talk to each other, never through an egress proxy */
    };
    p->stats.forwarded++;
    if (dw_http_request(p->curlm, &o, on_forward_done, s) != 0) {
        p->stats.forward_failures++;
        fail_later(p, s, -1, "cannot start request to leader %llu", (unsigned long long)leader);
        return 0;
    }
    LIST_PUSH(p->pending, s);
    return 0;
}

/* ---- lifecycle ---- */

int dw_peer_start(struct dw_peer **out, uv_loop_t *loop, struct dw_curlm *curlm,
                  const struct dw_config *cfg, const char *secret, struct dw_raft *raft,
                  char *errmsg, size_t errlen)
{
    *out = NULL;
    const struct dw_member *self = dw_config_member(cfg, cfg->node_id);
    if (self == NULL) {
        snprintf(errmsg, errlen, "node id %llu is not a configured member",
                 (unsigned long long)cfg->node_id);
        return -1;
    }
    if (secret == NULL || secret[0] == '\0') {
        snprintf(errmsg, errlen, "peer channel: empty shared secret");
        return -1;
    }
    if (strlen(secret) > 256) {
        snprintf(errmsg, errlen, "peer channel: shared secret longer than 256 bytes");
        return -1;
    }
    struct dw_peer *p = calloc(1, sizeof *p);
    if (p == NULL || (p->failed_timer = malloc(sizeof *p->failed_timer)) == NULL ||
        (p->auth = malloc(strlen("Bearer ") + strlen(secret) + 1)) == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        if (p != NULL) {
            free(p->failed_timer);
            free(p);
        }
        return -1;
    }
    sprintf(p->auth, "Bearer %s", secret);
    p->loop = loop;
    p->curlm = curlm;
    p->cfg = cfg;
    p->raft = raft;
    char err[256];
    if (dw_httpd_start(&p->httpd, loop, self->peer_address, DW_ENTRY_MAX, on_http, p, err,
                       sizeof err) != 0) {
        snprintf(errmsg, errlen, "peer channel: %s", err);
        free(p->auth);
        free(p->failed_timer);
        free(p);
        return -1;
    }
    uv_timer_init(loop, p->failed_timer);
    p->failed_timer->data = p;
    *out = p;
    return 0;
}

void dw_peer_set_extra_handler(struct dw_peer *p, dw_httpd_handler h, void *data)
{
    p->extra = h;
    p->extra_data = data;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

void dw_peer_close(struct dw_peer *p)
{
    if (p == NULL)
        return;
    p->closing = true;
    /* Proposals being served: their requests are answered 503 by the server's close. */
    while (p->serving != NULL) {
        struct serve_ctx *s = p->serving;
        LIST_REMOVE(p->serving, s);
        s->p = NULL;
        s->req = NULL;
    }
    dw_httpd_close(p->httpd);
    /* Raft and curl still own these contexts and free them in their own callbacks. */
    while (p->pending != NULL) {
        struct submit *s = p->pending;
        LIST_REMOVE(p->pending, s);
        s->p = NULL;
        s->cb(s->data, -1, "peer channel closed");
    }
    while (p->failed != NULL) {
        struct submit *s = p->failed;
        p->failed = s->next;
        s->cb(s->data, s->status, s->err);
        free(s);
    }
    uv_close((uv_handle_t *)p->failed_timer, on_timer_closed);
    free(p->auth);
    free(p);
}

void dw_peer_stats(const struct dw_peer *p, struct dw_peer_stats *out)
{
    *out = p->stats;
}
