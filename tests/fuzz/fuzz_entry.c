/* Fuzzes the entry codec and the FSM on a small 3-member config. The input is split at newlines;
 * each line goes through dw_entry_stamp and, stamped or not, through dw_fsm_apply, so later lines
 * meet the state earlier ones built. Neither may abort or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/entry.h"
#include "drwatch/fsm.h"

#define T0 1700000000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void add_site(struct dw_config *cfg, const char *id, int n_edges, enum dw_combine combine)
{
    struct dw_site *s = &cfg->sites[cfg->n_sites++];

    snprintf(s->id, sizeof s->id, "%s", id);
    s->combine = combine;
    s->edges = calloc((size_t)n_edges, sizeof *s->edges);
    if (s->edges == NULL)
        abort();
    for (int i = 0; i < n_edges; i++) {
        struct dw_edge *e = &s->edges[s->n_edges++];

        snprintf(e->id, sizeof e->id, "%s-e%d", id, i + 1);
        snprintf(e->genesys_edge_id, sizeof e->genesys_edge_id, "g-%s-e%d", id, i + 1);
        snprintf(e->health_url, sizeof e->health_url, "http://10.0.%d.%d/health", cfg->n_sites,
                 i + 1);
        e->n_probes = 1;
    }
}

static void add_target(struct dw_group *g, const char *id, int site, const char *trunk_base)
{
    struct dw_target *t = &g->targets[g->n_targets++];

    snprintf(t->id, sizeof t->id, "%s", id);
    t->site = site;
    t->n_trunk_bases = 1;
    snprintf(t->trunk_base_ids[0], sizeof t->trunk_base_ids[0], "%s", trunk_base);
}

/* Built once: the config is read-only for the FSM. */
static struct dw_config *config(void)
{
    static struct dw_config cfg;
    static int built;
    struct dw_group *g;

    if (built)
        return &cfg;
    built = 1;
    cfg.node_id = 1;
    cfg.n_members = 3;
    for (int i = 0; i < 3; i++) {
        struct dw_member *m = &cfg.members[i];

        m->id = (uint64_t)i + 1;
        snprintf(m->name, sizeof m->name, "n%d", i + 1);
        snprintf(m->raft_address, sizeof m->raft_address, "127.0.0.1:%d", 9001 + i);
        snprintf(m->peer_address, sizeof m->peer_address, "127.0.0.1:%d", 9101 + i);
    }
    cfg.cluster.election_timeout_ms = 1000;
    cfg.cluster.heartbeat_ms = 100;
    cfg.cluster.observation_ttl_ms = 15000;
    cfg.cluster.refresh_interval_ms = 5000;
    cfg.genesys.cloud_ttl_ms = 35000;
    cfg.probe.interval_ms = 1000;
    cfg.probe.timeout_ms = 800;
    cfg.probe.fail_threshold = 3;
    cfg.probe.recover_threshold = 2;
    cfg.sites = calloc(2, sizeof *cfg.sites);
    if (cfg.sites == NULL)
        abort();
    add_site(&cfg, "site-a", 2, DW_COMBINE_AND_GENESYS);
    add_site(&cfg, "site-b", 1, DW_COMBINE_PROBES);
    g = &cfg.groups[cfg.n_groups++];
    snprintf(g->id, sizeof g->id, "carrier-1");
    add_target(g, "premise-a", 0, "tb-a");
    add_target(g, "premise-b", 1, "tb-b");
    add_target(g, "cloud", -1, "tb-cloud");
    return &cfg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dw_fsm *f = NULL;
    struct dw_step_ref refs[8];
    const char *p = (const char *)data, *end = p + size;
    char err[256];
    int64_t ts = T0;

    if (dw_fsm_open(&f, config(), err, sizeof err) != 0)
        abort();
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        char *stamped = dw_entry_stamp(p, len, ts, (uint64_t)(ts % 4), err, sizeof err);

        if (stamped != NULL) {
            dw_fsm_apply(f, stamped, strlen(stamped));
            free(stamped);
        } else {
            dw_fsm_apply(f, p, len); /* the log is outside input too */
        }
        ts += 1000;
        p += len + (nl != NULL);
    }
    for (int s = 0; s < 2; s++)
        dw_fsm_site_verdict(f, s);
    dw_fsm_active_target(f, 0);
    if (dw_fsm_next_steps(f, refs, 8) < 0)
        abort();
    free(dw_fsm_dump(f));
    dw_fsm_close(f);
    return 0;
}
