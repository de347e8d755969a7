#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "drwatch/detector.h"
#include "drwatch/log.h"
#include "drwatch/probe.h"
#include "drwatch/sip.h"

/* A health body is a few bytes; body_match looks no further than this. */
#define PROBE_MAX_BODY (64 * 1024)

struct site_st;
struct edge_st;

/* Per TCP probe, allocated once: the handle is re-initialised for every run. */
struct tcp_run {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_timer_t tmo;
    struct sockaddr_in addr;
    int status; /* connect result of the current run */
    int timed_out;
};

struct probe {
    struct dw_prober *p;
    struct edge_st *e;
    int idx;
    enum dw_probe_kind kind;
    unsigned timeout_ms;
    const char *target; /* in the arena */
    uv_timer_t timer;
    uint64_t due;              /* loop time the timer should fire */
    uint64_t started;          /* loop time the current run began */
    unsigned started_late : 1; /* the current run began late: its failure is no evidence */
    struct dw_detector det;
    uint64_t bad;
    unsigned in_flight : 1;
    unsigned warned_bad : 1;   /* a bad response was logged since the last state change */
    unsigned warned_start : 1; /* a failure to start was logged since the last success */
    /* http */
    struct dw_http_opts opts;  /* strings in the arena */
    struct dw_http_job *job;
    const char *body_match;    /* NULL = no check */
    int n_expect;
    int expect[DW_MAX_CODES];
    /* tcp */
    struct tcp_run *tcp;
    /* sip: dw_sip_probe needs the spec for the whole run */
    struct dw_probe_spec *sip;
    char last_error[96];
};

struct edge_st {
    struct site_st *s;
    int site, edge;
    char id[DW_ID_MAX];
    int n_probes;
    struct probe *probes;
};

struct site_st {
    char id[DW_ID_MAX];
    enum dw_site_rule rule;
    int at_least;
    enum dw_health verdict;
    int n_edges;
    struct edge_st *edges;
    enum dw_health *states; /* per Edge, passed as is to dw_site_verdict */
};

/* A CA file read once at start, shared by every HTTPS probe that names it. */
struct ca_pem {
    struct ca_pem *next;
    char *pem;
    size_t len;
    char path[];
};

struct dw_prober {
    struct ca_pem *cas;
    uv_loop_t *loop;
    struct dw_curlm *curlm;
    struct dw_sip *sip;
    struct dw_probe_cfg cfg;
    const struct dw_config *src; /* the caller keeps it alive: dw_prober_start_from reads it */
    dw_site_change_cb cb;
    void *data;
    int n_sites, n_edges, n_probes;
    struct site_st *sites;
    struct edge_st *edges;
    struct probe *probes;
    enum dw_health *states;
    char *arena; /* every string the probes point to */
    struct dw_probe_stats stats;
    uint64_t rng;
    int open_handles; /* libuv handles not yet closed */
    int in_flight;    /* sip probes whose callback has not run */
    int closing;
    /* overload: runs that start late mean the loop cannot keep the schedule */
    uint64_t win_start;
    unsigned win_runs, win_late;
    unsigned calm_windows;
    bool overloaded;
    char overload_why[128];
    dw_overload_cb on_overload;
    void *overload_data;
};

/* The clock libuv's timers run on (loop time is this, cached per turn). */
static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* How late a run may start before it counts as late: the loop's normal jitter is a few ms. */
static uint64_t late_ms(const struct dw_prober *p)
{
    uint64_t q = p->cfg.interval_ms / 4;
    return q > DW_PROBE_LATE_MIN_MS ? q : DW_PROBE_LATE_MIN_MS;
}

/* Judged once per window of at least DW_PROBE_OVERLOAD_WINDOW_MS and DW_PROBE_OVERLOAD_MIN_RUNS
 * runs: a late share of 20% or more is overload; three windows under 2% end it. */
static void overload_account(struct dw_prober *p, uint64_t now, bool late)
{
    p->win_runs++;
    p->win_late += late;
    if (p->win_start == 0)
        p->win_start = now;
    if (now - p->win_start < DW_PROBE_OVERLOAD_WINDOW_MS || p->win_runs < DW_PROBE_OVERLOAD_MIN_RUNS)
        return;
    unsigned runs = p->win_runs, lates = p->win_late;
    uint64_t span = now - p->win_start;
    p->win_start = now;
    p->win_runs = p->win_late = 0;
    if (lates * 5 >= runs) {
        p->calm_windows = 0;
        snprintf(p->overload_why, sizeof p->overload_why, "probe overload: %u of %u runs in "
                 "%.1f s started over %llu ms late (%.0f runs/s)", lates, runs, span / 1000.0,
                 (unsigned long long)late_ms(p), runs * 1000.0 / (double)span);
        if (!p->overloaded) {
            p->overloaded = true;
            p->stats.overloads++;
            dw_log(DW_LOG_WARN, "probe", "%s: this node cannot keep its probe schedule; failed "
                   "runs are not counted until it can (reduce Edges or probes per node, or raise "
                   "probe.interval_ms)", p->overload_why);
        }
        /* every overloaded window, so an abstention built on it keeps being extended */
        if (p->on_overload)
            p->on_overload(p->overload_data, p->overload_why);
    } else if (p->overloaded && lates * 50 < runs && ++p->calm_windows >= 3) {
        p->overloaded = false;
        p->calm_windows = 0;
        dw_log(DW_LOG_INFO, "probe", "probe schedule kept again (%u of %u runs late)", lates, runs);
    }
}

static uint64_t rng_next(struct dw_prober *p)
{
    /* xorshift64*: jitter only needs to differ between processes, not to be unpredictable */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 0x2545F4914F6CDD1DULL;
}

static double rng_unit(struct dw_prober *p)
{
    return (double)(rng_next(p) >> 11) / (double)(1ULL << 53);
}

static const char *kind_name(enum dw_probe_kind k)
{
    return k == DW_PROBE_SIP ? "sip" : k == DW_PROBE_TCP ? "tcp" : "http";
}

static void prober_free(struct dw_prober *p)
{
    for (int i = 0; i < p->n_probes; i++) {
        dw_http_job_free(p->probes[i].job);
        free(p->probes[i].tcp);
        free(p->probes[i].sip);
    }
    free(p->probes);
    free(p->edges);
    free(p->states);
    free(p->sites);
    free(p->arena);
    while (p->cas) {
        struct ca_pem *c = p->cas;
        p->cas = c->next;
        free(c->pem);
        free(c);
    }
    free(p);
}

static void prober_maybe_free(struct dw_prober *p)
{
    if (p->closing && p->open_handles == 0 && p->in_flight == 0)
        prober_free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct probe *pr = h->data;
    struct dw_prober *p = pr->p;

    p->open_handles--;
    prober_maybe_free(p);
}

/* ---- verdicts ---- */

static void site_recompute(struct dw_prober *p, struct site_st *s)
{
    enum dw_health v = dw_site_verdict(s->states, s->n_edges, s->rule, s->at_least);
    if (v == s->verdict)
        return;
    enum dw_health old = s->verdict;
    s->verdict = v;
    dw_log_kv(DW_LOG_INFO, "probe",
              DW_LOG_FIELDS(DW_LS("site", s->id), DW_LS("from", dw_health_name(old)),
                            DW_LS("to", dw_health_name(v))),
              "site %s local verdict %s -> %s", s->id, dw_health_name(old), dw_health_name(v));
    if (p->cb)
        p->cb(p->data, (int)(s - p->sites), old, v);
}

/* Returns the Edge's new state when it changed, else -1. An Edge is UP while any probe is. */
static int edge_recompute(struct edge_st *e)
{
    enum dw_health st[DW_MAX_PROBES];

    for (int i = 0; i < e->n_probes; i++)
        st[i] = e->probes[i].det.state;
    enum dw_health v = dw_site_local_verdict(st, e->n_probes);
    if (v == e->s->states[e->edge])
        return -1;
    e->s->states[e->edge] = v;
    return (int)v;
}

/* One finished run: ok, or a failure described in pr->last_error. */
static void probe_result(struct probe *pr, int ok, int bad)
{
    struct dw_prober *p = pr->p;
    struct edge_st *e = pr->e;

    p->stats.probes++;
    if (ok) {
        pr->last_error[0] = '\0';
    } else {
        p->stats.failures++;
    }
    if (bad) {
        pr->bad++;
        p->stats.errors_bad_response++;
        if (!pr->warned_bad) {
            pr->warned_bad = 1;
            dw_log_kv(DW_LOG_WARN, "probe",
                      DW_LOG_FIELDS(DW_LS("site", e->s->id), DW_LS("edge", e->id)),
                      "edge %s (%s) %s probe %s: %s", e->id, e->s->id, kind_name(pr->kind),
                      pr->target, pr->last_error);
        }
    }
    /* A failure while the loop cannot keep up (the run began late, its answer was handled long
     * after its timeout, or the prober is overloaded) says more about this node than about the
     * Edge: it is counted but moves nothing. A success is evidence whatever the load. */
    uint64_t took = mono_ms() - pr->started;
    if (!ok && (pr->started_late || p->overloaded || took > pr->timeout_ms + late_ms(p))) {
        p->stats.overload_discarded++;
        return;
    }
    if (!dw_detector_feed(&pr->det, ok != 0))
        return;
    pr->warned_bad = 0;
    int edge_now = edge_recompute(e);
    char suffix[48] = "";
    if (edge_now >= 0)
        snprintf(suffix, sizeof suffix, "; edge %s", dw_health_name((enum dw_health)edge_now));
    if (pr->det.state == DW_DOWN)
        dw_log_kv(DW_LOG_INFO, "probe",
                  DW_LOG_FIELDS(DW_LS("site", e->s->id), DW_LS("edge", e->id)),
                  "edge %s (%s) %s probe %s down after %u failures: %s%s", e->id, e->s->id,
                  kind_name(pr->kind), pr->target, pr->det.consecutive_fail, pr->last_error,
                  suffix);
    else
        dw_log_kv(DW_LOG_INFO, "probe",
                  DW_LOG_FIELDS(DW_LS("site", e->s->id), DW_LS("edge", e->id)),
                  "edge %s (%s) %s probe %s up after %u successes%s", e->id, e->s->id,
                  kind_name(pr->kind), pr->target, pr->det.consecutive_ok, suffix);
    if (edge_now >= 0)
        site_recompute(p, e->s);
}

static void start_failed(struct probe *pr, const char *why)
{
    if (pr->warned_start)
        return;
    pr->warned_start = 1;
    dw_log(DW_LOG_ERROR, "probe", "edge %s (%s) %s probe %s: cannot start: %s", pr->e->id,
           pr->e->s->id, kind_name(pr->kind), pr->target, why);
}

/* ---- http ---- */

static int is_bad_response(CURLcode c)
{
    switch (c) {
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL: /* HTTP/0.9-looking garbage */
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int status_ok(const struct probe *pr, long status)
{
    if (pr->n_expect == 0)
        return status >= 200 && status < 300;
    for (int i = 0; i < pr->n_expect; i++)
        if (pr->expect[i] == status)
            return 1;
    return 0;
}

static void on_http_done(const struct dw_http_resp *r, void *data)
{
    struct probe *pr = data;
    int ok = 0, bad = 0;

    pr->in_flight = 0;
    if (pr->p->closing)
        return;
    if (r->curl_code == CURLE_ABORTED_BY_CALLBACK && !r->truncated)
        return; /* the HTTP client is shutting down: not evidence about the Edge */

    /* A body over the limit still came from a live server: judge what was read. */
    if (r->curl_code == CURLE_OK || r->truncated) {
        if (!status_ok(pr, r->status))
            snprintf(pr->last_error, sizeof pr->last_error, "HTTP %ld", r->status);
        else if (pr->body_match && memmem(r->body, r->body_len, pr->body_match,
                                          strlen(pr->body_match)) == NULL)
            snprintf(pr->last_error, sizeof pr->last_error, "HTTP %ld, body does not match",
                     r->status);
        else
            ok = 1;
    } else {
        bad = is_bad_response(r->curl_code);
        snprintf(pr->last_error, sizeof pr->last_error, "%s%s", bad ? "bad response: " : "",
                 r->error ? r->error : curl_easy_strerror(r->curl_code));
    }
    probe_result(pr, ok, bad);
}

static void run_http(struct probe *pr)
{
    if (dw_http_job_run(pr->p->curlm, pr->job, on_http_done, pr) != 0) {
        start_failed(pr, "HTTP client refused the request");
        return;
    }
    pr->warned_start = 0;
    pr->in_flight = 1;
}

/* ---- tcp ---- */

static void on_tcp_closed(uv_handle_t *h)
{
    struct probe *pr = h->data;
    struct dw_prober *p = pr->p;
    struct tcp_run *t = pr->tcp;

    p->open_handles--;
    pr->in_flight = 0;
    if (p->closing) {
        prober_maybe_free(p);
        return;
    }
    if (t->timed_out)
        snprintf(pr->last_error, sizeof pr->last_error, "connect: timeout after %u ms",
                 pr->timeout_ms);
    else if (t->status != 0)
        snprintf(pr->last_error, sizeof pr->last_error, "connect: %s", uv_strerror(t->status));
    probe_result(pr, !t->timed_out && t->status == 0, 0);
}

static void tcp_finish(struct probe *pr)
{
    uv_timer_stop(&pr->tcp->tmo);
    if (!uv_is_closing((uv_handle_t *)&pr->tcp->tcp))
        uv_close((uv_handle_t *)&pr->tcp->tcp, on_tcp_closed);
}

static void on_tcp_connect(uv_connect_t *req, int status)
{
    struct probe *pr = req->data;

    if (!pr->tcp->timed_out)
        pr->tcp->status = status;
    tcp_finish(pr);
}

static void on_tcp_timeout(uv_timer_t *t)
{
    struct probe *pr = t->data;

    pr->tcp->timed_out = 1;
    tcp_finish(pr); /* the connect callback then runs with UV_ECANCELED */
}

static void run_tcp(struct probe *pr)
{
    struct dw_prober *p = pr->p;
    struct tcp_run *t = pr->tcp;

    if (uv_tcp_init(p->loop, &t->tcp) != 0) {
        start_failed(pr, "uv_tcp_init");
        return;
    }
    t->tcp.data = pr;
    t->req.data = pr;
    t->status = 0;
    t->timed_out = 0;
    p->open_handles++;
    pr->in_flight = 1;
    pr->warned_start = 0;
    int rc = uv_tcp_connect(&t->req, &t->tcp, (const struct sockaddr *)&t->addr, on_tcp_connect);
    if (rc != 0) {
        /* e.g. no route: evidence as good as a refused connection */
        t->status = rc;
        uv_close((uv_handle_t *)&t->tcp, on_tcp_closed);
        return;
    }
    uv_timer_start(&t->tmo, on_tcp_timeout, pr->timeout_ms, 0);
}

/* ---- sip ---- */

static void on_sip_done(void *data, bool ok, int code, const char *detail)
{
    struct probe *pr = data;
    struct dw_prober *p = pr->p;

    (void)code;
    pr->in_flight = 0;
    p->in_flight--;
    if (p->closing) {
        prober_maybe_free(p);
        return;
    }
    if (!ok)
        snprintf(pr->last_error, sizeof pr->last_error, "%s", detail ? detail : "failed");
    probe_result(pr, ok, 0);
}

static void run_sip(struct probe *pr)
{
    struct dw_prober *p = pr->p;

    /* Counted before the call: a synchronous callback would otherwise underflow it. */
    pr->in_flight = 1;
    p->in_flight++;
    if (dw_sip_probe(p->sip, pr->sip, on_sip_done, pr) != 0) {
        pr->in_flight = 0;
        p->in_flight--;
        start_failed(pr, "SIP client refused the request");
        return;
    }
    pr->warned_start = 0;
}

/* ---- scheduling ---- */

static void on_probe_timer(uv_timer_t *t);

static void schedule(struct probe *pr, int first)
{
    struct dw_prober *p = pr->p;
    double iv = (double)p->cfg.interval_ms;
    /* spread the first runs over a whole interval, then ±10% so probes never fall into step */
    double delay = first ? iv * rng_unit(p) : iv * (0.9 + 0.2 * rng_unit(p));
    /* Counted from when the timer fired, not from when the run was due: on a saturated loop the
     * rate then backs off a little instead of piling up runs that time out (measured at 10,000
     * targets: catching up gave 75,797 failed runs and 5,425 false Edge DOWNs, this none). */

    pr->due = uv_now(p->loop) + (uint64_t)delay;
    uv_timer_start(&pr->timer, on_probe_timer, (uint64_t)delay, 0);
}

static void on_probe_timer(uv_timer_t *t)
{
    struct probe *pr = t->data;
    struct dw_prober *p = pr->p;

    if (p->closing)
        return;
    /* the real time, not the loop's cached one: a callback that ran long before this one in the
     * same loop turn made this run late too */
    uint64_t now = mono_ms();
    bool late = now > pr->due + late_ms(p);
    p->stats.late_runs += late;
    schedule(pr, 0);
    /* One run per probe at a time: a slow Edge must not pile up connections. */
    /* a skip is not lateness: a black-holed Edge whose timeout is the interval skips every
     * other run, and a dead site must not read as overload */
    overload_account(p, now, late);
    if (pr->in_flight) {
        p->stats.skipped_busy++;
        return;
    }
    pr->started = now;
    pr->started_late = late;
    switch (pr->kind) {
    case DW_PROBE_HTTP:
        run_http(pr);
        break;
    case DW_PROBE_TCP:
        run_tcp(pr);
        break;
    case DW_PROBE_SIP:
        run_sip(pr);
        break;
    }
}

/* ---- set-up ---- */

/* Copies s into the arena; "" gives NULL. With *cur NULL only counts into *need. */
static const char *arena_put(char **cur, size_t *need, const char *s)
{
    size_t n = strlen(s);

    if (n == 0)
        return NULL;
    *need += n + 1;
    if (*cur == NULL)
        return NULL;
    char *out = *cur;
    memcpy(out, s, n + 1);
    *cur += n + 1;
    return out;
}

/* The strings of one spec; called once to count, once to copy. */
static void spec_strings(struct probe *pr, const struct dw_probe_spec *sp, char **cur,
                         size_t *need)
{
    if (sp->kind == DW_PROBE_HTTP) {
        pr->opts.url = arena_put(cur, need, sp->url);
        pr->target = pr->opts.url;
        pr->body_match = arena_put(cur, need, sp->body_match);
        pr->opts.ca_file = arena_put(cur, need, sp->ca_file);
        pr->opts.client_cert = arena_put(cur, need, sp->client_cert);
        pr->opts.client_key = arena_put(cur, need, sp->client_key);
    } else {
        pr->target = arena_put(cur, need, sp->address);
    }
}

/* An Edge given only a health_url (configs built in code) gets the parser's default probe. */
static const struct dw_probe_spec *edge_specs(const struct dw_edge *ce, struct dw_probe_spec *tmp,
                                              int *n)
{
    if (ce->n_probes > 0) {
        *n = ce->n_probes > DW_MAX_PROBES ? DW_MAX_PROBES : ce->n_probes;
        return ce->probes;
    }
    *n = 0;
    if (ce->health_url[0] == '\0')
        return ce->probes;
    memset(tmp, 0, sizeof *tmp);
    tmp->kind = DW_PROBE_HTTP;
    tmp->verify_tls = true;
    snprintf(tmp->url, sizeof tmp->url, "%s", ce->health_url);
    *n = 1;
    return tmp;
}

/* The CA file's PEM, read and checked for a certificate the first time a probe names it. */
static const struct ca_pem *ca_load(struct dw_prober *p, const char *path, char errmsg[static 160])
{
    struct ca_pem *c;
    FILE *fp;
    long n;

    for (c = p->cas; c; c = c->next)
        if (strcmp(c->path, path) == 0)
            return c;
    snprintf(errmsg, 160, "cannot load CA file %.100s", path);
    if ((fp = fopen(path, "rb")) == NULL)
        return NULL;
    c = calloc(1, sizeof *c + strlen(path) + 1);
    n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (c == NULL || n <= 0 || n > (16L << 20) || fseek(fp, 0, SEEK_SET) != 0 ||
        (c->pem = malloc((size_t)n)) == NULL || fread(c->pem, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        if (c)
            free(c->pem);
        free(c);
        return NULL;
    }
    fclose(fp);
    c->len = (size_t)n;
    BIO *bio = BIO_new_mem_buf(c->pem, (int)n);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    bool has_cert = x != NULL;
    X509_free(x);
    BIO_free(bio);
    if (!has_cert) {
        snprintf(errmsg, 160, "cannot load CA file %.100s: no PEM certificate in it", path);
        free(c->pem);
        free(c);
        return NULL;
    }
    strcpy(c->path, path);
    c->next = p->cas;
    p->cas = c;
    return c;
}

static int probe_init(struct dw_prober *p, struct probe *pr, const struct dw_probe_spec *sp,
                      char errmsg[static 160])
{
    pr->p = p;
    pr->kind = sp->kind;
    pr->timeout_ms = sp->timeout_ms ? sp->timeout_ms : p->cfg.timeout_ms;
    if (pr->timeout_ms > p->cfg.interval_ms)
        pr->timeout_ms = p->cfg.interval_ms; /* keeps one run in flight per probe */
    dw_detector_init(&pr->det, p->cfg.fail_threshold, p->cfg.recover_threshold);
    if (pr->target == NULL) {
        snprintf(errmsg, 160, "no %s", sp->kind == DW_PROBE_HTTP ? "url" : "address");
        return -1;
    }
    switch (sp->kind) {
    case DW_PROBE_HTTP:
        pr->opts.method = "GET";
        pr->opts.timeout_ms = pr->timeout_ms;
        pr->opts.max_body = PROBE_MAX_BODY;
        /* thousands may be in flight when Edges are slow: small buffers, small peak memory */
        pr->opts.recv_buffer = 4096;
        pr->opts.fresh_connect = 1;
        pr->opts.direct = 1; /* a proxy would answer for an Edge it cannot reach */
        pr->opts.tls_no_verify = !sp->verify_tls;
        pr->n_expect = sp->n_expect_status < 0 ? 0
                       : sp->n_expect_status > DW_MAX_CODES ? DW_MAX_CODES
                                                            : sp->n_expect_status;
        memcpy(pr->expect, sp->expect_status, sizeof pr->expect);
        if (pr->opts.ca_file && pr->opts.ca_file[0] && sp->verify_tls) {
            const struct ca_pem *c = ca_load(p, pr->opts.ca_file, errmsg);
            if (c == NULL)
                return -1;
            pr->opts.ca_pem = c->pem;
            pr->opts.ca_pem_len = c->len;
        }
        if (dw_http_job_new(&pr->job, &pr->opts) != 0) {
            snprintf(errmsg, 160, "cannot set up the HTTP request");
            return -1;
        }
        return 0;
    case DW_PROBE_TCP: {
        char host[DW_ADDR_MAX];
        snprintf(host, sizeof host, "%s", pr->target);
        char *colon = strrchr(host, ':');
        int port = colon ? atoi(colon + 1) : 0;
        if (colon)
            *colon = '\0';
        pr->tcp = calloc(1, sizeof *pr->tcp);
        if (pr->tcp == NULL)
            return -1;
        if (port <= 0 || port > 65535 || uv_ip4_addr(host, port, &pr->tcp->addr) != 0) {
            snprintf(errmsg, 160, "bad address %s", pr->target);
            return -1;
        }
        return 0;
    }
    case DW_PROBE_SIP:
        pr->sip = malloc(sizeof *pr->sip);
        if (pr->sip == NULL)
            return -1;
        *pr->sip = *sp;
        pr->sip->timeout_ms = pr->timeout_ms;
        if (p->sip == NULL) {
            char err[128] = "";
            if (dw_sip_init(&p->sip, p->loop, NULL, err, sizeof err) != 0) {
                snprintf(errmsg, 160, "SIP client: %s", err);
                return -1;
            }
        }
        if (dw_sip_prepare(p->sip, pr->sip, errmsg, 160) != 0)
            return -1;
        return 0;
    }
    snprintf(errmsg, 160, "unknown probe kind %d", (int)sp->kind);
    return -1;
}

static int prober_build(struct dw_prober *p, const struct dw_config *cfg)
{
    struct dw_probe_spec tmp;
    int n_edges = 0, n_probes = 0, n;
    size_t need = 0;
    char *cur = NULL;

    for (int s = 0; s < cfg->n_sites; s++) {
        n_edges += cfg->sites[s].n_edges;
        for (int i = 0; i < cfg->sites[s].n_edges; i++) {
            const struct dw_probe_spec *sp = edge_specs(&cfg->sites[s].edges[i], &tmp, &n);
            n_probes += n;
            for (int k = 0; k < n; k++) {
                struct probe scratch;
                spec_strings(&scratch, &sp[k], &cur, &need);
            }
        }
    }
    p->sites = calloc((size_t)cfg->n_sites + 1, sizeof *p->sites);
    p->edges = calloc((size_t)n_edges + 1, sizeof *p->edges);
    p->states = calloc((size_t)n_edges + 1, sizeof *p->states);
    p->probes = calloc((size_t)n_probes + 1, sizeof *p->probes);
    p->arena = malloc(need + 1);
    if (!p->sites || !p->edges || !p->states || !p->probes || !p->arena)
        return -1;
    p->n_sites = cfg->n_sites;
    p->n_edges = n_edges;
    cur = p->arena;

    struct edge_st *e = p->edges;
    struct probe *pr = p->probes;
    enum dw_health *st = p->states;
    for (int s = 0; s < cfg->n_sites; s++) {
        const struct dw_site *cs = &cfg->sites[s];
        struct site_st *ss = &p->sites[s];
        snprintf(ss->id, sizeof ss->id, "%s", cs->id);
        ss->rule = cs->rule;
        ss->at_least = cs->at_least;
        ss->verdict = DW_UNKNOWN;
        ss->n_edges = cs->n_edges;
        ss->edges = e;
        ss->states = st;
        for (int i = 0; i < cs->n_edges; i++, e++, st++) {
            const struct dw_probe_spec *sp = edge_specs(&cs->edges[i], &tmp, &n);
            *st = DW_UNKNOWN;
            e->s = ss;
            e->site = s;
            e->edge = i;
            snprintf(e->id, sizeof e->id, "%s", cs->edges[i].id);
            e->probes = pr;
            for (int k = 0; k < n; k++, pr++) {
                char errmsg[160] = "out of memory";
                pr->e = e;
                pr->idx = k;
                spec_strings(pr, &sp[k], &cur, &need);
                /* counted now so the error path frees what this probe allocated */
                p->n_probes++;
                e->n_probes++;
                if (probe_init(p, pr, &sp[k], errmsg) != 0) {
                    dw_log(DW_LOG_ERROR, "probe", "edge %s (%s) probe %d: %s", e->id, ss->id, k,
                           errmsg);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* ---- carrying state over from a previous prober ---- */

/* Index of id among n ids stride bytes apart, trying hint first (a config change mostly keeps
 * the order); -1 when absent. */
static int index_of(const char *ids, size_t stride, int n, int hint, const char *id)
{
    if (hint < n && strcmp(ids + (size_t)hint * stride, id) == 0)
        return hint;
    for (int i = 0; i < n; i++)
        if (strcmp(ids + (size_t)i * stride, id) == 0)
            return i;
    return -1;
}

/* Only the first n codes mean anything; n is clamped as probe_init does. */
static bool codes_equal(int na, const int *a, int nb, const int *b)
{
    na = na < 0 ? 0 : na > DW_MAX_CODES ? DW_MAX_CODES : na;
    nb = nb < 0 ? 0 : nb > DW_MAX_CODES ? DW_MAX_CODES : nb;
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

/* Every field of struct dw_probe_spec: a field added there must be added here. */
static bool spec_equal(const struct dw_probe_spec *a, const struct dw_probe_spec *b)
{
    return a->kind == b->kind && a->timeout_ms == b->timeout_ms &&
           strcmp(a->url, b->url) == 0 &&
           codes_equal(a->n_expect_status, a->expect_status, b->n_expect_status,
                       b->expect_status) &&
           strcmp(a->body_match, b->body_match) == 0 && strcmp(a->ca_file, b->ca_file) == 0 &&
           strcmp(a->client_cert, b->client_cert) == 0 &&
           strcmp(a->client_key, b->client_key) == 0 && a->verify_tls == b->verify_tls &&
           strcmp(a->address, b->address) == 0 && a->transport == b->transport &&
           strcmp(a->request_uri, b->request_uri) == 0 &&
           strcmp(a->tls_server_name, b->tls_server_name) == 0 &&
           codes_equal(a->n_alive_codes, a->alive_codes, b->n_alive_codes, b->alive_codes);
}

static void probe_take(struct probe *pr, const struct probe *old)
{
    /* the new config's thresholds judge the carried counts from the next run on */
    unsigned fail = pr->det.fail_threshold, recover = pr->det.recover_threshold;

    pr->det = old->det;
    pr->det.fail_threshold = fail;
    pr->det.recover_threshold = recover;
    pr->bad = old->bad;
    pr->warned_bad = old->warned_bad;
    pr->warned_start = old->warned_start;
    memcpy(pr->last_error, old->last_error, sizeof pr->last_error);
    uint64_t due = uv_timer_get_due_in(&old->timer);
    /* past a shorter new interval the spread first run stands: all at once would be a burst */
    if (due <= pr->p->cfg.interval_ms) {
        pr->due = uv_now(pr->p->loop) + due;
        uv_timer_start(&pr->timer, on_probe_timer, due, 0);
    }
}

/* The probes of e (configured as ce) whose position and spec are those of prev's oe (oce). */
static void carry_edge(struct edge_st *e, const struct dw_edge *ce, const struct edge_st *oe,
                       const struct dw_edge *oce)
{
    struct dw_probe_spec tmp_new, tmp_old;
    int n_new, n_old;
    const struct dw_probe_spec *a = edge_specs(ce, &tmp_new, &n_new);
    const struct dw_probe_spec *b = edge_specs(oce, &tmp_old, &n_old);

    for (int k = 0; k < e->n_probes && k < oe->n_probes; k++)
        if (spec_equal(&a[k], &b[k]))
            probe_take(&e->probes[k], &oe->probes[k]);
    edge_recompute(e);
}

/* Takes over from prev its probes of the same site and Edge ids, and its verdict of each site
 * it knew, so that site_recompute then reports only real changes. */
static void carry_over(struct dw_prober *p, const struct dw_prober *prev)
{
    dw_prober_stats(prev, &p->stats); /* counters stay monotonic for metrics */
    for (int s = 0; s < p->n_sites; s++) {
        struct site_st *ss = &p->sites[s];
        int ps = index_of(prev->sites->id, sizeof *prev->sites, prev->n_sites, s, ss->id);
        if (ps < 0)
            continue;
        const struct site_st *os = &prev->sites[ps];
        ss->verdict = os->verdict;
        for (int i = 0; i < ss->n_edges; i++) {
            int pe = index_of(os->edges->id, sizeof *os->edges, os->n_edges, i, ss->edges[i].id);
            if (pe >= 0)
                carry_edge(&ss->edges[i], &p->src->sites[s].edges[i], &os->edges[pe],
                           &prev->src->sites[ps].edges[pe]);
        }
    }
}

int dw_prober_start(struct dw_prober **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_config *cfg, dw_site_change_cb cb, void *data)
{
    return dw_prober_start_from(out, loop, curlm, cfg, cb, data, NULL);
}

int dw_prober_start_from(struct dw_prober **out, uv_loop_t *loop, struct dw_curlm *curlm,
                         const struct dw_config *cfg, dw_site_change_cb cb, void *data,
                         const struct dw_prober *prev)
{
    *out = NULL;
    if (cfg->n_sites < 0 || cfg->n_sites > DW_MAX_SITES)
        return -1;
    /* the loop's clock stood still through a blocking start-up: runs scheduled from it would
     * all be due in the past, and read as overload */
    uv_update_time(loop);
    struct dw_prober *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    p->loop = loop;
    p->curlm = curlm;
    p->cfg = cfg->probe;
    p->src = cfg;
    if (p->cfg.interval_ms == 0)
        p->cfg.interval_ms = 1000;
    if (p->cfg.timeout_ms == 0 || p->cfg.timeout_ms > p->cfg.interval_ms)
        p->cfg.timeout_ms = p->cfg.interval_ms;
    p->cb = cb;
    p->data = data;
    p->rng = ((uint64_t)getpid() << 32) ^ uv_hrtime() ^ (uint64_t)(uintptr_t)p;
    if (p->rng == 0)
        p->rng = 0x9E3779B97F4A7C15ULL;
    if (prober_build(p, cfg) != 0) {
        /* no libuv handle is open yet: the SIP client is the only thing to close */
        dw_sip_close(p->sip);
        prober_free(p);
        return -1;
    }
    /* Handles last, so the error path above has none to close. */
    for (int i = 0; i < p->n_probes; i++) {
        struct probe *pr = &p->probes[i];
        uv_timer_init(loop, &pr->timer);
        pr->timer.data = pr;
        p->open_handles++;
        if (pr->tcp) {
            uv_timer_init(loop, &pr->tcp->tmo);
            pr->tcp->tmo.data = pr;
            p->open_handles++;
        }
        schedule(pr, 1);
    }
    if (prev)
        carry_over(p, prev);
    /* Set first: a callback may already look at the new prober. */
    *out = p;
    for (int s = 0; s < p->n_sites; s++)
        site_recompute(p, &p->sites[s]);
    return 0;
}

void dw_prober_close(struct dw_prober *p)
{
    if (p == NULL || p->closing)
        return;
    p->closing = 1;
    for (int i = 0; i < p->n_probes; i++) {
        struct probe *pr = &p->probes[i];
        uv_timer_stop(&pr->timer);
        uv_close((uv_handle_t *)&pr->timer, on_handle_closed);
        dw_http_job_free(pr->job); /* cancels a running transfer without its callback */
        pr->job = NULL;
        if (pr->tcp) {
            uv_timer_stop(&pr->tcp->tmo);
            uv_close((uv_handle_t *)&pr->tcp->tmo, on_handle_closed);
            if (pr->in_flight && !uv_is_closing((uv_handle_t *)&pr->tcp->tcp))
                uv_close((uv_handle_t *)&pr->tcp->tcp, on_tcp_closed);
        }
    }
    /* Its running probes call back ("closed") before this returns. */
    dw_sip_close(p->sip);
    p->sip = NULL;
    /* Memory stays until every handle has closed. */
    prober_maybe_free(p);
}

enum dw_health dw_prober_site(const struct dw_prober *p, int site)
{
    if (p == NULL || site < 0 || site >= p->n_sites)
        return DW_UNKNOWN;
    return p->sites[site].verdict;
}

static const struct edge_st *edge_at(const struct dw_prober *p, int site, int edge)
{
    if (p == NULL || site < 0 || site >= p->n_sites || edge < 0 ||
        edge >= p->sites[site].n_edges)
        return NULL;
    return &p->sites[site].edges[edge];
}

enum dw_health dw_prober_edge(const struct dw_prober *p, int site, int edge)
{
    const struct edge_st *e = edge_at(p, site, edge);
    return e ? e->s->states[edge] : DW_UNKNOWN;
}

int dw_prober_n_probes(const struct dw_prober *p, int site, int edge)
{
    const struct edge_st *e = edge_at(p, site, edge);
    return e ? e->n_probes : 0;
}

static const struct probe *probe_at(const struct dw_prober *p, int site, int edge, int probe)
{
    const struct edge_st *e = edge_at(p, site, edge);
    if (e == NULL || probe < 0 || probe >= e->n_probes)
        return NULL;
    return &e->probes[probe];
}

int dw_prober_probe_state(const struct dw_prober *p, int site, int edge, int probe,
                          enum dw_health *state, enum dw_probe_kind *kind, uint64_t *probes,
                          uint64_t *failures)
{
    const struct probe *pr = probe_at(p, site, edge, probe);
    if (pr == NULL)
        return -1;
    if (state)
        *state = pr->det.state;
    if (kind)
        *kind = pr->kind;
    if (probes)
        *probes = pr->det.probes;
    if (failures)
        *failures = pr->det.failures;
    return 0;
}

int dw_prober_probe_info(const struct dw_prober *p, int site, int edge, int probe,
                         struct dw_probe_info *out)
{
    const struct probe *pr = probe_at(p, site, edge, probe);
    if (pr == NULL)
        return -1;
    out->kind = pr->kind;
    out->state = pr->det.state;
    out->probes = pr->det.probes;
    out->failures = pr->det.failures;
    out->bad_responses = pr->bad;
    out->target = pr->target;
    out->last_error = pr->last_error;
    return 0;
}

void dw_prober_set_overload_cb(struct dw_prober *p, dw_overload_cb cb, void *data)
{
    p->on_overload = cb;
    p->overload_data = data;
}

bool dw_prober_overloaded(const struct dw_prober *p)
{
    return p->overloaded;
}

void dw_prober_stats(const struct dw_prober *p, struct dw_probe_stats *out)
{
    if (p == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = p->stats;
    if (p->sip) {
        struct dw_sip_stats ss;
        dw_sip_stats(p->sip, &ss);
        out->sip_malformed += ss.malformed;
        out->errors_bad_response += ss.malformed;
    }
}
