/* Metrics registry and /metrics server: rendering (families grouped, HELP/TYPE once, escaping,
 * histograms), then a real scrape over TCP on 127.0.0.1 validated by `promtool check metrics`,
 * and /health and /leader status codes and bodies. The promtool
 * check is skipped, saying so, when promtool is not installed (package "prometheus"). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drwatch/metrics.h"
#include "testlib.h"

/* ---- collectors ---- */

static void collect_edges(void *data, struct dw_metrics_writer *w)
{
    int *calls = data;
    (*calls)++;
    dw_metrics_write(w, "drwatch_edge_up", DW_METRIC_GAUGE, "1 when the Edge answers its probes",
                     (const char *const[]){"site", "a", "edge", "a1", NULL}, 1);
    dw_metrics_write(w, "drwatch_probe_total", DW_METRIC_COUNTER, "Probes by result",
                     (const char *const[]){"edge", "a1", "result", "ok", NULL}, 1234);
    dw_metrics_write(w, "drwatch_edge_up", DW_METRIC_GAUGE, "ignored: the first help wins",
                     (const char *const[]){"site", "a", "edge", "a2", NULL}, 0);
    /* A label value with every character that needs escaping. */
    dw_metrics_write(w, "drwatch_edge_up", DW_METRIC_GAUGE, NULL,
                     (const char *const[]){"site", "b \"quoted\"", "edge", "back\\slash\nnew line", NULL},
                     1);
}

static void collect_misc(void *data, struct dw_metrics_writer *w)
{
    (void)data;
    dw_metrics_write(w, "drwatch_probe_total", DW_METRIC_COUNTER, "Probes by result",
                     (const char *const[]){"edge", "a1", "result", "timeout", NULL}, 3);
    dw_metrics_write(w, "drwatch_is_leader", DW_METRIC_GAUGE, "1 on the Raft leader\nsecond \\ line",
                     NULL, 0);
    dw_metrics_write(w, "drwatch_probe_seconds", DW_METRIC_GAUGE, "Last probe duration", NULL, 0.125);
    dw_metrics_write(w, "drwatch_nan", DW_METRIC_GAUGE, "Not a number", NULL, NAN);
    dw_metrics_write(w, "drwatch_inf", DW_METRIC_GAUGE, "Infinity", NULL, INFINITY);
    /* Dropped: bad metric name, reserved label name, type differing from the family's. */
    dw_metrics_write(w, "9bad-name", DW_METRIC_GAUGE, "x", NULL, 1);
    dw_metrics_write(w, "drwatch_ok", DW_METRIC_GAUGE, "x", (const char *const[]){"__x", "v", NULL}, 1);
    dw_metrics_write(w, "drwatch_is_leader", DW_METRIC_COUNTER, "x", NULL, 1);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static const char expected[] =
    "# HELP drwatch_edge_up 1 when the Edge answers its probes\n"
    "# TYPE drwatch_edge_up gauge\n"
    "drwatch_edge_up{site=\"a\",edge=\"a1\"} 1\n"
    "drwatch_edge_up{site=\"a\",edge=\"a2\"} 0\n"
    "drwatch_edge_up{site=\"b \\\"quoted\\\"\",edge=\"back\\\\slash\\nnew line\"} 1\n"
    "# HELP drwatch_probe_total Probes by result\n"
    "# TYPE drwatch_probe_total counter\n"
    "drwatch_probe_total{edge=\"a1\",result=\"ok\"} 1234\n"
    "drwatch_probe_total{edge=\"a1\",result=\"timeout\"} 3\n"
    "# HELP drwatch_is_leader 1 on the Raft leader\\nsecond \\\\ line\n"
    "# TYPE drwatch_is_leader gauge\n"
    "drwatch_is_leader 0\n"
    "# HELP drwatch_probe_seconds Last probe duration\n"
    "# TYPE drwatch_probe_seconds gauge\n"
    "drwatch_probe_seconds 0.125\n"
    "# HELP drwatch_nan Not a number\n"
    "# TYPE drwatch_nan gauge\n"
    "drwatch_nan NaN\n"
    "# HELP drwatch_inf Infinity\n"
    "# TYPE drwatch_inf gauge\n"
    "drwatch_inf +Inf\n";

static void test_render(void **state)
{
    struct dw_metrics *m;
    char err[256];
    int calls = 0;
    (void)state;

    assert_int_equal(dw_metrics_start(&m, NULL, "", err, sizeof err), 0);
    size_t len = 99;
    char *text = dw_metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, 0);
    free(text);

    assert_int_equal(dw_metrics_add(m, collect_edges, &calls), 0);
    assert_int_equal(dw_metrics_add(m, collect_misc, NULL), 0);
    text = dw_metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_string_equal(text, expected);
    free(text);

    dw_metrics_remove(m, collect_misc, NULL);
    text = dw_metrics_render(m, &len);
    assert_null(strstr(text, "drwatch_is_leader"));
    assert_int_equal(count(text, "drwatch_probe_total{"), 1);
    free(text);
    assert_int_equal(calls, 2);
    dw_metrics_close(m);
    dw_metrics_close(NULL);
}

static void test_bad_address(void **state)
{
    struct dw_metrics *m = (struct dw_metrics *)&m;
    char err[256];
    uv_loop_t loop;
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(dw_metrics_start(&m, &loop, "localhost", err, sizeof err), -1);
    assert_null(m);
    assert_non_null(strstr(err, "localhost"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- a real scrape ---- */

struct fetch {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    const char *request;
    char resp[65536];
    size_t len;
    bool done;
};

static void fetch_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct fetch *f = h->data;
    (void)hint;
    *buf = uv_buf_init(f->resp + f->len, (unsigned)(sizeof f->resp - 1 - f->len));
}

static void fetch_closed(uv_handle_t *h)
{
    struct fetch *f = h->data;
    f->done = true;
}

static void fetch_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fetch *f = s->data;
    (void)buf;
    if (n > 0) {
        f->len += (size_t)n;
        f->resp[f->len] = '\0';
        if (f->len < sizeof f->resp - 1)
            return;
    }
    if (n < 0 || f->len >= sizeof f->resp - 1)
        uv_close((uv_handle_t *)s, fetch_closed);
}

static void fetch_connected(uv_connect_t *req, int status)
{
    struct fetch *f = req->data;
    if (status != 0) {
        uv_close((uv_handle_t *)&f->tcp, fetch_closed);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)f->request, (unsigned)strlen(f->request));
    uv_write(&f->wr, (uv_stream_t *)&f->tcp, &b, 1, NULL);
    uv_read_start((uv_stream_t *)&f->tcp, fetch_alloc, fetch_read);
}

/* Sends a raw HTTP/1.0 request and reads until the server closes; the server runs on the same
 * loop, so the loop is turned by hand. Returns the status code; *body points into f->resp. */
static int fetch(uv_loop_t *loop, int port, const char *request, struct fetch *f, const char **body)
{
    struct sockaddr_in sa;
    memset(f, 0, sizeof *f);
    f->request = request;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(loop, &f->tcp);
    f->tcp.data = f->conn.data = f;
    assert_int_equal(uv_tcp_connect(&f->conn, &f->tcp, (struct sockaddr *)&sa, fetch_connected), 0);
    uint64_t deadline = uv_hrtime() + 10ull * 1000000000ull;
    while (!f->done && uv_hrtime() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    assert_true(f->done);
    int status = 0;
    assert_int_equal(sscanf(f->resp, "HTTP/1.%*d %d", &status), 1);
    char *sep = strstr(f->resp, "\r\n\r\n");
    assert_non_null(sep);
    *body = sep + 4;
    return status;
}

/* Returns promtool's exit code; its findings are printed. */
static int promtool_check(const char *body)
{
    char path[] = "/tmp/dw-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    assert_true(WIFEXITED(rc));
    return WEXITSTATUS(rc);
}

static void test_serve_and_promtool(void **state)
{
    uv_loop_t loop;
    struct dw_metrics *m;
    char err[256], addr[64];
    int calls = 0;
    struct fetch *f = malloc(sizeof *f);
    const char *body;
    (void)state;

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&loop), 0);
    int port = tl_free_port(SOCK_STREAM);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_int_equal(dw_metrics_start(&m, &loop, addr, err, sizeof err), 0);
    assert_int_equal(dw_metrics_add(m, collect_edges, &calls), 0);
    assert_int_equal(dw_metrics_add(m, collect_misc, NULL), 0);

    /* The port is taken now: a second server says so. */
    struct dw_metrics *m2;
    assert_int_equal(dw_metrics_start(&m2, &loop, addr, err, sizeof err), -1);
    assert_non_null(strstr(err, addr));

    assert_int_equal(fetch(&loop, port, "GET /metrics HTTP/1.0\r\n\r\n", f, &body), 200);
    assert_non_null(strstr(f->resp, "Content-Type: text/plain; version=0.0.4"));
    assert_string_equal(body, expected);
    assert_int_equal(calls, 1);

    if (tl_have_exe("promtool"))
        assert_int_equal(promtool_check(body), 0);
    else
        fprintf(stderr, "SKIP promtool check: promtool not found (apt-get install prometheus)\n");

    assert_int_equal(fetch(&loop, port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", f, &body), 200);
    assert_int_equal(fetch(&loop, port, "GET / HTTP/1.0\r\n\r\n", f, &body), 404);
    assert_int_equal(fetch(&loop, port, "GET /metrics/x HTTP/1.0\r\n\r\n", f, &body), 404);
    assert_int_equal(fetch(&loop, port,
                           "POST /metrics HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", f, &body), 405);
    assert_int_equal(calls, 2);

    dw_metrics_close(m);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(f);
}

/* promtool itself rejects broken text and a family split in two (exit 1), so a pass above
 * means something. */
static void test_promtool_rejects(void **state)
{
    (void)state;
    if (!tl_have_exe("promtool")) {
        fprintf(stderr, "SKIP: promtool not found (apt-get install prometheus)\n");
        skip();
    }
    assert_int_equal(promtool_check("# HELP x h\n# TYPE x gauge\nx{a=\"unterminated} 1\n"), 1);
    assert_int_equal(promtool_check("# HELP x h\n# TYPE x gauge\nx 1\n# HELP x h\n# TYPE x gauge\n"
                                    "x{a=\"b\"} 2\n"), 1);
}

/* ---- histograms, /health and /leader ---- */

static void collect_hist(void *data, struct dw_metrics_writer *w)
{
    static const double bounds[] = {0.5, 1, 2.5};
    static const uint64_t counts[] = {1, 0, 2, 1}; /* per bucket; the last above 2.5 */
    (void)data;
    dw_metrics_write_histogram(w, "drwatch_step_duration_seconds", "Step durations.",
                               (const char *const[]){"kind", "verify", NULL}, bounds, counts, 3,
                               7.25);
    /* "le" is the histogram's own label: a sample naming it is dropped */
    dw_metrics_write_histogram(w, "drwatch_bad_seconds", "x",
                               (const char *const[]){"le", "1", NULL}, bounds, counts, 3, 1);
    /* dw_metrics_write cannot write a histogram */
    dw_metrics_write(w, "drwatch_step_duration_seconds", DW_METRIC_HISTOGRAM, "x", NULL, 1);
}

static const char expected_hist[] =
    "# HELP drwatch_step_duration_seconds Step durations.\n"
    "# TYPE drwatch_step_duration_seconds histogram\n"
    "drwatch_step_duration_seconds_bucket{kind=\"verify\",le=\"0.5\"} 1\n"
    "drwatch_step_duration_seconds_bucket{kind=\"verify\",le=\"1\"} 1\n"
    "drwatch_step_duration_seconds_bucket{kind=\"verify\",le=\"2.5\"} 3\n"
    "drwatch_step_duration_seconds_bucket{kind=\"verify\",le=\"+Inf\"} 4\n"
    "drwatch_step_duration_seconds_sum{kind=\"verify\"} 7.25\n"
    "drwatch_step_duration_seconds_count{kind=\"verify\"} 4\n";

struct fake_status {
    bool healthy, leader;
    int calls;
};

static void status_fn(void *data, struct dw_metrics_status *st)
{
    struct fake_status *fs = data;
    fs->calls++;
    st->healthy = fs->healthy;
    st->leader = fs->leader;
    st->role = fs->leader ? "leader" : "follower";
    st->reason = fs->healthy ? "" : "no leader known";
    st->node_id = 2;
    st->node_name = "us-\"east\"";
    st->leader_id = fs->healthy ? 1 : 0;
    st->leader_name = "eu-west";
    st->term = 7;
}

static void test_histogram_health_and_leader(void **state)
{
    uv_loop_t loop;
    struct dw_metrics *m;
    char err[256], addr[64];
    struct fetch *f = malloc(sizeof *f);
    const char *body;
    struct fake_status fs = {.healthy = true, .leader = false};
    (void)state;

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&loop), 0);
    int port = tl_free_port(SOCK_STREAM);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_int_equal(dw_metrics_start(&m, &loop, addr, err, sizeof err), 0);
    assert_int_equal(dw_metrics_add(m, collect_hist, NULL), 0);

    assert_int_equal(fetch(&loop, port, "GET /metrics HTTP/1.0\r\n\r\n", f, &body), 200);
    assert_string_equal(body, expected_hist);
    if (tl_have_exe("promtool"))
        assert_int_equal(promtool_check(body), 0);

    /* Without a status source the endpoints do not exist. */
    assert_int_equal(fetch(&loop, port, "GET /health HTTP/1.0\r\n\r\n", f, &body), 404);
    assert_int_equal(fetch(&loop, port, "GET /leader HTTP/1.0\r\n\r\n", f, &body), 404);

    dw_metrics_set_status(m, status_fn, &fs);
    /* a healthy follower */
    assert_int_equal(fetch(&loop, port, "GET /health HTTP/1.0\r\n\r\n", f, &body), 200);
    assert_non_null(strstr(f->resp, "Content-Type: application/json"));
    assert_string_equal(body, "{\"healthy\":true,\"is_leader\":false,\"role\":\"follower\","
                              "\"node\":{\"id\":2,\"name\":\"us-\\\"east\\\"\"},"
                              "\"leader\":{\"id\":1,\"name\":\"eu-west\"},\"term\":7,"
                              "\"reason\":\"\"}\n");
    assert_int_equal(fetch(&loop, port, "GET /leader HTTP/1.0\r\n\r\n", f, &body), 503);
    assert_non_null(strstr(body, "\"is_leader\":false"));
    assert_int_equal(fetch(&loop, port, "HEAD /health HTTP/1.0\r\n\r\n", f, &body), 200);
    assert_string_equal(body, "");
    assert_int_equal(fetch(&loop, port, "HEAD /leader HTTP/1.0\r\n\r\n", f, &body), 503);
    /* the leader */
    fs.leader = true;
    assert_int_equal(fetch(&loop, port, "GET /leader HTTP/1.0\r\n\r\n", f, &body), 200);
    assert_non_null(strstr(body, "\"role\":\"leader\""));
    assert_int_equal(fetch(&loop, port, "GET /health?verbose HTTP/1.0\r\n\r\n", f, &body), 200);
    /* out of quorum: no leader known */
    fs.healthy = fs.leader = false;
    assert_int_equal(fetch(&loop, port, "GET /health HTTP/1.0\r\n\r\n", f, &body), 503);
    assert_non_null(strstr(body, "\"leader\":null"));
    assert_non_null(strstr(body, "\"reason\":\"no leader known\""));
    assert_int_equal(fetch(&loop, port, "GET /leader HTTP/1.0\r\n\r\n", f, &body), 503);
    int calls = fs.calls;
    assert_int_equal(fetch(&loop, port,
                           "POST /health HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", f, &body), 405);
    assert_int_equal(fetch(&loop, port, "PUT /leader HTTP/1.0\r\n\r\n", f, &body), 405);
    assert_int_equal(fetch(&loop, port, "GET /health/x HTTP/1.0\r\n\r\n", f, &body), 404);
    assert_int_equal(fs.calls, calls);

    dw_metrics_close(m);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_serve_and_promtool),
        cmocka_unit_test(test_promtool_rejects),
        cmocka_unit_test(test_histogram_health_and_leader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
