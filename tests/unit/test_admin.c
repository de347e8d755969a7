/* The admin socket is created with its final mode: uv_pipe_bind is wrapped (-Wl,--wrap) to see
 * the socket's mode the moment it exists, whatever the process umask, and the umask comes back
 * unchanged. The socket then answers a request. Deferred replies keep a client's replies in
 * request order and outlive their client; lines up to DW_ADMIN_MAX_LINE pass, longer ones not. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "drwatch/admin.h"
#include "testlib.h"

static int bound_mode = -1; /* mode of the socket right after the last bind, -1 if none */

int __real_uv_pipe_bind(uv_pipe_t *handle, const char *name);
int __wrap_uv_pipe_bind(uv_pipe_t *handle, const char *name);

int __wrap_uv_pipe_bind(uv_pipe_t *handle, const char *name)
{
    struct stat st;
    int rc = __real_uv_pipe_bind(handle, name);

    bound_mode = rc == 0 && stat(name, &st) == 0 && S_ISSOCK(st.st_mode)
                     ? (int)(st.st_mode & 07777)
                     : -1;
    return rc;
}

static int handled;

static void handler(void *data, const cJSON *req, cJSON *reply, struct dw_admin_call *call)
{
    (void)data;
    (void)req;
    (void)call;
    handled++;
    cJSON_AddStringToObject(reply, "pong", "yes");
}

static int readable(void *arg)
{
    struct pollfd p = {*(int *)arg, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

static void test_socket_mode(void **state)
{
    static const mode_t masks[] = {0, 022, 077};
    char dir[64], path[96], err[256], buf[256]; /* path fits sun_path (108) */

    (void)state;
    assert_int_equal(tl_tmpdir(dir, sizeof dir, "drwatch-admin-"), 0);
    snprintf(path, sizeof path, "%s/admin.sock", dir);
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        struct tl_loop e;
        struct dw_admin *a = NULL;
        struct stat st;

        tl_loop_init(&e, 5);
        mode_t saved = umask(masks[i]);
        bound_mode = -1;
        handled = 0;
        int rc = dw_admin_start(&a, &e.loop, path, handler, NULL, err, sizeof err);
        mode_t during = umask(saved);
        assert_int_equal(rc, 0);
        /* born 0660: never looser (umask 0), never tighter (077 would shut the group out) */
        if (bound_mode != 0660)
            fail_msg("umask %03o: socket bound with mode %04o", (unsigned)masks[i],
                     (unsigned)bound_mode);
        assert_int_equal(during, masks[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0660);

        /* and it works */
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        static const char req[] = "{\"v\":1,\"cmd\":\"ping\"}\n";
        assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
        assert_int_equal(tl_run_until(&e, readable, &fd, 5000), 0);
        ssize_t n = read(fd, buf, sizeof buf - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_int_equal(handled, 1);
        assert_non_null(strstr(buf, "\"pong\":\"yes\""));
        close(fd);

        dw_admin_close(a);
        assert_int_equal(access(path, F_OK), -1);
        tl_run_for(&e, 20);
        tl_loop_close(&e);
    }
    tl_rmtree(dir);
}

/* What the deferring handler saw: "later" defers (kept in .call), "quick" defers and answers at
 * once, "big" checks its pad's length, anything else answers at once. */
struct seen {
    char order[16][16]; /* cmd of each request, in handling order */
    int n;
    struct dw_admin_call *call;
    size_t pad_len;
};

static void defer_handler(void *data, const cJSON *req, cJSON *reply, struct dw_admin_call *call)
{
    struct seen *s = data;
    const char *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd")->valuestring;
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(req, "pad");

    if (s->n < 16)
        snprintf(s->order[s->n++], sizeof s->order[0], "%s", cmd);
    cJSON_AddBoolToObject(reply, "ok", 1);
    cJSON_AddStringToObject(reply, "cmd", cmd);
    if (strcmp(cmd, "later") == 0 || strcmp(cmd, "quick") == 0) {
        cJSON_AddStringToObject(reply, "discarded", "yes"); /* must never be sent */
        dw_admin_defer(call);
        s->call = call;
    }
    if (strcmp(cmd, "quick") == 0) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "cmd", "quick");
        dw_admin_reply(call, r);
        cJSON_Delete(r);
        s->call = NULL;
    }
    if (cJSON_IsString(pad))
        s->pad_len = strlen(pad->valuestring);
}

/* A client on a non-blocking socket: pump() writes what is left of out and gathers what comes
 * back, so one loop serves both sides of a large request. */
struct client {
    int fd;
    const char *out;
    size_t out_len, out_off;
    int write_failed;
    char *in;
    size_t in_len, in_cap;
    int eof;
};

static void client_connect(struct client *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memset(c, 0, sizeof *c);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    c->in_cap = 4096;
    c->in = malloc(c->in_cap);
    assert_non_null(c->in);
}

static void client_done(struct client *c)
{
    close(c->fd);
    free(c->in);
    c->fd = -1;
    c->in = NULL;
}

static void pump(struct client *c)
{
    while (!c->write_failed && c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            c->write_failed = errno != EAGAIN; /* the daemon hung up: read what it said */
            break;
        }
        c->out_off += (size_t)w;
    }
    for (;;) {
        if (c->in_len + 1 >= c->in_cap) {
            c->in_cap *= 2;
            c->in = realloc(c->in, c->in_cap);
            assert_non_null(c->in);
        }
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
        if (r <= 0) {
            /* a daemon that hangs up on unread input makes the read fail with ECONNRESET */
            c->eof = c->eof || r == 0 || errno != EAGAIN;
            break;
        }
        c->in_len += (size_t)r;
    }
    c->in[c->in_len] = '\0';
}

static void client_send(struct client *c, const char *text, size_t len)
{
    c->out = text;
    c->out_len = len;
    c->out_off = 0;
    pump(c);
}

static int lines_in(const struct client *c)
{
    int n = 0;
    for (size_t i = 0; i < c->in_len; i++)
        n += c->in[i] == '\n';
    return n;
}

struct want_lines {
    struct client *c;
    int n;
};

static int got_lines(void *arg)
{
    struct want_lines *w = arg;
    pump(w->c);
    return lines_in(w->c) >= w->n;
}

static int got_eof(void *arg)
{
    struct client *c = arg;
    pump(c);
    return c->eof;
}

static int deferred(void *arg)
{
    return ((struct seen *)arg)->call != NULL;
}

/* The admin's pipes, server included, counted when walking the loop: *open those not closing,
 * *reading those libuv still reads from or writes to. */
struct pipes {
    int open, reading;
};

static void count_pipe(uv_handle_t *h, void *arg)
{
    struct pipes *p = arg;
    if (h->type != UV_NAMED_PIPE || uv_is_closing(h))
        return;
    p->open++;
    p->reading += uv_is_active(h);
}

static struct pipes count_pipes(uv_loop_t *loop)
{
    struct pipes p = {0, 0};
    uv_walk(loop, count_pipe, &p);
    return p;
}

static int only_server_left(void *arg)
{
    return count_pipes(arg).open == 1;
}

static int only_server_active(void *arg)
{
    return count_pipes(arg).reading == 1;
}

struct fixture {
    char dir[64], path[96];
    struct tl_loop e;
    struct dw_admin *a;
    struct seen seen;
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256];

    assert_non_null(f);
    assert_int_equal(tl_tmpdir(f->dir, sizeof f->dir, "drwatch-admin-"), 0);
    snprintf(f->path, sizeof f->path, "%s/admin.sock", f->dir);
    tl_loop_init(&f->e, 5);
    assert_int_equal(dw_admin_start(&f->a, &f->e.loop, f->path, defer_handler, &f->seen, err,
                                    sizeof err),
                     0);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;

    dw_admin_close(f->a);
    tl_loop_close(&f->e); /* runs the close callbacks: no handle may be left */
    tl_rmtree(f->dir);
    free(f);
    return 0;
}

/* Connects, sends req, and runs the loop until the handler deferred a call. */
static void open_deferred(struct fixture *f, struct client *c, const char *req)
{
    client_connect(c, f->path);
    client_send(c, req, strlen(req));
    assert_int_equal(tl_run_until(&f->e, deferred, &f->seen, 5000), 0);
}

/* Answers the deferred call, as its owner would once its commit is done. */
static void answer(struct fixture *f, const char *reply_json)
{
    cJSON *r = cJSON_Parse(reply_json);
    assert_non_null(r);
    dw_admin_reply(f->seen.call, r);
    cJSON_Delete(r);
    f->seen.call = NULL;
}

static void test_deferred_reply_keeps_order(void **state)
{
    struct fixture *f = *state;
    struct client c;
    static const char reqs[] = "{\"v\":1,\"cmd\":\"quick\"}\n{\"v\":1,\"cmd\":\"later\"}\n"
                               "{\"v\":1,\"cmd\":\"now\"}\nnot json\n";

    open_deferred(f, &c, reqs);
    /* All four lines came in one write: the ones after "later" wait for its reply. */
    assert_int_equal(f->seen.n, 2);
    assert_string_equal(f->seen.order[0], "quick");
    assert_string_equal(f->seen.order[1], "later");
    struct want_lines one = {&c, 1};
    assert_int_equal(tl_run_until(&f->e, got_lines, &one, 5000), 0);
    assert_non_null(strstr(c.in, "\"cmd\":\"quick\""));
    assert_null(strstr(c.in, "discarded"));

    answer(f, "{\"ok\":true,\"answer\":\"after commit\"}");
    /* The waiting line is not handled inside the owner's dw_admin_reply. */
    assert_int_equal(f->seen.n, 2);

    struct want_lines four = {&c, 4};
    assert_int_equal(tl_run_until(&f->e, got_lines, &four, 5000), 0);
    assert_int_equal(f->seen.n, 3);
    assert_string_equal(f->seen.order[2], "now");
    char *l2 = strchr(c.in, '\n') + 1, *l3 = strchr(l2, '\n') + 1, *l4 = strchr(l3, '\n') + 1;
    assert_true(strncmp(l2, "{\"ok\":true,\"answer\":\"after commit\"}\n", 36) == 0);
    assert_true(strncmp(l3, "{\"ok\":true,\"cmd\":\"now\"}\n", 24) == 0);
    assert_true(strncmp(l4, "{\"ok\":false,\"error\":\"request: not a JSON object\"}\n", 50) == 0);
    assert_null(strstr(c.in, "discarded"));
    client_done(&c);
}

static void test_deferred_reply_after_disconnect(void **state)
{
    struct fixture *f = *state;
    struct client c;
    static const char req[] = "{\"v\":1,\"cmd\":\"later\"}\n{\"v\":1,\"cmd\":\"never\"}\n";

    open_deferred(f, &c, req);
    client_done(&c);
    /* The admin notices the hang-up and lets the client go while the call is still out. */
    assert_int_equal(tl_run_until(&f->e, only_server_left, &f->e.loop, 5000), 0);
    answer(f, "{\"ok\":true}"); /* just freed: ASan and LSan watch */

    /* the same with the reply racing the hang-up: sent into a dead socket, then freed */
    open_deferred(f, &c, req);
    client_done(&c);
    answer(f, "{\"ok\":true}");
    assert_int_equal(tl_run_until(&f->e, only_server_left, &f->e.loop, 5000), 0);

    /* and a call still out when the admin socket closes */
    open_deferred(f, &c, req);
    dw_admin_close(f->a);
    f->a = NULL;
    assert_int_equal(tl_run_until(&f->e, got_eof, &c, 5000), 0);
    answer(f, "{\"ok\":true}");
    assert_int_equal(c.in_len, 0);
    /* no line that waited behind a call whose client went was ever handled */
    assert_int_equal(f->seen.n, 3);
    client_done(&c);
}

static void test_deferred_reply_after_half_close(void **state)
{
    struct fixture *f = *state;
    struct client c;

    open_deferred(f, &c, "{\"v\":1,\"cmd\":\"later\"}\n{\"v\":1,\"cmd\":\"then\"}\n");
    assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
    /* reading stopped at EOF, yet the client stays: it is still owed two replies */
    assert_int_equal(tl_run_until(&f->e, only_server_active, &f->e.loop, 5000), 0);
    assert_int_equal(count_pipes(&f->e.loop).open, 2);
    answer(f, "{\"ok\":true}");
    assert_int_equal(tl_run_until(&f->e, got_eof, &c, 5000), 0);
    assert_int_equal(lines_in(&c), 2);
    assert_string_equal(c.in, "{\"ok\":true}\n{\"ok\":true,\"cmd\":\"then\"}\n");
    client_done(&c);
}

static const char big_head[] = "{\"v\":1,\"cmd\":\"big\",\"pad\":\"", big_tail[] = "\"}\n";
/* the pad's length in a big_request() line line_len bytes long */
#define BIG_PAD(line_len) ((line_len) - (sizeof big_head - 1) - (sizeof big_tail - 2))

/* {"v":1,"cmd":"big","pad":"ppp..."} line_len bytes long, then a newline; malloc'd. */
static char *big_request(size_t line_len, size_t *len)
{
    size_t pad = BIG_PAD(line_len);
    *len = line_len + 1;
    char *req = malloc(*len + 1);
    assert_non_null(req);
    memcpy(req, big_head, sizeof big_head - 1);
    memset(req + sizeof big_head - 1, 'p', pad);
    memcpy(req + sizeof big_head - 1 + pad, big_tail, sizeof big_tail);
    return req;
}

static void test_large_line_accepted(void **state)
{
    struct fixture *f = *state;
    struct client c;
    size_t len;
    char *req = big_request(2u << 20, &len);

    client_connect(&c, f->path);
    client_send(&c, req, len);
    struct want_lines one = {&c, 1};
    assert_int_equal(tl_run_until(&f->e, got_lines, &one, 20000), 0);
    assert_int_equal(f->seen.pad_len, BIG_PAD(2u << 20));
    assert_string_equal(c.in, "{\"ok\":true,\"cmd\":\"big\"}\n");
    client_done(&c);
    free(req);
}

static void test_line_over_limit_refused(void **state)
{
    struct fixture *f = *state;
    struct client c;
    size_t len;
    char *req = big_request(DW_ADMIN_MAX_LINE + 1, &len);

    client_connect(&c, f->path);
    client_send(&c, req, len);
    assert_int_equal(tl_run_until(&f->e, got_eof, &c, 20000), 0);
    assert_string_equal(c.in, "{\"ok\":false,\"error\":\"request: line longer than 8388608 bytes\"}\n");
    assert_int_equal(f->seen.n, 0);
    client_done(&c);
    free(req);

    /* exactly at the limit still passes */
    req = big_request(DW_ADMIN_MAX_LINE, &len);
    client_connect(&c, f->path);
    client_send(&c, req, len);
    struct want_lines one = {&c, 1};
    assert_int_equal(tl_run_until(&f->e, got_lines, &one, 20000), 0);
    assert_string_equal(c.in, "{\"ok\":true,\"cmd\":\"big\"}\n");
    assert_int_equal(f->seen.pad_len, BIG_PAD(DW_ADMIN_MAX_LINE));
    client_done(&c);
    free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_mode),
        cmocka_unit_test_setup_teardown(test_deferred_reply_keeps_order, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_deferred_reply_after_disconnect, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_deferred_reply_after_half_close, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_large_line_accepted, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_line_over_limit_refused, fixture_setup,
                                        fixture_teardown),
    };

    tl_main_begin();
    return tl_main_end(cmocka_run_group_tests(tests, NULL, NULL));
}
