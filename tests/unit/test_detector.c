/* Detector thresholds and the site "any" rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "drwatch/detector.h"

static void feed_n(struct dw_detector *d, bool ok, int n)
{
    for (int i = 0; i < n; i++)
        dw_detector_feed(d, ok);
}

static void test_initial_unknown(void **state)
{
    struct dw_detector d;

    (void)state;
    dw_detector_init(&d, 3, 2);
    assert_int_equal(d.state, DW_UNKNOWN);
    assert_false(dw_detector_feed(&d, false));
    assert_false(dw_detector_feed(&d, false));
    assert_int_equal(d.state, DW_UNKNOWN);
    assert_true(dw_detector_feed(&d, false));
    assert_int_equal(d.state, DW_DOWN);
}

static void test_unknown_to_up(void **state)
{
    struct dw_detector d;

    (void)state;
    dw_detector_init(&d, 3, 2);
    assert_false(dw_detector_feed(&d, true));
    assert_int_equal(d.state, DW_UNKNOWN);
    assert_true(dw_detector_feed(&d, true));
    assert_int_equal(d.state, DW_UP);
    assert_false(dw_detector_feed(&d, true));
}

static void test_down_threshold(void **state)
{
    struct dw_detector d;

    (void)state;
    dw_detector_init(&d, 3, 2);
    feed_n(&d, true, 2);
    assert_int_equal(d.state, DW_UP);
    assert_false(dw_detector_feed(&d, false));
    assert_false(dw_detector_feed(&d, false));
    assert_int_equal(d.state, DW_UP);
    assert_true(dw_detector_feed(&d, false));
    assert_int_equal(d.state, DW_DOWN);
    assert_false(dw_detector_feed(&d, false));
    assert_int_equal(d.probes, 6);
    assert_int_equal(d.failures, 4);
}

static void test_recover_threshold(void **state)
{
    struct dw_detector d;

    (void)state;
    dw_detector_init(&d, 3, 2);
    feed_n(&d, false, 3);
    assert_int_equal(d.state, DW_DOWN);
    assert_false(dw_detector_feed(&d, true));
    assert_int_equal(d.state, DW_DOWN);
    assert_true(dw_detector_feed(&d, true));
    assert_int_equal(d.state, DW_UP);
}

static void test_interrupted_failures_stay_up(void **state)
{
    struct dw_detector d;
    bool seq[] = {false, false, true, false, false};

    (void)state;
    dw_detector_init(&d, 3, 2);
    feed_n(&d, true, 2);
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++)
        assert_false(dw_detector_feed(&d, seq[i]));
    assert_int_equal(d.state, DW_UP);
    assert_int_equal(d.consecutive_fail, 2);
}

static void test_interrupted_successes_stay_down(void **state)
{
    struct dw_detector d;

    (void)state;
    dw_detector_init(&d, 2, 3);
    feed_n(&d, false, 2);
    assert_int_equal(d.state, DW_DOWN);
    feed_n(&d, true, 2);
    dw_detector_feed(&d, false);
    feed_n(&d, true, 2);
    assert_int_equal(d.state, DW_DOWN);
    assert_true(dw_detector_feed(&d, true));
    assert_int_equal(d.state, DW_UP);
}

static void test_threshold_one(void **state)
{
    struct dw_detector d;

    (void)state;
    dw_detector_init(&d, 1, 1);
    assert_true(dw_detector_feed(&d, false));
    assert_int_equal(d.state, DW_DOWN);
    assert_true(dw_detector_feed(&d, true));
    assert_int_equal(d.state, DW_UP);
}

static void test_site_rules(void **state)
{
    const enum dw_health U = DW_UP, D = DW_DOWN, X = DW_UNKNOWN;
    enum dw_health one_down[] = {U, D, U}, all_down[] = {D, D, D}, all_up[] = {U, U, U};
    enum dw_health mixed[] = {U, D, X}, two_down[] = {U, D, D};

    (void)state;
    /* any: an HA pair stays up while one Edge is */
    assert_int_equal(dw_site_verdict(one_down, 3, DW_RULE_ANY, 0), DW_UP);
    assert_int_equal(dw_site_verdict(all_down, 3, DW_RULE_ANY, 0), DW_DOWN);
    /* all: one Edge down takes the site down; unknown Edges keep it undecided */
    assert_int_equal(dw_site_verdict(one_down, 3, DW_RULE_ALL, 0), DW_DOWN);
    assert_int_equal(dw_site_verdict(all_up, 3, DW_RULE_ALL, 0), DW_UP);
    enum dw_health up_unknown[] = {U, X, U};
    assert_int_equal(dw_site_verdict(up_unknown, 3, DW_RULE_ALL, 0), DW_UNKNOWN);
    /* at least 2 of 3 */
    assert_int_equal(dw_site_verdict(one_down, 3, DW_RULE_AT_LEAST, 2), DW_UP);
    assert_int_equal(dw_site_verdict(two_down, 3, DW_RULE_AT_LEAST, 2), DW_DOWN);
    assert_int_equal(dw_site_verdict(mixed, 3, DW_RULE_AT_LEAST, 2), DW_UNKNOWN);
    assert_int_equal(dw_site_verdict(mixed, 3, DW_RULE_AT_LEAST, 1), DW_UP);
    /* k beyond n behaves as all; no Edges is unknown */
    assert_int_equal(dw_site_verdict(one_down, 3, DW_RULE_AT_LEAST, 7), DW_DOWN);
    assert_int_equal(dw_site_verdict(all_up, 0, DW_RULE_ANY, 0), DW_UNKNOWN);
}

static void test_site_any_rule(void **state)
{
    enum dw_health up_down[] = {DW_UP, DW_DOWN};
    enum dw_health down_down[] = {DW_DOWN, DW_DOWN};
    enum dw_health unknown_down[] = {DW_UNKNOWN, DW_DOWN};
    enum dw_health unknown_up[] = {DW_UNKNOWN, DW_UP};
    enum dw_health one_down[] = {DW_DOWN};
    enum dw_health one_unknown[] = {DW_UNKNOWN};

    (void)state;
    assert_int_equal(dw_site_local_verdict(up_down, 2), DW_UP);
    assert_int_equal(dw_site_local_verdict(down_down, 2), DW_DOWN);
    assert_int_equal(dw_site_local_verdict(unknown_down, 2), DW_UNKNOWN);
    assert_int_equal(dw_site_local_verdict(unknown_up, 2), DW_UP);
    assert_int_equal(dw_site_local_verdict(one_down, 1), DW_DOWN);
    assert_int_equal(dw_site_local_verdict(one_unknown, 1), DW_UNKNOWN);
    assert_int_equal(dw_site_local_verdict(NULL, 0), DW_UNKNOWN);
    assert_int_equal(dw_site_local_verdict(up_down, 0), DW_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initial_unknown),
        cmocka_unit_test(test_unknown_to_up),
        cmocka_unit_test(test_down_threshold),
        cmocka_unit_test(test_recover_threshold),
        cmocka_unit_test(test_interrupted_failures_stay_up),
        cmocka_unit_test(test_interrupted_successes_stay_down),
        cmocka_unit_test(test_threshold_one),
        cmocka_unit_test(test_site_any_rule),
        cmocka_unit_test(test_site_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
