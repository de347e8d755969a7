/* History views for drctl history and the long poll behind drctl watch. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/config.h"
#include "watchadmin.h"

/* How often waiting requests are checked for their deadline. */
#define SWEEP_MS 500
#define HISTORY_DEFAULT 50

struct waiter {
    struct dw_admin_call *call;
    struct dw_history_query q;
    char group[DW_ID_MAX];
    uint64_t deadline; /* uv_now() */
    struct waiter *next;
};

struct dw_watchadmin {
    uv_loop_t *loop;
    struct dw_fsm *fsm;
    uv_timer_t sweep;
    struct waiter *waiters;
};

static bool int_field(const cJSON *req, const char *k, double lo, double hi, double *out,
                      cJSON *reply)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, k);

    if (v == NULL)
        return true;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        v->valuedouble != (double)(int64_t)v->valuedouble) {
        dw_admin_error(reply, "%s: expected an integer from %.0f to %.0f", k, lo, hi);
        return false;
    }
    *out = v->valuedouble;
    return true;
}

/* Fills reply with q's rows; false (reply untouched) when there are none and want_rows. */
static bool answer(struct dw_fsm *fsm, const struct dw_history_query *q, cJSON *reply,
                   bool want_rows)
{
    int64_t newest = 0;
    cJSON *rows = dw_fsm_history_query(fsm, q, &newest);

    if (rows == NULL) {
        dw_admin_error(reply, "history: cannot read the replicated state");
        return true;
    }
    if (want_rows && cJSON_GetArraySize(rows) == 0) {
        cJSON_Delete(rows);
        return false;
    }
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddNumberToObject(reply, "cursor", (double)newest);
    cJSON_AddItemToObject(reply, "history", rows);
    return true;
}

/* Answers waiters with rows (all of them when flush), and the ones past their deadline. */
static void sweep(struct dw_watchadmin *w, bool flush)
{
    uint64_t now = uv_now(w->loop);

    for (struct waiter **pp = &w->waiters; *pp;) {
        struct waiter *x = *pp;
        cJSON *reply = cJSON_CreateObject();

        if (reply == NULL || !answer(w->fsm, &x->q, reply, !flush && now < x->deadline)) {
            cJSON_Delete(reply);
            pp = &x->next;
            continue;
        }
        *pp = x->next;
        dw_admin_reply(x->call, reply);
        cJSON_Delete(reply);
        free(x);
    }
    if (w->waiters == NULL)
        uv_timer_stop(&w->sweep);
}

static void sweep_cb(uv_timer_t *t)
{
    sweep(t->data, false);
}

void dw_watchadmin_applied(struct dw_watchadmin *w)
{
    if (w != NULL && w->waiters != NULL)
        sweep(w, false);
}

bool dw_watchadmin_handle(struct dw_watchadmin *w, const cJSON *req, cJSON *reply,
                          struct dw_admin_call *call)
{
    const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "cmd"));
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(req, "group");
    const struct dw_config *cfg = dw_fsm_config(w->fsm);
    double limit = HISTORY_DEFAULT, after = -1, since = 0, wait_ms = 0;
    struct waiter *x;

    if (cmd == NULL || strcmp(cmd, "history") != 0)
        return false;
    if (!int_field(req, "limit", 1, DW_FSM_HISTORY_MAX, &limit, reply) ||
        !int_field(req, "after", 0, 9007199254740991.0, &after, reply) ||
        !int_field(req, "since", 0, 9007199254740991.0, &since, reply) ||
        !int_field(req, "wait_ms", 0, DW_WATCH_WAIT_MAX_MS, &wait_ms, reply))
        return true;
    if (group != NULL && !cJSON_IsString(group)) {
        dw_admin_error(reply, "group: expected a string");
        return true;
    }
    int g = dw_config_group_index(cfg, cJSON_GetStringValue(group));
    if (group != NULL && g < 0) {
        dw_admin_error(reply, "group: no group \"%.64s\" in config version %" PRId64,
                       group->valuestring, dw_fsm_config_version(w->fsm));
        return true;
    }
    if (wait_ms > 0 && after < 0) {
        dw_admin_error(reply, "wait_ms: needs after (the cursor of an earlier reply)");
        return true;
    }
    struct dw_history_query q = {.after = after < 0 ? 0 : (int64_t)after,
                                 .since = (int64_t)since,
                                 .group = group ? group->valuestring : NULL,
                                 .limit = (int)limit,
                                 .oldest_first = after >= 0};
    if (answer(w->fsm, &q, reply, wait_ms > 0))
        return true;
    if ((x = calloc(1, sizeof *x)) == NULL) {
        dw_admin_error(reply, "out of memory");
        return true;
    }
    x->call = call;
    x->q = q;
    if (q.group != NULL) {
        snprintf(x->group, sizeof x->group, "%s", q.group);
        x->q.group = x->group;
    }
    x->deadline = uv_now(w->loop) + (uint64_t)wait_ms;
    x->next = w->waiters;
    w->waiters = x;
    if (!uv_is_active((uv_handle_t *)&w->sweep))
        uv_timer_start(&w->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    dw_admin_defer(call);
    return true;
}

int dw_watchadmin_init(struct dw_watchadmin **out, uv_loop_t *loop, struct dw_fsm *fsm)
{
    struct dw_watchadmin *w = calloc(1, sizeof *w);

    if (w == NULL)
        return -1;
    w->loop = loop;
    w->fsm = fsm;
    uv_timer_init(loop, &w->sweep);
    w->sweep.data = w;
    *out = w;
    return 0;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void dw_watchadmin_close(struct dw_watchadmin *w)
{
    if (w == NULL)
        return;
    sweep(w, true);
    uv_close((uv_handle_t *)&w->sweep, closed);
}
