/* A year of history-producing entries through the FSM, then the cost of what reads it: snapshot,
 * restore, dw_fsm_status_json, dw_fsm_history_json, dump. Run by tests/bench/history. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "drwatch/entry.h"
#include "drwatch/fsm.h"

#define T0 1700000000000LL
#define MINUTE_MS ((int64_t)60000)
#define DAY_MS ((int64_t)86400000)

static void die(const char *what)
{
    fprintf(stderr, "bench_history: %s\n", what);
    exit(1);
}

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void site(struct dw_config *cfg, const char *id)
{
    struct dw_site *s = &cfg->sites[cfg->n_sites++];

    snprintf(s->id, sizeof s->id, "%s", id);
    s->edges = calloc(1, sizeof *s->edges);
    if (s->edges == NULL)
        die("out of memory");
    s->n_edges = 1;
    snprintf(s->edges[0].id, sizeof s->edges[0].id, "%s-edge1", id);
}

static void target(struct dw_group *g, const char *id, int site_ix)
{
    struct dw_target *t = &g->targets[g->n_targets++];

    snprintf(t->id, sizeof t->id, "%s", id);
    t->site = site_ix;
    t->n_trunk_bases = 1;
    snprintf(t->trunk_base_ids[0], sizeof t->trunk_base_ids[0], "tb-%s", id);
}

/* Three members, two sites of one Edge, one group premise-a, premise-b, cloud. The TTL is an
 * hour: the bench leaves out the refreshes between events, which write no history. */
static struct dw_config *config(unsigned days, unsigned max_rows)
{
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_group *g;

    if (cfg == NULL || (cfg->sites = calloc(2, sizeof *cfg->sites)) == NULL)
        die("out of memory");
    cfg->node_id = 1;
    cfg->n_members = 3;
    for (int i = 0; i < 3; i++)
        cfg->members[i].id = (uint64_t)i + 1;
    cfg->cluster.observation_ttl_ms = 3600000;
    cfg->cluster.refresh_interval_ms = 5000;
    cfg->cluster.history_retention_days = days;
    cfg->cluster.history_max_rows = max_rows;
    site(cfg, "site-a");
    site(cfg, "site-b");
    g = &cfg->groups[cfg->n_groups++];
    snprintf(g->id, sizeof g->id, "carrier-1");
    target(g, "premise-a", 0);
    target(g, "premise-b", 1);
    target(g, "cloud", -1);
    return cfg;
}

static int64_t applied_at; /* the stamp of the next entry */

static void apply(struct dw_fsm *f, char *unstamped)
{
    char err[256];
    char *e;

    if (unstamped == NULL)
        die("entry not built");
    e = dw_entry_stamp(unstamped, strlen(unstamped), applied_at++, 1, err, sizeof err);
    free(unstamped);
    if (e == NULL)
        die(err);
    if (dw_fsm_apply(f, e, strlen(e)) != DW_FSM_APPLIED)
        die("entry not applied");
    free(e);
}

/* Every node observes the two sites; then any planned step is walked to done. */
static void event(struct dw_fsm *f, const struct dw_config *cfg, enum dw_health a,
                  enum dw_health b)
{
    enum dw_health st[2] = {a, b};
    struct dw_step_ref r[4];

    for (uint64_t n = 1; n <= 3; n++)
        apply(f, dw_entry_observe(cfg, n, false, st));
    while (dw_fsm_next_steps(f, r, 4) >= 1) {
        if (r[0].status == DW_STEP_PENDING)
            apply(f, dw_entry_step(r[0].op, r[0].seq, DW_STEP_STARTED, NULL));
        apply(f, dw_entry_step(r[0].op, r[0].seq, DW_STEP_DONE, "ok"));
    }
}

static int64_t count(struct dw_fsm *f, const char *table)
{
    char sql[64];
    sqlite3_stmt *s;
    int64_t n = -1;

    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    if (sqlite3_prepare_v2(dw_fsm_db(f), sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

int main(int argc, char **argv)
{
    unsigned days = argc > 1 ? (unsigned)atoi(argv[1]) : 90;
    unsigned max_rows = argc > 2 ? (unsigned)atoi(argv[2]) : 100000;
    int64_t every = (int64_t)(argc > 3 ? atoi(argv[3]) : 30) * MINUTE_MS;
    struct dw_config *cfg = config(days, max_rows);
    struct dw_fsm *f, *g;
    char err[256];
    void *buf;
    size_t len;
    double t, t_year, t_snap, t_restore, t_status, t_hist, t_dump, t_next, t_last;
    struct dw_step_ref r[4];
    int64_t events = 0;
    cJSON *j;
    char *d;

    if (dw_fsm_open(&f, cfg, err, sizeof err) != 0 || dw_fsm_open(&g, cfg, err, sizeof err) != 0)
        die(err);
    applied_at = T0;
    event(f, cfg, DW_UP, DW_UP);
    /* a year of: A dies (failover to B), A back, B dies (failover to A), B back, ... */
    t = now_ms();
    for (int64_t at = T0 + every; at < T0 + 365 * DAY_MS; at += every, events++) {
        static const enum dw_health cycle[4][2] = {
            {DW_DOWN, DW_UP}, {DW_UP, DW_UP}, {DW_UP, DW_DOWN}, {DW_UP, DW_UP}};

        applied_at = at;
        event(f, cfg, cycle[events % 4][0], cycle[events % 4][1]);
    }
    t_year = now_ms() - t;
    /* the cost of one more entry, and of the actuator's question after each, after a year */
    t = now_ms();
    event(f, cfg, DW_UP, DW_UP);
    t_last = (now_ms() - t) / 3;
    t = now_ms();
    if (dw_fsm_next_steps(f, r, 4) < 0)
        die("next steps");
    t_next = now_ms() - t;

    t = now_ms();
    if (dw_fsm_snapshot(f, &buf, &len) != 0)
        die("snapshot");
    t_snap = now_ms() - t;
    t = now_ms();
    if (dw_fsm_restore(g, buf, len) != 0)
        die("restore");
    t_restore = now_ms() - t;
    sqlite3_free(buf);
    t = now_ms();
    j = dw_fsm_status_json(g);
    t_status = now_ms() - t;
    if (j == NULL)
        die("status");
    cJSON_Delete(j);
    t = now_ms();
    j = dw_fsm_history_json(g, DW_FSM_HISTORY_MAX);
    t_hist = now_ms() - t;
    if (j == NULL)
        die("history");
    cJSON_Delete(j);
    t = now_ms();
    d = dw_fsm_dump_max(g, DW_FSM_DUMP_MAX);
    t_dump = now_ms() - t;

    printf("retention_days %u max_rows %u event_every_min %" PRId64 "\n", days, max_rows,
           every / MINUTE_MS);
    printf("events %" PRId64 " entries %" PRIu64 " apply_total_ms %.0f apply_mean_us %.1f\n",
           events, dw_fsm_applied(f), t_year, t_year * 1e3 / (double)dw_fsm_applied(f));
    printf("last_entry_ms %.2f next_steps_ms %.2f\n", t_last, t_next);
    printf("rows history %" PRId64 " operations %" PRId64 " steps %" PRId64 "\n",
           count(f, "history"), count(f, "operations"), count(f, "steps"));
    printf("snapshot_bytes %zu snapshot_ms %.2f restore_ms %.2f\n", len, t_snap, t_restore);
    printf("status_json_ms %.2f history_json_10000_ms %.2f\n", t_status, t_hist);
    printf("dump_ms %.2f dump_bytes %zu%s\n", t_dump, d ? strlen(d) : 0,
           d ? "" : " (refused: over the cap)");
    free(d);
    dw_fsm_close(g);
    dw_fsm_close(f);
    dw_config_free(cfg);
    free(cfg);
    return 0;
}
