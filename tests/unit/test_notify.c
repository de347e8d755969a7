/* The notifier on a real loop against a real FSM, its raft replaced by a fake that applies
 * proposals at once: payload formats, hooks (stdin, exit status, timeout), back-off, leadership,
 * max_age_ms. HTTP channels run against tests/tools/notify_sink.py in the integration tests. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drwatch/entry.h"
#include "drwatch/fsm.h"
#include "drwatch/notify.h"
#include "testlib.h"

struct fx {
    struct tl_loop l;
    struct dw_fsm *f;
    struct dw_notify_cfg cfg;
    struct dw_notifier *nt;
    bool leader;
    int proposed;
    char dir[128];
};

struct pending {
    uv_timer_t t;
    dw_raft_done_cb cb;
    void *data;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool fake_is_leader(void *r)
{
    return ((struct fx *)r)->leader;
}

static void pending_closed(uv_handle_t *h)
{
    free(h->data);
}

static void pending_fire(uv_timer_t *t)
{
    struct pending *p = t->data;
    p->cb(p->data, 0, NULL);
    uv_close((uv_handle_t *)&p->t, pending_closed);
}

/* Applies the entry as raft would (stamped by node 1) and reports on a later loop turn. */
static int fake_propose(void *r, const char *e, dw_raft_done_cb cb, void *data, char *err,
                        size_t errlen)
{
    struct fx *x = r;
    char *stamped = dw_entry_stamp(e, strlen(e), now_ms(), 1, err, errlen);
    struct pending *p = calloc(1, sizeof *p);

    assert_non_null(stamped);
    assert_non_null(p);
    assert_int_equal(dw_fsm_apply(x->f, stamped, strlen(stamped)), DW_FSM_APPLIED);
    free(stamped);
    x->proposed++;
    p->cb = cb;
    p->data = data;
    uv_timer_init(&x->l.loop, &p->t);
    p->t.data = p;
    uv_timer_start(&p->t, pending_fire, 0, 0);
    return 0;
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);
    char err[256];

    assert_non_null(x);
    tl_loop_init(&x->l, 20);
    assert_int_equal(dw_fsm_open(&x->f, NULL, err, sizeof err), 0);
    assert_int_equal(tl_tmpdir(x->dir, sizeof x->dir, "dwnotify"), 0);
    x->leader = true;
    x->cfg.max_age_ms = 3600000;
    snprintf(x->cfg.cluster, sizeof x->cfg.cluster, "unit");
    *state = x;
    return 0;
}

static int closed(void *arg)
{
    (void)arg;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;

    dw_notify_close(x->nt);
    tl_run_until(&x->l, closed, NULL, 300); /* handles close on the next turns */
    tl_loop_close(&x->l);
    dw_fsm_close(x->f);
    tl_rmtree(x->dir);
    free(x);
    return 0;
}

static void add_event(struct fx *x, int64_t ts, const char *kind)
{
    char sql[256];

    snprintf(sql, sizeof sql, "INSERT INTO events(ts, kind, grp, summary) VALUES(%lld, '%s',"
             " 'carrier-1', 'carrier-1: failover #1 premise-a -> premise-b done')",
             (long long)ts, kind);
    assert_int_equal(sqlite3_exec(dw_fsm_db(x->f), sql, NULL, NULL, NULL), SQLITE_OK);
}

static struct dw_notify_channel *add_hook(struct fx *x, const char *name, const char *script,
                                          unsigned timeout_ms)
{
    struct dw_notify_channel *c = &x->cfg.channels[x->cfg.n_channels++];

    snprintf(c->name, sizeof c->name, "%s", name);
    c->kind = DW_NOTIFY_HOOK;
    c->timeout_ms = timeout_ms;
    c->n_command = 4;
    snprintf(c->command[0], sizeof c->command[0], "/bin/sh");
    snprintf(c->command[1], sizeof c->command[1], "-c");
    snprintf(c->command[2], sizeof c->command[2], "%s", script);
    snprintf(c->command[3], sizeof c->command[3], "%s", x->dir);
    return c;
}

static void start(struct fx *x)
{
    struct dw_notify_ops ops = {.raft = x, .is_leader = fake_is_leader, .propose = fake_propose};
    char err[256];

    assert_int_equal(dw_notify_start(&x->nt, &x->l.loop, x->l.m, &x->cfg, x->f, &ops, err,
                                     sizeof err), 0);
    dw_notify_kick(x->nt);
}

static struct dw_notify_stats stats(struct fx *x, int i)
{
    struct dw_notify_stats st;

    assert_int_equal(dw_notify_stats(x->nt, i, &st), 0);
    return st;
}

struct until {
    struct fx *x;
    int channel;
    uint64_t failed, sent, skipped;
};

static int reached(void *arg)
{
    struct until *u = arg;
    struct dw_notify_stats st = stats(u->x, u->channel);

    return st.failed >= u->failed && st.sent >= u->sent && st.skipped >= u->skipped;
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return NULL;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_payloads(void **state)
{
    struct dw_event ev = {.id = 7, .ts = 1764690000123LL, .kind = "failover", .group = "g<1>",
                          .summary = "g: a -> b & c"};
    char sig[DW_NOTIFY_SIG_MAX], *s;
    cJSON *j, *p;

    (void)state;
    s = dw_notify_slack_body(&ev, "prod");
    assert_string_equal(s, "{\"text\":\"[prod] failover in group g&lt;1&gt; at "
                           "2025-12-02T15:40:00.123Z: g: a -&gt; b &amp; c\"}");
    free(s);

    s = dw_notify_pagerduty_body(&ev, "prod", "KEY");
    j = cJSON_Parse(s);
    free(s);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "event_action")), "trigger");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "dedup_key")), "drwatch/g<1>");
    p = cJSON_GetObjectItem(j, "payload");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(p, "severity")), "critical");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(p, "timestamp")),
                        "2025-12-02T15:40:00.123Z");
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(p,
                     "custom_details"), "id")), 7);
    cJSON_Delete(j);
    snprintf(ev.kind, sizeof ev.kind, "hold_released");
    s = dw_notify_pagerduty_body(&ev, "prod", "KEY");
    assert_string_equal(s, "{\"routing_key\":\"KEY\",\"event_action\":\"resolve\","
                           "\"dedup_key\":\"drwatch/g<1>\"}");
    free(s);
    snprintf(ev.kind, sizeof ev.kind, "rollback");
    assert_null(dw_notify_pagerduty_body(&ev, "prod", "KEY"));

    /* RFC 4231, test case 2 */
    assert_int_equal(dw_notify_signature("Jefe", "what do ya want for nothing?", 28, sig), 0);
    assert_string_equal(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964"
                             "ec3843");
}

/* The hook gets the event document on stdin; exit 0 is a delivery, confirmed in the log. */
static void test_hook_delivers_once(void **state)
{
    struct fx *x = *state;
    struct until u = {.x = x, .channel = 0, .sent = 1};
    struct dw_event ev[2];
    char path[192], want[2048], *got, *body;
    int64_t ts = now_ms();

    add_hook(x, "hook", "cat >> \"$0/out\"; echo \"$DRWATCH_EVENT_ID $DRWATCH_EVENT_KIND "
             "$DRWATCH_GROUP $DRWATCH_CLUSTER\" >> \"$0/env\"", 5000);
    add_event(x, ts, "failover");
    start(x);
    assert_int_equal(tl_run_until(&x->l, reached, &u, 5000), 0);
    tl_run_for(&x->l, 200); /* the confirmation lands; nothing more is sent */
    assert_int_equal(x->proposed, 1);
    assert_int_equal(dw_fsm_undelivered(x->f, "hook", 0, ev, 2, NULL), 0);
    assert_int_equal(stats(x, 0).sent, 1);
    assert_int_equal(stats(x, 0).pending, 0);
    ev[0] = (struct dw_event){.id = 1, .ts = ts, .kind = "failover", .group = "carrier-1",
                              .summary = "carrier-1: failover #1 premise-a -> premise-b done"};
    body = dw_notify_event_body(&ev[0], "unit");
    snprintf(want, sizeof want, "%s\n", body);
    free(body);
    snprintf(path, sizeof path, "%s/out", x->dir);
    got = slurp(path);
    assert_non_null(got);
    assert_string_equal(got, want);
    snprintf(path, sizeof path, "%s/env", x->dir);
    assert_string_equal(slurp(path), "1 failover carrier-1 unit\n");
}

/* A hook past its timeout is killed, one exiting non-zero fails: both are retried after 1 s. */
static void test_hook_failures_retried(void **state)
{
    struct fx *x = *state;
    struct until slow = {.x = x, .channel = 0, .failed = 1};
    struct until bad = {.x = x, .channel = 1, .failed = 2};
    uint64_t t0;

    add_hook(x, "slow", "sleep 30", 200);
    add_hook(x, "bad", "cat > /dev/null; exit 3", 5000);
    add_event(x, now_ms(), "hold");
    t0 = uv_now(&x->l.loop);
    start(x);
    assert_int_equal(tl_run_until(&x->l, reached, &slow, 3000), 0);
    uv_update_time(&x->l.loop);
    assert_true(uv_now(&x->l.loop) - t0 < 1500); /* killed at 200 ms, not after 30 s */
    assert_int_equal(tl_run_until(&x->l, reached, &bad, 4000), 0);
    uv_update_time(&x->l.loop);
    assert_true(uv_now(&x->l.loop) - t0 >= 1000); /* the back-off between the two */
    assert_int_equal(x->proposed, 0);
    assert_int_equal(stats(x, 0).pending, 1);
    assert_int_equal(stats(x, 1).sent, 0);
}

/* A follower sends nothing; events past max_age_ms are skipped, not sent. */
static void test_follower_and_max_age(void **state)
{
    struct fx *x = *state;
    struct until u = {.x = x, .channel = 0, .sent = 1, .skipped = 1};
    char path[192];

    add_hook(x, "hook", "cat >> \"$0/out\"", 5000);
    add_event(x, now_ms() - 2 * 3600000LL, "failover");
    add_event(x, now_ms(), "no_target_up");
    x->leader = false;
    start(x);
    tl_run_for(&x->l, 300);
    snprintf(path, sizeof path, "%s/out", x->dir);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(stats(x, 0).sent, 0);
    x->leader = true;
    dw_notify_kick(x->nt);
    assert_int_equal(tl_run_until(&x->l, reached, &u, 5000), 0);
    assert_non_null(strstr(slurp(path), "\"kind\":\"no_target_up\""));
    assert_null(strstr(slurp(path), "\"kind\":\"failover\""));
    assert_int_equal(stats(x, 0).skipped, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payloads),
        cmocka_unit_test_setup_teardown(test_hook_delivers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_failures_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follower_and_max_age, setup, teardown),
    };

    tl_main_begin();
    return tl_main_end(cmocka_run_group_tests(tests, NULL, tl_kill_all_teardown));
}
