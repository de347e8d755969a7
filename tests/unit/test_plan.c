/* The pure planner, table-driven: one row per branch of dw_plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "drwatch/plan.h"

/* health, passed over, name, stable, in maintenance */
#define UP(name) {DW_UP, false, name, false, false}
#define DOWN(name) {DW_DOWN, false, name, false, false}
#define UNKNOWN(name) {DW_UNKNOWN, false, name, false, false}
#define PASSED(name) {DW_UP, true, name, false, false}
#define CLOUD {DW_UP, false, "cloud", true, false} /* a target with no site: always UP */
#define STABLE(name) {DW_UP, false, name, true, false}
#define MAINT(name) {DW_UP, false, name, true, true}
#define MAINT_DOWN(name) {DW_DOWN, false, name, false, true}

struct want {
    enum dw_plan_what what;
    enum dw_op_kind kind;
    int from, to;
    const char *reason;
    const char *steps; /* "A1 V1 D0": activate, verify, deactivate target n */
};

struct row {
    const char *name;
    struct dw_plan_state s;
    struct want want;
};

#define NOTHING {DW_PLAN_NOTHING, 0, -1, -1, "", ""}

static const struct row rows[] = {
    {"steady: the primary up and carrying", {.n_targets = 2, .targets = {UP("a"), UP("b")}},
     NOTHING},
    {"carrier down: failover to the next UP target, the one left switched off first",
     {.n_targets = 3, .targets = {DOWN("a"), UP("b"), UP("c")}},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 1, "a down", "A1 V1 D0 D2"}},
    {"carrier down but held: the escape from a dead target still happens",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .hold = true},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 1, "a down", "A1 V1 D0"}},
    {"no carrier: the highest-priority UP target is brought in",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .active = -1},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, -1, 0, "no target in service", "A0 V0 D1"}},
    {"a carrier index out of range counts as none",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .active = 5},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, -1, 1, "no target in service", "A1 V1 D0"}},
    {"carrier UNKNOWN is not left", {.n_targets = 2, .targets = {UNKNOWN("a"), UP("b")}}, NOTHING},
    {"UNKNOWN targets are never chosen: nothing up, verdict unchanged",
     {.n_targets = 2, .targets = {DOWN("a"), UNKNOWN("b")}}, NOTHING},
    {"nothing up and a verdict changed: said once",
     {.n_targets = 2, .targets = {DOWN("a"), UNKNOWN("b")}, .verdict_changed = true},
     {DW_PLAN_NONE_UP, 0, -1, -1, "", ""}},
    {"after a full restart every site is UNKNOWN: nothing planned",
     {.n_targets = 2, .targets = {UNKNOWN("a"), UNKNOWN("b")}, .verdict_changed = true}, NOTHING},
    {"the siteless cloud target is always up and can be the destination",
     {.n_targets = 3, .targets = {DOWN("a"), DOWN("b"), CLOUD}},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 2, "a down", "A2 V2 D0 D1"}},
    {"a cloud carrier is named by its own id when down",
     {.n_targets = 2, .targets = {{DW_DOWN, false, "cloud", false, false}, UP("b")}},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 1, "cloud down", "A1 V1 D0"}},
    {"a passed-over target is skipped for the next UP one",
     {.n_targets = 3, .targets = {DOWN("a"), PASSED("b"), UP("c")}},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 2, "a down", "A2 V2 D0 D1"}},
    {"every UP target passed over: nothing up",
     {.n_targets = 2, .targets = {DOWN("a"), PASSED("b")}, .verdict_changed = true},
     {DW_PLAN_NONE_UP, 0, -1, -1, "", ""}},
    {"running failover, destination UP: left to finish",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .running = {true, DW_OP_FAILOVER, -1, 1, 0, {false}}},
     NOTHING},
    {"running failover, destination UNKNOWN: left to finish",
     {.n_targets = 2, .targets = {DOWN("a"), UNKNOWN("b")}, .running = {true, DW_OP_FAILOVER, -1, 1, 0, {false}}},
     NOTHING},
    {"running failover, destination DOWN: aborted",
     {.n_targets = 2, .targets = {UP("a"), DOWN("b")}, .running = {true, DW_OP_FAILOVER, -1, 1, 0, {false}}},
     {DW_PLAN_ABORT, 0, -1, -1, "", ""}},
    {"running rollback keeping an UP carrier: left to finish",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .running = {true, DW_OP_ROLLBACK, 1, 0, 0, {false}}},
     NOTHING},
    {"running rollback switching off the best UP target, carrier DOWN: aborted",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .running = {true, DW_OP_ROLLBACK, 1, 0, 0, {false}}},
     {DW_PLAN_ABORT, 0, -1, -1, "", ""}},
    {"running rollback switching off a passed-over target: left to finish",
     {.n_targets = 2, .targets = {DOWN("a"), PASSED("b")}, .running = {true, DW_OP_ROLLBACK, 1, 0, 0, {false}}},
     NOTHING},
    {"running rollback, a better UP target than the one switched off: left to finish",
     {.n_targets = 3, .targets = {DOWN("a"), UP("b"), UP("c")},
      .running = {true, DW_OP_ROLLBACK, 2, 0, 0, {false}}},
     NOTHING},
    {"running cleanup, nothing up: left to finish",
     {.n_targets = 2, .targets = {DOWN("a"), DOWN("b")}, .running = {true, DW_OP_CLEANUP, -1, -1, 0, {false}}},
     NOTHING},
    {"running cleanup switching everything off, a target UP again: aborted",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .running = {true, DW_OP_CLEANUP, -1, -1, 0, {false}}},
     {DW_PLAN_ABORT, 0, -1, -1, "", ""}},
    {"running cleanup switching everything off, the UP target passed over: left to finish",
     {.n_targets = 2, .targets = {DOWN("a"), PASSED("b")}, .running = {true, DW_OP_CLEANUP, -1, -1, 0, {false}}},
     NOTHING},
    {"running cleanup keeping an UP carrier: left to finish",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .running = {true, DW_OP_CLEANUP, -1, 0, 0, {false}}},
     NOTHING},
    {"running cleanup keeping a carrier now DOWN, another target UP: aborted",
     {.n_targets = 2, .targets = {UP("a"), DOWN("b")}, .running = {true, DW_OP_CLEANUP, -1, 1, 0, {false}}},
     {DW_PLAN_ABORT, 0, -1, -1, "", ""}},
    {"running cleanup keeping a carrier now DOWN, nothing else UP: left to finish",
     {.n_targets = 2, .targets = {DOWN("a"), DOWN("b")}, .running = {true, DW_OP_CLEANUP, -1, 1, 0, {false}}},
     NOTHING},
    {"failover failed bringing its destination in: rolled back, before anything else",
     {.n_targets = 3, .targets = {DOWN("a"), UP("b"), UP("c")}, .hold = true,
      .last = {true, 7, DW_OP_FAILOVER, DW_OP_FAILED, 1, true}, .failed = 1},
     {DW_PLAN_OPERATION, DW_OP_ROLLBACK, 1, 0, "#7 failed", "D1"}},
    {"rollback with no carrier records none as kept",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .active = -1,
      .last = {true, 3, DW_OP_FAILOVER, DW_OP_FAILED, 0, true}, .failed = 1},
     {DW_PLAN_OPERATION, DW_OP_ROLLBACK, 0, -1, "#3 failed", "D0"}},
    {"a failed failover's destination no longer configured: no rollback",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .hold = true,
      .last = {true, 3, DW_OP_FAILOVER, DW_OP_FAILED, -1, true}, .failed = 1},
     NOTHING},
    {"failed while switching off, not held: cleanup keeps the carrier",
     {.n_targets = 3, .targets = {UP("a"), UP("b"), UP("c")},
      .last = {true, 4, DW_OP_FAILOVER, DW_OP_FAILED, 0, false}, .failed = 1},
     {DW_PLAN_OPERATION, DW_OP_CLEANUP, 0, 0, "after a failed operation", "D1 D2"}},
    {"failed and held: no cleanup (an operator decides)",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .hold = true,
      .last = {true, 4, DW_OP_FAILOVER, DW_OP_FAILED, 0, false}, .failed = 1},
     NOTHING},
    {"aborted and held: a cleanup still follows",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .hold = true,
      .last = {true, 5, DW_OP_FAILOVER, DW_OP_ABORTED, 1, false}, .aborted = 1},
     {DW_PLAN_OPERATION, DW_OP_CLEANUP, 0, 0, "after an aborted operation", "D1"}},
    {"aborted, held, and a cleanup already failed: not retried",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .hold = true,
      .last = {true, 6, DW_OP_CLEANUP, DW_OP_FAILED, 0, false}, .aborted = 1, .failed = 1,
      .failed_cleanups = 1},
     NOTHING},
    {"aborted, carrier down and nothing up: everything switched off",
     {.n_targets = 2, .targets = {DOWN("a"), DOWN("b")},
      .last = {true, 5, DW_OP_FAILOVER, DW_OP_ABORTED, 1, false}, .aborted = 1},
     {DW_PLAN_OPERATION, DW_OP_CLEANUP, 0, -1, "after an aborted operation, no target up",
      "D0 D1"}},
    {"cleanup with the carrier the only target: nothing to switch off",
     {.n_targets = 1, .targets = {UP("a")}, .aborted = 1}, NOTHING},
    {"a carrier down takes precedence over a cleanup",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .aborted = 1},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 1, "a down", "A1 V1 D0"}},
    /* failback */
    {"a higher target UP and stable: failback, the carrier switched off after the verify",
     {.n_targets = 3, .targets = {STABLE("a"), UP("b"), CLOUD}, .active = 1, .failback_due = true},
     {DW_PLAN_OPERATION, DW_OP_FAILBACK, 1, 0, "a up and stable", "A0 V0 D1 D2"}},
    {"a higher target UP but not yet stable: wait",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .active = 1, .failback_due = true}, NOTHING},
    {"chain: on the cloud, b stable and a not yet: back to b first",
     {.n_targets = 3, .targets = {UP("a"), STABLE("b"), CLOUD}, .active = 2, .failback_due = true},
     {DW_PLAN_OPERATION, DW_OP_FAILBACK, 2, 1, "b up and stable", "A1 V1 D2 D0"}},
    {"failback policy manual: wait for an operator",
     {.n_targets = 2, .targets = {STABLE("a"), UP("b")}, .active = 1, .failback_due = true,
      .failback = DW_FAILBACK_MANUAL}, NOTHING},
    {"pinned by an operator's switchover: no failback",
     {.n_targets = 2, .targets = {STABLE("a"), UP("b")}, .active = 1, .failback_due = true,
      .pinned = true}, NOTHING},
    {"held: no failback",
     {.n_targets = 2, .targets = {STABLE("a"), UP("b")}, .active = 1, .failback_due = true,
      .hold = true}, NOTHING},
    {"a failed failback's back-off still running: no failback",
     {.n_targets = 2, .targets = {STABLE("a"), UP("b")}, .active = 1}, NOTHING},
    {"the higher target in maintenance: no failback to it",
     {.n_targets = 2, .targets = {MAINT("a"), UP("b")}, .active = 1, .failback_due = true},
     NOTHING},
    {"the carrier in maintenance: no failback off it",
     {.n_targets = 2, .targets = {STABLE("a"), MAINT("b")}, .active = 1, .failback_due = true},
     NOTHING},
    {"a failback that failed bringing the primary in is rolled back",
     {.n_targets = 2, .targets = {STABLE("a"), UP("b")}, .active = 1, .failback_due = false,
      .last = {true, 9, DW_OP_FAILBACK, DW_OP_FAILED, 0, true}, .failed = 1},
     {DW_PLAN_OPERATION, DW_OP_ROLLBACK, 0, 1, "#9 failed", "D0"}},
    {"running failback whose destination went DOWN: aborted",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .running = {true, DW_OP_FAILBACK, 1, 0, 0, {false}}},
     {DW_PLAN_ABORT, 0, -1, -1, "", ""}},
    /* flap damping */
    {"the window's allowance spent: a failover due holds the group instead",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .auto_ops = 3, .max_auto_ops = 3},
     {DW_PLAN_FLAP_HOLD, 0, -1, -1, "", ""}},
    {"the window's allowance spent: a failback due holds the group instead",
     {.n_targets = 2, .targets = {STABLE("a"), UP("b")}, .active = 1, .failback_due = true,
      .auto_ops = 3, .max_auto_ops = 3},
     {DW_PLAN_FLAP_HOLD, 0, -1, -1, "", ""}},
    {"allowance left: the failover goes ahead",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .auto_ops = 2, .max_auto_ops = 3},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 1, "a down", "A1 V1 D0"}},
    {"held for flapping: not even the escape from a dead carrier",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .hold = true, .flap_hold = true},
     NOTHING},
    {"held for flapping: a cleanup after an abort still runs (it only switches off)",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .hold = true, .flap_hold = true,
      .last = {true, 5, DW_OP_FAILOVER, DW_OP_ABORTED, 1, false}, .aborted = 1},
     {DW_PLAN_OPERATION, DW_OP_CLEANUP, 0, 0, "after an aborted operation", "D1"}},
    /* maintenance */
    {"group in maintenance: no failover",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .maintenance = true}, NOTHING},
    {"carrier's site in maintenance and DOWN: not left",
     {.n_targets = 2, .targets = {MAINT_DOWN("a"), UP("b")}}, NOTHING},
    {"a site in maintenance is never the destination",
     {.n_targets = 3, .targets = {DOWN("a"), MAINT("b"), CLOUD}},
     {DW_PLAN_OPERATION, DW_OP_FAILOVER, 0, 2, "a down", "A2 V2 D0"}},
    {"running cleanup keeping none, still to switch off an UP target now in maintenance: aborted",
     {.n_targets = 2, .targets = {DOWN("a"), MAINT("b")},
      .running = {true, DW_OP_CLEANUP, -1, -1, 4, {false, true}}},
     {DW_PLAN_ABORT, 0, -1, -1, "", ""}},
    {"running cleanup keeping an UP carrier, a target in maintenance still to switch off: left",
     {.n_targets = 2, .targets = {UP("a"), MAINT("b")},
      .running = {true, DW_OP_CLEANUP, -1, 0, 4, {false, true}}},
     NOTHING},
    {"a cleanup leaves a target in maintenance alone",
     {.n_targets = 3, .targets = {UP("a"), MAINT("b"), UP("c")},
      .last = {true, 4, DW_OP_FAILOVER, DW_OP_ABORTED, 1, false}, .aborted = 1},
     {DW_PLAN_OPERATION, DW_OP_CLEANUP, 0, 0, "after an aborted operation", "D2"}},
};

struct manual_row {
    const char *name;
    struct dw_plan_state s;
    enum dw_op_kind kind;
    int to;
    const char *steps; /* NULL: refused, with this text in why */
    const char *why;
};

static const struct manual_row manual_rows[] = {
    {"switchover to an UP target: the carrier switched off after the verify",
     {.n_targets = 3, .targets = {UP("a"), UP("b"), CLOUD}}, DW_OP_SWITCHOVER, 1,
     "A1 V1 D0 D2", NULL},
    {"switchover off a site in maintenance: the drill; that site is switched off",
     {.n_targets = 2, .targets = {MAINT("a"), UP("b")}}, DW_OP_SWITCHOVER, 1, "A1 V1 D0", NULL},
    {"switchover ignores holds, pins and the flap window",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}, .hold = true, .flap_hold = true,
      .pinned = true, .auto_ops = 9, .max_auto_ops = 3}, DW_OP_SWITCHOVER, 1, "A1 V1 D0", NULL},
    {"switchover to a DOWN target: refused",
     {.n_targets = 2, .targets = {UP("a"), DOWN("b")}}, DW_OP_SWITCHOVER, 1, NULL, "down, not up"},
    {"switchover to an UNKNOWN target: refused",
     {.n_targets = 2, .targets = {UP("a"), UNKNOWN("b")}}, DW_OP_SWITCHOVER, 1, NULL,
     "unknown, not up"},
    {"switchover to a target in maintenance: refused",
     {.n_targets = 2, .targets = {UP("a"), MAINT("b")}}, DW_OP_SWITCHOVER, 1, NULL,
     "in maintenance"},
    {"switchover to the carrier: refused",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}}, DW_OP_SWITCHOVER, 0, NULL,
     "already carries calls"},
    {"switchover while an operation runs: refused",
     {.n_targets = 2, .targets = {UP("a"), UP("b")},
      .running = {true, DW_OP_FAILOVER, 0, 1, 12, {false}}}, DW_OP_SWITCHOVER, 1, NULL,
     "operation #12 is running"},
    {"manual failback: to the highest UP target, stable or not, policy manual or not",
     {.n_targets = 3, .targets = {UP("a"), UP("b"), CLOUD}, .active = 2,
      .failback = DW_FAILBACK_MANUAL}, DW_OP_FAILBACK, -1, "A0 V0 D2 D1", NULL},
    {"manual failback skips a target in maintenance",
     {.n_targets = 3, .targets = {MAINT("a"), UP("b"), CLOUD}, .active = 2}, DW_OP_FAILBACK, -1,
     "A1 V1 D2", NULL},
    {"manual failback on the primary: refused",
     {.n_targets = 2, .targets = {UP("a"), UP("b")}}, DW_OP_FAILBACK, -1, NULL,
     "already carries calls"},
    {"manual failback, nothing higher up: refused",
     {.n_targets = 2, .targets = {DOWN("a"), UP("b")}, .active = 1}, DW_OP_FAILBACK, -1, NULL,
     "no higher-priority target is up"},
};

static void render_steps(const struct dw_plan *p, char *buf, size_t len)
{
    static const char letter[DW_ACT_COUNT] = {'A', 'V', 'D'};
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < p->n_steps && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%c%d", i ? " " : "",
                                 letter[p->steps[i].action], p->steps[i].target);
}

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        struct dw_plan p;
        char steps[128];

        print_message("%s\n", r->name);
        dw_plan(&r->s, &p);
        assert_int_equal(p.what, r->want.what);
        render_steps(&p, steps, sizeof steps);
        if (r->want.what != DW_PLAN_OPERATION) {
            assert_int_equal(p.n_steps, 0);
            continue;
        }
        assert_int_equal(p.kind, r->want.kind);
        assert_int_equal(p.from, r->want.from);
        assert_int_equal(p.to, r->want.to);
        assert_string_equal(p.reason, r->want.reason);
        assert_string_equal(steps, r->want.steps);
    }
}

static void test_manual(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof manual_rows / sizeof manual_rows[0]; i++) {
        const struct manual_row *r = &manual_rows[i];
        struct dw_plan p;
        char steps[128], why[160] = "";
        int rc;

        print_message("%s\n", r->name);
        rc = dw_plan_manual(&r->s, r->kind, r->to, &p, why, sizeof why);
        if (r->steps == NULL) {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(why, r->why));
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(p.kind, r->kind);
        render_steps(&p, steps, sizeof steps);
        assert_string_equal(steps, r->steps);
    }
}

/* Pure: the same state gives the same plan, and the state is not touched. */
static void test_pure(void **state)
{
    struct dw_plan_state s = {.n_targets = 3, .targets = {DOWN("a"), PASSED("b"), CLOUD}};
    struct dw_plan_state copy = s;
    struct dw_plan p1, p2;

    (void)state;
    dw_plan(&s, &p1);
    dw_plan(&s, &p2);
    assert_memory_equal(&s, &copy, sizeof s);
    assert_memory_equal(&p1, &p2, sizeof p1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_manual),
        cmocka_unit_test(test_pure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
