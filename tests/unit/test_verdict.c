/* Quorum verdict: strict majority of fresh, non-tilted voters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "drwatch/verdict.h"

#define TTL 15000
#define NOW 1000000

static struct dw_observation obs(enum dw_health h, int64_t refreshed)
{
    struct dw_observation o = {.present = true, .state = h, .refreshed_ms = refreshed};

    return o;
}

static const struct dw_observation absent = {.present = false};

static void test_majority_down(void **state)
{
    struct dw_observation o[3] = {obs(DW_DOWN, NOW), obs(DW_DOWN, NOW - 1000), obs(DW_UP, NOW)};

    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_DOWN);
    assert_int_equal(dw_quorum_verdict(DW_UNKNOWN, o, 3, NOW, TTL), DW_DOWN);
}

static void test_majority_up(void **state)
{
    struct dw_observation o[3] = {obs(DW_UP, NOW), obs(DW_UP, NOW), obs(DW_DOWN, NOW)};

    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UP);
    assert_int_equal(dw_quorum_verdict(DW_UNKNOWN, o, 3, NOW, TTL), DW_UP);
}

static void test_single_down_is_not_enough(void **state)
{
    struct dw_observation o[3] = {obs(DW_DOWN, NOW), obs(DW_UNKNOWN, NOW), obs(DW_UNKNOWN, NOW)};

    (void)state;
    /* one fresh vote of three: no majority vouches for the site at all */
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UNKNOWN);
    o[1] = obs(DW_UP, NOW);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UP);
    o[1] = absent;
    o[2] = absent;
    assert_int_equal(dw_quorum_verdict(DW_UNKNOWN, o, 3, NOW, TTL), DW_UNKNOWN);
}

static void test_tie_keeps_current(void **state)
{
    struct dw_observation o[4] = {obs(DW_DOWN, NOW), obs(DW_DOWN, NOW), obs(DW_UP, NOW),
                                  obs(DW_UP, NOW)};

    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 4, NOW, TTL), DW_UP);
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 4, NOW, TTL), DW_DOWN);
    assert_int_equal(dw_quorum_verdict(DW_UNKNOWN, o, 4, NOW, TTL), DW_UNKNOWN);
}

static void test_stale_down_cannot_tip(void **state)
{
    /* two watchdogs said down long ago and went silent: they are no longer votes */
    struct dw_observation o[3] = {obs(DW_DOWN, NOW - TTL - 1), obs(DW_DOWN, NOW - TTL - 1),
                                  obs(DW_UP, NOW)};

    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UNKNOWN);
    o[2] = obs(DW_DOWN, NOW);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UNKNOWN);
    /* exactly at the ttl edge still counts */
    o[0] = obs(DW_DOWN, NOW - TTL);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_DOWN);
}

static void test_stale_up_cannot_tip(void **state)
{
    struct dw_observation o[3] = {obs(DW_UP, NOW - 2 * TTL), obs(DW_UP, NOW - 2 * TTL),
                                  obs(DW_UP, NOW)};

    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UNKNOWN);
}

static void test_tilted_does_not_count(void **state)
{
    struct dw_observation o[3] = {obs(DW_DOWN, NOW), obs(DW_DOWN, NOW), obs(DW_UP, NOW)};

    (void)state;
    o[1].tilt = true;
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UP);
    o[1].state = DW_UP;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_DOWN);
    o[1].tilt = false;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UP);
}

static void test_future_refresh_lives_only_its_ttl(void **state)
{
    struct dw_observation o = obs(DW_DOWN, NOW + TTL);
    struct dw_observation v[3] = {obs(DW_DOWN, NOW + 600000), obs(DW_DOWN, NOW + 600000),
                                  obs(DW_UP, NOW)};

    (void)state;
    /* a leader's clock ahead by a little is tolerated, by more than the ttl it is not */
    assert_true(dw_observation_fresh(&o, NOW, TTL));
    o.refreshed_ms = NOW + TTL + 1;
    assert_false(dw_observation_fresh(&o, NOW, TTL));
    o.refreshed_ms = INT64_MAX;
    assert_false(dw_observation_fresh(&o, INT64_MIN, TTL));
    assert_false(dw_observation_fresh(&absent, NOW, TTL));
    /* two refreshes stamped ten minutes ahead are no votes */
    assert_int_equal(dw_quorum_verdict(DW_UP, v, 3, NOW, TTL), DW_UNKNOWN);
    v[1] = obs(DW_DOWN, NOW + 1);
    v[2] = obs(DW_DOWN, NOW);
    assert_int_equal(dw_quorum_verdict(DW_UP, v, 3, NOW, TTL), DW_DOWN);
}

/* After a full-cluster restart every observation is old: the last verdict is no longer known. */
static void test_no_fresh_majority_is_unknown(void **state)
{
    struct dw_observation o[3] = {obs(DW_DOWN, NOW - 3600000), obs(DW_DOWN, NOW - 3600000),
                                  obs(DW_DOWN, NOW - 3600000)};

    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UNKNOWN);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UNKNOWN);
    /* one node back is not enough */
    o[0] = obs(DW_UP, NOW);
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UNKNOWN);
    /* a fresh UNKNOWN (detector not settled yet) vouches for nothing */
    o[1] = obs(DW_UNKNOWN, NOW);
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UNKNOWN);
    /* a fresh majority that disagrees keeps the verdict */
    o[1] = obs(DW_DOWN, NOW);
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_DOWN);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 3, NOW, TTL), DW_UP);
    /* a tilted voter does not vouch either */
    o[1].tilt = true;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 3, NOW, TTL), DW_UNKNOWN);
}

static void test_five_voters(void **state)
{
    struct dw_observation o[5] = {obs(DW_DOWN, NOW), obs(DW_DOWN, NOW), obs(DW_UP, NOW),
                                  obs(DW_UP, NOW), absent};

    (void)state;
    /* 2 of 5 is no majority either way */
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 5, NOW, TTL), DW_UP);
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 5, NOW, TTL), DW_DOWN);
    o[4] = obs(DW_DOWN, NOW);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 5, NOW, TTL), DW_DOWN);
    o[4].tilt = true;
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 5, NOW, TTL), DW_UP);
    o[4] = obs(DW_DOWN, NOW - TTL - 1);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 5, NOW, TTL), DW_UP);
    o[2] = obs(DW_DOWN, NOW);
    assert_int_equal(dw_quorum_verdict(DW_UP, o, 5, NOW, TTL), DW_DOWN);
    /* 3 fresh up of 5 */
    o[0] = obs(DW_UP, NOW);
    o[1] = obs(DW_UP, NOW);
    o[2] = obs(DW_UP, NOW);
    assert_int_equal(dw_quorum_verdict(DW_DOWN, o, 5, NOW, TTL), DW_UP);
}

static void test_no_voters(void **state)
{
    (void)state;
    assert_int_equal(dw_quorum_verdict(DW_DOWN, NULL, 0, NOW, TTL), DW_DOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_majority_down),
        cmocka_unit_test(test_majority_up),
        cmocka_unit_test(test_single_down_is_not_enough),
        cmocka_unit_test(test_tie_keeps_current),
        cmocka_unit_test(test_stale_down_cannot_tip),
        cmocka_unit_test(test_stale_up_cannot_tip),
        cmocka_unit_test(test_tilted_does_not_count),
        cmocka_unit_test(test_future_refresh_lives_only_its_ttl),
        cmocka_unit_test(test_no_fresh_majority_is_unknown),
        cmocka_unit_test(test_five_voters),
        cmocka_unit_test(test_no_voters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
