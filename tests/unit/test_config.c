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

#include "drwatch/cfgfile.h"
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
    assert_int_equal(fchmod(fileno(f), 0600), 0); /* a secret others can read is refused */
    fclose(f);
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dwcfg-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    /* full.json is node 2's view: the secrets it shares with members 1 and 3 */
    char dir[128];
    snprintf(dir, sizeof dir, "%s/peer.d", tmpdir);
    if (mkdir(dir, 0700) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/peer.solo", tmpdir);
    if (mkdir(dir, 0700) != 0)
        return -1;
    write_file("peer.d/1.secret", "secret-of-members-1-and-2\n");
    write_file("peer.d/3.secret", "secret-of-members-2-and-3\n");
    write_file("genesys.secret", "  client secret \t\r\n\n");
    write_file("empty.secret", " \n");
    /* only their readability is checked at load */
    write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n");
    write_file("client.pem", "-----BEGIN CERTIFICATE-----\n");
    write_file("client.key", "-----BEGIN PRIVATE KEY-----\n");
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    const char *names[] = { "peer.d/1.secret", "peer.d/3.secret", "genesys.secret",
                            "empty.secret", "long.secret", "slack.secret", "config.json", "ca.pem", "client.pem",
                            "client.key", "shared.json", "shared-node.json", "node.json",
                            "single.json", "relative.json" };
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/peer.d", tmpdir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/peer.solo", tmpdir);
    rmdir(path);
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
    dw_config_free(&cfg);
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
    snprintf(path, sizeof path, "%s/peer.d", tmpdir);
    assert_string_equal(cfg.cluster.peer_secret_dir, path);

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
    assert_int_equal(cfg.cluster.history_retention_days, 90);
    assert_int_equal(cfg.cluster.history_max_rows, 100000);
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
    expect_only(d, "sites[1].edges: needs 1 to 256 entries (has 0)");

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
    expect_only(d, "sites[0].edges[1]: needs health_url or probes");

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

static void test_url_credentials_refused_without_echo(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "sites[0].edges[0].health_url", "\"https://probe:hunter2@10.1.0.5/health\"");
    expect_only(d, "sites[0].edges[0].health_url: credentials in a URL are not supported "
                   "(they would appear in logs)");
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
    snprintf(value, sizeof value, "\"%s\"", tmpdir);
    set(d, "genesys.client_secret_file", value);
    snprintf(msg, sizeof msg, "genesys.client_secret_file: \"%s\" is not a regular file",
             tmpdir);
    expect_only(d, msg);

    d = doc("full.json");
    snprintf(value, sizeof value, "\"%s/empty.secret\"", tmpdir);
    set(d, "genesys.client_secret_file", value);
    snprintf(msg, sizeof msg, "genesys.client_secret_file: \"%s/empty.secret\" is empty", tmpdir);
    expect_only(d, msg);
}

/* full.json with cluster.peer_secret_dir set to "<tmpdir>/<rel>" (rel NULL: as in the
 * fixture) fails with exactly want, "@DIR@" standing for the temp dir. */
static void expect_peer_dir(const char *rel, const char *want)
{
    char value[160], msg[400];
    cJSON *d = doc("full.json");
    if (rel != NULL) {
        snprintf(value, sizeof value, "\"%s/%s\"", tmpdir, rel);
        set(d, "cluster.peer_secret_dir", value);
    }
    const char *at = strstr(want, "@DIR@");
    assert_non_null(at);
    snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - want), want, tmpdir, at + 5);
    expect_only(d, msg);
}

/* One secret per pair of members: node 2 of full.json holds 1.secret and 3.secret only. */
static void test_peer_secrets(void **state)
{
    (void)state;
    char value[160], path[160], em[256];
    static struct dw_peer_secrets ps;

    cJSON *d = doc("full.json");
    assert_int_equal(parse_doc(d), 0);
    assert_int_equal(dw_config_read_peer_secrets(&cfg, &ps, em, sizeof em), 0);
    assert_string_equal(ps.s[0], "secret-of-members-1-and-2");
    assert_string_equal(ps.s[1], "");
    assert_string_equal(ps.s[2], "secret-of-members-2-and-3");
    assert_int_equal(dw_config_peer_secret_path(&cfg, 3, path, sizeof path), 0);
    snprintf(value, sizeof value, "%s/peer.d/3.secret", tmpdir);
    assert_string_equal(path, value);

    /* The shared secret is refused by name, not as an unknown key. */
    d = doc("full.json");
    set(d, "cluster.peer_secret_file", "\"/etc/drwatch/peer.secret\"");
    expect_only(d, "cluster.peer_secret_file: no longer supported: a secret shared by all "
                   "members lets any of them speak for the others; use "
                   "cluster.peer_secret_dir (see docs/config.md)");

    d = doc("full.json");
    set(d, "cluster.peer_secret_dir", NULL);
    expect_only(d, "cluster.peer_secret_dir: missing");

    expect_peer_dir("nope.d", "cluster.peer_secret_dir: cannot read \"@DIR@/nope.d\": "
                              "No such file or directory");
    expect_peer_dir("genesys.secret", "cluster.peer_secret_dir: \"@DIR@/genesys.secret\" is "
                                      "not a directory");

    /* A member's file missing: the error names the member and the file, and the daemon's
     * reader says the same. */
    d = doc("full.json");
    set(d, "cluster.members[2].id", "4");
    char msg[400];
    snprintf(msg, sizeof msg, "cluster.peer_secret_dir: secret shared with member 4: cannot "
                              "read \"%s/peer.d/4.secret\": No such file or directory", tmpdir);
    expect_only(d, msg);
    d = doc("full.json");
    assert_int_equal(parse_doc(d), 0);
    cfg.members[2].id = 4;
    assert_int_equal(dw_config_read_peer_secrets(&cfg, &ps, em, sizeof em), -1);
    assert_string_equal(em, msg);
    assert_string_equal(ps.s[0], ""); /* wiped */

    /* This node's own file: a copied directory, or one secret per member given to all. */
    write_file("peer.d/2.secret", "secret-of-member-2-alone\n");
    expect_peer_dir(NULL, "cluster.peer_secret_dir: \"@DIR@/peer.d/2.secret\" names this node: "
                          "a node holds only the secrets it shares with each other member");
    snprintf(path, sizeof path, "%s/peer.d/2.secret", tmpdir);
    unlink(path);

    /* One secret for two pairs is a shared secret again. */
    write_file("peer.d/3.secret", "secret-of-members-1-and-2\n");
    expect_peer_dir(NULL, "cluster.peer_secret_dir: \"@DIR@/peer.d/3.secret\" holds the same "
                          "secret as the file for member 1: every pair of members needs its own");
    write_file("peer.d/3.secret", "too-short\n");
    expect_peer_dir(NULL, "cluster.peer_secret_dir: \"@DIR@/peer.d/3.secret\" is shorter than "
                          "16 bytes");
    char big[DW_PEER_SECRET_MAX + 3];
    memset(big, 'k', sizeof big - 2);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    write_file("peer.d/3.secret", big);
    expect_peer_dir(NULL, "cluster.peer_secret_dir: secret shared with member 3: "
                          "\"@DIR@/peer.d/3.secret\" is longer than 256 bytes");

    write_file("peer.d/3.secret", "secret-of-members-2-and-3\n");
    d = doc("full.json");
    assert_int_equal(parse_doc(d), 0);
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

    /* a FIFO with no writer: refused at once instead of blocking the caller */
    snprintf(path, sizeof path, "%s/fifo.secret", tmpdir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(dw_config_read_secret(path, out, sizeof out, em, sizeof em), -1);
    snprintf(want, sizeof want, "\"%s\" is not a regular file", path);
    assert_string_equal(em, want);
    unlink(path);
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
    dw_config_free(&cfg);
    assert_int_equal(dw_config_load(path, &cfg, &errs), 0);
    assert_int_equal(cfg.n_sites, 2);
    dw_config_free(&cfg);

    snprintf(path, sizeof path, "%s/absent.json", tmpdir);
    assert_int_equal(dw_config_load(path, &cfg, &errs), -1);
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof want, "$: cannot read \"%s\": No such file or directory", path);
    assert_string_equal(errs.msg[0], want);

    /* errs may be NULL when only the verdict matters */
    assert_int_equal(dw_config_parse("{}", 2, &cfg, NULL), -1);
}

/* ---- one shared file, a node file, --node-id ---- */

/* Writes cJSON d (deleted) to name in the temp dir; path gets its full path. */
static void write_doc(const char *name, cJSON *d, char *path, size_t len)
{
    char *text = cJSON_Print(d);
    write_file(name, text);
    free(text);
    cJSON_Delete(d);
    snprintf(path, len, "%s/%s", tmpdir, name);
}

static int load_src(const char *config, const char *node_file, uint64_t node_id, cJSON **out)
{
    const struct dw_config_source src = { .config = config, .node_file = node_file,
                                          .node_id = node_id };
    memset(&errs, 0x5a, sizeof errs);
    dw_config_free(&cfg);
    return dw_config_load_source(&src, &cfg, &errs, out);
}

static void expect_load_error(const char *config, const char *node_file, uint64_t node_id,
                              const char *msg)
{
    if (load_src(config, node_file, node_id, NULL) != -1 || !has_error(msg)) {
        print_message("expected: %s\n", msg);
        dump_errors();
        fail();
    }
}

static void test_split_files(void **state)
{
    (void)state;
    char shared[128], mine[128], single[128], want[512];
    cJSON *full = doc("full.json"), *whole = NULL, *merged = NULL;

    /* the same node from one file and from the shared file plus a node file */
    cJSON *node = cJSON_DetachItemFromObjectCaseSensitive(full, "node");
    cJSON *local = cJSON_CreateObject();
    cJSON_AddItemToObject(local, "node", node);
    write_doc("shared.json", cJSON_Duplicate(full, true), shared, sizeof shared);
    write_doc("node.json", local, mine, sizeof mine);
    write_doc("single.json", doc("full.json"), single, sizeof single);
    assert_int_equal(load_src(single, NULL, 0, &whole), 0);
    assert_int_equal(load_src(shared, mine, 0, &merged), 0);
    assert_int_equal(cfg.node_id, 2);
    assert_string_equal(cfg.data_dir, "/var/lib/drwatch");
    assert_true(cfg.debug);
    /* what a leader would commit does not depend on the layout */
    cJSON *a = dw_config_cluster_doc(whole), *b = dw_config_cluster_doc(merged);
    assert_true(cJSON_Compare(a, b, true));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(whole);
    cJSON_Delete(merged);

    /* --node-id alone: the other node keys default */
    assert_int_equal(load_src(shared, NULL, 2, NULL), 0);
    assert_int_equal(cfg.node_id, 2);
    assert_string_equal(cfg.data_dir, "/var/lib/drwatch");
    assert_string_equal(cfg.admin_socket, "/run/drwatch/admin.sock");
    assert_false(cfg.debug);

    /* precedence, key by key: --node-id over the node file over the shared node object */
    cJSON *with_node = cJSON_Duplicate(full, true);
    set(with_node, "node", "{\"id\": 1, \"data_dir\": \"/srv/drwatch\", \"debug\": true}");
    write_doc("shared-node.json", with_node, shared, sizeof shared);
    local = cJSON_Parse("{\"node\": {\"id\": 3, \"admin_socket\": \"/run/dw.sock\"}}");
    write_doc("node.json", local, mine, sizeof mine);
    assert_int_equal(load_src(shared, mine, 2, NULL), 0);
    assert_int_equal(cfg.node_id, 2);
    assert_string_equal(cfg.data_dir, "/srv/drwatch");
    assert_string_equal(cfg.admin_socket, "/run/dw.sock");
    assert_true(cfg.debug);

    /* errors name the file each setting came from, then its JSON path */
    set(full, "probe.fail_threshold", "0");
    write_doc("shared.json", full, shared, sizeof shared);
    static const struct { const char *json, *error; bool cite_shared; } bad[] = {
        { "{\"node\": {\"id\": 2}, \"sites\": []}",
          "sites: not a node-local setting; it belongs in the shared file ", true },
        { "{\"node\": {\"id\": 2}, \"cluster\": {\"heartbeat_ms\": 10}}",
          "cluster.heartbeat_ms: not a node-local setting; it belongs in the shared file ", true },
        { "{\"node\": {\"id\": 2,\n}", "$: not valid JSON (line 2, column 1)", false },
        { "{\"node\": 2}", "node: expected an object", false },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("node.json", bad[i].json);
        snprintf(want, sizeof want, "%s: %s%s", mine, bad[i].error,
                 bad[i].cite_shared ? shared : "");
        expect_load_error(shared, mine, 0, want);
    }
    write_file("node.json", "{\"node\": {\"id\": 9, \"data_dir\": \"/srv/x\"}}");
    snprintf(want, sizeof want, "%s: node.id: 9 is not the id of any cluster.members entry", mine);
    expect_load_error(shared, mine, 0, want);
    snprintf(want, sizeof want, "%s: probe.fail_threshold: must be between 1 and 100", shared);
    expect_load_error(shared, mine, 0, want);
    expect_load_error(shared, mine, 7,
                      "--node-id: node.id: 7 is not the id of any cluster.members entry");
    /* node-local settings of other sections (this node's peer secret directory, say), relative
     * to the node file */
    write_file("node.json", "{\"node\": {\"id\": 2, \"data_dir\": \"/srv/x\"}, \"cluster\": "
               "{\"peer_secret_dir\": \"nowhere\"}}");
    snprintf(want, sizeof want, "%s: cluster.peer_secret_dir: cannot read \"%s/nowhere\": No such "
             "file or directory", mine, tmpdir);
    expect_load_error(shared, mine, 0, want);
    /* one file: its errors read as before, the command line names the file */
    expect_load_error(shared, NULL, 0, "probe.fail_threshold: must be between 1 and 100");
}

/* Relative secret paths: $CREDENTIALS_DIRECTORY when the file is there, else the directory of
 * the config file; absolute ones as written. */
static void test_relative_secrets(void **state)
{
    (void)state;
    char path[128], want[256], dir[128];
    cJSON *d = doc("full.json"), *out = NULL;
    set(d, "genesys.client_secret_file", "\"genesys.secret\"");
    set(d, "cluster.peer_secret_dir", "\"peer.d\"");
    write_doc("relative.json", d, path, sizeof path);
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(load_src(path, NULL, 0, &out), 0);
    snprintf(want, sizeof want, "%s/genesys.secret", tmpdir);
    assert_string_equal(cfg.genesys.client_secret_file, want);
    snprintf(want, sizeof want, "%s/peer.d", tmpdir);
    assert_string_equal(cfg.cluster.peer_secret_dir, want);
    cJSON_Delete(out);

    snprintf(dir, sizeof dir, "%s/peer.solo", tmpdir); /* stands in for the credentials dir */
    write_file("peer.solo/genesys.secret", "from-credentials\n");
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    assert_int_equal(load_src(path, NULL, 0, NULL), 0);
    snprintf(want, sizeof want, "%s/genesys.secret", dir);
    assert_string_equal(cfg.genesys.client_secret_file, want);
    /* the peer secret directory is never a credential */
    snprintf(want, sizeof want, "%s/peer.d", tmpdir);
    assert_string_equal(cfg.cluster.peer_secret_dir, want);
    unsetenv("CREDENTIALS_DIRECTORY");
    snprintf(want, sizeof want, "%s/peer.solo/genesys.secret", tmpdir);
    unlink(want);
}

/* A secret others can read stops the load with the chmod that fixes it. */
static void test_secret_mode(void **state)
{
    (void)state;
    static const struct { unsigned mode; const char *how, *fix; } cases[] = {
        { 0644, "readable", "0640" },
        { 0602, "accessible", "0600" },
    };
    char path[128], msg[512];
    write_file("slack.secret", "a-secret-value\n");
    snprintf(path, sizeof path, "%s/slack.secret", tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(chmod(path, cases[i].mode), 0);
        cJSON *d = doc("full.json");
        snprintf(msg, sizeof msg, "\"%s\"", path);
        set(d, "genesys.client_secret_file", msg);
        snprintf(msg, sizeof msg, "genesys.client_secret_file: %s is %s by other users (mode "
                 "%04o); run: chmod %s %s", path, cases[i].how, cases[i].mode, cases[i].fix, path);
        expect_only(d, msg);
    }
    assert_int_equal(chmod(path, 0640), 0);
}

static void test_check_places(void **state)
{
    (void)state;
    char want[512];
    static struct dw_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.admin_socket, sizeof c.admin_socket, "%s/no-such-dir/admin.sock", tmpdir);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/data/node", tmpdir);
    errs.n = 0;
    assert_int_equal(dw_config_check_places(&c, &errs), 1);
    snprintf(want, sizeof want, "node.admin_socket: directory %s/no-such-dir does not exist; "
             "create it (mkdir -m 0750 %s/no-such-dir) or, under systemd, RuntimeDirectory=drwatch "
             "creates it", tmpdir, tmpdir);
    assert_string_equal(errs.msg[0], want);
    /* a data_dir start-up can create, and a socket directory that exists: nothing to say */
    snprintf(c.admin_socket, sizeof c.admin_socket, "%s/admin.sock", tmpdir);
    errs.n = 0;
    assert_int_equal(dw_config_check_places(&c, &errs), 0);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/genesys.secret", tmpdir);
    assert_int_equal(dw_config_check_places(&c, &errs), 1);
    snprintf(want, sizeof want, "node.data_dir: %s/genesys.secret is not a directory", tmpdir);
    assert_string_equal(errs.msg[0], want);
}

/* ---- detection settings: probes, rules, signals, TILT, limits ---- */

static void test_probes(void **state)
{
    (void)state;
    char path[128];
    assert_int_equal(parse_doc(doc("probes.json")), 0);
    const struct dw_site *a = &cfg.sites[0];
    assert_int_equal(a->rule, DW_RULE_AT_LEAST);
    assert_int_equal(a->at_least, 2);
    assert_int_equal(a->combine, DW_COMBINE_AND_GENESYS);
    assert_int_equal(cfg.sites[1].rule, DW_RULE_ALL);
    assert_int_equal(cfg.sites[1].combine, DW_COMBINE_PROBES);

    /* health_url comes first, then the listed probes in order */
    const struct dw_edge *e = &a->edges[0];
    assert_int_equal(e->n_probes, 3);
    assert_int_equal(e->probes[0].kind, DW_PROBE_HTTP);
    assert_string_equal(e->probes[0].url, "http://10.1.0.5/health");
    assert_int_equal(e->probes[0].timeout_ms, 1500);
    assert_true(e->probes[0].verify_tls);
    const struct dw_probe_spec *p = &e->probes[1];
    assert_int_equal(p->kind, DW_PROBE_HTTP);
    assert_string_equal(p->url, "https://10.1.0.5:8443/status");
    assert_int_equal(p->timeout_ms, 1000);
    assert_int_equal(p->n_expect_status, 2);
    assert_int_equal(p->expect_status[1], 204);
    assert_string_equal(p->body_match, "\"state\":\"ok\"");
    snprintf(path, sizeof path, "%s/ca.pem", tmpdir);
    assert_string_equal(p->ca_file, path);
    snprintf(path, sizeof path, "%s/client.key", tmpdir);
    assert_string_equal(p->client_key, path);
    assert_true(p->verify_tls);
    p = &e->probes[2];
    assert_int_equal(p->kind, DW_PROBE_SIP);
    assert_int_equal(p->transport, DW_SIP_UDP);
    assert_string_equal(p->request_uri, "sip:10.1.0.5:5060");
    assert_int_equal(p->n_alive_codes, 0);
    assert_int_equal(p->timeout_ms, 1500);

    e = &a->edges[1];
    assert_string_equal(e->health_url, "");
    assert_int_equal(e->n_probes, 4);
    p = &e->probes[0];
    assert_int_equal(p->transport, DW_SIP_TLS);
    assert_string_equal(p->request_uri, "sips:10.1.0.6:5061");
    assert_string_equal(p->tls_server_name, "edge-a2.example.com");
    assert_int_equal(p->n_alive_codes, 3);
    assert_int_equal(p->alive_codes[0], 200);
    assert_int_equal(p->alive_codes[1], 4);
    assert_int_equal(p->alive_codes[2], 503);
    p = &e->probes[1];
    assert_int_equal(p->transport, DW_SIP_TCP);
    assert_string_equal(p->request_uri, "sip:ping@10.1.0.6");
    assert_int_equal(p->alive_codes[0], 2);
    p = &e->probes[2];
    assert_int_equal(p->kind, DW_PROBE_TCP);
    assert_string_equal(p->address, "10.1.0.6:443");
    assert_int_equal(p->timeout_ms, 500);
    assert_false(e->probes[3].verify_tls);
    assert_int_equal(a->edges[2].n_probes, 1);

    assert_string_equal(cfg.metrics_address, "0.0.0.0:9100");
    assert_int_equal(cfg.cluster.min_submit_interval_ms, 500);
    assert_int_equal(cfg.genesys.poll_interval_ms, 15000);
    assert_int_equal(cfg.genesys.cloud_ttl_ms, 45000);
    assert_int_equal(cfg.genesys.cloud_grace_ms, 90000);
    assert_int_equal(cfg.genesys.rate_budget_per_min, 60);
    assert_int_equal(cfg.tilt.stall_ms, 3000);
    assert_int_equal(cfg.tilt.clock_jump_ms, 1000);
    assert_int_equal(cfg.tilt.abstain_ms, 60000);
}

static void test_detection_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse_doc(doc("minimal.json")), 0);
    assert_string_equal(cfg.metrics_address, "");
    assert_int_equal(cfg.cluster.min_submit_interval_ms, 250);
    assert_int_equal(cfg.genesys.poll_interval_ms, 10000);
    assert_int_equal(cfg.genesys.cloud_ttl_ms, 35000);
    assert_int_equal(cfg.genesys.cloud_grace_ms, 60000);
    assert_int_equal(cfg.genesys.rate_budget_per_min, 120);
    assert_int_equal(cfg.genesys.max_concurrent_requests, 4);
    assert_int_equal(cfg.tilt.stall_ms, 2000);
    assert_int_equal(cfg.tilt.clock_jump_ms, 2000);
    assert_int_equal(cfg.tilt.abstain_ms, 30000);
    assert_int_equal(cfg.sites[0].rule, DW_RULE_ANY);
    assert_int_equal(cfg.sites[0].combine, DW_COMBINE_PROBES);
    const struct dw_edge *e = &cfg.sites[0].edges[0];
    assert_int_equal(e->n_probes, 1);
    assert_int_equal(e->probes[0].kind, DW_PROBE_HTTP);
    assert_string_equal(e->probes[0].url, "https://10.1.0.5/health");
    assert_int_equal(e->probes[0].timeout_ms, 800);
    assert_true(e->probes[0].verify_tls);
    assert_int_equal(e->probes[0].n_expect_status, 0);

    cJSON *d = doc("minimal.json");
    set(d, "sites[0].edges[0].health_url", NULL);
    set(d, "sites[0].edges[0].probes", "[{\"kind\": \"sip\", \"address\": \"10.1.0.5:5061\", "
                                       "\"transport\": \"tls\"}, {\"kind\": \"http\", "
                                       "\"url\": \"https://10.1.0.5/\"}]");
    assert_int_equal(parse_doc(d), 0);
    e = &cfg.sites[0].edges[0];
    assert_int_equal(e->n_probes, 2);
    assert_string_equal(e->probes[0].request_uri, "sips:10.1.0.5:5061");
    assert_int_equal(e->probes[0].timeout_ms, 800);
    assert_true(e->probes[0].verify_tls);
    assert_string_equal(e->probes[0].tls_server_name, "");
    assert_string_equal(e->probes[1].ca_file, "");
}

/* minimal.json with sites[0].edges[0].probes[0] replaced by PROBE (JSON text). */
static void expect_probe_error(const char *probe, const char *msg)
{
    char json[1024];
    cJSON *d = doc("minimal.json");
    set(d, "sites[0].edges[0].health_url", NULL);
    snprintf(json, sizeof json, "[%s]", probe);
    set(d, "sites[0].edges[0].probes", json);
    if (strncmp(msg, "sites", 5) == 0) {
        expect_only(d, msg);
        return;
    }
    char full[300];
    snprintf(full, sizeof full, "sites[0].edges[0].probes[0].%s", msg);
    expect_only(d, full);
}

static void test_bad_probe(void **state)
{
    (void)state;
    char want[300];
    /* keys of another kind are named, not just "unknown" */
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", \"url\": \"http://x/\"}",
                       "url: not valid for a sip probe");
    expect_probe_error("{\"kind\": \"tcp\", \"address\": \"10.0.0.1:80\", \"expect_status\": [200]}",
                       "expect_status: not valid for a tcp probe");
    expect_probe_error("{\"kind\": \"http\", \"url\": \"http://x/\", \"address\": \"10.0.0.1:80\"}",
                       "address: not valid for an http probe");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", \"verify_tls\": false}",
                       "verify_tls: not valid for a sip probe over udp (only with \"transport\": "
                       "\"tls\")");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", \"transport\": \"tcp\", "
                       "\"tls_server_name\": \"x\"}",
                       "tls_server_name: not valid for a sip probe over tcp (only with "
                       "\"transport\": \"tls\")");
    expect_probe_error("{\"kind\": \"http\", \"url\": \"http://x/\", \"colour\": 1}",
                       "colour: unknown key");
    /* kind */
    expect_probe_error("{\"url\": \"http://x/\"}", "kind: missing");
    expect_probe_error("{\"kind\": \"icmp\", \"address\": \"10.0.0.1:1\"}",
                       "kind: must be \"http\", \"sip\" or \"tcp\"");
    /* required per kind */
    expect_probe_error("{\"kind\": \"http\"}", "url: missing (required for an http probe)");
    expect_probe_error("{\"kind\": \"sip\"}", "address: missing (required for a sip probe)");
    expect_probe_error("{\"kind\": \"tcp\"}", "address: missing (required for a tcp probe)");
    /* values */
    expect_probe_error("{\"kind\": \"tcp\", \"address\": \"edge1:443\"}",
                       "address: invalid address \"edge1:443\" (expected IPv4 a.b.c.d:port, "
                       "port 1-65535)");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", \"transport\": \"sctp\"}",
                       "transport: must be \"udp\", \"tcp\" or \"tls\"");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", "
                       "\"request_uri\": \"tel:+15551234\"}",
                       "request_uri: invalid SIP URI \"tel:+15551234\" (expected sip: or sips: "
                       "and no spaces)");
    expect_probe_error("{\"kind\": \"http\", \"url\": \"http://x/\", \"expect_status\": [200, 99]}",
                       "expect_status[1]: must be between 100 and 599");
    expect_probe_error("{\"kind\": \"http\", \"url\": \"http://x/\", \"expect_status\": []}",
                       "expect_status: needs 1 to 16 entries (has 0)");
    expect_probe_error("{\"kind\": \"http\", \"url\": \"http://x/\", \"expect_status\": [\"2xx\"]}",
                       "expect_status[0]: expected an integer");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", "
                       "\"alive_codes\": [200, \"7xx\"]}",
                       "alive_codes[1]: invalid class \"7xx\" (expected \"2xx\" to \"6xx\")");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", "
                       "\"alive_codes\": [700]}",
                       "alive_codes[0]: must be between 100 and 699");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", "
                       "\"alive_codes\": [\"4xx\", \"4XX\"]}",
                       "alive_codes[1]: duplicate class \"4xx\"");
    expect_probe_error("{\"kind\": \"sip\", \"address\": \"10.0.0.1:5060\", "
                       "\"alive_codes\": [true]}",
                       "alive_codes[0]: expected an integer 100 to 699 or a class \"2xx\" to "
                       "\"6xx\"");
    expect_probe_error("{\"kind\": \"http\", \"url\": \"http://x/\", \"verify_tls\": \"no\"}",
                       "verify_tls: expected a boolean");
    expect_probe_error("{\"kind\": \"tcp\", \"address\": \"10.0.0.1:80\", \"timeout_ms\": 1500}",
                       "timeout_ms: must be at most probe.interval_ms (1500 > 1000)");
    /* TLS material */
    snprintf(want, sizeof want, "{\"kind\": \"http\", \"url\": \"https://x/\", "
                                "\"client_cert\": \"%s/client.pem\"}", tmpdir);
    expect_probe_error(want, "client_key: missing (required with client_cert)");
    snprintf(want, sizeof want, "{\"kind\": \"sip\", \"address\": \"10.0.0.1:5061\", "
                                "\"transport\": \"tls\", \"client_key\": \"%s/client.key\"}",
             tmpdir);
    expect_probe_error(want, "client_cert: missing (required with client_key)");
    char probe[300];
    snprintf(probe, sizeof probe, "{\"kind\": \"http\", \"url\": \"https://x/\", "
                                  "\"ca_file\": \"%s/absent.pem\"}", tmpdir);
    snprintf(want, sizeof want, "ca_file: cannot read \"%s/absent.pem\": No such file or "
                                "directory", tmpdir);
    expect_probe_error(probe, want);
    snprintf(probe, sizeof probe, "{\"kind\": \"http\", \"url\": \"https://x/\", "
                                  "\"ca_file\": \"%s\"}", tmpdir);
    snprintf(want, sizeof want, "ca_file: cannot read \"%s\": not a regular file", tmpdir);
    expect_probe_error(probe, want);
}

static void test_probe_count(void **state)
{
    (void)state;
    const char *tcp = "{\"kind\": \"tcp\", \"address\": \"10.0.0.1:80\"}";
    char four[300], five[300];
    snprintf(four, sizeof four, "[%s, %s, %s, %s]", tcp, tcp, tcp, tcp);
    snprintf(five, sizeof five, "[%s, %s, %s, %s, %s]", tcp, tcp, tcp, tcp, tcp);

    cJSON *d = doc("minimal.json");
    set(d, "sites[0].edges[0].probes", four);
    expect_only(d, "sites[0].edges[0].probes: too many probes: health_url counts as one (max 4 "
                   "in all)");

    d = doc("minimal.json");
    set(d, "sites[0].edges[0].health_url", NULL);
    set(d, "sites[0].edges[0].probes", five);
    expect_only(d, "sites[0].edges[0].probes: needs 1 to 4 entries (has 5)");

    d = doc("minimal.json");
    set(d, "sites[0].edges[0].probes", "[]");
    expect_only(d, "sites[0].edges[0].probes: needs 1 to 4 entries (has 0)");

    d = doc("minimal.json");
    set(d, "sites[0].edges[0].probes", "{}");
    expect_only(d, "sites[0].edges[0].probes: expected an array");

    d = doc("minimal.json");
    set(d, "sites[0].edges[0].health_url", NULL);
    set(d, "sites[0].edges[0].probes", four);
    assert_int_equal(parse_doc(d), 0);
    assert_int_equal(cfg.sites[0].edges[0].n_probes, 4);
}

static void test_site_rules(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "sites[0].rule", "{\"at_least\": 3}");
    expect_only(d, "sites[0].rule.at_least: must be at most the number of edges (3 > 2)");
    /* a failed parse keeps nothing allocated */
    assert_null(cfg.sites);
    assert_int_equal(cfg.n_sites, 0);

    d = doc("full.json");
    set(d, "sites[0].rule", "{\"at_least\": 0}");
    expect_only(d, "sites[0].rule.at_least: must be between 1 and 256");

    d = doc("full.json");
    set(d, "sites[0].rule", "{}");
    expect_only(d, "sites[0].rule.at_least: missing");

    d = doc("full.json");
    set(d, "sites[0].rule", "{\"at_least\": 1, \"of\": 2}");
    expect_only(d, "sites[0].rule.of: unknown key");

    d = doc("full.json");
    set(d, "sites[0].rule", "\"most\"");
    expect_only(d, "sites[0].rule: must be \"any\", \"all\" or {\"at_least\": k}");

    d = doc("full.json");
    set(d, "sites[0].rule", "{\"at_least\": 2}");
    assert_int_equal(parse_doc(d), 0);
    assert_int_equal(cfg.sites[0].rule, DW_RULE_AT_LEAST);

    d = doc("full.json");
    set(d, "sites[0].combine", "\"genesys\"");
    expect_only(d, "sites[0].combine: must be \"probes\", \"probes_and_genesys\" or "
                   "\"probes_or_genesys\"");

    /* site-a has every genesys_edge_id, site-b none */
    d = doc("full.json");
    set(d, "sites[0].combine", "\"probes_or_genesys\"");
    assert_int_equal(parse_doc(d), 0);
    assert_int_equal(cfg.sites[0].combine, DW_COMBINE_OR_GENESYS);

    d = doc("full.json");
    set(d, "sites[1].combine", "\"probes_and_genesys\"");
    set(d, "sites[1].edges[0].genesys_edge_id", "\"b1\"");
    expect_only(d, "sites[1].edges[1].genesys_edge_id: required when sites[1].combine uses "
                   "genesys");
}

static void test_detection_numbers(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "genesys.cloud_ttl_ms", "10000");
    expect_only(d, "genesys.cloud_ttl_ms: must be greater than genesys.poll_interval_ms "
                   "(10000 <= 10000)");

    d = doc("full.json");
    set(d, "genesys.cloud_grace_ms", "86400001");
    expect_only(d, "genesys.cloud_grace_ms: must be between 0 and 86400000");

    d = doc("full.json");
    set(d, "genesys.rate_budget_per_min", "301");
    expect_only(d, "genesys.rate_budget_per_min: must be between 1 and 300");

    d = doc("full.json");
    set(d, "genesys.max_concurrent_requests", "33");
    expect_only(d, "genesys.max_concurrent_requests: must be between 1 and 32");

    d = doc("full.json");
    set(d, "cluster.history_retention_days", "0");
    expect_only(d, "cluster.history_retention_days: must be between 1 and 3650");

    d = doc("full.json");
    set(d, "cluster.history_max_rows", "999");
    expect_only(d, "cluster.history_max_rows: must be between 1000 and 10000000");

    d = doc("full.json");
    set(d, "cluster.min_submit_interval_ms", "4000");
    expect_only(d, "cluster.min_submit_interval_ms: must be less than "
                   "cluster.refresh_interval_ms (4000 >= 4000)");

    d = doc("full.json");
    set(d, "tilt", "{\"stall_ms\": 0}");
    expect_only(d, "tilt.stall_ms: must be between 1 and 86400000");

    d = doc("full.json");
    set(d, "tilt", "{\"abstain\": 1000}");
    expect_only(d, "tilt.abstain: unknown key");

    d = doc("full.json");
    set(d, "tilt", "[]");
    expect_only(d, "tilt: expected an object");

    d = doc("full.json");
    set(d, "node.metrics_address", "\"localhost:9100\"");
    expect_only(d, "node.metrics_address: invalid address \"localhost:9100\" (expected IPv4 "
                   "a.b.c.d:port, port 1-65535)");

    /* node 2 listens on 10.0.2.10:7001 (raft) and :8001 (peer) */
    d = doc("full.json");
    set(d, "node.metrics_address", "\"10.0.2.10:7001\"");
    expect_only(d, "node.metrics_address: \"10.0.2.10:7001\" collides with this node's "
                   "cluster.members[1].raft_address \"10.0.2.10:7001\"");

    d = doc("full.json");
    set(d, "node.metrics_address", "\"0.0.0.0:8001\"");
    expect_only(d, "node.metrics_address: \"0.0.0.0:8001\" collides with this node's "
                   "cluster.members[1].peer_address \"10.0.2.10:8001\"");

    /* another member's address is another host */
    d = doc("full.json");
    set(d, "node.metrics_address", "\"10.0.1.10:7001\"");
    assert_int_equal(parse_doc(d), 0);
}

/* A document with n_sites sites of per_site Edges each, built with cJSON. */
static cJSON *big_doc(int n_sites, int per_site)
{
    cJSON *d = doc("minimal.json");
    cJSON *sites = cJSON_CreateArray();
    char id[32], url[64];
    for (int s = 0; s < n_sites; s++) {
        cJSON *site = cJSON_CreateObject(), *edges = cJSON_CreateArray();
        /* the fixture's failover group points at site-a */
        if (s)
            snprintf(id, sizeof id, "site-%d", s);
        else
            snprintf(id, sizeof id, "site-a");
        cJSON_AddStringToObject(site, "id", id);
        cJSON_AddItemToObject(site, "edges", edges);
        for (int e = 0; e < per_site; e++) {
            cJSON *edge = cJSON_CreateObject();
            snprintf(id, sizeof id, "edge-%d-%d", s, e);
            snprintf(url, sizeof url, "https://10.%d.%d.%d/health", s / 256, s % 256, e % 256);
            cJSON_AddStringToObject(edge, "id", id);
            cJSON_AddStringToObject(edge, "genesys_edge_id", id);
            cJSON_AddStringToObject(edge, "health_url", url);
            cJSON_AddItemToArray(edges, edge);
        }
        cJSON_AddItemToArray(sites, site);
    }
    cJSON_ReplaceItemInObjectCaseSensitive(d, "sites", sites);
    return d;
}

static void test_limits(void **state)
{
    (void)state;
    /* 10,000 Edges parse with defaults applied; tests/bench/config times it */
    cJSON *d = big_doc(100, 100);
    char *text = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    int rc = parse_text(text);
    free(text);
    if (rc != 0)
        dump_errors();
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.n_sites, 100);
    assert_string_equal(cfg.sites[99].edges[99].id, "edge-99-99");
    assert_int_equal(cfg.sites[99].edges[99].n_probes, 1);

    d = big_doc(DW_MAX_SITES + 1, 1);
    char want[100];
    snprintf(want, sizeof want, "sites: needs 1 to %d entries (has %d)", DW_MAX_SITES,
             DW_MAX_SITES + 1);
    expect_only(d, want);

    d = big_doc(1, DW_MAX_EDGES + 1);
    snprintf(want, sizeof want, "sites[0].edges: needs 1 to %d entries (has %d)", DW_MAX_EDGES,
             DW_MAX_EDGES + 1);
    expect_only(d, want);

    int n_sites = DW_MAX_EDGES_TOTAL / DW_MAX_EDGES + 1;
    d = big_doc(n_sites, DW_MAX_EDGES);
    snprintf(want, sizeof want, "sites: too many edges in all (%d, max %d)",
             n_sites * DW_MAX_EDGES, DW_MAX_EDGES_TOTAL);
    expect_only(d, want);

    /* a duplicate among thousands is still found, with both places */
    d = big_doc(50, 100);
    set(d, "sites[49].edges[99].id", "\"edge-3-7\"");
    expect_only(d, "sites[49].edges[99].id: duplicate edge id \"edge-3-7\" (first at "
                   "sites[3].edges[7].id)");
}

/* A JSON array of n trunk base ids "<prefix>NN" as text, for set(). */
static char *tb_ids(const char *prefix, int n)
{
    cJSON *a = cJSON_CreateArray();
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%s%02d", prefix, i);
        cJSON_AddItemToArray(a, cJSON_CreateString(id));
    }
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    assert_non_null(text);
    return text;
}

/* A target holds up to DW_MAX_TRUNK_BASES (64) trunk bases: a 50-base failover fits. */
static void test_trunk_base_limit(void **state)
{
    (void)state;
    assert_true(DW_MAX_TRUNK_BASES >= 50);
    cJSON *d = doc("minimal.json");
    char *a = tb_ids("tbA", 50), *c = tb_ids("tbC", 50);
    set(d, "failover_groups[0].targets[0].trunk_base_ids", a);
    set(d, "failover_groups[0].targets[1].trunk_base_ids", c);
    free(a);
    free(c);
    int rc = parse_doc(d);
    if (rc != 0)
        dump_errors();
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.groups[0].targets[0].n_trunk_bases, 50);
    assert_string_equal(cfg.groups[0].targets[1].trunk_base_ids[49], "tbC49");

    d = doc("minimal.json");
    a = tb_ids("tbA", DW_MAX_TRUNK_BASES + 1);
    set(d, "failover_groups[0].targets[1].trunk_base_ids", a);
    free(a);
    char want[120];
    snprintf(want, sizeof want, "failover_groups[0].targets[1].trunk_base_ids: needs 1 to %d "
             "entries (has %d)", DW_MAX_TRUNK_BASES, DW_MAX_TRUNK_BASES + 1);
    expect_only(d, want);
}


/* A node's own way to an Edge: node-local, applied to the health_url probe, never committed. */
static void test_probe_overrides(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "node.probe_overrides", "{\"edge-b1\": {\"health_url\": \"http://192.0.2.7/h\"},"
                                   "\"gone\": {\"health_url\": \"http://192.0.2.8/h\"}}");
    cJSON *cluster = dw_config_cluster_doc(d);
    char *ct = cJSON_PrintUnformatted(cluster);
    assert_null(strstr(ct, "192.0.2.7"));
    free(ct);
    cJSON_Delete(cluster);
    assert_int_equal(parse_doc(d), 0);
    assert_string_equal(cfg.sites[1].edges[0].health_url, "http://192.0.2.7/h");
    assert_string_equal(cfg.sites[1].edges[0].probes[0].url, "http://192.0.2.7/h");
    assert_string_equal(cfg.sites[1].edges[1].health_url, "http://10.2.0.6:8080/health");
    assert_non_null(cfg.override_unmatched);
    assert_string_equal(cfg.override_unmatched, "gone");

    d = doc("full.json");
    set(d, "node.probe_overrides", "{\"edge-b1\": {\"url\": \"http://192.0.2.7/h\"}}");
    expect_only(d, "node.probe_overrides.edge-b1: expected an Edge id with {\"health_url\": URL}");
    d = doc("full.json");
    set(d, "node.probe_overrides", "{\"edge-b1\": {\"health_url\": \"ftp://x\"}}");
    assert_int_equal(parse_doc(d), -1);
    assert_non_null(strstr(errs.msg[0], "node.probe_overrides.edge-b1.health_url"));
}

/* ---- target actions ---- */

static void test_target_actions(void **state)
{
    (void)state;
    cJSON *d = doc("full.json");
    set(d, "failover_groups[0].targets[0].outbound_routes",
        "[{\"site_id\": \"gsite-1\", \"route_id\": \"route-1\", \"mode\": \"order\"},"
        " {\"site_id\": \"gsite-1\", \"route_id\": \"route-2\", \"mode\": \"enabled\"}]");
    set(d, "failover_groups[0].targets[0].drain_edges", "true");
    set(d, "failover_groups[0].targets[0].drain_wait_s", "0");
    if (parse_doc(d) != 0) {
        dump_errors();
        fail();
    }
    const struct dw_target *t = &cfg.groups[0].targets[0];
    assert_int_equal(t->n_routes, 2);
    assert_string_equal(t->routes[0].site_id, "gsite-1");
    assert_string_equal(t->routes[0].route_id, "route-1");
    assert_int_equal(t->routes[0].mode, DW_ROUTE_ORDER);
    assert_string_equal(t->routes[1].route_id, "route-2");
    assert_int_equal(t->routes[1].mode, DW_ROUTE_ENABLED);
    assert_true(t->drain_edges);
    assert_int_equal(t->drain_wait_s, 0);
    /* the defaults: trunk bases only */
    t = &cfg.groups[0].targets[1];
    assert_int_equal(t->n_routes, 0);
    assert_false(t->drain_edges);
    assert_int_equal(t->drain_wait_s, 300);
}

static void test_target_actions_errors(void **state)
{
    (void)state;
    static const struct {
        const char *path, *value, *path2, *value2, *error;
    } cases[] = {
        { "failover_groups[0].targets[1].outbound_routes",
          "[{\"site_id\": \"s\", \"route_id\": \"r\", \"mode\": \"first\"}]", NULL, NULL,
          "failover_groups[0].targets[1].outbound_routes[0].mode: must be \"order\" or "
          "\"enabled\"" },
        { "failover_groups[0].targets[1].outbound_routes",
          "[{\"site_id\": \"s\", \"mode\": \"order\"}]", NULL, NULL,
          "failover_groups[0].targets[1].outbound_routes[0].route_id: missing" },
        { "failover_groups[0].targets[1].outbound_routes",
          "[{\"site_id\": \"s\", \"route_id\": \"r\", \"mode\": \"order\", \"order\": 1}]", NULL,
          NULL, "failover_groups[0].targets[1].outbound_routes[0].order: unknown key" },
        { "failover_groups[0].targets[1].outbound_routes",
          "[{\"site_id\": \"s\", \"route_id\": \"r\", \"mode\": \"order\"},"
          " {\"site_id\": \"s\", \"route_id\": \"r\", \"mode\": \"enabled\"}]", NULL, NULL,
          "failover_groups[0].targets[1].outbound_routes[1]: route \"r\" of site \"s\" is "
          "already listed at [0]" },
        { "failover_groups[0].targets[1].outbound_routes", "[]", NULL, NULL,
          "failover_groups[0].targets[1].outbound_routes: needs 1 to 4 entries (has 0)" },
        { "failover_groups[0].targets[1].outbound_routes", "{\"site_id\": \"s\"}", NULL, NULL,
          "failover_groups[0].targets[1].outbound_routes: expected an array" },
        { "failover_groups[0].targets[0].outbound_routes",
          "[{\"site_id\": \"s\", \"route_id\": \"r\", \"mode\": \"order\"}]",
          "failover_groups[0].targets[1].outbound_routes",
          "[{\"site_id\": \"s\", \"route_id\": \"r\", \"mode\": \"enabled\"}]",
          "failover_groups[0].targets[1].outbound_routes[0]: route \"r\" is also listed by "
          "target \"premise-a\"; a route with mode \"enabled\" belongs to one target of its "
          "group" },
        { "failover_groups[0].targets[2].drain_edges", "true", NULL, NULL,
          "failover_groups[0].targets[2].drain_edges: needs \"site\": a target without a site "
          "has no Edges to drain" },
        { "failover_groups[0].targets[1].drain_edges", "true", NULL, NULL,
          "failover_groups[0].targets[1].drain_edges: no Edge of site \"site-b\" has a "
          "genesys_edge_id" },
        { "failover_groups[0].targets[0].drain_edges", "1", NULL, NULL,
          "failover_groups[0].targets[0].drain_edges: expected a boolean" },
        { "failover_groups[0].targets[0].drain_wait_s", "60", NULL, NULL,
          "failover_groups[0].targets[0].drain_wait_s: only valid with \"drain_edges\": true" },
        { "failover_groups[0].targets[0].drain_edges", "true",
          "failover_groups[0].targets[0].drain_wait_s", "3601",
          "failover_groups[0].targets[0].drain_wait_s: must be between 0 and 3600" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *d = doc("full.json");
        set(d, cases[i].path, cases[i].value);
        if (cases[i].path2)
            set(d, cases[i].path2, cases[i].value2);
        expect_only(d, cases[i].error);
    }
}

/* notifications: node-local, channels by name, every error at its JSON path. */
static void test_notifications(void **state)
{
    (void)state;
    char value[1024], msg[400];

    write_file("slack.secret", "https://hooks.slack.example/services/T/B/X\n");
    cJSON *d = doc("full.json");
    snprintf(value, sizeof value,
             "{\"cluster\": \"prod-eu\", \"channels\": {"
             "\"slack\": {\"webhook_url_file\": \"%s/slack.secret\"},"
             "\"oncall\": {\"kind\": \"pagerduty\", \"routing_key_file\": \"%s/genesys.secret\"},"
             "\"audit\": {\"kind\": \"webhook\", \"url\": \"https://audit.example/drwatch\","
             " \"secret_file\": \"%s/genesys.secret\", \"timeout_ms\": 3000},"
             "\"hook\": {\"command\": [\"/bin/sh\", \"-c\", \"cat\"]}}}",
             tmpdir, tmpdir, tmpdir);
    set(d, "notifications", value);
    cJSON *cluster = dw_config_cluster_doc(d);
    assert_null(cJSON_GetObjectItem(cluster, "notifications")); /* node-local */
    cJSON_Delete(cluster);
    if (parse_doc(d) != 0) {
        dump_errors();
        fail();
    }
    assert_string_equal(cfg.notify.cluster, "prod-eu");
    assert_int_equal(cfg.notify.max_age_ms, 3600000);
    assert_int_equal(cfg.notify.n_channels, 4);
    assert_string_equal(cfg.notify.channels[0].name, "slack");
    assert_int_equal(cfg.notify.channels[0].kind, DW_NOTIFY_SLACK);
    assert_int_equal(cfg.notify.channels[0].timeout_ms, 10000);
    assert_string_equal(cfg.notify.channels[1].name, "oncall");
    assert_int_equal(cfg.notify.channels[1].kind, DW_NOTIFY_PAGERDUTY);
    assert_string_equal(cfg.notify.channels[1].url, "https://events.pagerduty.com/v2/enqueue");
    assert_int_equal(cfg.notify.channels[2].kind, DW_NOTIFY_WEBHOOK);
    assert_int_equal(cfg.notify.channels[2].timeout_ms, 3000);
    assert_int_equal(cfg.notify.channels[3].kind, DW_NOTIFY_HOOK);
    assert_int_equal(cfg.notify.channels[3].n_command, 3);
    assert_string_equal(cfg.notify.channels[3].command[2], "cat");

    d = doc("full.json");
    set(d, "notifications", "{\"channels\": {\"ops\": {\"url\": \"https://x.example/\"}}}");
    expect_only(d, "notifications.channels.ops.kind: missing (required unless the channel is "
                   "named after its kind: \"slack\", \"pagerduty\", \"webhook\" or \"hook\")");
    d = doc("full.json");
    set(d, "notifications", "{\"channels\": {\"ops\": {\"kind\": \"email\"}}}");
    expect_only(d, "notifications.channels.ops.kind: must be \"slack\", \"pagerduty\", "
                   "\"webhook\" or \"hook\"");
    d = doc("full.json");
    set(d, "notifications", "{\"channels\": {\"slack\": {\"url\": \"https://x.example/\"}}}");
    assert_int_equal(parse_doc(d), -1);
    assert_true(has_error("notifications.channels.slack.webhook_url_file: missing"));
    assert_true(has_error("notifications.channels.slack.url: unknown key"));
    d = doc("full.json");
    set(d, "notifications", "{\"channels\": {\"hook\": {\"command\": [\"notify.sh\"]}}}");
    expect_only(d, "notifications.channels.hook.command: the program must be an absolute path "
                   "(\"notify.sh\")");
    d = doc("full.json");
    set(d, "notifications", "{\"channels\": {\"a b\": {\"kind\": \"hook\"}}}");
    expect_only(d, "notifications.channels.a b: invalid channel name (expected 1 to 63 of "
                   "[A-Za-z0-9._-])");
    d = doc("full.json");
    set(d, "notifications", "{\"max_age_ms\": 0}");
    assert_int_equal(parse_doc(d), -1);
    assert_non_null(strstr(errs.msg[0], "notifications.max_age_ms: must be between"));
    /* the secret is checked, and never echoed */
    d = doc("full.json");
    snprintf(value, sizeof value, "{\"channels\": {\"slack\": {\"webhook_url_file\": "
             "\"%s/genesys.secret\"}}}", tmpdir);
    set(d, "notifications", value);
    snprintf(msg, sizeof msg, "notifications.channels.slack.webhook_url_file: \"%s/genesys.secret\" "
             "does not hold an http:// or https:// URL", tmpdir);
    expect_only(d, msg);
    d = doc("full.json");
    snprintf(value, sizeof value, "{\"channels\": {\"pagerduty\": {\"routing_key_file\": "
             "\"%s/empty.secret\"}}}", tmpdir);
    set(d, "notifications", value);
    snprintf(msg, sizeof msg, "notifications.channels.pagerduty.routing_key_file: \"%s/empty.secret\" "
             "is empty", tmpdir);
    expect_only(d, msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_peer_secrets),
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
        cmocka_unit_test(test_url_credentials_refused_without_echo),
        cmocka_unit_test(test_node_not_member),
        cmocka_unit_test(test_target_site_unknown),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_read_secret),
        cmocka_unit_test(test_cross_field),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_too_many_errors),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_probes),
        cmocka_unit_test(test_detection_defaults),
        cmocka_unit_test(test_bad_probe),
        cmocka_unit_test(test_probe_count),
        cmocka_unit_test(test_site_rules),
        cmocka_unit_test(test_detection_numbers),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_trunk_base_limit),
        cmocka_unit_test(test_probe_overrides),
        cmocka_unit_test(test_target_actions),
        cmocka_unit_test(test_target_actions_errors),
        cmocka_unit_test(test_notifications),
        cmocka_unit_test(test_split_files),
        cmocka_unit_test(test_relative_secrets),
        cmocka_unit_test(test_secret_mode),
        cmocka_unit_test(test_check_places),
    };
    int rc = cmocka_run_group_tests(tests, setup_dir, teardown_dir);
    dw_config_free(&cfg);
    return rc;
}
