/* The invariants (docs/reliability.md), checked as the simulation runs: at every Genesys write,
 * every applied entry and every raft step, and the liveness bound once faults stop. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/config.h"
#include "sim.h"

/* The group a trunk base belongs to (the sim's config never moves one between groups). */
static const char *tb_group(int tb)
{
    return tb < 3 ? "carrier-1" : "carrier-2";
}

static bool group_tb(int tb, const char *group)
{
    return strcmp(tb_group(tb), group) == 0;
}

static int enabled_in_group(const struct sim *s, const char *group)
{
    int k = 0;
    for (int t = 0; t < s->g.n_tb; t++)
        k += group_tb(t, group) && s->g.tb[t].enabled;
    return k;
}

static const struct step_fin *finished(const struct sim *s, int64_t op, int seq)
{
    for (int i = 0; i < s->n_fin; i++)
        if (s->fin[i].op == op && s->fin[i].seq == seq)
            return &s->fin[i];
    return NULL;
}

static void sql_row(struct sim_node *n, const char *sql, int64_t op, char *a, size_t alen,
                    char *b, size_t blen);
static bool in_maintenance(struct sim_node *n, const char *scope, const char *id);

static bool view_up(struct sim_node *n, const struct dw_target *t)
{
    return t->site < 0 || dw_fsm_site_verdict(n->fsm, t->site) == DW_UP;
}

static bool view_not_down(struct sim_node *n, const struct dw_target *t)
{
    return t->site < 0 || dw_fsm_site_verdict(n->fsm, t->site) != DW_DOWN;
}

static bool target_enabled(const struct sim *s, const struct dw_target *t)
{
    for (int k = 0; k < t->n_trunk_bases; k++) {
        int tb = gsim_tb_index(&s->g, t->trunk_base_ids[k]);
        if (tb >= 0 && s->g.tb[tb].enabled)
            return true;
    }
    return false;
}

bool check_strands(struct sim *s, int node, int tb, int64_t op)
{
    struct sim_node *n = &s->node[node];
    char kind[32], unused[8];
    /* a rollback switches off a target that failed to come in: the planner passes it over
     * until its verdict changes (and aborts the rollback if it may carry calls again) */
    sql_row(n, "SELECT kind, '' FROM operations WHERE id = ?1", op, kind, sizeof kind, unused,
            sizeof unused);
    if (strcmp(kind, "rollback") == 0)
        return false;
    const struct dw_config *cfg = dw_fsm_config(n->fsm);
    for (int g = 0; g < cfg->n_groups; g++) {
        const struct dw_group *grp = &cfg->groups[g];
        if (strcmp(grp->id, tb_group(tb)) != 0)
            continue;
        bool mine_up = false, other_up = false;
        for (int t = 0; t < grp->n_targets; t++) {
            const struct dw_target *x = &grp->targets[t];
            bool holds = false;
            for (int k = 0; k < x->n_trunk_bases; k++)
                holds = holds || strcmp(x->trunk_base_ids[k], s->g.tb[tb].id) == 0;
            if (holds)
                mine_up = view_up(n, x);
            else if (target_enabled(s, x) && view_not_down(n, x))
                other_up = true; /* as far as the writer knows, it carries calls */
        }
        return mine_up && !other_up;
    }
    return false;
}

void check_write(struct sim *s, const struct gsim_write *w)
{
    /* 2: only the current leader writes. No leader of a later term may have been elected
     * before the write was sent. */
    for (uint64_t t = w->fence.term + 1; t <= s->max_term && t < 4096; t++)
        if (s->elected_at[t] && s->elected_at[t] <= w->sent)
            sim_violation(s, 2, "node %d sent a write in term %" PRIu64 " at %.3f s, after a "
                          "leader of term %" PRIu64 " was elected at %.3f s", w->node + 1,
                          w->fence.term, w->sent / 1000.0, t, s->elected_at[t] / 1000.0);
    /* 9: a node cut off in a minority writes nothing once its lease is over */
    uint64_t ms = s->minority_since[w->node];
    unsigned lease = s->cfg->cluster.election_timeout_ms * 3 / 4;
    if (ms && w->sent > ms + lease)
        sim_violation(s, 9, "node %d wrote at %.3f s from a minority it has been in since %.3f s",
                      w->node + 1, w->sent / 1000.0, ms / 1000.0);
    if (!w->changed)
        return;
    /* 3: a step takes effect once, and never after it was journaled finished */
    const struct step_fin *f = finished(s, w->fence.op, w->fence.seq);
    if (f && f->at <= w->arrived)
        sim_violation(s, 3, "a write of op %" PRId64 " step %d changed %s at %.3f s, after the "
                      "step was journaled finished at %.3f s", w->fence.op, w->fence.seq,
                      s->g.tb[w->tb].id, w->arrived / 1000.0, f->at / 1000.0);
    for (int i = 0; i < s->g.n_writes - 1; i++) {
        const struct gsim_write *o = &s->g.writes[i];
        if (o->changed && o->tb == w->tb && o->fence.op == w->fence.op &&
            o->fence.seq == w->fence.seq)
            sim_violation(s, 3, "op %" PRId64 " step %d changed %s twice (at %.3f s and %.3f s)",
                          w->fence.op, w->fence.seq, s->g.tb[w->tb].id, o->arrived / 1000.0,
                          w->arrived / 1000.0);
    }
    /* 4: never switch off the last target carrying calls while it is UP: the write took calls
     * away (its Edges were up and its trunks in service) and, as the writer saw it when it sent
     * the write, the target was UP and every other enabled target DOWN. A verdict
     * committed while the request travels cannot change what was sent. */
    const char *group = tb_group(w->tb);
    const struct gsim_tb *b = &s->g.tb[w->tb];
    bool was_carrying = (b->site < 0 || s->site_up[b->site]) && w->arrived >= w->in_service_from;
    if (!w->value && was_carrying && w->strands)
        sim_violation(s, 4, "%s: node %d switched %s off, the last UP target it saw in service",
                      group, w->node + 1, s->g.tb[w->tb].id);
}

static uint64_t fnv(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void sql_row(struct sim_node *n, const char *sql, int64_t op, char *a, size_t alen,
                    char *b, size_t blen)
{
    sqlite3_stmt *st;
    a[0] = b[0] = '\0';
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm), sql, -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, op);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *x = sqlite3_column_text(st, 0), *y = sqlite3_column_text(st, 1);
        snprintf(a, alen, "%s", x ? (const char *)x : "");
        snprintf(b, blen, "%s", y ? (const char *)y : "");
    }
    sqlite3_finalize(st);
}

static bool running_in_group(struct sim_node *n, const char *group)
{
    sqlite3_stmt *st;
    bool running = false;
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm),
                           "SELECT 1 FROM operations WHERE grp = ?1 AND status = 'running'", -1,
                           &st, NULL) != SQLITE_OK)
        return true;
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    running = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return running;
}

/* An operation just finished on the first node to apply it: what Genesys carries must match. */
static void check_op_finished(struct sim *s, struct sim_node *n, int64_t op)
{
    char status[32], group[DW_ID_MAX + 1];
    sql_row(n, "SELECT status, grp FROM operations WHERE id = ?1", op, status, sizeof status,
            group, sizeof group);
    if (strcmp(status, "running") == 0 || status[0] == '\0')
        return;
    s->ops_seen++;
    const struct dw_config *cfg = dw_fsm_config(n->fsm);
    for (int g = 0; g < cfg->n_groups; g++) {
        const struct dw_group *grp = &cfg->groups[g];
        if (strcmp(grp->id, group) != 0)
            continue;
        /* 4: no finished operation leaves a DOWN target in service, unless the operation
         * planned at the same entry (a cleanup after an abort) switches it off, or the target
         * is in maintenance (no automatic operation touches it: 5) */
        bool maint = in_maintenance(n, "group", group);
        for (int t = 0; t < grp->n_targets && !running_in_group(n, group) && !maint; t++) {
            const struct dw_target *tg = &grp->targets[t];
            if (tg->site < 0 || dw_fsm_site_verdict(n->fsm, tg->site) != DW_DOWN ||
                strcmp(status, "done") != 0 ||
                in_maintenance(n, "site", cfg->sites[tg->site].id))
                continue;
            for (int k = 0; k < tg->n_trunk_bases; k++) {
                int tb = gsim_tb_index(&s->g, tg->trunk_base_ids[k]);
                if (tb >= 0 && s->g.tb[tb].enabled && t != dw_fsm_active_target(n->fsm, g))
                    sim_violation(s, 4, "op %" PRId64 " finished (%s) leaving %s (site DOWN) in "
                                  "service", op, status, tg->id);
            }
        }
        /* 4: outside a running operation and maintenance, at most one target in service */
        bool site_maint = false;
        for (int t = 0; t < grp->n_targets; t++)
            site_maint = site_maint || (grp->targets[t].site >= 0 &&
                                        in_maintenance(n, "site",
                                                       cfg->sites[grp->targets[t].site].id));
        if (!running_in_group(n, group) && !maint && !site_maint && enabled_in_group(s, group) > 1)
            sim_violation(s, 4, "op %" PRId64 " %s and nothing runs in %s, yet %d targets are in "
                          "service", op, status, group, enabled_in_group(s, group));
    }
}

/* Whether node v could really not probe the site at some time in the last window ms. */
static bool unreachable_lately(const struct sim *s, int v, int site, uint64_t window)
{
    if (!s->site_up[site] || !s->link_site[v][site])
        return true;
    return s->unreach_end[v][site] + window >= sim_now(s);
}

/* 1: a site voted DOWN had a majority of voters that really could not reach it lately (an
 * observation stays fresh for observation_ttl after its last refresh, and a node needs
 * recover_threshold probes to see the site back). Overload or a clock jump is no evidence. */
static void check_verdicts(struct sim *s, struct sim_node *n)
{
    const struct dw_config *cfg = dw_fsm_config(n->fsm);
    uint64_t window = cfg->cluster.observation_ttl_ms +
                      (uint64_t)cfg->probe.recover_threshold * cfg->probe.interval_ms + 2000;
    for (int site = 0; site < cfg->n_sites && site < SIM_SITES; site++) {
        enum dw_health v = dw_fsm_site_verdict(n->fsm, site);
        enum dw_health was = n->verdict_seen[site];
        n->verdict_seen[site] = v;
        if (v == DW_UP && was != DW_UP) {
            n->up_since[site] = dw_fsm_last_ts(n->fsm);
            n->up_known[site] = true;
        }
        if (v != DW_DOWN || was == DW_DOWN)
            continue;
        int evidence = 0;
        for (int k = 0; k < s->n; k++)
            evidence += unreachable_lately(s, k, site, window);
        if (evidence < s->n / 2 + 1)
            sim_violation(s, 1, "node %d's log voted site %s DOWN, but only %d node(s) could not "
                          "reach it in the last %.1f s", n->i + 1, cfg->sites[site].id, evidence,
                          window / 1000.0);
    }
}

static bool in_maintenance(struct sim_node *n, const char *scope, const char *id)
{
    sqlite3_stmt *st;
    bool in = false;
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm), "SELECT 1 FROM maintenance WHERE scope = ?1 AND"
                           " id = ?2", -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    in = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return in;
}

static const struct dw_target *target_of(const struct dw_group *g, const char *id)
{
    for (int t = 0; id != NULL && t < g->n_targets; t++)
        if (strcmp(g->targets[t].id, id) == 0)
            return &g->targets[t];
    return NULL;
}

/* 5: an automatic operation switches nothing in a group in maintenance, nor a target whose site
 * is in maintenance. A rollback is exempt: it undoes the operation's own activation. */
static void check_maintenance(struct sim *s, struct sim_node *n, const struct dw_group *g,
                              int64_t id, const char *kind)
{
    sqlite3_stmt *st;
    if (strcmp(kind, "rollback") == 0)
        return;
    if (in_maintenance(n, "group", g->id))
        sim_violation(s, 5, "automatic %s #%" PRId64 " planned in %s, which is in maintenance",
                      kind, id, g->id);
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm), "SELECT target FROM steps WHERE op = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const struct dw_target *t = target_of(g, (const char *)sqlite3_column_text(st, 0));
        const struct dw_config *cfg = dw_fsm_config(n->fsm);
        if (t && t->site >= 0 && in_maintenance(n, "site", cfg->sites[t->site].id))
            sim_violation(s, 5, "automatic %s #%" PRId64 " in %s switches %s, whose site is in "
                          "maintenance", kind, id, g->id, t->id);
    }
    sqlite3_finalize(st);
}

/* 6: an automatic failback goes to a target whose site this node's log has had UP without a
 * break for stable_for; and a failback that could not bring its target in is followed by the
 * rollback switching that target off. */
static void check_failback(struct sim *s, struct sim_node *n, const struct dw_group *g,
                           int64_t id, const char *kind, const char *to, bool automatic)
{
    char pkind[32], pto[DW_ID_MAX + 1], pstatus[32], paction[32], unused[8];
    int64_t now = dw_fsm_last_ts(n->fsm);
    const struct dw_target *t = target_of(g, to);
    if (strcmp(kind, "failback") == 0 && automatic && t && t->site >= 0 &&
        n->up_known[t->site] && now - n->up_since[t->site] < (int64_t)g->stable_for_ms)
        sim_violation(s, 6, "failback #%" PRId64 " in %s to %s after its site was UP %.1f s "
                      "(stable_for %.1f s)", id, g->id, to,
                      (now - n->up_since[t->site]) / 1000.0, g->stable_for_ms / 1000.0);
    sql_row(n, "SELECT kind, to_target FROM operations WHERE id = (SELECT MAX(id) FROM operations"
            " WHERE id < ?1 AND grp = (SELECT grp FROM operations WHERE id = ?1))", id, pkind,
            sizeof pkind, pto, sizeof pto);
    sql_row(n, "SELECT o.status, s.action FROM operations o LEFT JOIN steps s ON s.op = o.id AND"
            " s.status = 'failed' WHERE o.id = (SELECT MAX(id) FROM operations WHERE id < ?1 AND"
            " grp = (SELECT grp FROM operations WHERE id = ?1))", id, pstatus, sizeof pstatus,
            paction, sizeof paction);
    (void)unused;
    if (strcmp(pkind, "failback") == 0 && strcmp(pstatus, "failed") == 0 &&
        (strcmp(paction, "activate") == 0 || strcmp(paction, "verify") == 0)) {
        char from[DW_ID_MAX + 1], k2[32];
        sql_row(n, "SELECT kind, from_target FROM operations WHERE id = ?1", id, k2, sizeof k2,
                from, sizeof from);
        if (strcmp(k2, "rollback") != 0 || strcmp(from, pto) != 0)
            sim_violation(s, 6, "failback to %s in %s failed at %s, and the next operation #%"
                          PRId64 " is a %s of %s, not its rollback", pto, g->id, paction, id, k2,
                          from);
    }
}

/* 7: at most max_auto_operations automatic failovers and failbacks per group within any
 * flap_window, counting from the group's last hold release. */
static void check_flap(struct sim *s, struct sim_node *n, const struct dw_group *g, int gi,
                       int64_t id)
{
    sqlite3_stmt *st;
    int64_t now = dw_fsm_last_ts(n->fsm), count = 0;
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm), "SELECT COUNT(*) FROM operations WHERE grp = ?1"
                           " AND operator = '' AND kind IN ('failover', 'failback') AND id > ?2"
                           " AND id <= ?3 AND created > ?4", -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, g->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, gi < 2 ? n->released_op[gi] : 0);
    sqlite3_bind_int64(st, 3, id);
    sqlite3_bind_int64(st, 4, now - (int64_t)g->flap_window_ms);
    if (sqlite3_step(st) == SQLITE_ROW)
        count = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (count > (int64_t)g->max_auto_operations)
        sim_violation(s, 7, "%s: %" PRId64 " automatic operations within %.0f s (at most %u)",
                      g->id, count, g->flap_window_ms / 1000.0, g->max_auto_operations);
}

/* Each operation the first time this node's log has it: 1 (a failover moves calls off a target
 * voted DOWN, or when none carries them, never off one that is UP), 5, 6 and 7. */
static void check_new_operations(struct sim *s, struct sim_node *n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(dw_fsm_db(n->fsm), "SELECT id, grp, kind, from_target, to_target,"
                           " operator FROM operations WHERE id > ?1 ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, n->ops_seen_max);
    const struct dw_config *cfg = dw_fsm_config(n->fsm);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        const char *grp = (const char *)sqlite3_column_text(st, 1);
        const char *kind = (const char *)sqlite3_column_text(st, 2);
        const char *from = (const char *)sqlite3_column_text(st, 3);
        const char *to = (const char *)sqlite3_column_text(st, 4);
        const char *op = (const char *)sqlite3_column_text(st, 5);
        bool automatic = op == NULL || op[0] == '\0';
        n->ops_seen_max = id;
        for (int g = 0; g < cfg->n_groups; g++) {
            const struct dw_group *grp_cfg = &cfg->groups[g];
            if (strcmp(grp_cfg->id, grp) != 0)
                continue;
            int gi = strcmp(grp, "carrier-1") == 0 ? 0 : 1;
            if (automatic)
                check_maintenance(s, n, grp_cfg, id, kind);
            check_failback(s, n, grp_cfg, id, kind, to, automatic);
            if (automatic && (strcmp(kind, "failover") == 0 || strcmp(kind, "failback") == 0))
                check_flap(s, n, grp_cfg, gi, id);
            if (strcmp(kind, "failover") != 0 || from == NULL || from[0] == '\0')
                continue;
            const struct dw_target *x = target_of(grp_cfg, from);
            if (x && x->site >= 0 && dw_fsm_site_verdict(n->fsm, x->site) != DW_DOWN)
                sim_violation(s, 1, "failover #%" PRId64 " in %s moves calls off %s, whose "
                              "site is %s in the log", id, grp, from,
                              dw_health_name(dw_fsm_site_verdict(n->fsm, x->site)));
        }
    }
    sqlite3_finalize(st);
}

/* A hold release: the flap window counts from the operations it covers (as the planner does). */
static void note_release(struct sim_node *n, const cJSON *e)
{
    const cJSON *type = cJSON_GetObjectItem(e, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "hold") == 0) {
        const char *g = cJSON_GetStringValue(cJSON_GetObjectItem(e, "group"));
        char maxop[32], unused[8];
        sql_row(n, "SELECT COALESCE(MAX(id), 0), '' FROM operations WHERE grp = (CASE ?1 WHEN 0"
                " THEN 'carrier-1' ELSE 'carrier-2' END) AND status <> 'running'",
                g && strcmp(g, "carrier-2") == 0, maxop, sizeof maxop, unused, sizeof unused);
        if (g)
            n->released_op[strcmp(g, "carrier-2") == 0] = strtoll(maxop, NULL, 10);
    }
}

void check_applied(struct sim *s, int node, const void *buf, size_t len)
{
    struct sim_node *n = &s->node[node];
    cJSON *parsed = cJSON_ParseWithLength(buf, len);
    note_release(n, parsed);
    cJSON_Delete(parsed);
    check_verdicts(s, n);
    check_new_operations(s, n);
    /* 8: every node applies the same entry at the same index */
    uint64_t index = raft_last_applied(n->raft) + 1, h = fnv(buf, len);
    if (index >= s->seq.cap) {
        size_t cap = s->seq.cap ? s->seq.cap : 1024;
        while (cap <= index)
            cap *= 2;
        s->seq.hash = realloc(s->seq.hash, cap * sizeof *s->seq.hash);
        if (s->seq.hash == NULL)
            abort();
        memset(s->seq.hash + s->seq.cap, 0, (cap - s->seq.cap) * sizeof *s->seq.hash);
        s->seq.cap = cap;
    }
    if (s->seq.hash[index] && s->seq.hash[index] != h)
        sim_violation(s, 8, "node %d applied a different entry at index %" PRIu64, node + 1,
                      index);
    s->seq.hash[index] = h;
    /* steps journaled finished, the first time any node applies them */
    cJSON *e = cJSON_ParseWithLength(buf, len);
    const cJSON *type = cJSON_GetObjectItem(e, "type"), *st = cJSON_GetObjectItem(e, "status");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "step") == 0 && cJSON_IsString(st) &&
        (strcmp(st->valuestring, "done") == 0 || strcmp(st->valuestring, "failed") == 0)) {
        int64_t op = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "op"));
        int seq = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "seq"));
        if (!finished(s, op, seq)) {
            if (s->n_fin == s->cap_fin) {
                s->cap_fin = s->cap_fin ? 2 * s->cap_fin : 32;
                s->fin = realloc(s->fin, (size_t)s->cap_fin * sizeof *s->fin);
                if (s->fin == NULL)
                    abort();
            }
            s->fin[s->n_fin++] = (struct step_fin){.op = op, .seq = seq, .at = sim_now(s)};
            check_op_finished(s, n, op);
        }
    }
    cJSON_Delete(e);
}

void check_step(struct sim *s)
{
    int majority = s->n / 2 + 1;
    for (int i = 0; i < s->n; i++) {
        struct sim_node *n = &s->node[i];
        int state = raft_state(n->raft);
        if (state == RAFT_UNAVAILABLE && n->raft_state != RAFT_UNAVAILABLE) {
            /* raft gave up on a running node: it was asked to drop entries it had committed
             * (two different committed entries at one index), a fault of raft itself. What
             * drwatch does on top of a broken log proves nothing, so the run stops here. */
            snprintf(s->raft_fault, sizeof s->raft_fault, "node %d's raft became unavailable "
                     "(term %llu, commit %llu, stored %llu)", i + 1,
                     (unsigned long long)n->raft->current_term,
                     (unsigned long long)n->raft->commit_index,
                     (unsigned long long)n->raft->last_stored);
            sim_trace(s, "RAFT FAULT: %s", s->raft_fault);
            s->stop = true;
        }
        if (s->o.trace && (state != n->raft_state || n->raft->current_term != n->seen_term ||
                           n->raft->voted_for != n->seen_vote))
            sim_trace(s, "node %d: raft state %d term %llu voted for %llu stored %llu commit %llu",
                      i + 1, state, (unsigned long long)n->raft->current_term,
                      (unsigned long long)n->raft->voted_for,
                      (unsigned long long)n->raft->last_stored,
                      (unsigned long long)n->raft->commit_index);
        n->seen_term = n->raft->current_term;
        n->seen_vote = n->raft->voted_for;
        n->raft_state = state;
        if (n->alive && state == RAFT_LEADER) {
            uint64_t t = (uint64_t)n->raft->current_term;
            if (t < 4096 && s->elected_at[t] == 0) {
                s->elected_at[t] = sim_now(s);
                s->leader_changes++;
                sim_trace(s, "node %d leads in term %" PRIu64, i + 1, t);
            }
            if (t > s->max_term)
                s->max_term = t;
        }
        int with = 1;
        for (int j = 0; j < s->n; j++)
            with += j != i && s->node[j].alive && s->link[i][j] && s->link[j][i];
        if (with >= majority)
            s->minority_since[i] = 0;
        else if (s->minority_since[i] == 0)
            s->minority_since[i] = sim_now(s);
    }
}

static int settled_leader(struct sim *s)
{
    for (int i = 0; i < s->n; i++)
        if (node_is_leader(&s->node[i]))
            return i;
    return -1;
}

static void release_done(struct sim_node *n, int status, void *data)
{
    (void)n, (void)status, (void)data;
}

int check_settled(struct sim *s, char *why, size_t whylen)
{
    int l = settled_leader(s);
    if (l < 0) {
        snprintf(why, whylen, "no leader");
        return 0;
    }
    struct sim_node *L = &s->node[l];
    for (int i = 0; i < s->n; i++)
        if (raft_last_applied(s->node[i].raft) != raft_last_applied(L->raft)) {
            snprintf(why, whylen, "node %d has applied %llu entries, the leader %llu", i + 1,
                     (unsigned long long)raft_last_applied(s->node[i].raft),
                     (unsigned long long)raft_last_applied(L->raft));
            return 0;
        }
    const struct dw_config *cfg = dw_fsm_config(L->fsm);
    for (int site = 0; site < cfg->n_sites; site++) {
        enum dw_health want = s->site_up[site] ? DW_UP : DW_DOWN;
        if (dw_fsm_site_verdict(L->fsm, site) != want) {
            snprintf(why, whylen, "site %s is %s in the log, %s in truth", cfg->sites[site].id,
                     dw_health_name(dw_fsm_site_verdict(L->fsm, site)), dw_health_name(want));
            return 0;
        }
    }
    struct dw_step_ref steps[8];
    if (dw_fsm_next_steps(L->fsm, steps, 8) > 0) {
        snprintf(why, whylen, "op %" PRId64 " still runs (step %d %s)", steps[0].op,
                 steps[0].seq, steps[0].action);
        return 0;
    }
    cJSON *st = dw_fsm_status_json(L->fsm);
    const cJSON *g, *m;
    int ok = 1;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(st, "maintenance")) {
        /* the operator ends what is left of the windows */
        char *e = dw_entry_maintenance("clear", cJSON_GetStringValue(cJSON_GetObjectItem(m,
                                       "scope")), cJSON_GetStringValue(cJSON_GetObjectItem(m,
                                       "id")), "sim", NULL, 0);
        if (e)
            node_propose(L, e, release_done, NULL);
        free(e);
        snprintf(why, whylen, "a maintenance window is open");
        ok = 0;
    }
    if (!ok) {
        cJSON_Delete(st);
        return 0;
    }
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(st, "groups")) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(g, "id"));
        if (cJSON_IsTrue(cJSON_GetObjectItem(g, "hold"))) {
            /* the operator's part of the runbook: release a held group */
            char *e = dw_entry_hold_release(id, "sim");
            if (e)
                node_propose(L, e, release_done, NULL);
            free(e);
            snprintf(why, whylen, "%s is held", id);
            ok = 0;
            break;
        }
        int gi = -1;
        for (int k = 0; k < cfg->n_groups; k++)
            if (strcmp(cfg->groups[k].id, id) == 0)
                gi = k;
        int active = gi >= 0 ? dw_fsm_active_target(L->fsm, gi) : -1;
        if (active < 0) {
            snprintf(why, whylen, "%s has no active target", id);
            ok = 0;
            break;
        }
        const struct dw_target *t = &cfg->groups[gi].targets[active];
        if (t->site >= 0 && !s->site_up[t->site]) {
            snprintf(why, whylen, "%s carries calls on %s, whose site is down", id, t->id);
            ok = 0;
            break;
        }
        /* failback: calls end on the highest-priority target that is up, unless an operator's
         * switchover chose the carrier */
        int best = 0;
        while (best < active && cfg->groups[gi].targets[best].site >= 0 &&
               !s->site_up[cfg->groups[gi].targets[best].site])
            best++;
        if (best < active && !cJSON_IsTrue(cJSON_GetObjectItem(g, "pinned"))) {
            snprintf(why, whylen, "%s carries calls on %s, %s is up", id, t->id,
                     cfg->groups[gi].targets[best].id);
            ok = 0;
            break;
        }
        /* exactly the active target in service */
        for (int k = 0; k < cfg->groups[gi].n_targets && ok; k++) {
            const struct dw_target *x = &cfg->groups[gi].targets[k];
            for (int b = 0; b < x->n_trunk_bases; b++) {
                int tb = gsim_tb_index(&s->g, x->trunk_base_ids[b]);
                if (tb >= 0 && s->g.tb[tb].enabled != (k == active)) {
                    snprintf(why, whylen, "%s: %s is %s in Genesys (active: %s)", id,
                             x->trunk_base_ids[b], s->g.tb[tb].enabled ? "enabled" : "disabled",
                             t->id);
                    ok = 0;
                    break;
                }
            }
        }
        if (!ok)
            break;
    }
    cJSON_Delete(st);
    return ok;
}

void check_final(struct sim *s)
{
    /* 8: same log, same state */
    char *ref = NULL;
    int ref_node = -1;
    for (int i = 0; i < s->n && !s->violated; i++) {
        char *d = dw_fsm_dump(s->node[i].fsm);
        if (d == NULL)
            continue;
        if (ref == NULL) {
            ref = d;
            ref_node = i;
            continue;
        }
        if (raft_last_applied(s->node[i].raft) == raft_last_applied(s->node[ref_node].raft) &&
            strcmp(d, ref) != 0) {
            /* name the first line that differs */
            const char *a = ref, *b = d;
            while (*a && *a == *b)
                a++, b++;
            while (a > ref && a[-1] != '\n')
                a--, b--;
            sim_violation(s, 8, "nodes %d and %d applied the same log but their states differ: "
                          "\"%.*s\" against \"%.*s\"", ref_node + 1, i + 1,
                          (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
        }
        free(d);
    }
    free(ref);
}
