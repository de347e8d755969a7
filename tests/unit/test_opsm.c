/* The operation state machine table: every allowed move, and that every other move is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "drwatch/opsm.h"

struct op_move {
    enum dw_op_kind kind;
    enum dw_op_status from, to;
};

/* The whole list of allowed operation moves; anything else is forbidden. */
static const struct op_move op_allowed[] = {
    {DW_OP_FAILOVER, DW_OP_RUNNING, DW_OP_DONE},
    {DW_OP_FAILOVER, DW_OP_RUNNING, DW_OP_FAILED},
    {DW_OP_FAILOVER, DW_OP_RUNNING, DW_OP_ABORTED},
    {DW_OP_ROLLBACK, DW_OP_RUNNING, DW_OP_DONE},
    {DW_OP_ROLLBACK, DW_OP_RUNNING, DW_OP_FAILED},
    {DW_OP_ROLLBACK, DW_OP_RUNNING, DW_OP_ABORTED},
    {DW_OP_CLEANUP, DW_OP_RUNNING, DW_OP_DONE},
    {DW_OP_CLEANUP, DW_OP_RUNNING, DW_OP_FAILED},
    {DW_OP_CLEANUP, DW_OP_RUNNING, DW_OP_ABORTED},
    {DW_OP_FAILBACK, DW_OP_RUNNING, DW_OP_DONE},
    {DW_OP_FAILBACK, DW_OP_RUNNING, DW_OP_FAILED},
    {DW_OP_FAILBACK, DW_OP_RUNNING, DW_OP_ABORTED},
    {DW_OP_SWITCHOVER, DW_OP_RUNNING, DW_OP_DONE},
    {DW_OP_SWITCHOVER, DW_OP_RUNNING, DW_OP_FAILED},
    {DW_OP_SWITCHOVER, DW_OP_RUNNING, DW_OP_ABORTED},
};

static bool listed(enum dw_op_kind k, enum dw_op_status from, enum dw_op_status to)
{
    for (size_t i = 0; i < sizeof op_allowed / sizeof op_allowed[0]; i++) {
        if (op_allowed[i].kind == k && op_allowed[i].from == from && op_allowed[i].to == to)
            return true;
    }
    return false;
}

static void test_op_allowed_moves(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof op_allowed / sizeof op_allowed[0]; i++)
        assert_true(dw_op_move_ok(op_allowed[i].kind, op_allowed[i].from, op_allowed[i].to));
}

static void test_op_every_other_move_is_forbidden(void **state)
{
    int forbidden = 0;

    (void)state;
    for (int k = 0; k < DW_OP_KIND_COUNT; k++) {
        for (int from = 0; from < DW_OP_STATUS_COUNT; from++) {
            for (int to = 0; to < DW_OP_STATUS_COUNT; to++) {
                if (listed(k, from, to))
                    continue;
                assert_false(dw_op_move_ok(k, from, to));
                forbidden++;
            }
        }
    }
    assert_int_equal(forbidden, DW_OP_KIND_COUNT * DW_OP_STATUS_COUNT * DW_OP_STATUS_COUNT -
                                    (int)(sizeof op_allowed / sizeof op_allowed[0]));
}

static void test_op_forbidden_samples(void **state)
{
    (void)state;
    /* final states stay final: a late or retried entry cannot re-finish or reopen */
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_DONE, DW_OP_FAILED));
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_FAILED, DW_OP_DONE));
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_ABORTED, DW_OP_RUNNING));
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_DONE, DW_OP_DONE));
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_RUNNING, DW_OP_RUNNING));
    /* out of range is refused, not read past the table */
    assert_false(dw_op_move_ok(DW_OP_KIND_COUNT, DW_OP_RUNNING, DW_OP_DONE));
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_STATUS_COUNT, DW_OP_DONE));
    assert_false(dw_op_move_ok(DW_OP_FAILOVER, DW_OP_RUNNING, DW_OP_STATUS_COUNT));
}

static void test_step_moves(void **state)
{
    static const enum dw_step_status all[] = {DW_STEP_PENDING, DW_STEP_STARTED, DW_STEP_DONE,
                                              DW_STEP_FAILED};

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        for (size_t j = 0; j < 4; j++) {
            bool want = (all[i] == DW_STEP_PENDING && all[j] == DW_STEP_STARTED) ||
                        (all[i] == DW_STEP_STARTED &&
                         (all[j] == DW_STEP_DONE || all[j] == DW_STEP_FAILED));

            assert_int_equal(dw_step_move_ok(all[i], all[j]), want);
        }
    }
    /* a step is never done without having started, and never run twice */
    assert_false(dw_step_move_ok(DW_STEP_PENDING, DW_STEP_DONE));
    assert_false(dw_step_move_ok(DW_STEP_DONE, DW_STEP_STARTED));
    assert_false(dw_step_move_ok(DW_STEP_FAILED, DW_STEP_STARTED));
}

static void test_names_round_trip(void **state)
{
    enum dw_op_kind k;
    enum dw_op_status s;
    enum dw_step_action a;

    (void)state;
    for (int i = 0; i < DW_OP_KIND_COUNT; i++) {
        assert_int_equal(dw_op_kind_parse(dw_op_kind_name(i), &k), 0);
        assert_int_equal(k, i);
    }
    for (int i = 0; i < DW_OP_STATUS_COUNT; i++) {
        assert_int_equal(dw_op_status_parse(dw_op_status_name(i), &s), 0);
        assert_int_equal(s, i);
    }
    for (int i = 0; i < DW_ACT_COUNT; i++) {
        assert_int_equal(dw_step_action_parse(dw_step_action_name(i), &a), 0);
        assert_int_equal(a, i);
    }
    /* the database's text, exactly */
    assert_string_equal(dw_op_status_name(DW_OP_ABORTED), "aborted");
    assert_string_equal(dw_op_kind_name(DW_OP_ROLLBACK), "rollback");
    assert_string_equal(dw_step_action_name(DW_ACT_DEACTIVATE), "deactivate");
    assert_int_equal(dw_op_status_parse("planned", &s), -1);
    assert_int_equal(dw_op_kind_parse(NULL, &k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_allowed_moves),
        cmocka_unit_test(test_op_every_other_move_is_forbidden),
        cmocka_unit_test(test_op_forbidden_samples),
        cmocka_unit_test(test_step_moves),
        cmocka_unit_test(test_names_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
