/* Helpers shared by the I/O tests: child processes (the simulators in tests/tools, sipp) and
 * control requests to them, a libuv loop with curl, temporary directories, test certificates,
 * free ports. Failures inside helpers that return void are cmocka assertions. */
#ifndef DW_TESTLIB_H
#define DW_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <uv.h>

#include "drwatch/genesys.h"
#include "drwatch/http.h"

#ifndef DW_TOOLS_DIR
#define DW_TOOLS_DIR "tests/tools"
#endif

struct tl_sim {
    pid_t pid;
    int port; /* from the "READY <port>" (or "PORT <port>") line */
};

/* Skips the current test when exe is not in PATH. */
#define TL_NEED(exe)                                                                            \
    do {                                                                                        \
        if (!tl_have_exe(exe)) {                                                                \
            print_message("%s not found: skipping\n", exe);                                     \
            skip();                                                                             \
        }                                                                                       \
    } while (0)

bool tl_have_exe(const char *name);

/* Starts argv (NULL-terminated; a name ending in ".py" runs as python3 DW_TOOLS_DIR/<name>) and
 * waits up to 20 s for its "READY <port>" or "PORT <port>" line. stderr stays the test's.
 * Returns 0, or -1 with the child killed. */
int tl_sim_start(const char *const *argv, struct tl_sim *sim);

/* Starts argv with stdout and stderr on /dev/null, in cwd unless NULL; no ready line. */
int tl_spawn(const char *const *argv, const char *cwd, struct tl_sim *sim);

/* SIGTERM, then SIGKILL after 5 s. Accepts a never-started or stopped sim. */
void tl_sim_stop(struct tl_sim *sim);

/* SIGKILLs every child still running (a test failed half-way). */
void tl_kill_all(void);

/* tl_kill_all() as a cmocka group teardown. */
int tl_kill_all_teardown(void **state);

/* A loop with a curl multi on it. The repeating tick makes each UV_RUN_ONCE return, so
 * tl_run_until() notices its deadline. */
struct tl_loop {
    uv_loop_t loop;
    uv_timer_t tick;
    struct dw_curlm *m;
};

void tl_loop_init(struct tl_loop *l, unsigned tick_ms);

/* Turns the loop until pred(arg) holds (never, when pred is NULL) or timeout_ms passes.
 * Returns 0, or -1 on timeout. */
int tl_run_until(struct tl_loop *l, int (*pred)(void *), void *arg, unsigned timeout_ms);
void tl_run_for(struct tl_loop *l, unsigned ms);

/* Closes the curl multi (aborting transfers) and the loop, which must end with no handles. */
void tl_loop_close(struct tl_loop *l);

/* genesys_sim.py serving a fixture written to a file of its own. */
struct tl_gsim {
    struct tl_sim sim;
    char base[64]; /* http://127.0.0.1:<port> */
    char fixture[64];
};

void tl_gsim_start(struct tl_gsim *g, const char *fixture_json);

/* Stops the simulator and removes its fixture file. */
void tl_gsim_stop(struct tl_gsim *g);

/* One dw_http_request() response, for checking after the loop ran. */
struct tl_http_res {
    int done;
    CURLcode code;
    long status;
    int truncated;
    char body[512];
};

/* The dw_http_request() callback filling a struct tl_http_res. */
void tl_on_http_res(const struct dw_http_resp *r, void *data);

/* A tl_run_until() predicate: the response is in. */
int tl_http_res_done(void *arg);

/* A fencing token that always holds, for tests of the client's calls themselves. */
extern const struct dw_fence tl_open_fence;
/* A fencing token a test controls: valid while ok, "test says no" otherwise; asked counts the
 * client's checks. Pass tl_fence_flag as valid and the struct as data. */
struct tl_fence_ctl {
    bool ok;
    int asked;
};
bool tl_fence_flag(void *data, const struct dw_fence *f, char *why, size_t whylen);

/* A Genesys client on l with 3 s requests and its backoff sped up 100 times. */
struct dw_genesys *tl_genesys_new(struct tl_loop *l, const char *api_base, const char *login_base,
                                  const char *secret);

/* Blocking control request to a simulator on 127.0.0.1:port; the parsed 200 response or NULL. */
cJSON *tl_ctl(int port, const char *method, const char *path, const char *body);

/* tl_ctl() that must succeed; the response is dropped. */
void tl_ctl_ok(int port, const char *method, const char *path, const char *body);

/* mkdtemp of /tmp/<prefix>-XXXXXX into buf. Returns 0 or -1. */
int tl_tmpdir(char *buf, size_t size, const char *prefix);

/* Removes dir and everything under it. */
void tl_rmtree(const char *dir);

/* Makes, in dir: ca.pem/key (CN drwatch-test-ca); srv.pem/key signed by it (CN sip.test,
 * SAN DNS:sip.test and IP:127.0.0.1); cli.pem/key signed by it (clientAuth); self.pem/key
 * self-signed for IP:127.0.0.1. openssl's output goes to dir/openssl.log. Returns 0 or -1. */
int tl_make_certs(const char *dir);

/* n distinct free ports on 127.0.0.1 of the socket type (SOCK_STREAM, SOCK_DGRAM). */
void tl_free_ports(int type, int *out, int n);
int tl_free_port(int type);

/* For main() of tests against simulators: SIGPIPE ignored, curl set up, log level from
 * DW_TEST_VERBOSE; tl_main_end() cleans up and returns rc. */
void tl_main_begin(void);
int tl_main_end(int rc);

#endif
