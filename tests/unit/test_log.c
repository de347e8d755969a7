/* The log line encoder (logfmt) and the journald writer's decision and fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "drwatch/audit.h"
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

/* A field longer than its share of the line is cut like the message, not dropped. */
static void test_long_field_cut_not_dropped(void **state)
{
    char detail[1024], line[DW_LOG_LINE_MAX];
    struct pair ps[16];

    (void)state;
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    dw_logfmt_line(line, sizeof line, TS, DW_LOG_INFO, "fsm",
                   DW_LOG_FIELDS(DW_LI("op", 7), DW_LS("detail", detail)), "step done");
    int k = parse(line, ps, 16);
    assert_int_equal(k, 6);
    const char *d = get(ps, k, "detail");
    assert_non_null(d);
    assert_true(strlen(d) > 300);
    assert_string_equal(d + strlen(d) - 3, "...");
    assert_string_equal(get(ps, k, "op"), "7");
    assert_string_equal(get(ps, k, "msg"), "step done");
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

/* The longest message the logger formats, with a long field, keeps MESSAGE= in the journal
 * buffer the logger uses. */
static void test_journal_long_message_kept(void **state)
{
    char msg[DW_LOG_LINE_MAX], detail[1024], buf[4 * DW_LOG_LINE_MAX], want[DW_LOG_LINE_MAX + 8];
    struct iovec iov[24];

    (void)state;
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    int n = dw_log_journal_fields(iov, 24, buf, sizeof buf, DW_LOG_WARN, "node",
                                  DW_LOG_FIELDS(DW_LS("detail", detail)), msg);
    snprintf(want, sizeof want, "MESSAGE=%s", msg);
    assert_true(has_field(iov, n, want));
    assert_int_equal(n, 5);
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

static const char *field(const struct dw_audit_line *l, const char *key, char *num)
{
    for (const struct dw_log_field *f = l->f; f->key != NULL; f++) {
        if (strcmp(f->key, key) == 0) {
            if (!f->is_num)
                return f->str;
            snprintf(num, 24, "%lld", f->num);
            return num;
        }
    }
    return NULL;
}

/* The FSM's history rows and events, as the audit logs them (docs/logging.md). */
static void test_audit_describes_every_kind(void **state)
{
    static const struct {
        const char *kind, *group, *detail, *msg;
        enum dw_log_level level;
        const char *fields; /* "key=value ..." expected among the fields */
    } cases[] = {
        {"verdict", NULL, "site-a: up -> down (down 2/3 fresh, up 1/3) by probes", "site DOWN",
         DW_LOG_WARN, "site=site-a from=up to=down"},
        {"verdict", NULL, "site-b: unknown -> up (down 0/3 fresh, up 2/3) by probes", "site UP",
         DW_LOG_INFO, "site=site-b from=unknown to=up"},
        {"signal", NULL, "site-a: probes up -> down (x)", "site signal", DW_LOG_DEBUG,
         "site=site-a"},
        {"operation", NULL, "carrier-1: failover #7 premise-a -> premise-b planned (site-a down)",
         "operation planned", DW_LOG_INFO,
         "group=carrier-1 kind=failover op=7 from=premise-a to=premise-b"},
        {"operation", NULL, "carrier-1: failover #7 - -> premise-b aborted: premise-b is down",
         "operation aborted", DW_LOG_WARN, "group=carrier-1 kind=failover op=7"},
        {"operation", NULL, "g: cleanup #3 aborted: a failover to a target that is up replaces it",
         "operation aborted", DW_LOG_WARN, "group=g kind=cleanup op=3"},
        {"failover", "carrier-1", "carrier-1: failover #7 premise-a -> premise-b done",
         "operation done", DW_LOG_INFO, "group=carrier-1 op=7 to=premise-b"},
        {"operation_failed", "g", "g: failback #9 b -> a failed at step 0 activate a; calls stay",
         "operation failed", DW_LOG_WARN, "group=g op=9 step=0 target=a"},
        {"step", NULL, "carrier-1: #7 step 2 deactivate premise-a: done - PUT x: y", "step done",
         DW_LOG_INFO, "group=carrier-1 op=7 step=2 action=deactivate target=premise-a"},
        {"step", NULL, "g: #7 step 0 activate b: failed - HTTP 500", "step failed", DW_LOG_WARN,
         "status=failed"},
        {"hold", "g", "g: group held: flapping (x)", "group held", DW_LOG_WARN, "group=g"},
        {"hold_released", "g", "g: hold released by ops", "hold released", DW_LOG_INFO,
         "group=g"},
        {"maintenance_set", NULL, "site site-b: maintenance set by ops for 60 s: UPS swap",
         "maintenance set", DW_LOG_INFO, "scope=site site=site-b"},
        {"maintenance_expired", "g", "edge e1: maintenance expired", "maintenance expired",
         DW_LOG_INFO, "scope=edge edge=e1 group=g"},
        {"no_target_up", "g", "g: no target up", "no target up", DW_LOG_WARN, "group=g"},
        {"leader", NULL, "node 2 took office", "leader took office", DW_LOG_DEBUG, "member=2"},
        {"rejected", NULL, "malformed", "entry rejected", DW_LOG_WARN, ""},
        {"verdict", NULL, "garbage", "verdict", DW_LOG_INFO, ""}, /* unparsed: kept whole */
    };
    struct dw_audit_line l;
    char num[24];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dw_audit_describe(&(struct dw_fsm_record){.ts = TS, .kind = cases[i].kind,
                                                  .group = cases[i].group,
                                                  .detail = cases[i].detail},
                          &l);
        assert_string_equal(l.msg, cases[i].msg);
        assert_int_equal(l.level, cases[i].level);
        assert_string_equal(field(&l, "detail", num), cases[i].detail);
        char want[256], *save = NULL;
        snprintf(want, sizeof want, "%s", cases[i].fields);
        for (char *kv = strtok_r(want, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(kv, '=');
            *eq = '\0';
            const char *got = field(&l, kv, num);
            if (got == NULL || strcmp(got, eq + 1) != 0)
                fail_msg("%s %s: %s=%s, want %s", cases[i].kind, cases[i].detail, kv,
                         got ? got : "(none)", eq + 1);
        }
        /* a whole, parseable line */
        char line[DW_LOG_LINE_MAX];
        struct pair ps[24];
        dw_logfmt_line(line, sizeof line, TS, l.level, "fsm", l.f, l.msg);
        assert_true(parse(line, ps, 24) > 4);
    }
}

/* Records are logged only once the entry is applied. */
static void test_audit_drops_a_rejected_entry(void **state)
{
    struct dw_audit a;

    (void)state;
    dw_audit_init(&a, 0);
    for (int i = 0; i < 40; i++) /* past the first allocation */
        dw_audit_record(&a, &(struct dw_fsm_record){.ts = TS, .kind = "verdict",
                                                    .detail = "s: up -> down (x)"});
    assert_int_equal(a.n, 40);
    dw_audit_end(&a, false);
    assert_int_equal(a.n, 0);
    dw_audit_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_line),
        cmocka_unit_test(test_fields_every_kind),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_long_message_cut_quoting_intact),
        cmocka_unit_test(test_long_field_cut_not_dropped),
        cmocka_unit_test(test_journal_long_message_kept),
        cmocka_unit_test(test_pair_does_not_fit),
        cmocka_unit_test(test_levels_and_formats_parse),
        cmocka_unit_test(test_journal_decision),
        cmocka_unit_test(test_journal_fields),
        cmocka_unit_test(test_audit_describes_every_kind),
        cmocka_unit_test(test_audit_drops_a_rejected_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
