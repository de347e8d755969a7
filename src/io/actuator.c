/* Runs operation steps against Genesys on the leader, one worker per running operation, each
 * write fenced by {term, op, step} and a majority-acknowledged lease. */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/actions.h"
#include "drwatch/actuator.h"
#include "drwatch/clock.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"

#define TICK_MAX_MS 500
#define MAX_WORKERS DW_MAX_GROUPS /* a group runs at most one operation at a time */

struct dw_actuator;

/* An item's progress within a switch step; a slot is also the context of its call. */
enum item_state { IT_TODO, IT_FLIGHT, IT_RETRY, IT_OK, IT_FAILED };

struct slot {
    struct worker *w;
    int i;
    enum item_state st;
    uint64_t due; /* IT_RETRY: clock ms when it may go again */
};

/* Why a switch step stops starting items: it ends once its calls in flight have answered. */
enum stop { STOP_NONE, STOP_FAILED, STOP_FENCED };

struct worker {
    struct dw_actuator *a;
    int64_t op;              /* operation this worker serves, 0 = free */
    int busy;                /* a step of op is in flight */
    struct dw_step_ref cur;
    struct dw_target target; /* cur's target, copied: a config change must not move it */
    struct dw_fence fence;
    uint64_t barrier_sent;   /* monotonic ms when the step's barrier was requested */
    uint64_t step_started;   /* monotonic ms when this attempt at cur began (step durations) */
    int tb;                  /* the trunk base a verify step is checking */
    struct dw_action_item *items; /* an activate or deactivate step's changes, in order */
    struct slot *slots;      /* one per item */
    int n_items;
    int in_flight;           /* calls of this step not answered yet */
    enum stop stop;
    int pumping, repump;     /* a client may answer from inside the call that starts it */
    int retry_armed;         /* wait runs for an item's retry */
    char failed[256];        /* the step's definitive failures, journaled first */
    uint64_t verify_deadline;
    uint64_t step_deadline;  /* clock ms: a switch stops retrying errors that may pass */
    int deadline_seq;        /* the step step_deadline belongs to, -1 = none */
    int retry_wait;          /* waiting to try a switch again: no request can leave meanwhile */
    uint64_t started_term;   /* this node committed STARTED of started_seq in this term */
    int started_seq;
    uint64_t waited_term;    /* the resume wait was counted for waited_seq in this term */
    int waited_seq;
    char detail[512];
    struct dw_timer *wait;   /* verify polling, resume wait */
    dw_timer_cb next;        /* what wait runs */
};

struct dw_actuator {
    struct dw_clock clock;
    struct dw_fsm *fsm;
    struct dw_actuator_ops ops;
    struct dw_timer *tick;   /* notices leadership changes, renews the lease, retries */
    unsigned tick_ms;
    int closing;
    int refs;                /* outstanding callbacks + open handles; freed at zero */
    uint64_t term;           /* term this node leads in as far as the actuator saw, 0 = none */
    uint64_t leader_since;   /* monotonic ms when it first saw this node lead in term */
    uint64_t lease_term;
    uint64_t lease_until;    /* monotonic ms; no other leader can exist before it */
    unsigned lease_ms;
    uint64_t node_id;        /* named in the fencing header of every write */
    int renewing;
    uint64_t renew_sent, renew_term;
    struct worker w[MAX_WORKERS];
    char current[512];
    char crash_before[16];
    int64_t began_op;        /* the last operation whose first step this process ran */
    int64_t unknown_logged;
    struct dw_actuator_stats stats;
};

static uint64_t now_ms(const struct dw_actuator *a)
{
    return a->clock.now_ms(a->clock.ctx);
}

/* Seconds to minutes: a verify polls for up to verify_timeout, a switch retries 429s. */
const double dw_step_bucket_bounds[DW_STEP_BUCKETS] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30,
                                                       60, 120, 300};

static void observe_step(struct worker *w, enum dw_step_status st)
{
    enum dw_step_action act;
    if (dw_step_action_parse(w->cur.action, &act) != 0)
        return;
    struct dw_step_hist *h = &w->a->stats.steps[act][st == DW_STEP_FAILED];
    double secs = (double)(now_ms(w->a) - w->step_started) / 1000.0;
    int b = 0;
    while (b < DW_STEP_BUCKETS && secs > dw_step_bucket_bounds[b])
        b++;
    h->counts[b]++;
    h->sum += secs;
}

/* Never from inside a raft callback: raft must not be re-entered while it completes requests. */
static void kick_soon(struct dw_actuator *a)
{
    a->clock.timer_start(a->tick, 0);
}

static void act_unref(struct dw_actuator *a)
{
    if (--a->refs != 0)
        return;
    for (int i = 0; i < MAX_WORKERS; i++) {
        free(a->w[i].items);
        free(a->w[i].slots);
    }
    free(a);
}

static const struct dw_target *cur_target(const struct worker *w)
{
    return &w->target;
}

static const char *cur_group(const struct worker *w)
{
    const struct dw_config *c = dw_fsm_config(w->a->fsm);
    return w->cur.group >= 0 && w->cur.group < c->n_groups ? c->groups[w->cur.group].id : NULL;
}

/* The fields of a step's log lines (docs/logging.md). */
#define STEP_FIELDS(w)                                                                          \
    DW_LOG_FIELDS(DW_LS("group", cur_group(w)), DW_LI("op", (w)->cur.op),                       \
                  DW_LI("step", (w)->cur.seq), DW_LS("action", (w)->cur.action),                \
                  DW_LS("target", cur_target(w)->id))

/* The committed config: timings are read where they are used, so a change applies at once. */
static const struct dw_genesys_cfg *gcfg(const struct dw_actuator *a)
{
    return &dw_fsm_config(a->fsm)->genesys;
}

static void text_append(char *buf, size_t size, const char *text)
{
    size_t n = strlen(buf);
    if (n > 0 && n + 2 < size) {
        buf[n++] = ';';
        buf[n++] = ' ';
        buf[n] = '\0';
    }
    snprintf(buf + n, size - n, "%s", text);
}

static void detail_append(struct worker *w, const char *text)
{
    text_append(w->detail, sizeof w->detail, text);
}

/* The journal keeps DW_DETAIL_MAX (512) bytes of a step's detail, and a step of many changes
 * can say more: the failures lead, the changes made (some perhaps after a failure, by calls
 * already in flight) follow. */
static void detail_failure(struct worker *w, const char *why)
{
    static const char sep[] = "; done: ";
    char before[sizeof w->detail];
    memcpy(before, w->detail, sizeof before);
    snprintf(w->detail, sizeof w->detail, "%s", why);
    size_t n = strlen(w->detail), k = strlen(before);
    if (k == 0 || n + sizeof sep >= sizeof w->detail)
        return;
    memcpy(w->detail + n, sep, sizeof sep - 1);
    n += sizeof sep - 1;
    if (k > sizeof w->detail - 1 - n)
        k = sizeof w->detail - 1 - n;
    memcpy(w->detail + n, before, k);
    w->detail[n + k] = '\0';
}

static void step_finished(struct worker *w)
{
    w->busy = 0;
    w->retry_wait = 0;
    w->a->clock.timer_stop(w->wait);
}

/* ---- fencing ---- */

static bool step_still_next(struct dw_actuator *a, int64_t op, int seq)
{
    struct dw_step_ref steps[MAX_WORKERS];
    int n = dw_fsm_next_steps(a->fsm, steps, MAX_WORKERS);
    for (int i = 0; i < n; i++) {
        if (steps[i].op == op && steps[i].seq == seq)
            return true;
    }
    return false;
}

/* Side-effect free: the Genesys client calls it from inside its own machinery. Reads need no
 * lease (they change nothing); writes do. */
static bool fence_check(struct dw_actuator *a, const struct dw_fence *f, bool write, char *why,
                        size_t whylen)
{
    if (a->closing) {
        snprintf(why, whylen, "shutting down");
        return false;
    }
    if (!a->ops.is_leader(a->ops.raft)) {
        snprintf(why, whylen, "no longer leader");
        return false;
    }
    uint64_t term = a->ops.term(a->ops.raft);
    if (term != f->term) {
        snprintf(why, whylen, "term is %" PRIu64 " now", term);
        return false;
    }
    uint64_t now = now_ms(a);
    if (write && (a->lease_term != f->term || now >= a->lease_until)) {
        snprintf(why, whylen, "lease lapsed %" PRIu64 " ms ago",
                 a->lease_term == f->term ? now - a->lease_until : 0);
        return false;
    }
    if (!step_still_next(a, f->op, f->seq)) {
        snprintf(why, whylen, "step is no longer pending (operation ended or moved on)");
        return false;
    }
    return true;
}

/* The token check immediately before every Genesys write request. */
static bool fence_valid(void *data, const struct dw_fence *f, char *why, size_t whylen)
{
    return fence_check(data, f, true, why, whylen);
}

/* Leadership as the actuator saw it last; a change cancels every write in flight. */
static bool leading(struct dw_actuator *a)
{
    bool lead = !a->closing && a->ops.is_leader(a->ops.raft);
    uint64_t term = lead ? a->ops.term(a->ops.raft) : 0;

    if (term == a->term)
        return lead;
    if (a->term != 0) {
        dw_log_kv(DW_LOG_WARN, "actuator", DW_LOG_FIELDS(DW_LI("term", a->term)),
                  "leadership of term %" PRIu64 " lost: cancelling Genesys writes in flight",
                  a->term);
        a->ops.cancel_writes(a->ops.genesys, "leadership lost");
    }
    a->term = term;
    for (int i = 0; i < MAX_WORKERS; i++)
        a->w[i].deadline_seq = -1; /* a new term gives its steps their full time */
    a->leader_since = now_ms(a);
    a->lease_until = 0;
    a->lease_term = 0;
    return lead;
}

static void extend_lease(struct dw_actuator *a, uint64_t term, uint64_t sent)
{
    if (a->ops.term(a->ops.raft) != term)
        return;
    if (a->lease_term != term)
        a->lease_until = 0;
    a->lease_term = term;
    if (sent + a->lease_ms > a->lease_until)
        a->lease_until = sent + a->lease_ms;
}

static void renew_done(void *data, int status, const char *errmsg)
{
    struct dw_actuator *a = data;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    a->renewing = 0;
    if (status == 0) {
        extend_lease(a, a->renew_term, a->renew_sent);
        a->stats.lease_renewals++;
    } else {
        dw_log(DW_LOG_DEBUG, "actuator", "lease renewal failed: %s", errmsg ? errmsg : "?");
    }
}

static bool writing(const struct dw_actuator *a)
{
    for (int i = 0; i < MAX_WORKERS; i++) {
        const struct worker *w = &a->w[i];
        if (w->busy && !w->retry_wait && strcmp(w->cur.action, "verify") != 0)
            return true;
    }
    return false;
}

/* While a write runs, a barrier every third of the lease keeps it from lapsing on a healthy
 * leader, however long Genesys takes to answer. */
static void renew_lease(struct dw_actuator *a)
{
    if (a->renewing || a->term == 0 || !writing(a))
        return;
    if (a->lease_term == a->term && a->lease_until > now_ms(a) + 2 * a->lease_ms / 3)
        return;
    a->renew_sent = now_ms(a);
    a->renew_term = a->term;
    a->refs++;
    if (a->ops.barrier(a->ops.raft, renew_done, a) != 0) {
        a->refs--;
        return;
    }
    a->renewing = 1;
}

/* Leadership, term and relevance before each stage of a step; stops the step when one fails. */
static int still_valid(struct worker *w)
{
    char why[160];

    if (fence_check(w->a, &w->fence, false, why, sizeof why))
        return 1;
    dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
              "op %" PRId64 " step %d: stopping: %s", w->cur.op,
              w->cur.seq, why);
    w->a->stats.fenced_steps++;
    step_finished(w);
    kick_soon(w->a);
    return 0;
}

/* ---- journal ---- */

static void committed(void *data, int status, const char *errmsg);

static void commit(struct worker *w, enum dw_step_status st)
{
    struct dw_actuator *a = w->a;
    char err[256];
    char *e = dw_entry_step(w->cur.op, w->cur.seq, st, st == DW_STEP_STARTED ? NULL : w->detail);
    if (e == NULL) {
        step_finished(w);
        return;
    }
    a->refs++;
    if (a->ops.propose(a->ops.raft, e, committed, w, err, sizeof err) != 0) {
        a->refs--;
        dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d: cannot journal %s: %s",
                  w->cur.op, w->cur.seq, dw_step_status_name(st), err);
        step_finished(w);
    } else {
        if (st == DW_STEP_STARTED) {
            w->started_term = w->fence.term;
            w->started_seq = w->cur.seq;
        }
        if (st != DW_STEP_STARTED)
            observe_step(w, st);
        /* INFO: the node that ran a step says so (the FSM's line on every node does not) */
        dw_log_kv(DW_LOG_INFO, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d %s %s: %s%s%s", w->cur.op,
                  w->cur.seq, w->cur.action, cur_target(w)->id, dw_step_status_name(st),
                  w->detail[0] && st != DW_STEP_STARTED ? ": " : "",
                  st != DW_STEP_STARTED ? w->detail : "");
    }
    free(e);
}

static void committed(void *data, int status, const char *errmsg)
{
    struct worker *w = data;
    struct dw_actuator *a = w->a;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    if (status != 0)
        dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d: journal entry not committed: %s",
                  w->cur.op, w->cur.seq, errmsg ? errmsg : "unknown");
    step_finished(w);
    kick_soon(a);
}

/* ---- activate / deactivate ---- */

/* A step's trunk bases are independent of each other, so up to max_concurrent_requests of them
 * are switched at once; Edges before them and routes after them run one at a time, in order,
 * each only once everything before it is done. The step ends (journaled or fenced) only when
 * none of its calls is in flight, so no write of it can land after its end is journaled. */

static void switch_pump(struct worker *w);

static unsigned step_concurrency(const struct dw_actuator *a)
{
    unsigned n = gcfg(a)->max_concurrent_requests;
    return n > 0 ? n : 4;
}

static void note_failure(struct worker *w, const char *text)
{
    text_append(w->failed, sizeof w->failed, text);
    if (w->stop == STOP_NONE)
        w->stop = STOP_FAILED;
}

static void switch_retry(void *data);

/* The earliest item retry, or nothing to wait for. */
static void arm_retry(struct worker *w)
{
    struct dw_actuator *a = w->a;
    uint64_t first = UINT64_MAX, now = now_ms(a);
    for (int i = 0; i < w->n_items; i++)
        if (w->slots[i].st == IT_RETRY && w->slots[i].due < first)
            first = w->slots[i].due;
    w->retry_armed = first != UINT64_MAX;
    w->next = switch_retry;
    if (w->retry_armed)
        a->clock.timer_start(w->wait, first > now ? first - now : 0);
}

/* An item's retry is due. With calls of the step in flight the lease is being renewed and the
 * item simply goes again (its call reads first); with none, nothing kept the lease, so the whole
 * step runs again through a barrier, reading first, as a step with one item always did. */
static void switch_retry(void *data)
{
    struct worker *w = data;
    uint64_t now = now_ms(w->a);
    w->retry_armed = 0;
    if (w->stop != STOP_NONE)
        return;
    if (w->in_flight == 0) {
        step_finished(w);
        kick_soon(w->a);
        return;
    }
    /* a loop's timers run on its cached clock, which lags the monotonic one a little */
    for (int i = 0; i < w->n_items; i++)
        if (w->slots[i].st == IT_RETRY && w->slots[i].due <= now + 1)
            w->slots[i].st = IT_TODO;
    arm_retry(w);
    switch_pump(w);
}

static void switch_done(void *data, enum dw_gresult res, const char *detail)
{
    struct slot *sl = data;
    struct worker *w = sl->w;
    struct dw_actuator *a = w->a;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    w->in_flight--;
    sl->st = IT_TODO;
    unsigned again = gcfg(a)->verify_interval_ms;
    if (res == DW_G_FENCED) {
        /* nothing more is sent; the step stays STARTED and is run again once this node holds
         * a valid token, reading first */
        dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d: %s stopped by fencing: %s",
                  w->cur.op, w->cur.seq, w->items[sl->i].id, detail);
        w->stop = STOP_FENCED;
    } else if (res == DW_G_TRANSIENT && now_ms(a) + again < w->step_deadline) {
        /* Genesys may be back soon: a failed step would roll back and move calls for nothing.
         * Try the item again, reading first, until the step's deadline; the others go on. */
        dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d: %s: %s; trying again in %u ms "
                  "(gives up in %" PRIu64 " ms)", w->cur.op, w->cur.seq, w->items[sl->i].id, detail,
                  again, w->step_deadline - now_ms(a));
        if (w->stop == STOP_NONE) {
            sl->st = IT_RETRY;
            sl->due = now_ms(a) + again;
            if (!w->retry_armed)
                arm_retry(w);
        }
    } else if (res == DW_G_OK || res == DW_G_UNCHANGED) {
        sl->st = IT_OK;
        detail_append(w, detail);
    } else {
        char line[320];
        snprintf(line, sizeof line, "%s%s", detail, res == DW_G_TRANSIENT ? "; still failing "
                 "after " : "");
        if (res == DW_G_TRANSIENT)
            snprintf(line + strlen(line), sizeof line - strlen(line), "%u ms",
                     gcfg(a)->step_timeout_ms);
        sl->st = IT_FAILED;
        note_failure(w, line);
    }
    switch_pump(w);
}

static int start_item(struct worker *w, struct slot *sl, bool on)
{
    struct dw_actuator *a = w->a;
    const struct dw_target *t = cur_target(w);
    const struct dw_action_item *it = &w->items[sl->i];
    switch (it->kind) {
    case DW_ITEM_ROUTE:
        return a->ops.set_route(a->ops.genesys, it->site_id, it->id, it->mode, on,
                                (const char (*)[DW_ID_MAX])t->trunk_base_ids, t->n_trunk_bases,
                                &w->fence, switch_done, sl);
    case DW_ITEM_EDGE:
        return a->ops.set_edge_service(a->ops.genesys, it->id, on, t->drain_wait_s, &w->fence,
                                       switch_done, sl);
    case DW_ITEM_TRUNK_BASE:
        break;
    }
    return a->ops.set_trunk_base(a->ops.genesys, it->id, on, &w->fence, switch_done, sl);
}

static bool start_slot(struct worker *w, struct slot *sl)
{
    struct dw_actuator *a = w->a;
    sl->st = IT_FLIGHT;
    w->in_flight++;
    a->refs++;
    if (start_item(w, sl, strcmp(w->cur.action, "activate") == 0) == 0)
        return true;
    a->refs--;
    w->in_flight--;
    sl->st = IT_FAILED;
    note_failure(w, "cannot start Genesys call");
    return false;
}

/* Starts what may start now: the first unfinished item alone when it is no trunk base, else
 * the trunk bases from it on, up to the step's concurrency (a retry keeps its place). */
static void start_ready(struct worker *w)
{
    int first = 0;
    while (first < w->n_items && w->slots[first].st == IT_OK)
        first++;
    if (first == w->n_items)
        return;
    if (w->items[first].kind != DW_ITEM_TRUNK_BASE) {
        if (w->slots[first].st == IT_TODO && w->in_flight == 0)
            start_slot(w, &w->slots[first]);
        return;
    }
    unsigned used = 0, max = step_concurrency(w->a);
    int end = first;
    for (; end < w->n_items && w->items[end].kind == DW_ITEM_TRUNK_BASE; end++)
        used += w->slots[end].st == IT_FLIGHT || w->slots[end].st == IT_RETRY;
    for (int i = first; i < end && used < max && w->stop == STOP_NONE && !w->repump; i++) {
        if (w->slots[i].st == IT_TODO && start_slot(w, &w->slots[i]))
            used++;
    }
}

static bool all_ok(const struct worker *w)
{
    for (int i = 0; i < w->n_items; i++)
        if (w->slots[i].st != IT_OK)
            return false;
    return true;
}

/* The step ends here once nothing of it is in flight: fenced (stays STARTED), FAILED (the
 * failures lead the detail), DONE, or it waits for an item's retry. */
static void switch_settle(struct worker *w)
{
    struct dw_actuator *a = w->a;
    if (w->in_flight > 0)
        return;
    if (w->stop == STOP_FENCED) {
        a->stats.fenced_steps++;
        step_finished(w);
        kick_soon(a);
    } else if (w->stop == STOP_FAILED) {
        a->clock.timer_stop(w->wait);
        detail_failure(w, w->failed);
        if (still_valid(w))
            commit(w, DW_STEP_FAILED);
    } else if (all_ok(w)) {
        if (still_valid(w))
            commit(w, DW_STEP_DONE);
    } else if (w->retry_armed) {
        w->retry_wait = 1; /* no request can leave until the retry: the lease may lapse */
    }
}

static void switch_pump(struct worker *w)
{
    char why[160];
    if (w->pumping) {
        w->repump = 1;
        return;
    }
    w->pumping = 1;
    do {
        w->repump = 0;
        if (w->stop == STOP_NONE && !fence_check(w->a, &w->fence, false, why, sizeof why)) {
            dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
                      "op %" PRId64 " step %d: stopping: %s", w->cur.op,
                      w->cur.seq, why);
            w->stop = STOP_FENCED;
        }
        if (w->stop == STOP_NONE)
            start_ready(w);
    } while (w->repump);
    w->pumping = 0;
    switch_settle(w);
}

static void switch_begin(struct worker *w)
{
    w->in_flight = 0;
    w->stop = STOP_NONE;
    w->retry_armed = 0;
    w->retry_wait = 0;
    w->failed[0] = '\0';
    for (int i = 0; i < w->n_items; i++)
        w->slots[i].st = IT_TODO;
    switch_pump(w);
}

/* A client without route or Edge calls (the simulated cluster's) fails the step before it
 * changes anything, rather than leave it half done. */
static const char *unsupported(const struct worker *w)
{
    for (int i = 0; i < w->n_items; i++) {
        if (w->items[i].kind == DW_ITEM_ROUTE && w->a->ops.set_route == NULL)
            return "outbound routes not supported by this client";
        if (w->items[i].kind == DW_ITEM_EDGE && w->a->ops.set_edge_service == NULL)
            return "Edge drain not supported by this client";
    }
    return NULL;
}

/* ---- verify ---- */

static void verify_next(struct worker *w);

static void verify_wait_done(void *data)
{
    struct worker *w = data;
    if (!w->a->closing && still_valid(w))
        verify_next(w);
}

static void verify_done(void *data, enum dw_gresult res, const char *detail)
{
    struct worker *w = data;
    struct dw_actuator *a = w->a;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    const struct dw_target *t = cur_target(w);
    if (res == DW_G_OK) {
        char line[192];
        snprintf(line, sizeof line, "%s verified: %s", t->trunk_base_ids[w->tb], detail);
        detail_append(w, line);
        w->tb++;
        verify_next(w);
        return;
    }
    if (res == DW_G_FAIL || now_ms(a) >= w->verify_deadline) {
        char line[256];
        snprintf(line, sizeof line, "%s not verified within %u ms: %s", t->trunk_base_ids[w->tb],
                 gcfg(a)->verify_timeout_ms, detail);
        detail_append(w, line);
        if (still_valid(w))
            commit(w, DW_STEP_FAILED);
        return;
    }
    w->next = verify_wait_done;
    a->clock.timer_start(w->wait, gcfg(a)->verify_interval_ms);
}

static void verify_next(struct worker *w)
{
    struct dw_actuator *a = w->a;
    const struct dw_target *t = cur_target(w);
    if (w->tb >= t->n_trunk_bases) {
        if (still_valid(w))
            commit(w, DW_STEP_DONE);
        return;
    }
    a->refs++;
    if (a->ops.check_trunks(a->ops.genesys, t->trunk_base_ids[w->tb], verify_done, w) != 0) {
        a->refs--;
        detail_append(w, "cannot start Genesys call");
        commit(w, DW_STEP_FAILED);
    }
}

/* ---- a step ---- */

static void execute(struct worker *w)
{
    struct dw_actuator *a = w->a;
    if (w->cur.seq == 0)
        a->began_op = w->cur.op;
    w->tb = 0;
    w->detail[0] = '\0';
    if (strcmp(w->cur.action, "verify") == 0) {
        w->verify_deadline = now_ms(a) + gcfg(a)->verify_timeout_ms;
        verify_next(w);
    } else {
        /* kept when the step is run again (after a retry wait or fencing) in the same term */
        if (w->deadline_seq != w->cur.seq) {
            w->step_deadline = now_ms(a) + gcfg(a)->step_timeout_ms;
            w->deadline_seq = w->cur.seq;
        }
        const char *why = unsupported(w);
        if (why != NULL) {
            detail_append(w, why);
            if (still_valid(w))
                commit(w, DW_STEP_FAILED);
            return;
        }
        switch_begin(w);
    }
}

static void maybe_crash(struct worker *w)
{
    struct dw_actuator *a = w->a;
    /* Only the leader that began this operation dies: the one that takes over must finish it,
     * even when every node was armed. began_op is set when step 0 runs, after this check, so
     * step 0 itself is matched by its number (else "activate" never fired). */
    if (a->crash_before[0] && strcmp(a->crash_before, w->cur.action) == 0 &&
        (a->began_op == w->cur.op || w->cur.seq == 0)) {
        dw_log(DW_LOG_WARN, "actuator", "debug: crashing before %s of op %" PRId64 " as requested",
               w->cur.action, w->cur.op);
        raise(SIGKILL);
    }
}

static void resume_wait_done(void *data)
{
    struct worker *w = data;
    step_finished(w);
    kick_soon(w->a);
}

/* An earlier leader (this node in an earlier term too) may still have a request in flight for
 * the group: for this step, when it is STARTED and was not started in this term, or for an
 * operation that ended meanwhile with a step STARTED (aborted while its write travelled). Its
 * lease ended before this term began, so waiting one request timeout from then lets that
 * request land (or die) before this leader reads. */
static bool earlier_write_in_flight(struct worker *w)
{
    struct dw_actuator *a = w->a;
    if (w->cur.status == DW_STEP_STARTED &&
        !(w->started_term == w->fence.term && w->started_seq == w->cur.seq))
        return true;
    /* Not only recent ones: entry stamps cannot tell how long ago an operation ended (a
     * leader whose clock ran ahead stamps ahead), and the wait is at most one request timeout
     * from taking office. */
    return dw_fsm_group_write_unsettled(a->fsm, w->cur.group, w->cur.op) != 0;
}

static bool resume_must_wait(struct worker *w)
{
    struct dw_actuator *a = w->a;
    if (strcmp(w->cur.action, "verify") == 0 || !earlier_write_in_flight(w))
        return false;
    uint64_t ready = a->leader_since + gcfg(a)->request_timeout_ms, now = now_ms(a);
    if (now >= ready)
        return false;
    if (w->waited_term != w->fence.term || w->waited_seq != w->cur.seq) {
        dw_log_kv(DW_LOG_INFO, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d %s %s: an earlier leader may "
                  "have a request for this group in flight; waiting %" PRIu64 " ms for it, then "
                  "reading first", w->cur.op, w->cur.seq, w->cur.action, cur_target(w)->id,
                  ready - now);
        a->stats.resume_waits++;
        w->waited_term = w->fence.term;
        w->waited_seq = w->cur.seq;
    }
    /* a loop's timers run on its cached clock, which lags the monotonic one a little */
    w->next = resume_wait_done;
    a->clock.timer_start(w->wait, ready - now + 1);
    return true;
}

static void barrier_done(void *data, int status, const char *errmsg)
{
    struct worker *w = data;
    struct dw_actuator *a = w->a;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    if (status != 0) {
        dw_log(DW_LOG_WARN, "actuator", "barrier failed: %s", errmsg ? errmsg : "unknown");
        step_finished(w);
        return;
    }
    extend_lease(a, w->fence.term, w->barrier_sent);
    if (!still_valid(w))
        return;
    maybe_crash(w);
    if (w->cur.status == DW_STEP_PENDING) {
        w->detail[0] = '\0';
        commit(w, DW_STEP_STARTED);
    } else if (!resume_must_wait(w)) {
        bool own = w->started_seq == w->cur.seq && w->started_term == w->fence.term;
        dw_log_kv(own ? DW_LOG_DEBUG : DW_LOG_INFO, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d %s %s: running (%s)", w->cur.op, w->cur.seq,
                  w->cur.action, cur_target(w)->id,
                  own ? "started" : "resumed from an earlier leader's journal");
        execute(w);
    }
}

/* The step's changes, copied with its target (verify has none: it reads trunks). */
static int load_items(struct dw_actuator *a, struct worker *w)
{
    const struct dw_config *cfg = dw_fsm_config(a->fsm);
    bool on = strcmp(w->cur.action, "activate") == 0;
    w->n_items = 0;
    if (strcmp(w->cur.action, "verify") == 0)
        return 0;
    int n = dw_action_items(cfg, &w->target, on, NULL, 0);
    struct dw_action_item *items = realloc(w->items, (size_t)(n > 0 ? n : 1) * sizeof *items);
    if (items == NULL)
        return -1;
    w->items = items;
    struct slot *slots = realloc(w->slots, (size_t)(n > 0 ? n : 1) * sizeof *slots);
    if (slots == NULL)
        return -1;
    w->slots = slots;
    w->n_items = dw_action_items(cfg, &w->target, on, items, n);
    for (int i = 0; i < w->n_items; i++)
        w->slots[i] = (struct slot){.w = w, .i = i, .st = IT_TODO};
    return 0;
}

static void start_step(struct dw_actuator *a, struct worker *w, const struct dw_step_ref *s)
{
    w->cur = *s;
    w->target = dw_fsm_config(a->fsm)->groups[s->group].targets[s->target];
    if (load_items(a, w) != 0) {
        dw_log_kv(DW_LOG_WARN, "actuator", STEP_FIELDS(w),
                  "op %" PRId64 " step %d: out of memory", s->op, s->seq);
        return; /* tried again at the next tick */
    }
    w->busy = 1;
    w->fence = (struct dw_fence){.node = a->node_id, .term = a->term, .op = s->op, .seq = s->seq,
                                 .valid = fence_valid, .data = a};
    /* Every step begins with a barrier in the current term: it proves a majority and starts
     * the lease. */
    w->barrier_sent = w->step_started = now_ms(a);
    a->refs++;
    if (a->ops.barrier(a->ops.raft, barrier_done, w) != 0) {
        a->refs--;
        step_finished(w);
    }
}

/* An operation that ended (aborted) may still have a request on its way to Genesys: its group's
 * next operation starts once that one is answered, so the two never race on a trunk base. */
static bool group_busy(const struct dw_actuator *a, const struct dw_step_ref *s)
{
    for (int i = 0; i < MAX_WORKERS; i++) {
        const struct worker *w = &a->w[i];
        if (w->busy && w->op != s->op && w->cur.group == s->group)
            return true;
    }
    return false;
}

static struct worker *worker_for(struct dw_actuator *a, int64_t op)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (a->w[i].op == op)
            return &a->w[i];
    return NULL;
}

void dw_actuator_kick(struct dw_actuator *a)
{
    struct dw_step_ref steps[MAX_WORKERS];

    if (a == NULL || a->closing || !leading(a))
        return;
    int n = dw_fsm_next_steps(a->fsm, steps, MAX_WORKERS);
    /* free the workers of operations that ended */
    for (int i = 0; i < MAX_WORKERS; i++) {
        struct worker *w = &a->w[i];
        bool running = false;
        for (int k = 0; k < n && !running; k++)
            running = steps[k].op == w->op;
        if (w->op != 0 && !running && !w->busy)
            w->op = 0;
    }
    for (int k = 0; k < n; k++) {
        const struct dw_step_ref *s = &steps[k];
        if (s->group < 0 || s->target < 0) {
            /* The log names a group or target the committed configuration lacks (it cannot,
             * unless the state is damaged): acting on a guess could switch the wrong trunk.
             * Other operations go on. */
            if (s->op > a->unknown_logged)
                dw_log_kv(DW_LOG_ERROR, "actuator", DW_LOG_FIELDS(DW_LI("op", s->op)),
                          "op %" PRId64 " names a group or target "
                          "missing from the committed configuration; not acting on it", s->op);
            if (s->op > a->unknown_logged)
                a->unknown_logged = s->op;
            continue;
        }
        struct worker *w = worker_for(a, s->op);
        if (w == NULL && group_busy(a, s))
            continue; /* kicked again when that request is answered */
        if (w == NULL && (w = worker_for(a, 0)) != NULL) {
            w->op = s->op;
            w->started_term = 0;
            w->waited_term = 0;
            w->deadline_seq = -1;
        }
        if (w != NULL && !w->busy)
            start_step(a, w, s);
    }
}

static void tick_cb(void *data)
{
    struct dw_actuator *a = data;
    a->clock.timer_start(a->tick, a->tick_ms);
    dw_actuator_kick(a);
    if (!a->closing && leading(a))
        renew_lease(a);
}

/* ---- ops of a running node ---- */

static bool live_is_leader(void *r)
{
    return dw_raft_is_leader(r);
}

static uint64_t live_term(void *r)
{
    return dw_raft_term(r);
}

static int live_barrier(void *r, dw_raft_done_cb cb, void *data)
{
    return dw_raft_barrier(r, cb, data);
}

static int live_propose(void *r, const char *e, dw_raft_done_cb cb, void *data, char *err,
                        size_t errlen)
{
    return dw_raft_propose(r, e, cb, data, err, errlen);
}

static int live_set(void *g, const char *tb, bool on, const struct dw_fence *f, dw_genesys_cb cb,
                    void *data)
{
    return dw_genesys_switch_trunk_base(g, tb, on, f, cb, data); /* reads back after a PUT */
}

static int live_route(void *g, const char *site, const char *route, enum dw_route_mode mode,
                      bool on, const char (*tbs)[DW_ID_MAX], int n_tbs, const struct dw_fence *f,
                      dw_genesys_cb cb, void *data)
{
    return dw_genesys_set_route(g, site, route, mode, on, tbs, n_tbs, f, cb, data);
}

static int live_edge(void *g, const char *edge, bool on, unsigned wait_s,
                     const struct dw_fence *f, dw_genesys_cb cb, void *data)
{
    return dw_genesys_set_edge_service(g, edge, on, wait_s, f, cb, data);
}

static int live_check(void *g, const char *tb, dw_genesys_cb cb, void *data)
{
    return dw_genesys_check_trunks(g, tb, cb, data);
}

static void live_cancel(void *g, const char *why)
{
    dw_genesys_cancel_writes(g, why);
}

void dw_actuator_live_ops(struct dw_actuator_ops *ops, struct dw_raft *raft,
                          struct dw_genesys *genesys)
{
    *ops = (struct dw_actuator_ops){
        .raft = raft, .is_leader = live_is_leader, .term = live_term, .barrier = live_barrier,
        .propose = live_propose, .genesys = genesys, .set_trunk_base = live_set,
        .check_trunks = live_check, .cancel_writes = live_cancel, .set_route = live_route,
        .set_edge_service = live_edge};
}

/* ---- lifetime ---- */

static void wait_fired(void *data)
{
    struct worker *w = data;
    w->next(w);
}

static void free_timers(struct dw_actuator *a)
{
    a->clock.timer_free(a->tick);
    for (int i = 0; i < MAX_WORKERS; i++)
        a->clock.timer_free(a->w[i].wait);
}

int dw_actuator_init(struct dw_actuator **out, const struct dw_clock *clock,
                     const struct dw_config *cfg, struct dw_fsm *fsm,
                     const struct dw_actuator_ops *ops)
{
    struct dw_actuator *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -1;
    a->clock = *clock;
    a->fsm = fsm;
    a->ops = *ops;
    a->node_id = cfg->node_id;
    /* Followers refuse votes for at least one election timeout after hearing from the leader;
     * a quarter is left for clock-rate differences between nodes. */
    a->lease_ms = cfg->cluster.election_timeout_ms * 3 / 4;
    unsigned tick = a->lease_ms / 3;
    a->tick_ms = tick < 10 ? 10 : tick > TICK_MAX_MS ? TICK_MAX_MS : tick;
    a->refs = 1; /* dropped by dw_actuator_close */
    bool ok = (a->tick = a->clock.timer_new(a->clock.ctx, tick_cb, a)) != NULL;
    for (int i = 0; i < MAX_WORKERS; i++) {
        a->w[i].a = a;
        ok = ok && (a->w[i].wait = a->clock.timer_new(a->clock.ctx, wait_fired, &a->w[i]));
    }
    if (!ok) {
        free_timers(a);
        free(a);
        return -1;
    }
    a->clock.timer_start(a->tick, a->tick_ms);
    *out = a;
    return 0;
}

void dw_actuator_close(struct dw_actuator *a)
{
    if (a == NULL)
        return;
    a->closing = 1;
    free_timers(a);
    act_unref(a);
}

void dw_actuator_crash_before(struct dw_actuator *a, const char *action)
{
    snprintf(a->crash_before, sizeof a->crash_before, "%s", action ? action : "");
}

const char *dw_actuator_current(struct dw_actuator *a)
{
    size_t n = 0;

    a->current[0] = '\0';
    for (int i = 0; i < MAX_WORKERS && n + 1 < sizeof a->current; i++) {
        const struct worker *w = &a->w[i];
        if (!w->busy)
            continue;
        int ok = 0;
        for (int j = 0; j < w->n_items; j++)
            ok += w->slots[j].st == IT_OK;
        int k = snprintf(a->current + n, sizeof a->current - n,
                         "%sop %" PRId64 " step %d/%d %s %s (%s", n ? "; " : "", w->cur.op,
                         w->cur.seq + 1, w->cur.n_steps, w->cur.action, cur_target(w)->id,
                         dw_step_status_name(w->cur.status));
        if (k >= 0 && (size_t)k < sizeof a->current - n && w->n_items > 1)
            k += snprintf(a->current + n + k, sizeof a->current - n - (size_t)k,
                          ", %d/%d changes done, %d in flight", ok, w->n_items, w->in_flight);
        if (k >= 0 && (size_t)k < sizeof a->current - n)
            k += snprintf(a->current + n + k, sizeof a->current - n - (size_t)k, ")");
        if (k < 0)
            break;
        n += (size_t)k < sizeof a->current - n ? (size_t)k : sizeof a->current - n - 1;
    }
    return a->current;
}

void dw_actuator_stats(const struct dw_actuator *a, struct dw_actuator_stats *out)
{
    if (a == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = a->stats;
}
