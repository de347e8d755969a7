/* The daemon must ignore SIGPIPE: raft's TCP transport writes to peers that may have gone away,
 * and a write to a closed socket would otherwise kill the process. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>

#include "drwatch/audit.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"
#include "drwatch/raftnode.h"
#include "drwatch/stamp.h"

#define RAFT_POLL_MS 50
#define RAFT_CONNECT_RETRY_MS 100
#define RAFT_LOCK_FILE "drwatchd.lock"
#define CLAMP_LOG_EVERY_MS 60000
#define DW_RAFT_EXIT_APPLY 70 /* EX_SOFTWARE: the supervisor restarts the node, which replays */

struct dw_raft {
    uv_loop_t *loop;
    const struct dw_config *cfg;
    struct dw_fsm *fsm;
    struct dw_audit audit; /* what the entry being applied recorded, logged once applied */
    dw_raft_applied_cb applied_cb;
    void *applied_data;

    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm rfsm;

    uv_timer_t poll_timer;    /* watches raft_state(): 0.15 has no state-change callback */
    uv_timer_t applied_timer; /* runs applied_cb outside raft's apply path */
    uv_timer_t change_timer;  /* takes a membership change's next step outside raft's callbacks */
    struct change_ctx *deferred; /* changes waiting for change_timer */
    int open_handles;
    int lock_fd;
    bool closing;

    uint64_t led_term;        /* term in which this node was last seen leading, 0 otherwise */
    uint64_t ready_term;      /* term whose leader barrier succeeded */
    uint64_t logged_leader;   /* last leader id reported in the log */

    struct dw_stamp_clock stamps;
    int64_t (*wall)(void *data); /* the wall clock (injectable for tests) */
    void *wall_data;
    uint64_t clamped;         /* stamps pulled back because the wall clock was ahead */
    uint64_t clamp_logged_ms; /* monotonic time of the last clamp warning */
    uint64_t clamp_unlogged;

    bool tilt;                /* this node distrusts its clock: it must not stamp (tilt.h) */
    bool transferring;        /* a raft_transfer is under way */
    bool transfer_warned;     /* a refused transfer was logged in this TILT */
    unsigned transfer_pick;   /* where in raft's configuration the next attempt looks */
    uint64_t handovers;       /* transfers started because of TILT */
    struct raft_transfer transfer;
    void (*handover_cb)(void *data, bool moved); /* dw_raft_hand_over's caller */
    void *handover_data;

    void (*close_cb)(void *data);
    void *close_data;
};

struct apply_ctx {
    struct raft_apply req;
    struct dw_raft *r;
    dw_raft_done_cb cb;
    void *data;
};

struct barrier_ctx {
    struct raft_barrier req;
    struct dw_raft *r;
    uint64_t term;
    bool leader_check;        /* the barrier a new leader runs before acting */
    dw_raft_done_cb cb;
    void *data;
};

enum change_step { STEP_ADD, STEP_PROMOTE, STEP_REMOVE };

struct change_ctx {
    struct raft_change req;
    struct dw_raft *r;
    uint64_t id;
    enum change_step step;    /* STEP_ADD is followed by STEP_PROMOTE */
    dw_raft_done_cb cb;
    void *data;
    struct change_ctx *next;  /* in r->deferred */
};

static int64_t wall_ms(void *data)
{
    struct timespec ts;
    (void)data;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

static const char *status_message(int status)
{
    if (status == RAFT_LEADERSHIPLOST)
        return "leadership lost (outcome unknown)";
    return raft_strerror(status);
}

/* ---- FSM glue ---- */

static void on_applied_timer(uv_timer_t *t)
{
    struct dw_raft *r = t->data;
    if (!r->closing && r->applied_cb != NULL)
        r->applied_cb(r->applied_data);
}

static void schedule_applied(struct dw_raft *r)
{
    if (r->closing || r->applied_cb == NULL || uv_is_active((uv_handle_t *)&r->applied_timer))
        return;
    uv_timer_start(&r->applied_timer, on_applied_timer, 0, 0);
}

static int fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf, void **result)
{
    struct dw_raft *r = f->data;
    /* A rejected entry is recorded by the FSM itself; a non-zero return would stall the log. */
    int rc = dw_fsm_apply(r->fsm, buf->base, buf->len);
    dw_audit_end(&r->audit, rc == DW_FSM_APPLIED);
    if (rc == DW_FSM_FATAL) {
        /* Going on would leave this node's state unlike every other's. The database is rebuilt
         * from snapshot and log at start, so a restart replays this entry. */
        dw_log(DW_LOG_ERROR, "raft", "cannot apply the entry after index %llu: %s; exiting",
               (unsigned long long)raft_last_applied(&r->raft), dw_fsm_last_error(r->fsm));
        fflush(stderr); /* _exit flushes nothing, and stderr may be a buffered file */
        _exit(DW_RAFT_EXIT_APPLY);
    }
    dw_stamp_applied(&r->stamps, dw_fsm_last_ts(r->fsm), mono_ms());
    *result = NULL;
    schedule_applied(r);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct dw_raft *r = f->data;
    void *data = NULL;
    size_t len = 0;
    if (dw_fsm_snapshot(r->fsm, &data, &len) != 0)
        return RAFT_IOERR;
    struct raft_buffer *b = raft_malloc(sizeof *b);
    if (b == NULL) {
        sqlite3_free(data);
        return RAFT_NOMEM;
    }
    b->base = data;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *f, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)f;
    if (*bufs != NULL) {
        for (unsigned i = 0; i < *n_bufs; i++)
            sqlite3_free((*bufs)[i].base);
        raft_free(*bufs);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    struct dw_raft *r = f->data;
    if (dw_fsm_restore(r->fsm, buf->base, buf->len) != 0)
        return RAFT_CORRUPT;
    raft_free(buf->base); /* ours only once the restore succeeded */
    dw_stamp_applied(&r->stamps, dw_fsm_last_ts(r->fsm), mono_ms());
    schedule_applied(r);
    return 0;
}

/* ---- leadership ---- */

/* raft 0.15 fails pending requests while a deposed leader is still in LEADER state; a callback
 * that calls back into raft then crashes it. Forget readiness first, so dw_raft_is_leader says no
 * until the next poll sees the new state. */
static void note_leadership_lost(struct dw_raft *r, int status)
{
    if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER)
        r->ready_term = 0;
}


static void on_barrier(struct raft_barrier *req, int status)
{
    struct barrier_ctx *b = req->data;
    struct dw_raft *r = b->r;
    note_leadership_lost(r, status);
    if (!b->leader_check) {
        if (b->cb != NULL)
            b->cb(b->data, status, status != 0 ? status_message(status) : NULL);
        free(b);
        return;
    }
    if (!r->closing && raft_state(&r->raft) == RAFT_LEADER && dw_raft_term(r) == b->term) {
        if (status == 0) {
            r->ready_term = b->term;
            dw_log(DW_LOG_INFO, "raft", "leader ready (term %llu)", (unsigned long long)b->term);
            char *e = dw_entry_leader(r->cfg->node_id);
            char err[256];
            if (e == NULL || dw_raft_propose(r, e, NULL, NULL, err, sizeof err) != 0)
                dw_log(DW_LOG_WARN, "raft", "cannot record leadership: %s",
                       e == NULL ? "out of memory" : err);
            free(e);
        } else {
            dw_log(DW_LOG_WARN, "raft", "leader barrier failed: %s", status_message(status));
            r->led_term = 0; /* retried on the next poll */
        }
    }
    free(b);
}

static void start_leader_barrier(struct dw_raft *r, uint64_t term)
{
    struct barrier_ctx *b = calloc(1, sizeof *b);
    int rv = RAFT_NOMEM;
    if (b != NULL) {
        b->r = r;
        b->term = term;
        b->leader_check = true;
        b->req.data = b;
        rv = raft_barrier(&r->raft, &b->req, on_barrier);
    }
    if (rv != 0) {
        dw_log(DW_LOG_WARN, "raft", "cannot start leader barrier: %s", raft_strerror(rv));
        free(b);
        r->led_term = 0; /* retried on the next poll */
    }
}

/* ---- TILT: a leader that distrusts its clock hands leadership over ---- */

static void on_transfer(struct raft_transfer *req)
{
    struct dw_raft *r = req->data;
    r->transferring = false;
    if (r->handover_cb != NULL) {
        void (*cb)(void *, bool) = r->handover_cb;
        r->handover_cb = NULL;
        cb(r->handover_data, raft_state(&r->raft) != RAFT_LEADER);
        return;
    }
    /* Still leading (the target did not take over in time): the next poll asks another. */
    if (!r->closing && raft_state(&r->raft) == RAFT_LEADER)
        dw_log(DW_LOG_WARN, "raft", "leadership transfer did not complete; trying again");
}

static void hand_over(struct dw_raft *r)
{
    if (!r->tilt || r->transferring || r->closing || raft_state(&r->raft) != RAFT_LEADER)
        return;
    /* Each attempt asks the next other voter, so a dead one is not asked forever. Raft's
     * configuration, not cfg->members: members are added and removed at runtime. */
    raft_id target = 0;
    const struct raft_configuration *c = &r->raft.configuration; /* see dw_raft_configuration */
    for (unsigned k = 0; k < c->n && target == 0; k++) {
        unsigned i = (r->transfer_pick + k) % c->n;
        if (c->servers[i].id != r->cfg->node_id && c->servers[i].role == RAFT_VOTER) {
            target = c->servers[i].id;
            r->transfer_pick = i + 1;
        }
    }
    if (target == 0)
        return; /* alone: nobody to hand over to; proposals stay refused until TILT ends */
    memset(&r->transfer, 0, sizeof r->transfer);
    r->transfer.data = r;
    int rv = raft_transfer(&r->raft, &r->transfer, target, on_transfer);
    if (rv != 0) {
        /* retried on every poll: warn once per TILT */
        if (!r->transfer_warned)
            dw_log(DW_LOG_WARN, "raft", "TILT: cannot hand leadership to %llu: %s",
                   (unsigned long long)target, raft_strerror(rv));
        r->transfer_warned = true;
        return;
    }
    r->transferring = true;
    r->handovers++;
    dw_log(DW_LOG_WARN, "raft", "TILT: handing leadership over to %llu (term %llu)",
           (unsigned long long)target, (unsigned long long)dw_raft_term(r));
}

int dw_raft_hand_over(struct dw_raft *r, void (*cb)(void *data, bool moved), void *data,
                      uint64_t *target, char *errmsg, size_t errlen)
{
    if (r == NULL || r->closing || raft_state(&r->raft) != RAFT_LEADER) {
        snprintf(errmsg, errlen, "not the leader");
        return -1;
    }
    if (r->transferring) { /* TILT's: its end answers this caller too */
        r->handover_cb = cb;
        r->handover_data = data;
        *target = r->transfer.id;
        return 0;
    }
    memset(&r->transfer, 0, sizeof r->transfer);
    r->transfer.data = r;
    /* 0: raft picks the voter whose log is the most up to date */
    int rv = raft_transfer(&r->raft, &r->transfer, 0, on_transfer);
    if (rv != 0) {
        snprintf(errmsg, errlen, "%s", raft_strerror(rv));
        return -1;
    }
    r->transferring = true;
    r->handover_cb = cb;
    r->handover_data = data;
    *target = r->transfer.id;
    return 0;
}

void dw_raft_set_tilt(struct dw_raft *r, bool tilt)
{
    if (r == NULL || r->tilt == tilt)
        return;
    r->tilt = tilt;
    r->transfer_warned = false;
    if (tilt) {
        hand_over(r);
        return;
    }
    /* Still leading after TILT (no one took over): take office again, leader entry included. */
    if (!r->closing && raft_state(&r->raft) == RAFT_LEADER)
        r->led_term = 0;
}

uint64_t dw_raft_tilt_handovers(struct dw_raft *r)
{
    return r != NULL ? r->handovers : 0;
}

static void on_poll(uv_timer_t *t)
{
    struct dw_raft *r = t->data;
    if (r->closing)
        return;
    int st = raft_state(&r->raft);
    uint64_t term = dw_raft_term(r);
    if (st == RAFT_LEADER) {
        if (r->led_term != term) {
            r->led_term = term;
            r->logged_leader = r->cfg->node_id;
            dw_log_kv(DW_LOG_INFO, "raft",
                      DW_LOG_FIELDS(DW_LI("leader", r->cfg->node_id), DW_LI("term", term)),
                      "became leader (term %llu)", (unsigned long long)term);
            start_leader_barrier(r, term);
        }
        hand_over(r);
        return;
    }
    if (r->led_term != 0) {
        dw_log_kv(DW_LOG_INFO, "raft", DW_LOG_FIELDS(DW_LI("term", term)),
                  "lost leadership (term %llu, now %s)", (unsigned long long)term,
                  dw_raft_state_name(r));
        r->led_term = 0;
        r->logged_leader = 0;
    }
    r->ready_term = 0;
    uint64_t leader = dw_raft_leader_id(r);
    if (st == RAFT_FOLLOWER && leader != 0 && leader != r->logged_leader)
        dw_log_kv(DW_LOG_INFO, "raft",
                  DW_LOG_FIELDS(DW_LI("leader", leader), DW_LI("term", term)),
                  "following %llu (term %llu)", (unsigned long long)leader,
                  (unsigned long long)term);
    if (leader != 0)
        r->logged_leader = leader;
}

/* ---- membership ---- */

/* dw_raft_is_leader, saying why not. */
static bool leading(struct dw_raft *r, char *errmsg, size_t errlen)
{
    if (r != NULL && r->tilt) {
        snprintf(errmsg, errlen, "in TILT: this node stamps nothing");
        return false;
    }
    if (!dw_raft_is_leader(r)) {
        snprintf(errmsg, errlen, "not leader");
        return false;
    }
    return true;
}

static void on_change(struct raft_change *req, int status);

static void change_done(struct change_ctx *c, int status)
{
    char msg[256];
    if (status != 0) {
        static const char *const verb[] = {"adding", "promoting", "removing"};
        const char *why = status_message(status);
        if (c->step == STEP_PROMOTE && status == RAFT_NOCONNECTION)
            why = "it did not catch up with the log in time (unreachable or too slow)";
        snprintf(msg, sizeof msg, "%s node %llu: %s%s", verb[c->step],
                 (unsigned long long)c->id, why,
                 c->step == STEP_PROMOTE ? "; it stays a spare: add it again" : "");
        dw_log(DW_LOG_WARN, "raft", "%s", msg);
    } else {
        dw_log(DW_LOG_INFO, "raft", "node %llu %s", (unsigned long long)c->id,
               c->step == STEP_REMOVE ? "removed" : "is a voter");
    }
    if (c->cb != NULL)
        c->cb(c->data, status, status != 0 ? msg : NULL);
    free(c);
}

static void on_change_timer(uv_timer_t *t)
{
    struct dw_raft *r = t->data;
    struct change_ctx *c = r->deferred;
    r->deferred = NULL;
    while (c != NULL) {
        struct change_ctx *next = c->next;
        int rv = raft_assign(&r->raft, &c->req, c->id, RAFT_VOTER, on_change);
        if (rv != 0)
            change_done(c, rv);
        c = next;
    }
}

static void on_change(struct raft_change *req, int status)
{
    struct change_ctx *c = req->data;
    struct dw_raft *r = c->r;
    note_leadership_lost(r, status);
    if (status == 0 && c->step == STEP_ADD) {
        c->step = STEP_PROMOTE;
        if (!r->closing) {
            /* Calling raft_assign from inside raft's apply path is not safe in 0.15. */
            c->next = r->deferred;
            r->deferred = c;
            uv_timer_start(&r->change_timer, on_change_timer, 0, 0);
            return;
        }
        status = RAFT_CANCELED;
    }
    change_done(c, status);
}

static void cancel_deferred_changes(struct dw_raft *r)
{
    while (r->deferred != NULL) {
        struct change_ctx *c = r->deferred;
        r->deferred = c->next;
        change_done(c, RAFT_CANCELED);
    }
}

/* Starts step on id; -1 with errmsg when raft refuses it. */
static int start_change(struct dw_raft *r, uint64_t id, const char *address,
                        enum change_step step, dw_raft_done_cb cb, void *data, char *errmsg,
                        size_t errlen)
{
    struct change_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    c->r = r;
    c->id = id;
    c->step = step;
    c->cb = cb;
    c->data = data;
    c->req.data = c;
    int rv;
    if (step == STEP_ADD)
        rv = raft_add(&r->raft, &c->req, id, address, on_change);
    else if (step == STEP_PROMOTE)
        rv = raft_assign(&r->raft, &c->req, id, RAFT_VOTER, on_change);
    else
        rv = raft_remove(&r->raft, &c->req, id, on_change);
    if (rv == 0)
        return 0;
    if (rv == RAFT_CANTCHANGE)
        snprintf(errmsg, errlen, "another membership change is under way: try again once it "
                 "completes");
    else
        snprintf(errmsg, errlen, "raft: %s", raft_strerror(rv));
    free(c);
    return -1;
}

/* Nothing to change: cb(0) once a barrier commits, which also commits a change to the same
 * effect that may still be pending (an operator running the command again). */
static int already_done(struct dw_raft *r, dw_raft_done_cb cb, void *data, char *errmsg,
                        size_t errlen)
{
    if (dw_raft_barrier(r, cb, data) != 0) {
        snprintf(errmsg, errlen, "raft barrier refused");
        return -1;
    }
    return 0;
}

int dw_raft_add_voter(struct dw_raft *r, uint64_t id, const char *raft_address,
                      dw_raft_done_cb cb, void *data, char *errmsg, size_t errlen)
{
    if (!leading(r, errmsg, errlen))
        return -1;
    if (id == 0 || raft_address == NULL || raft_address[0] == '\0') {
        snprintf(errmsg, errlen, "a node id >= 1 and a raft address are needed");
        return -1;
    }
    const struct raft_configuration *c = &r->raft.configuration; /* see dw_raft_configuration */
    const struct raft_server *s = NULL;
    for (unsigned i = 0; i < c->n; i++) {
        bool same_address = strcmp(c->servers[i].address, raft_address) == 0;
        if (c->servers[i].id == id)
            s = &c->servers[i];
        if (c->servers[i].id == id && !same_address) {
            snprintf(errmsg, errlen, "node %llu is in raft's configuration at %s, not %s: "
                     "remove it first", (unsigned long long)id, c->servers[i].address,
                     raft_address);
            return -1;
        }
        if (c->servers[i].id != id && same_address) {
            snprintf(errmsg, errlen, "%s is node %llu's raft address", raft_address,
                     (unsigned long long)c->servers[i].id);
            return -1;
        }
    }
    if (s == NULL)
        return start_change(r, id, raft_address, STEP_ADD, cb, data, errmsg, errlen);
    if (s->role != RAFT_VOTER)
        return start_change(r, id, NULL, STEP_PROMOTE, cb, data, errmsg, errlen);
    return already_done(r, cb, data, errmsg, errlen);
}

int dw_raft_remove_member(struct dw_raft *r, uint64_t id, dw_raft_done_cb cb, void *data,
                          char *errmsg, size_t errlen)
{
    if (!leading(r, errmsg, errlen))
        return -1;
    if (id == r->cfg->node_id) {
        snprintf(errmsg, errlen, "node %llu leads: hand leadership over first",
                 (unsigned long long)id);
        return -1;
    }
    const struct raft_configuration *c = &r->raft.configuration; /* see dw_raft_configuration */
    const struct raft_server *s = NULL;
    int voters = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id)
            s = &c->servers[i];
        voters += c->servers[i].role == RAFT_VOTER;
    }
    if (s == NULL)
        return already_done(r, cb, data, errmsg, errlen);
    if (s->role == RAFT_VOTER && voters <= 1) {
        snprintf(errmsg, errlen, "node %llu is the last voter", (unsigned long long)id);
        return -1;
    }
    return start_change(r, id, NULL, STEP_REMOVE, cb, data, errmsg, errlen);
}

int dw_raft_configuration(struct dw_raft *r, struct dw_raft_server *out, int max)
{
    if (r == NULL || r->closing)
        return 0;
    /* No raft version has an accessor for the configuration (0.18 and cowsql/raft added only
     * raft_role(), this node's own role). The public field `configuration` has the same name,
     * type and meaning in 0.15, 0.18 and cowsql/raft: the latest configuration, committed or
     * not (only its companion configuration_index was renamed, to
     * configuration_committed_index, which we do not read). Read only, on the loop thread,
     * between raft's callbacks. */
    const struct raft_configuration *c = &r->raft.configuration;
    for (unsigned i = 0; i < c->n && (int)i < max; i++) {
        out[i].id = c->servers[i].id;
        snprintf(out[i].address, sizeof out[i].address, "%s", c->servers[i].address);
        out[i].role = c->servers[i].role;
    }
    return (int)c->n;
}

const char *dw_raft_role_name(int role)
{
    switch (role) {
    case RAFT_VOTER:
        return "voter";
    case RAFT_STANDBY:
        return "standby";
    case RAFT_SPARE:
        return "spare";
    default:
        return "unknown";
    }
}

/* ---- start / close ---- */

static int mkdir_p(const char *path, char *errmsg, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(errmsg, errlen, "data_dir %s: path too long", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            snprintf(errmsg, errlen, "data_dir %s: cannot create %s: %s", path, buf,
                     strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

static int lock_data_dir(const char *dir, char *errmsg, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, RAFT_LOCK_FILE) >= (int)sizeof path) {
        snprintf(errmsg, errlen, "data_dir %s: path too long", dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(errmsg, errlen, "data_dir %s: cannot open %s: %s", dir, path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            snprintf(errmsg, errlen, "data_dir %s is in use by another process", dir);
        else
            snprintf(errmsg, errlen, "data_dir %s: cannot lock %s: %s", dir, path,
                     strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct dw_raft *r = h->data;
    if (--r->open_handles > 0)
        return;
    raft_uv_close(&r->io);
    raft_uv_tcp_close(&r->transport);
    close(r->lock_fd); /* releases the flock */
    dw_fsm_on_record(r->fsm, NULL, NULL);
    dw_audit_free(&r->audit);
    void (*cb)(void *) = r->close_cb;
    void *data = r->close_data;
    free(r);
    if (cb != NULL)
        cb(data);
}

static void on_raft_closed(struct raft *raft)
{
    struct dw_raft *r = raft->data;
    uv_close((uv_handle_t *)&r->poll_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->applied_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->change_timer, on_handle_closed);
}

void dw_raft_close(struct dw_raft *r, void (*cb)(void *data), void *data)
{
    if (r == NULL) {
        if (cb != NULL)
            cb(data);
        return;
    }
    if (r->closing)
        return;
    r->closing = true;
    r->close_cb = cb;
    r->close_data = data;
    uv_timer_stop(&r->poll_timer);
    uv_timer_stop(&r->applied_timer);
    uv_timer_stop(&r->change_timer);
    cancel_deferred_changes(r);
    r->handover_cb = NULL; /* the caller has moved on to stopping */
    /* Pending applies, barriers and changes complete with RAFT_LEADERSHIPLOST inside
     * raft_close. */
    raft_close(&r->raft, on_raft_closed);
}

static int bootstrap(struct dw_raft *r, char *errmsg, size_t errlen)
{
    const struct dw_config *cfg = r->cfg;
    struct raft_configuration conf;
    int rv = 0;
    raft_configuration_init(&conf);
    for (int i = 0; i < cfg->n_members && rv == 0; i++)
        rv = raft_configuration_add(&conf, cfg->members[i].id, cfg->members[i].raft_address,
                                    RAFT_VOTER);
    if (rv == 0) {
        rv = raft_bootstrap(&r->raft, &conf);
        if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0; /* state on disk already: a restart */
        else if (rv != 0)
            /* 0.15 leaves the message empty for some I/O errors (a data_dir that lost its
             * metadata files but kept its segments): the code still says something. */
            snprintf(errmsg, errlen, "raft bootstrap: %s",
                     raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft) : raft_strerror(rv));
    } else {
        snprintf(errmsg, errlen, "raft configuration: %s", raft_strerror(rv));
    }
    raft_configuration_close(&conf);
    return rv != 0 ? -1 : 0;
}

/* raft 0.15 takes a data_dir without metadata files for an empty one and bootstraps into it
 * whenever the first segment is gone (compacted after a snapshot): the node would come back with
 * term 0 and no vote, and could vote twice in one term. Log files without metadata mean damage. */
static int check_metadata(const char *dir, char *errmsg, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int meta = 0;
    char log_file[64] = "";

    if (d == NULL)
        return 0; /* raft reports what is wrong with the directory itself */
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strcmp(n, "metadata1") == 0 || strcmp(n, "metadata2") == 0)
            meta = 1;
        else if (strncmp(n, "open-", 5) == 0 || strncmp(n, "snapshot-", 9) == 0 ||
                 (isdigit((unsigned char)n[0]) && strchr(n, '-') != NULL))
            snprintf(log_file, sizeof log_file, "%.60s", n);
    }
    closedir(d);
    if (meta || log_file[0] == '\0')
        return 0;
    snprintf(errmsg, errlen, "%s holds raft log files (%s) but no metadata1/metadata2: it is "
             "damaged, and starting would forget this node's term and vote; replace the node "
             "(docs/config.md, \"A node that lost its data_dir\")", dir, log_file);
    return -1;
}

int dw_raft_start(struct dw_raft **out, uv_loop_t *loop, const struct dw_config *cfg,
                  struct dw_fsm *fsm, dw_raft_applied_cb applied_cb, void *applied_data,
                  char *errmsg, size_t errlen)
{
    *out = NULL;
    const struct dw_member *self = dw_config_member(cfg, cfg->node_id);
    if (self == NULL) {
        snprintf(errmsg, errlen, "node id %llu is not a configured member",
                 (unsigned long long)cfg->node_id);
        return -1;
    }
    if (mkdir_p(cfg->data_dir, errmsg, errlen) != 0)
        return -1;
    int lock_fd = lock_data_dir(cfg->data_dir, errmsg, errlen);
    if (lock_fd < 0)
        return -1;
    if (check_metadata(cfg->data_dir, errmsg, errlen) != 0) {
        close(lock_fd);
        return -1;
    }

    struct dw_raft *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        close(lock_fd);
        return -1;
    }
    r->loop = loop;
    r->cfg = cfg;
    r->fsm = fsm;
    dw_audit_init(&r->audit, wall_ms(NULL));
    dw_fsm_on_record(fsm, dw_audit_record, &r->audit);
    r->applied_cb = applied_cb;
    r->applied_data = applied_data;
    r->lock_fd = lock_fd;
    r->wall = wall_ms;
    dw_stamp_init(&r->stamps, wall_ms(NULL), mono_ms());

#ifdef RAFT_VERSION_NUMBER
    /* raft >= 0.17.1 refuses a transport whose version is unset; 0.15 has no such field. */
    r->transport.version = 1;
#endif
    int rv = raft_uv_tcp_init(&r->transport, loop);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft transport: %s", raft_strerror(rv));
        goto err_free;
    }
    rv = raft_uv_init(&r->io, loop, cfg->data_dir, &r->transport);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft storage in %s: %s", cfg->data_dir, r->io.errmsg);
        goto err_transport;
    }
    raft_uv_set_connect_retry_delay(&r->io, RAFT_CONNECT_RETRY_MS);

    r->rfsm.version = 2;
    r->rfsm.data = r;
    r->rfsm.apply = fsm_apply;
    r->rfsm.snapshot = fsm_snapshot;
    r->rfsm.restore = fsm_restore;
    r->rfsm.snapshot_finalize = fsm_snapshot_finalize;
    rv = raft_init(&r->raft, &r->io, &r->rfsm, self->id, self->raft_address);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft init: %s", raft_errmsg(&r->raft));
        goto err_io;
    }
    r->raft.data = r;

    /* From here on, failures close raft asynchronously and free r in the close callbacks. */
    uv_timer_init(loop, &r->poll_timer);
    uv_timer_init(loop, &r->applied_timer);
    uv_timer_init(loop, &r->change_timer);
    r->poll_timer.data = r;
    r->applied_timer.data = r;
    r->change_timer.data = r;
    r->open_handles = 3;

    /* A joining node bootstraps nothing: its own configuration would be a second cluster. */
    if (!cfg->join && bootstrap(r, errmsg, errlen) != 0)
        goto err_close;

    raft_set_election_timeout(&r->raft, cfg->cluster.election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, cfg->cluster.heartbeat_ms);
    raft_set_pre_vote(&r->raft, true);
    /* Set both explicitly: 0.15's documented trailing default does not match its code. */
    raft_set_snapshot_threshold(&r->raft, cfg->cluster.snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, cfg->cluster.snapshot_trailing);

    rv = raft_start(&r->raft);
    if (rv != 0) {
        /* 0.15 leaves its message empty for some failures (a listen on a port in use) */
        snprintf(errmsg, errlen, "raft start: %s (%s; raft_address %s)",
                 raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft) : "failed", raft_strerror(rv),
                 self->raft_address);
        goto err_close;
    }
    uv_timer_start(&r->poll_timer, on_poll, RAFT_POLL_MS, RAFT_POLL_MS);
    /* Without a configuration raft stays a follower that never stands for election. */
    if (dw_raft_configuration(r, NULL, 0) == 0)
        dw_log(DW_LOG_INFO, "raft", "no raft state in %s: waiting for a leader to add node %llu",
               cfg->data_dir, (unsigned long long)cfg->node_id);
    *out = r;
    return 0;

err_close:
    dw_raft_close(r, NULL, NULL);
    return -1;
err_io:
    raft_uv_close(&r->io);
err_transport:
    raft_uv_tcp_close(&r->transport);
err_free:
    close(lock_fd);
    dw_fsm_on_record(fsm, NULL, NULL);
    free(r);
    return -1;
}

/* ---- queries ---- */

bool dw_raft_is_leader(struct dw_raft *r)
{
    /* a leader handing over sends nothing more: the target takes office without waiting out
     * an election timeout, so the actuator's lease no longer holds */
    return r != NULL && !r->closing && !r->tilt && !r->transferring &&
           raft_state(&r->raft) == RAFT_LEADER && r->ready_term != 0 &&
           r->ready_term == dw_raft_term(r);
}

uint64_t dw_raft_leader_id(struct dw_raft *r)
{
    raft_id id = 0;
    const char *address = NULL;
    if (r == NULL || r->closing)
        return 0;
    raft_leader(&r->raft, &id, &address);
    return id;
}

uint64_t dw_raft_term(struct dw_raft *r)
{
    /* raft 0.15 has no accessor for the current term; current_term is a public field with the
     * same name and meaning in 0.15, 0.18 and cowsql/raft (read like configuration, see
     * dw_raft_configuration). */
    return r != NULL ? (uint64_t)r->raft.current_term : 0;
}

const char *dw_raft_state_name(struct dw_raft *r)
{
    if (r == NULL || r->closing)
        return "unavailable";
    switch (raft_state(&r->raft)) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    default:
        return "unavailable";
    }
}

uint64_t dw_raft_last_applied(struct dw_raft *r)
{
    return r != NULL ? raft_last_applied(&r->raft) : 0;
}

uint64_t dw_raft_last_index(struct dw_raft *r)
{
    return r != NULL ? raft_last_index(&r->raft) : 0;
}

/* ---- requests ---- */

static void on_apply(struct raft_apply *req, int status, void *result)
{
    struct apply_ctx *a = req->data;
    (void)result;
    note_leadership_lost(a->r, status);
    if (a->cb != NULL)
        a->cb(a->data, status, status != 0 ? status_message(status) : NULL);
    free(a);
}

/* Rate-limited: a clock left wrong would otherwise warn on every entry. */
static void note_clamp(struct dw_raft *r, int64_t ahead_ms, uint64_t mono)
{
    r->clamped++;
    if (r->clamp_logged_ms != 0 && mono - r->clamp_logged_ms < CLAMP_LOG_EVERY_MS) {
        r->clamp_unlogged++;
        return;
    }
    dw_log(DW_LOG_WARN, "raft",
           "wall clock %.1f s ahead of the time measured since the last entry: stamp held back "
           "(%llu more since the last warning)",
           (double)ahead_ms / 1000, (unsigned long long)r->clamp_unlogged);
    r->clamp_logged_ms = mono;
    r->clamp_unlogged = 0;
}

uint64_t dw_raft_stamps_clamped(struct dw_raft *r)
{
    return r != NULL ? r->clamped : 0;
}

void dw_raft_set_wall_clock(struct dw_raft *r, int64_t (*wall)(void *data), void *data)
{
    r->wall = wall != NULL ? wall : wall_ms;
    r->wall_data = data;
}

int dw_raft_propose(struct dw_raft *r, const char *entry_json, dw_raft_done_cb cb, void *data,
                    char *errmsg, size_t errlen)
{
    if (!leading(r, errmsg, errlen))
        return -1;
    /* Never behind the cluster's time, never further ahead than measured (stamp.h). */
    bool clamped;
    int64_t wall = r->wall(r->wall_data);
    uint64_t mono = mono_ms();
    int64_t ts = dw_stamp_next(&r->stamps, wall, mono, dw_fsm_last_ts(r->fsm), &clamped);
    if (clamped)
        note_clamp(r, wall - ts, mono);
    char *stamped = dw_entry_stamp(entry_json, strlen(entry_json), ts, r->cfg->node_id,
                                   errmsg, errlen);
    if (stamped == NULL)
        return -1;
    size_t n = strlen(stamped);
    /* raft 0.15's segment loader assumes 8-byte multiples (only an assert, off in release
     * builds, guards the writer): a shorter entry writes a segment that fails to load at the
     * next start. Pad with spaces, which JSON ignores. */
    size_t padded = (n + 7) & ~(size_t)7;
    struct apply_ctx *a = calloc(1, sizeof *a);
    struct raft_buffer buf = {.base = raft_malloc(padded), .len = padded};
    if (a == NULL || buf.base == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        free(stamped);
        free(a);
        raft_free(buf.base);
        return -1;
    }
    memcpy(buf.base, stamped, n);
    memset((char *)buf.base + n, ' ', padded - n);
    free(stamped);
    a->r = r;
    a->cb = cb;
    a->data = data;
    a->req.data = a;
    int rv = raft_apply(&r->raft, &a->req, &buf, 1, on_apply);
    if (rv != 0) {
        snprintf(errmsg, errlen, "raft apply: %s", raft_strerror(rv));
        /* Past its leader check raft may already have released the buffer with the log. */
        if (rv == RAFT_NOTLEADER)
            raft_free(buf.base);
        free(a);
        return -1;
    }
    return 0;
}

int dw_raft_barrier(struct dw_raft *r, dw_raft_done_cb cb, void *data)
{
    if (!dw_raft_is_leader(r))
        return -1;
    struct barrier_ctx *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -1;
    b->r = r;
    b->cb = cb;
    b->data = data;
    b->req.data = b;
    if (raft_barrier(&r->raft, &b->req, on_barrier) != 0) {
        free(b);
        return -1;
    }
    return 0;
}
