#include "testlib.h"

#include "drwatch/genesys.h"
#include "drwatch/log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIVE 32
#define MAX_ARGS 32

/* Children not yet stopped, so a test failing half-way leaves none behind. */
static pid_t live[MAX_LIVE];

bool tl_have_exe(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];

    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir != NULL;
         dir = strtok_r(NULL, ":", &save)) {
        char exe[4200];
        snprintf(exe, sizeof exe, "%s/%s", dir, name);
        if (access(exe, X_OK) == 0)
            return true;
    }
    return false;
}

static void live_set(pid_t old, pid_t now)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == old) {
            live[i] = now;
            return;
        }
    }
}

static bool live_full(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == 0)
            return false;
    return true;
}

static void kill_now(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    live_set(pid, 0);
}

/* Forks argv with stdout on out_fd (or /dev/null, then stderr too). Returns the pid or -1. */
static pid_t spawn(const char *const *argv, int out_fd, const char *cwd)
{
    char script[1024];
    const char *args[MAX_ARGS];
    size_t len = strlen(argv[0]);
    int n = 0;

    if (len > 3 && strcmp(argv[0] + len - 3, ".py") == 0) {
        snprintf(script, sizeof script, "%s/%s", DW_TOOLS_DIR, argv[0]);
        args[n++] = "python3";
        args[n++] = script;
        argv++;
    }
    for (; *argv != NULL; argv++) {
        if (n == MAX_ARGS - 1)
            return -1;
        args[n++] = *argv;
    }
    args[n] = NULL;
    if (live_full())
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan if the test itself crashes */
        dup2(null, 0);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        if (out_fd < 0) /* sipp draws its screen on stderr too */
            dup2(null, 2);
        if (cwd != NULL && chdir(cwd) != 0)
            _exit(126);
        execvp(args[0], (char *const *)args);
        _exit(127);
    }
    live_set(0, pid);
    return pid;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tl_sim_start(const char *const *argv, struct tl_sim *sim)
{
    int fds[2];
    char line[128];
    size_t len = 0;

    memset(sim, 0, sizeof *sim);
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = spawn(argv, fds[1], NULL);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    long deadline = now_ms() + 20000;
    while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
        long left = deadline - now_ms();
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t got = read(fds[0], line + len, sizeof line - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fds[0]);
    line[len] = '\0';
    if (sscanf(line, "READY %d", &sim->port) == 1 || sscanf(line, "PORT %d", &sim->port) == 1) {
        sim->pid = pid;
        return 0;
    }
    fprintf(stderr, "%s: no ready line (got \"%s\")\n", argv[0], line);
    kill_now(pid);
    return -1;
}

int tl_spawn(const char *const *argv, const char *cwd, struct tl_sim *sim)
{
    memset(sim, 0, sizeof *sim);
    sim->pid = spawn(argv, -1, cwd);
    if (sim->pid < 0) {
        sim->pid = 0;
        return -1;
    }
    return 0;
}

void tl_sim_stop(struct tl_sim *sim)
{
    if (sim->pid <= 0)
        return;
    kill(sim->pid, SIGTERM);
    for (int i = 0; i < 250; i++) {
        if (waitpid(sim->pid, NULL, WNOHANG) == sim->pid) {
            live_set(sim->pid, 0);
            sim->pid = 0;
            return;
        }
        usleep(20 * 1000);
    }
    kill_now(sim->pid);
    sim->pid = 0;
}

void tl_kill_all(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] > 0)
            kill_now(live[i]);
}

int tl_kill_all_teardown(void **state)
{
    (void)state;
    tl_kill_all();
    return 0;
}

void tl_gsim_start(struct tl_gsim *g, const char *fixture_json)
{
    snprintf(g->fixture, sizeof g->fixture, "/tmp/dw-gfix-%d.json", (int)getpid());
    FILE *f = fopen(g->fixture, "w");
    assert_non_null(f);
    fputs(fixture_json, f);
    fclose(f);
    assert_int_equal(tl_sim_start((const char *[]){"genesys_sim.py", "--port", "0", "--fixture",
                                                   g->fixture, NULL},
                                  &g->sim),
                     0);
    snprintf(g->base, sizeof g->base, "http://127.0.0.1:%d", g->sim.port);
}

void tl_gsim_stop(struct tl_gsim *g)
{
    tl_sim_stop(&g->sim);
    unlink(g->fixture);
}

void tl_on_http_res(const struct dw_http_resp *r, void *data)
{
    struct tl_http_res *h = data;

    h->done = 1;
    h->code = r->curl_code;
    h->status = r->status;
    h->truncated = r->truncated;
    snprintf(h->body, sizeof h->body, "%s", r->body);
}

int tl_http_res_done(void *arg)
{
    return ((struct tl_http_res *)arg)->done;
}

static bool fence_always(void *data, const struct dw_fence *f, char *why, size_t whylen)
{
    (void)data, (void)f, (void)why, (void)whylen;
    return true;
}

const struct dw_fence tl_open_fence = {.term = 1, .op = 1, .seq = 0, .valid = fence_always};

bool tl_fence_flag(void *data, const struct dw_fence *f, char *why, size_t whylen)
{
    struct tl_fence_ctl *c = data;
    (void)f;
    c->asked++;
    if (!c->ok)
        snprintf(why, whylen, "test says no");
    return c->ok;
}

struct dw_genesys *tl_genesys_new(struct tl_loop *l, const char *api_base, const char *login_base,
                                  const char *secret)
{
    struct dw_genesys_cfg cfg;
    struct dw_genesys *g;
    char err[256];

    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.api_base_url, sizeof cfg.api_base_url, "%s", api_base);
    snprintf(cfg.login_base_url, sizeof cfg.login_base_url, "%s", login_base);
    snprintf(cfg.client_id, sizeof cfg.client_id, "drwatch-test");
    cfg.request_timeout_ms = 3000;
    assert_int_equal(dw_genesys_init(&g, &l->loop, l->m, &cfg, secret, err, sizeof err), 0);
    dw_genesys_set_backoff_scale(g, 0.01);
    return g;
}

cJSON *tl_ctl(int port, const char *method, const char *path, const char *body)
{
    char url[256], *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    CURLcode rc = CURLE_FAILED_INIT;
    long status = 0;
    cJSON *j = NULL;

    if (mem != NULL && e != NULL && h != NULL) {
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, mem);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
        if (body != NULL)
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        rc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    }
    if (mem != NULL)
        fclose(mem); /* buf is complete and NUL-terminated only now */
    if (rc == CURLE_OK && status == 200)
        j = cJSON_Parse(buf);
    else
        fprintf(stderr, "control %s %s: curl %d status %ld\n", method, path, rc, status);
    free(buf);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return j;
}

void tl_ctl_ok(int port, const char *method, const char *path, const char *body)
{
    cJSON *j = tl_ctl(port, method, path, body);
    assert_non_null(j);
    cJSON_Delete(j);
}

int tl_tmpdir(char *buf, size_t size, const char *prefix)
{
    int n = snprintf(buf, size, "/tmp/%s-XXXXXX", prefix);

    if (n < 0 || (size_t)n >= size)
        return -1;
    return mkdtemp(buf) != NULL ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tl_rmtree(const char *dir)
{
    if (dir != NULL && dir[0] != '\0')
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int tl_make_certs(const char *dir)
{
    static const char ec[] = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    char cmd[4096];

    snprintf(cmd, sizeof cmd,
             "cd '%s' && exec >openssl.log 2>&1 && "
             "printf 'subjectAltName=DNS:sip.test,IP:127.0.0.1\\n' > srv.ext && "
             "printf 'extendedKeyUsage=clientAuth\\n' > cli.ext && "
             "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=drwatch-test-ca && "
             "openssl req %s -keyout srv.key -out srv.csr -subj /CN=sip.test && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile srv.ext && "
             "openssl req %s -keyout cli.key -out cli.csr -subj /CN=drwatch-client && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out cli.pem -days 2 -extfile cli.ext && "
             "openssl req -x509 %s -keyout self.key -out self.pem -days 2 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1",
             dir, ec, ec, ec, ec);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "making certificates failed (%d): see %s/openssl.log\n", rc, dir);
        return -1;
    }
    return 0;
}

/* Ports handed out before by this process: a later bind to 0 may return one of them while its
 * first user still needs it, so they are never handed out twice. */
static unsigned char given_ports[65536 / 8];

void tl_free_ports(int type, int *out, int n)
{
    int fds[64], nfd = 0;

    /* all held bound until the end, so the kernel cannot return one twice */
    assert_true(n > 0 && n <= 16);
    for (int i = 0; i < n;) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        assert_true(nfd < (int)(sizeof fds / sizeof fds[0]));
        int fd = fds[nfd++] = socket(AF_INET, type, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        int port = ntohs(sa.sin_port);
        if (given_ports[port / 8] & (1u << (port % 8)))
            continue;
        given_ports[port / 8] |= (unsigned char)(1u << (port % 8));
        out[i++] = port;
    }
    for (int i = 0; i < nfd; i++)
        close(fds[i]);
}

int tl_free_port(int type)
{
    int port;
    tl_free_ports(type, &port, 1);
    return port;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

void tl_loop_init(struct tl_loop *l, unsigned tick_ms)
{
    assert_int_equal(uv_loop_init(&l->loop), 0);
    uv_timer_init(&l->loop, &l->tick);
    uv_timer_start(&l->tick, on_tick, tick_ms, tick_ms);
    assert_int_equal(dw_curlm_init(&l->m, &l->loop), 0);
}

int tl_run_until(struct tl_loop *l, int (*pred)(void *), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;

    while (pred == NULL || !pred(arg)) {
        if (uv_hrtime() > deadline)
            return -1;
        uv_run(&l->loop, UV_RUN_ONCE);
    }
    return 0;
}

void tl_run_for(struct tl_loop *l, unsigned ms)
{
    tl_run_until(l, NULL, NULL, ms);
}

void tl_loop_close(struct tl_loop *l)
{
    dw_curlm_close(l->m);
    uv_close((uv_handle_t *)&l->tick, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l->loop), 0);
}

void tl_main_begin(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    dw_log_set_level(getenv("DW_TEST_VERBOSE") ? DW_LOG_DEBUG : DW_LOG_ERROR);
}

int tl_main_end(int rc)
{
    curl_global_cleanup();
    return rc;
}
