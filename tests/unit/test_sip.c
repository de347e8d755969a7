/* SIP OPTIONS probes (src/io/sip.c) against real peers on 127.0.0.1: sipp as a UAS over UDP and
 * TCP (the scenarios in tests/tools/sip), and tests/tools/sip_fake.py for TLS and for malformed or
 * mismatched responses. Tests needing sipp, python3 or openssl skip when the tool is missing. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "drwatch/sip.h"
#include "testlib.h"

/* ---- peers ---- */

static char tmpdir[64];

/* Starts sip_fake.py and returns its port. */
static int start_fake(const char *transport, const char *script, const char *extra1,
                      const char *extra2, const char *extra3, const char *extra4)
{
    const char *argv[16];
    struct tl_sim sim;
    int n = 0;

    argv[n++] = "sip_fake.py";
    argv[n++] = "--transport";
    argv[n++] = transport;
    argv[n++] = "--script";
    argv[n++] = script;
    if (extra1) {
        argv[n++] = "--cert";
        argv[n++] = extra1;
        argv[n++] = "--key";
        argv[n++] = extra2;
    }
    if (extra3) {
        argv[n++] = extra3;
        argv[n++] = extra4;
    }
    argv[n] = NULL;
    assert_int_equal(tl_sim_start(argv, &sim), 0); /* stopped by tl_kill_all() */
    return sim.port;
}

/* Whether 127.0.0.1:port is bound (udp) or listening (tcp), from /proc/net. */
static bool port_ready(bool tcp, int port)
{
    FILE *f = fopen(tcp ? "/proc/net/tcp" : "/proc/net/udp", "r");
    char line[512], want[32];
    bool found = false;

    if (f == NULL)
        return false;
    snprintf(want, sizeof want, "0100007F:%04X", port);
    while (!found && fgets(line, sizeof line, f)) {
        char local[64];
        unsigned st;
        if (sscanf(line, " %*d: %63s %*s %x", local, &st) == 2 && strcmp(local, want) == 0)
            found = !tcp || st == 0x0A;
    }
    fclose(f);
    return found;
}

/* Starts sipp as a UAS running tests/tools/sip/<scenario> and returns its port. */
static int start_sipp(const char *scenario, bool tcp)
{
    char sf[512], ps[16];
    int port = tl_free_port(tcp ? SOCK_STREAM : SOCK_DGRAM);
    const char *argv[] = {"sipp", "-sf", sf, "-i", "127.0.0.1", "-p", ps, "-t", tcp ? "t1" : "u1",
                          "-nostdin", NULL};
    struct tl_sim sim;

    snprintf(sf, sizeof sf, "%s/sip/%s", DW_TOOLS_DIR, scenario);
    snprintf(ps, sizeof ps, "%d", port);
    /* in tmpdir: sipp may write logs into its working directory */
    assert_int_equal(tl_spawn(argv, tmpdir, &sim), 0);
    for (int i = 0; i < 200 && !port_ready(tcp, port); i++)
        usleep(25000);
    assert_true(port_ready(tcp, port));
    return port;
}

/* ---- loop and probes ---- */

struct fixture {
    uv_loop_t loop;
    struct dw_sip *sip;
};

struct result {
    int done;
    bool ok;
    int code;
    char detail[256];
    struct dw_sip *close_in_cb; /* set: the callback closes the client */
};

static void on_result(void *data, bool ok, int code, const char *detail)
{
    struct result *r = data;

    r->done++;
    r->ok = ok;
    r->code = code;
    snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "(null)");
    if (r->close_in_cb)
        dw_sip_close(r->close_in_cb);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256];

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(dw_sip_init(&f->sip, &f->loop, "127.0.0.1", err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    tl_kill_all();
    dw_sip_close(f->sip);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* Probes that classify an answer get a generous timeout (10 s) that only a stalled machine
 * reaches; the timeout tests use short ones on purpose. */
static void spec_init(struct dw_probe_spec *spec, enum dw_sip_transport t, int port, unsigned timeout_ms)
{
    memset(spec, 0, sizeof *spec);
    spec->kind = DW_PROBE_SIP;
    spec->transport = t;
    spec->timeout_ms = timeout_ms;
    spec->verify_tls = true;
    snprintf(spec->address, sizeof spec->address, "127.0.0.1:%d", port);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_all(uv_loop_t *loop, struct result *r, int n)
{
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += r[i].done;
        if (done >= n)
            break;
        uv_run(loop, UV_RUN_ONCE);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(r[i].done, 1);
}

static struct result probe(struct fixture *f, const struct dw_probe_spec *spec)
{
    struct result r = {0};

    assert_int_equal(dw_sip_probe(f->sip, spec, on_result, &r), 0);
    wait_all(&f->loop, &r, 1);
    return r;
}

/* Copies of a UDP request that Timer E can have sent during a probe that took dt seconds: the
 * first retransmission is due 0.5 s after the send (the client updates the loop time first),
 * then 1.5, 3.5, 7.5 s... (T1 doubling, capped at T2 = 4 s). */
static int max_retransmissions(double dt)
{
    int n = 0;

    for (double at = 0.5, step = 1.0; at <= dt; at += step, step = step * 2 > 4.0 ? 4.0 : step * 2)
        n++;
    return n;
}

/* Lets the client read what a killed peer had already sent (late answers to retransmitted
 * copies), so that it is counted now rather than during the next probe. */
static void kill_peers_and_drain(struct fixture *f)
{
    tl_kill_all();
    for (int i = 0; i < 10; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

static struct dw_sip_stats stats(struct fixture *f)
{
    struct dw_sip_stats st;
    dw_sip_stats(f->sip, &st);
    return st;
}

/* ---- sipp over UDP and TCP ---- */

static void test_sipp_200(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;
    struct dw_sip_stats st;

    int retrans = 0; /* UDP copies that may have been answered after the probe ended */
    double t0;

    TL_NEED("sipp");
    for (int tcp = 0; tcp <= 1; tcp++) {
        int port = start_sipp("uas_200.xml", tcp);
        spec_init(&spec, tcp ? DW_SIP_TCP : DW_SIP_UDP, port, 10000);
        t0 = now_s();
        r = probe(f, &spec);
        if (!tcp)
            retrans += max_retransmissions(now_s() - t0);
        assert_true(r.ok);
        assert_int_equal(r.code, 200);
        assert_string_equal(r.detail, "200 OK");
        /* the default request URI, and an explicit one */
        snprintf(spec.request_uri, sizeof spec.request_uri, "sip:ping@127.0.0.1:%d", port);
        t0 = now_s();
        r = probe(f, &spec);
        if (!tcp)
            retrans += max_retransmissions(now_s() - t0);
        assert_true(r.ok);
        kill_peers_and_drain(f);
    }
    st = stats(f);
    assert_int_equal(st.sent, 4);
    assert_int_equal(st.answered, 4);
    assert_int_equal(st.malformed + st.timeouts + st.transport_errors, 0);
    /* sipp answers each copy it gets: a slow first answer crosses a retransmission, whose own
     * answer then matches no probe. Without a retransmission nothing may be unmatched. */
    if (st.unmatched > (uint64_t)retrans)
        fail_msg("%llu unmatched responses, %d retransmissions possible",
                 (unsigned long long)st.unmatched, retrans);
}

static void test_sipp_alive_codes(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;

    TL_NEED("sipp");
    for (int tcp = 0; tcp <= 1; tcp++) {
        int p404 = start_sipp("uas_404.xml", tcp), p503 = start_sipp("uas_503.xml", tcp);
        enum dw_sip_transport t = tcp ? DW_SIP_TCP : DW_SIP_UDP;

        spec_init(&spec, t, p404, 10000); /* no alive_codes: any final response is alive */
        r = probe(f, &spec);
        assert_true(r.ok);
        assert_int_equal(r.code, 404);
        assert_string_equal(r.detail, "404 Not Found");
        spec.n_alive_codes = 1;
        spec.alive_codes[0] = 200;
        r = probe(f, &spec);
        assert_false(r.ok);
        assert_int_equal(r.code, 404);
        spec.alive_codes[0] = 4; /* the 4xx class */
        r = probe(f, &spec);
        assert_true(r.ok);

        spec_init(&spec, t, p503, 10000);
        spec.n_alive_codes = 2;
        spec.alive_codes[0] = 2;
        spec.alive_codes[1] = 4;
        r = probe(f, &spec);
        assert_false(r.ok);
        assert_int_equal(r.code, 503);
        assert_string_equal(r.detail, "503 Service Unavailable");
        spec.alive_codes[1] = 503;
        r = probe(f, &spec);
        assert_true(r.ok);
        tl_kill_all();
    }
}

static void test_sipp_silent_and_slow(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;
    double t0;

    TL_NEED("sipp");
    for (int tcp = 0; tcp <= 1; tcp++) {
        enum dw_sip_transport t = tcp ? DW_SIP_TCP : DW_SIP_UDP;
        int silent = start_sipp("uas_silent.xml", tcp), slow = start_sipp("uas_slow.xml", tcp);

        spec_init(&spec, t, silent, 1200);
        t0 = now_s();
        r = probe(f, &spec);
        assert_false(r.ok);
        assert_int_equal(r.code, 0);
        assert_string_equal(r.detail, "timeout");
        assert_true(now_s() - t0 >= 1.15); /* it waited the whole timeout */

        spec_init(&spec, t, slow, 700); /* answers after 1.5 s */
        r = probe(f, &spec);
        assert_false(r.ok);
        assert_string_equal(r.detail, "timeout");
        spec.timeout_ms = 10000;
        t0 = now_s();
        r = probe(f, &spec);
        assert_true(r.ok);
        assert_int_equal(r.code, 200);
        assert_true(now_s() - t0 >= 1.4);
        tl_kill_all();
    }
    assert_int_equal(stats(f).timeouts, 4);
}

static void test_sipp_provisional(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;

    TL_NEED("sipp");
    for (int tcp = 0; tcp <= 1; tcp++) {
        spec_init(&spec, tcp ? DW_SIP_TCP : DW_SIP_UDP, start_sipp("uas_trying.xml", tcp), 10000);
        r = probe(f, &spec);
        assert_true(r.ok);
        assert_int_equal(r.code, 200); /* 100 Trying is not an answer */
        tl_kill_all();
    }
}

static void test_sipp_many_udp(void **state)
{
    struct fixture *f = *state;
    enum { N = 64 };
    struct dw_probe_spec spec;
    struct result r[N];
    int port;

    TL_NEED("sipp");
    port = start_sipp("uas_200.xml", false);
    spec_init(&spec, DW_SIP_UDP, port, 10000);
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        assert_int_equal(dw_sip_probe(f->sip, &spec, on_result, &r[i]), 0);
    wait_all(&f->loop, r, N);
    for (int i = 0; i < N; i++) {
        assert_true(r[i].ok);
        assert_int_equal(r[i].code, 200);
    }
    assert_int_equal(stats(f).answered, N);
}

/* Bound to 0.0.0.0: Via and Call-ID carry the route's source address. */
static void test_sipp_any_address(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct dw_sip *s;
    struct result r = {0};
    char err[256];

    TL_NEED("sipp");
    assert_int_equal(dw_sip_init(&s, &f->loop, NULL, err, sizeof err), 0);
    spec_init(&spec, DW_SIP_UDP, start_sipp("uas_200.xml", false), 10000);
    assert_int_equal(dw_sip_probe(s, &spec, on_result, &r), 0);
    wait_all(&f->loop, &r, 1);
    assert_true(r.ok);
    dw_sip_close(s);
}

/* ---- the fake peer: retransmission, malformed input, transport failures ---- */

static void test_udp_retransmit(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;
    double t0, dt;

    TL_NEED("python3");
    /* the peer drops the first two copies: answered at the third, sent at 0.5 + 1.0 s */
    spec_init(&spec, DW_SIP_UDP, start_fake("udp", "drop:2", NULL, NULL, NULL, NULL), 10000);
    t0 = now_s();
    r = probe(f, &spec);
    dt = now_s() - t0;
    assert_true(r.ok);
    assert_int_equal(r.code, 200); /* 500 would mean the copies differed */
    assert_true(dt >= 1.4); /* not before the second retransmission */
}

struct bad_case {
    const char *kind;
    int malformed, unmatched; /* expected increments */
};

static void run_bad(struct fixture *f, const char *transport, enum dw_sip_transport t,
                    const struct bad_case *cases, size_t n, const char *cert, const char *key,
                    const char *ca)
{
    struct dw_probe_spec spec;
    struct result r;

    for (size_t i = 0; i < n; i++) {
        char script[256];
        struct dw_sip_stats before = stats(f), after;
        double t0;
        int retrans;
        snprintf(script, sizeof script, "bad:%s", cases[i].kind);
        spec_init(&spec, t, start_fake(transport, script, cert, key, NULL, NULL), 10000);
        if (ca)
            snprintf(spec.ca_file, sizeof spec.ca_file, "%s", ca);
        t0 = now_s();
        r = probe(f, &spec);
        retrans = t == DW_SIP_UDP ? max_retransmissions(now_s() - t0) : 0;
        kill_peers_and_drain(f);
        after = stats(f);
        int dm = (int)(after.malformed - before.malformed);
        int du = (int)(after.unmatched - before.unmatched);
        print_message("%s %-10s -> %s (malformed +%d, unmatched +%d)\n", transport, cases[i].kind,
                      r.detail, dm, du);
        assert_true(r.ok); /* the correct answer after the bad one still counts */
        assert_int_equal(r.code, 200);
        if (retrans == 0) {
            assert_int_equal(dm, cases[i].malformed);
            assert_int_equal(du, cases[i].unmatched);
        } else {
            /* A slow peer answered a retransmitted copy as well, with the same bad messages and
             * a 200 that no probe waits for any more. */
            print_message("%d retransmission(s) possible\n", retrans);
            assert_true(dm >= cases[i].malformed && dm <= cases[i].malformed * (1 + retrans));
            assert_true(du >= cases[i].unmatched &&
                        du <= cases[i].unmatched + retrans * (cases[i].unmatched + 1));
        }
    }
}

static void test_udp_malformed(void **state)
{
    static const struct bad_case cases[] = {
        {"truncated", 1, 0}, {"callid", 0, 1},  {"branch", 0, 1},
        {"cseq", 0, 1},      {"oversized", 0, 1}, {"garbage", 1, 0},
        {"nul", 1, 0},       {"request", 0, 1}, {"empty", 1, 0},
        {"truncated,callid,branch,cseq,oversized,garbage,nul,request,empty", 4, 5},
    };

    TL_NEED("python3");
    run_bad(*state, "udp", DW_SIP_UDP, cases, sizeof cases / sizeof cases[0], NULL, NULL, NULL);
}

static void test_tcp_malformed(void **state)
{
    static const struct bad_case cases[] = {
        {"truncated", 1, 0}, {"callid", 0, 1},  {"branch", 0, 1},
        {"cseq", 0, 1},      {"oversized", 0, 1}, {"garbage", 1, 0},
        {"nul", 1, 0},       {"request", 0, 1},
        {"empty", 0, 0}, /* CRLFs between messages are keep-alives on a stream */
        {"truncated,callid,branch,cseq,oversized,garbage,nul,request,empty", 3, 5},
    };
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;
    struct dw_sip_stats before;

    TL_NEED("python3");
    run_bad(f, "tcp", DW_SIP_TCP, cases, sizeof cases / sizeof cases[0], NULL, NULL, NULL);

    before = stats(f);
    spec_init(&spec, DW_SIP_TCP, start_fake("tcp", "huge", NULL, NULL, NULL, NULL), 10000);
    r = probe(f, &spec);
    assert_false(r.ok);
    assert_non_null(strstr(r.detail, "malformed"));
    assert_int_equal(stats(f).malformed, before.malformed + 1);

    spec_init(&spec, DW_SIP_TCP, start_fake("tcp", "cut", NULL, NULL, NULL, NULL), 10000);
    r = probe(f, &spec);
    assert_false(r.ok);
    assert_string_equal(r.detail, "truncated response");

    spec_init(&spec, DW_SIP_TCP, start_fake("tcp", "close", NULL, NULL, NULL, NULL), 10000);
    r = probe(f, &spec);
    assert_false(r.ok);
    assert_string_equal(r.detail, "connection closed");
    tl_kill_all();
}

static void test_tcp_refused(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;

    spec_init(&spec, DW_SIP_TCP, tl_free_port(SOCK_STREAM), 2000);
    r = probe(f, &spec);
    assert_false(r.ok);
    assert_string_equal(r.detail, "connect: connection refused");
    assert_int_equal(stats(f).transport_errors, 1);
    spec.transport = DW_SIP_TLS;
    r = probe(f, &spec);
    assert_false(r.ok);
    assert_string_equal(r.detail, "connect: connection refused");
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r = {0};

    spec_init(&spec, DW_SIP_UDP, 5060, 1000);
    snprintf(spec.address, sizeof spec.address, "no-port");
    assert_int_equal(dw_sip_probe(f->sip, &spec, on_result, &r), -1);
    snprintf(spec.address, sizeof spec.address, "example.com:5060"); /* dotted quads only */
    assert_int_equal(dw_sip_probe(f->sip, &spec, on_result, &r), -1);
    snprintf(spec.address, sizeof spec.address, "127.0.0.1:70000");
    assert_int_equal(dw_sip_probe(f->sip, &spec, on_result, &r), -1);
    spec_init(&spec, DW_SIP_UDP, 5060, 1000);
    snprintf(spec.request_uri, sizeof spec.request_uri, "sip:a@b\r\nX-Injected: 1");
    assert_int_equal(dw_sip_probe(f->sip, &spec, on_result, &r), -1);
    assert_int_equal(r.done, 0);
    assert_int_equal(stats(f).sent, 0);
}

/* dw_sip_close completes in-flight probes with "closed", also when called from a callback. */
static void test_close_in_flight(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec su, st;
    struct result r[3];
    struct dw_sip *s;
    char err[256];

    TL_NEED("python3");
    spec_init(&su, DW_SIP_UDP, start_fake("udp", "silent", NULL, NULL, NULL, NULL), 5000);
    spec_init(&st, DW_SIP_TCP, start_fake("tcp", "silent", NULL, NULL, NULL, NULL), 5000);
    memset(r, 0, sizeof r);
    assert_int_equal(dw_sip_init(&s, &f->loop, "127.0.0.1", err, sizeof err), 0);
    assert_int_equal(dw_sip_probe(s, &su, on_result, &r[0]), 0);
    assert_int_equal(dw_sip_probe(s, &st, on_result, &r[1]), 0);
    assert_int_equal(dw_sip_probe(s, &st, on_result, &r[2]), 0);
    for (int i = 0; i < 20; i++) /* let the connects and the first send happen */
        uv_run(&f->loop, UV_RUN_NOWAIT), usleep(5000);
    r[0].close_in_cb = s; /* the first callback closes the client again: must be harmless */
    dw_sip_close(s);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].done, 1);
        assert_false(r[i].ok);
        assert_string_equal(r[i].detail, "closed");
    }
}

/* ---- TLS against sip_fake.py with a CA made here ---- */

static char ca_pem[DW_PATH_MAX], srv_pem[DW_PATH_MAX], srv_key[DW_PATH_MAX], cli_pem[DW_PATH_MAX],
    cli_key[DW_PATH_MAX];

static bool make_certs(void)
{
    const char *d = tmpdir;
    static bool made;

    if (made)
        return true;
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", d);
    snprintf(srv_pem, sizeof srv_pem, "%s/srv.pem", d);
    snprintf(srv_key, sizeof srv_key, "%s/srv.key", d);
    snprintf(cli_pem, sizeof cli_pem, "%s/cli.pem", d);
    snprintf(cli_key, sizeof cli_key, "%s/cli.key", d);
    if (tl_make_certs(d) != 0)
        return false;
    made = true;
    return true;
}

static struct result tls_probe(struct fixture *f, int port, const char *ca, const char *name,
                               bool verify)
{
    struct dw_probe_spec spec;

    spec_init(&spec, DW_SIP_TLS, port, 10000);
    spec.verify_tls = verify;
    snprintf(spec.ca_file, sizeof spec.ca_file, "%s", ca ? ca : "");
    snprintf(spec.tls_server_name, sizeof spec.tls_server_name, "%s", name ? name : "");
    return probe(f, &spec);
}

static void test_tls(void **state)
{
    struct fixture *f = *state;
    struct result r;
    int port;

    TL_NEED("python3");
    TL_NEED("openssl");
    assert_true(make_certs());
    port = start_fake("tls", "ok", srv_pem, srv_key, NULL, NULL);

    r = tls_probe(f, port, ca_pem, "sip.test", true);
    assert_true(r.ok);
    assert_int_equal(r.code, 200);
    r = tls_probe(f, port, ca_pem, "127.0.0.1", true); /* an IP SAN */
    assert_true(r.ok);
    r = tls_probe(f, port, ca_pem, "", true); /* chain checked, no name */
    assert_true(r.ok);

    r = tls_probe(f, port, ca_pem, "other.test", true);
    assert_false(r.ok);
    assert_non_null(strstr(r.detail, "certificate verify failed"));
    r = tls_probe(f, port, NULL, "sip.test", true); /* system CAs do not know our test CA */
    assert_false(r.ok);
    assert_non_null(strstr(r.detail, "tls: "));
    r = tls_probe(f, port, NULL, "other.test", false);
    assert_true(r.ok);
    r = tls_probe(f, port, "/nonexistent/ca.pem", "sip.test", true);
    assert_false(r.ok);
    assert_non_null(strstr(r.detail, "cannot load CA file"));
    assert_int_equal(stats(f).answered, 4);
}

/* The CA file is read by dw_sip_prepare at start: gone afterwards, the probe still verifies. */
static void test_tls_ca_loaded_at_prepare(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    char copy[] = "/tmp/drwatch-ca-XXXXXX", err[160] = "", cmd[512];
    struct result r;
    int port, fd;

    TL_NEED("python3");
    TL_NEED("openssl");
    assert_true(make_certs());
    port = start_fake("tls", "ok", srv_pem, srv_key, NULL, NULL);
    fd = mkstemp(copy);
    assert_true(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ca_pem, copy);
    assert_int_equal(system(cmd), 0);
    spec_init(&spec, DW_SIP_TLS, port, 10000);
    spec.verify_tls = true;
    snprintf(spec.ca_file, sizeof spec.ca_file, "%s", copy);
    snprintf(spec.tls_server_name, sizeof spec.tls_server_name, "sip.test");
    assert_int_equal(dw_sip_prepare(f->sip, &spec, err, sizeof err), 0);
    assert_int_equal(unlink(copy), 0);
    r = probe(f, &spec);
    assert_true(r.ok);
    assert_int_equal(r.code, 200);

    snprintf(spec.ca_file, sizeof spec.ca_file, "/nonexistent/ca.pem");
    assert_int_equal(dw_sip_prepare(f->sip, &spec, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot load CA file /nonexistent/ca.pem"));
}

static void test_tls_client_cert(void **state)
{
    struct fixture *f = *state;
    struct dw_probe_spec spec;
    struct result r;
    int port;

    TL_NEED("python3");
    TL_NEED("openssl");
    assert_true(make_certs());
    port = start_fake("tls", "ok", srv_pem, srv_key, "--client-ca", ca_pem);
    spec_init(&spec, DW_SIP_TLS, port, 10000);
    snprintf(spec.ca_file, sizeof spec.ca_file, "%s", ca_pem);
    snprintf(spec.tls_server_name, sizeof spec.tls_server_name, "sip.test");
    r = probe(f, &spec);
    assert_false(r.ok); /* the server wants a client certificate */
    print_message("without client cert: %s\n", r.detail);
    snprintf(spec.client_cert, sizeof spec.client_cert, "%s", cli_pem);
    snprintf(spec.client_key, sizeof spec.client_key, "%s", cli_key);
    r = probe(f, &spec);
    assert_true(r.ok);
    assert_int_equal(r.code, 200);
    snprintf(spec.client_key, sizeof spec.client_key, "%s", srv_key); /* not the cert's key */
    r = probe(f, &spec);
    assert_false(r.ok);
    assert_non_null(strstr(r.detail, "cannot load client key"));
}

static void test_tls_malformed(void **state)
{
    static const struct bad_case cases[] = {
        {"garbage,callid,nul,branch", 2, 2},
    };

    TL_NEED("python3");
    TL_NEED("openssl");
    assert_true(make_certs());
    run_bad(*state, "tls", DW_SIP_TLS, cases, 1, srv_pem, srv_key, ca_pem);
}

static int group_setup(void **state)
{
    (void)state;
    assert_int_equal(tl_tmpdir(tmpdir, sizeof tmpdir, "dw-test-sip"), 0);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tl_kill_all();
    tl_rmtree(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sipp_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sipp_alive_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sipp_silent_and_slow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sipp_provisional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sipp_many_udp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sipp_any_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_udp_retransmit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_udp_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_ca_loaded_at_prepare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_malformed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
