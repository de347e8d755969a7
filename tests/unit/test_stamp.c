/* Leader stamps: the wall clock, bounded by measured monotonic time, never behind the cluster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "drwatch/stamp.h"

#define W0 1700000000000LL /* wall clock at start */
#define M0 5000000ULL      /* monotonic clock at start */
#define MIN 60000

static void test_correct_clock_stamps_wall(void **state)
{
    struct dw_stamp_clock c;
    bool clamped = true;

    (void)state;
    dw_stamp_init(&c, W0, M0);
    assert_int_equal(dw_stamp_next(&c, W0 + 100, M0 + 100, 0, &clamped), W0 + 100);
    assert_false(clamped);
    /* the cluster's time a little ahead of our clock: we carry it on, no step back */
    dw_stamp_applied(&c, W0 + 1500, M0 + 1000);
    assert_int_equal(dw_stamp_next(&c, W0 + 2000, M0 + 2000, W0 + 1500, &clamped), W0 + 2500);
    assert_false(clamped);
    assert_int_equal(dw_stamp_next(&c, W0 + 3000, M0 + 3000, W0 + 1500, &clamped), W0 + 3500);
}

static void test_clock_jump_ahead_is_clamped(void **state)
{
    struct dw_stamp_clock c;
    bool clamped = false;

    (void)state;
    dw_stamp_init(&c, W0, M0);
    dw_stamp_applied(&c, W0 + 4990, M0 + 5000);
    /* the wall clock is stepped ten minutes ahead after 6 s of running */
    assert_int_equal(dw_stamp_next(&c, W0 + 6000 + 10 * MIN, M0 + 6000, W0 + 4990, &clamped),
                     W0 + 6000 + DW_STAMP_SLACK_MS);
    assert_true(clamped);
    /* ahead by less than the slack passes */
    assert_int_equal(dw_stamp_next(&c, W0 + 6000 + DW_STAMP_SLACK_MS, M0 + 6000, W0, &clamped),
                     W0 + 6000 + DW_STAMP_SLACK_MS);
    assert_false(clamped);
}

static void test_restart_after_outage_keeps_wall(void **state)
{
    struct dw_stamp_clock c;
    bool clamped = true;
    const int64_t w = W0 + 60 * MIN;

    (void)state;
    /* started an hour after the last entry, which is replayed at start */
    dw_stamp_init(&c, w, M0);
    dw_stamp_applied(&c, W0, M0 + 200);
    assert_int_equal(dw_stamp_next(&c, w + 1000, M0 + 1000, W0, &clamped), w + 1000);
    assert_false(clamped);
}

static void test_lagging_clock_follows_cluster_time(void **state)
{
    struct dw_stamp_clock c;
    bool clamped = true;
    const int64_t ahead = W0 + 10 * MIN; /* a leader ran ahead and stamped this */

    (void)state;
    dw_stamp_init(&c, W0, M0);
    dw_stamp_applied(&c, ahead, M0 + 1000);
    /* our correct clock is behind the cluster's time: time still runs, from the cluster's */
    assert_int_equal(dw_stamp_next(&c, W0 + 1000, M0 + 1000, ahead, &clamped), ahead);
    assert_int_equal(dw_stamp_next(&c, W0 + 6000, M0 + 6000, ahead, &clamped), ahead + 5000);
    assert_false(clamped);
    /* never below last_ts, even before anything was applied */
    dw_stamp_init(&c, W0, M0);
    assert_int_equal(dw_stamp_next(&c, W0, M0, W0 + 7, &clamped), W0 + 7);
    /* a monotonic clock that seems to run backwards adds nothing */
    dw_stamp_applied(&c, W0 + 10, M0 + 50);
    assert_int_equal(dw_stamp_next(&c, W0, M0, 0, &clamped), W0 + 10);
}

static void test_late_correction_forward_accepted(void **state)
{
    struct dw_stamp_clock c;
    bool clamped = true;

    (void)state;
    /* started with the clock 5 s behind; NTP steps it right; the cluster's time agrees */
    dw_stamp_init(&c, W0 - 5000, M0);
    dw_stamp_applied(&c, W0 + 9900, M0 + 10000);
    assert_int_equal(dw_stamp_next(&c, W0 + 10000, M0 + 10000, W0 + 9900, &clamped), W0 + 10000);
    assert_false(clamped);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_correct_clock_stamps_wall),
        cmocka_unit_test(test_clock_jump_ahead_is_clamped),
        cmocka_unit_test(test_restart_after_outage_keeps_wall),
        cmocka_unit_test(test_lagging_clock_follows_cluster_time),
        cmocka_unit_test(test_late_correction_forward_accepted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
