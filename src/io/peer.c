#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "drwatch/entry.h"
#include "drwatch/log.h"
#include "drwatch/peer.h"

#define PEER_FORWARD_TIMEOUT_MS 3000
#define PEER_NODE_HEADER "X-Drwatch-Node"
#define REFUSED_LOG_MS 10000 /* at most one line per interval for refused identities */

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
    /* secrets.s[i]: what this node shares with cfg->members[i], sent when it leads; expect[i]:
     * SHA-256 of the Authorization header that member sends here */
    struct dw_peer_secrets secrets;
    unsigned char expect[DW_MAX_MEMBERS][32];
    uint64_t refused_log_at;    /* uv_now() of the last refused-identity line, 0 = none yet */
    unsigned refused_unlogged;  /* refused since that line */
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

static int sha256(const char *text, unsigned char out[32])
{
    unsigned int n = 0;
    return EVP_Digest(text, strlen(text), out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

/* The member whose secret the header carries (index into cfg->members), or -1. Digests are
 * compared, each against every member without stopping early, so neither the content nor the
 * length of a secret shows in the timing. */
static int auth_member(const struct dw_peer *p, const char *hdr)
{
    unsigned char got[32];
    if (hdr == NULL || sha256(hdr, got) != 0)
        return -1;
    int found = -1;
    for (int i = 0; i < p->cfg->n_members; i++) {
        bool same = CRYPTO_memcmp(got, p->expect[i], sizeof got) == 0;
        if (same && p->secrets.s[i][0] != '\0')
            found = i;
    }
    return found;
}

/* A request carrying one member's credential that speaks for another: 403, counted, and logged
 * at most once per REFUSED_LOG_MS so a looping misconfigured node cannot flood the log. */
static void refuse_identity(struct dw_peer *p, struct dw_httpd_req *req, const char *why)
{
    p->stats.rejected_identity++;
    uint64_t now = uv_now(p->loop);
    if (p->refused_log_at == 0 || now - p->refused_log_at >= REFUSED_LOG_MS) {
        dw_log(DW_LOG_WARN, "peer", "refused a request: %s (%u more refused since the last "
               "such line)", why, p->refused_unlogged);
        p->refused_log_at = now != 0 ? now : 1;
        p->refused_unlogged = 0;
    } else {
        p->refused_unlogged++;
    }
    reply_error(req, 403, why);
}

/* "1".."2147483647" (raft ids in the configuration), else 0. */
static uint64_t parse_node_id(const char *s)
{
    uint64_t v = 0;
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 10 || s[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v <= 2147483647u ? v : 0;
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

void dw_peer_check_proposal(const char *body, size_t body_len, uint64_t sender, uint64_t self,
                            struct dw_peer_verdict *out)
{
    out->status = 0;
    out->identity = false;
    out->reason[0] = '\0';
    /* Validated here so that a bad entry (400) is told apart from a raft failure (503). */
    char *checked = dw_entry_stamp(body, body_len, 0, self, out->reason, sizeof out->reason);
    if (checked == NULL) {
        out->status = 400;
        if (out->reason[0] == '\0')
            snprintf(out->reason, sizeof out->reason, "entry: not valid");
        return;
    }
    free(checked);
    /* Steps and leader entries come only from the leader's own actuator and raft wiring; a
     * follower (or anyone holding a member's secret) may only report what it observes. */
    cJSON *e = cJSON_ParseWithLength(body, body_len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(e, "node");
    bool observe = cJSON_IsString(type) && strcmp(type->valuestring, "observe") == 0;
    double named = cJSON_IsNumber(node) ? node->valuedouble : -1;
    cJSON_Delete(e);
    if (!observe) {
        out->status = 403;
        snprintf(out->reason, sizeof out->reason, "type: only observe entries may be forwarded");
    } else if (named != (double)sender) {
        /* A node reports only what it observes itself: its vote is its own. */
        out->status = 403;
        out->identity = true;
        snprintf(out->reason, sizeof out->reason, "node: member %llu may only forward its own "
                 "observations, not node %.0f's", (unsigned long long)sender, named);
    }
}

static void serve_propose(struct dw_peer *p, struct dw_httpd_req *req, uint64_t sender,
                          const char *body, size_t body_len)
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
    struct dw_peer_verdict v;
    dw_peer_check_proposal(body, body_len, sender, p->cfg->node_id, &v);
    if (v.identity) {
        refuse_identity(p, req, v.reason);
        return;
    }
    if (v.status != 0) {
        p->stats.rejected_bad++;
        reply_error(req, v.status, v.reason);
        return;
    }
    char err[256];
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
    int m = auth_member(p, dw_httpd_header(req, "Authorization"));
    if (m < 0) {
        p->stats.rejected_auth++;
        reply_error(req, 401, "unauthorized");
        return;
    }
    /* The secret says which member sent the request; the request must say the same. */
    uint64_t sender = p->cfg->members[m].id;
    uint64_t named = parse_node_id(dw_httpd_header(req, PEER_NODE_HEADER));
    if (named != sender) {
        char why[160];
        if (named == 0)
            snprintf(why, sizeof why, PEER_NODE_HEADER ": missing or not a member id (the "
                     "credential is member %llu's)", (unsigned long long)sender);
        else
            snprintf(why, sizeof why, PEER_NODE_HEADER ": names node %llu but the credential "
                     "is member %llu's", (unsigned long long)named, (unsigned long long)sender);
        refuse_identity(p, req, why);
        return;
    }
    if (strcmp(path, "/v1/propose") == 0) {
        if (strcmp(method, "POST") != 0)
            reply_error(req, 405, "method not allowed");
        else
            serve_propose(p, req, sender, body, body_len);
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
    if (p->secrets.s[m - p->cfg->members][0] == '\0') {
        fail_later(p, s, -1, "no secret shared with leader %llu (its .secret file is missing)",
                   (unsigned long long)leader);
        return 0;
    }
    char url[DW_ADDR_MAX + 32];
    snprintf(url, sizeof url, "http://%s/v1/propose", m->peer_address);
    /* The secret this node shares with the leader, and its own id, which the leader checks. */
    char auth_hdr[DW_PEER_SECRET_MAX + 32], node_hdr[64];
    snprintf(auth_hdr, sizeof auth_hdr, "Authorization: Bearer %s",
             p->secrets.s[m - p->cfg->members]);
    snprintf(node_hdr, sizeof node_hdr, PEER_NODE_HEADER ": %llu",
             (unsigned long long)p->cfg->node_id);
    const char *headers[] = {auth_hdr, node_hdr, "Content-Type: application/json", NULL};
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
    int rc = dw_http_request(p->curlm, &o, on_forward_done, s);
    explicit_bzero(auth_hdr, sizeof auth_hdr);
    if (rc != 0) {
        p->stats.forward_failures++;
        fail_later(p, s, -1, "cannot start request to leader %llu", (unsigned long long)leader);
        return 0;
    }
    LIST_PUSH(p->pending, s);
    return 0;
}

/* ---- lifecycle ---- */

/* Checks secrets against cfg's members and derives what each member's header must hash to. An
 * empty secret for another member (its file is missing after a committed change) leaves that
 * member unable to talk to this node, nothing more; start-up has already required them all. */
static int load_secrets(const struct dw_config *cfg, const struct dw_peer_secrets *secrets,
                        struct dw_peer_secrets *keep, unsigned char (*expect)[32], char *errmsg,
                        size_t errlen)
{
    for (int i = 0; i < cfg->n_members; i++) {
        size_t n = strnlen(secrets->s[i], sizeof secrets->s[i]);
        bool self_ = cfg->members[i].id == cfg->node_id;
        if ((self_ && n != 0) || n >= sizeof secrets->s[i]) {
            snprintf(errmsg, errlen, "peer channel: %s secret for member %llu",
                     self_ ? "unexpected" : "too long a",
                     (unsigned long long)cfg->members[i].id);
            return -1;
        }
    }
    *keep = *secrets;
    for (int i = 0; i < cfg->n_members; i++) {
        char hdr[DW_PEER_SECRET_MAX + 16];
        snprintf(hdr, sizeof hdr, "Bearer %s", keep->s[i]);
        int rc = keep->s[i][0] != '\0' ? sha256(hdr, expect[i]) : 0;
        explicit_bzero(hdr, sizeof hdr);
        if (rc != 0) {
            snprintf(errmsg, errlen, "peer channel: SHA-256 unavailable");
            explicit_bzero(keep, sizeof *keep);
            return -1;
        }
    }
    return 0;
}

int dw_peer_start(struct dw_peer **out, uv_loop_t *loop, struct dw_curlm *curlm,
                  const struct dw_config *cfg, const struct dw_peer_secrets *secrets,
                  struct dw_raft *raft, char *errmsg, size_t errlen)
{
    *out = NULL;
    const struct dw_member *self = dw_config_member(cfg, cfg->node_id);
    if (self == NULL) {
        snprintf(errmsg, errlen, "node id %llu is not a configured member",
                 (unsigned long long)cfg->node_id);
        return -1;
    }
    struct dw_peer *p = calloc(1, sizeof *p);
    if (p == NULL || (p->failed_timer = malloc(sizeof *p->failed_timer)) == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        free(p);
        return -1;
    }
    if (load_secrets(cfg, secrets, &p->secrets, p->expect, errmsg, errlen) != 0) {
        free(p->failed_timer);
        free(p);
        return -1;
    }
    p->loop = loop;
    p->curlm = curlm;
    p->cfg = cfg;
    p->raft = raft;
    char err[256];
    if (dw_httpd_start(&p->httpd, loop, self->peer_address, DW_ENTRY_MAX, on_http, p, err,
                       sizeof err) != 0) {
        snprintf(errmsg, errlen, "peer channel: %s", err);
        explicit_bzero(&p->secrets, sizeof p->secrets);
        free(p->failed_timer);
        free(p);
        return -1;
    }
    uv_timer_init(loop, p->failed_timer);
    p->failed_timer->data = p;
    *out = p;
    return 0;
}

int dw_peer_reconfigure(struct dw_peer *p, const struct dw_config *cfg,
                        const struct dw_peer_secrets *secrets, char *errmsg, size_t errlen)
{
    struct dw_peer_secrets keep;
    unsigned char expect[DW_MAX_MEMBERS][32];

    if (dw_config_member(cfg, cfg->node_id) == NULL) {
        snprintf(errmsg, errlen, "node id %llu is not a member any more",
                 (unsigned long long)cfg->node_id);
        return -1;
    }
    if (load_secrets(cfg, secrets, &keep, expect, errmsg, errlen) != 0)
        return -1;
    explicit_bzero(&p->secrets, sizeof p->secrets);
    p->secrets = keep;
    memcpy(p->expect, expect, sizeof expect);
    explicit_bzero(&keep, sizeof keep);
    p->cfg = cfg;
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
    explicit_bzero(&p->secrets, sizeof p->secrets);
    free(p);
}

void dw_peer_stats(const struct dw_peer *p, struct dw_peer_stats *out)
{
    *out = p->stats;
}
