#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "drwatch/genesys.h"
#include "drwatch/log.h"

#define G_PFX "/api/v2/telephony/providers/edges"
#define G_MAX_RETRIES 5
#define G_MAX_PUTS 5
#define G_MAX_PAGES 100
#define G_LIST_MAX_PAGES 200
#define G_TOKEN_EARLY_MS 60000
#define G_RETRY_AFTER_DEFAULT_S 3
#define G_RETRY_AFTER_MAX_S 180
#define G_MAX_BODY (4u * 1024 * 1024)
#define G_DETAIL_MAX 256
#define G_MAX_IN_FLIGHT_DEFAULT 4

enum call_kind { CALL_TOKEN, CALL_SET, CALL_CHECK, CALL_LIST };

struct call;
typedef void (*resp_fn)(struct call *c, const struct dw_http_resp *r);

/* One public operation (or the shared token fetch); it runs one HTTP request at a time. */
struct call {
    struct call *prev, *next;
    struct dw_genesys *g;
    enum call_kind kind;
    dw_genesys_cb cb;
    dw_genesys_list_cb list_cb;
    void *data;
    char *tb_id;      /* trunk base id; for a list, the collection listed */
    char *tb_esc;
    bool wanted;

    /* the current request */
    const char *method;
    char *url;
    char *body;
    char label[160]; /* "GET trunkbasesettings/tbB": short, for details and logs */
    resp_fn on_resp;
    int retries;
    int auth_retried;
    uint64_t token_gen; /* token the request was sent with */

    int waiting_token;
    int queued;         /* ready to send, waiting for a slot or the server's window */
    uint64_t queue_seq; /* FIFO order within its class */
    int held;           /* this request was held by the server's rate headers (counted once) */
    int in_flight;
    int finished;
    int releasing;
    int logged; /* the failure was already logged with more context */
    char fail_detail[G_DETAIL_MAX]; /* set when a result is reported from the timer */
    enum dw_gresult soon_result;
    struct dw_fence fence;          /* writes only */
    uv_timer_t timer;

    int puts;
    long version_read;
    int page, n_trunks, n_ok;
    char first_bad[DW_GPARSE_FIRST_BAD_MAX];

    unsigned sent;   /* API requests this call has sent */
    cJSON *listed;   /* list: entities gathered so far */
};

struct dw_genesys {
    uv_loop_t *loop;
    struct dw_curlm *curlm;
    char *api;
    char *login;
    char *client_id;
    char *secret;
    unsigned timeout_ms;
    double backoff_scale;
    char *token;
    uint64_t token_expiry; /* uv_now() ms */
    uint64_t token_gen;
    struct call *token_call;
    struct call *calls;
    int n_calls; /* until their timers have closed */
    int closing;
    struct dw_genesys_stats stats;
    /* token bucket of rate_budget_per_min (0 = no pacing) */
    unsigned per_min;
    double tokens, burst;
    uint64_t refilled_at; /* uv_now() */
    /* requests in flight (the token request aside) and the queue of those ready to go */
    unsigned max_in_flight;
    unsigned in_flight;
    uint64_t queue_seq;
    /* the server's window as its last answer's inin-ratelimit-* headers told it */
    long srv_allowed, srv_count; /* srv_allowed < 0: no headers seen yet */
    uint64_t srv_reset_at;       /* uv_now() when that window resets */
    uint64_t srv_block_until;    /* uv_now(): after a 429, nothing goes before its Retry-After */
    uv_timer_t pump_timer;       /* wakes the queue when a hold ends */
    int pump_inited, pump_closed;
};

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static char *strip_slash_dup(const char *s)
{
    char *d = strdup(s);
    if (d != NULL) {
        size_t n = strlen(d);
        while (n > 0 && d[n - 1] == '/')
            d[--n] = '\0';
    }
    return d;
}

static char *url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1);
    char *o = out;

    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- call lifetime ---- */

static void genesys_maybe_free(struct dw_genesys *g);

static void on_pump_closed(uv_handle_t *h)
{
    struct dw_genesys *g = h->data;

    g->pump_closed = 1;
    genesys_maybe_free(g);
}

static void genesys_maybe_free(struct dw_genesys *g)
{
    if (!g->closing || g->n_calls > 0)
        return;
    if (g->pump_inited && !g->pump_closed) {
        if (!uv_is_closing((uv_handle_t *)&g->pump_timer))
            uv_close((uv_handle_t *)&g->pump_timer, on_pump_closed);
        return;
    }
    free(g->api);
    free(g->login);
    free(g->client_id);
    wipe_free(g->secret);
    wipe_free(g->token);
    free(g);
}

static void on_call_closed(uv_handle_t *h)
{
    struct call *c = h->data;
    struct dw_genesys *g = c->g;

    free(c->tb_id);
    free(c->tb_esc);
    free(c->url);
    free(c->body);
    cJSON_Delete(c->listed);
    free(c);
    g->n_calls--;
    genesys_maybe_free(g);
}

static void call_release(struct call *c)
{
    struct dw_genesys *g = c->g;

    if (!c->finished || c->in_flight || c->releasing)
        return;
    c->releasing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

static struct call *call_new(struct dw_genesys *g, enum call_kind kind, dw_genesys_cb cb,
                             void *data)
{
    struct call *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    c->g = g;
    c->kind = kind;
    c->cb = cb;
    c->data = data;
    uv_timer_init(g->loop, &c->timer);
    c->timer.data = c;
    c->next = g->calls;
    if (g->calls)
        g->calls->prev = c;
    g->calls = c;
    g->n_calls++;
    return c;
}

static void token_call_done(struct dw_genesys *g, enum dw_gresult result, const char *detail);

/* Reports the result once; the memory goes after the request in flight (if any) returns. */
static void call_finish(struct call *c, enum dw_gresult result, const char *detail)
{
    if (c->finished)
        return;
    c->finished = 1;
    c->waiting_token = 0;
    c->queued = 0;
    uv_timer_stop(&c->timer);
    /* a waiter's "token: ..." failure was logged once by the token request itself */
    if ((result == DW_G_FAIL || result == DW_G_TRANSIENT) && !c->g->closing && !c->logged &&
        strncmp(detail, "token: ", 7) != 0)
        dw_log(DW_LOG_WARN, "genesys", "%s", detail);
    if (c->kind == CALL_TOKEN) {
        token_call_done(c->g, result, detail);
    } else if (c->kind == CALL_LIST) {
        cJSON *list = NULL;
        if (result == DW_G_OK) {
            list = c->listed;
            c->listed = NULL;
        }
        c->list_cb(c->data, result, list, c->sent, detail);
    } else if (c->cb)
        c->cb(c->data, result, detail);
    call_release(c);
}

static void call_endf(struct call *c, enum dw_gresult result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_endf(struct call *c, enum dw_gresult result, const char *fmt, ...)
{
    char detail[G_DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    call_finish(c, result, detail);
}

#define call_failf(c, ...) call_endf(c, DW_G_FAIL, __VA_ARGS__)
/* retries exhausted on an error that may pass (429, 502/503/504, transport) */
#define call_transientf(c, ...) call_endf(c, DW_G_TRANSIENT, __VA_ARGS__)

static void on_fail_timer(uv_timer_t *t)
{
    struct call *c = t->data;

    call_finish(c, c->soon_result, c->fail_detail);
}

/* Reporting from the next loop turn keeps callbacks out of the caller's stack. */
static void call_end_soon(struct call *c, enum dw_gresult result, const char *detail)
{
    snprintf(c->fail_detail, sizeof c->fail_detail, "%s", detail);
    c->soon_result = result;
    uv_timer_start(&c->timer, on_fail_timer, 0, 0);
}

static void call_fail_soon(struct call *c, const char *detail)
{
    call_end_soon(c, DW_G_FAIL, detail);
}

/* The last check before a write's request leaves: whatever path led here (first request, retry
 * timer, 409 re-read, a token that just arrived), a token that is no longer valid stops it. */
static int fence_holds(struct call *c)
{
    char why[160] = "";
    char d[G_DETAIL_MAX];

    if (c->kind != CALL_SET)
        return 1;
    if (c->fence.valid != NULL && c->fence.valid(c->fence.data, &c->fence, why, sizeof why))
        return 1;
    c->g->stats.fenced++;
    snprintf(d, sizeof d, "%.64s not sent: fencing token (term %" PRIu64 ", op %" PRId64
             ", step %d) no longer valid: %.64s", c->label, c->fence.term, c->fence.op,
             c->fence.seq, why[0] ? why : "refused");
    dw_log(DW_LOG_WARN, "genesys", "%s", d);
    c->logged = 1;
    call_end_soon(c, DW_G_FENCED, d);
    return 0;
}

/* ---- requests with auth and retries ---- */

static void call_send(struct call *c);
static void token_fetch_start(struct dw_genesys *g);
static void pump(struct dw_genesys *g);
static void call_issue(struct call *c);
static void srv_update(struct dw_genesys *g, const struct dw_http_resp *r);
static void srv_block(struct dw_genesys *g, unsigned ms);

static int token_valid(const struct dw_genesys *g)
{
    return g->token != NULL && uv_now(g->loop) + G_TOKEN_EARLY_MS < g->token_expiry;
}

static void drop_token(struct dw_genesys *g)
{
    wipe_free(g->token);
    g->token = NULL;
}

static void fail_status(struct call *c, const struct dw_http_resp *r)
{
    char err[224];

    dw_gparse_error_text(r->body, r->body_len, err, sizeof err);
    call_failf(c, "%s -> %ld%s", c->label, r->status, err);
}

/* Garbage from Genesys: counted and logged, never trusted. */
static void fail_bad(struct call *c, const struct dw_http_resp *r, const char *what)
{
    const char *path = c->url;
    const char *p = strstr(c->url, "://");

    if (p != NULL && (p = strchr(p + 3, '/')) != NULL)
        path = p;
    c->g->stats.bad_responses++;
    dw_log(DW_LOG_WARN, "genesys", "%s %s -> %ld: %s", c->method, path, r->status, what);
    c->logged = 1;
    call_failf(c, "%s -> %ld: %s", c->label, r->status, what);
}

static void on_retry_timer(uv_timer_t *t)
{
    call_send(t->data);
}

static void retry_later(struct call *c, unsigned base_ms, const char *why)
{
    double ms = (double)base_ms * c->g->backoff_scale;

    c->retries++;
    c->g->stats.retries++;
    /* During an outage every call retries: its first and last retry say enough, the metric
     * counts them all. */
    dw_log(c->retries == 1 || c->retries == G_MAX_RETRIES ? DW_LOG_WARN : DW_LOG_DEBUG, "genesys",
           "%s %s, retry %d/%d in %.0f ms", c->label, why, c->retries, G_MAX_RETRIES, ms);
    uv_timer_start(&c->timer, on_retry_timer, ms < 0 ? 0 : (uint64_t)ms, 0);
}

static unsigned backoff_ms(int retries)
{
    return retries == 0 ? 3000 : retries == 1 ? 9000 : 27000;
}

static void on_http_answer(struct call *c, const struct dw_http_resp *r)
{
    struct dw_genesys *g = c->g;
    char why[G_DETAIL_MAX];

    if (c->finished) {
        call_release(c);
        return;
    }
    if (r->truncated) {
        fail_bad(c, r, "response too large");
        return;
    }
    if (r->curl_code != CURLE_OK) {
        if (r->curl_code == CURLE_ABORTED_BY_CALLBACK) {
            call_failf(c, "%s: HTTP client closed", c->label);
            return;
        }
        g->stats.transport_errors++;
        if (c->retries >= G_MAX_RETRIES) {
            call_transientf(c, "%s: %s (after %d retries)", c->label, r->error, c->retries);
            return;
        }
        snprintf(why, sizeof why, "failed: %s", r->error);
        retry_later(c, backoff_ms(c->retries), why);
        return;
    }
    dw_log(DW_LOG_DEBUG, "genesys", "%s -> %ld (%.0f ms)", c->label, r->status, r->total_ms);

    /* responses_4xx counts every 4xx but 429, which has its own counter */
    long st = r->status;
    if (st == 429) {
        g->stats.responses_429++;
        int ra = r->retry_after_s < 0 ? G_RETRY_AFTER_DEFAULT_S : r->retry_after_s;
        if (ra > G_RETRY_AFTER_MAX_S) {
            call_transientf(c, "%s -> 429, Retry-After %d s is above %d s", c->label, ra,
                            G_RETRY_AFTER_MAX_S);
            return;
        }
        srv_block(g, (unsigned)ra * 1000u);
        if (c->retries >= G_MAX_RETRIES) {
            call_transientf(c, "%s -> 429 (after %d retries)", c->label, c->retries);
            return;
        }
        retry_later(c, (unsigned)ra * 1000u, "-> 429");
        return;
    }
    if (st >= 500) {
        g->stats.responses_5xx++;
        if (st == 502 || st == 503 || st == 504) {
            if (c->retries >= G_MAX_RETRIES) {
                call_transientf(c, "%s -> %ld (after %d retries)", c->label, st, c->retries);
                return;
            }
            snprintf(why, sizeof why, "-> %ld", st);
            retry_later(c, backoff_ms(c->retries), why);
            return;
        }
    } else if (st >= 400) {
        g->stats.responses_4xx++;
        if (st == 409)
            g->stats.conflicts_409++;
        if (st == 401 && c->kind != CALL_TOKEN && !c->auth_retried) {
            c->auth_retried = 1;
            /* Another call may have replaced the token already: drop only the one refused. */
            if (g->token_gen == c->token_gen)
                drop_token(g);
            dw_log(DW_LOG_INFO, "genesys", "%s -> 401, fetching a new token", c->label);
            call_send(c);
            return;
        }
    }
    c->on_resp(c, r);
}

static void on_http(const struct dw_http_resp *r, void *data)
{
    struct call *c = data;
    struct dw_genesys *g = c->g;

    c->in_flight = 0;
    if (c->kind != CALL_TOKEN) {
        g->in_flight--;
        srv_update(g, r);
    }
    on_http_answer(c, r);
    /* after the answer: the call's next request (the PUT after its GET) queues before the
     * slot is handed on, so a poll never slips in between. g outlives a close in a callback
     * (it goes with the last call's handle). */
    pump(g);
}

/* ---- pacing ---- */

static void pace_refill(struct dw_genesys *g)
{
    uint64_t now = uv_now(g->loop);
    g->tokens += (double)(now - g->refilled_at) * g->per_min / 60000.0;
    if (g->tokens > g->burst)
        g->tokens = g->burst;
    g->refilled_at = now;
}

/* Every request takes a token; only list requests wait for one (call_send), so the cloud
 * poller yields to a failover instead of delaying it. The debt is bounded by one burst. */
static void pace_take(struct dw_genesys *g)
{
    if (g->per_min == 0)
        return;
    pace_refill(g);
    g->tokens -= 1.0;
    if (g->tokens < -g->burst)
        g->tokens = -g->burst;
}

/* ms until a list request may go, 0 = now */
static uint64_t pace_wait_ms(struct dw_genesys *g)
{
    if (g->per_min == 0)
        return 0;
    pace_refill(g);
    if (g->tokens >= 1.0)
        return 0;
    return (uint64_t)((1.0 - g->tokens) * 60000.0 / g->per_min) + 1;
}

/* ---- scheduling: bounded concurrency and the server's rate window ---- */

/* Genesys counts every request of the OAuth client in a window (inin-ratelimit-allowed per
 * window, -count used, -reset seconds left) and answers 429 beyond it. The local bucket above
 * cannot see the other requests: the server's headers can, so each answer updates the view and
 * the queue holds requests back when the window is nearly spent, operations keeping a small
 * reserve and polls a quarter of the window, so polls never eat what a failover needs. */
static long srv_reserve(const struct dw_genesys *g, const struct call *c)
{
    if (c->kind == CALL_LIST)
        return g->srv_allowed / 4 > 2 ? g->srv_allowed / 4 : 2;
    return g->srv_allowed / 100 + 2;
}

static void srv_update(struct dw_genesys *g, const struct dw_http_resp *r)
{
    if (r->curl_code != CURLE_OK || r->rl_allowed <= 0 || r->rl_count < 0 || r->rl_reset_s < 0)
        return;
    g->srv_allowed = r->rl_allowed;
    g->srv_count = r->rl_count;
    /* a reset further off than any Retry-After drwatch would wait for is not believed */
    long reset = r->rl_reset_s < G_RETRY_AFTER_MAX_S ? r->rl_reset_s : G_RETRY_AFTER_MAX_S;
    g->srv_reset_at = uv_now(g->loop) + (uint64_t)reset * 1000u;
}

/* A 429 means the window is spent whatever the headers said: nothing goes before its
 * Retry-After (scaled like the retry itself). */
static void srv_block(struct dw_genesys *g, unsigned ms)
{
    double d = (double)ms * g->backoff_scale;
    uint64_t until = uv_now(g->loop) + (d < 0 ? 0 : (uint64_t)d);

    if (until > g->srv_block_until)
        g->srv_block_until = until;
}

/* 0 when c may be sent now; otherwise 1 with *wait_ms until the hold ends (0: until an answer
 * arrives, which pumps the queue again). */
static int srv_holds(struct dw_genesys *g, struct call *c, uint64_t *wait_ms)
{
    uint64_t now = uv_now(g->loop);

    *wait_ms = 0;
    if (now < g->srv_block_until) {
        *wait_ms = g->srv_block_until - now;
    } else if (g->srv_allowed < 0) {
        return 0;
    } else if (now >= g->srv_reset_at) {
        /* The window reset, as far as the last answer knew; whether all of it is free (a fixed
         * window) or only part (a sliding one), the next answer tells: one request at a time
         * until then. */
        if (g->in_flight == 0)
            return 0;
    } else if (g->srv_allowed - g->srv_count - (long)g->in_flight > srv_reserve(g, c)) {
        return 0;
    } else {
        *wait_ms = g->srv_reset_at - now + 1;
    }
    if (!c->held) {
        c->held = 1;
        g->stats.server_held++;
    }
    return 1;
}

static void queue_push(struct call *c)
{
    c->queued = 1;
    c->queue_seq = ++c->g->queue_seq;
}

/* Operations (writes, trunk checks) before polls; first come first within each. */
static struct call *queue_next(struct dw_genesys *g)
{
    struct call *best = NULL;

    for (struct call *c = g->calls; c != NULL; c = c->next) {
        if (!c->queued || c->finished)
            continue;
        if (best == NULL || (best->kind == CALL_LIST && c->kind != CALL_LIST) ||
            ((best->kind == CALL_LIST) == (c->kind == CALL_LIST) && c->queue_seq < best->queue_seq))
            best = c;
    }
    return best;
}

static void on_pump_timer(uv_timer_t *t)
{
    pump(t->data);
}

/* Sends queued requests while a slot is free and the server's window allows; the first request
 * that must wait stops the queue (nothing overtakes it), and the timer or the next answer
 * starts it again. call_issue checks a write's fence, so one parked here is checked when it
 * finally goes. Never runs a callback itself. */
static void pump(struct dw_genesys *g)
{
    uint64_t wait;

    if (g->closing || !g->pump_inited)
        return;
    uv_timer_stop(&g->pump_timer);
    while (g->in_flight < g->max_in_flight) {
        struct call *c = queue_next(g);
        if (c == NULL)
            return;
        if (srv_holds(g, c, &wait)) {
            if (wait > 0)
                uv_timer_start(&g->pump_timer, on_pump_timer, wait, 0);
            return;
        }
        c->queued = 0;
        call_issue(c);
    }
}

static void call_issue(struct call *c)
{
    struct dw_genesys *g = c->g;
    char *auth = NULL;
    char fence[128];
    const char *headers[5];
    int n = 0;

    if (!fence_holds(c))
        return;
    headers[n++] = "Accept: application/json";
    if (c->kind == CALL_SET) {
        snprintf(fence, sizeof fence, "X-Drwatch-Fence: node=%" PRIu64 " term=%" PRIu64
                 " op=%" PRId64 " step=%d", c->fence.node, c->fence.term, c->fence.op, c->fence.seq);
        headers[n++] = fence;
    }
    if (c->kind == CALL_TOKEN) {
        headers[n++] = "Content-Type: application/x-www-form-urlencoded";
    } else {
        if (c->body)
            headers[n++] = "Content-Type: application/json";
        if (asprintf(&auth, "Authorization: Bearer %s", g->token) < 0) {
            call_fail_soon(c, "out of memory");
            return;
        }
        headers[n++] = auth;
        c->token_gen = g->token_gen;
    }
    headers[n] = NULL;

    struct dw_http_opts o;
    memset(&o, 0, sizeof o);
    o.method = c->method;
    o.url = c->url;
    o.headers = headers;
    o.body = c->body;
    o.body_len = c->body ? strlen(c->body) : 0;
    o.timeout_ms = g->timeout_ms;
    o.max_body = G_MAX_BODY;
    if (c->kind == CALL_TOKEN) {
        o.basic_user = g->client_id;
        o.basic_password = g->secret;
    }
    int rc = dw_http_request(g->curlm, &o, on_http, c);
    wipe_free(auth);
    if (rc == 0)
        pace_take(g);
    if (rc != 0) {
        char d[G_DETAIL_MAX];
        snprintf(d, sizeof d, "%s: cannot start the request", c->label);
        call_fail_soon(c, d);
        return;
    }
    c->in_flight = 1;
    g->stats.requests++;
    if (c->kind != CALL_TOKEN) {
        c->sent++;
        if (++g->in_flight > g->stats.in_flight_peak)
            g->stats.in_flight_peak = g->in_flight;
    }
}

static void call_send(struct call *c)
{
    struct dw_genesys *g = c->g;

    if (g->closing) {
        call_finish(c, DW_G_FAIL, "client closed");
        return;
    }
    if (c->kind != CALL_TOKEN && !token_valid(g)) {
        /* A dead write fetches no token; call_issue checks again when one arrives. */
        if (!fence_holds(c))
            return;
        /* Every call waiting for a token shares one token request. */
        c->waiting_token = 1;
        token_fetch_start(g);
        return;
    }
    uint64_t wait = c->kind == CALL_LIST ? pace_wait_ms(g) : 0;
    if (wait > 0) {
        g->stats.paced++;
        uv_timer_start(&c->timer, on_retry_timer, wait, 0);
        return;
    }
    if (c->kind == CALL_TOKEN) {
        call_issue(c);
        return;
    }
    queue_push(c);
    pump(g);
}

/* Starts the next request of call c; its retry budget and 401 retry start afresh. */
static void call_request(struct call *c, const char *method, const char *url, const char *label,
                         char *body, resp_fn on_resp)
{
    free(c->url);
    free(c->body);
    c->url = strdup(url);
    c->body = body;
    c->method = method;
    snprintf(c->label, sizeof c->label, "%s %s", method, label);
    c->on_resp = on_resp;
    c->retries = 0;
    c->auth_retried = 0;
    c->held = 0;
    if (c->url == NULL) {
        call_fail_soon(c, "out of memory");
        return;
    }
    call_send(c);
}

static void call_api(struct call *c, const char *method, const char *rel, char *body,
                     resp_fn on_resp)
{
    char *url = NULL;

    if (asprintf(&url, "%s" G_PFX "/%s", c->g->api, rel) < 0) {
        free(body);
        call_fail_soon(c, "out of memory");
        return;
    }
    call_request(c, method, url, rel, body, on_resp);
    free(url);
}

/* ---- token ---- */

static struct call *first_waiter(struct dw_genesys *g)
{
    for (struct call *c = g->calls; c != NULL; c = c->next)
        if (c->waiting_token && !c->finished)
            return c;
    return NULL;
}

static void token_call_done(struct dw_genesys *g, enum dw_gresult result, const char *detail)
{
    char d[G_DETAIL_MAX];
    struct call *c;

    g->token_call = NULL;
    if (result == DW_G_OK) {
        /* A waiter's callback may start calls or close the client: re-scan each time. */
        while (!g->closing && (c = first_waiter(g)) != NULL) {
            c->waiting_token = 0;
            queue_push(c);
        }
        pump(g);
        return;
    }
    snprintf(d, sizeof d, "%s%s", g->closing ? "" : "token: ", detail);
    while ((c = first_waiter(g)) != NULL)
        call_finish(c, result, d);
}

static void on_token(struct call *c, const struct dw_http_resp *r)
{
    struct dw_genesys *g = c->g;

    if (r->status != 200) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    char *t;
    long long ttl;
    enum dw_gparse_rc rc = dw_gparse_token(r->body, r->body_len, &t, &ttl, why, sizeof why);
    if (rc == DW_GPARSE_NOMEM) {
        call_failf(c, "out of memory");
        return;
    }
    if (rc != DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    drop_token(g);
    g->token = t;
    g->token_gen++;
    g->token_expiry = uv_now(g->loop) + (uint64_t)ttl * 1000u;
    dw_log(DW_LOG_INFO, "genesys", "token obtained, expires in %lld s", ttl);
    call_finish(c, DW_G_OK, "token");
}

static void token_fetch_start(struct dw_genesys *g)
{
    char *url = NULL;

    if (g->token_call != NULL)
        return;
    struct call *c = call_new(g, CALL_TOKEN, NULL, NULL);
    if (c == NULL || asprintf(&url, "%s/oauth/token", g->login) < 0) {
        struct call *w;
        if (c != NULL) {
            c->finished = 1;
            call_release(c);
        }
        while ((w = first_waiter(g)) != NULL) {
            w->waiting_token = 0;
            call_fail_soon(w, "token: out of memory");
        }
        return;
    }
    g->token_call = c;
    g->stats.token_fetches++;
    call_request(c, "POST", url, "oauth/token", strdup("grant_type=client_credentials"),
                 on_token);
    free(url);
}

/* ---- set_trunk_base_enabled ---- */

static void set_get(struct call *c);

static void on_set_put(struct call *c, const struct dw_http_resp *r)
{
    if (r->status == 409) {
        if (c->puts >= G_MAX_PUTS) {
            call_failf(c, "%s -> 409 after %d attempts", c->label, c->puts);
            return;
        }
        dw_log(DW_LOG_INFO, "genesys", "%s -> 409 (version %ld is stale), reading again",
               c->label, c->version_read);
        set_get(c);
        return;
    }
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    long long v;
    if (dw_gparse_put_answer(r->body, r->body_len, &v, why, sizeof why) != DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    char ver[32] = "?";
    if (v >= 0)
        snprintf(ver, sizeof ver, "%lld", v);

    char d[G_DETAIL_MAX];
    snprintf(d, sizeof d, "PUT trunkbasesettings/%s trunk_enabled=%s -> %ld (version %ld->%s)",
             c->tb_id, c->wanted ? "true" : "false", r->status, c->version_read, ver);
    dw_log(DW_LOG_INFO, "genesys", "%s", d);
    call_finish(c, DW_G_OK, d);
}

static void on_set_get(struct call *c, const struct dw_http_resp *r)
{
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    struct dw_gparse_settings set;
    if (dw_gparse_settings(r->body, r->body_len, c->wanted, &set, why, sizeof why) !=
        DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    c->version_read = (long)set.version;
    if (set.put_body == NULL) {
        char d[G_DETAIL_MAX];
        snprintf(d, sizeof d, "trunkbasesettings/%s trunk_enabled already %s, version %ld",
                 c->tb_id, c->wanted ? "true" : "false", c->version_read);
        call_finish(c, DW_G_UNCHANGED, d);
        return;
    }
    char rel[DW_ID_MAX * 3 + 32];
    snprintf(rel, sizeof rel, "trunkbasesettings/%s", c->tb_esc);
    c->puts++;
    call_api(c, "PUT", rel, set.put_body, on_set_put);
}

static void set_get(struct call *c)
{
    char rel[DW_ID_MAX * 3 + 32];

    snprintf(rel, sizeof rel, "trunkbasesettings/%s", c->tb_esc);
    call_api(c, "GET", rel, NULL, on_set_get);
}

/* ---- check_trunks ---- */

static void check_page(struct call *c);

static void on_check_page(struct call *c, const struct dw_http_resp *r)
{
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    struct dw_gparse_trunks p;
    if (dw_gparse_trunks_page(r->body, r->body_len, &p, why, sizeof why) != DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    c->n_trunks += p.n_trunks;
    c->n_ok += p.n_ok;
    if (c->first_bad[0] == '\0')
        memcpy(c->first_bad, p.first_bad, sizeof c->first_bad);
    long long page_count = p.page_count;
    if (c->page < page_count && c->page < G_MAX_PAGES) {
        c->page++;
        check_page(c);
        return;
    }

    char d[G_DETAIL_MAX];
    if (c->n_trunks == 0) {
        snprintf(d, sizeof d, "trunk base %s has no trunks", c->tb_id);
        call_finish(c, DW_G_NOT_YET, d);
    } else if (c->n_ok == c->n_trunks) {
        snprintf(d, sizeof d, "%d/%d trunks of %s in service and connected", c->n_ok,
                 c->n_trunks, c->tb_id);
        call_finish(c, DW_G_OK, d);
    } else {
        snprintf(d, sizeof d, "%d/%d trunks of %s in service and connected (%s)", c->n_ok,
                 c->n_trunks, c->tb_id, c->first_bad);
        call_finish(c, DW_G_NOT_YET, d);
    }
}

static void check_page(struct call *c)
{
    char rel[DW_ID_MAX * 3 + 96];

    if (c->page > 1)
        snprintf(rel, sizeof rel, "trunks?trunkBase.id=%s&pageSize=100&pageNumber=%d", c->tb_esc,
                 c->page);
    else
        snprintf(rel, sizeof rel, "trunks?trunkBase.id=%s&pageSize=100", c->tb_esc);
    call_api(c, "GET", rel, NULL, on_check_page);
}

/* ---- list ---- */

static void list_page(struct call *c);

static void on_list_page(struct call *c, const struct dw_http_resp *r)
{
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    cJSON *ents;
    long long page_count;
    if (dw_gparse_list_page(r->body, r->body_len, &ents, &page_count, why, sizeof why) !=
        DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    /* move the page's entities over instead of copying them */
    cJSON *e;
    while ((e = cJSON_DetachItemFromArray(ents, 0)) != NULL)
        cJSON_AddItemToArray(c->listed, e);
    cJSON_Delete(ents);
    if (page_count > G_LIST_MAX_PAGES) {
        fail_bad(c, r, "more pages than drwatch reads");
        return;
    }
    if (c->page < page_count) {
        c->page++;
        list_page(c);
        return;
    }
    char d[G_DETAIL_MAX];
    snprintf(d, sizeof d, "%s: %d entities in %d pages", c->tb_id,
             cJSON_GetArraySize(c->listed), c->page);
    call_finish(c, DW_G_OK, d);
}

static void list_page(struct call *c)
{
    /* The Edge list is the prefix itself, ".../providers/edges?pageSize=": there is no
     * .../edges/edges. The label, "edges?pageSize=...", still reads as the URL's tail. */
    const char *sub = strcmp(c->tb_id, "edges") == 0 ? "" : c->tb_id;
    char query[48], label[64];
    char *url = NULL;

    snprintf(query, sizeof query, "?pageSize=100&pageNumber=%d", c->page);
    snprintf(label, sizeof label, "%s%s", c->tb_id, query);
    if (asprintf(&url, "%s" G_PFX "%s%s%s", c->g->api, sub[0] ? "/" : "", sub, query) < 0) {
        call_fail_soon(c, "out of memory");
        return;
    }
    call_request(c, "GET", url, label, NULL, on_list_page);
    free(url);
}

/* ---- public ---- */

void dw_genesys_set_policy(struct dw_genesys *g, const struct dw_genesys_cfg *cfg)
{
    g->timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : 10000;
    g->per_min = cfg->rate_budget_per_min;
    g->max_in_flight = cfg->max_concurrent_requests ? cfg->max_concurrent_requests
                                                    : G_MAX_IN_FLIGHT_DEFAULT;
    /* ten seconds of budget may go at once: one poll cycle's pages, or a failover's calls */
    g->burst = g->per_min >= 6 ? g->per_min / 6.0 : 1.0;
    if (g->tokens > g->burst)
        g->tokens = g->burst;
    pump(g); /* more slots may be free now */
}

int dw_genesys_init(struct dw_genesys **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_genesys_cfg *cfg, const char *client_secret,
                    char *errmsg, size_t errlen)
{
    *out = NULL;
    if (cfg->api_base_url[0] == '\0' || cfg->login_base_url[0] == '\0') {
        snprintf(errmsg, errlen, "genesys: api_base_url and login_base_url are required");
        return -1;
    }
    struct dw_genesys *g = calloc(1, sizeof *g);
    if (g == NULL)
        goto err_oom;
    g->loop = loop;
    g->curlm = curlm;
    g->backoff_scale = 1.0;
    g->srv_allowed = -1;
    dw_genesys_set_policy(g, cfg);
    g->tokens = g->burst;
    g->refilled_at = uv_now(loop);
    g->api = strip_slash_dup(cfg->api_base_url);
    g->login = strip_slash_dup(cfg->login_base_url);
    g->client_id = strdup(cfg->client_id);
    g->secret = strdup(client_secret ? client_secret : "");
    if (!g->api || !g->login || !g->client_id || !g->secret)
        goto err_oom;

    const char *env = getenv("DRWATCH_GENESYS_BACKOFF_SCALE");
    if (env != NULL && env[0] != '\0') {
        char *end;
        double s = strtod(env, &end);
        if (*end != '\0' || !(s >= 0.0 && s <= 100.0)) {
            snprintf(errmsg, errlen, "DRWATCH_GENESYS_BACKOFF_SCALE: not a number in [0, 100]");
            g->closing = 1;
            genesys_maybe_free(g);
            return -1;
        }
        g->backoff_scale = s;
    }
    uv_timer_init(loop, &g->pump_timer);
    g->pump_timer.data = g;
    g->pump_inited = 1;
    *out = g;
    return 0;

err_oom:
    snprintf(errmsg, errlen, "genesys: out of memory");
    if (g != NULL) {
        g->closing = 1;
        genesys_maybe_free(g);
    }
    return -1;
}

void dw_genesys_close(struct dw_genesys *g)
{
    struct call *c;

    if (g == NULL || g->closing)
        return;
    g->closing = 1;
    for (;;) {
        for (c = g->calls; c != NULL; c = c->next)
            if (!c->finished && c->kind != CALL_TOKEN)
                break;
        if (c == NULL)
            break;
        call_finish(c, DW_G_FAIL, "client closed");
    }
    if (g->token_call != NULL)
        call_finish(g->token_call, DW_G_FAIL, "client closed");
    genesys_maybe_free(g);
}

void dw_genesys_cancel_writes(struct dw_genesys *g, const char *why)
{
    struct call *c;
    char d[G_DETAIL_MAX];

    if (g == NULL)
        return;
    /* a callback may start or end calls: scan again after each */
    for (;;) {
        for (c = g->calls; c != NULL; c = c->next)
            if (!c->finished && c->kind == CALL_SET)
                break;
        if (c == NULL)
            return;
        /* route and Edge writes name their call by its path (a '/' in it) */
        snprintf(d, sizeof d, "%s%.100s: cancelled: %.100s",
                 strchr(c->tb_id, '/') ? "" : "trunkbasesettings/", c->tb_id, why);
        g->stats.fenced++;
        dw_log(DW_LOG_WARN, "genesys", "%s", d);
        c->logged = 1;
        call_finish(c, DW_G_FENCED, d);
    }
}

void dw_genesys_set_backoff_scale(struct dw_genesys *g, double scale)
{
    if (g != NULL && scale >= 0.0)
        g->backoff_scale = scale;
}

static struct call *start_call(struct dw_genesys *g, enum call_kind kind, const char *tb_id,
                               dw_genesys_cb cb, void *data)
{
    if (g == NULL || g->closing || tb_id == NULL || tb_id[0] == '\0' || cb == NULL)
        return NULL;
    struct call *c = call_new(g, kind, cb, data);
    if (c == NULL)
        return NULL;
    c->tb_id = strdup(tb_id);
    c->tb_esc = url_escape(tb_id);
    if (c->tb_id == NULL || c->tb_esc == NULL) {
        c->finished = 1;
        call_release(c);
        return NULL;
    }
    return c;
}

int dw_genesys_set_trunk_base_enabled(struct dw_genesys *g, const char *trunk_base_id,
                                      bool enabled, const struct dw_fence *fence,
                                      dw_genesys_cb cb, void *data)
{
    if (fence == NULL || fence->valid == NULL)
        return -1;
    struct call *c = start_call(g, CALL_SET, trunk_base_id, cb, data);

    if (c == NULL)
        return -1;
    c->fence = *fence;
    c->wanted = enabled;
    set_get(c);
    return 0;
}

int dw_genesys_check_trunks(struct dw_genesys *g, const char *trunk_base_id,
                            dw_genesys_cb cb, void *data)
{
    struct call *c = start_call(g, CALL_CHECK, trunk_base_id, cb, data);

    if (c == NULL)
        return -1;
    c->page = 1;
    check_page(c);
    return 0;
}

int dw_genesys_list(struct dw_genesys *g, const char *what, dw_genesys_list_cb cb, void *data)
{
    /* only the read-only collections the cloud signal needs */
    if (what == NULL || cb == NULL || (strcmp(what, "edges") != 0 && strcmp(what, "trunks") != 0))
        return -1;
    if (g == NULL || g->closing)
        return -1;
    struct call *c = call_new(g, CALL_LIST, NULL, data);
    if (c == NULL)
        return -1;
    c->list_cb = cb;
    c->tb_id = strdup(what);
    c->listed = cJSON_CreateArray();
    if (c->tb_id == NULL || c->listed == NULL) {
        c->finished = 1;
        call_release(c);
        return -1;
    }
    c->page = 1;
    list_page(c);
    return 0;
}

void dw_genesys_stats(const struct dw_genesys *g, struct dw_genesys_stats *out)
{
    if (g == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = g->stats;
    out->in_flight = g->in_flight;
    out->ratelimit_allowed = g->srv_allowed;
    out->ratelimit_remaining = g->srv_allowed < 0 ? -1 : g->srv_allowed - g->srv_count;
}

/* ---- actions: switch with read back, outbound routes, Edge service (docs/config.md) ----
 * Each is one fenced write (kind CALL_SET: the fence header, the check before every request and
 * dw_genesys_cancel_writes apply as to a trunk base switch): read, skip when already so, write
 * with what was read, read back. Kept here at the end of the file, apart from the scheduler. */

#include "drwatch/actions.h"

enum act_kind { ACT_TRUNK_BASE, ACT_ROUTE, ACT_EDGE };

/* The caller's side of an action; its calls carry it as their data. */
struct act {
    enum act_kind kind;
    struct dw_genesys *g;
    dw_genesys_cb cb;
    void *data;
    struct dw_fence fence;
    bool wanted;                         /* on, activate, in service */
    enum dw_route_mode mode;
    int n_tbs;
    char tbs[DW_MAX_TRUNK_BASES][DW_ID_MAX];
    unsigned wait_s;
    char rel[6 * DW_ID_MAX + 32];        /* what is read: escaped path under G_PFX */
    char what[2 * DW_ID_MAX + 32];       /* "route gs1/r1", "Edge e1": for details */
    int writes;                          /* writes accepted: the next read is the read back */
    int puts;                            /* PUT attempts, bounded like a trunk base's */
    long long version;
    char did[G_DETAIL_MAX];              /* what the write did, reported with its read back */
};

/* Every call of an action ends here, once. */
static void act_done(void *data, enum dw_gresult result, const char *detail)
{
    struct act *x = data;
    x->cb(x->data, result, detail);
    free(x);
}

static struct act *act_new(struct dw_genesys *g, enum act_kind kind, bool wanted,
                           const struct dw_fence *fence, dw_genesys_cb cb, void *data)
{
    if (g == NULL || g->closing || fence == NULL || fence->valid == NULL || cb == NULL)
        return NULL;
    struct act *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->kind = kind;
    x->g = g;
    x->cb = cb;
    x->data = data;
    x->fence = *fence;
    x->wanted = wanted;
    return x;
}

/* A fenced call of x named name (a path: dw_genesys_cancel_writes reports it as it is). */
static struct call *act_call(struct act *x, const char *name)
{
    struct call *c = start_call(x->g, CALL_SET, name, act_done, x);
    if (c != NULL) {
        c->fence = x->fence;
        c->wanted = x->wanted;
    }
    return c;
}

/* ---- trunk base: switch, then read back ---- */

static void on_tb_readback(struct call *c, const struct dw_http_resp *r)
{
    struct act *x = c->data;
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    struct dw_gparse_settings set;
    if (dw_gparse_settings(r->body, r->body_len, x->wanted, &set, why, sizeof why) !=
        DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    const char *want = x->wanted ? "true" : "false";
    if (set.put_body != NULL) {
        free(set.put_body);
        call_failf(c, "%.160s; read back: trunkbasesettings/%s trunk_enabled is not %s",
                   x->did, x->tbs[0], want);
        return;
    }
    call_endf(c, DW_G_OK, "%.180s; read back: trunk_enabled %s", x->did, want);
}

static void tb_switched(void *data, enum dw_gresult result, const char *detail)
{
    struct act *x = data;
    struct call *c;
    char rel[DW_ID_MAX * 3 + 32];

    if (result != DW_G_OK) {
        act_done(x, result, detail); /* unchanged (just read), or failed */
        return;
    }
    snprintf(x->did, sizeof x->did, "%s", detail);
    char *esc = url_escape(x->tbs[0]);
    if (esc == NULL || (c = act_call(x, x->tbs[0])) == NULL) {
        free(esc);
        act_done(x, DW_G_FAIL, x->g->closing ? "client closed"
                                             : "cannot start the read back: out of memory");
        return;
    }
    snprintf(rel, sizeof rel, "trunkbasesettings/%s", esc);
    free(esc);
    call_api(c, "GET", rel, NULL, on_tb_readback);
}

int dw_genesys_switch_trunk_base(struct dw_genesys *g, const char *trunk_base_id, bool enabled,
                                 const struct dw_fence *fence, dw_genesys_cb cb, void *data)
{
    if (trunk_base_id == NULL || strlen(trunk_base_id) >= DW_ID_MAX)
        return -1;
    struct act *x = act_new(g, ACT_TRUNK_BASE, enabled, fence, cb, data);
    if (x == NULL)
        return -1;
    snprintf(x->tbs[0], sizeof x->tbs[0], "%s", trunk_base_id);
    if (dw_genesys_set_trunk_base_enabled(g, trunk_base_id, enabled, fence, tb_switched, x) != 0) {
        free(x);
        return -1;
    }
    return 0;
}

/* ---- outbound route ---- */

static void route_get(struct call *c);

static const char *route_change_text(const struct act *x)
{
    if (x->mode == DW_ROUTE_ENABLED)
        return x->wanted ? "enabled=true" : "enabled=false";
    return "trunk bases first";
}

static void on_route_put(struct call *c, const struct dw_http_resp *r)
{
    struct act *x = c->data;
    if (r->status == 409) {
        if (x->puts >= G_MAX_PUTS) {
            call_failf(c, "%s -> 409 after %d attempts", c->label, x->puts);
            return;
        }
        dw_log(DW_LOG_INFO, "genesys", "%s -> 409 (version %lld is stale), reading again",
               c->label, x->version);
        route_get(c);
        return;
    }
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX];
    long long v;
    if (dw_gparse_put_answer(r->body, r->body_len, &v, why, sizeof why) != DW_GPARSE_OK) {
        fail_bad(c, r, why);
        return;
    }
    x->writes++;
    snprintf(x->did, sizeof x->did, "PUT %.140s %s -> %ld (version %lld->%lld)", x->what,
             route_change_text(x), r->status, x->version, v);
    dw_log(DW_LOG_INFO, "genesys", "%s", x->did);
    route_get(c); /* the read back */
}

static void on_route_get(struct call *c, const struct dw_http_resp *r)
{
    struct act *x = c->data;
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX], *put;
    enum dw_change_rc rc = dw_route_change(r->body, r->body_len, x->mode, x->wanted,
                                           (const char (*)[DW_ID_MAX])x->tbs, x->n_tbs, &put,
                                           &x->version, why, sizeof why);
    if (rc == DW_CHANGE_BAD) {
        fail_bad(c, r, why);
        return;
    }
    if (rc != DW_CHANGE_OK) {
        call_failf(c, "%s: %s", x->what, why);
        return;
    }
    if (put == NULL && x->writes > 0) {
        call_endf(c, DW_G_OK, "%.200s; read back ok", x->did);
    } else if (put == NULL) {
        call_endf(c, DW_G_UNCHANGED, "%s already %s, version %lld", x->what,
                  x->mode == DW_ROUTE_ORDER && !x->wanted ? "left as it is"
                                                          : route_change_text(x),
                  x->version);
    } else if (x->writes > 0) {
        free(put);
        call_failf(c, "%.180s; read back: %s is not %s", x->did, x->what, route_change_text(x));
    } else {
        x->puts++;
        call_api(c, "PUT", x->rel, put, on_route_put);
    }
}

static void route_get(struct call *c)
{
    struct act *x = c->data;
    call_api(c, "GET", x->rel, NULL, on_route_get);
}

int dw_genesys_set_route(struct dw_genesys *g, const char *site_id, const char *route_id,
                         enum dw_route_mode mode, bool activate, const char (*tbs)[DW_ID_MAX],
                         int n_tbs, const struct dw_fence *fence, dw_genesys_cb cb, void *data)
{
    if (site_id == NULL || route_id == NULL || !site_id[0] || !route_id[0] ||
        strlen(site_id) >= DW_ID_MAX || strlen(route_id) >= DW_ID_MAX || n_tbs < 0 ||
        n_tbs > DW_MAX_TRUNK_BASES || (n_tbs > 0 && tbs == NULL))
        return -1;
    struct act *x = act_new(g, ACT_ROUTE, activate, fence, cb, data);
    char *s_esc = url_escape(site_id), *r_esc = url_escape(route_id);
    struct call *c = NULL;
    if (x != NULL && s_esc != NULL && r_esc != NULL) {
        x->mode = mode;
        x->n_tbs = n_tbs;
        for (int i = 0; i < n_tbs; i++)
            snprintf(x->tbs[i], sizeof x->tbs[i], "%s", tbs[i]);
        snprintf(x->rel, sizeof x->rel, "sites/%s/outboundroutes/%s", s_esc, r_esc);
        snprintf(x->what, sizeof x->what, "route %s/%s", site_id, route_id);
        c = act_call(x, x->rel);
    }
    free(s_esc);
    free(r_esc);
    if (c == NULL) {
        free(x);
        return -1;
    }
    route_get(c);
    return 0;
}

/* ---- Edge service ---- */

static void edge_get(struct call *c);

static void on_edge_post(struct call *c, const struct dw_http_resp *r)
{
    struct act *x = c->data;
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    x->writes++;
    if (x->wanted)
        snprintf(x->did, sizeof x->did, "POST %.100s/statuscode inService=true -> %ld", x->rel,
                 r->status);
    else
        snprintf(x->did, sizeof x->did, "POST %.100s/statuscode inService=false drain %u s "
                 "-> %ld", x->rel, x->wait_s, r->status);
    dw_log(DW_LOG_INFO, "genesys", "%s", x->did);
    edge_get(c); /* the read back */
}

static void on_edge_get(struct call *c, const struct dw_http_resp *r)
{
    struct act *x = c->data;
    if (r->status < 200 || r->status > 299) {
        fail_status(c, r);
        return;
    }
    char why[DW_GPARSE_WHY_MAX], state[40];
    bool in;
    if (dw_edge_service(r->body, r->body_len, &in, state, sizeof state, why, sizeof why) !=
        DW_CHANGE_OK) {
        fail_bad(c, r, why);
        return;
    }
    if (in == x->wanted && x->writes > 0) {
        call_endf(c, DW_G_OK, "%.180s; read back: callDrainingState %s", x->did, state);
    } else if (in == x->wanted && in) {
        call_endf(c, DW_G_UNCHANGED, "%s already in service", x->what);
    } else if (in == x->wanted) {
        call_endf(c, DW_G_UNCHANGED, "%s already out of service (callDrainingState %s)", x->what,
                  state);
    } else if (x->writes > 0) {
        call_failf(c, "%.160s; read back: %s still reads callDrainingState %s", x->did, x->what,
                   state);
    } else {
        char *body = dw_edge_statuscode_body(x->wanted, x->wait_s);
        char rel[sizeof x->rel + 16];
        if (body == NULL) {
            call_failf(c, "out of memory");
            return;
        }
        snprintf(rel, sizeof rel, "%s/statuscode", x->rel);
        call_api(c, "POST", rel, body, on_edge_post);
    }
}

static void edge_get(struct call *c)
{
    struct act *x = c->data;
    call_api(c, "GET", x->rel, NULL, on_edge_get);
}

int dw_genesys_set_edge_service(struct dw_genesys *g, const char *edge_id, bool in_service,
                                unsigned drain_wait_s, const struct dw_fence *fence,
                                dw_genesys_cb cb, void *data)
{
    if (edge_id == NULL || !edge_id[0] || strlen(edge_id) >= DW_ID_MAX)
        return -1;
    struct act *x = act_new(g, ACT_EDGE, in_service, fence, cb, data);
    char *esc = url_escape(edge_id);
    struct call *c = NULL;
    char name[sizeof x->rel + 16];
    if (x != NULL && esc != NULL) {
        x->wait_s = drain_wait_s;
        snprintf(x->rel, sizeof x->rel, "%s", esc);
        snprintf(x->what, sizeof x->what, "Edge %s", edge_id);
        snprintf(name, sizeof name, "%s/statuscode", esc);
        c = act_call(x, name);
    }
    free(esc);
    if (c == NULL) {
        free(x);
        return -1;
    }
    edge_get(c);
    return 0;
}

int dw_genesys_set_secret(struct dw_genesys *g, const char *secret)
{
    if (g == NULL || secret == NULL || strcmp(g->secret, secret) == 0)
        return 0;
    char *copy = strdup(secret);
    if (copy == NULL)
        return -1;
    wipe_free(g->secret);
    g->secret = copy; /* the token in hand stays valid; the next one is asked for with this */
    return 1;
}
