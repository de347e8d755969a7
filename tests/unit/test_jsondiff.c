/* JSON structural diff: paths, id-matched and index arrays, types, text form, sorted copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "drwatch/jsondiff.h"

/* Each difference as one line "path|OLD|NEW", absent sides "-", in callback order. */
struct seen {
    char text[4096];
    size_t len;
};

static void record(void *data, const char *path, const cJSON *old_v, const cJSON *new_v)
{
    struct seen *s = data;
    char *o = old_v != NULL ? cJSON_PrintUnformatted(old_v) : NULL;
    char *n = new_v != NULL ? cJSON_PrintUnformatted(new_v) : NULL;
    int w = snprintf(s->text + s->len, sizeof s->text - s->len, "%s|%s|%s\n", path,
                     o != NULL ? o : "-", n != NULL ? n : "-");
    assert_true(w > 0 && (size_t)w < sizeof s->text - s->len);
    s->len += (size_t)w;
    free(o);
    free(n);
}

/* Diffs two documents given as JSON text; checks the count against the recorded lines. */
static void diff(const char *a_text, const char *b_text, const char *want)
{
    cJSON *a = cJSON_Parse(a_text), *b = cJSON_Parse(b_text);
    struct seen s = {.len = 0};
    int lines = 0;

    assert_non_null(a);
    assert_non_null(b);
    s.text[0] = '\0';
    int n = dw_json_diff(a, b, record, &s);
    for (const char *p = want; *p; p++)
        lines += *p == '\n';
    assert_string_equal(s.text, want);
    assert_int_equal(n, lines);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void test_equal_documents(void **state)
{
    (void)state;
    /* key order, and 1 against 1.0, are no difference */
    diff("{\"a\":1,\"b\":{\"c\":[1,2,{\"d\":null}],\"e\":true},\"f\":\"x\"}",
         "{\"f\":\"x\",\"b\":{\"e\":true,\"c\":[1.0,2,{\"d\":null}]},\"a\":1}", "");
    diff("[]", "[]", "");
    assert_int_equal(dw_json_diff(NULL, NULL, record, NULL), 0);
}

static void test_nested_change(void **state)
{
    (void)state;
    diff("{\"cluster\":{\"election_timeout_ms\":1000,\"name\":\"x\"}}",
         "{\"cluster\":{\"election_timeout_ms\":1500,\"name\":\"x\"}}",
         "cluster.election_timeout_ms|1000|1500\n");
    diff("{\"a\":{\"b\":{\"c\":\"x\"}},\"z\":false}", "{\"a\":{\"b\":{\"c\":\"y\"}},\"z\":true}",
         "a.b.c|\"x\"|\"y\"\n"
         "z|false|true\n");
}

static void test_added_and_removed_keys(void **state)
{
    (void)state;
    /* in key order, whichever side has the key */
    diff("{\"b\":1,\"d\":{\"x\":1},\"node\":{\"old\":2}}",
         "{\"a\":[1],\"b\":1,\"node\":{\"new\":3}}",
         "a|-|[1]\n"
         "d|{\"x\":1}|-\n"
         "node.new|-|3\n"
         "node.old|2|-\n");
}

static void test_id_matched_arrays(void **state)
{
    (void)state;
    /* matched by id whatever the position; one difference per element added or removed */
    diff("{\"sites\":[{\"id\":\"site-a\",\"edges\":[{\"id\":\"e1\",\"health_url\":\"http://a\"},"
         "{\"id\":\"e2\",\"health_url\":\"http://b\"}]},{\"id\":\"site-b\"}]}",
         "{\"sites\":[{\"id\":\"site-a\",\"edges\":[{\"id\":\"e1\",\"health_url\":\"http://A\"},"
         "{\"id\":\"e2\",\"health_url\":\"http://b\"}]},{\"id\":\"site-c\",\"x\":1}]}",
         "sites[site-a].edges[e1].health_url|\"http://a\"|\"http://A\"\n"
         "sites[site-b]|{\"id\":\"site-b\"}|-\n"
         "sites[site-c]|-|{\"id\":\"site-c\",\"x\":1}\n");
    /* an element inserted before the others moves no one */
    diff("{\"sites\":[{\"id\":\"b\"},{\"id\":\"c\"}]}",
         "{\"sites\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]}", "sites[a]|-|{\"id\":\"a\"}\n");
}

static void test_reordered_ids(void **state)
{
    (void)state;
    /* the order of failover targets matters: one difference, at the array, with the ids */
    diff("{\"failover_groups\":[{\"id\":\"g1\",\"targets\":[{\"id\":\"site-a-trunk\",\"w\":1},"
         "{\"id\":\"site-b-trunk\",\"w\":1}]}]}",
         "{\"failover_groups\":[{\"id\":\"g1\",\"targets\":[{\"id\":\"site-b-trunk\",\"w\":1},"
         "{\"id\":\"site-a-trunk\",\"w\":1}]}]}",
         "failover_groups[g1].targets|[\"site-a-trunk\",\"site-b-trunk\"]|"
         "[\"site-b-trunk\",\"site-a-trunk\"]\n");
    /* reordered and changed: the order first, then what changed in the elements */
    diff("{\"t\":[{\"id\":\"x\",\"w\":1},{\"id\":\"y\"},{\"id\":\"z\"}]}",
         "{\"t\":[{\"id\":\"y\"},{\"id\":\"x\",\"w\":2}]}",
         "t|[\"x\",\"y\",\"z\"]|[\"y\",\"x\"]\n"
         "t[x].w|1|2\n"
         "t[z]|{\"id\":\"z\"}|-\n");
}

static void test_index_arrays(void **state)
{
    (void)state;
    diff("{\"expect_status\":[200,204]}", "{\"expect_status\":[200,301,302]}",
         "expect_status[1]|204|301\n"
         "expect_status[2]|-|302\n");
    diff("{\"l\":[[1,2],3]}", "{\"l\":[[1]]}",
         "l[0][1]|2|-\n"
         "l[1]|3|-\n");
    /* objects without ids, and ids given twice, are matched by index too */
    diff("{\"o\":[{\"a\":1},{\"a\":2}]}", "{\"o\":[{\"a\":2}]}",
         "o[0].a|1|2\n"
         "o[1]|{\"a\":2}|-\n");
    diff("{\"o\":[{\"id\":\"x\",\"v\":1},{\"id\":\"x\",\"v\":2}]}",
         "{\"o\":[{\"id\":\"x\",\"v\":2},{\"id\":\"x\",\"v\":2}]}", "o[0].v|1|2\n");
}

static void test_type_change(void **state)
{
    (void)state;
    /* one difference where the types part, not one per leaf below */
    diff("{\"a\":{\"b\":1,\"c\":2},\"n\":1,\"s\":null,\"t\":true}",
         "{\"a\":[1,2],\"n\":\"1\",\"s\":0,\"t\":false}",
         "a|{\"b\":1,\"c\":2}|[1,2]\n"
         "n|1|\"1\"\n"
         "s|null|0\n"
         "t|true|false\n");
    diff("1", "\"1\"", "|1|\"1\"\n");
}

static void test_text_format(void **state)
{
    cJSON *a = cJSON_Parse("{\"a\":1,\"b\":{\"x\":[1,2]},\"c\":\"old\",\"long\":\"\"}");
    cJSON *b = cJSON_Parse("{\"a\":2,\"c\":\"old\",\"d\":{\"y\":true},\"long\":\"\"}");
    char big[300];

    (void)state;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cJSON_ReplaceItemInObject(b, "long", cJSON_CreateString(big));
    char *t = dw_json_diff_text(a, b, -1);
    assert_non_null(t);
    /* the long value: its quote and 116 x's, then "...": 120 chars */
    char want[1024];
    snprintf(want, sizeof want,
             "a: 1 -> 2\n"
             "b: removed (was {\"x\":[1,2]})\n"
             "d: added {\"y\":true}\n"
             "long: \"\" -> \"%.116s...\n",
             big);
    assert_string_equal(t, want);
    free(t);

    t = dw_json_diff_text(a, b, 2);
    assert_non_null(t);
    assert_string_equal(t, "a: 1 -> 2\n"
                           "b: removed (was {\"x\":[1,2]})\n"
                           "... and 2 more\n");
    free(t);

    /* exactly max_lines differences: no tail line */
    t = dw_json_diff_text(a, b, 4);
    assert_non_null(t);
    assert_non_null(strstr(t, "long: "));
    assert_null(strstr(t, "more"));
    free(t);

    t = dw_json_diff_text(a, a, 10);
    assert_non_null(t);
    assert_string_equal(t, "");
    free(t);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void test_text_cut_keeps_utf8_whole(void **state)
{
    /* "é" is two bytes; placed so that a plain cut at 117 bytes would split it */
    char s[200];
    (void)state;
    memset(s, 'x', 115);
    strcpy(s + 115, "\xc3\xa9yyyyyyyyyyyyyyyyyyyy");
    cJSON *a = cJSON_CreateString("");
    cJSON *b = cJSON_CreateString(s);
    char *t = dw_json_diff_text(a, b, 5);
    assert_non_null(t);
    char want[256];
    snprintf(want, sizeof want, "(root): \"\" -> \"%.115s...\n", s);
    assert_string_equal(t, want);
    free(t);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void test_sorted_copy(void **state)
{
    cJSON *doc = cJSON_Parse("{\"z\":1,\"a\":{\"y\":[{\"q\":1,\"b\":2},3,\"s\"],\"c\":null},"
                             "\"m\":[true,false],\"B\":\"upper\"}");
    (void)state;
    assert_non_null(doc);
    cJSON *s = dw_json_sorted(doc);
    assert_non_null(s);
    char *text = cJSON_PrintUnformatted(s);
    /* byte order: upper case first; arrays keep their order, their objects sorted too */
    assert_string_equal(text, "{\"B\":\"upper\",\"a\":{\"c\":null,\"y\":[{\"b\":2,\"q\":1},3,\"s\"]},"
                              "\"m\":[true,false],\"z\":1}");
    assert_int_equal(dw_json_diff(doc, s, record, NULL), 0);
    free(text);
    cJSON_Delete(s);

    /* the original is untouched */
    text = cJSON_PrintUnformatted(doc);
    assert_string_equal(text, "{\"z\":1,\"a\":{\"y\":[{\"q\":1,\"b\":2},3,\"s\"],\"c\":null},"
                              "\"m\":[true,false],\"B\":\"upper\"}");
    free(text);
    cJSON_Delete(doc);

    cJSON *scalar = cJSON_CreateNumber(7);
    s = dw_json_sorted(scalar);
    assert_non_null(s);
    assert_true(cJSON_IsNumber(s) && s->valuedouble == 7);
    cJSON_Delete(s);
    cJSON_Delete(scalar);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_documents),
        cmocka_unit_test(test_nested_change),
        cmocka_unit_test(test_added_and_removed_keys),
        cmocka_unit_test(test_id_matched_arrays),
        cmocka_unit_test(test_reordered_ids),
        cmocka_unit_test(test_index_arrays),
        cmocka_unit_test(test_type_change),
        cmocka_unit_test(test_text_format),
        cmocka_unit_test(test_text_cut_keeps_utf8_whole),
        cmocka_unit_test(test_sorted_copy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
