/* Owns the site verdicts: the probe quorum, the Genesys (cloud) signal and how they combine. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/verdict.h"
#include "fsm_internal.h"

/* Fills one observation slot per voting member for a site; returns how many, -1 on error. */
static int load_observations(struct dw_fsm *f, const char *site, struct dw_observation *obs)
{
    uint64_t voters[DW_MAX_MEMBERS];
    int n = fsm_voters(f->cfg, voters);

    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s = fsm_stmt(f, ST_OBS_GET);
        int rc;

        memset(&obs[i], 0, sizeof obs[i]);
        sqlite3_bind_int64(s, 1, (sqlite3_int64)voters[i]);
        fsm_bind_text(s, 2, site);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            obs[i].present = true;
            obs[i].state = fsm_health_of(fsm_col_text(s, 0));
            obs[i].refreshed_ms = sqlite3_column_int64(s, 1);
            obs[i].tilt = sqlite3_column_int(s, 2) != 0;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return -1;
    }
    return n;
}

const char *fsm_combine_name(enum dw_combine c)
{
    switch (c) {
    case DW_COMBINE_AND_GENESYS:
        return "probes_and_genesys";
    case DW_COMBINE_OR_GENESYS:
        return "probes_or_genesys";
    case DW_COMBINE_PROBES:
        break;
    }
    return "probes";
}

const char *fsm_rule_name(enum dw_site_rule r)
{
    switch (r) {
    case DW_RULE_ALL:
        return "all";
    case DW_RULE_AT_LEAST:
        return "at_least";
    case DW_RULE_ANY:
        break;
    }
    return "any";
}

/* One Edge's cloud state as of now: UNKNOWN without a genesys_edge_id, without a report, or
 * when the report is older than genesys.cloud_ttl_ms. *ts_out gets the report's time (0 none);
 * *disc_out whether a fresh DOWN comes only from unconnected trunks (the Edge not OFFLINE). */
int fsm_cloud_edge_state(struct dw_fsm *f, const struct dw_edge *edge, int64_t now,
                         enum dw_health *out, int64_t *ts_out, bool *fresh_out, bool *disc_out)
{
    sqlite3_stmt *s;
    int rc;

    *out = DW_UNKNOWN;
    *ts_out = 0;
    *fresh_out = false;
    *disc_out = false;
    if (edge->genesys_edge_id[0] == '\0')
        return 0;
    s = fsm_stmt(f, ST_CLOUD_GET);
    fsm_bind_text(s, 1, edge->id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *ts_out = sqlite3_column_int64(s, 1);
        /* a report stamped later than now (a leader's clock ahead) counts as fresh */
        *fresh_out = now - *ts_out <= (int64_t)f->cfg->genesys.cloud_ttl_ms;
        if (*fresh_out && dw_cloud_report_parse(fsm_col_text(s, 0), out, disc_out) != 0)
            *out = DW_UNKNOWN;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

struct signal_counts {
    int up, down, unknown, n, connecting;
};

/* When a failover last started activating a target at this site (the committed step time,
 * never a clock): *at = INT64_MIN when none ever did. */
static int site_activated_at(struct dw_fsm *f, int site, int64_t *at)
{
    *at = INT64_MIN;
    for (int g = 0; g < f->cfg->n_groups; g++) {
        const struct dw_group *grp = &f->cfg->groups[g];

        for (int t = 0; t < grp->n_targets; t++) {
            sqlite3_stmt *s;
            int rc;

            if (grp->targets[t].site != site)
                continue;
            s = fsm_stmt(f, ST_ACTIVATE_STARTED);
            fsm_bind_text(s, 1, grp->id);
            fsm_bind_text(s, 2, grp->targets[t].id);
            rc = sqlite3_step(s);
            if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL &&
                sqlite3_column_int64(s, 0) > *at)
                *at = sqlite3_column_int64(s, 0);
            sqlite3_reset(s);
            if (rc != SQLITE_ROW)
                return -1;
        }
    }
    return 0;
}

/* The site rule applied to its Edges' cloud states (not sticky: stale reports count as
 * UNKNOWN). Within genesys.cloud_grace_ms after an activate step started at the site, an Edge
 * whose only fault is unconnected trunks counts as UNKNOWN: freshly activated trunks report
 * disconnected while they connect, and calling that DOWN would fail the site over by itself.
 * An OFFLINE Edge is not connecting and still counts as DOWN. */
static int cloud_site_verdict(struct dw_fsm *f, const struct dw_site *site, int64_t now,
                              enum dw_health *out, struct signal_counts *cnt)
{
    enum dw_health states[DW_MAX_EDGES];
    int n = site->n_edges < DW_MAX_EDGES ? site->n_edges : DW_MAX_EDGES;
    int64_t activated;
    bool grace;

    memset(cnt, 0, sizeof *cnt);
    if (site_activated_at(f, (int)(site - f->cfg->sites), &activated) != 0)
        return -1;
    /* a step stamped after now (a leader's clock ahead) keeps the grace too */
    grace = activated != INT64_MIN && now - activated < (int64_t)f->cfg->genesys.cloud_grace_ms;
    for (int j = 0; j < n; j++) {
        int64_t ts;
        bool fresh, disc;

        if (fsm_cloud_edge_state(f, &site->edges[j], now, &states[j], &ts, &fresh, &disc) != 0)
            return -1;
        if (disc && grace) {
            states[j] = DW_UNKNOWN;
            cnt->connecting++;
        }
        cnt->up += states[j] == DW_UP;
        cnt->down += states[j] == DW_DOWN;
        cnt->unknown += states[j] == DW_UNKNOWN;
    }
    cnt->n = n;
    *out = dw_site_verdict(states, n, site->rule, site->at_least);
    return 0;
}

/* How the site's two signals make its verdict (docs/detection.md). */
static enum dw_health combine(enum dw_combine how, enum dw_health cur, enum dw_health probe,
                              enum dw_health cloud)
{
    /* no fresh probe majority: only Genesys may still say DOWN (and only where it alone can) */
    if (probe == DW_UNKNOWN)
        return how == DW_COMBINE_OR_GENESYS && cloud == DW_DOWN ? DW_DOWN : DW_UNKNOWN;
    switch (how) {
    case DW_COMBINE_AND_GENESYS:
        if (probe == DW_DOWN && cloud == DW_DOWN)
            return DW_DOWN;
        return probe == DW_UP ? DW_UP : cur;
    case DW_COMBINE_OR_GENESYS:
        if (probe == DW_DOWN || cloud == DW_DOWN)
            return DW_DOWN;
        return probe == DW_UP ? DW_UP : cur;
    case DW_COMBINE_PROBES:
        break;
    }
    return probe;
}

static int update_site(struct dw_fsm *f, const struct dw_site *site, int64_t now, bool *changed)
{
    const struct dw_config *cfg = f->cfg;
    int64_t ttl = cfg->cluster.observation_ttl_ms;
    struct dw_observation obs[DW_MAX_MEMBERS];
    int n;
    enum dw_health cur, cur_probe, cur_cloud, probe, cloud = DW_UNKNOWN, next;
    struct signal_counts cc = {0};
    bool uses_cloud = site->combine != DW_COMBINE_PROBES;
    char probes_txt[64], cloud_txt[128] = "";
    const char *mover;
    int up = 0, down = 0;
    sqlite3_stmt *s;

    if ((n = load_observations(f, site->id, obs)) < 0 ||
        fsm_site_row(f, site->id, &cur, &cur_probe, &cur_cloud) != 0)
        return -1;
    probe = dw_quorum_verdict(cur_probe, obs, n, now, ttl);
    if (uses_cloud && cloud_site_verdict(f, site, now, &cloud, &cc) != 0)
        return -1;
    next = combine(site->combine, cur, probe, cloud);
    if (probe == cur_probe && cloud == cur_cloud && next == cur)
        return 0;

    for (int m = 0; m < n; m++) {
        if (obs[m].tilt || !dw_observation_fresh(&obs[m], now, ttl))
            continue;
        down += obs[m].state == DW_DOWN;
        up += obs[m].state == DW_UP;
    }
    snprintf(probes_txt, sizeof probes_txt, "down %d/%d fresh, up %d/%d", down, n, up, n);
    if (uses_cloud)
        snprintf(cloud_txt, sizeof cloud_txt, "%d/%d Edges down, %d up, %d unknown%s, rule %s",
                 cc.down, cc.n, cc.up, cc.unknown,
                 cc.connecting > 0 ? " (trunks connecting after an activation)" : "",
                 fsm_rule_name(site->rule));

    if (probe != cur_probe || cloud != cur_cloud) {
        s = fsm_stmt(f, ST_SITE_SET_SIGNALS);
        fsm_bind_text(s, 1, site->id);
        fsm_bind_text(s, 2, dw_health_name(probe));
        fsm_bind_text(s, 3, dw_health_name(cloud));
        if (fsm_run(s) != 0)
            return -1;
    }
    /* with one signal the verdict row says it all; with two, each signal's moves are kept */
    if (uses_cloud && probe != cur_probe &&
        fsm_history(f, now, "signal", "%s: probes %s -> %s (%s)", site->id,
                    dw_health_name(cur_probe), dw_health_name(probe), probes_txt) != 0)
        return -1;
    if (uses_cloud && cloud != cur_cloud &&
        fsm_history(f, now, "signal", "%s: genesys %s -> %s (%s)", site->id,
                    dw_health_name(cur_cloud), dw_health_name(cloud), cloud_txt) != 0)
        return -1;
    if (next == cur)
        return 0;

    mover = probe != cur_probe && cloud != cur_cloud ? "probes+genesys"
            : cloud != cur_cloud                     ? "genesys"
                                                     : "probes";
    s = fsm_stmt(f, ST_SITE_SET);
    fsm_bind_text(s, 1, site->id);
    fsm_bind_text(s, 2, dw_health_name(next));
    sqlite3_bind_int64(s, 3, now);
    if (fsm_run(s) != 0)
        return -1;
    if (!uses_cloud) {
        if (fsm_history(f, now, "verdict", "%s: %s -> %s (%s) by probes", site->id,
                        dw_health_name(cur), dw_health_name(next), probes_txt) != 0)
            return -1;
    } else if (fsm_history(f, now, "verdict",
                           "%s: %s -> %s (%s; probes %s, genesys %s: %s) by %s, combine %s",
                           site->id, dw_health_name(cur), dw_health_name(next), probes_txt,
                           dw_health_name(probe), dw_health_name(cloud), cloud_txt, mover,
                           fsm_combine_name(site->combine)) != 0) {
        return -1;
    }
    *changed = true;
    return 0;
}

int fsm_update_verdicts(struct dw_fsm *f, int64_t now, bool *changed)
{
    *changed = false;
    for (int i = 0; i < f->cfg->n_sites; i++) {
        if (update_site(f, &f->cfg->sites[f->site_order[i]], now, changed) != 0)
            return -1;
    }
    return 0;
}
