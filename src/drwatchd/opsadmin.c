/* Owns the maintenance, operate and hold admin commands: checked against the replicated state first
 * (so a refusal names its reason), proposed on the leader, answered once applied. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/actions.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"
#include "opsadmin.h"

struct pending {
    struct dw_fsm *fsm;
    struct dw_admin_call *call;
    cJSON *reply;           /* what is answered once applied */
    char request[DW_ID_MAX]; /* operate: the request id naming the operation, "" otherwise */
};

static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The operator's name every change is recorded under. */
static bool by_ok(const char *by, cJSON *reply)
{
    if (by != NULL && by[0] != '\0' && strlen(by) <= DW_OPERATOR_MAX)
        return true;
    dw_admin_error(reply, "by: expected a name of 1 to %d bytes", DW_OPERATOR_MAX);
    return false;
}

static void applied(void *data, int status, const char *errmsg)
{
    struct pending *p = data;
    int64_t op;

    if (status != 0) {
        cJSON_Delete(p->reply);
        p->reply = cJSON_CreateObject();
        dw_admin_error(p->reply, "not committed: %s; see drctl status and history",
                       errmsg ? errmsg : "failed");
    } else if (p->request[0] != '\0') {
        op = dw_fsm_operation_by_request(p->fsm, p->request);
        if (op > 0) {
            cJSON_AddNumberToObject(p->reply, "operation", (double)op);
        } else {
            cJSON_Delete(p->reply);
            p->reply = cJSON_CreateObject();
            dw_admin_error(p->reply, "refused when applied (the state changed since the check); "
                                     "see drctl history");
        }
    }
    dw_admin_reply(p->call, p->reply);
    cJSON_Delete(p->reply);
    free(p);
}

/* Proposes entry (freed here) and answers reply (owned from here on) once it is applied. */
static void propose(struct dw_fsm *fsm, struct dw_raft *raft, char *entry, cJSON *reply,
                    const char *request, cJSON *reply_now, struct dw_admin_call *call)
{
    struct pending *p = calloc(1, sizeof *p);
    char err[256];

    if (p == NULL || entry == NULL) {
        dw_admin_error(reply_now, "out of memory");
        goto fail;
    }
    *p = (struct pending){.fsm = fsm, .call = call, .reply = reply};
    snprintf(p->request, sizeof p->request, "%s", request ? request : "");
    if (dw_raft_propose(raft, entry, applied, p, err, sizeof err) != 0) {
        dw_admin_error(reply_now, "not proposed: %s", err);
        goto fail;
    }
    free(entry);
    dw_admin_defer(call);
    return;
fail:
    free(entry);
    free(p);
    cJSON_Delete(reply);
}

static void maintenance(struct dw_fsm *fsm, struct dw_raft *raft, const cJSON *req, cJSON *reply,
                        struct dw_admin_call *call)
{
    const char *action = jstr(req, "action"), *scope = jstr(req, "scope"), *id = jstr(req, "id");
    const char *by = jstr(req, "by"), *reason = jstr(req, "reason");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(req, "ttl_ms");
    const struct dw_config *cfg = dw_fsm_config(fsm);
    bool set = action && strcmp(action, "set") == 0;
    cJSON *done;

    if (action && strcmp(action, "list") == 0) {
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddItemToObject(reply, "maintenance", dw_fsm_maintenance_json(fsm));
        return;
    }
    if (!set && (action == NULL || strcmp(action, "clear") != 0)) {
        dw_admin_error(reply, "action: expected \"set\", \"clear\" or \"list\"");
        return;
    }
    if (scope == NULL || (strcmp(scope, "site") != 0 && strcmp(scope, "group") != 0)) {
        dw_admin_error(reply, "scope: expected \"site\" or \"group\"");
        return;
    }
    if ((strcmp(scope, "site") == 0 ? dw_config_site_index(cfg, id)
                                    : dw_config_group_index(cfg, id)) < 0) {
        dw_admin_error(reply, "id: no %s \"%.64s\"", scope, id ? id : "");
        return;
    }
    if (!by_ok(by, reply))
        return;
    if (set && (reason == NULL || reason[0] == '\0' || strlen(reason) > 512)) {
        dw_admin_error(reply, "reason: expected a text of 1 to 512 bytes");
        return;
    }
    if (set && (!cJSON_IsNumber(ttl) || ttl->valuedouble < DW_MAINT_TTL_MIN ||
                ttl->valuedouble > DW_MAINT_TTL_MAX)) {
        dw_admin_error(reply, "ttl_ms: expected %lld to %lld (ten seconds to thirty days)",
                       (long long)DW_MAINT_TTL_MIN, (long long)DW_MAINT_TTL_MAX);
        return;
    }
    if (!dw_admin_leader_or_fail(raft, reply))
        return;
    done = cJSON_CreateObject();
    cJSON_AddBoolToObject(done, "ok", 1);
    dw_log_kv(DW_LOG_INFO, "admin",
              DW_LOG_FIELDS(DW_LS("scope", scope), DW_LS(scope, id), DW_LS("by", by)),
              "maintenance %s of %s %s proposed for %s", action, scope, id, by);
    propose(fsm, raft,
            dw_entry_maintenance(action, scope, id, by, reason ? reason : "",
                                 set ? (int64_t)ttl->valuedouble : 0),
            done, NULL, reply, call);
}

/* Adds to each step of plan the Genesys requests it would make. */
static int plan_calls(const struct dw_config *cfg, cJSON *plan, char *err, size_t errlen)
{
    int g = dw_config_group_index(cfg, jstr(plan, "group"));
    cJSON *st;

    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(plan, "steps")) {
        cJSON *calls = cJSON_AddArrayToObject(st, "calls");
        int t = -1;

        for (int i = 0; g >= 0 && i < cfg->groups[g].n_targets; i++) {
            if (strcmp(cfg->groups[g].targets[i].id, jstr(st, "target")) == 0)
                t = i;
        }
        if (calls == NULL ||
            dw_actions_plan(cfg, g, t, jstr(st, "action"), calls, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static void operate(struct dw_fsm *fsm, struct dw_raft *raft, const cJSON *req, cJSON *reply,
                    struct dw_admin_call *call)
{
    static unsigned serial;
    const char *action = jstr(req, "action"), *group = jstr(req, "group"), *to = jstr(req, "to");
    const char *by = jstr(req, "by");
    bool dry = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "dry_run"));
    char why[256], request[DW_ID_MAX];
    cJSON *plan = NULL, *done;
    int rc;

    if (group == NULL) {
        dw_admin_error(reply, "group: expected a string");
        return;
    }
    if (!by_ok(by, reply))
        return;
    rc = dw_fsm_manual_plan(fsm, group, action ? action : "", to, &plan, why, sizeof why);
    if (rc != 0) {
        dw_admin_error(reply, "%s", rc > 0 ? why : "cannot read the replicated state");
        return;
    }
    if (dry) {
        if (plan_calls(dw_fsm_config(fsm), plan, why, sizeof why) != 0) {
            dw_admin_error(reply, "dry run: %s", why);
            cJSON_Delete(plan);
            return;
        }
        cJSON_AddBoolToObject(reply, "ok", 1);
        cJSON_AddBoolToObject(reply, "dry_run", 1);
        cJSON_AddItemToObject(reply, "plan", plan);
        return;
    }
    if (!dw_admin_leader_or_fail(raft, reply)) {
        cJSON_Delete(plan);
        return;
    }
    /* unique per leader term and process: the log index it lands at is not known yet */
    snprintf(request, sizeof request, "r%" PRIu64 "-%" PRIu64 "-%u", dw_raft_term(raft),
             dw_raft_last_applied(raft), ++serial);
    done = cJSON_CreateObject();
    cJSON_AddBoolToObject(done, "ok", 1);
    cJSON_AddItemToObject(done, "plan", plan);
    dw_log_kv(DW_LOG_INFO, "admin",
              DW_LOG_FIELDS(DW_LS("group", group), DW_LS("kind", action), DW_LS("by", by)),
              "%s of %s%s%s proposed for %s", action, group,
              to && strcmp(action, "switchover") == 0 ? " to " : "",
              to && strcmp(action, "switchover") == 0 ? to : "", by);
    propose(fsm, raft,
            dw_entry_operate(action, group, strcmp(action, "switchover") == 0 ? to : NULL, by,
                             request),
            done, request, reply, call);
}

/* {"cmd":"hold","action":"release","group":G,"by":NAME}: answered once applied, with whether
 * the group was held when asked (a release of a group not held still restarts its flap window). */
static void hold(struct dw_fsm *fsm, struct dw_raft *raft, const cJSON *req, cJSON *reply,
                 struct dw_admin_call *call)
{
    const char *action = jstr(req, "action"), *group = jstr(req, "group"), *by = jstr(req, "by");
    const struct dw_config *cfg = dw_fsm_config(fsm);
    struct dw_group_state st;
    int g = dw_config_group_index(cfg, group);
    cJSON *done;

    if (action == NULL || strcmp(action, "release") != 0) {
        dw_admin_error(reply, "action: expected \"release\"");
        return;
    }
    if (g < 0) {
        dw_admin_error(reply, "group: no group \"%.64s\"", group ? group : "");
        return;
    }
    if (!by_ok(by, reply))
        return;
    if (!dw_admin_leader_or_fail(raft, reply))
        return;
    if (dw_fsm_group_state(fsm, g, &st) != 0) {
        dw_admin_error(reply, "cannot read the replicated state");
        return;
    }
    done = cJSON_CreateObject();
    cJSON_AddBoolToObject(done, "ok", 1);
    cJSON_AddBoolToObject(done, "was_held", st.held);
    if (st.held)
        cJSON_AddStringToObject(done, "hold_reason", st.flapping ? "flapping" : "failed");
    dw_log_kv(DW_LOG_INFO, "admin", DW_LOG_FIELDS(DW_LS("group", group), DW_LS("by", by)),
              "hold release of %s proposed for %s", group, by);
    propose(fsm, raft, dw_entry_hold_release(group, by), done, NULL, reply, call);
}

bool dw_opsadmin_handle(struct dw_fsm *fsm, struct dw_raft *raft, const cJSON *req,
                        cJSON *reply, struct dw_admin_call *call)
{
    const char *cmd = jstr(req, "cmd");

    if (cmd && strcmp(cmd, "maintenance") == 0)
        maintenance(fsm, raft, req, reply, call);
    else if (cmd && strcmp(cmd, "operate") == 0)
        operate(fsm, raft, req, reply, call);
    else if (cmd && strcmp(cmd, "hold") == 0)
        hold(fsm, raft, req, reply, call);
    else
        return false;
    return true;
}
