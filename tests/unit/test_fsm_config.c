/* The replicated config: config entries, what the FSM decides by, and the split of a file into
 * its committed cluster part. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "drwatch/entry.h"
#include "drwatch/fsm.h"

#define T0 1700000000000LL

/* A full node file: the node-local keys must never reach the committed document. */
static const char full_doc[] =
    "{\"node\":{\"id\":1,\"data_dir\":\"/var/lib/drwatch\"},"
    "\"cluster\":{\"peer_secret_dir\":\"/etc/drwatch/peer.d\",\"observation_ttl_ms\":15000,"
    "\"members\":[{\"id\":1,\"raft_address\":\"127.0.0.1:7001\",\"peer_address\":\"127.0.0.1:8001\"},"
    "{\"id\":2,\"raft_address\":\"127.0.0.1:7002\",\"peer_address\":\"127.0.0.1:8002\"},"
    "{\"id\":3,\"raft_address\":\"127.0.0.1:7003\",\"peer_address\":\"127.0.0.1:8003\"%s}]},"
    "\"genesys\":{\"region\":\"eu-west-1\",\"client_id\":\"abc\","
    "\"client_secret_file\":\"/etc/drwatch/genesys.secret\",\"verify_timeout_ms\":5000},"
    "\"sites\":[{\"id\":\"site-a\",\"edges\":[{\"id\":\"a1\",\"health_url\":\"http://127.0.0.1:9001/\"}]},"
    "{\"id\":\"site-b\",\"edges\":[{\"id\":\"b1\",\"health_url\":\"http://127.0.0.1:9002/\"}]}],"
    "\"failover_groups\":[{\"id\":\"carrier-1\",\"targets\":[%s]}]}";

static const char targets_abc[] =
    "{\"id\":\"premise-a\",\"site\":\"site-a\",\"trunk_base_ids\":[\"tbA\"]},"
    "{\"id\":\"premise-b\",\"site\":\"site-b\",\"trunk_base_ids\":[\"tbB\"]},"
    "{\"id\":\"cloud\",\"trunk_base_ids\":[\"tbC\"]}";

static cJSON *cluster_doc(const char *member3_extra, const char *targets)
{
    char text[4096];
    snprintf(text, sizeof text, full_doc, member3_extra, targets);
    cJSON *full = cJSON_Parse(text);
    assert_non_null(full);
    cJSON *doc = dw_config_cluster_doc(full);
    assert_non_null(doc);
    cJSON_Delete(full);
    return doc;
}

static int apply(struct dw_fsm *f, char *entry, int64_t ts)
{
    char err[256];
    assert_non_null(entry);
    char *st = dw_entry_stamp(entry, strlen(entry), ts, 1, err, sizeof err);
    if (st == NULL)
        fail_msg("stamp: %s", err);
    int rc = dw_fsm_apply(f, st, strlen(st));
    free(st);
    free(entry);
    return rc;
}

static int apply_config(struct dw_fsm *f, const cJSON *doc, int64_t base, int64_t ts)
{
    return apply(f, dw_entry_config(doc, base, "alice", "apply"), ts);
}

static int observe(struct dw_fsm *f, uint64_t node, enum dw_health a, enum dw_health b, int64_t ts)
{
    const enum dw_health st[2] = {a, b};
    return apply(f, dw_entry_observe(dw_fsm_config(f), node, false, st), ts);
}

static bool history_has(struct dw_fsm *f, const char *needle)
{
    cJSON *h = dw_fsm_history_json(f, 100);
    char *txt = cJSON_PrintUnformatted(h);
    bool found = txt && strstr(txt, needle);
    if (!found)
        print_message("history lacks \"%s\": %s\n", needle, txt ? txt : "?");
    free(txt);
    cJSON_Delete(h);
    return found;
}

static struct dw_fsm *open_committed(const cJSON *doc)
{
    struct dw_fsm *f;
    char err[256];
    assert_int_equal(dw_fsm_open(&f, NULL, err, sizeof err), 0);
    assert_int_equal(apply_config(f, doc, 0, T0), DW_FSM_APPLIED);
    return f;
}

static void test_no_config_until_committed(void **state)
{
    (void)state;
    struct dw_fsm *f;
    char err[256];
    cJSON *doc = cluster_doc("", targets_abc);

    assert_int_equal(dw_fsm_open(&f, NULL, err, sizeof err), 0);
    assert_int_equal(dw_fsm_config_version(f), 0);
    assert_int_equal(dw_fsm_config(f)->n_sites, 0);
    assert_null(dw_fsm_config_doc(f));
    /* before the first config nobody is a member, and that refuses nothing */
    assert_int_equal(observe(f, 1, DW_DOWN, DW_UP, T0), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_rejected(f), 0);

    assert_int_equal(apply_config(f, doc, 0, T0 + 1), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_config_version(f), 1);
    const struct dw_config *cfg = dw_fsm_config(f);
    assert_int_equal(cfg->version, 1);
    assert_int_equal(cfg->n_sites, 2);
    assert_int_equal(cfg->n_members, 3);
    assert_int_equal(cfg->genesys.verify_timeout_ms, 5000);
    char *stored = dw_fsm_config_doc(f), *want = cJSON_PrintUnformatted(doc);
    assert_string_equal(stored, want);
    free(stored);
    free(want);
    assert_true(history_has(f, "config version 1 (apply, by alice)"));

    /* two voters of three call site-a down: the committed config decides, a failover follows */
    assert_int_equal(observe(f, 1, DW_DOWN, DW_UP, T0 + 2), DW_FSM_APPLIED);
    assert_int_equal(observe(f, 2, DW_DOWN, DW_UP, T0 + 3), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(f, 0), DW_DOWN);
    struct dw_step_ref r[2];
    assert_int_equal(dw_fsm_next_steps(f, r, 2), 1);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

static void test_observation_of_other_version_dropped(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);
    struct dw_config old = *dw_fsm_config(f);

    old.version = 0; /* a node still probing by its file */
    const enum dw_health st[2] = {DW_DOWN, DW_DOWN};
    assert_int_equal(apply(f, dw_entry_observe(&old, 1, false, st), T0 + 1), DW_FSM_APPLIED);
    assert_int_equal(apply(f, dw_entry_observe(&old, 2, false, st), T0 + 2), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(f, 0), DW_UNKNOWN);
    char *dump = dw_fsm_dump(f);
    assert_null(strstr(dump, "observations|"));
    free(dump);
    assert_int_equal(dw_fsm_rejected(f), 0);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

static void test_concurrent_change_refused(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);

    /* a second bootstrap (another leader's file) replaces version 0, which is gone */
    assert_int_equal(apply_config(f, doc, 0, T0 + 1), DW_FSM_REJECTED);
    assert_true(history_has(f, "replaces version 0, but version 1 is committed"));
    assert_int_equal(apply_config(f, doc, 1, T0 + 2), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_config_version(f), 2);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

static void test_newer_format_stops_the_node(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);
    char *e = dw_entry_config(doc, 1, "bob", "apply");
    cJSON *j = cJSON_Parse(e);
    free(e);
    cJSON_ReplaceItemInObject(j, "format", cJSON_CreateNumber(DW_CONFIG_FORMAT + 1));
    char *before = dw_fsm_dump(f);

    assert_int_equal(apply(f, cJSON_PrintUnformatted(j), T0 + 1), DW_FSM_FATAL);
    assert_non_null(strstr(dw_fsm_last_error(f), "upgrade this node"));
    char *after = dw_fsm_dump(f);
    assert_string_equal(before, after);
    assert_int_equal(dw_fsm_config_version(f), 1);
    free(before);
    free(after);
    cJSON_Delete(j);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

static void test_invalid_document_refused_with_path(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);
    cJSON *bad = cJSON_Duplicate(doc, true);

    cJSON *site = cJSON_GetArrayItem(cJSON_GetObjectItem(bad, "sites"), 1);
    cJSON_DeleteItemFromObject(site, "edges");
    assert_int_equal(apply_config(f, bad, 1, T0 + 1), DW_FSM_REJECTED);
    assert_true(history_has(f, "sites[1].edges: missing"));
    cJSON_Delete(bad);

    /* node-local settings have no place in the committed document */
    bad = cJSON_Duplicate(doc, true);
    cJSON_AddItemToObject(bad, "node", cJSON_Parse("{\"id\":1,\"data_dir\":\"/x\"}"));
    assert_int_equal(apply_config(f, bad, 1, T0 + 2), DW_FSM_REJECTED);
    assert_true(history_has(f, "node: a node-local setting"));
    assert_int_equal(dw_fsm_config_version(f), 1);
    cJSON_Delete(bad);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

static void test_file_order_does_not_matter(void **state)
{
    (void)state;
    char text[4096];
    cJSON *a = cluster_doc("", targets_abc);

    /* the same file with sites, members and keys listed the other way round */
    snprintf(text, sizeof text,
             "{\"failover_groups\":[{\"targets\":[%s],\"id\":\"carrier-1\"}],"
             "\"sites\":[{\"edges\":[{\"health_url\":\"http://127.0.0.1:9002/\",\"id\":\"b1\"}],"
             "\"id\":\"site-b\"},{\"id\":\"site-a\",\"edges\":[{\"id\":\"a1\","
             "\"health_url\":\"http://127.0.0.1:9001/\"}]}],"
             "\"genesys\":{\"verify_timeout_ms\":5000,\"client_id\":\"other-node-client\"},"
             "\"cluster\":{\"members\":[{\"id\":3,\"raft_address\":\"127.0.0.1:7003\","
             "\"peer_address\":\"127.0.0.1:8003\"},{\"id\":2,\"raft_address\":\"127.0.0.1:7002\","
             "\"peer_address\":\"127.0.0.1:8002\"},{\"id\":1,\"raft_address\":\"127.0.0.1:7001\","
             "\"peer_address\":\"127.0.0.1:8001\"}],\"observation_ttl_ms\":15000,"
             "\"peer_secret_dir\":\"/elsewhere\"},\"node\":{\"id\":3,\"data_dir\":\"/d\"}}",
             targets_abc);
    cJSON *full = cJSON_Parse(text);
    cJSON *b = dw_config_cluster_doc(full);
    char *ta = cJSON_PrintUnformatted(a), *tb = cJSON_PrintUnformatted(b);

    assert_string_equal(ta, tb);
    /* nothing node-local is left */
    assert_null(strstr(ta, "\"node\""));
    assert_null(strstr(ta, "peer_secret_dir"));
    assert_null(strstr(ta, "client_secret_file"));
    assert_null(strstr(ta, "client_id"));
    assert_null(strstr(ta, "region"));
    /* target order is meaning (priority) and stays */
    assert_true(strstr(ta, "premise-a") < strstr(ta, "premise-b"));
    free(ta);
    free(tb);
    cJSON_Delete(full);
    cJSON_Delete(b);

    /* and the local part comes back from a node's file */
    snprintf(text, sizeof text, full_doc, "", targets_abc);
    full = cJSON_Parse(text);
    cJSON *merged = dw_config_with_local(a, full);
    struct dw_config cfg;
    struct dw_config_errors errs;
    char *tm = cJSON_PrintUnformatted(merged);
    assert_int_equal(dw_config_parse_with(tm, strlen(tm), NULL, &cfg, &errs), 0);
    assert_int_equal(cfg.node_id, 1);
    assert_string_equal(cfg.genesys.client_id, "abc");
    assert_string_equal(cfg.cluster.peer_secret_dir, "/etc/drwatch/peer.d");
    dw_config_free(&cfg);
    free(tm);
    cJSON_Delete(merged);
    cJSON_Delete(full);
    cJSON_Delete(a);
}

static void test_change_rules(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);

    /* reordering the targets: the active one (premise-a) follows its id */
    cJSON *reordered = cluster_doc("",
        "{\"id\":\"premise-b\",\"site\":\"site-b\",\"trunk_base_ids\":[\"tbB\"]},"
        "{\"id\":\"premise-a\",\"site\":\"site-a\",\"trunk_base_ids\":[\"tbA\"]},"
        "{\"id\":\"cloud\",\"trunk_base_ids\":[\"tbC\"]}");
    assert_int_equal(dw_fsm_active_target(f, 0), 0);
    assert_int_equal(apply_config(f, reordered, 1, T0 + 1), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_active_target(f, 0), 1);

    /* the target carrying the calls cannot be removed */
    cJSON *without_a = cluster_doc("",
        "{\"id\":\"premise-b\",\"site\":\"site-b\",\"trunk_base_ids\":[\"tbB\"]},"
        "{\"id\":\"cloud\",\"trunk_base_ids\":[\"tbC\"]}");
    assert_int_equal(apply_config(f, without_a, 2, T0 + 2), DW_FSM_REJECTED);
    assert_true(history_has(f, "failover_groups[carrier-1].targets: premise-a carries"));

    /* while an operation runs, its group does not change */
    assert_int_equal(observe(f, 1, DW_DOWN, DW_UP, T0 + 3), DW_FSM_APPLIED);
    assert_int_equal(observe(f, 2, DW_DOWN, DW_UP, T0 + 4), DW_FSM_APPLIED);
    struct dw_step_ref r[2];
    assert_int_equal(dw_fsm_next_steps(f, r, 2), 1);
    assert_int_equal(apply_config(f, doc, 2, T0 + 5), DW_FSM_REJECTED);
    assert_true(history_has(f, "failover_groups[carrier-1]: operation 1 is running"));
    char why[256];
    struct dw_config next;
    struct dw_config_errors errs;
    char *t = cJSON_PrintUnformatted(doc);
    assert_int_equal(dw_config_parse_cluster(t, strlen(t), &next, &errs), 0);
    assert_int_equal(dw_fsm_config_check(f, &next, why, sizeof why), 1);
    assert_non_null(strstr(why, "operation 1 is running"));
    dw_config_free(&next);
    free(t);
    /* other settings still change */
    cJSON *ttl = cJSON_Duplicate(reordered, true);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(ttl, "cluster"), "observation_ttl_ms",
                              cJSON_CreateNumber(20000));
    assert_int_equal(apply_config(f, ttl, 2, T0 + 6), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_config(f)->cluster.observation_ttl_ms, 20000);
    cJSON_Delete(ttl);
    cJSON_Delete(without_a);
    cJSON_Delete(reordered);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

static void test_snapshot_carries_config(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc), *g;
    char err[256];
    void *buf;
    size_t len;

    assert_int_equal(observe(f, 1, DW_DOWN, DW_UP, T0 + 1), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_snapshot(f, &buf, &len), 0);
    assert_int_equal(dw_fsm_open(&g, NULL, err, sizeof err), 0);
    assert_int_equal(dw_fsm_restore(g, buf, len), 0);
    sqlite3_free(buf);
    assert_int_equal(dw_fsm_config_version(g), 1);
    assert_int_equal(dw_fsm_config(g)->n_sites, 2);
    char *a = dw_fsm_dump(f), *b = dw_fsm_dump(g);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* and both go on alike */
    assert_int_equal(observe(f, 2, DW_DOWN, DW_UP, T0 + 2), DW_FSM_APPLIED);
    assert_int_equal(observe(g, 2, DW_DOWN, DW_UP, T0 + 2), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(g, 0), DW_DOWN);
    dw_fsm_close(f);
    dw_fsm_close(g);
    cJSON_Delete(doc);
}

/* Applies a config, observations that fail site-a over, a step, garbage and an entry of a newer
 * format (fatal, with an error), from T0 on. */
static void same_dump(struct dw_fsm *f, struct dw_fsm *g)
{
    char *a = dw_fsm_dump(f), *b = dw_fsm_dump(g);

    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void busy_history(struct dw_fsm *f, const cJSON *doc)
{
    static const char newer[] = "{\"v\":99,\"type\":\"leader\",\"node\":1,\"ts\":1,\"by\":1}";

    assert_int_equal(apply_config(f, doc, dw_fsm_config_version(f), T0 + 1), DW_FSM_APPLIED);
    assert_int_equal(observe(f, 1, DW_DOWN, DW_UP, T0 + 2), DW_FSM_APPLIED);
    assert_int_equal(observe(f, 2, DW_DOWN, DW_UP, T0 + 3), DW_FSM_APPLIED);
    assert_int_equal(apply(f, dw_entry_step(1, 0, DW_STEP_STARTED, NULL), T0 + 4), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_apply(f, "{garbage", 8), DW_FSM_REJECTED);
    assert_int_equal(dw_fsm_apply(f, newer, strlen(newer)), DW_FSM_FATAL);
}

/* dw_fsm_rewind (the entry fuzzer's reset) leaves exactly what an open or a restore does. */
static void test_rewind_is_a_fresh_open(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f, *g;
    char err[256];
    void *base, *v1;
    size_t base_len, v1_len;

    assert_int_equal(dw_fsm_open(&f, NULL, err, sizeof err), 0);
    assert_int_equal(dw_fsm_snapshot(f, &base, &base_len), 0);
    for (int round = 0; round < 2; round++) {
        busy_history(f, doc);
        assert_string_not_equal(dw_fsm_last_error(f), "");
        assert_int_equal(dw_fsm_rewind(f, base, base_len), 0);
        assert_int_equal(dw_fsm_open(&g, NULL, err, sizeof err), 0);
        assert_int_equal(dw_fsm_config_version(f), 0);
        assert_int_equal(dw_fsm_config(f)->n_sites, 0);
        assert_int_equal(dw_fsm_applied(f), 0);
        assert_int_equal(dw_fsm_rejected(f), 0);
        assert_int_equal(dw_fsm_last_ts(f), 0);
        assert_string_equal(dw_fsm_last_error(f), "");
        same_dump(f, g);
        /* and both go on alike */
        busy_history(g, doc);
        busy_history(f, doc);
        same_dump(f, g);
        assert_int_equal(dw_fsm_rewind(f, base, base_len), 0);
        dw_fsm_close(g);
    }
    /* to a state with a committed config: that config again, as a restore gives it */
    assert_int_equal(apply_config(f, doc, 0, T0), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_snapshot(f, &v1, &v1_len), 0);
    busy_history(f, doc);
    assert_int_equal(dw_fsm_config_version(f), 2);
    assert_int_equal(dw_fsm_rewind(f, v1, v1_len), 0);
    assert_int_equal(dw_fsm_open(&g, NULL, err, sizeof err), 0);
    assert_int_equal(dw_fsm_restore(g, v1, v1_len), 0);
    assert_int_equal(dw_fsm_config_version(f), 1);
    assert_int_equal(dw_fsm_config(f)->n_sites, 2);
    assert_int_equal(dw_fsm_applied(f), dw_fsm_applied(g));
    busy_history(f, doc);
    busy_history(g, doc);
    same_dump(f, g);
    dw_fsm_close(g);
    /* not a snapshot: refused (the FSM may then only be closed) */
    assert_int_equal(dw_fsm_rewind(f, "garbage", 7), -1);
    dw_fsm_close(f);
    sqlite3_free(base);
    sqlite3_free(v1);
    cJSON_Delete(doc);
}

static void test_non_voter_does_not_count(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc(",\"voter\":false", targets_abc);
    struct dw_fsm *f = open_committed(doc);

    assert_true(dw_fsm_config(f)->members[2].non_voter);
    /* two voters: one of them and the member being added make no majority */
    assert_int_equal(observe(f, 1, DW_DOWN, DW_UP, T0 + 1), DW_FSM_APPLIED);
    assert_int_equal(observe(f, 3, DW_DOWN, DW_UP, T0 + 2), DW_FSM_APPLIED);
    assert_int_not_equal(dw_fsm_site_verdict(f, 0), DW_DOWN);
    assert_int_equal(observe(f, 2, DW_DOWN, DW_UP, T0 + 3), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(f, 0), DW_DOWN);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

/* A config entry this node fails to apply (here: a database error) leaves it on the old config,
 * in memory as in its tables. */
static void test_failed_apply_keeps_old_config(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);
    cJSON *two = cluster_doc("",
        "{\"id\":\"premise-b\",\"site\":\"site-b\",\"trunk_base_ids\":[\"tbB\"]},"
        "{\"id\":\"premise-a\",\"site\":\"site-a\",\"trunk_base_ids\":[\"tbA\"]}");

    assert_int_equal(sqlite3_exec(dw_fsm_db(f), "DROP TABLE history", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(apply_config(f, two, 1, T0 + 1), DW_FSM_FATAL);
    assert_int_equal(dw_fsm_config_version(f), 1);
    assert_int_equal(dw_fsm_config(f)->groups[0].n_targets, 3);
    assert_int_equal(dw_fsm_active_target(f, 0), 0);
    char *stored = dw_fsm_config_doc(f), *want = cJSON_PrintUnformatted(doc);
    assert_string_equal(stored, want);
    free(stored);
    free(want);
    cJSON_Delete(two);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}


/* A member or an Edge the new config drops leaves no rows behind to come back stale-fresh. */
static void test_removed_member_and_edge_rows_go(void **state)
{
    (void)state;
    cJSON *doc = cluster_doc("", targets_abc);
    struct dw_fsm *f = open_committed(doc);

    assert_int_equal(observe(f, 3, DW_UP, DW_UP, T0 + 1), DW_FSM_APPLIED);
    char *dump = dw_fsm_dump(f);
    assert_non_null(strstr(dump, "nodes|id=3|"));
    free(dump);
    cJSON *two = cJSON_Duplicate(doc, true);
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(cJSON_GetObjectItem(two, "cluster"), "members"), 2);
    assert_int_equal(apply_config(f, two, 1, T0 + 2), DW_FSM_APPLIED);
    dump = dw_fsm_dump(f);
    assert_null(strstr(dump, "nodes|id=3|"));
    assert_null(strstr(dump, "observations|node=3|"));
    free(dump);
    cJSON_Delete(two);
    dw_fsm_close(f);
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_config_until_committed),
        cmocka_unit_test(test_observation_of_other_version_dropped),
        cmocka_unit_test(test_concurrent_change_refused),
        cmocka_unit_test(test_newer_format_stops_the_node),
        cmocka_unit_test(test_invalid_document_refused_with_path),
        cmocka_unit_test(test_file_order_does_not_matter),
        cmocka_unit_test(test_change_rules),
        cmocka_unit_test(test_snapshot_carries_config),
        cmocka_unit_test(test_rewind_is_a_fresh_open),
        cmocka_unit_test(test_non_voter_does_not_count),
        cmocka_unit_test(test_failed_apply_keeps_old_config),
        cmocka_unit_test(test_removed_member_and_edge_rows_go),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
