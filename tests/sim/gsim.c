/* A simulated Genesys Cloud (trunk bases with versions, trunks whose state follows their Edges
 * and trunk_enabled; 409, 429 with Retry-After, 503, slow and lost replies) and a model of each
 * node's client: read first, PUT with the version read, re-read on 409, wait on 429/5xx, and ask
 * the fencing token before every request of a write (src/io/genesys.c does the same). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define MAX_RETRIES 5
#define MAX_CONFLICTS 3
#define CONNECT_FAIL_MS 300

enum req { R_GET, R_PUT, R_CHECK };
enum answer { A_OK, A_409, A_429, A_503, A_LOST, A_TRANSPORT };

struct gcall {
    struct gsim_client *c;
    struct gcall *next;
    bool write, done;
    int tb;
    bool want;
    int version;           /* read by the last GET */
    struct dw_fence fence;
    dw_genesys_cb cb;
    void *data;
    int retries, conflicts;
    uint64_t req_gen;      /* the request the call waits for; older answers are ignored */
};

struct gsim_client {
    struct sim *s;
    int node;
    struct gcall *calls;
    bool closed;
};

int gsim_tb_index(const struct gsim *g, const char *id)
{
    for (int t = 0; t < g->n_tb; t++)
        if (strcmp(g->tb[t].id, id) == 0)
            return t;
    return -1;
}

static void finish(struct gcall *k, enum dw_gresult res, const char *detail)
{
    if (k->done)
        return;
    k->done = true;
    k->cb(k->data, res, detail);
}

/* Requests and answers travel as events; a call's request carries its generation so a late
 * answer to a request the client gave up on is dropped. */
struct msg {
    struct gcall *k;
    uint64_t gen;
    enum req what;
    int version;           /* PUT: the version it sends */
    uint64_t sent;
    enum answer ans;
    bool strands;
    bool enabled;          /* GET answer */
    bool in_service;       /* CHECK answer */
    unsigned retry_after_ms;
};

static void send_req(struct gcall *k, enum req what);

static void retry(struct sim *s, void *p, int64_t gen)
{
    struct gcall *k = p;
    (void)s;
    if (k->done || k->req_gen != (uint64_t)gen || k->c->closed)
        return;
    /* after a wait the write starts again from its read */
    send_req(k, k->write ? R_GET : R_CHECK);
}

static void failed_attempt(struct gcall *k, const char *why, unsigned wait_ms)
{
    struct sim *s = k->c->s;
    if (++k->retries > MAX_RETRIES) {
        char d[96];
        snprintf(d, sizeof d, "%s (after %d retries)", why, MAX_RETRIES);
        finish(k, DW_G_TRANSIENT, d);
        return;
    }
    k->req_gen++;
    sim_at(s, wait_ms, retry, k, (int64_t)k->req_gen);
}

static void answer(struct sim *s, void *p, int64_t x)
{
    struct msg *m = p;
    struct gcall *k = m->k;
    (void)x;
    if (k->done || k->req_gen != m->gen || k->c->closed) {
        free(m);
        return;
    }
    k->req_gen++; /* the request's timeout is void now */
    switch (m->ans) {
    case A_429:
        failed_attempt(k, "429", m->retry_after_ms);
        break;
    case A_503:
    case A_TRANSPORT:
        failed_attempt(k, m->ans == A_503 ? "503" : "transport error",
                       300u << (2 * (k->retries < 3 ? k->retries : 3)));
        break;
    case A_LOST:
        break; /* never answered: the timeout handles it */
    case A_409:
        if (++k->conflicts > MAX_CONFLICTS)
            finish(k, DW_G_FAIL, "409 conflict, again and again");
        else
            send_req(k, R_GET);
        break;
    case A_OK:
        if (m->what == R_GET) {
            if (m->enabled == k->want)
                finish(k, DW_G_UNCHANGED, "already so");
            else {
                k->version = m->version;
                send_req(k, R_PUT);
            }
        } else if (m->what == R_PUT) {
            finish(k, DW_G_OK, "PUT 200");
        } else {
            finish(k, m->in_service ? DW_G_OK : DW_G_NOT_YET,
                   m->in_service ? "in service, connected" : "not in service yet");
        }
        break;
    }
    free(m);
}

static void timeout(struct sim *s, void *p, int64_t gen)
{
    struct gcall *k = p;
    (void)s;
    if (k->done || k->req_gen != (uint64_t)gen || k->c->closed)
        return;
    failed_attempt(k, "timed out", 300u << (2 * (k->retries < 3 ? k->retries : 3)));
}

static bool trunks_in_service(struct sim *s, const struct gsim_tb *t)
{
    return t->enabled && sim_now(s) >= t->in_service_at && (t->site < 0 || s->site_up[t->site]);
}

/* The request reaches Genesys. */
static void arrive(struct sim *s, void *p, int64_t x)
{
    struct msg *m = p;
    struct gsim_tb *t = &s->g.tb[m->k->tb];
    (void)x;
    if (m->ans == A_OK || m->ans == A_LOST) {
        if (m->what == R_GET) {
            m->enabled = t->enabled;
            m->version = t->version;
        } else if (m->what == R_CHECK) {
            m->in_service = trunks_in_service(s, t);
        } else if (m->version != t->version) {
            if (m->ans == A_OK)
                m->ans = A_409;
        } else {
            struct gsim_write w = {.sent = m->sent, .arrived = sim_now(s), .node = m->k->c->node,
                                   .fence = m->k->fence, .tb = m->k->tb, .value = m->k->want,
                                   .changed = t->enabled != m->k->want,
                                   .strands = m->strands, .in_service_from = t->in_service_at};
            t->enabled = m->k->want;
            t->version++;
            if (w.changed && w.value)
                t->in_service_at = sim_now(s) + sim_between(s, 100, 1500);
            if (s->g.n_writes == s->g.cap_writes) {
                s->g.cap_writes = s->g.cap_writes ? 2 * s->g.cap_writes : 32;
                s->g.writes = realloc(s->g.writes, (size_t)s->g.cap_writes * sizeof *s->g.writes);
                if (s->g.writes == NULL)
                    abort();
            }
            s->g.writes[s->g.n_writes++] = w;
            s->writes_total++;
            sim_trace(s, "genesys: PUT %s trunk_enabled=%s from node %d (term %" PRIu64 ", op %"
                      PRId64 " step %d)%s", t->id, w.value ? "true" : "false", w.node + 1,
                      w.fence.term, w.fence.op, w.fence.seq, w.changed ? "" : " (no change)");
            check_write(s, &w);
        }
    }
    if (m->ans == A_LOST) {
        free(m);
        return;
    }
    /* a slow answer may come after the client gave up */
    sim_at_owned(s, sim_between(s, 0, 9) ? sim_between(s, 5, 60) : sim_between(s, 500, 3000),
                 answer, m, 0, free);
}

static void send_req(struct gcall *k, enum req what)
{
    struct sim *s = k->c->s;
    char why[160];
    if (k->write && !k->fence.valid(k->fence.data, &k->fence, why, sizeof why)) {
        finish(k, DW_G_FENCED, why);
        return;
    }
    uint64_t gen = ++k->req_gen;
    struct msg *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    *m = (struct msg){.k = k, .gen = gen, .what = what, .version = k->version, .sent = sim_now(s),
                      .strands = what == R_PUT && !k->want && check_strands(s, k->c->node, k->tb, k->fence.op)};
    sim_at(s, s->cfg->genesys.request_timeout_ms, timeout, k, (int64_t)gen);
    if (s->g.cut[k->c->node]) {
        m->ans = A_TRANSPORT;
        sim_at_owned(s, CONNECT_FAIL_MS, answer, m, 0, free);
        return;
    }
    unsigned arrive_ms = sim_between(s, 5, 60);
    /* the writer loses office while its PUT is held on the way: it lands after the caller
     * gave up, just within the request timeout */
    if (what == R_PUT && sim_strike(s, k->c->node, "inside a Genesys call",
                                    k->want ? s->g.tb[k->tb].site : -1))
        arrive_ms = sim_between(s, 60, s->g.max_arrival_ms);
    if (s->g.fault_pct && sim_chance(s, s->g.fault_pct)) {
        switch (sim_between(s, 0, 3)) {
        case 0:
            m->ans = A_429;
            m->retry_after_ms = sim_between(s, 1, 3) * 1000;
            break;
        case 1:
            m->ans = A_503;
            break;
        case 2:
            m->ans = A_LOST;
            break;
        default: /* slow: still reaches Genesys within the bound */
            arrive_ms = sim_between(s, 60, s->g.max_arrival_ms);
            break;
        }
    }
    if (m->ans == A_429 || m->ans == A_503) {
        sim_at_owned(s, arrive_ms, answer, m, 0, free);
        return;
    }
    sim_at_owned(s, arrive_ms, arrive, m, 0, free);
}

static struct gcall *call_new(struct gsim_client *c, const char *tb, dw_genesys_cb cb, void *data)
{
    int t = gsim_tb_index(&c->s->g, tb);
    if (t < 0 || c->closed)
        return NULL;
    struct gcall *k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    *k = (struct gcall){.c = c, .tb = t, .cb = cb, .data = data, .next = c->calls};
    c->calls = k;
    return k;
}

static void start(struct sim *s, void *p, int64_t x)
{
    struct gcall *k = p;
    (void)s, (void)x;
    if (!k->done && !k->c->closed)
        send_req(k, k->write ? R_GET : R_CHECK);
}

static int g_set(void *g, const char *tb, bool enabled, const struct dw_fence *fence,
                 dw_genesys_cb cb, void *data)
{
    struct gsim_client *c = g;
    if (fence == NULL)
        return -1;
    struct gcall *k = call_new(c, tb, cb, data);
    if (k == NULL)
        return -1;
    k->write = true;
    k->want = enabled;
    k->fence = *fence;
    sim_at(c->s, 0, start, k, 0);
    return 0;
}

static int g_check(void *g, const char *tb, dw_genesys_cb cb, void *data)
{
    struct gsim_client *c = g;
    struct gcall *k = call_new(c, tb, cb, data);
    if (k == NULL)
        return -1;
    sim_at(c->s, 0, start, k, 0);
    return 0;
}

static void g_cancel(void *g, const char *why)
{
    struct gsim_client *c = g;
    for (struct gcall *k = c->calls; k; k = k->next)
        if (k->write && !k->done) {
            k->req_gen++;
            finish(k, DW_G_FENCED, why);
        }
}

struct gsim_client *gsim_client_new(struct sim *s, int node)
{
    struct gsim_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        abort();
    c->s = s;
    c->node = node;
    if (s->g.max_arrival_ms == 0)
        s->g.max_arrival_ms = s->cfg->genesys.request_timeout_ms - 200;
    if (s->g.n_clients == s->g.cap_clients) {
        s->g.cap_clients = s->g.cap_clients ? 2 * s->g.cap_clients : 8;
        s->g.clients = realloc(s->g.clients, (size_t)s->g.cap_clients * sizeof *s->g.clients);
        if (s->g.clients == NULL)
            abort();
    }
    s->g.clients[s->g.n_clients++] = c;
    return c;
}

void gsim_client_free(struct gsim_client *c)
{
    if (c == NULL)
        return;
    c->closed = true;
    for (struct gcall *k = c->calls; k; k = k->next)
        finish(k, DW_G_FAIL, "client closed");
}

void gsim_free_all(struct sim *s)
{
    for (int i = 0; i < s->g.n_clients; i++) {
        struct gcall *k = s->g.clients[i]->calls;
        while (k) {
            struct gcall *next = k->next;
            free(k);
            k = next;
        }
        free(s->g.clients[i]);
    }
    free(s->g.clients);
}

void gsim_actuator_ops(struct gsim_client *c, struct dw_actuator_ops *ops)
{
    *ops = (struct dw_actuator_ops){.genesys = c, .set_trunk_base = g_set,
                                    .check_trunks = g_check, .cancel_writes = g_cancel};
}
