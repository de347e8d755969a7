/* Fuzzes the entry codec and the FSM on a small 3-member config. The input is split at newlines;
 * each line goes through dw_entry_stamp and, stamped or not, through dw_fsm_apply, so later lines
 * meet the state earlier ones built. Neither may abort or leak.
 *
 * Every input starts from the state of a freshly opened FSM. Opening one costs milliseconds under
 * the sanitizers, so the FSM is opened once, its state snapshot, and after each input it is
 * rewound in place to that snapshot (dw_fsm_rewind), which also frees within the input whatever
 * the input made. With DW_FUZZ_ENTRY_FRESH set in the environment (the replay test sets it), each
 * input also runs on a newly opened FSM and the two must agree: the rewound start state, every
 * apply's result, the views and the final dump; a difference aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/entry.h"
#include "drwatch/fsm.h"

#define T0 1700000000000LL

int LLVMFuzzerInitialize(int *argc, char ***argv);
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

static struct dw_fsm *open_fresh(void)
{
    struct dw_fsm *f = NULL;
    char err[256];

    if (dw_fsm_open(&f, config(), err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_entry: open: %s\n", err);
        abort();
    }
    return f;
}

/* What one input did, for comparing a rewound FSM with a fresh one. */
struct outcome {
    uint64_t applies; /* FNV-1a over every apply's result */
    int verdicts[2];
    int active;
    int n_steps;
    struct dw_step_ref refs[8];
    char *dump;
};

static void run(struct dw_fsm *f, const uint8_t *data, size_t size, struct outcome *out)
{
    const char *p = (const char *)data, *end = p + size;
    char err[256];
    int64_t ts = T0;

    memset(out, 0, sizeof *out);
    out->applies = 14695981039346656037ull;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        char *stamped = dw_entry_stamp(p, len, ts, (uint64_t)(ts % 4), err, sizeof err);
        int rc;

        if (stamped != NULL) {
            rc = dw_fsm_apply(f, stamped, strlen(stamped));
            free(stamped);
        } else {
            rc = dw_fsm_apply(f, p, len); /* the log is outside input too */
        }
        out->applies = (out->applies ^ (uint64_t)rc) * 1099511628211ull;
        ts += 1000;
        p += len + (nl != NULL);
    }
    for (int s = 0; s < 2; s++)
        out->verdicts[s] = (int)dw_fsm_site_verdict(f, s);
    out->active = dw_fsm_active_target(f, 0);
    out->n_steps = dw_fsm_next_steps(f, out->refs, 8);
    if (out->n_steps < 0)
        abort();
    out->dump = dw_fsm_dump(f);
}

static void must_agree(const struct outcome *a, const struct outcome *b)
{
    bool same = a->applies == b->applies && a->verdicts[0] == b->verdicts[0] &&
                a->verdicts[1] == b->verdicts[1] && a->active == b->active &&
                a->n_steps == b->n_steps && (a->dump == NULL) == (b->dump == NULL) &&
                (a->dump == NULL || strcmp(a->dump, b->dump) == 0);

    for (int i = 0; same && i < a->n_steps && i < 8; i++) {
        const struct dw_step_ref *x = &a->refs[i], *y = &b->refs[i];

        same = x->op == y->op && x->seq == y->seq && x->n_steps == y->n_steps &&
               strcmp(x->action, y->action) == 0 && x->group == y->group &&
               x->target == y->target && x->status == y->status;
    }
    if (!same) {
        fprintf(stderr, "fuzz_entry: the rewound FSM and a fresh one disagree\n"
                        "-- rewound:\n%s\n-- fresh:\n%s\n",
                a->dump ? a->dump : "(no dump)", b->dump ? b->dump : "(no dump)");
        abort();
    }
}

static struct dw_fsm *fsm;  /* at the base state between inputs */
static void *base;          /* its snapshot, taken right after dw_fsm_open */
static size_t base_len;
static char *base_dump;     /* with DW_FUZZ_ENTRY_FRESH: the fresh state's dump */

static void start(void)
{
    if (fsm != NULL)
        return;
    fsm = open_fresh();
    if (dw_fsm_snapshot(fsm, &base, &base_len) != 0)
        abort();
    if (getenv("DW_FUZZ_ENTRY_FRESH") != NULL)
        base_dump = dw_fsm_dump(fsm);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    start();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome out;

    start(); /* the replay driver does not call LLVMFuzzerInitialize */
    if (base_dump != NULL) {
        char *now = dw_fsm_dump(fsm);

        if (now == NULL || strcmp(now, base_dump) != 0 || dw_fsm_applied(fsm) != 0 ||
            dw_fsm_rejected(fsm) != 0 || dw_fsm_last_ts(fsm) != 0 ||
            dw_fsm_config_version(fsm) != 0 || dw_fsm_config(fsm) != config() ||
            dw_fsm_last_error(fsm)[0] != '\0') {
            fprintf(stderr, "fuzz_entry: the rewound FSM is not as opened:\n%s\n--\n%s\n",
                    now ? now : "(no dump)", base_dump);
            abort();
        }
        free(now);
    }
    run(fsm, data, size, &out);
    if (base_dump != NULL) {
        struct dw_fsm *f = open_fresh();
        struct outcome fresh;

        run(f, data, size, &fresh);
        must_agree(&out, &fresh);
        free(fresh.dump);
        dw_fsm_close(f);
    }
    free(out.dump);
    if (dw_fsm_rewind(fsm, base, base_len) != 0)
        abort();
    return 0;
}
