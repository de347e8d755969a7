#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/cloud.h"
#include "drwatch/cloudview.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"

#define LEADER_CHECK_MS 1000 /* how soon a new leader starts polling */
#define FAIL_LOG_EVERY 10    /* consecutive failures: log the first and every 10th */

struct dw_cloud {
    uv_loop_t *loop;
    const struct dw_config *cfg;
    struct dw_genesys *g;
    struct dw_cloud_sink sink;
    uv_timer_t timer;
    int refs;                    /* timer handle + listing in flight + proposals in flight */
    int closing;

    int n_all;                   /* configured Edges (flat index) */
    int n;                       /* Edges in the cloud view */
    int *flat;                   /* view index -> flat index */
    const char **gids;           /* view index -> genesys_edge_id */
    const char **eids;           /* view index -> drwatch Edge id */
    struct dw_cloud_edge *derived; /* view index */
    enum dw_health *states;      /* flat: the current view, UNKNOWN outside it */
    enum dw_health *round;       /* flat: what the proposals in flight carry */
    enum dw_health *committed;   /* flat: the last view committed in this leadership */
    bool *disc, *disc_round, *disc_committed; /* flat: DOWN only by unconnected trunks */

    bool leader;                 /* polling as leader (since the last leadership check) */
    bool have_view;              /* states holds a view derived in this leadership */
    bool have_committed;
    uint64_t cycle_start;        /* uv_now() */
    unsigned cycle_requests;
    cJSON *edges;                /* edge list, kept while the trunks are listed */
    uint64_t last_proposal;      /* uv_now() when the last round started */
    int proposing;               /* entries in flight */
    bool round_failed;
    bool warned_ttl;             /* the budget stretched the interval past cloud_ttl_ms */
    unsigned failures_in_row;
    struct dw_cloud_stats st;
};

unsigned dw_cloud_interval_ms(const struct dw_genesys_cfg *g, unsigned requests)
{
    uint64_t budget_ms = 0;

    if (g->rate_budget_per_min > 0)
        budget_ms = ((uint64_t)requests * 60000u + g->rate_budget_per_min - 1) /
                    g->rate_budget_per_min;
    if (budget_ms > UINT32_MAX)
        budget_ms = UINT32_MAX;
    return budget_ms > g->poll_interval_ms ? (unsigned)budget_ms : g->poll_interval_ms;
}

/* ---- lifetime ---- */

static void cloud_unref(struct dw_cloud *c)
{
    if (--c->refs > 0)
        return;
    cJSON_Delete(c->edges);
    free(c->flat);
    free(c->gids);
    free(c->eids);
    free(c->derived);
    free(c->states);
    free(c->round);
    free(c->committed);
    free(c->disc);
    free(c->disc_round);
    free(c->disc_committed);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    cloud_unref(h->data);
}

void dw_cloud_close(struct dw_cloud *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void dw_cloud_stats(const struct dw_cloud *c, struct dw_cloud_stats *out)
{
    if (c == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = c->st;
}

/* ---- cycle ---- */

static void tick(uv_timer_t *t);

static void schedule(struct dw_cloud *c, uint64_t delay_ms)
{
    if (!c->closing)
        uv_timer_start(&c->timer, tick, delay_ms, 0);
}

/* The next cycle starts one interval after this one started: the budget holds however long the
 * cycle took. */
static void schedule_next(struct dw_cloud *c)
{
    uint64_t elapsed = uv_now(c->loop) - c->cycle_start;

    c->st.last_requests = c->cycle_requests;
    c->st.requests += c->cycle_requests;
    c->st.interval_ms = dw_cloud_interval_ms(&c->cfg->genesys, c->cycle_requests);
    if (c->st.interval_ms >= c->cfg->genesys.cloud_ttl_ms && !c->warned_ttl) {
        /* Between polls the view then decays to unknown: combining sites wait for probes. */
        dw_log(DW_LOG_WARN, "cloud",
               "the rate budget stretches polls to %u ms, not below genesys.cloud_ttl_ms (%u ms): "
               "raise cloud_ttl_ms or rate_budget_per_min",
               c->st.interval_ms, c->cfg->genesys.cloud_ttl_ms);
        c->warned_ttl = true;
    }
    schedule(c, c->st.interval_ms > elapsed ? c->st.interval_ms - elapsed : 0);
}

static void cycle_failed(struct dw_cloud *c, const char *detail)
{
    c->st.poll_failures++;
    if (c->failures_in_row++ % FAIL_LOG_EVERY == 0)
        dw_log(DW_LOG_WARN, "cloud", "Genesys poll failed (%u in a row): %s", c->failures_in_row,
               detail);
    schedule_next(c);
}

static void proposed(void *data, int status, const char *errmsg)
{
    struct dw_cloud *c = data;

    c->proposing--;
    if (status != 0) {
        c->st.proposal_failures++;
        c->round_failed = true;
        if (!c->closing)
            dw_log(DW_LOG_WARN, "cloud", "cloud entry not committed: %s",
                   errmsg ? errmsg : "unknown");
    } else {
        c->st.proposals++;
    }
    if (c->proposing == 0 && !c->closing) {
        /* a round counts only when all of it committed; otherwise the next cycle sends it all */
        c->have_committed = !c->round_failed;
        if (c->have_committed) {
            memcpy(c->committed, c->round, (size_t)c->n_all * sizeof *c->round);
            memcpy(c->disc_committed, c->disc_round, (size_t)c->n_all * sizeof *c->disc_round);
        }
    }
    cloud_unref(c);
}

/* Proposes the view when it differs from the last committed one, or when the next cycle would
 * come later than cloud_ttl_ms/3 after the last round, so the FSM never sees it go stale in
 * steady state. Large views go out in several entries. */
static void maybe_propose(struct dw_cloud *c)
{
    uint64_t now = uv_now(c->loop);
    bool changed = !c->have_committed;

    if (c->proposing > 0)
        return; /* the next cycle compares against what this round commits */
    for (int i = 0; i < c->n && !changed; i++)
        changed = c->states[c->flat[i]] != c->committed[c->flat[i]] ||
                  c->disc[c->flat[i]] != c->disc_committed[c->flat[i]];
    if (!changed && now + c->st.interval_ms < c->last_proposal + c->cfg->genesys.cloud_ttl_ms / 3)
        return;

    memcpy(c->round, c->states, (size_t)c->n_all * sizeof *c->states);
    memcpy(c->disc_round, c->disc, (size_t)c->n_all * sizeof *c->disc);
    c->round_failed = false;
    c->last_proposal = now;
    for (int first = 0, next = 0; first < c->n_all; first = next) {
        char err[256] = "";
        char *e = dw_entry_cloud_part(c->cfg, c->round, c->disc_round, first, DW_ENTRY_CLOUD_EDGES_MAX, &next);

        if (e == NULL || c->sink.propose(c->sink.data, e, proposed, c, err, sizeof err) != 0) {
            c->st.proposal_failures++;
            c->round_failed = true;
            c->have_committed = false;
            dw_log(DW_LOG_WARN, "cloud", "cannot propose a cloud entry: %s",
                   e == NULL ? "out of memory" : err);
            free(e);
            return;
        }
        free(e);
        c->proposing++;
        c->refs++;
    }
}

static void derive_and_share(struct dw_cloud *c, const cJSON *trunks)
{
    int ignored = 0;

    /* The leader stamps the entry with the time it is proposed: a view gathered over a long,
     * retried cycle (or across a stall) would enter the log younger than it is. */
    uint64_t age = uv_now(c->loop) - c->cycle_start;
    if (age > c->cfg->genesys.cloud_ttl_ms / 2) {
        char why[128];
        snprintf(why, sizeof why, "view took %llu ms to gather (more than half of cloud_ttl_ms)",
                 (unsigned long long)age);
        cycle_failed(c, why);
        return;
    }
    if (dw_cloudview_derive(c->edges, trunks, c->gids, c->n, c->derived, &ignored) != 0) {
        cycle_failed(c, "cannot derive the view (out of memory)");
        return;
    }
    if (c->failures_in_row > 0)
        dw_log(DW_LOG_INFO, "cloud", "Genesys poll works again after %u failures",
               c->failures_in_row);
    c->failures_in_row = 0;
    c->st.polls++;
    c->st.ignored += (uint64_t)ignored;
    c->st.up = c->st.down = c->st.unknown = 0;
    for (int i = 0; i < c->n; i++) {
        const struct dw_cloud_edge *d = &c->derived[i];
        enum dw_health *cur = &c->states[c->flat[i]];

        c->st.up += d->state == DW_UP;
        c->st.down += d->state == DW_DOWN;
        c->st.unknown += d->state == DW_UNKNOWN;
        if (c->have_view && *cur != d->state) {
            c->st.changes++;
            dw_log(d->state == DW_DOWN ? DW_LOG_WARN : DW_LOG_INFO, "cloud",
                   "Edge %s (Genesys %s): %s -> %s (%s, %d/%d in-service trunks connected)",
                   c->eids[i], c->gids[i], dw_health_name(*cur),
                   dw_health_name(d->state), dw_cloud_why_name(d->why), d->trunks_connected,
                   d->trunks_in_service);
        }
        *cur = d->state;
        c->disc[c->flat[i]] = d->why == DW_CLOUD_DISCONNECTED;
    }
    if (!c->have_view)
        dw_log(DW_LOG_INFO, "cloud", "Genesys view of %d Edges: %d up, %d down, %d unknown", c->n,
               c->st.up, c->st.down, c->st.unknown);
    if (ignored > 0)
        dw_log(DW_LOG_WARN, "cloud", "%d listed entities without an id were ignored", ignored);
    c->have_view = true;
    schedule_next(c);
    maybe_propose(c);
}

/* What both listings do with their result; true when the cycle goes on. A leadership lost
 * mid-cycle still counts the cycle's requests, then the leadership check stops polling. */
static bool listing_usable(struct dw_cloud *c, enum dw_gresult res, unsigned requests,
                           const char *detail)
{
    c->cycle_requests += requests;
    if (c->closing)
        return false;
    if (res != DW_G_OK) {
        cycle_failed(c, detail);
        return false;
    }
    if (!c->sink.is_leader(c->sink.data)) {
        c->st.requests += c->cycle_requests;
        c->cycle_requests = 0;
        schedule(c, 0);
        return false;
    }
    return true;
}

static void on_trunks(void *data, enum dw_gresult res, cJSON *trunks, unsigned requests,
                      const char *detail)
{
    struct dw_cloud *c = data;

    if (listing_usable(c, res, requests, detail))
        derive_and_share(c, trunks);
    cJSON_Delete(c->edges);
    c->edges = NULL;
    cJSON_Delete(trunks);
    cloud_unref(c);
}

static void on_edges(void *data, enum dw_gresult res, cJSON *edges, unsigned requests,
                     const char *detail)
{
    struct dw_cloud *c = data;

    if (!listing_usable(c, res, requests, detail)) {
        cJSON_Delete(edges);
    } else {
        c->edges = edges;
        if (dw_genesys_list(c->g, "trunks", on_trunks, c) == 0) {
            c->refs++;
        } else {
            cJSON_Delete(c->edges);
            c->edges = NULL;
            cycle_failed(c, "cannot start listing trunks");
        }
    }
    cloud_unref(c);
}

static void tick(uv_timer_t *t)
{
    struct dw_cloud *c = t->data;

    if (c->closing)
        return;
    if (!c->sink.is_leader(c->sink.data)) {
        if (c->leader)
            dw_log(DW_LOG_INFO, "cloud", "no longer leader: Genesys polling stops");
        /* a later leadership starts from a fresh view and proposes it at once */
        c->leader = c->have_view = c->have_committed = false;
        c->st.polling = false;
        schedule(c, LEADER_CHECK_MS);
        return;
    }
    if (!c->leader)
        dw_log(DW_LOG_INFO, "cloud",
               "leader: polling Genesys for %d Edges every %u ms (budget %u requests/min)", c->n,
               c->cfg->genesys.poll_interval_ms, c->cfg->genesys.rate_budget_per_min);
    c->leader = true;
    c->st.polling = true;
    c->cycle_start = uv_now(c->loop);
    c->cycle_requests = 0;
    if (dw_genesys_list(c->g, "edges", on_edges, c) != 0) {
        cycle_failed(c, "cannot start listing edges");
        return;
    }
    c->refs++;
}

/* ---- start ---- */

static bool raft_is_leader(void *data)
{
    return dw_raft_is_leader(data);
}

static int raft_propose(void *data, const char *entry_json, dw_raft_done_cb cb, void *cb_data,
                        char *errmsg, size_t errlen)
{
    return dw_raft_propose(data, entry_json, cb, cb_data, errmsg, errlen);
}

int dw_cloud_start_sink(struct dw_cloud **out, uv_loop_t *loop, const struct dw_config *cfg,
                        struct dw_genesys *genesys, const struct dw_cloud_sink *sink,
                        char *errmsg, size_t errlen)
{
    struct dw_cloud *c = calloc(1, sizeof *c);
    size_t n_all;

    *out = NULL;
    if (c == NULL)
        goto err_oom;
    c->loop = loop;
    c->cfg = cfg;
    c->g = genesys;
    c->sink = *sink;
    c->n_all = dw_entry_edge_count(cfg);
    n_all = c->n_all > 0 ? (size_t)c->n_all : 1;
    c->flat = calloc(n_all, sizeof *c->flat);
    c->gids = calloc(n_all, sizeof *c->gids);
    c->eids = calloc(n_all, sizeof *c->eids);
    c->derived = calloc(n_all, sizeof *c->derived);
    c->states = calloc(n_all, sizeof *c->states);
    c->round = calloc(n_all, sizeof *c->round);
    c->committed = calloc(n_all, sizeof *c->committed);
    c->disc = calloc(n_all, sizeof *c->disc);
    c->disc_round = calloc(n_all, sizeof *c->disc_round);
    c->disc_committed = calloc(n_all, sizeof *c->disc_committed);
    if (!c->flat || !c->gids || !c->eids || !c->derived || !c->states || !c->round ||
        !c->committed || !c->disc || !c->disc_round || !c->disc_committed)
        goto err_oom;
    for (int i = 0, k = 0; i < cfg->n_sites; i++) {
        const struct dw_site *s = &cfg->sites[i];

        for (int j = 0; j < s->n_edges; j++, k++) {
            if (!dw_cloudview_watched(s, &s->edges[j]))
                continue;
            c->flat[c->n] = k;
            c->gids[c->n] = s->edges[j].genesys_edge_id;
            c->eids[c->n] = s->edges[j].id;
            c->n++;
        }
    }
    if (c->n > 0 && (genesys == NULL || sink->is_leader == NULL || sink->propose == NULL)) {
        snprintf(errmsg, errlen, "cloud: the Genesys signal needs a Genesys client and raft");
        c->refs = 1;
        cloud_unref(c);
        return -1;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->refs = 1;
    c->st.active = c->n > 0;
    c->st.edges = c->n;
    c->st.interval_ms = cfg->genesys.poll_interval_ms;
    if (c->n > 0)
        schedule(c, 0);
    *out = c;
    return 0;

err_oom:
    snprintf(errmsg, errlen, "cloud: out of memory");
    if (c != NULL) {
        c->refs = 1;
        cloud_unref(c);
    }
    return -1;
}

int dw_cloud_start(struct dw_cloud **out, uv_loop_t *loop, const struct dw_config *cfg,
                   struct dw_genesys *genesys, struct dw_raft *raft, char *errmsg, size_t errlen)
{
    struct dw_cloud_sink sink = {raft_is_leader, raft_propose, raft};

    return dw_cloud_start_sink(out, loop, cfg, genesys, &sink, errmsg, errlen);
}
