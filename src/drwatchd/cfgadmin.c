/* Owns the admin commands that change the cluster: config show/diff/apply, members list/add/remove. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "drwatch/cfgfile.h"
#include "drwatch/entry.h"
#include "drwatch/jsondiff.h"
#include "drwatch/log.h"

#include "cfgadmin.h"

/* A membership change waits for a new member to catch up; past this the operator hears why. */
#define JOB_TIMEOUT_MS 60000
/* Each change takes at most three commits and one raft change; more means no progress. */
#define JOB_MAX_STEPS 8
#define DIFF_LINES 200
#define MIN_VOTERS 3

struct job {
    struct dw_cfgadmin *c;
    struct dw_admin_call *call; /* NULL once answered */
    bool add;
    uint64_t id;
    char raft_address[DW_ADDR_MAX];
    char peer_address[DW_ADDR_MAX];
    char name[DW_ID_MAX];
    char by[DW_OPERATOR_MAX + 1];
    int steps;
    int pending; /* raft callbacks outstanding */
};

struct apply {
    struct dw_cfgadmin *c;
    struct dw_admin_call *call;
    int64_t base;
    char *doc;  /* the canonical document proposed */
    char *diff;
    int count;
};

struct dw_cfgadmin {
    uv_loop_t *loop;
    struct dw_fsm *fsm;
    struct dw_raft *raft;
    const cJSON *local;
    struct job *job;       /* the membership change under way, one at a time */
    uv_timer_t *kick;      /* runs the job's next step outside raft's callbacks */
    uv_timer_t *deadline;
    int refs;              /* this struct, its timers, raft callbacks outstanding */
    bool closing;
};

static void unref(struct dw_cfgadmin *c)
{
    if (--c->refs == 0)
        free(c);
}

/* Validation failures: every error with its JSON path; drctl exits 2 on "errors". */
static void errors_reply(cJSON *reply, const struct dw_config_errors *errs)
{
    dw_admin_error(reply, "config: %d error%s", errs->n, errs->n == 1 ? "" : "s");
    cJSON *list = cJSON_AddArrayToObject(reply, "errors");
    for (int i = 0; i < errs->n; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(errs->msg[i]));
}

static void answer(struct dw_admin_call **call, const cJSON *reply)
{
    if (*call) {
        dw_admin_reply(*call, reply);
        *call = NULL;
    }
}

static cJSON *committed_doc(struct dw_cfgadmin *c)
{
    char *text = dw_fsm_config_doc(c->fsm);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    return doc;
}

/* doc (a file, or a cluster document) with this node's local settings, checked as a node would
 * check its file; NULL with the errors in reply. text: the raw document, for JSON errors. */
static struct dw_config *validate(struct dw_cfgadmin *c, const cJSON *doc, const char *text,
                                  size_t len, cJSON *reply)
{
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_config_errors *errs = calloc(1, sizeof *errs);
    cJSON *full = doc ? dw_config_with_local(doc, c->local) : NULL;
    char *merged = full ? cJSON_PrintUnformatted(full) : NULL;
    int rc = -1;

    if (!cfg || !errs || (doc && !merged)) {
        dw_admin_error(reply, "out of memory");
    } else {
        /* not JSON: the validator names line and column */
        rc = doc ? dw_config_parse(merged, strlen(merged), cfg, errs)
                 : dw_config_parse(text, len, cfg, errs);
        if (rc != 0)
            errors_reply(reply, errs);
    }
    cJSON_Delete(full);
    free(merged);
    free(errs);
    if (rc != 0) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_cfg(struct dw_config *cfg)
{
    dw_config_free(cfg);
    free(cfg);
}

static void count_cb(void *data, const char *path, const cJSON *a, const cJSON *b)
{
    (void)path, (void)a, (void)b;
    ++*(int *)data;
}

static const cJSON *members_of(const cJSON *doc)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "cluster"),
                                            "members");
}

/* The member list as meaning: "voter": true is the default and says nothing. */
static cJSON *normal_members(const cJSON *doc)
{
    cJSON *list = cJSON_Duplicate(members_of(doc), true), *m;
    cJSON_ArrayForEach(m, list)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "voter")))
            cJSON_DeleteItemFromObjectCaseSensitive(m, "voter");
    return list;
}

/* ---- config show | diff | apply ---- */

static void config_show(struct dw_cfgadmin *c, cJSON *reply)
{
    cJSON *doc = committed_doc(c);
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddNumberToObject(reply, "version", (double)dw_fsm_config_version(c->fsm));
    cJSON_AddItemToObject(reply, "config", doc ? doc : cJSON_CreateNull());
}

static void apply_done(void *data, int status, const char *errmsg)
{
    struct apply *a = data;
    struct dw_cfgadmin *c = a->c;
    cJSON *reply = cJSON_CreateObject();
    char *now = dw_fsm_config_doc(c->fsm);

    if (status != 0) {
        dw_admin_error(reply, "config apply: %s; the outcome may be unknown: see drctl config show",
             errmsg ? errmsg : "failed");
    } else if (dw_fsm_config_version(c->fsm) != a->base + 1 || !now || strcmp(now, a->doc) != 0) {
        dw_admin_error(reply, "config entry refused: version %" PRId64 " is committed now (a concurrent "
             "change, or an operation started meanwhile); see drctl history, then diff again",
             dw_fsm_config_version(c->fsm));
    } else {
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddNumberToObject(reply, "version", (double)(a->base + 1));
        cJSON_AddNumberToObject(reply, "index", (double)dw_raft_last_applied(c->raft));
        cJSON_AddStringToObject(reply, "differences", a->diff);
        cJSON_AddNumberToObject(reply, "count", a->count);
        dw_log(DW_LOG_INFO, "config", "config version %" PRId64 " committed (%d changes)",
               a->base + 1, a->count);
    }
    answer(&a->call, reply);
    cJSON_Delete(reply);
    free(now);
    free(a->doc);
    free(a->diff);
    free(a);
    unref(c);
}

static void config_change(struct dw_cfgadmin *c, const cJSON *req, cJSON *reply,
                          struct dw_admin_call *call, bool apply)
{
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(req, "text");
    const cJSON *dry = cJSON_GetObjectItemCaseSensitive(req, "dry_run");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(req, "by");
    int64_t version = dw_fsm_config_version(c->fsm);
    cJSON *doc = NULL, *cluster = NULL, *committed = NULL;
    struct dw_config *cfg = NULL;
    char *diff = NULL, *e = NULL, why[512], err[256];
    int count = 0;

    if (!cJSON_IsString(text)) {
        dw_admin_error(reply, "text: expected the config document as a string");
        return;
    }
    if (dry && !cJSON_IsBool(dry)) {
        dw_admin_error(reply, "dry_run: expected a boolean");
        return;
    }
    size_t len = strlen(text->valuestring);
    doc = cJSON_ParseWithLength(text->valuestring, len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    if ((cfg = validate(c, doc, text->valuestring, len, reply)) == NULL)
        goto out;
    committed = committed_doc(c);
    cluster = dw_config_cluster_doc(doc);
    if (!cluster || (diff = dw_json_diff_text(committed, cluster, DIFF_LINES)) == NULL ||
        dw_json_diff(committed, cluster, count_cb, &count) < 0) {
        dw_admin_error(reply, "out of memory");
        goto out;
    }
    if (!apply) {
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddNumberToObject(reply, "version", (double)version);
        cJSON_AddStringToObject(reply, "differences", diff);
        cJSON_AddNumberToObject(reply, "count", count);
        goto out;
    }
    if (version == 0) {
        dw_admin_error(reply, "no config is committed yet: the first leader commits its own file");
        goto out;
    }
    int mc = 0;
    cJSON *mine = normal_members(committed), *theirs = normal_members(cluster);
    int differ = dw_json_diff(mine, theirs, count_cb, &mc);
    cJSON_Delete(mine);
    cJSON_Delete(theirs);
    if (differ != 0) {
        struct dw_config_errors errs = {.n = 1};
        snprintf(errs.msg[0], sizeof errs.msg[0], "cluster.members: differs from the committed "
                 "members; members change only through drctl members add|remove");
        errors_reply(reply, &errs);
        goto out;
    }
    int rc = dw_fsm_config_check(c->fsm, cfg, why, sizeof why);
    if (rc != 0) {
        dw_admin_error(reply, "%s", rc > 0 ? why : "cannot read the replicated state");
        goto out;
    }
    if (cJSON_IsTrue(dry) || count == 0) {
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddBoolToObject(reply, "dry_run", cJSON_IsTrue(dry));
        cJSON_AddNumberToObject(reply, "version", (double)version);
        cJSON_AddStringToObject(reply, "differences", diff);
        cJSON_AddNumberToObject(reply, "count", count);
        goto out;
    }
    if (!dw_admin_leader_or_fail(c->raft, reply))
        goto out;
    const char *who = cJSON_IsString(by) && by->valuestring[0] ? by->valuestring : "unknown";
    char name[DW_OPERATOR_MAX + 1];
    snprintf(name, sizeof name, "%s", who);
    struct apply *a = calloc(1, sizeof *a);
    e = dw_entry_config(cluster, version, name, "apply");
    /* what the state machine will store: the entry's document as cJSON prints it */
    cJSON *parsed = e ? cJSON_Parse(e) : NULL;
    char *stored = parsed ? cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(parsed,
                                                                                    "config"))
                          : NULL;
    cJSON_Delete(parsed);
    if (!a || !stored) {
        free(a);
        free(stored);
        dw_admin_error(reply, "out of memory");
        goto out;
    }
    *a = (struct apply){.c = c, .call = call, .base = version, .doc = stored, .diff = diff,
                        .count = count};
    if (dw_raft_propose(c->raft, e, apply_done, a, err, sizeof err) != 0) {
        dw_admin_error(reply, "not proposed: %s", err);
        free(a->doc);
        free(a);
        goto out;
    }
    diff = NULL; /* the apply owns it */
    c->refs++;
    dw_admin_defer(call);
out:
    if (cfg)
        free_cfg(cfg);
    free(e);
    free(diff);
    cJSON_Delete(doc);
    cJSON_Delete(cluster);
    cJSON_Delete(committed);
}

/* ---- members list | add | remove ---- */

static cJSON *find_member(const cJSON *doc, uint64_t id)
{
    cJSON *m;
    cJSON_ArrayForEach(m, members_of(doc)) {
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (cJSON_IsNumber(mid) && mid->valuedouble == (double)id)
            return m;
    }
    return NULL;
}

static bool member_votes(const cJSON *m)
{
    return !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "voter"));
}

static cJSON *members_json(const struct dw_config *cfg)
{
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; list && i < cfg->n_members; i++) {
        const struct dw_member *m = &cfg->members[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)m->id);
        cJSON_AddStringToObject(o, "name", m->name);
        cJSON_AddStringToObject(o, "raft_address", m->raft_address);
        cJSON_AddStringToObject(o, "peer_address", m->peer_address);
        cJSON_AddBoolToObject(o, "voter", !m->non_voter);
        cJSON_AddItemToArray(list, o);
    }
    return list;
}

static int raft_role(struct dw_cfgadmin *c, uint64_t id)
{
    struct dw_raft_server servers[DW_MAX_MEMBERS * 2];
    int max = (int)(sizeof servers / sizeof servers[0]);
    int n = dw_raft_configuration(c->raft, servers, max);
    for (int i = 0; i < n && i < max; i++)
        if (servers[i].id == id)
            return servers[i].role;
    return -1;
}

static void members_list(struct dw_cfgadmin *c, cJSON *reply)
{
    struct dw_raft_server servers[DW_MAX_MEMBERS * 2];
    int max = (int)(sizeof servers / sizeof servers[0]);
    int n = dw_raft_configuration(c->raft, servers, max);
    n = n < max ? n : max;
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddNumberToObject(reply, "version", (double)dw_fsm_config_version(c->fsm));
    cJSON_AddNumberToObject(reply, "leader", (double)dw_raft_leader_id(c->raft));
    cJSON_AddItemToObject(reply, "committed", members_json(dw_fsm_config(c->fsm)));
    cJSON *raft = cJSON_AddArrayToObject(reply, "raft");
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)servers[i].id);
        cJSON_AddStringToObject(o, "address", servers[i].address);
        cJSON_AddStringToObject(o, "role", dw_raft_role_name(servers[i].role));
        cJSON_AddItemToArray(raft, o);
    }
}

static void job_free(struct job *j)
{
    struct dw_cfgadmin *c = j->c;
    if (c->job == j)
        c->job = NULL;
    free(j);
    unref(c);
}

/* Ends the job for the operator (the struct lives on while raft still owes it a callback). */
static void job_end(struct job *j, const char *error)
{
    struct dw_cfgadmin *c = j->c;
    cJSON *reply = cJSON_CreateObject();
    if (error) {
        dw_admin_error(reply, "%s", error);
        dw_log_kv(DW_LOG_WARN, "members", DW_LOG_FIELDS(DW_LI("member", j->id)),
                  "%s member %" PRIu64 ": %s", j->add ? "adding" : "removing", j->id, error);
    } else {
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddNumberToObject(reply, "version", (double)dw_fsm_config_version(c->fsm));
        cJSON_AddItemToObject(reply, "members", members_json(dw_fsm_config(c->fsm)));
        dw_log_kv(DW_LOG_INFO, "members", DW_LOG_FIELDS(DW_LI("member", j->id)),
                  "member %" PRIu64 " %s (config version %" PRId64 ")", j->id,
                  j->add ? "added" : "removed", dw_fsm_config_version(c->fsm));
    }
    answer(&j->call, reply);
    cJSON_Delete(reply);
    if (c->job == j) {
        c->job = NULL;
        uv_timer_stop(c->deadline);
    }
    if (j->pending == 0)
        job_free(j);
}

static void kick_cb(uv_timer_t *t);

static void job_done_cb(void *data, int status, const char *errmsg)
{
    struct job *j = data;
    j->pending--;
    if (j->call == NULL) { /* answered already (deadline, shutdown) */
        if (j->pending == 0)
            job_free(j);
        return;
    }
    if (status != 0) {
        char why[320];
        snprintf(why, sizeof why, "%s", errmsg ? errmsg : "failed");
        job_end(j, why);
        return;
    }
    /* not from inside raft's callback: the next step may call into raft */
    uv_timer_start(j->c->kick, kick_cb, 0, 0);
}

/* One committed change of the member list: the committed document with edit applied. */
static int propose_members(struct job *j, cJSON *edited, const char *what)
{
    struct dw_cfgadmin *c = j->c;
    char err[256], reason[96];
    cJSON *canon = dw_config_cluster_doc(edited);
    snprintf(reason, sizeof reason, "members %s %" PRIu64, what, j->id);
    char *e = canon ? dw_entry_config(canon, dw_fsm_config_version(c->fsm), j->by, reason) : NULL;
    int rc = -1;
    cJSON_Delete(canon);
    if (e == NULL)
        snprintf(err, sizeof err, "out of memory");
    else if ((rc = dw_raft_propose(c->raft, e, job_done_cb, j, err, sizeof err)) == 0)
        j->pending++;
    free(e);
    if (rc != 0) {
        char why[300];
        snprintf(why, sizeof why, "config entry not proposed: %s", err);
        job_end(j, why);
    }
    return rc;
}

static void set_voter(cJSON *m, bool voter)
{
    cJSON_DeleteItemFromObjectCaseSensitive(m, "voter");
    if (!voter)
        cJSON_AddBoolToObject(m, "voter", 0);
}

/* Looks at what is committed and what raft has, and does the next thing missing, so a change
 * interrupted half-way (a crash, a new leader) completes when the operator runs it again. */
static void job_step(struct job *j)
{
    struct dw_cfgadmin *c = j->c;
    char err[256];

    if (!dw_raft_is_leader(c->raft)) {
        job_end(j, "this node lost leadership; run the command again on the new leader");
        return;
    }
    if (++j->steps > JOB_MAX_STEPS) {
        job_end(j, "no progress (entries refused?); see drctl history");
        return;
    }
    cJSON *doc = committed_doc(c);
    cJSON *m = doc ? find_member(doc, j->id) : NULL;
    int role = raft_role(c, j->id);
    if (doc == NULL) {
        job_end(j, "cannot read the committed config");
    } else if (j->add && m == NULL) {
        cJSON *add = cJSON_CreateObject();
        cJSON_AddNumberToObject(add, "id", (double)j->id);
        if (j->name[0])
            cJSON_AddStringToObject(add, "name", j->name);
        cJSON_AddStringToObject(add, "raft_address", j->raft_address);
        cJSON_AddStringToObject(add, "peer_address", j->peer_address);
        cJSON_AddBoolToObject(add, "voter", 0); /* counts in no majority until raft has it */
        cJSON_AddItemToArray((cJSON *)members_of(doc), add);
        propose_members(j, doc, "add");
    } else if (j->add && role != RAFT_VOTER) {
        if (dw_raft_add_voter(c->raft, j->id, j->raft_address, job_done_cb, j, err, sizeof err) != 0)
            job_end(j, err);
        else
            j->pending++;
    } else if (j->add && !member_votes(m)) {
        set_voter(m, true);
        propose_members(j, doc, "add");
    } else if (!j->add && m && member_votes(m)) {
        set_voter(m, false); /* the verdict stops counting it before raft does */
        propose_members(j, doc, "remove");
    } else if (!j->add && role >= 0) {
        if (dw_raft_remove_member(c->raft, j->id, job_done_cb, j, err, sizeof err) != 0)
            job_end(j, err);
        else
            j->pending++;
    } else if (!j->add && m) {
        cJSON_Delete(cJSON_DetachItemViaPointer((cJSON *)members_of(doc), m));
        propose_members(j, doc, "remove");
    } else {
        job_end(j, NULL);
    }
    cJSON_Delete(doc);
}

static void kick_cb(uv_timer_t *t)
{
    struct dw_cfgadmin *c = t->data;
    if (c->job && c->job->call)
        job_step(c->job);
}

static void deadline_cb(uv_timer_t *t)
{
    struct dw_cfgadmin *c = t->data;
    if (c->job)
        job_end(c->job, "not done within 60 s: is the new member running (drwatchd --join) and "
                        "reachable at its raft_address? Run the command again to resume");
}

static bool parse_id(const cJSON *req, uint64_t *id, cJSON *reply)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "id");
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 2147483647 ||
        v->valuedouble != (double)(int64_t)v->valuedouble) {
        dw_admin_error(reply, "id: expected an integer from 1 to 2147483647");
        return false;
    }
    *id = (uint64_t)v->valuedouble;
    return true;
}

static void members_change(struct dw_cfgadmin *c, const cJSON *req, cJSON *reply,
                           struct dw_admin_call *call, bool add)
{
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(req, "by");
    uint64_t id;
    if (!parse_id(req, &id, reply) || !dw_admin_leader_or_fail(c->raft, reply))
        return;
    if (c->job) {
        dw_admin_error(reply, "a membership change (member %" PRIu64 ") is under way", c->job->id);
        return;
    }
    cJSON *doc = committed_doc(c);
    if (doc == NULL) {
        dw_admin_error(reply, "no config is committed yet");
        return;
    }
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        cJSON_Delete(doc);
        dw_admin_error(reply, "out of memory");
        return;
    }
    *j = (struct job){.c = c, .add = add, .id = id};
    snprintf(j->by, sizeof j->by, "%s",
             cJSON_IsString(by) && by->valuestring[0] ? by->valuestring : "unknown");
    const cJSON *m = find_member(doc, id);
    if (add) {
        const cJSON *ra = cJSON_GetObjectItemCaseSensitive(req, "raft_address");
        const cJSON *pa = cJSON_GetObjectItemCaseSensitive(req, "peer_address");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(req, "name");
        if (!cJSON_IsString(ra) || !cJSON_IsString(pa) || (nm && !cJSON_IsString(nm))) {
            dw_admin_error(reply, "raft_address, peer_address: expected strings (name too, if given)");
            goto refuse;
        }
        if (strlen(ra->valuestring) >= sizeof j->raft_address ||
            strlen(pa->valuestring) >= sizeof j->peer_address ||
            (nm && strlen(nm->valuestring) >= sizeof j->name)) {
            dw_admin_error(reply, "raft_address, peer_address: at most %zu bytes; name: at most %zu",
                 sizeof j->raft_address - 1, sizeof j->name - 1);
            goto refuse;
        }
        snprintf(j->raft_address, sizeof j->raft_address, "%s", ra->valuestring);
        snprintf(j->peer_address, sizeof j->peer_address, "%s", pa->valuestring);
        snprintf(j->name, sizeof j->name, "%s", nm ? nm->valuestring : "");
        if (m) {
            const cJSON *mr = cJSON_GetObjectItemCaseSensitive(m, "raft_address");
            const cJSON *mp = cJSON_GetObjectItemCaseSensitive(m, "peer_address");
            if (strcmp(cJSON_GetStringValue(mr), j->raft_address) != 0 ||
                strcmp(cJSON_GetStringValue(mp), j->peer_address) != 0) {
                dw_admin_error(reply, "member %" PRIu64 " exists with raft_address %s and peer_address %s",
                     id, cJSON_GetStringValue(mr), cJSON_GetStringValue(mp));
                goto refuse;
            }
        } else {
            /* the new list through the validator: addresses, clashes, this node's secret file */
            cJSON *add_m = cJSON_CreateObject();
            cJSON_AddNumberToObject(add_m, "id", (double)id);
            if (j->name[0])
                cJSON_AddStringToObject(add_m, "name", j->name);
            cJSON_AddStringToObject(add_m, "raft_address", j->raft_address);
            cJSON_AddStringToObject(add_m, "peer_address", j->peer_address);
            cJSON_AddItemToArray((cJSON *)members_of(doc), add_m);
            struct dw_config *cfg = validate(c, doc, NULL, 0, reply);
            if (cfg == NULL)
                goto refuse;
            free_cfg(cfg);
        }
    } else {
        int voters = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, members_of(doc))
            voters += member_votes(it);
        if (id == dw_raft_leader_id(c->raft)) {
            dw_admin_error(reply, "member %" PRIu64 " is the leader: stop it (another member takes over) "
                 "or run this once another member leads", id);
            goto refuse;
        }
        if (m && member_votes(m) && voters - 1 < MIN_VOTERS) {
            dw_admin_error(reply, "removing member %" PRIu64 " leaves %d voters: fewer than %d cannot "
                 "outvote one member's bad network; add a member first", id, voters - 1,
                 MIN_VOTERS);
            goto refuse;
        }
    }
    cJSON_Delete(doc);
    c->job = j;
    c->refs++;
    j->call = call;
    dw_admin_defer(call);
    uv_timer_start(c->deadline, deadline_cb, JOB_TIMEOUT_MS, 0);
    job_step(j);
    return;
refuse:
    cJSON_Delete(doc);
    free(j);
}

/* ---- dispatch and lifetime ---- */

bool dw_cfgadmin_handle(struct dw_cfgadmin *c, const cJSON *req, cJSON *reply,
                        struct dw_admin_call *call)
{
    const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "cmd"));
    const char *action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "action"));
    bool config = cmd && strcmp(cmd, "config") == 0;
    if (!cmd || (!config && strcmp(cmd, "members") != 0))
        return false;
    if (!action) {
        dw_admin_error(reply, "action: expected a string");
    } else if (config && strcmp(action, "show") == 0) {
        config_show(c, reply);
    } else if (config && (strcmp(action, "diff") == 0 || strcmp(action, "apply") == 0)) {
        config_change(c, req, reply, call, strcmp(action, "apply") == 0);
    } else if (config) {
        dw_admin_error(reply, "action: unknown config action \"%.32s\" (known: show, diff, apply)", action);
    } else if (strcmp(action, "list") == 0) {
        members_list(c, reply);
    } else if (strcmp(action, "add") == 0 || strcmp(action, "remove") == 0) {
        members_change(c, req, reply, call, strcmp(action, "add") == 0);
    } else {
        dw_admin_error(reply, "action: unknown members action \"%.32s\" (known: list, add, remove)", action);
    }
    return true;
}

static void timer_closed(uv_handle_t *h)
{
    struct dw_cfgadmin *c = h->data;
    free(h);
    unref(c);
}

int dw_cfgadmin_init(struct dw_cfgadmin **out, uv_loop_t *loop, struct dw_fsm *fsm,
                     struct dw_raft *raft, const cJSON *local_doc)
{
    struct dw_cfgadmin *c = calloc(1, sizeof *c);
    uv_timer_t *kick = malloc(sizeof *kick), *deadline = malloc(sizeof *deadline);
    if (!c || !kick || !deadline) {
        free(c);
        free(kick);
        free(deadline);
        return -1;
    }
    *c = (struct dw_cfgadmin){.loop = loop, .fsm = fsm, .raft = raft, .local = local_doc,
                              .kick = kick, .deadline = deadline, .refs = 3};
    uv_timer_init(loop, kick);
    uv_timer_init(loop, deadline);
    kick->data = deadline->data = c;
    *out = c;
    return 0;
}

void dw_cfgadmin_close(struct dw_cfgadmin *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    if (c->job)
        job_end(c->job, "drwatchd is shutting down; run the command again once a leader is up");
    uv_close((uv_handle_t *)c->kick, timer_closed);
    uv_close((uv_handle_t *)c->deadline, timer_closed);
    unref(c);
}
