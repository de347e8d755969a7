/* What a step changes in Genesys: the order of the changes, route and Edge bodies, dry run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>

#include "drwatch/actions.h"

static struct dw_config cfg; /* large: keep off the stack */
static struct dw_edge edges[3];
static struct dw_site site;

/* Group 0: premise-b (site-b: Edges eb1, eb2 and one without a Genesys id) with tbB1, tbB2, a
 * route to order and one to enable, drain_edges; cloud with tbC only. */
static void make_config(void)
{
    memset(&cfg, 0, sizeof cfg);
    memset(edges, 0, sizeof edges);
    snprintf(site.id, sizeof site.id, "site-b");
    site.n_edges = 3;
    site.edges = edges;
    snprintf(edges[0].genesys_edge_id, DW_ID_MAX, "eb1");
    snprintf(edges[2].genesys_edge_id, DW_ID_MAX, "eb2");
    cfg.n_sites = 1;
    cfg.sites = &site;
    cfg.genesys.verify_interval_ms = 2000;
    cfg.genesys.verify_timeout_ms = 60000;
    cfg.n_groups = 1;
    struct dw_group *g = &cfg.groups[0];
    snprintf(g->id, sizeof g->id, "carrier-1");
    g->n_targets = 2;
    struct dw_target *t = &g->targets[0];
    snprintf(t->id, sizeof t->id, "premise-b");
    t->site = 0;
    t->n_trunk_bases = 2;
    snprintf(t->trunk_base_ids[0], DW_ID_MAX, "tbB1");
    snprintf(t->trunk_base_ids[1], DW_ID_MAX, "tbB2");
    t->n_routes = 2;
    t->routes[0] = (struct dw_route_action){"gs1", "r-order", DW_ROUTE_ORDER};
    t->routes[1] = (struct dw_route_action){"gs1", "r-enabled", DW_ROUTE_ENABLED};
    t->drain_edges = true;
    t->drain_wait_s = 120;
    t = &g->targets[1];
    snprintf(t->id, sizeof t->id, "cloud");
    t->site = -1;
    t->n_trunk_bases = 1;
    snprintf(t->trunk_base_ids[0], DW_ID_MAX, "tbC");
    t->drain_wait_s = 300;
}

static int setup(void **state)
{
    (void)state;
    make_config();
    return 0;
}

/* "E:eb1 T:tbB1 R:r-order ..." */
static void items_text(bool activate, int target, char *out, size_t len)
{
    struct dw_action_item items[DW_MAX_ACTION_ITEMS];
    int n = dw_action_items(&cfg, &cfg.groups[0].targets[target], activate, items,
                            DW_MAX_ACTION_ITEMS);
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%c:%s", i ? " " : "",
                              "ETR"[items[i].kind], items[i].id);
}

static void test_items_order(void **state)
{
    (void)state;
    char s[256];
    items_text(true, 0, s, sizeof s);
    assert_string_equal(s, "E:eb1 E:eb2 T:tbB1 T:tbB2 R:r-order R:r-enabled");
    items_text(false, 0, s, sizeof s);
    assert_string_equal(s, "R:r-enabled T:tbB1 T:tbB2 E:eb1 E:eb2");
    items_text(true, 1, s, sizeof s);
    assert_string_equal(s, "T:tbC");
    items_text(false, 1, s, sizeof s);
    assert_string_equal(s, "T:tbC");

    struct dw_action_item one[2];
    assert_int_equal(dw_action_items(&cfg, &cfg.groups[0].targets[0], true, one, 2), 6);
    assert_string_equal(one[1].id, "eb2");
}

static const char (*tbs)[DW_ID_MAX] = cfg.groups[0].targets[0].trunk_base_ids;

static char *route_put(const char *body, enum dw_route_mode mode, bool activate,
                       enum dw_change_rc want_rc)
{
    char *put = (char *)"unset", why[128] = "";
    long long v = -1;
    assert_int_equal(dw_route_change(body, strlen(body), mode, activate, tbs, 2, &put, &v, why,
                                     sizeof why), want_rc);
    if (want_rc == DW_CHANGE_OK)
        assert_int_equal(v, 7);
    else
        assert_true(why[0] != '\0');
    return put;
}

#define ROUTE(list, enabled)                                                                     \
    "{\"id\":\"r\",\"name\":\"R\",\"version\":7,\"distribution\":\"SEQUENTIAL\",\"enabled\":"    \
    enabled ",\"externalTrunkBases\":" list "}"

static void test_route_order(void **state)
{
    (void)state;
    char *put = route_put(ROUTE("[{\"id\":\"tbA\",\"name\":\"A\"},{\"id\":\"tbX\"},"
                                "{\"id\":\"tbB2\"},{\"id\":\"tbB1\"}]", "true"),
                          DW_ROUTE_ORDER, true, DW_CHANGE_OK);
    assert_non_null(put);
    /* the target's bases first in its order, the others after in theirs; the rest as read */
    assert_string_equal(put, ROUTE("[{\"id\":\"tbB1\"},{\"id\":\"tbB2\"},{\"id\":\"tbA\","
                                   "\"name\":\"A\"},{\"id\":\"tbX\"}]", "true"));
    free(put);
    put = route_put(ROUTE("[{\"id\":\"tbB1\"},{\"id\":\"tbB2\"},{\"id\":\"tbA\"}]", "true"),
                    DW_ROUTE_ORDER, true, DW_CHANGE_OK);
    assert_null(put); /* already so */
    put = route_put(ROUTE("[{\"id\":\"tbA\"},{\"id\":\"tbB1\"}]", "true"), DW_ROUTE_ORDER, true,
                    DW_CHANGE_REFUSED);
    assert_null(put); /* tbB2 missing: never added */
    put = route_put(ROUTE("[{\"id\":\"tbA\"},{\"id\":\"tbB1\"},{\"id\":\"tbB2\"}]", "true"),
                    DW_ROUTE_ORDER, false, DW_CHANGE_OK);
    assert_null(put); /* deactivate leaves the order alone */
    put = route_put(ROUTE("[{\"id\":\"tbA\"},{\"name\":\"no id\"}]", "true"), DW_ROUTE_ORDER,
                    true, DW_CHANGE_BAD);
    assert_null(put);
    put = route_put(ROUTE("{}", "true"), DW_ROUTE_ORDER, true, DW_CHANGE_BAD);
    assert_null(put);
    put = route_put("{\"version\":1.5,\"externalTrunkBases\":[]}", DW_ROUTE_ORDER, true,
                    DW_CHANGE_BAD);
    assert_null(put);
    put = route_put("[1]", DW_ROUTE_ORDER, true, DW_CHANGE_BAD);
    assert_null(put);
}

static void test_route_enabled(void **state)
{
    (void)state;
    char *put = route_put(ROUTE("[]", "true"), DW_ROUTE_ENABLED, false, DW_CHANGE_OK);
    assert_non_null(put);
    assert_string_equal(put, ROUTE("[]", "false"));
    free(put);
    put = route_put(ROUTE("[]", "false"), DW_ROUTE_ENABLED, true, DW_CHANGE_OK);
    assert_string_equal(put, ROUTE("[]", "true"));
    free(put);
    put = route_put(ROUTE("[]", "true"), DW_ROUTE_ENABLED, true, DW_CHANGE_OK);
    assert_null(put);
    put = route_put(ROUTE("[]", "\"yes\""), DW_ROUTE_ENABLED, true, DW_CHANGE_BAD);
    assert_null(put);
}

static void test_edge_service(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        enum dw_change_rc rc;
        bool in_service;
        const char *state;
    } cases[] = {
        { "{\"id\":\"e\",\"callDrainingState\":\"NONE\"}", DW_CHANGE_OK, true, "NONE" },
        { "{\"id\":\"e\",\"callDrainingState\":\"ACTIVE\"}", DW_CHANGE_OK, false, "ACTIVE" },
        { "{\"id\":\"e\",\"callDrainingState\":\"COMPLETE\"}", DW_CHANGE_OK, false, "COMPLETE" },
        { "{\"id\":\"e\"}", DW_CHANGE_OK, true, "NONE" },
        { "{\"id\":\"e\",\"callDrainingState\":3}", DW_CHANGE_BAD, false, "" },
        { "nonsense", DW_CHANGE_BAD, false, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool in = !cases[i].in_service;
        char st[40] = "", why[128] = "";
        assert_int_equal(dw_edge_service(cases[i].body, strlen(cases[i].body), &in, st,
                                         sizeof st, why, sizeof why), cases[i].rc);
        if (cases[i].rc == DW_CHANGE_OK) {
            assert_int_equal(in, cases[i].in_service);
            assert_string_equal(st, cases[i].state);
        } else {
            assert_true(why[0] != '\0');
        }
    }
    char *b = dw_edge_statuscode_body(false, 120);
    assert_string_equal(b, "{\"inService\":false,\"callDrainingWaitTimeSeconds\":120}");
    free(b);
    b = dw_edge_statuscode_body(true, 120);
    assert_string_equal(b, "{\"inService\":true}");
    free(b);
}

/* "METHOD path body" a line, the body compact JSON or null */
static char *plan_text(int target, const char *action)
{
    cJSON *out = cJSON_CreateArray();
    char err[128];
    assert_int_equal(dw_actions_plan(&cfg, 0, target, action, out, err, sizeof err), 0);
    size_t cap = 16384, o = 0;
    char *s = calloc(1, cap);
    for (const cJSON *r = out->child; r; r = r->next) {
        char *body = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "body"));
        o += (size_t)snprintf(s + o, cap - o, "%s %s %s\n",
                              cJSON_GetObjectItem(r, "method")->valuestring,
                              cJSON_GetObjectItem(r, "path")->valuestring + strlen(DW_GENESYS_PREFIX),
                              body);
        if (strcmp(cJSON_GetObjectItem(r, "method")->valuestring, "GET") != 0)
            assert_true(cJSON_IsString(cJSON_GetObjectItem(r, "note")));
        free(body);
    }
    cJSON_Delete(out);
    return s;
}

static void test_plan(void **state)
{
    (void)state;
    char *s = plan_text(0, "activate");
    assert_string_equal(s,
        "GET /eb1 null\n"
        "POST /eb1/statuscode {\"inService\":true}\n"
        "GET /eb1 null\n"
        "GET /eb2 null\n"
        "POST /eb2/statuscode {\"inService\":true}\n"
        "GET /eb2 null\n"
        "GET /trunkbasesettings/tbB1 null\n"
        "PUT /trunkbasesettings/tbB1 {\"version\":\"<as read>\",\"properties\":{\"trunk_enabled\":"
        "{\"value\":{\"instance\":true}}}}\n"
        "GET /trunkbasesettings/tbB1 null\n"
        "GET /trunkbasesettings/tbB2 null\n"
        "PUT /trunkbasesettings/tbB2 {\"version\":\"<as read>\",\"properties\":{\"trunk_enabled\":"
        "{\"value\":{\"instance\":true}}}}\n"
        "GET /trunkbasesettings/tbB2 null\n"
        "GET /sites/gs1/outboundroutes/r-order null\n"
        "PUT /sites/gs1/outboundroutes/r-order {\"version\":\"<as read>\",\"externalTrunkBases\":"
        "[{\"id\":\"tbB1\"},{\"id\":\"tbB2\"},\"<the route's other trunk bases, as read, in their "
        "order>\"]}\n"
        "GET /sites/gs1/outboundroutes/r-order null\n"
        "GET /sites/gs1/outboundroutes/r-enabled null\n"
        "PUT /sites/gs1/outboundroutes/r-enabled {\"version\":\"<as read>\",\"enabled\":true}\n"
        "GET /sites/gs1/outboundroutes/r-enabled null\n");
    free(s);
    s = plan_text(0, "deactivate");
    assert_string_equal(s,
        "GET /sites/gs1/outboundroutes/r-enabled null\n"
        "PUT /sites/gs1/outboundroutes/r-enabled {\"version\":\"<as read>\",\"enabled\":false}\n"
        "GET /sites/gs1/outboundroutes/r-enabled null\n"
        "GET /trunkbasesettings/tbB1 null\n"
        "PUT /trunkbasesettings/tbB1 {\"version\":\"<as read>\",\"properties\":{\"trunk_enabled\":"
        "{\"value\":{\"instance\":false}}}}\n"
        "GET /trunkbasesettings/tbB1 null\n"
        "GET /trunkbasesettings/tbB2 null\n"
        "PUT /trunkbasesettings/tbB2 {\"version\":\"<as read>\",\"properties\":{\"trunk_enabled\":"
        "{\"value\":{\"instance\":false}}}}\n"
        "GET /trunkbasesettings/tbB2 null\n"
        "GET /eb1 null\n"
        "POST /eb1/statuscode {\"inService\":false,\"callDrainingWaitTimeSeconds\":120}\n"
        "GET /eb1 null\n"
        "GET /eb2 null\n"
        "POST /eb2/statuscode {\"inService\":false,\"callDrainingWaitTimeSeconds\":120}\n"
        "GET /eb2 null\n");
    free(s);
    s = plan_text(0, "verify");
    assert_string_equal(s, "GET /trunks?trunkBase.id=tbB1&pageSize=100 null\n"
                           "GET /trunks?trunkBase.id=tbB2&pageSize=100 null\n");
    free(s);
    s = plan_text(1, "deactivate");
    assert_string_equal(s,
        "GET /trunkbasesettings/tbC null\n"
        "PUT /trunkbasesettings/tbC {\"version\":\"<as read>\",\"properties\":{\"trunk_enabled\":"
        "{\"value\":{\"instance\":false}}}}\n"
        "GET /trunkbasesettings/tbC null\n");
    free(s);

    cJSON *out = cJSON_CreateArray();
    char err[128];
    assert_int_equal(dw_actions_plan(&cfg, 0, 2, "activate", out, err, sizeof err), -1);
    assert_int_equal(dw_actions_plan(&cfg, 1, 0, "activate", out, err, sizeof err), -1);
    assert_int_equal(dw_actions_plan(&cfg, 0, 0, "switch", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown action"));
    assert_int_equal(cJSON_GetArraySize(out), 0);
    cJSON_Delete(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items_order),
        cmocka_unit_test(test_route_order),
        cmocka_unit_test(test_route_enabled),
        cmocka_unit_test(test_edge_service),
        cmocka_unit_test(test_plan),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
