#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "drwatch/actuator.h"
#include "drwatch/admin.h"
#include "drwatch/cfgfile.h"
#include "drwatch/cloud.h"
#include "drwatch/entry.h"
#include "drwatch/fsm.h"
#include "drwatch/genesys.h"
#include "drwatch/http.h"
#include "drwatch/jsondiff.h"
#include "drwatch/log.h"
#include "drwatch/metrics.h"
#include "drwatch/notify.h"
#include "drwatch/peer.h"
#include "drwatch/probe.h"
#include "drwatch/raftnode.h"
#include "drwatch/sdnotify.h"
#include "drwatch/tilt.h"

#include "build_info.h"
#include "cfgadmin.h"
#include "opsadmin.h"
#include "watchadmin.h"
#include "node.h"

#define SUBMIT_RETRY_MS 300
/* A replaced config is freed this long after, plus 8 Genesys request timeouts (a call and its
 * retries): components closed with it may still be finishing a request that reads it. */
#define RETIRE_MS (10 * 60 * 1000)

struct retired {
    struct dw_config *cfg;
    uint64_t at;      /* uv_now() when it may go */
    struct retired *next;
};

struct dw_node {
    uv_loop_t *loop;
    const struct dw_config *cfg;  /* what the components run by: eff, or file before a commit */
    const struct dw_config *file; /* the node's file: raft, listeners, bootstrap */
    cJSON *local_doc;             /* the file as JSON: its node-local part is merged in */
    struct dw_config *eff;        /* the committed config with the node-local settings */
    struct retired *retired;
    uv_timer_t reconf;            /* runs config work outside raft's callbacks */
    int64_t cfg_version;          /* the committed version the components run by */
    bool local_differs;           /* the file's cluster part is not the committed one */
    char differences[4096];
    char config_error[600];       /* why the committed version could not be run here */
    uint64_t config_errors;
    bool bootstrapping;           /* the bootstrap config entry is in flight */
    bool secrets_missing;         /* running the committed version without some peer secrets */
    double overload_rate;         /* lowest probe rate this node was overloaded at, 0 = never */
    struct dw_peer_secrets peer_secrets;
    char client_secret[1024];
    struct dw_curlm *curlm;
    struct dw_fsm *fsm;
    struct dw_raft *raft;
    struct dw_peer *peer;
    struct dw_genesys *genesys;
    struct dw_actuator *actuator;
    struct dw_notifier *notifier;
    struct dw_cloud *cloud;
    struct dw_prober *prober;
    struct dw_admin *admin;
    struct dw_cfgadmin *cfgadmin;
    struct dw_watchadmin *watchadmin;
    struct dw_metrics *metrics;
    struct dw_tilt *tilt;
    /* members heard from (a fresh observation refresh) since this node started, and those
     * lost since: logged when one goes silent for observation_ttl_ms and when it is back */
    struct {
        uint64_t id;
        bool lost;
    } heard[DW_MAX_MEMBERS];
    int n_heard;
    int64_t started_ms;
    struct dw_sdnotify *sd;   /* NULL unless run by a service manager */
    uint64_t last_submit;     /* uv_now() of the last observation sent */
    uint64_t submitted, submit_failed;
    uv_timer_t refresh;       /* periodic observation refresh */
    uv_timer_t retry;         /* resubmits after a failed forward */
    int timers_open;
    int submitting;
    int dirty;                /* local view changed (or refresh due) since the last submission */
    unsigned submit_failures; /* consecutive, for log rate limiting */
    int stopping;
};

static void submit(struct dw_node *n);

static void retry_cb(uv_timer_t *t)
{
    submit(t->data);
}

static void submitted(void *data, int status, const char *errmsg)
{
    struct dw_node *n = data;
    n->submitting = 0;
    if (n->stopping)
        return;
    if (status != 0) {
        n->submit_failed++;
        /* First failure and then every 20th: an unreachable leader must not flood the log. */
        if (n->submit_failures++ % 20 == 0)
            dw_log(DW_LOG_WARN, "node", "observation not committed (%u in a row): %s",
                   n->submit_failures, errmsg ? errmsg : "unknown");
        n->dirty = 1;
        uv_timer_start(&n->retry, retry_cb, SUBMIT_RETRY_MS, 0);
        return;
    }
    if (n->submit_failures > 0)
        dw_log(DW_LOG_INFO, "node", "observations committed again after %u failures",
               n->submit_failures);
    else
        dw_log_kv(DW_LOG_DEBUG, "node", DW_LOG_FIELDS(DW_LI("member", n->file->node_id)),
                  "observation committed");
    n->submit_failures = 0;
    /* Not submit() here: on the leader this runs inside raft's apply path, and raft must not be
     * re-entered from its own callbacks. */
    if (n->dirty && !uv_is_active((uv_handle_t *)&n->retry))
        uv_timer_start(&n->retry, retry_cb, 0, 0);
}

/* At most one observation in flight and at least min_submit_interval_ms between two: however many
 * Edges change at once, a node adds a bounded number of entries to the log (docs/detection.md). */
static void submit(struct dw_node *n)
{
    if (n->stopping || n->submitting)
        return;
    uint64_t now = uv_now(n->loop), floor = n->cfg->cluster.min_submit_interval_ms;
    if (n->last_submit != 0 && now - n->last_submit < floor) {
        if (!uv_is_active((uv_handle_t *)&n->retry))
            uv_timer_start(&n->retry, retry_cb, floor - (now - n->last_submit), 0);
        return;
    }
    enum dw_health *states = calloc((size_t)n->cfg->n_sites + 1, sizeof *states);
    if (states == NULL)
        return;
    for (int i = 0; i < n->cfg->n_sites; i++)
        states[i] = dw_prober_site(n->prober, i);
    char *e = dw_entry_observe(n->cfg, n->cfg->node_id, dw_tilt_active(n->tilt), states);
    free(states);
    if (e == NULL)
        return;
    n->last_submit = now;
    n->submitted++;
    n->dirty = 0;
    n->submitting = 1;
    if (dw_peer_submit(n->peer, e, submitted, n) != 0) {
        n->submitting = 0;
        n->dirty = 1;
    }
    free(e);
}

static void reconf_cb(uv_timer_t *t);

static void refresh_cb(uv_timer_t *t)
{
    struct dw_node *n = t->data;
    if (n->config_error[0])
        uv_timer_start(&n->reconf, reconf_cb, 0, 0);
    n->dirty = 1;
    submit(n);
}

static void site_changed(void *data, int site, enum dw_health old_state, enum dw_health new_state)
{
    struct dw_node *n = data;
    (void)site, (void)old_state, (void)new_state; /* the prober logs the change */
    n->dirty = 1;
    submit(n);
}

static void tilt_changed(struct dw_tilt *t, bool active, void *data)
{
    struct dw_node *n = data;
    (void)t; /* the tilt module logs the change; the cluster learns it now */
    dw_raft_set_tilt(n->raft, active); /* a leader in TILT stops stamping and hands over */
    n->dirty = 1;
    submit(n);
}

/* Probe runs per second the config asks of this node. */
static double probe_rate(const struct dw_config *cfg)
{
    double runs = 0;
    for (int s = 0; s < cfg->n_sites; s++)
        for (int e = 0; e < cfg->sites[s].n_edges; e++)
            runs += cfg->sites[s].edges[e].n_probes;
    return cfg->probe.interval_ms ? runs * 1000.0 / cfg->probe.interval_ms : 0;
}

/* The lowest probe rate this node was ever overloaded at, kept in data_dir so a restart with a
 * config asking as much warns at once; 0 when never. */
static double overload_rate_read(const struct dw_node *n)
{
    char path[DW_PATH_MAX + 32];
    double rate = 0;
    snprintf(path, sizeof path, "%s/probe-overload", n->file->data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lf", &rate) != 1 || rate < 0)
            rate = 0;
        fclose(f);
    }
    return rate;
}

/* A prober that cannot keep its schedule makes this node abstain, like a stalled loop. */
static void probe_overload(void *data, const char *why)
{
    struct dw_node *n = data;
    dw_tilt_trip(n->tilt, why);
    double rate = probe_rate(n->cfg);
    if (n->overload_rate > 0 && n->overload_rate <= rate)
        return; /* nothing new to remember: no file I/O while overloaded */
    n->overload_rate = rate;
    char path[DW_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/probe-overload", n->file->data_dir);
    FILE *f = fopen(path, "w"); /* once per new low: a few bytes */
    if (f) {
        fprintf(f, "%.0f\n", rate);
        fclose(f);
    }
}

static void check_members(struct dw_node *n)
{
    const struct dw_config *c = dw_fsm_config(n->fsm);
    int64_t now = dw_fsm_last_ts(n->fsm), ttl = c->cluster.observation_ttl_ms;

    if (now < n->started_ms) /* replaying history at start */
        return;
    for (int i = 0; i < c->n_members; i++) {
        uint64_t id = c->members[i].id;
        int64_t at = dw_fsm_node_refreshed(n->fsm, id);
        bool fresh = at >= 0 && now - at <= ttl;
        int k = 0;
        while (k < n->n_heard && n->heard[k].id != id)
            k++;
        if (k == n->n_heard) {
            /* known once heard from: a member that never reported is not news */
            if (!fresh || k == DW_MAX_MEMBERS)
                continue;
            n->heard[n->n_heard].id = id;
            n->heard[n->n_heard++].lost = false;
            continue;
        }
        if (fresh == !n->heard[k].lost)
            continue;
        n->heard[k].lost = !fresh;
        if (!fresh)
            dw_log_kv(DW_LOG_WARN, "node",
                      DW_LOG_FIELDS(DW_LI("member", id), DW_LS("name", c->members[i].name[0]
                                                                ? c->members[i].name : NULL),
                                    DW_LI("silent_ms", at >= 0 ? now - at : -1)),
                      "member lost: no observation for longer than observation_ttl_ms (%lld ms)",
                      (long long)ttl);
        else
            dw_log_kv(DW_LOG_INFO, "node",
                      DW_LOG_FIELDS(DW_LI("member", id), DW_LS("name", c->members[i].name[0]
                                                                ? c->members[i].name : NULL)),
                      "member back");
    }
}

static void applied(void *data)
{
    struct dw_node *n = data;
    check_members(n);
    dw_actuator_kick(n->actuator);
    dw_notify_kick(n->notifier);
    dw_watchadmin_applied(n->watchadmin);
    /* raft must not be re-entered from its own callback: config work runs on the next turn */
    if (!n->stopping && n->timers_open && (dw_fsm_config_version(n->fsm) != n->cfg_version ||
                         (dw_fsm_config_version(n->fsm) == 0 && !n->bootstrapping)))
        uv_timer_start(&n->reconf, reconf_cb, 0, 0);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the committed config ---- */

static void retire(struct dw_node *n, struct dw_config *cfg)
{
    uint64_t now = uv_now(n->loop);
    for (struct retired **pp = &n->retired; *pp;) {
        struct retired *r = *pp;
        if (now < r->at) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        dw_config_free(r->cfg);
        free(r->cfg);
        free(r);
    }
    struct retired *r = cfg ? malloc(sizeof *r) : NULL;
    if (r == NULL) {
        /* out of memory: keeping it forever is the safe choice */
        return;
    }
    uint64_t keep = RETIRE_MS + 8 * (uint64_t)cfg->genesys.request_timeout_ms;
    *r = (struct retired){.cfg = cfg, .at = now + keep, .next = n->retired};
    n->retired = r;
}

static void free_retired(struct dw_node *n)
{
    while (n->retired) {
        struct retired *r = n->retired;
        n->retired = r->next;
        dw_config_free(r->cfg);
        free(r->cfg);
        free(r);
    }
}

/* Compares the file's cluster part with the committed document and says so when they differ. */
static void check_local(struct dw_node *n, const cJSON *committed)
{
    cJSON *mine = dw_config_cluster_doc(n->local_doc);
    char *text = mine && committed ? dw_json_diff_text(committed, mine, 20) : NULL;
    bool differs = text && text[0] != '\0';
    if (differs)
        dw_log(DW_LOG_WARN, "config", "this node's file differs from committed config version "
               "%" PRId64 " (the node runs by the committed one; `drctl config diff FILE` shows "
               "what an apply would change):\n%s", n->cfg_version, text);
    else if (n->local_differs)
        dw_log(DW_LOG_INFO, "config", "this node's file matches committed config version %" PRId64,
               n->cfg_version);
    n->local_differs = differs;
    snprintf(n->differences, sizeof n->differences, "%s", differs ? text : "");
    free(text);
    cJSON_Delete(mine);
}

/* The committed document with this node's local settings, parsed; NULL with why. */
static struct dw_config *effective_config(struct dw_node *n, const cJSON *committed, char *why,
                                          size_t whylen)
{
    cJSON *full = dw_config_with_local(committed, n->local_doc);
    char *text = full ? cJSON_PrintUnformatted(full) : NULL;
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_config_errors *errs = calloc(1, sizeof *errs);
    cJSON_Delete(full);
    if (!text || !cfg || !errs) {
        snprintf(why, whylen, "out of memory");
        free(cfg);
        cfg = NULL;
    } else if (dw_config_parse_with(text, strlen(text), NULL, cfg, errs) != 0) {
        /* files were checked at start; a committed change cannot make them unreadable */
        snprintf(why, whylen, "%s%s", errs->n ? errs->msg[0] : "invalid",
                 errs->n > 1 ? " (and more)" : "");
        free(cfg);
        cfg = NULL;
    }
    free(text);
    free(errs);
    return cfg;
}

/* Records why version v is not fully running here; logged and counted once per new reason. */
static void note_error(struct dw_node *n, int64_t v, const char *why)
{
    char was[sizeof n->config_error];
    snprintf(was, sizeof was, "%s", n->config_error);
    snprintf(n->config_error, sizeof n->config_error, "version %" PRId64 ": %s", v, why);
    if (strcmp(was, n->config_error) == 0)
        return;
    n->config_errors++;
    dw_log(DW_LOG_ERROR, "config", "committed config version %" PRId64 " on this node: %s "
           "(running version %" PRId64 "; tried again every refresh)", v, why, n->cfg->version);
}

/* The secrets cfg needs, as far as their files exist: a missing one is named in missing and
 * left empty (that member cannot talk to this node) instead of keeping the node on an older
 * version, where its observations would not count at all. */
static void read_secrets(const struct dw_config *cfg, struct dw_peer_secrets *out, char *missing,
                         size_t len)
{
    char why[256];
    if (dw_config_read_peer_secrets(cfg, out, why, sizeof why) == 0)
        return;
    snprintf(missing, len, "%s", why);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < cfg->n_members; i++) {
        char path[DW_PATH_MAX + 32];
        if (cfg->members[i].id == cfg->node_id ||
            dw_config_peer_secret_path(cfg, cfg->members[i].id, path, sizeof path) != 0 ||
            dw_config_read_secret(path, out->s[i], sizeof out->s[i], why, sizeof why) != 0 ||
            strlen(out->s[i]) < DW_PEER_SECRET_MIN)
            explicit_bzero(out->s[i], sizeof out->s[i]);
    }
}

/* Tries the missing secrets again (the operator may have copied them since). */
static void reload_secrets(struct dw_node *n)
{
    struct dw_peer_secrets sec;
    char missing[512] = "", why[256];
    read_secrets(n->cfg, &sec, missing, sizeof missing);
    int rc = dw_peer_reconfigure(n->peer, n->cfg, &sec, why, sizeof why);
    explicit_bzero(&sec, sizeof sec);
    if (rc != 0 || missing[0]) {
        note_error(n, n->cfg->version, rc != 0 ? why : missing);
        return;
    }
    n->secrets_missing = false;
    n->config_error[0] = '\0';
    dw_log(DW_LOG_INFO, "config", "every peer secret of config version %" PRId64 " is in place",
           n->cfg->version);
}

static bool member_of(const cJSON *doc, uint64_t id)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(doc, "cluster"), "members")) {
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (cJSON_IsNumber(mid) && mid->valuedouble == (double)id)
            return true;
    }
    return false;
}

/* Switches every component to the committed version: everything that can fail is done before
 * anything changes, so a version this node cannot run leaves it on the last one it could. */
static void reconfigure(struct dw_node *n)
{
    int64_t v = dw_fsm_config_version(n->fsm);
    char *doc_text = dw_fsm_config_doc(n->fsm);
    cJSON *committed = doc_text ? cJSON_Parse(doc_text) : NULL;
    char why[512] = "";
    struct dw_config *next = NULL;
    struct dw_prober *prober = NULL;
    struct dw_cloud *cloud = NULL;
    struct dw_peer_secrets sec;

    free(doc_text);
    n->cfg_version = v;
    if (committed == NULL) {
        snprintf(why, sizeof why, "cannot read the committed document");
        goto fail;
    }
    if (!member_of(committed, n->file->node_id)) {
        snprintf(why, sizeof why, "this node (id %llu) is not a member: add it with drctl members "
                 "add on the leader, or stop it if it was removed",
                 (unsigned long long)n->file->node_id);
        goto fail;
    }
    if ((next = effective_config(n, committed, why, sizeof why)) == NULL)
        goto fail;
    next->version = v;
    char missing[512] = "";
    read_secrets(next, &sec, missing, sizeof missing);
    if (dw_prober_start_from(&prober, n->loop, n->curlm, next, site_changed, n, n->prober) != 0) {
        snprintf(why, sizeof why, "probes: cannot start");
        goto fail;
    }
    dw_prober_set_overload_cb(prober, probe_overload, n);
    if (dw_cloud_start(&cloud, n->loop, next, n->genesys, n->raft, why, sizeof why) != 0)
        goto fail;
    int rc = dw_peer_reconfigure(n->peer, next, &sec, why, sizeof why);
    explicit_bzero(&sec, sizeof sec);
    if (rc != 0)
        goto fail;
    dw_prober_close(n->prober);
    dw_cloud_close(n->cloud);
    n->prober = prober;
    n->cloud = cloud;
    dw_genesys_set_policy(n->genesys, &next->genesys);
    dw_tilt_set_cfg(n->tilt, &next->tilt);
    if (next->cluster.refresh_interval_ms != n->cfg->cluster.refresh_interval_ms)
        uv_timer_start(&n->refresh, refresh_cb, next->cluster.refresh_interval_ms,
                       next->cluster.refresh_interval_ms);
    if (n->eff)
        retire(n, n->eff);
    n->eff = next;
    n->cfg = next;
    n->config_error[0] = '\0';
    n->secrets_missing = missing[0] != '\0';
    if (missing[0]) {
        /* the node runs the version (its observations count) but cannot talk to some members */
        n->secrets_missing = true;
        note_error(n, v, missing);
    }
    dw_log(DW_LOG_INFO, "config", "running by committed config version %" PRId64 ": %d sites, "
           "%d groups, %d members", v, next->n_sites, next->n_groups, next->n_members);
    if (next->override_unmatched)
        dw_log(DW_LOG_WARN, "config", "node.probe_overrides.%s: config version %" PRId64 " has "
               "no such Edge; the override is unused", next->override_unmatched, v);
    check_local(n, committed);
    cJSON_Delete(committed);
    /* the cluster drops views of other versions: say what this node sees now */
    n->dirty = 1;
    submit(n);
    return;
fail:
    explicit_bzero(&sec, sizeof sec);
    if (prober)
        dw_prober_close(prober);
    if (cloud)
        dw_cloud_close(cloud);
    if (next) {
        dw_config_free(next);
        free(next);
    }
    cJSON_Delete(committed);
    note_error(n, v, why);
}

static void bootstrap_done(void *data, int status, const char *errmsg)
{
    struct dw_node *n = data;
    n->bootstrapping = false;
    if (status != 0 && !n->stopping)
        dw_log(DW_LOG_WARN, "config", "bootstrap config not committed: %s",
               errmsg ? errmsg : "unknown");
}

/* An empty cluster takes its first config from its first leader's file, once (the entry
 * replaces version 0 only, so a second leader's attempt is refused). */
static void bootstrap(struct dw_node *n)
{
    char err[256];
    cJSON *doc = dw_config_cluster_doc(n->local_doc);
    char reason[64];
    snprintf(reason, sizeof reason, "bootstrap from node %llu's file",
             (unsigned long long)n->file->node_id);
    char *e = doc ? dw_entry_config(doc, 0, "drwatchd", reason) : NULL;
    cJSON_Delete(doc);
    if (e == NULL)
        return;
    n->bootstrapping = true;
    if (dw_raft_propose(n->raft, e, bootstrap_done, n, err, sizeof err) != 0) {
        n->bootstrapping = false;
        dw_log(DW_LOG_WARN, "config", "bootstrap config not proposed: %s", err);
    } else {
        dw_log(DW_LOG_INFO, "config", "proposing this node's file as config version 1");
    }
    free(e);
}

static void reconf_cb(uv_timer_t *t)
{
    struct dw_node *n = t->data;
    if (n->stopping)
        return;
    int64_t v = dw_fsm_config_version(n->fsm);
    if (v == 0 && !n->bootstrapping && dw_raft_is_leader(n->raft))
        bootstrap(n);
    else if (v != 0 && v == n->cfg_version && n->secrets_missing)
        reload_secrets(n);
    else if (v != 0 && (v != n->cfg_version || n->config_error[0]))
        reconfigure(n); /* a version this node could not run is tried again */
}

static cJSON *local_view(struct dw_node *n)
{
    cJSON *sites = cJSON_CreateArray();
    for (int s = 0; s < n->cfg->n_sites; s++) {
        const struct dw_site *site = &n->cfg->sites[s];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", site->id);
        cJSON_AddStringToObject(o, "local", dw_health_name(dw_prober_site(n->prober, s)));
        cJSON *edges = cJSON_AddArrayToObject(o, "edges");
        for (int e = 0; e < site->n_edges; e++) {
            cJSON *eo = cJSON_CreateObject();
            cJSON_AddStringToObject(eo, "id", site->edges[e].id);
            cJSON_AddStringToObject(eo, "state", dw_health_name(dw_prober_edge(n->prober, s, e)));
            cJSON_AddItemToArray(edges, eo);
        }
        cJSON_AddItemToArray(sites, o);
    }
    return sites;
}

static double node_last_refresh(cJSON *cluster, uint64_t id)
{
    cJSON *nodes = cJSON_GetObjectItemCaseSensitive(cluster, "nodes");
    cJSON *it;
    cJSON_ArrayForEach(it, nodes) {
        cJSON *nid = cJSON_GetObjectItemCaseSensitive(it, "id");
        cJSON *lr = cJSON_GetObjectItemCaseSensitive(it, "last_refresh");
        if (cJSON_IsNumber(nid) && (uint64_t)nid->valuedouble == id && cJSON_IsNumber(lr))
            return lr->valuedouble;
    }
    return 0;
}

#ifndef DRWATCH_VERSION
#define DRWATCH_VERSION "0.1.0"
#endif

/* A member as this node sees it: reachable while its observations keep committing here (raft
 * gives no follower's progress through its API, so lag is the age of its last committed
 * refresh); its state leader, follower, candidate (this node only) or unreachable. */
static void member_state(struct dw_node *n, const struct dw_member *m, uint64_t leader,
                         double age_ms, cJSON *mo)
{
    bool self = m->id == n->cfg->node_id;
    bool reachable = self || (leader != 0 && age_ms >= 0 &&
                              age_ms <= n->cfg->cluster.observation_ttl_ms);
    const char *state = self && !dw_raft_is_leader(n->raft) && m->id != leader
                            ? dw_raft_state_name(n->raft)
                        : m->id == leader && leader != 0 ? "leader"
                        : reachable                      ? "follower"
                                                         : "unreachable";
    cJSON_AddBoolToObject(mo, "self", self);
    cJSON_AddStringToObject(mo, "peer_address", m->peer_address);
    cJSON_AddBoolToObject(mo, "voter", !m->non_voter);
    cJSON_AddStringToObject(mo, "state", state);
    cJSON_AddBoolToObject(mo, "reachable", reachable);
    cJSON_AddNumberToObject(mo, "lag_ms", self ? 0 : age_ms);
}

static void status_reply(struct dw_node *n, cJSON *reply)
{
    const struct dw_config *cfg = n->cfg;
    uint64_t leader = dw_raft_leader_id(n->raft);
    int64_t now = wall_ms();
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddNumberToObject(reply, "now", (double)now);
    cJSON *self = cJSON_AddObjectToObject(reply, "node");
    cJSON_AddNumberToObject(self, "id", (double)cfg->node_id);
    cJSON_AddStringToObject(self, "name", dw_config_member(cfg, cfg->node_id)->name);
    cJSON_AddStringToObject(self, "raft_state", dw_raft_state_name(n->raft));
    cJSON_AddBoolToObject(self, "acting_leader", dw_raft_is_leader(n->raft));
    cJSON_AddNumberToObject(self, "last_applied", (double)dw_raft_last_applied(n->raft));
    cJSON_AddNumberToObject(self, "last_index", (double)dw_raft_last_index(n->raft));
    cJSON_AddStringToObject(self, "actuator", dw_actuator_current(n->actuator));
    cJSON *tilt = cJSON_AddObjectToObject(self, "tilt");
    cJSON_AddBoolToObject(tilt, "active", dw_tilt_active(n->tilt));
    cJSON_AddStringToObject(tilt, "reason", dw_tilt_active(n->tilt) ? dw_tilt_reason(n->tilt) : "");
    cJSON_AddNumberToObject(tilt, "until", (double)dw_tilt_until_ms(n->tilt));
    cJSON *l = cJSON_AddObjectToObject(reply, "leader");
    cJSON_AddNumberToObject(l, "id", (double)leader);
    const struct dw_member *lm = leader ? dw_config_member(cfg, leader) : NULL;
    cJSON_AddStringToObject(l, "name", lm ? lm->name : "");
    cJSON_AddNumberToObject(l, "term", (double)dw_raft_term(n->raft));
    cJSON_AddStringToObject(l, "peer_address", lm ? lm->peer_address : "");
    cJSON_AddStringToObject(reply, "version", DRWATCH_VERSION);

    cJSON *cluster = dw_fsm_status_json(n->fsm);
    cJSON *members = cJSON_AddArrayToObject(reply, "members");
    for (int i = 0; i < cfg->n_members; i++) {
        const struct dw_member *m = &cfg->members[i];
        cJSON *mo = cJSON_CreateObject();
        cJSON_AddNumberToObject(mo, "id", (double)m->id);
        cJSON_AddStringToObject(mo, "name", m->name);
        cJSON_AddStringToObject(mo, "raft_address", m->raft_address);
        cJSON_AddStringToObject(mo, "role", m->id == leader ? "leader"
                                            : m->non_voter ? "non-voter" : "voter");
        /* Last contact = the member's last committed refresh: what the quorum rule relies on. */
        double lr = cluster ? node_last_refresh(cluster, m->id) : 0;
        cJSON_AddNumberToObject(mo, "last_contact", lr);
        cJSON_AddNumberToObject(mo, "last_contact_age_ms", lr > 0 ? (double)now - lr : -1);
        member_state(n, m, leader, lr > 0 ? (double)now - lr : -1, mo);
        cJSON_AddItemToArray(members, mo);
    }
    cJSON *conf = cJSON_AddObjectToObject(reply, "config");
    cJSON_AddNumberToObject(conf, "committed_version", (double)dw_fsm_config_version(n->fsm));
    cJSON_AddNumberToObject(conf, "running_version", (double)n->cfg->version);
    cJSON_AddBoolToObject(conf, "local_differs", n->local_differs);
    cJSON_AddStringToObject(conf, "differences", n->differences);
    cJSON_AddStringToObject(conf, "error", n->config_error);
    cJSON_AddItemToObject(reply, "local", local_view(n));
    if (cluster)
        cJSON_AddItemToObject(reply, "cluster", cluster);
}

static void metric(struct dw_metrics_writer *w, const char *name, enum dw_metric_type type,
                   const char *help, const char *const *labels, double v)
{
    dw_metrics_write(w, name, type, help, labels, v);
}

static double health_value(enum dw_health h)
{
    return h == DW_UP ? 1 : h == DW_DOWN ? 0 : -1;
}

/* ---- /health, /leader and the series per member and per operation (docs/metrics.md) ---- */

static bool self_is_voter(struct dw_node *n)
{
    struct dw_raft_server servers[DW_MAX_MEMBERS];
    int k = dw_raft_configuration(n->raft, servers, DW_MAX_MEMBERS);
    for (int i = 0; i < k && i < DW_MAX_MEMBERS; i++) {
        if (servers[i].id == n->cfg->node_id)
            return strcmp(dw_raft_role_name(servers[i].role), "voter") == 0;
    }
    return false;
}

/* Healthy = part of a working quorum, as a load balancer may trust it: leading and not in TILT
 * (raft makes a leader step down once a majority has not answered within an election timeout),
 * or a voter following a leader it knows (raft forgets the leader and stands for election when
 * no heartbeat came within the election timeout; a non-voter never does, so it cannot tell). */
static void node_status(void *data, struct dw_metrics_status *st)
{
    struct dw_node *n = data;
    const struct dw_config *cfg = n->cfg;
    const char *state = dw_raft_state_name(n->raft);
    uint64_t leader = dw_raft_leader_id(n->raft);
    const struct dw_member *self = dw_config_member(cfg, cfg->node_id);
    const struct dw_member *lm = leader ? dw_config_member(cfg, leader) : NULL;
    bool tilt = dw_tilt_active(n->tilt), voter = self_is_voter(n);
    st->role = state;
    st->node_id = cfg->node_id;
    st->node_name = self ? self->name : "";
    st->leader_id = leader;
    st->leader_name = lm ? lm->name : "";
    st->term = dw_raft_term(n->raft);
    st->leader = !n->stopping && dw_raft_is_leader(n->raft);
    if (n->stopping)
        st->reason = "stopping";
    else if (tilt)
        st->reason = "in TILT (distrusts itself, abstains)";
    else if (!voter)
        st->reason = "not a voter";
    else if (strcmp(state, "leader") == 0)
        st->reason = "";
    else if (strcmp(state, "follower") != 0 || leader == 0 || leader == cfg->node_id)
        st->reason = "no leader known";
    else
        st->reason = "";
    st->healthy = st->reason[0] == '\0';
}

static void collect_members(struct dw_node *n, struct dw_metrics_writer *w)
{
    const struct dw_config *cfg = n->cfg;
    struct dw_metrics_status st = {0};
    node_status(n, &st);
    metric(w, "drwatch_healthy", DW_METRIC_GAUGE,
           "1 while this node is part of a quorum (what GET /health answers 200 for).", NULL,
           st.healthy);
    const struct dw_member *self = dw_config_member(cfg, cfg->node_id);
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, cfg->node_id);
    metric(w, "drwatch_node_info", DW_METRIC_GAUGE, "This node's member name and id.",
           (const char *const[]){"member", self ? self->name : "", "id", id, NULL}, 1);
    metric(w, "drwatch_build_info", DW_METRIC_GAUGE, "Build of this drwatchd (always 1).",
           (const char *const[]){"version", DW_BUILD_VERSION, "commit", DW_BUILD_COMMIT,
                                 "raft_version", DW_BUILD_RAFT_VERSION, "libuv_version",
                                 uv_version_string(), "sqlite_version", sqlite3_libversion(),
                                 NULL}, 1);
    /* Last contact = the member's last committed refresh: what the quorum rule relies on. */
    int64_t last[DW_MAX_MEMBERS] = {0};
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm), "SELECT id, last_refresh FROM nodes", -1, &q,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            for (int i = 0; i < cfg->n_members; i++) {
                if ((uint64_t)sqlite3_column_int64(q, 0) == cfg->members[i].id)
                    last[i] = sqlite3_column_int64(q, 1);
            }
        }
    }
    sqlite3_finalize(q);
    int64_t now = wall_ms();
    for (int i = 0; i < cfg->n_members; i++) {
        const struct dw_member *m = &cfg->members[i];
        snprintf(id, sizeof id, "%" PRIu64, m->id);
        const char *ml[] = {"member", m->name, "id", id, NULL};
        double age = last[i] > 0 ? (double)(now - last[i]) / 1000.0 : -1;
        metric(w, "drwatch_member_up", DW_METRIC_GAUGE,
               "1 while the member's last committed refresh is younger than observation_ttl_ms.",
               ml, age >= 0 && age * 1000.0 < cfg->cluster.observation_ttl_ms);
        metric(w, "drwatch_member_last_contact_age_seconds", DW_METRIC_GAUGE,
               "Seconds since the member's last committed refresh, -1 before any.", ml, age);
        metric(w, "drwatch_member_leader", DW_METRIC_GAUGE,
               "1 for the member this node follows as leader (or is, when it leads).", ml,
               st.leader_id == m->id);
        metric(w, "drwatch_member_voter", DW_METRIC_GAUGE,
               "1 when the member counts in the majority.", ml, !m->non_voter);
    }
}

/* From the replicated operations table, so the same on every node; operations are never
 * deleted, so the counts only grow. Every kind and result is written, zero too, so that
 * increase() sees the first failure. */
static void collect_operations(struct dw_node *n, struct dw_metrics_writer *w)
{
    sqlite3 *db = dw_fsm_db(n->fsm);
    sqlite3_stmt *q = NULL;
    double count[DW_OP_KIND_COUNT][DW_OP_STATUS_COUNT] = {{0}};
    if (sqlite3_prepare_v2(db, "SELECT kind, status, COUNT(*) FROM operations"
                           " WHERE status <> 'running' GROUP BY kind, status", -1, &q,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            enum dw_op_kind k;
            enum dw_op_status s;
            if (dw_op_kind_parse((const char *)sqlite3_column_text(q, 0), &k) == 0 &&
                dw_op_status_parse((const char *)sqlite3_column_text(q, 1), &s) == 0)
                count[k][s] = (double)sqlite3_column_int64(q, 2);
        }
    }
    sqlite3_finalize(q);
    for (int k = 0; k < DW_OP_KIND_COUNT; k++) {
        for (int s = DW_OP_DONE; s < DW_OP_STATUS_COUNT; s++) {
            const char *l[] = {"kind", dw_op_kind_name((enum dw_op_kind)k), "result",
                               dw_op_status_name((enum dw_op_status)s), NULL};
            metric(w, "drwatch_operations_total", DW_METRIC_COUNTER,
                   "Operations that ended, by kind and result (cluster-wide, from the log).", l,
                   count[k][s]);
        }
    }
    int64_t now = wall_ms();
    q = NULL;
    if (sqlite3_prepare_v2(db, "SELECT grp, kind, MIN(created) FROM operations"
                           " WHERE status = 'running' GROUP BY grp, kind", -1, &q,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            const char *l[] = {"group", (const char *)sqlite3_column_text(q, 0), "kind",
                               (const char *)sqlite3_column_text(q, 1), NULL};
            if (l[1] == NULL || l[3] == NULL)
                continue;
            double age = (double)(now - sqlite3_column_int64(q, 2)) / 1000.0;
            metric(w, "drwatch_operation_running_seconds", DW_METRIC_GAUGE,
                   "Seconds since the running operation of the group was created.", l,
                   age > 0 ? age : 0);
        }
    }
    sqlite3_finalize(q);
    q = NULL;
    if (sqlite3_prepare_v2(db, "SELECT grp, kind, status, MAX(finished) FROM operations"
                           " WHERE status <> 'running' AND finished IS NOT NULL"
                           " GROUP BY grp, kind, status", -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            const char *l[] = {"group", (const char *)sqlite3_column_text(q, 0), "kind",
                               (const char *)sqlite3_column_text(q, 1), "result",
                               (const char *)sqlite3_column_text(q, 2), NULL};
            if (l[1] == NULL || l[3] == NULL || l[5] == NULL)
                continue;
            metric(w, "drwatch_operation_last_end_timestamp_seconds", DW_METRIC_GAUGE,
                   "When the group's last operation of this kind ended with this result.", l,
                   (double)sqlite3_column_int64(q, 3) / 1000.0);
        }
    }
    sqlite3_finalize(q);
    struct dw_actuator_stats as;
    dw_actuator_stats(n->actuator, &as);
    for (int a = 0; a < DW_ACT_COUNT; a++) {
        for (int r = 0; r < 2; r++) {
            const char *l[] = {"kind", dw_step_action_name((enum dw_step_action)a), "result",
                               r ? "failed" : "done", NULL};
            dw_metrics_write_histogram(w, "drwatch_step_duration_seconds",
                                       "Steps this node ran as leader: start to result.", l,
                                       dw_step_bucket_bounds, as.steps[a][r].counts,
                                       DW_STEP_BUCKETS, as.steps[a][r].sum);
        }
    }
}

/* Node-local facts on every node; cluster decisions as this node's replica sees them
 * (drwatch_is_leader says which node acts). */
static void node_collect(void *data, struct dw_metrics_writer *w)
{
    struct dw_node *n = data;
    const struct dw_config *cfg = n->cfg;
    metric(w, "drwatch_is_leader", DW_METRIC_GAUGE, "1 on the node that may act on Genesys.", NULL,
           dw_raft_is_leader(n->raft));
    collect_members(n, w);
    collect_operations(n, w);
    metric(w, "drwatch_raft_term", DW_METRIC_GAUGE, "Current Raft term.", NULL,
           (double)dw_raft_term(n->raft));
    metric(w, "drwatch_raft_last_applied", DW_METRIC_GAUGE, "Index of the last applied entry.",
           NULL, (double)dw_raft_last_applied(n->raft));
    metric(w, "drwatch_raft_last_index", DW_METRIC_GAUGE, "Index of the last entry in the log.",
           NULL, (double)dw_raft_last_index(n->raft));
    metric(w, "drwatch_raft_stamps_clamped_total", DW_METRIC_COUNTER,
           "Entry stamps held back because the wall clock ran ahead of measured time.", NULL,
           (double)dw_raft_stamps_clamped(n->raft));
    metric(w, "drwatch_raft_tilt_handovers_total", DW_METRIC_COUNTER,
           "Leadership transfers this node started because it was in TILT.", NULL,
           (double)dw_raft_tilt_handovers(n->raft));
    metric(w, "drwatch_config_version", DW_METRIC_GAUGE,
           "Committed cluster config version (0: none committed yet).", NULL,
           (double)dw_fsm_config_version(n->fsm));
    metric(w, "drwatch_config_running_version", DW_METRIC_GAUGE,
           "Config version this node's probes and actuator run by.", NULL,
           (double)n->cfg->version);
    metric(w, "drwatch_config_local_differs", DW_METRIC_GAUGE,
           "1 when this node's file differs from the committed cluster config.", NULL,
           n->local_differs);
    metric(w, "drwatch_config_errors_total", DW_METRIC_COUNTER,
           "Committed config versions this node could not run.", NULL, (double)n->config_errors);
    metric(w, "drwatch_fsm_rejected_entries_total", DW_METRIC_COUNTER,
           "Committed entries the state machine refused.", NULL, (double)dw_fsm_rejected(n->fsm));
    metric(w, "drwatch_observations_submitted_total", DW_METRIC_COUNTER,
           "Observations this node sent towards the log.", NULL, (double)n->submitted);
    metric(w, "drwatch_observations_failed_total", DW_METRIC_COUNTER,
           "Observations that did not commit.", NULL, (double)n->submit_failed);
    for (int s = 0; s < cfg->n_sites; s++) {
        const struct dw_site *site = &cfg->sites[s];
        const char *sl[] = {"site", site->id, NULL};
        metric(w, "drwatch_site_local_up", DW_METRIC_GAUGE,
               "This node's own verdict on the site: 1 up, 0 down, -1 unknown.", sl,
               health_value(dw_prober_site(n->prober, s)));
        /* by id: the committed config may list sites otherwise than the one this node runs */
        int fs = dw_config_site_index(dw_fsm_config(n->fsm), site->id);
        metric(w, "drwatch_site_cluster_up", DW_METRIC_GAUGE,
               "The committed cluster verdict on the site: 1 up, 0 down, -1 unknown.", sl,
               health_value(fs >= 0 ? dw_fsm_site_verdict(n->fsm, fs) : DW_UNKNOWN));
        metric(w, "drwatch_site_maintenance", DW_METRIC_GAUGE,
               "1 while the site is in a maintenance window.", sl,
               fs >= 0 && dw_fsm_site_maintenance(n->fsm, fs) == 1);
        for (int e = 0; e < site->n_edges; e++) {
            const char *el[] = {"site", site->id, "edge", site->edges[e].id, NULL};
            metric(w, "drwatch_edge_up", DW_METRIC_GAUGE,
                   "This node's verdict on the Edge: 1 up, 0 down, -1 unknown.", el,
                   health_value(dw_prober_edge(n->prober, s, e)));
            for (int k = 0; k < dw_prober_n_probes(n->prober, s, e); k++) {
                struct dw_probe_info pi;
                if (dw_prober_probe_info(n->prober, s, e, k, &pi) != 0)
                    continue;
                static const char *const kinds[] = {"http", "sip", "tcp"};
                const char *kind = (unsigned)pi.kind < 3 ? kinds[pi.kind] : "unknown";
                char idx[12];
                snprintf(idx, sizeof idx, "%d", k);
                const char *ok[] = {"site", site->id, "edge", site->edges[e].id, "probe", idx,
                                    "kind", kind, "result", "ok", NULL};
                const char *fail[] = {"site", site->id, "edge", site->edges[e].id, "probe", idx,
                                      "kind", kind, "result", "fail", NULL};
                const char *bad[] = {"site", site->id, "edge", site->edges[e].id, "probe", idx,
                                     "kind", kind, NULL};
                metric(w, "drwatch_probe_total", DW_METRIC_COUNTER, "Probe runs by result.", ok,
                       (double)(pi.probes - pi.failures));
                metric(w, "drwatch_probe_total", DW_METRIC_COUNTER, "Probe runs by result.", fail,
                       (double)pi.failures);
                metric(w, "drwatch_probe_bad_responses_total", DW_METRIC_COUNTER,
                       "Answers that were not valid HTTP or SIP.", bad, (double)pi.bad_responses);
            }
        }
    }
    for (int g = 0; g < cfg->n_groups; g++) {
        const struct dw_group *grp = &cfg->groups[g];
        const struct dw_config *fc = dw_fsm_config(n->fsm);
        const char *active = NULL;
        for (int k = 0; k < fc->n_groups && !active; k++) {
            int a = strcmp(fc->groups[k].id, grp->id) == 0 ? dw_fsm_active_target(n->fsm, k) : -1;
            if (a >= 0 && a < fc->groups[k].n_targets)
                active = fc->groups[k].targets[a].id;
        }
        for (int t = 0; t < grp->n_targets; t++) {
            const char *tl[] = {"group", grp->id, "target", grp->targets[t].id, NULL};
            metric(w, "drwatch_group_active_target", DW_METRIC_GAUGE,
                   "1 for the target the group runs on.", tl,
                   active && strcmp(active, grp->targets[t].id) == 0);
        }
        struct dw_group_state gst = {0};
        int fg = -1;
        for (int k = 0; k < fc->n_groups; k++)
            fg = strcmp(fc->groups[k].id, grp->id) == 0 ? k : fg;
        if (fg >= 0 && dw_fsm_group_state(n->fsm, fg, &gst) != 0)
            memset(&gst, 0, sizeof gst);
        const char *gl[] = {"group", grp->id, NULL};
        const char *failed[] = {"group", grp->id, "reason", "failed", NULL};
        const char *flapping[] = {"group", grp->id, "reason", "flapping", NULL};
        metric(w, "drwatch_group_held", DW_METRIC_GAUGE,
               "1 while the group is held (after a failure, or for flapping) until released.",
               failed, gst.held && !gst.flapping);
        metric(w, "drwatch_group_held", DW_METRIC_GAUGE,
               "1 while the group is held (after a failure, or for flapping) until released.",
               flapping, gst.flapping);
        metric(w, "drwatch_group_pinned", DW_METRIC_GAUGE,
               "1 while an operator's switchover keeps automatic failback off.", gl, gst.pinned);
        metric(w, "drwatch_group_maintenance", DW_METRIC_GAUGE,
               "1 while the group itself is in a maintenance window.", gl, gst.maintenance);
        metric(w, "drwatch_group_failback_failures", DW_METRIC_GAUGE,
               "Failed failbacks in a row (reset by a failback that completes).", gl,
               gst.failback_failures);
        metric(w, "drwatch_group_on_primary", DW_METRIC_GAUGE,
               "1 while the group runs on its first (primary) target.", gl,
               active && strcmp(active, grp->targets[0].id) == 0);
    }
    struct dw_genesys_stats gs;
    dw_genesys_stats(n->genesys, &gs);
    metric(w, "drwatch_genesys_requests_total", DW_METRIC_COUNTER,
           "Requests sent to the Genesys API by this node.", NULL, (double)gs.requests);
    metric(w, "drwatch_genesys_conflicts_total", DW_METRIC_COUNTER, "409 answers (version races).",
           NULL, (double)gs.conflicts_409);
    metric(w, "drwatch_genesys_rate_limited_total", DW_METRIC_COUNTER, "429 answers.", NULL,
           (double)gs.responses_429);
    metric(w, "drwatch_genesys_server_errors_total", DW_METRIC_COUNTER, "5xx answers.", NULL,
           (double)gs.responses_5xx);
    metric(w, "drwatch_genesys_bad_responses_total", DW_METRIC_COUNTER,
           "Answers that could not be parsed.", NULL, (double)gs.bad_responses);
    metric(w, "drwatch_genesys_retries_total", DW_METRIC_COUNTER,
           "Requests sent again after a 429, a 5xx or a transport error.", NULL,
           (double)gs.retries);
    metric(w, "drwatch_genesys_fenced_total", DW_METRIC_COUNTER,
           "Genesys write requests not sent because their fencing token was no longer valid.",
           NULL, (double)gs.fenced);
    struct dw_actuator_stats as;
    dw_actuator_stats(n->actuator, &as);
    metric(w, "drwatch_actuator_lease_renewals_total", DW_METRIC_COUNTER,
           "Barriers that extended this leader's write lease while a write ran.", NULL,
           (double)as.lease_renewals);
    metric(w, "drwatch_actuator_fenced_steps_total", DW_METRIC_COUNTER,
           "Steps stopped because leadership, term, lease or relevance no longer held.", NULL,
           (double)as.fenced_steps);
    metric(w, "drwatch_actuator_resume_waits_total", DW_METRIC_COUNTER,
           "Resumed steps that first waited out an earlier leader's request in flight.", NULL,
           (double)as.resume_waits);
    metric(w, "drwatch_genesys_paced_total", DW_METRIC_COUNTER,
           "Cloud poll requests held back to stay within rate_budget_per_min.", NULL,
           (double)gs.paced);
    metric(w, "drwatch_genesys_server_held_total", DW_METRIC_COUNTER,
           "Requests held back because the server's rate window was nearly spent.", NULL,
           (double)gs.server_held);
    metric(w, "drwatch_genesys_in_flight", DW_METRIC_GAUGE,
           "Genesys API requests in flight now.", NULL, (double)gs.in_flight);
    metric(w, "drwatch_genesys_ratelimit_remaining", DW_METRIC_GAUGE,
           "Requests left in the server's rate window per the last answer's headers, -1 before "
           "any.", NULL, (double)gs.ratelimit_remaining);
    struct dw_probe_stats pst;
    dw_prober_stats(n->prober, &pst);
    metric(w, "drwatch_probe_skipped_busy_total", DW_METRIC_COUNTER,
           "Probe runs skipped because the previous run was still in flight.", NULL,
           (double)pst.skipped_busy);
    metric(w, "drwatch_probe_overloaded", DW_METRIC_GAUGE,
           "1 while this node's prober cannot keep its schedule (it abstains).", NULL,
           dw_prober_overloaded(n->prober));
    metric(w, "drwatch_probe_overloads_total", DW_METRIC_COUNTER,
           "Times the prober found it could not keep its schedule.", NULL, (double)pst.overloads);
    metric(w, "drwatch_probe_late_runs_total", DW_METRIC_COUNTER,
           "Probe runs that started later than the lateness bound after they were due.", NULL,
           (double)pst.late_runs);
    metric(w, "drwatch_probe_overload_discarded_total", DW_METRIC_COUNTER,
           "Failed probe runs not counted because the node could not keep up.", NULL,
           (double)pst.overload_discarded);
    metric(w, "drwatch_sip_malformed_total", DW_METRIC_COUNTER,
           "SIP messages that did not parse.", NULL, (double)pst.sip_malformed);
    struct dw_cloud_stats cs;
    dw_cloud_stats(n->cloud, &cs);
    if (cs.active) {
        metric(w, "drwatch_cloud_polling", DW_METRIC_GAUGE,
               "1 while this node polls the Genesys view of the Edges (leader only).", NULL,
               cs.polling);
        metric(w, "drwatch_cloud_polls_total", DW_METRIC_COUNTER, "Completed cloud polls.", NULL,
               (double)cs.polls);
        metric(w, "drwatch_cloud_poll_failures_total", DW_METRIC_COUNTER, "Failed cloud polls.",
               NULL, (double)cs.poll_failures);
        metric(w, "drwatch_cloud_requests_total", DW_METRIC_COUNTER,
               "Genesys requests made by cloud polls.", NULL, (double)cs.requests);
        metric(w, "drwatch_cloud_interval_seconds", DW_METRIC_GAUGE,
               "Current cloud poll interval (stretched by the rate budget).", NULL,
               cs.interval_ms / 1000.0);
    }
    struct dw_peer_stats ps;
    dw_peer_stats(n->peer, &ps);
    metric(w, "drwatch_peer_forwarded_total", DW_METRIC_COUNTER,
           "Observations forwarded to the leader.", NULL, (double)ps.forwarded);
    metric(w, "drwatch_peer_rejected_total", DW_METRIC_COUNTER,
           "Peer requests refused (bad secret, bad entry, or speaking for another node).", NULL,
           (double)(ps.rejected_auth + ps.rejected_bad + ps.rejected_identity));
    metric(w, "drwatch_peer_identity_refused_total", DW_METRIC_COUNTER,
           "Peer requests refused because a member spoke for another node (HTTP 403).", NULL,
           (double)ps.rejected_identity);
    for (int i = 0; i < dw_notify_channels(n->notifier); i++) {
        struct dw_notify_stats ns;
        if (dw_notify_stats(n->notifier, i, &ns) != 0)
            continue;
        const char *cl[] = {"channel", ns.channel, "kind", ns.kind, NULL};
        metric(w, "drwatch_notify_sent_total", DW_METRIC_COUNTER,
               "Events this node delivered to the channel.", cl, (double)ns.sent);
        metric(w, "drwatch_notify_failed_total", DW_METRIC_COUNTER,
               "Delivery attempts that failed and are retried with back-off.", cl,
               (double)ns.failed);
        metric(w, "drwatch_notify_rejected_total", DW_METRIC_COUNTER,
               "Events the receiver refused for good (HTTP 400, 413, 422): not sent again.", cl,
               (double)ns.rejected);
        metric(w, "drwatch_notify_skipped_total", DW_METRIC_COUNTER,
               "Undelivered events older than notifications.max_age_ms, not sent.", cl,
               (double)ns.skipped);
        metric(w, "drwatch_notify_pending", DW_METRIC_GAUGE,
               "Events the log has not recorded as delivered to the channel (same on every node).",
               cl, (double)ns.pending);
    }
}

/* A refusal for want of the leader also names it and where it runs (drctl says so). */
static void leader_hint(struct dw_node *n, cJSON *reply)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(reply, "leader");
    const struct dw_member *m = cJSON_IsNumber(l) && l->valuedouble > 0
                                    ? dw_config_member(n->cfg, (uint64_t)l->valuedouble)
                                    : NULL;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")) || m == NULL)
        return;
    cJSON_AddStringToObject(reply, "leader_name", m->name);
    cJSON_AddStringToObject(reply, "leader_peer_address", m->peer_address);
}

static void admin_handler_inner(void *data, const cJSON *req, cJSON *reply,
                                struct dw_admin_call *call);

static void admin_handler(void *data, const cJSON *req, cJSON *reply, struct dw_admin_call *call)
{
    admin_handler_inner(data, req, reply, call);
    leader_hint(data, reply);
}

static void admin_handler_inner(void *data, const cJSON *req, cJSON *reply,
                                struct dw_admin_call *call)
{
    struct dw_node *n = data;
    if (dw_cfgadmin_handle(n->cfgadmin, req, reply, call)) {
        const char *action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "action"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")) && action &&
            strcmp(action, "show") == 0) {
            cJSON_AddBoolToObject(reply, "local_differs", n->local_differs);
            cJSON_AddStringToObject(reply, "differences", n->differences);
        }
        return;
    }
    if (dw_opsadmin_handle(n->fsm, n->raft, req, reply, call) ||
        dw_watchadmin_handle(n->watchadmin, req, reply, call))
        return;
    const char *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd")->valuestring;
    if (strcmp(cmd, "status") == 0) {
        status_reply(n, reply);
    } else if (strcmp(cmd, "version") == 0) {
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddStringToObject(reply, "version", DRWATCH_VERSION);
        cJSON *self = cJSON_AddObjectToObject(reply, "node");
        cJSON_AddNumberToObject(self, "id", (double)n->cfg->node_id);
        cJSON_AddStringToObject(self, "name", dw_config_member(n->cfg, n->cfg->node_id)->name);
    } else if (strcmp(cmd, "dump") == 0) {
        char *d = dw_fsm_dump_max(n->fsm, DW_FSM_DUMP_MAX);
        cJSON_AddBoolToObject(reply, "ok", d != NULL);
        cJSON_AddStringToObject(reply, "dump", d ? d : "");
        if (d == NULL)
            cJSON_AddStringToObject(reply, "error", dw_fsm_last_error(n->fsm));
        /* the dump is the state after this entry: equal indexes must give equal dumps */
        cJSON_AddNumberToObject(reply, "applied", (double)dw_raft_last_applied(n->raft));
        free(d);
    } else if (strcmp(cmd, "debug") == 0) {
        const cJSON *cb = cJSON_GetObjectItemCaseSensitive(req, "crash_before");
        if (!n->cfg->debug) {
            cJSON_AddBoolToObject(reply, "ok", 0);
            cJSON_AddStringToObject(reply, "error", "debug: disabled (set node.debug in the config)");
        } else if (!cJSON_IsString(cb) ||
                   (strcmp(cb->valuestring, "activate") != 0 && strcmp(cb->valuestring, "verify") != 0 &&
                    strcmp(cb->valuestring, "deactivate") != 0 && cb->valuestring[0] != '\0')) {
            cJSON_AddBoolToObject(reply, "ok", 0);
            cJSON_AddStringToObject(reply, "error",
                                    "crash_before: expected \"activate\", \"verify\", \"deactivate\" or \"\"");
        } else {
            dw_actuator_crash_before(n->actuator, cb->valuestring);
            dw_log(DW_LOG_WARN, "node", "debug: will crash before step %s", cb->valuestring);
            cJSON_AddBoolToObject(reply, "ok", 1);
        }
    } else {
        cJSON_AddBoolToObject(reply, "ok", 0);
        char msg[224];
        snprintf(msg, sizeof msg, "cmd: unknown command \"%.64s\" (known: status, history, version, dump, debug, hold, config, members, maintenance, operate)", cmd);
        cJSON_AddStringToObject(reply, "error", msg);
    }
}

static void node_free_if_done(struct dw_node *n)
{
    if (n->timers_open != 0 || n->raft != NULL)
        return;
    free_retired(n);
    if (n->eff) {
        dw_config_free(n->eff);
        free(n->eff);
    }
    cJSON_Delete(n->local_doc);
    free(n);
}

static void timer_closed(uv_handle_t *h)
{
    struct dw_node *n = h->data;
    n->timers_open--;
    node_free_if_done(n);
}

static void raft_closed(void *data)
{
    struct dw_node *n = data;
    n->raft = NULL;
    dw_fsm_close(n->fsm);
    dw_curlm_close(n->curlm);
    dw_log(DW_LOG_INFO, "node", "stopped");
    node_free_if_done(n);
}

/* The service manager's STATUS= line (systemctl status): who leads, in which term. */
static void sd_status(void *data, char *buf, size_t len)
{
    struct dw_node *n = data;
    uint64_t leader = dw_raft_leader_id(n->raft);
    unsigned long long term = (unsigned long long)dw_raft_term(n->raft);
    const char *tilt = dw_tilt_active(n->tilt) ? ", TILT: abstaining" : "";
    const struct dw_member *lm = leader ? dw_config_member(n->cfg, leader) : NULL;
    if (leader == 0)
        snprintf(buf, len, "no leader, term %llu, %d members%s", term, n->cfg->n_members, tilt);
    else if (leader == n->cfg->node_id)
        snprintf(buf, len, "leader, term %llu, %d members%s", term, n->cfg->n_members, tilt);
    else if (lm && lm->name[0])
        snprintf(buf, len, "follower of %s, term %llu, %d members%s", lm->name, term,
                 n->cfg->n_members, tilt);
    else
        snprintf(buf, len, "follower of node %llu, term %llu, %d members%s",
                 (unsigned long long)leader, term, n->cfg->n_members, tilt);
}

/* Shutdown chain: stop producing work, stop acting, leave raft, then release the rest. */
void dw_node_stop(struct dw_node *n)
{
    if (n->stopping)
        return;
    n->stopping = 1;
    dw_log(DW_LOG_INFO, "node", "stopping");
    dw_sdnotify_stopping(n->sd);
    dw_sdnotify_close(n->sd);
    n->sd = NULL;
    dw_admin_close(n->admin);
    dw_watchadmin_close(n->watchadmin);
    n->watchadmin = NULL;
    dw_cfgadmin_close(n->cfgadmin);
    dw_metrics_close(n->metrics);
    dw_tilt_close(n->tilt);
    dw_prober_close(n->prober);
    dw_actuator_close(n->actuator);
    dw_notify_close(n->notifier);
    n->notifier = NULL;
    dw_cloud_close(n->cloud); /* before the Genesys client: it waits for its calls */
    dw_genesys_close(n->genesys);
    /* The peer channel feeds raft, so it goes first; raft and curlm outlive it. */
    dw_peer_close(n->peer);
    n->peer = NULL;
    uv_close((uv_handle_t *)&n->refresh, timer_closed);
    uv_close((uv_handle_t *)&n->retry, timer_closed);
    uv_close((uv_handle_t *)&n->reconf, timer_closed);
    if (n->raft)
        dw_raft_close(n->raft, raft_closed, n);
}

int dw_node_start(struct dw_node **out, uv_loop_t *loop, const struct dw_config *cfg,
                  const cJSON *file_doc, char *errmsg, size_t errlen)
{
    char err[256];
    struct dw_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    n->loop = loop;
    n->cfg = cfg;
    n->file = cfg;
    n->started_ms = wall_ms();
    if ((n->local_doc = cJSON_Duplicate(file_doc, true)) == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        goto err_after_alloc;
    }
    if (dw_config_read_peer_secrets(cfg, &n->peer_secrets, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "%s", err);
        goto err_after_alloc;
    }
    if (dw_config_read_secret(cfg->genesys.client_secret_file, n->client_secret,
                              sizeof n->client_secret, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "genesys.client_secret_file: %s", err);
        goto err_after_alloc;
    }
    if (dw_curlm_init(&n->curlm, loop) != 0) {
        snprintf(errmsg, errlen, "dw_curlm_init(): failed");
        goto err_after_alloc;
    }
    /* the state machine knows only what the log commits: no seed from the file */
    if (dw_fsm_open(&n->fsm, NULL, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_fsm_open(): %s", err);
        goto err_after_curlm;
    }
    if (dw_raft_start(&n->raft, loop, cfg, n->fsm, applied, n, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_raft_start(): %s", err);
        goto err_after_fsm;
    }
    int peer_rc = dw_peer_start(&n->peer, loop, n->curlm, cfg, &n->peer_secrets, n->raft, err,
                                sizeof err);
    explicit_bzero(&n->peer_secrets, sizeof n->peer_secrets); /* the peer keeps its own copy */
    if (peer_rc != 0) {
        snprintf(errmsg, errlen, "dw_peer_start(): %s", err);
        goto err_after_raft;
    }
    if (dw_genesys_init(&n->genesys, loop, n->curlm, &cfg->genesys, n->client_secret, err,
                        sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_genesys_init(): %s", err);
        goto err_after_peer;
    }
    memset(n->client_secret, 0, sizeof n->client_secret);
    struct dw_actuator_ops ops;
    struct dw_clock clock;
    dw_actuator_live_ops(&ops, n->raft, n->genesys);
    dw_clock_uv(&clock, loop);
    if (dw_actuator_init(&n->actuator, &clock, cfg, n->fsm, &ops) != 0) {
        snprintf(errmsg, errlen, "dw_actuator_init(): out of memory");
        goto err_after_genesys;
    }
    struct dw_notify_ops nops;
    dw_notify_live_ops(&nops, n->raft);
    /* node-local: the file's channels, whatever the committed version */
    if (dw_notify_start(&n->notifier, loop, n->curlm, &cfg->notify, n->fsm, &nops, err,
                        sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_notify_start(): %s", err);
        goto err_after_actuator;
    }
    if (dw_cloud_start(&n->cloud, loop, cfg, n->genesys, n->raft, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_cloud_start(): %s", err);
        goto err_after_notifier;
    }
    if (dw_prober_start(&n->prober, loop, n->curlm, cfg, site_changed, n) != 0) {
        snprintf(errmsg, errlen, "dw_prober_start(): failed");
        goto err_after_cloud;
    }
    dw_prober_set_overload_cb(n->prober, probe_overload, n);
    n->overload_rate = overload_rate_read(n);
    if (n->overload_rate > 0 && probe_rate(cfg) >= n->overload_rate)
        dw_log(DW_LOG_WARN, "probe", "this node could not keep up with %.0f probe runs/s before "
               "(%s/probe-overload) and its config asks for %.0f/s: expect it to abstain (TILT); "
               "spread the Edges over more nodes or raise probe.interval_ms", n->overload_rate,
               cfg->data_dir, probe_rate(cfg));
    if (dw_metrics_start(&n->metrics, loop, cfg->metrics_address, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_metrics_start(): %s", err);
        goto err_after_prober;
    }
    dw_metrics_add(n->metrics, node_collect, n);
    dw_metrics_set_status(n->metrics, node_status, n);
    if (dw_cfgadmin_init(&n->cfgadmin, loop, n->fsm, n->raft, n->local_doc) != 0) {
        snprintf(errmsg, errlen, "dw_cfgadmin_init(): out of memory");
        goto err_after_metrics;
    }
    if (dw_watchadmin_init(&n->watchadmin, loop, n->fsm) != 0) {
        snprintf(errmsg, errlen, "dw_watchadmin_init(): out of memory");
        goto err_after_cfgadmin;
    }
    if (dw_admin_start(&n->admin, loop, cfg->admin_socket, admin_handler, n, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_admin_start(): %s", err);
        goto err_after_watchadmin;
    }
    /* Last: the blocking start-up above must not count as a loop stall. */
    if (dw_tilt_start(&n->tilt, loop, &cfg->tilt, NULL, tilt_changed, n, err, sizeof err) != 0) {
        snprintf(errmsg, errlen, "dw_tilt_start(): %s", err);
        goto err_after_admin;
    }
    dw_metrics_add(n->metrics, dw_tilt_collect, n->tilt);
    uv_timer_init(loop, &n->refresh);
    uv_timer_init(loop, &n->retry);
    n->refresh.data = n;
    n->retry.data = n;
    uv_timer_init(loop, &n->reconf);
    n->reconf.data = n;
    n->timers_open = 3;
    uv_timer_start(&n->reconf, reconf_cb, 0, 0); /* entries may have applied during start-up */
    uv_timer_start(&n->refresh, refresh_cb, cfg->cluster.refresh_interval_ms,
                   cfg->cluster.refresh_interval_ms);
    /* Everything listens now: tell the service manager (a no-op without one). */
    if (dw_sdnotify_start(&n->sd, loop, 250, sd_status, n) != 0)
        dw_log(DW_LOG_WARN, "sdnotify", "out of memory: not reporting to the service manager");
    dw_sdnotify_ready(n->sd);
    *out = n;
    return 0;

err_after_admin:
    dw_admin_close(n->admin);
err_after_watchadmin:
    dw_watchadmin_close(n->watchadmin);
    n->watchadmin = NULL;
err_after_cfgadmin:
    dw_cfgadmin_close(n->cfgadmin);
err_after_metrics:
    dw_metrics_close(n->metrics);
err_after_prober:
    dw_prober_close(n->prober);
err_after_cloud:
    dw_cloud_close(n->cloud);
err_after_notifier:
    dw_notify_close(n->notifier);
    n->notifier = NULL;
err_after_actuator:
    dw_actuator_close(n->actuator);
err_after_genesys:
    dw_genesys_close(n->genesys);
err_after_peer:
    dw_peer_close(n->peer);
    n->peer = NULL;
err_after_raft:
    /* raft closes asynchronously; the rest is released in its callback while main runs the
     * loop dry before exiting. */
    memset(n->client_secret, 0, sizeof n->client_secret);
    dw_raft_close(n->raft, raft_closed, n);
    return -1;
err_after_fsm:
    dw_fsm_close(n->fsm);
err_after_curlm:
    dw_curlm_close(n->curlm);
err_after_alloc:
    memset(n->client_secret, 0, sizeof n->client_secret);
    explicit_bzero(&n->peer_secrets, sizeof n->peer_secrets);
    cJSON_Delete(n->local_doc);
    free(n);
    return -1;
}

/* Restarts the notifier on file's channels, re-reading their secrets; the journal says what
 * was delivered, so nothing is lost (an event in flight may be sent twice). */
static int reload_notify(struct dw_node *n, const struct dw_config *file, cJSON *file_doc,
                         bool *changed, char *errmsg, size_t errlen)
{
    struct dw_notifier *nt = NULL;
    struct dw_notify_ops nops;
    char err[256];

    dw_notify_live_ops(&nops, n->raft);
    if (dw_notify_start(&nt, n->loop, n->curlm, &file->notify, n->fsm, &nops, err,
                        sizeof err) != 0) {
        snprintf(errmsg, errlen, "notifications: %s", err);
        return -1;
    }
    /* the same channels and secrets: keep the running notifier, whose sends are in flight */
    *changed = !dw_notify_same(n->notifier, nt);
    if (!*changed) {
        dw_notify_close(nt);
        return 0;
    }
    dw_notify_close(n->notifier);
    n->notifier = nt;
    /* a later committed version merges the file's node-local part: the new section, too */
    cJSON *sec = cJSON_GetObjectItemCaseSensitive(file_doc, "notifications");
    cJSON_DeleteItemFromObjectCaseSensitive(n->local_doc, "notifications");
    cJSON *dup = sec != NULL ? cJSON_Duplicate(sec, true) : NULL;
    if (dup != NULL)
        cJSON_AddItemToObject(n->local_doc, "notifications", dup);
    else if (sec != NULL)
        dw_log(DW_LOG_WARN, "node", "out of memory: a later committed version will run without "
               "this file's notifications until the next reload");
    dw_notify_kick(nt);
    return 0;
}

int dw_node_reload(struct dw_node *n, const struct dw_config *file, cJSON *file_doc,
                   struct dw_node_reloaded *out, char *errmsg, size_t errlen)
{
    char secret[1024], err[256];

    memset(out, 0, sizeof *out);
    if (n->stopping) {
        snprintf(errmsg, errlen, "stopping");
        return -1;
    }
    /* everything read before anything changes: a bad file changes nothing */
    if (dw_config_read_secret(n->cfg->genesys.client_secret_file, secret, sizeof secret, err,
                              sizeof err) != 0) {
        snprintf(errmsg, errlen, "genesys.client_secret_file: %s", err);
        return -1;
    }
    if (reload_notify(n, file, file_doc, &out->notifications, errmsg, errlen) != 0) {
        explicit_bzero(secret, sizeof secret);
        return -1;
    }
    int set = dw_genesys_set_secret(n->genesys, secret);
    if (set < 0)
        dw_log(DW_LOG_WARN, "node", "reload: out of memory: the Genesys client secret is not "
               "replaced; the old one stays in use");
    out->genesys_secret = set == 1;
    explicit_bzero(secret, sizeof secret);
    if (n->secrets_missing) {
        reload_secrets(n);
        out->peer_secrets = !n->secrets_missing;
    }
    return 0;
}

int dw_node_hand_over(struct dw_node *n, void (*cb)(void *data, bool moved), void *data,
                      uint64_t *target, char *errmsg, size_t errlen)
{
    if (n->stopping) {
        snprintf(errmsg, errlen, "stopping");
        return -1;
    }
    /* no new operation step starts on a leader about to leave */
    int rc = dw_raft_hand_over(n->raft, cb, data, target, errmsg, errlen);
    if (rc == 0) /* the service manager hears of the stop when it begins, not after the hand-over */
        dw_sdnotify_stopping(n->sd);
    return rc;
}
