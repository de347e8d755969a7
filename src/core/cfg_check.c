/* Cross-field rules: orders, references, uniqueness, limits, file checks via ctx->files. */
#include "cfg_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIX_PATH_MAX 107u        /* sizeof(sun_path) - 1 on Linux */
#define SECRET_CHECK_MAX 4096u    /* secrets longer than this are refused */

/* ---- rules within one object, run by the walk as it leaves the object ---- */

/* A target's site: absent means siteless (BYOC Cloud), otherwise a configured site id. */
void cfg_parse_target_site(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_target *t = base;
    char id[DW_ID_MAX];
    t->site = -1;
    if (!v || !cfg_parse_str(c, v, id, sizeof id, F_ID))
        return;
    t->site = dw_config_site_index(c->cfg, id);
    if (t->site < 0)
        cfg_err(c, "unknown site \"%s\"", id);
}

/* A target's actions: routes named once, Edge drain only where there are Edges to drain. */
void cfg_target_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_target *t = base;
    if (!obj)
        return;
    for (int i = 0; i < t->n_routes; i++)
        for (int k = 0; k < i; k++)
            if (t->routes[i].route_id[0] &&
                strcmp(t->routes[i].site_id, t->routes[k].site_id) == 0 &&
                strcmp(t->routes[i].route_id, t->routes[k].route_id) == 0) {
                size_t old = cfg_push_key(c, "outbound_routes");
                size_t at = cfg_push_index(c, i);
                cfg_err(c, "route \"%s\" of site \"%s\" is already listed at [%d]",
                        t->routes[i].route_id, t->routes[i].site_id, k);
                cfg_pop(c, at);
                cfg_pop(c, old);
                break;
            }
    if (cfg_get(obj, "drain_wait_s") && !t->drain_edges)
        cfg_err_key(c, "drain_wait_s", "only valid with \"drain_edges\": true");
    if (!t->drain_edges)
        return;
    if (!cfg_get(obj, "site")) {
        cfg_err_key(c, "drain_edges", "needs \"site\": a target without a site has no Edges "
                    "to drain");
        return;
    }
    if (t->site < 0)
        return; /* unknown site: reported on "site" */
    const struct dw_site *s = &c->cfg->sites[t->site];
    int n = 0;
    for (int i = 0; i < s->n_edges; i++)
        n += s->edges[i].genesys_edge_id[0] != '\0';
    if (n == 0)
        cfg_err_key(c, "drain_edges", "no Edge of site \"%s\" has a genesys_edge_id", s->id);
}

/* TLS material is read by the prober much later: refuse a file it could not open now. */
static void check_readable(struct ctx *c, const char *key, const char *file)
{
    char msg[256];
    if (file[0] && c->files && c->files->readable(file, msg, sizeof msg) != 0)
        cfg_err_key(c, key, "%s", msg);
}

void cfg_probe_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_probe_spec *p = base;
    const struct dw_probe_cfg *pc = &c->cfg->probe;
    unsigned v = obj ? cfg_probe_variant(obj) : 0;
    if (!v)
        return;
    if (!cfg_get(obj, "timeout_ms"))
        p->timeout_ms = pc->timeout_ms;
    else if (p->timeout_ms && pc->interval_ms && p->timeout_ms > pc->interval_ms)
        cfg_err_key(c, "timeout_ms", "must be at most probe.interval_ms (%u > %u)", p->timeout_ms,
                    pc->interval_ms);
    const char *need = v == V_HTTP ? "url" : "address";
    if (!cfg_get(obj, need))
        cfg_err_key(c, need, "missing (required for %s)", cfg_probe_variant_name(v, 0));
    if ((v & V_SIP) && !cfg_get(obj, "request_uri") && p->address[0])
        snprintf(p->request_uri, sizeof p->request_uri, "%s:%s",
                 p->transport == DW_SIP_TLS ? "sips" : "sip", p->address);
    if (!(v & V_TLS))
        return;
    bool cert = cfg_get(obj, "client_cert"), key = cfg_get(obj, "client_key");
    if (cert != key)
        cfg_err_key(c, cert ? "client_key" : "client_cert", "missing (required with %s)",
                    cert ? "client_cert" : "client_key");
    check_readable(c, "ca_file", p->ca_file);
    check_readable(c, "client_cert", p->client_cert);
    check_readable(c, "client_key", p->client_key);
}

/* health_url is shorthand for an http probe with the defaults, placed first. */
void cfg_edge_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_edge *e = base;
    if (!obj)
        return;
    const cJSON *url = cfg_get(obj, "health_url"), *probes = cfg_get(obj, "probes");
    if (!url && !probes) {
        cfg_err(c, "needs health_url or probes");
        return;
    }
    /* more than DW_MAX_PROBES in the array alone is reported by the array */
    if (url && cJSON_IsArray(probes) && cJSON_GetArraySize(probes) == DW_MAX_PROBES)
        cfg_err_key(c, "probes", "too many probes: health_url counts as one (max %d in all)",
                    DW_MAX_PROBES);
    if (!e->health_url[0])
        return;
    int n = e->n_probes < DW_MAX_PROBES - 1 ? e->n_probes : DW_MAX_PROBES - 1;
    struct dw_probe_spec *grown = realloc(e->probes, (size_t)(n + 1) * sizeof *grown);
    if (!grown) {
        cfg_err(c, "out of memory");
        return;
    }
    e->probes = grown;
    memmove(&e->probes[1], &e->probes[0], (size_t)n * sizeof e->probes[0]);
    struct dw_probe_spec *p = &e->probes[0];
    memset(p, 0, sizeof *p);
    p->kind = DW_PROBE_HTTP;
    p->timeout_ms = c->cfg->probe.timeout_ms;
    p->verify_tls = true;
    memcpy(p->url, e->health_url, sizeof p->url);
    e->n_probes = n + 1;
}

void cfg_site_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_site *s = base;
    char site_path[sizeof c->path];
    if (!obj)
        return;
    if (s->rule == DW_RULE_AT_LEAST && s->at_least > 0 && s->n_edges > 0 &&
        s->at_least > s->n_edges)
        cfg_err_key(c, "rule.at_least", "must be at most the number of edges (%d > %d)",
                    s->at_least, s->n_edges);
    if (s->combine == DW_COMBINE_PROBES)
        return;
    /* the cloud view is per Edge: an Edge Genesys cannot name would never count */
    memcpy(site_path, c->path, sizeof site_path);
    const cJSON *edges = cfg_get(obj, "edges");
    int j = 0;
    for (const cJSON *it = cJSON_IsArray(edges) ? edges->child : NULL; it && j < s->n_edges;
         it = it->next, j++) {
        if (!cJSON_IsObject(it) || cfg_get(it, "genesys_edge_id"))
            continue;
        size_t old = cfg_push_key(c, "edges");
        cfg_push_index(c, j);
        cfg_push_key(c, "genesys_edge_id");
        cfg_err(c, "required when %s.combine uses genesys", site_path);
        cfg_pop(c, old);
    }
}

/* ---- checks after the walk ---- */

static const struct {
    const char *region, *domain;
} regions[] = {
    { "us-east-1", "mypurecloud.com" },      { "us-east-2", "use2.us-gov-pure.cloud" },
    { "us-west-2", "usw2.pure.cloud" },      { "ca-central-1", "cac1.pure.cloud" },
    { "sa-east-1", "sae1.pure.cloud" },      { "eu-west-1", "mypurecloud.ie" },
    { "eu-west-2", "euw2.pure.cloud" },      { "eu-central-1", "mypurecloud.de" },
    { "eu-central-2", "euc2.pure.cloud" },   { "me-central-1", "mec1.pure.cloud" },
    { "ap-south-1", "aps1.pure.cloud" },     { "ap-southeast-1", "apse1.pure.cloud" },
    { "ap-southeast-2", "mypurecloud.com.au" }, { "ap-northeast-1", "mypurecloud.jp" },
    { "ap-northeast-2", "apne2.pure.cloud" }, { "ap-northeast-3", "apne3.pure.cloud" },
    { "mx-central-1", "mxc1.pure.cloud" },
};

static void check_genesys(struct ctx *c)
{
    struct dw_genesys_cfg *g = &c->cfg->genesys;
    bool region = c->seen & SEEN_REGION, api = c->seen & SEEN_API_URL,
         login = c->seen & SEEN_LOGIN_URL;
    if (!(c->seen & SEEN_GENESYS))
        return;
    if (!region) {
        if (!api && !login)
            cfg_err_at(c, "genesys.region", "missing (or set genesys.api_base_url and "
                                        "genesys.login_base_url)");
        else if (!api || !login)
            cfg_err_at(c, api ? "genesys.login_base_url" : "genesys.api_base_url",
                       "missing (needed when genesys.region is not set)");
        return;
    }
    if (!g->region[0])
        return; /* present but invalid: already reported */
    const char *domain = NULL;
    for (size_t i = 0; i < sizeof regions / sizeof regions[0] && !domain; i++)
        if (strcmp(regions[i].region, g->region) == 0)
            domain = regions[i].domain;
    if (!domain) {
        cfg_err_at(c, "genesys.region", "unknown region \"%s\"", g->region);
        return;
    }
    if (!api)
        snprintf(g->api_base_url, sizeof g->api_base_url, "https://api.%s", domain);
    if (!login)
        snprintf(g->login_base_url, sizeof g->login_base_url, "https://login.%s", domain);
}

/* Two listeners collide on one port when the hosts match or either is the wildcard. */
static bool same_listener(const char *a, const char *b)
{
    const char *pa = strrchr(a, ':'), *pb = strrchr(b, ':');
    if (!pa || !pb || strcmp(pa, pb) != 0)
        return false;
    size_t na = (size_t)(pa - a), nb = (size_t)(pb - b);
    return (na == nb && memcmp(a, b, na) == 0) || strncmp(a, "0.0.0.0:", 8) == 0 ||
           strncmp(b, "0.0.0.0:", 8) == 0;
}

static void check_metrics_address(struct ctx *c)
{
    const struct dw_config *cfg = c->cfg;
    const struct dw_member *m = dw_config_member(cfg, cfg->node_id);
    if (!cfg->metrics_address[0] || !m)
        return;
    int i = (int)(m - cfg->members);
    if (m->raft_address[0] && same_listener(cfg->metrics_address, m->raft_address))
        cfg_err_at(c, "node.metrics_address", "\"%s\" collides with this node's "
                   "cluster.members[%d].raft_address \"%s\"", cfg->metrics_address, i,
                   m->raft_address);
    else if (m->peer_address[0] && same_listener(cfg->metrics_address, m->peer_address))
        cfg_err_at(c, "node.metrics_address", "\"%s\" collides with this node's "
                   "cluster.members[%d].peer_address \"%s\"", cfg->metrics_address, i,
                   m->peer_address);
}

static void default_member_names(struct ctx *c)
{
    struct dw_config *cfg = c->cfg;
    /* a repeated id gets no default name: its duplicate is reported once, on the id */
    for (int i = 0; i < cfg->n_members; i++)
        if (!cfg->members[i].name[0] && cfg->members[i].id &&
            dw_config_member(cfg, cfg->members[i].id) == &cfg->members[i])
            snprintf(cfg->members[i].name, sizeof cfg->members[i].name, "n%llu",
                     (unsigned long long)cfg->members[i].id);
}

static void check_node(struct ctx *c)
{
    struct dw_config *cfg = c->cfg;
    if (cfg->node_id && cfg->n_members > 0 && !dw_config_member(cfg, cfg->node_id))
        cfg_err_at(c, "node.id", "%llu is not the id of any cluster.members entry",
                   (unsigned long long)cfg->node_id);

    check_metrics_address(c);

    if (!(c->seen & SEEN_ADMIN_SOCKET) && cfg->data_dir[0]) {
        size_t n = strlen(cfg->data_dir);
        const char *sep = cfg->data_dir[n - 1] == '/' ? "" : "/";
        if (n + strlen(sep) + strlen("admin.sock") > UNIX_PATH_MAX)
            cfg_err_at(c, "node.admin_socket", "the default <data_dir>/admin.sock is longer than a "
                                           "Unix socket path allows (max %u); set it",
                   UNIX_PATH_MAX);
        else if (snprintf(cfg->admin_socket, sizeof cfg->admin_socket, "%s%sadmin.sock",
                          cfg->data_dir, sep) >= (int)sizeof cfg->admin_socket)
            cfg_err_at(c, "node.admin_socket",
                       "the default <data_dir>/admin.sock is too long; set it");
    } else if (strlen(cfg->admin_socket) > UNIX_PATH_MAX) {
        cfg_err_at(c, "node.admin_socket", "too long for a Unix socket path (max %u)",
                   UNIX_PATH_MAX);
    }
}

/* Invalid numbers were left at 0; skip those to avoid a follow-up error. */
static void check_order(struct ctx *c, const char *a_path, unsigned a, const char *b_path,
                        unsigned b, bool strict)
{
    if (a && b && (strict ? a >= b : a > b))
        cfg_err_at(c, a_path, "must be %s %s (%u %s %u)", strict ? "less than" : "at most",
                   b_path, a, strict ? ">=" : ">", b);
}

static void check_numbers(struct ctx *c)
{
    const struct dw_config *cfg = c->cfg;
    check_order(c, "probe.timeout_ms", cfg->probe.timeout_ms, "probe.interval_ms",
                cfg->probe.interval_ms, false);
    check_order(c, "cluster.heartbeat_ms", cfg->cluster.heartbeat_ms,
                "cluster.election_timeout_ms", cfg->cluster.election_timeout_ms, true);
    check_order(c, "cluster.refresh_interval_ms", cfg->cluster.refresh_interval_ms,
                "cluster.observation_ttl_ms", cfg->cluster.observation_ttl_ms, true);
    check_order(c, "genesys.verify_interval_ms", cfg->genesys.verify_interval_ms,
                "genesys.verify_timeout_ms", cfg->genesys.verify_timeout_ms, false);
    check_order(c, "cluster.min_submit_interval_ms", cfg->cluster.min_submit_interval_ms,
                "cluster.refresh_interval_ms", cfg->cluster.refresh_interval_ms, true);
    /* a view must survive one late poll, or every poll hiccup turns the cloud signal unknown */
    if (cfg->genesys.cloud_ttl_ms && cfg->genesys.poll_interval_ms &&
        cfg->genesys.cloud_ttl_ms <= cfg->genesys.poll_interval_ms)
        cfg_err_at(c, "genesys.cloud_ttl_ms",
                   "must be greater than genesys.poll_interval_ms (%u <= %u)",
                   cfg->genesys.cloud_ttl_ms, cfg->genesys.poll_interval_ms);
}

/* Values already seen in one uniqueness scope, with where each was first seen. A hash index
 * keeps tens of thousands of Edge ids linear. */
struct seen_entry {
    char val[DW_ID_MAX];
    char path[96];
};
struct seen_buf {
    struct seen_entry *e;
    int *slot;  /* index into e, -1 = free */
    size_t mask;
};
struct seen_set {
    struct seen_buf *b;
    int n;
    const char *what;
    bool quote;
};

static struct seen_set seen_scope(struct seen_buf *b, const char *what, bool quote)
{
    memset(b->slot, 0xff, (b->mask + 1) * sizeof b->slot[0]);
    return (struct seen_set){ .b = b, .what = what, .quote = quote };
}

static size_t seen_hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

__attribute__((format(printf, 4, 5)))
static void seen_add(struct ctx *c, struct seen_set *s, const char *val, const char *fmt, ...)
{
    struct seen_entry *e = &s->b->e[s->n];
    va_list ap;
    if (!val[0])
        return; /* invalid or absent: already reported */
    va_start(ap, fmt);
    vsnprintf(e->path, sizeof e->path, fmt, ap);
    va_end(ap);
    size_t h = seen_hash(val) & s->b->mask;
    for (; s->b->slot[h] >= 0; h = (h + 1) & s->b->mask) {
        const struct seen_entry *first = &s->b->e[s->b->slot[h]];
        if (strcmp(first->val, val) == 0) {
            cfg_err_at(c, e->path, "duplicate %s %s%s%s (first at %s)", s->what,
                       s->quote ? "\"" : "", val, s->quote ? "\"" : "", first->path);
            return;
        }
    }
    snprintf(e->val, sizeof e->val, "%s", val);
    s->b->slot[h] = s->n++;
}

/* Entries of the largest scope the document can have. */
static size_t seen_cap(const struct dw_config *cfg)
{
    size_t n = 2 * (size_t)cfg->n_members + (size_t)cfg->n_sites + (size_t)cfg->n_groups +
               DW_MAX_TARGETS * DW_MAX_TRUNK_BASES + 1;
    for (int i = 0; i < cfg->n_sites; i++)
        n += (size_t)cfg->sites[i].n_edges;
    return n;
}

static void check_unique(struct ctx *c, struct seen_buf *buf)
{
    const struct dw_config *cfg = c->cfg;
    char num[24];

    struct seen_set ids = seen_scope(buf, "id", false);
    for (int i = 0; i < cfg->n_members; i++) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)cfg->members[i].id);
        seen_add(c, &ids, cfg->members[i].id ? num : "", "cluster.members[%d].id", i);
    }
    struct seen_set names = seen_scope(buf, "name", true);
    for (int i = 0; i < cfg->n_members; i++)
        seen_add(c, &names, cfg->members[i].name, "cluster.members[%d].name", i);
    /* raft and peer listeners share the host's port space: one scope for both */
    struct seen_set addrs = seen_scope(buf, "address", true);
    for (int i = 0; i < cfg->n_members; i++) {
        seen_add(c, &addrs, cfg->members[i].raft_address, "cluster.members[%d].raft_address", i);
        seen_add(c, &addrs, cfg->members[i].peer_address, "cluster.members[%d].peer_address", i);
    }

    struct seen_set sid = seen_scope(buf, "id", true);
    for (int i = 0; i < cfg->n_sites; i++)
        seen_add(c, &sid, cfg->sites[i].id, "sites[%d].id", i);
    struct seen_set eid = seen_scope(buf, "edge id", true);
    for (int i = 0; i < cfg->n_sites; i++)
        for (int j = 0; j < cfg->sites[i].n_edges; j++)
            seen_add(c, &eid, cfg->sites[i].edges[j].id, "sites[%d].edges[%d].id", i, j);

    struct seen_set gid = seen_scope(buf, "id", true);
    for (int i = 0; i < cfg->n_groups; i++)
        seen_add(c, &gid, cfg->groups[i].id, "failover_groups[%d].id", i);
    for (int i = 0; i < cfg->n_groups; i++) {
        const struct dw_group *g = &cfg->groups[i];
        struct seen_set tid = seen_scope(buf, "id", true);
        for (int j = 0; j < g->n_targets; j++)
            seen_add(c, &tid, g->targets[j].id, "failover_groups[%d].targets[%d].id", i, j);
        struct seen_set tb = seen_scope(buf, "trunk base id", true);
        for (int j = 0; j < g->n_targets; j++)
            for (int k = 0; k < g->targets[j].n_trunk_bases; k++)
                seen_add(c, &tb, g->targets[j].trunk_base_ids[k],
                         "failover_groups[%d].targets[%d].trunk_base_ids[%d]", i, j, k);
    }
}

static void run_check_unique(struct ctx *c)
{
    size_t cap = seen_cap(c->cfg), slots = 16;
    while (slots < 2 * cap)
        slots *= 2;
    struct seen_buf b = { .e = malloc(cap * sizeof *b.e), .slot = malloc(slots * sizeof *b.slot),
                          .mask = slots - 1 };
    if (b.e && b.slot)
        check_unique(c, &b);
    else
        cfg_err_at(c, "$", "out of memory");
    free(b.e);
    free(b.slot);
}

/* Edges in all sites: each costs a probe timer and a row in every observation. */
static void check_limits(struct ctx *c)
{
    long total = 0;
    for (int i = 0; i < c->cfg->n_sites; i++)
        total += c->cfg->sites[i].n_edges;
    if (total > DW_MAX_EDGES_TOTAL)
        cfg_err_at(c, "sites", "too many edges in all (%ld, max %d)", total, DW_MAX_EDGES_TOTAL);
    for (int i = 0; i < c->cfg->n_groups; i++) {
        const struct dw_group *g = &c->cfg->groups[i];
        char jp[64];

        snprintf(jp, sizeof jp, "failover_groups[%d].failback_retry_max_ms", i);
        if (g->failback_retry_max_ms < g->failback_retry_ms)
            cfg_err_at(c, jp, "must be at least failback_retry_ms (%u < %u)",
                       g->failback_retry_max_ms, g->failback_retry_ms);
    }
}

static void check_secret(struct ctx *c, const char *json_path, const char *file)
{
    char buf[SECRET_CHECK_MAX + 1], msg[256];
    if (!file[0] || !c->files)
        return;
    if (c->files->read_secret(file, buf, sizeof buf, msg, sizeof msg) != 0)
        cfg_err_at(c, json_path, "%s", msg);
    explicit_bzero(buf, sizeof buf);
}

/* Reads what this node shares with each other member into out (see dw_peer_secrets); every
 * problem is reported at cluster.peer_secret_dir. */
void cfg_check_peer_secrets(struct ctx *c, struct dw_peer_secrets *out)
{
    const struct dw_config *cfg = c->cfg;
    const char *jp = "cluster.peer_secret_dir", *dir = cfg->cluster.peer_secret_dir;
    const struct dw_config_files *fs = c->files;
    char path[DW_PATH_MAX + 32], msg[256], why[256];

    memset(out, 0, sizeof *out);
    if (!fs || !dir[0] || !dw_config_member(cfg, cfg->node_id) || c->members_bad)
        return;
    if (fs->directory(dir, why, sizeof why) != 0) {
        cfg_err_at(c, jp, "%s", why);
        return;
    }
    /* Present when a whole directory was copied between nodes, or when every member was given
     * one secret of its own: both leave some node able to authenticate as another. */
    if (dw_config_peer_secret_path(cfg, cfg->node_id, path, sizeof path) == 0 &&
        fs->exists(path))
        cfg_err_at(c, jp, "\"%s\" names this node: a node holds only the secrets it shares with "
                   "each other member", path);
    for (int i = 0; i < cfg->n_members; i++) {
        const struct dw_member *m = &cfg->members[i];
        if (m->id == cfg->node_id || !m->id)
            continue;
        if (dw_config_peer_secret_path(cfg, m->id, path, sizeof path) != 0) {
            cfg_err_at(c, jp, "too long to hold the secret files");
            return;
        }
        if (fs->read_secret(path, out->s[i], sizeof out->s[i], msg, sizeof msg) != 0) {
            cfg_err_at(c, jp, "secret shared with member %llu: %s", (unsigned long long)m->id, msg);
            continue;
        }
        if (strlen(out->s[i]) < DW_PEER_SECRET_MIN) {
            cfg_err_at(c, jp, "\"%s\" is shorter than %d bytes", path, DW_PEER_SECRET_MIN);
            continue;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(out->s[i], out->s[j]) == 0) {
                cfg_err_at(c, jp, "\"%s\" holds the same secret as the file for member %llu: every "
                           "pair of members needs its own", path,
                           (unsigned long long)cfg->members[j].id);
                break;
            }
    }
}

/* An override replaces the URL of the Edge's health_url probe (probes[0], see cfg_edge_check).
 * One naming no Edge is only noted: the committed config may have dropped that Edge. */
static void apply_overrides(struct ctx *c)
{
    struct dw_config *cfg = c->cfg;
    for (int k = 0; k < cfg->n_overrides; k++) {
        const struct dw_probe_override *po = &cfg->overrides[k];
        struct dw_edge *e = NULL;
        for (int i = 0; i < cfg->n_sites && !e; i++)
            for (int j = 0; j < cfg->sites[i].n_edges && !e; j++)
                if (strcmp(cfg->sites[i].edges[j].id, po->edge) == 0)
                    e = &cfg->sites[i].edges[j];
        if (!e) {
            if (!cfg->override_unmatched)
                cfg->override_unmatched = po->edge;
        } else if (!e->health_url[0] || e->n_probes < 1) {
            cfg_err_at(c, "node.probe_overrides", "%s: the Edge has no health_url to override",
                       po->edge);
        } else {
            memcpy(e->health_url, po->health_url, sizeof e->health_url);
            memcpy(e->probes[0].url, po->health_url, sizeof e->probes[0].url);
        }
    }
}

/* A route switched on and off (mode "enabled") follows one target: listed by a second target of
 * its group, a failover would enable it for the new target and then disable it for the old. */
static void check_route_owners(struct ctx *c)
{
    char path[128];
    for (int i = 0; i < c->cfg->n_groups; i++) {
        const struct dw_group *g = &c->cfg->groups[i];
        for (int j = 0; j < g->n_targets; j++)
            for (int r = 0; r < g->targets[j].n_routes; r++) {
                const struct dw_route_action *ra = &g->targets[j].routes[r];
                for (int k = 0; k < j; k++)
                    for (int q = 0; q < g->targets[k].n_routes; q++) {
                        const struct dw_route_action *rb = &g->targets[k].routes[q];
                        if ((ra->mode != DW_ROUTE_ENABLED && rb->mode != DW_ROUTE_ENABLED) ||
                            strcmp(ra->site_id, rb->site_id) != 0 ||
                            strcmp(ra->route_id, rb->route_id) != 0)
                            continue;
                        snprintf(path, sizeof path,
                                 "failover_groups[%d].targets[%d].outbound_routes[%d]", i, j, r);
                        cfg_err_at(c, path, "route \"%s\" is also listed by target \"%s\"; a "
                                   "route with mode \"enabled\" belongs to one target of its "
                                   "group", ra->route_id, g->targets[k].id);
                    }
            }
    }
}

void cfg_check_document(struct ctx *c)
{
    struct dw_peer_secrets peer;
    default_member_names(c);
    if (!c->cluster_only) {
        apply_overrides(c);
        check_node(c);
        check_genesys(c);
    }
    check_numbers(c);
    check_limits(c);
    run_check_unique(c);
    check_route_owners(c);
    cfg_check_peer_secrets(c, &peer);
    explicit_bzero(&peer, sizeof peer);
    check_secret(c, "genesys.client_secret_file", c->cfg->genesys.client_secret_file);
}
