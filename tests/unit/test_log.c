/* The log line encoder (logfmt) and the journald writer's decision and fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "drwatch/log.h"

#define TS 1796246400123LL /* 2026-12-02T21:20:00.123Z */

/* A strict logfmt reader: key=value pairs split by single spaces, values bare or quoted with
 * \" \\ \n \r \t \xNN escapes. Returns the number of pairs, -1 when the line is malformed. */
struct pair {
    char key[32];
    char val[4096];
};

static int parse(const char *line, struct pair *out, int max)
{
    const char *p = line;
    int n = 0;

    while (*p && *p != '\n') {
        if (n > 0) {
            if (*p != ' ')
                return -1;
            p++;
        }
        if (n >= max)
            return -1;
        size_t k = 0;
        while (*p && *p != '=' && *p != ' ' && *p != '"' && k < sizeof out[n].key - 1)
            out[n].key[k++] = *p++;
        out[n].key[k] = '\0';
        if (k == 0 || *p++ != '=')
            return -1;
        size_t v = 0;
        if (*p == '"') {
            p++;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n' || v >= sizeof out[n].val - 1)
                    return -1;
                if (*p == '\\') {
                    p++;
                    char c = *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p == 't' ? '\t' : *p;
                    if (*p == 'x') {
                        unsigned x;
                        if (sscanf(p + 1, "%2x", &x) != 1)
                            return -1;
                        c = (char)x;
                        p += 2;
                    } else if (*p != '"' && *p != '\\' && *p != 'n' && *p != 'r' && *p != 't') {
                        return -1;
                    }
                    out[n].val[v++] = c;
                    p++;
                } else {
                    out[n].val[v++] = *p++;
                }
            }
            p++;
        } else {
            while (*p && *p != ' ' && *p != '\n') {
                if (*p == '"' || *p == '=' || v >= sizeof out[n].val - 1)
                    return -1;
                out[n].val[v++] = *p++;
            }
        }
        out[n].val[v] = '\0';
        n++;
    }
    return *p == '\n' && p[1] == '\0' ? n : -1;
}

static const char *get(const struct pair *ps, int n, const char *key)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(ps[i].key, key) == 0)
            return ps[i].val;
    }
    return NULL;
}

static void test_plain_line(void **state)
{
    char line[DW_LOG_LINE_MAX];
    struct pair ps[16];

    (void)state;
    size_t len = dw_logfmt_line(line, sizeof line, TS, DW_LOG_INFO, "main", NULL, "started");
    assert_int_equal(len, strlen(line));
    assert_string_equal(line,
                        "ts=2026-12-02T21:20:00.123Z level=info component=main msg=started\n");
    assert_int_equal(parse(line, ps, 16), 4);
}

static void test_fields_every_kind(void **state)
{
    char line[DW_LOG_LINE_MAX];
    struct pair ps[16];

    (void)state;
    dw_logfmt_line(line, sizeof line, TS, DW_LOG_WARN, "fsm",
                   DW_LOG_FIELDS(DW_LS("site", "site-a"), DW_LS("group", "carrier 1"),
                                 DW_LI("op", 7), DW_LI("step", -2), DW_LS("target", NULL),
                                 DW_LS("reason", "")),
                   "site DOWN");
    assert_string_equal(line, "ts=2026-12-02T21:20:00.123Z level=warn component=fsm "
                              "msg=\"site DOWN\" site=site-a group=\"carrier 1\" op=7 step=-2 "
                              "reason=\"\"\n");
    int n = parse(line, ps, 16);
    assert_int_equal(n, 9);
    assert_string_equal(get(ps, n, "group"), "carrier 1");
    assert_null(get(ps, n, "target")); /* NULL: left out */
}

static void test_escaping(void **state)
{
    static const char *const values[] = {
        "a=b", "say \"hi\"", "back\\slash", "two\nlines\r\n", "tab\there", "bell\a",
        "del\x7f", "ünïcode ok", "=", "\"", "\\", " ",
    };
    char line[DW_LOG_LINE_MAX];
    struct pair ps[16];

    (void)state;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        dw_logfmt_line(line, sizeof line, TS, DW_LOG_ERROR, "x",
                       DW_LOG_FIELDS(DW_LS("v", values[i])), values[i]);
        assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
        int n = parse(line, ps, 16);
        assert_int_equal(n, 5);
        assert_string_equal(get(ps, n, "msg"), values[i]);
        assert_string_equal(get(ps, n, "v"), values[i]);
    }
    /* bare when nothing needs quoting, UTF-8 included */
    dw_logfmt_line(line, sizeof line, TS, DW_LOG_DEBUG, "x", NULL, "ünïcode");
    assert_non_null(strstr(line, " msg=ünïcode\n"));
    assert_non_null(strstr(line, "level=debug"));
}

static void test_long_message_cut_quoting_intact(void **state)
{
    char msg[8000], line[DW_LOG_LINE_MAX];
    struct pair ps[16];

    (void)state;
    /* quotes and multi-byte characters right where the cut falls, at every offset */
    for (int shift = 0; shift < 6; shift++) {
        size_t n = 0;
        for (int i = 0; i < shift; i++)
            msg[n++] = 'x';
        while (n < sizeof msg - 4) {
            memcpy(msg + n, "\"é\\", 4);
            n += 4;
        }
        msg[n] = '\0';
        size_t len = dw_logfmt_line(line, sizeof line, TS, DW_LOG_INFO, "x",
                                    DW_LOG_FIELDS(DW_LS("site", "s1"), DW_LI("op", 42)), msg);
        assert_true(len < sizeof line);
        int k = parse(line, ps, 16);
        assert_int_equal(k, 6);
        const char *m = get(ps, k, "msg");
        size_t ml = strlen(m);
        assert_true(ml > 500);
        assert_string_equal(m + ml - 3, "...");
        assert_memory_equal(m, msg, ml - 3); /* a prefix, no half character */
        assert_string_equal(get(ps, k, "site"), "s1"); /* fields survive the cut */
        assert_string_equal(get(ps, k, "op"), "42");
    }
    /* a small buffer too */
    char small[256];
    dw_logfmt_line(small, sizeof small, TS, DW_LOG_INFO, "component", NULL, msg);
    assert_true(parse(small, ps, 16) == 4);
    assert_true(strlen(small) < sizeof small);
}

static void test_pair_does_not_fit(void **state)
{
    char buf[16] = "a=b";
    size_t len = 3;

    (void)state;
    assert_false(dw_logfmt_pair(buf, sizeof buf, &len, "key", "a long value here"));
    assert_int_equal(len, 3);
    assert_string_equal(buf, "a=b");
    assert_true(dw_logfmt_pair(buf, sizeof buf, &len, "k", "v w"));
    assert_string_equal(buf, "a=b k=\"v w\"");
}

static void test_levels_and_formats_parse(void **state)
{
    enum dw_log_level l;
    enum dw_log_format f;

    (void)state;
    assert_int_equal(dw_log_parse_level("warn", &l), 0);
    assert_int_equal(l, DW_LOG_WARN);
    assert_int_equal(dw_log_parse_level("WARN", &l), -1);
    assert_int_equal(dw_log_parse_level(NULL, &l), -1);
    assert_int_equal(dw_log_parse_format("journal", &f), 0);
    assert_int_equal(f, DW_LOG_FORMAT_JOURNAL);
    assert_int_equal(dw_log_parse_format("json", &f), -1);
    assert_string_equal(dw_log_level_name(DW_LOG_ERROR), "error");
    assert_string_equal(dw_log_format_name(DW_LOG_FORMAT_AUTO), "auto");
}

static void test_journal_decision(void **state)
{
    (void)state;
    /* auto: only when JOURNAL_STREAM names stderr's own device and inode */
    assert_true(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "8:12345", true, 8, 12345));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "8:12345", true, 8, 12346));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "8:12345", true, 9, 12345));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "8:12345", false, 8, 12345));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, NULL, true, 8, 12345));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "", true, 0, 0));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "8:12345x", true, 8, 12345));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_AUTO, "garbage", true, 8, 12345));
    /* forced either way */
    assert_true(dw_log_journal_decide(DW_LOG_FORMAT_JOURNAL, NULL, false, 0, 0));
    assert_false(dw_log_journal_decide(DW_LOG_FORMAT_LOGFMT, "8:12345", true, 8, 12345));
}

static bool has_field(const struct iovec *iov, int n, const char *want)
{
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len == strlen(want) && memcmp(iov[i].iov_base, want, iov[i].iov_len) == 0)
            return true;
    }
    return false;
}

static void test_journal_fields(void **state)
{
    struct iovec iov[24];
    char buf[DW_LOG_LINE_MAX];

    (void)state;
    int n = dw_log_journal_fields(iov, 24, buf, sizeof buf, DW_LOG_WARN, "fsm",
                                  DW_LOG_FIELDS(DW_LS("site", "site-a"), DW_LS("group", "g 1"),
                                                DW_LI("op", 7), DW_LS("member", NULL),
                                                DW_LS("from-to", "a\nb")),
                                  "site DOWN \"x\"");
    assert_int_equal(n, 8);
    assert_true(has_field(iov, n, "MESSAGE=site DOWN \"x\""));
    assert_true(has_field(iov, n, "PRIORITY=4"));
    assert_true(has_field(iov, n, "SYSLOG_IDENTIFIER=drwatchd"));
    assert_true(has_field(iov, n, "DRWATCH_COMPONENT=fsm"));
    assert_true(has_field(iov, n, "DRWATCH_SITE=site-a"));
    assert_true(has_field(iov, n, "DRWATCH_GROUP=g 1"));
    assert_true(has_field(iov, n, "DRWATCH_OP=7"));
    /* names the journal accepts; values binary-safe as they are */
    assert_true(has_field(iov, n, "DRWATCH_FROM_TO=a\nb"));

    const int prio[] = {7, 6, 4, 3};
    for (int l = DW_LOG_DEBUG; l <= DW_LOG_ERROR; l++) {
        char want[16];
        n = dw_log_journal_fields(iov, 24, buf, sizeof buf, (enum dw_log_level)l, "x", NULL, "m");
        snprintf(want, sizeof want, "PRIORITY=%d", prio[l]);
        assert_true(has_field(iov, n, want));
    }
    /* a full iovec array or buffer drops fields, never overruns */
    n = dw_log_journal_fields(iov, 3, buf, sizeof buf, DW_LOG_INFO, "x",
                              DW_LOG_FIELDS(DW_LS("site", "s")), "m");
    assert_int_equal(n, 3);
    char tiny[24];
    n = dw_log_journal_fields(iov, 24, tiny, sizeof tiny, DW_LOG_INFO, "x", NULL, "m");
    assert_true(n >= 1 && n < 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_line),
        cmocka_unit_test(test_fields_every_kind),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_long_message_cut_quoting_intact),
        cmocka_unit_test(test_pair_does_not_fit),
        cmocka_unit_test(test_levels_and_formats_parse),
        cmocka_unit_test(test_journal_decision),
        cmocka_unit_test(test_journal_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
