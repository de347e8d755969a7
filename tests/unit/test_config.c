/* Config parsing and validation: valid documents, defaults, and one test per kind of error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "drwatch/config.h"

static char tmpdir[64];
static struct dw_config cfg; /* large: keep off the stack */
static struct dw_config_errors errs;

static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dwcfg-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    write_file("peer.secret", "peer-shared-secret\n");
    write_file("genesys.secret", "  client secret \t\r\n\n");
    write_file("empty.secret", " \n");
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    const char *names[] = { "peer.secret", "genesys.secret", "empty.secret", "long.secret",
                            "config.json" };
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

/* Reads a fixture from DW_TEST_DATA with every "@DIR@" replaced by the temp dir. */
static char *fixture(const char *name)
{
    char path[512], *raw, *out;
    snprintf(path, sizeof path, "%s/%s", DW_TEST_DATA, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    raw = calloc(1, (size_t)n + 1);
    assert_non_null(raw);
    assert_int_equal(fread(raw, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    out = calloc(1, (size_t)n * 4 + 1);
    assert_non_null(out);
    char *o = out;
    for (const char *p = raw; *p;) {
        if (strncmp(p, "@DIR@", 5) == 0) {
            o += sprintf(o, "%s", tmpdir);
            p += 5;
        } else {
            *o++ = *p++;
        }
    }
    free(raw);
    return out;
}

static cJSON *doc(const char *name)
{
    char *text = fixture(name);
    cJSON *d = cJSON_Parse(text);
    free(text);
    assert_non_null(d);
    return d;
}

/* Sets (or with value NULL deletes) the key at a path like "sites[1].edges[0].health_url";
 * value is JSON text. */
static void set(cJSON *d, const char *path, const char *value)
{
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    char *seg = strtok_r(buf, ".", &save);
    cJSON *node = d;
    for (;;) {
        char *next = strtok_r(NULL, ".", &save);
        char *br = strchr(seg, '[');
        if (br)
            *br = '\0';
        if (!next && !br) {
            cJSON_DeleteItemFromObjectCaseSensitive(node, seg);
            if (value) {
                cJSON *v = cJSON_Parse(value);
                assert_non_null(v);
                cJSON_AddItemToObject(node, seg, v);
            }
            return;
        }
        node = cJSON_GetObjectItemCaseSensitive(node, seg);
        assert_non_null(node);
        while (br) {
            node = cJSON_GetArrayItem(node, atoi(br + 1));
            assert_non_null(node);
            br = strchr(br + 1, '[');
        }
        assert_non_null(next);
        seg = next;
    }
}

static void dump_errors(void)
{
    for (int i = 0; i < errs.n; i++)
        print_message("  error: %s\n", errs.msg[i]);
}

static int parse_text(const char *text)
{
    memset(&errs, 0x5a, sizeof errs);
    return dw_config_parse(text, strlen(text), &cfg, &errs);
}

static int parse_doc(cJSON *d)
{
    char *text = cJSON_Print(d);
    int rc = parse_text(text);
    free(text);
    cJSON_Delete(d);
    return rc;
}

static bool has_error(const char *msg)
{
    for (int i = 0; i < errs.n; i++)
        if (strcmp(errs.msg[i], msg) == 0)
            return true;
    return false;
}

/* The document fails with exactly this one error (no follow-up noise). */
static void expect_only(cJSON *d, const char *msg)
{
    int rc = parse_doc(d);
    if (rc != -1 || errs.n != 1 || strcmp(errs.msg[0], msg) != 0) {
        print_message("expected only: %s\n", msg);
        dump_errors();
        fail();
    }
}

/* ---- valid documents ---- */

static void test_full_config(void **state)
{
    (void)state;
    assert_int_equal(parse_doc(doc("full.json")), 0);
    assert_int_equal(errs.n, 0);
    assert_int_equal(cfg.node_id, 2);
    assert_string_equal(cfg.data_dir, "/var/lib/drwatch");
    assert_string_equal(cfg.admin_socket, "/run/drwatch/admin.sock");
    assert_true(cfg.debug);

    assert_int_equal(cfg.n_members, 3);
    assert_int_equal(cfg.members[0].id, 1);
    assert_string_equal(cfg.members[0].name, "eu-west");
    assert_string_equal(cfg.members[1].raft_address, "10.0.2.10:7001");
    assert_string_equal(cfg.members[1].peer_address, "10.0.2.10:8001");
    assert_string_equal(cfg.members[2].name, "n3");
    assert_int_equal(cfg.cluster.election_timeout_ms, 1500);
    assert_int_equal(cfg.cluster.heartbeat_ms, 150);
    assert_int_equal(cfg.cluster.observation_ttl_ms, 20000);
    assert_int_equal(cfg.cluster.refresh_interval_ms, 4000);
    assert_int_equal(cfg.cluster.snapshot_threshold, 2048);
    assert_int_equal(cfg.cluster.snapshot_trailing, 512);
    char path[128];
    snprintf(path, sizeof path, "%s/peer.secret", tmpdir);
    assert_string_equal(cfg.cluster.peer_secret_file, path);

    assert_string_equal(cfg.genesys.region, "eu-west-1");
    assert_string_equal(cfg.genesys.api_base_url, "https://api.mypurecloud.ie");
    assert_string_equal(cfg.genesys.login_base_url, "https://login.mypurecloud.ie");
    assert_string_equal(cfg.genesys.client_id, "7c4b1f0e-2d6a-4e55-9a61-0d8f3c2b1a90");
    assert_int_equal(cfg.genesys.request_timeout_ms, 8000);
    assert_int_equal(cfg.genesys.verify_timeout_ms, 45000);
    assert_int_equal(cfg.genesys.verify_interval_ms, 1500);

    assert_int_equal(cfg.probe.interval_ms, 2000);
    assert_int_equal(cfg.probe.timeout_ms, 1500);
    assert_int_equal(cfg.probe.fail_threshold, 4);
    assert_int_equal(cfg.probe.recover_threshold, 3);

    assert_int_equal(cfg.n_sites, 2);
    assert_string_equal(cfg.sites[1].id, "site-b");
    assert_int_equal(cfg.sites[0].n_edges, 2);
    assert_string_equal(cfg.sites[0].edges[1].id, "edge-a2");
    assert_string_equal(cfg.sites[0].edges[0].genesys_edge_id,
                        "3f1c9b2e-8a4d-4c1e-9f7a-1b2c3d4e5f60");
    assert_string_equal(cfg.sites[1].edges[0].genesys_edge_id, "");
    assert_string_equal(cfg.sites[1].edges[1].health_url, "http://10.2.0.6:8080/health");

    assert_int_equal(cfg.n_groups, 1);
    const struct dw_group *g = &cfg.groups[0];
    assert_string_equal(g->id, "carrier-1");
    assert_int_equal(g->n_targets, 3);
    assert_string_equal(g->targets[0].id, "premise-a");
    assert_int_equal(g->targets[0].site, 0);
    assert_int_equal(g->targets[0].n_trunk_bases, 2);
    assert_string_equal(g->targets[0].trunk_base_ids[1], "tbA2");
    assert_int_equal(g->targets[1].site, 1);
    assert_int_equal(g->targets[2].site, -1);
    assert_string_equal(g->targets[2].trunk_base_ids[0], "tbC");

    assert_ptr_equal(dw_config_member(&cfg, 3), &cfg.members[2]);
    assert_null(dw_config_member(&cfg, 4));
    assert_int_equal(dw_config_site_index(&cfg, "site-b"), 1);
    assert_int_equal(dw_config_site_index(&cfg, "site-c"), -1);
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse_doc(doc("minimal.json")), 0);
    assert_string_equal(cfg.admin_socket, "/var/lib/drwatch/admin.sock");
    assert_false(cfg.debug);
    assert_string_equal(cfg.members[0].name, "n1");
    assert_int_equal(cfg.cluster.election_timeout_ms, 1000);
    assert_int_equal(cfg.cluster.heartbeat_ms, 100);
    assert_int_equal(cfg.cluster.observation_ttl_ms, 15000);
    assert_int_equal(cfg.cluster.refresh_interval_ms, 5000);
    assert_int_equal(cfg.cluster.snapshot_threshold, 1024);
    assert_int_equal(cfg.cluster.snapshot_trailing, 256);
    assert_int_equal(cfg.genesys.request_timeout_ms, 10000);
    assert_int_equal(cfg.genesys.verify_timeout_ms, 60000);
    assert_int_equal(cfg.genesys.verify_interval_ms, 2000);
    assert_int_equal(cfg.probe.interval_ms, 1000);
    assert_int_equal(cfg.probe.timeout_ms, 800);
    assert_int_equal(cfg.probe.fail_threshold, 3);
    assert_int_equal(cfg.probe.recover_threshold, 2);
    assert_int_equal(cfg.groups[0].targets[1].site, -1);

    cJSON *d = doc("minimal.json");
    set(d, "node.data_dir", "\"/srv/drwatch/\"");
    assert_int_equal(parse_doc(d), 0);
    assert_string_equal(cfg.admin_socket, "/srv/drwatch/admin.sock");

    /* the default must still fit a Unix socket path */
    char dir[160] = "\"/";
    memset(dir + 2, 'd', 120);
    strcat(dir, "\"");
    d = doc("minimal.json");
    set(d, "node.data_dir", dir);
    expect_only(d, "node.admin_socket: the default <data_dir>/admin.sock is longer than a Unix "
                   "socket path allows (max 107); set it");
}

static void test_region(void **state)
{
    (void)state;
    assert_int_equal(parse_doc(doc("minimal.json")), 0);
    assert_string_equal(cfg.genesys.api_base_url, "https://api.mypurecloud.com");
    assert_string_equal(cfg.genesys.login_base_url, "https://login.mypurecloud.com");

    cJSON *d = doc("minimal.json");
    set(d, "genesys.region", "\"ap-southeast-2\"");
    assert_int_equal(parse_doc(d), 0);
    assert_string_equal(cfg.genesys.api_base_url, "https://api.mypurecloud.com.au");
    assert_string_equal(cfg.genesys.login_base_url, "https://login.mypurecloud.com.au");

    /* an explicit URL overrides the region's, the other is still derived */
    d = doc("minimal.json");
    set(d, "genesys.region", "\"eu-central-2\"");
    set(d, "genesys.api_base_url", "\"http://127.0.0.1:9090\"");
    assert_int_equal(parse_doc(d), 0);
    assert_string_equal(cfg.genesys.api_base_url, "http://127.0.0.1:9090");
    assert_string_equal(cfg.genesys.login_base_url, "https://login.euc2.pure.cloud");

    /* both URLs and no region (a simulator) */
    d = doc("minimal.json");
    set(d, "genesys.region", NULL);
    set(d, "genesys.api_base_url", "\"http://127.0.0.1:9090\"");
    set(d, "genesys.login_base_url", "\"http://127.0.0.1:9091/\"");
    assert_int_equal(parse_doc(d), 0);
    assert_string_equal(cfg.genesys.region, "");
    assert_string_equal(cfg.genesys.login_base_url, "http://127.0.0.1:9091/");

    d = doc("minimal.json");
    set(d, "genesys.region", "\"mars-1\"");
    expect_only(d, "genesys.region: unknown region \"mars-1\"");

    d = doc("minimal.json");
    set(d, "genesys.region", "\"eu west\"");
    expect_only(d, "genesys.region: unknown region \"eu west\"");

    d = doc("minimal.json");
    set(d, "genesys.region", NULL);
    expect_only(d, "genesys.region: missing (or set genesys.api_base_url and "
                   "genesys.login_base_url)");

    d = doc("minimal.json");
    set(d, "genesys.region", NULL);
    set(d, "genesys.api_base_url", "\"http://127.0.0.1:9090\"");
    expect_only(d, "genesys.login_base_url: missing (needed when genesys.region is not set)");
}

/* ---- bad input, one kind per test ---- */

static void test_not_json(void **state)
{
    (void)state;
    char *text = fixture("not-json.json");
    assert_int_equal(parse_text(text), -1);
    free(text);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msg[0], "$: not valid JSON (line 4, column 17)");

    assert_int_equal(parse_text("{\"node\": {}} trailing"), -1);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msg[0], "$: not valid JSON (line 1, column 14)");

    assert_int_equal(parse_text(""), -1);
    assert_string_equal(errs.msg[0], "$: not valid JSON (line 1, column 1)");

    assert_int_equal(parse_text("[1, 2]"), -1);
    assert_true(has_error("$: expected an object"));
}

static void test_unknown_key(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "colour", "\"red\"");
    expect_only(d, "colour: unknown key");

    d = doc("full.json");
    set(d, "node.colour", "\"red\"");
    expect_only(d, "node.colour: unknown key");

    d = doc("full.json");
    set(d, "sites[1].edges[0].healthurl", "\"https://10.2.0.5/\"");
    expect_only(d, "sites[1].edges[0].healthurl: unknown key");

    d = doc("full.json");
    set(d, "failover_groups[0].targets[2].Site", "\"site-a\"");
    expect_only(d, "failover_groups[0].targets[2].Site: unknown key");

    /* a key given twice is refused (cJSON would silently take the first) */
    const char *text = "{\"node\": {\"id\": 1, \"id\": 2}}";
    assert_int_equal(parse_text(text), -1);
    assert_true(has_error("node.id: duplicate key (only the first is used)"));
}

static void test_wrong_type(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "sites[1].edges[0].health_url", "42");
    expect_only(d, "sites[1].edges[0].health_url: expected a string");

    d = doc("full.json");
    set(d, "node.debug", "\"yes\"");
    expect_only(d, "node.debug: expected a boolean");

    d = doc("full.json");
    set(d, "probe.fail_threshold", "\"3\"");
    expect_only(d, "probe.fail_threshold: expected an integer");

    d = doc("full.json");
    set(d, "node.id", "1.5");
    expect_only(d, "node.id: expected an integer");

    d = doc("full.json");
    set(d, "cluster.members", "{}");
    assert_int_equal(parse_doc(d), -1);
    assert_true(has_error("cluster.members: expected an array"));

    d = doc("full.json");
    set(d, "probe", "[]");
    expect_only(d, "probe: expected an object");

    d = doc("full.json");
    set(d, "failover_groups[0].targets[0].trunk_base_ids", "[\"tbA\", null]");
    expect_only(d, "failover_groups[0].targets[0].trunk_base_ids[1]: expected a string");
}

static void test_range(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "probe.fail_threshold", "0");
    expect_only(d, "probe.fail_threshold: must be between 1 and 100");

    d = doc("full.json");
    set(d, "cluster.observation_ttl_ms", "1e12");
    expect_only(d, "cluster.observation_ttl_ms: must be between 1 and 86400000");

    d = doc("full.json");
    set(d, "cluster.members[2].id", "2147483648");
    assert_int_equal(parse_doc(d), -1);
    assert_true(has_error("cluster.members[2].id: must be between 1 and 2147483647"));

    d = doc("full.json");
    set(d, "sites[0].id", "\"a-very-long-site-identifier-that-goes-on-and-on-past-the-limit-x\"");
    assert_int_equal(parse_doc(d), -1);
    assert_true(has_error("sites[0].id: too long (max 63)"));

    d = doc("full.json");
    set(d, "sites[0].edges[0].id", "\"edge a1\"");
    expect_only(d, "sites[0].edges[0].id: invalid id \"edge a1\" (use 1 to 63 of A-Z a-z 0-9 . _ -)");

    d = doc("full.json");
    set(d, "failover_groups[0].targets", "[{\"id\": \"cloud\", \"trunk_base_ids\": [\"tbC\"]}]");
    expect_only(d, "failover_groups[0].targets: needs 2 to 8 entries (has 1)");

    d = doc("full.json");
    set(d, "sites[1].edges", "[]");
    expect_only(d, "sites[1].edges: needs 1 to 16 entries (has 0)");

    d = doc("full.json");
    char members[2048] = "[";
    for (int i = 1; i <= 10; i++)
        snprintf(members + strlen(members), sizeof members - strlen(members),
                 "%s{\"id\": %d, \"raft_address\": \"10.0.0.%d:7001\", "
                 "\"peer_address\": \"10.0.0.%d:8001\"}", i > 1 ? "," : "", i, i, i);
    strcat(members, "]");
    set(d, "cluster.members", members);
    expect_only(d, "cluster.members: needs 1 to 9 entries (has 10)");
}

static void test_missing(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "genesys.client_id", NULL);
    expect_only(d, "genesys.client_id: missing");

    d = doc("full.json");
    set(d, "node.data_dir", NULL);
    expect_only(d, "node.data_dir: missing");

    d = doc("full.json");
    set(d, "sites[0].edges[1].health_url", NULL);
    expect_only(d, "sites[0].edges[1].health_url: missing");

    d = doc("full.json");
    set(d, "failover_groups[0].targets[1].trunk_base_ids", NULL);
    expect_only(d, "failover_groups[0].targets[1].trunk_base_ids: missing");

    d = doc("full.json");
    set(d, "failover_groups", NULL);
    expect_only(d, "failover_groups: missing");

    d = doc("full.json");
    set(d, "genesys", NULL);
    expect_only(d, "genesys: missing");
}

static void test_duplicates(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "cluster.members[2].id", "1");
    expect_only(d, "cluster.members[2].id: duplicate id 1 (first at cluster.members[0].id)");

    d = doc("full.json");
    set(d, "cluster.members[2].name", "\"eu-west\"");
    expect_only(d, "cluster.members[2].name: duplicate name \"eu-west\" "
                   "(first at cluster.members[0].name)");

    d = doc("full.json");
    set(d, "cluster.members[2].raft_address", "\"10.0.1.10:7001\"");
    expect_only(d, "cluster.members[2].raft_address: duplicate address \"10.0.1.10:7001\" "
                   "(first at cluster.members[0].raft_address)");

    d = doc("full.json");
    set(d, "cluster.members[1].peer_address", "\"10.0.2.10:7001\"");
    expect_only(d, "cluster.members[1].peer_address: duplicate address \"10.0.2.10:7001\" "
                   "(first at cluster.members[1].raft_address)");

    d = doc("full.json");
    set(d, "sites[1].id", "\"site-a\"");
    assert_int_equal(parse_doc(d), -1);
    assert_true(has_error("sites[1].id: duplicate id \"site-a\" (first at sites[0].id)"));

    d = doc("full.json");
    set(d, "sites[1].edges[1].id", "\"edge-a1\"");
    expect_only(d, "sites[1].edges[1].id: duplicate edge id \"edge-a1\" "
                   "(first at sites[0].edges[0].id)");

    d = doc("full.json");
    cJSON *groups = cJSON_GetObjectItemCaseSensitive(d, "failover_groups");
    cJSON_AddItemToArray(groups, cJSON_Duplicate(cJSON_GetArrayItem(groups, 0), true));
    expect_only(d, "failover_groups[1].id: duplicate id \"carrier-1\" "
                   "(first at failover_groups[0].id)");

    d = doc("full.json");
    set(d, "failover_groups[0].targets[2].id", "\"premise-a\"");
    expect_only(d, "failover_groups[0].targets[2].id: duplicate id \"premise-a\" "
                   "(first at failover_groups[0].targets[0].id)");

    d = doc("full.json");
    set(d, "failover_groups[0].targets[1].trunk_base_ids", "[\"tbB\", \"tbA2\"]");
    expect_only(d, "failover_groups[0].targets[1].trunk_base_ids[1]: duplicate trunk base id "
                   "\"tbA2\" (first at failover_groups[0].targets[0].trunk_base_ids[1])");
}

static void test_bad_address(void **state)
{
    (void)state;
    static const char *bad[] = { "10.0.0.300:7001", "10.0.0.1", "10.0.0.1:0", "node1.example:7001",
                                 "10.0.0.1:65536", "10.0.1:7001", "10.0.0.01:7001", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char value[64], msg[200];
        cJSON *d = doc("full.json");
        snprintf(value, sizeof value, "\"%s\"", bad[i]);
        set(d, "cluster.members[1].raft_address", value);
        snprintf(msg, sizeof msg, "cluster.members[1].raft_address: invalid address \"%s\" "
                                  "(expected IPv4 a.b.c.d:port, port 1-65535)", bad[i]);
        expect_only(d, msg);
    }
    cJSON *d = doc("full.json");
    set(d, "cluster.members[1].raft_address", "\"0.0.0.0:65535\"");
    assert_int_equal(parse_doc(d), 0);
}

static void test_bad_url(void **state)
{
    (void)state;
    static const char *bad[] = { "ftp://10.1.0.5/health", "https://", "http:///health",
                                 "10.1.0.5/health", "https://10.1.0.5/he alth", "https://:443/" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char value[64], msg[200];
        cJSON *d = doc("full.json");
        snprintf(value, sizeof value, "\"%s\"", bad[i]);
        set(d, "sites[1].edges[0].health_url", value);
        snprintf(msg, sizeof msg, "sites[1].edges[0].health_url: invalid URL \"%s\" "
                                  "(expected http:// or https:// and a host)", bad[i]);
        expect_only(d, msg);
    }
    cJSON *d = doc("full.json");
    char longurl[600] = "\"https://example.com/";
    memset(longurl + strlen(longurl), 'x', 500);
    strcat(longurl, "\"");
    set(d, "genesys.api_base_url", longurl);
    expect_only(d, "genesys.api_base_url: too long (max 511)");
}

static void test_node_not_member(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "node.id", "4");
    expect_only(d, "node.id: 4 is not the id of any cluster.members entry");
}

static void test_target_site_unknown(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "failover_groups[0].targets[1].site", "\"site-c\"");
    expect_only(d, "failover_groups[0].targets[1].site: unknown site \"site-c\"");
}

static void test_secret_files(void **state)
{
    (void)state;
    char value[160], msg[300];

    cJSON *d = doc("full.json");
    snprintf(value, sizeof value, "\"%s/nope.secret\"", tmpdir);
    set(d, "cluster.peer_secret_file", value);
    snprintf(msg, sizeof msg, "cluster.peer_secret_file: cannot read \"%s/nope.secret\": "
                              "No such file or directory", tmpdir);
    expect_only(d, msg);

    d = doc("full.json");
    snprintf(value, sizeof value, "\"%s\"", tmpdir);
    set(d, "genesys.client_secret_file", value);
    snprintf(msg, sizeof msg, "genesys.client_secret_file: cannot read \"%s\": Is a directory",
             tmpdir);
    expect_only(d, msg);

    d = doc("full.json");
    snprintf(value, sizeof value, "\"%s/empty.secret\"", tmpdir);
    set(d, "genesys.client_secret_file", value);
    snprintf(msg, sizeof msg, "genesys.client_secret_file: \"%s/empty.secret\" is empty", tmpdir);
    expect_only(d, msg);
}

static void test_read_secret(void **state)
{
    (void)state;
    char path[128], out[64], em[256];
    snprintf(path, sizeof path, "%s/genesys.secret", tmpdir);
    assert_int_equal(dw_config_read_secret(path, out, sizeof out, em, sizeof em), 0);
    assert_string_equal(out, "  client secret");

    /* exactly filling the buffer, trailing newline beyond it: accepted */
    write_file("long.secret", "0123456789\n\n");
    snprintf(path, sizeof path, "%s/long.secret", tmpdir);
    assert_int_equal(dw_config_read_secret(path, out, 11, em, sizeof em), 0);
    assert_string_equal(out, "0123456789");
    /* one byte more than fits: refused rather than cut */
    assert_int_equal(dw_config_read_secret(path, out, 10, em, sizeof em), -1);
    char want[256];
    snprintf(want, sizeof want, "\"%s\" is longer than 9 bytes", path);
    assert_string_equal(em, want);

    snprintf(path, sizeof path, "%s/empty.secret", tmpdir);
    assert_int_equal(dw_config_read_secret(path, out, sizeof out, em, sizeof em), -1);
    snprintf(want, sizeof want, "\"%s\" is empty", path);
    assert_string_equal(em, want);
}

static void test_cross_field(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "probe.timeout_ms", "2500");
    expect_only(d, "probe.timeout_ms: must be at most probe.interval_ms (2500 > 2000)");

    d = doc("full.json");
    set(d, "probe.timeout_ms", "2000");
    assert_int_equal(parse_doc(d), 0);

    d = doc("full.json");
    set(d, "cluster.heartbeat_ms", "1500");
    expect_only(d, "cluster.heartbeat_ms: must be less than cluster.election_timeout_ms "
                   "(1500 >= 1500)");

    d = doc("full.json");
    set(d, "cluster.refresh_interval_ms", "30000");
    expect_only(d, "cluster.refresh_interval_ms: must be less than cluster.observation_ttl_ms "
                   "(30000 >= 20000)");

    d = doc("full.json");
    set(d, "genesys.verify_interval_ms", "50000");
    expect_only(d, "genesys.verify_interval_ms: must be at most genesys.verify_timeout_ms "
                   "(50000 > 45000)");

    /* an invalid value does not also trip the cross-field check */
    d = doc("full.json");
    set(d, "probe.interval_ms", "\"fast\"");
    expect_only(d, "probe.interval_ms: expected an integer");
}

static void test_several_errors(void **state)
{
    (void)state;
    char missing[200];
    snprintf(missing, sizeof missing, "genesys.client_secret_file: cannot read "
                                      "\"%s/missing.secret\": No such file or directory", tmpdir);
    const char *want[] = {
        "node.debug: expected a boolean",
        "cluster.members[0].raft_address: invalid address \"10.0.0.300:7001\" "
        "(expected IPv4 a.b.c.d:port, port 1-65535)",
        "genesys.client_id: missing",
        "probe.timeout_ms: expected an integer",
        "probe.colour: unknown key",
        "sites[0].edges[0].health_url: invalid URL \"ftp://10.1.0.5/health\" "
        "(expected http:// or https:// and a host)",
        "failover_groups[0].targets: needs 2 to 8 entries (has 1)",
        "failover_groups[0].targets[0].site: unknown site \"site-z\"",
        "node.id: 7 is not the id of any cluster.members entry",
        "genesys.region: unknown region \"mars-1\"",
        "cluster.heartbeat_ms: must be less than cluster.election_timeout_ms (2000 >= 1000)",
        "cluster.members[1].id: duplicate id 1 (first at cluster.members[0].id)",
        "sites[1].id: duplicate id \"site-a\" (first at sites[0].id)",
        "sites[1].edges[0].id: duplicate edge id \"edge-1\" (first at sites[0].edges[0].id)",
        missing,
    };
    char *text = fixture("several-errors.json");
    int rc = parse_text(text);
    free(text);
    assert_int_equal(rc, -1);
    size_t n = sizeof want / sizeof want[0];
    if ((size_t)errs.n != n)
        dump_errors();
    assert_int_equal(errs.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(errs.msg[i], want[i]);
}

static void test_too_many_errors(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    cJSON *node = cJSON_GetObjectItemCaseSensitive(d, "node");
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        cJSON_AddNumberToObject(node, key, i);
    }
    assert_int_equal(parse_doc(d), -1);
    assert_int_equal(errs.n, DW_CFG_MAX_ERRORS);
    assert_string_equal(errs.msg[0], "node.k0: unknown key");
    assert_string_equal(errs.msg[DW_CFG_MAX_ERRORS - 2], "node.k62: unknown key");
    assert_string_equal(errs.msg[DW_CFG_MAX_ERRORS - 1], "... more errors");
}

static void test_load(void **state)
{
    (void)state;
    char path[128], want[256];
    char *text = fixture("full.json");
    write_file("config.json", text);
    free(text);
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    assert_int_equal(dw_config_load(path, &cfg, &errs), 0);
    assert_int_equal(cfg.n_sites, 2);

    snprintf(path, sizeof path, "%s/absent.json", tmpdir);
    assert_int_equal(dw_config_load(path, &cfg, &errs), -1);
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof want, "$: cannot read \"%s\": No such file or directory", path);
    assert_string_equal(errs.msg[0], want);

    /* errs may be NULL when only the verdict matters */
    assert_int_equal(dw_config_parse("{}", 2, &cfg, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_bad_url),
        cmocka_unit_test(test_node_not_member),
        cmocka_unit_test(test_target_site_unknown),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_read_secret),
        cmocka_unit_test(test_cross_field),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_too_many_errors),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
