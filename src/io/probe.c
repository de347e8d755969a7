#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drwatch/detector.h"
#include "drwatch/log.h"
#include "drwatch/probe.h"

/* A health body is a few bytes; anything bigger is not worth reading. */
#define PROBE_MAX_BODY (64 * 1024)

struct edge_probe {
    struct dw_prober *p;
    int site, edge;
    char id[DW_ID_MAX];
    char url[DW_URL_MAX];
    uv_timer_t timer;
    struct dw_detector det;
    int in_flight;
    int warned_bad; /* a bad response was logged since the last state change */
    char last_error[160];
};

struct site_probe {
    char id[DW_ID_MAX];
    enum dw_health verdict;
    int n_edges;
    struct edge_probe *edges;
};

struct dw_prober {
    uv_loop_t *loop;
    struct dw_curlm *curlm;
    struct dw_probe_cfg cfg;
    dw_site_change_cb cb;
    void *data;
    int n_sites;
    struct site_probe *sites;
    struct dw_probe_stats stats;
    uint64_t rng;
    int open_handles; /* timers not yet closed */
    int in_flight;    /* probes whose callback has not run */
    int closing;
};

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

static void prober_free(struct dw_prober *p)
{
    for (int s = 0; s < p->n_sites; s++)
        free(p->sites[s].edges);
    free(p->sites);
    free(p);
}

static void prober_maybe_free(struct dw_prober *p)
{
    if (p->closing && p->open_handles == 0 && p->in_flight == 0)
        prober_free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct edge_probe *e = h->data;
    struct dw_prober *p = e->p;

    p->open_handles--;
    prober_maybe_free(p);
}

static void on_probe_timer(uv_timer_t *t);

static void schedule(struct edge_probe *e, int first)
{
    struct dw_prober *p = e->p;
    double iv = (double)p->cfg.interval_ms;
    double delay = first ? iv * rng_unit(p) : iv * (0.9 + 0.2 * rng_unit(p));

    uv_timer_start(&e->timer, on_probe_timer, (uint64_t)delay, 0);
}

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

static void site_recompute(struct dw_prober *p, int site)
{
    struct site_probe *s = &p->sites[site];
    enum dw_health states[DW_MAX_EDGES];

    for (int i = 0; i < s->n_edges; i++)
        states[i] = s->edges[i].det.state;
    enum dw_health v = dw_site_local_verdict(states, s->n_edges);
    if (v == s->verdict)
        return;
    enum dw_health old = s->verdict;
    s->verdict = v;
    dw_log(DW_LOG_INFO, "probe", "site %s local verdict %s -> %s", s->id, dw_health_name(old),
           dw_health_name(v));
    if (p->cb)
        p->cb(p->data, site, old, v);
}

static void on_probe_done(const struct dw_http_resp *r, void *data)
{
    struct edge_probe *e = data;
    struct dw_prober *p = e->p;
    int ok = 0, bad = 0;

    e->in_flight = 0;
    p->in_flight--;
    if (p->closing) {
        prober_maybe_free(p);
        return;
    }
    if (r->curl_code == CURLE_ABORTED_BY_CALLBACK && !r->truncated)
        return; /* the HTTP client is shutting down: not evidence about the Edge */

    if (r->status >= 200 && r->status < 300 && (r->curl_code == CURLE_OK || r->truncated)) {
        ok = 1;
    } else if (r->curl_code == CURLE_OK || r->truncated) {
        snprintf(e->last_error, sizeof e->last_error, "HTTP %ld", r->status);
    } else {
        bad = is_bad_response(r->curl_code);
        snprintf(e->last_error, sizeof e->last_error, "%s%s", bad ? "bad response: " : "",
                 r->error ? r->error : curl_easy_strerror(r->curl_code));
    }

    p->stats.probes++;
    if (!ok)
        p->stats.failures++;
    if (bad) {
        p->stats.errors_bad_response++;
        if (!e->warned_bad) {
            e->warned_bad = 1;
            dw_log(DW_LOG_WARN, "probe", "edge %s (%s) %s: %s", e->id, p->sites[e->site].id,
                   e->url, e->last_error);
        }
    }

    if (!dw_detector_feed(&e->det, ok != 0))
        return;
    e->warned_bad = 0;
    if (e->det.state == DW_DOWN)
        dw_log(DW_LOG_INFO, "probe", "edge %s (%s) down after %u failures: %s", e->id,
               p->sites[e->site].id, e->det.consecutive_fail, e->last_error);
    else
        dw_log(DW_LOG_INFO, "probe", "edge %s (%s) up after %u successes", e->id,
               p->sites[e->site].id, e->det.consecutive_ok);
    site_recompute(p, e->site);
}

static void on_probe_timer(uv_timer_t *t)
{
    struct edge_probe *e = t->data;
    struct dw_prober *p = e->p;

    if (p->closing)
        return;
    schedule(e, 0);
    /* One probe per Edge at a time: a slow Edge must not pile up connections. */
    if (e->in_flight)
        return;

    struct dw_http_opts o;
    memset(&o, 0, sizeof o);
    o.method = "GET";
    o.url = e->url;
    o.timeout_ms = p->cfg.timeout_ms;
    o.max_body = PROBE_MAX_BODY;
    o.fresh_connect = 1;
    if (dw_http_request(p->curlm, &o, on_probe_done, e) != 0) {
        dw_log(DW_LOG_ERROR, "probe", "edge %s (%s): cannot start probe", e->id,
               p->sites[e->site].id);
        return;
    }
    e->in_flight = 1;
    p->in_flight++;
}

int dw_prober_start(struct dw_prober **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_config *cfg, dw_site_change_cb cb, void *data)
{
    *out = NULL;
    if (cfg->n_sites < 0 || cfg->n_sites > DW_MAX_SITES)
        return -1;
    struct dw_prober *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    p->loop = loop;
    p->curlm = curlm;
    p->cfg = cfg->probe;
    if (p->cfg.interval_ms == 0)
        p->cfg.interval_ms = 1000;
    if (p->cfg.timeout_ms == 0 || p->cfg.timeout_ms > p->cfg.interval_ms)
        p->cfg.timeout_ms = p->cfg.interval_ms; /* keeps one probe in flight per Edge */
    p->cb = cb;
    p->data = data;
    p->rng = ((uint64_t)getpid() << 32) ^ uv_hrtime() ^ (uint64_t)(uintptr_t)p;
    if (p->rng == 0)
        p->rng = 0x9E3779B97F4A7C15ULL;
    p->sites = calloc((size_t)(cfg->n_sites ? cfg->n_sites : 1), sizeof *p->sites);
    if (p->sites == NULL) {
        free(p);
        return -1;
    }
    p->n_sites = cfg->n_sites;
    for (int s = 0; s < cfg->n_sites; s++) {
        const struct dw_site *cs = &cfg->sites[s];
        struct site_probe *sp = &p->sites[s];
        int n = cs->n_edges < 0 ? 0 : cs->n_edges > DW_MAX_EDGES ? DW_MAX_EDGES : cs->n_edges;
        snprintf(sp->id, sizeof sp->id, "%s", cs->id);
        sp->verdict = DW_UNKNOWN;
        sp->edges = calloc((size_t)(n ? n : 1), sizeof *sp->edges);
        if (sp->edges == NULL) {
            p->n_sites = s;
            goto err;
        }
        sp->n_edges = n;
        for (int i = 0; i < n; i++) {
            struct edge_probe *e = &sp->edges[i];
            e->p = p;
            e->site = s;
            e->edge = i;
            snprintf(e->id, sizeof e->id, "%s", cs->edges[i].id);
            snprintf(e->url, sizeof e->url, "%s", cs->edges[i].health_url);
            dw_detector_init(&e->det, p->cfg.fail_threshold, p->cfg.recover_threshold);
        }
    }
    /* Timers last, so the error path above has no handle to close. */
    for (int s = 0; s < p->n_sites; s++) {
        for (int i = 0; i < p->sites[s].n_edges; i++) {
            struct edge_probe *e = &p->sites[s].edges[i];
            uv_timer_init(loop, &e->timer);
            e->timer.data = e;
            p->open_handles++;
            schedule(e, 1);
        }
    }
    *out = p;
    return 0;

err:
    prober_free(p);
    return -1;
}

void dw_prober_close(struct dw_prober *p)
{
    if (p == NULL || p->closing)
        return;
    p->closing = 1;
    for (int s = 0; s < p->n_sites; s++) {
        for (int i = 0; i < p->sites[s].n_edges; i++) {
            uv_timer_t *t = &p->sites[s].edges[i].timer;
            uv_timer_stop(t);
            uv_close((uv_handle_t *)t, on_timer_closed);
        }
    }
    /* Memory stays until the timers have closed and running probes have called back. */
    prober_maybe_free(p);
}

enum dw_health dw_prober_site(const struct dw_prober *p, int site)
{
    if (p == NULL || site < 0 || site >= p->n_sites)
        return DW_UNKNOWN;
    return p->sites[site].verdict;
}

enum dw_health dw_prober_edge(const struct dw_prober *p, int site, int edge)
{
    if (p == NULL || site < 0 || site >= p->n_sites || edge < 0 ||
        edge >= p->sites[site].n_edges)
        return DW_UNKNOWN;
    return p->sites[site].edges[edge].det.state;
}

void dw_prober_stats(const struct dw_prober *p, struct dw_probe_stats *out)
{
    if (p == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = p->stats;
}
