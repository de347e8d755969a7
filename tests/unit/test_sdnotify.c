/* sd_notify(3) on a real loop, read from a unix datagram socket this test binds as
 * $NOTIFY_SOCKET: nothing without it; READY=1 with the status line; STATUS= only when the line
 * changes; WATCHDOG=1 every half $WATCHDOG_USEC, none for another $WATCHDOG_PID and none while
 * the loop is stalled; STOPPING=1 and silence after it; every handle closed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "drwatch/sdnotify.h"
#include "testlib.h"

#define MAX_MSGS 512

struct manager {
    int fd;
    uv_poll_t poll;
    char dir[64], path[96];
    char msgs[MAX_MSGS][256];
    int n;
};

static void take(struct manager *m)
{
    char buf[256];
    ssize_t r;
    while ((r = recv(m->fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
        buf[r] = '\0';
        assert_true(m->n < MAX_MSGS);
        snprintf(m->msgs[m->n++], sizeof m->msgs[0], "%s", buf);
    }
}

static void readable(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    take(p->data);
}

static void manager_open(struct manager *m, uv_loop_t *loop)
{
    memset(m, 0, sizeof *m);
    assert_int_equal(tl_tmpdir(m->dir, sizeof m->dir, "drwatch-sdnotify"), 0);
    snprintf(m->path, sizeof m->path, "%s/notify.sock", m->dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", m->path);
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(m->fd >= 0);
    assert_int_equal(bind(m->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    uv_poll_init(loop, &m->poll, m->fd);
    m->poll.data = m;
    uv_poll_start(&m->poll, UV_READABLE, readable);
    setenv("NOTIFY_SOCKET", m->path, 1);
}

static void manager_close(struct manager *m)
{
    uv_close((uv_handle_t *)&m->poll, NULL);
    close(m->fd);
    tl_rmtree(m->dir);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

static int count(const struct manager *m, const char *msg)
{
    int c = 0;
    for (int i = 0; i < m->n; i++)
        c += strcmp(m->msgs[i], msg) == 0;
    return c;
}

struct until {
    const struct manager *m;
    const char *msg;
    int at_least;
};

static int seen(void *arg)
{
    const struct until *u = arg;
    return count(u->m, u->msg) >= u->at_least;
}

static char status_line[64] = "starting";

static void status_cb(void *data, char *buf, size_t len)
{
    (*(int *)data)++;
    snprintf(buf, len, "%s", status_line);
}

struct fixture {
    struct tl_loop l;
    struct manager m;
    struct dw_sdnotify *s;
    int polls;
};

/* A loop, the manager's socket, and the module started on them with these watchdog variables
 * (NULL: unset), polling the status line every 5 ms. */
static struct fixture *begin(const char *usec, const char *pid)
{
    static struct fixture f;
    tl_loop_init(&f.l, 5);
    manager_open(&f.m, &f.l.loop);
    if (usec)
        setenv("WATCHDOG_USEC", usec, 1);
    if (pid)
        setenv("WATCHDOG_PID", pid, 1);
    f.polls = 0;
    assert_int_equal(dw_sdnotify_start(&f.s, &f.l.loop, 5, status_cb, &f.polls), 0);
    assert_non_null(f.s);
    return &f;
}

static void end(struct fixture *f)
{
    dw_sdnotify_close(f->s);
    manager_close(&f->m);
    tl_loop_close(&f->l);
}

static void test_no_socket_is_a_noop(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    struct tl_loop l;
    tl_loop_init(&l, 10);
    struct dw_sdnotify *s = (struct dw_sdnotify *)&l; /* must be overwritten */
    int polls = 0;
    assert_int_equal(dw_sdnotify_start(&s, &l.loop, 10, status_cb, &polls), 0);
    assert_null(s);
    dw_sdnotify_ready(s);
    dw_sdnotify_stopping(s);
    dw_sdnotify_close(s);
    assert_int_equal(dw_sdnotify_watchdog_usec(s), 0);
    tl_run_for(&l, 30);
    assert_int_equal(polls, 0);
    tl_loop_close(&l);
}

static void test_ready_status_watchdog_stopping(void **state)
{
    (void)state;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(status_line, sizeof status_line, "no leader, term 1, 3 members");
    struct fixture *f = begin("40000", pid);
    struct manager *m = &f->m;
    assert_int_equal(dw_sdnotify_watchdog_usec(f->s), 40000);
    dw_sdnotify_ready(f->s);
    take(m); /* sent synchronously: here before any timer ran */
    assert_int_equal(m->n, 1);
    assert_string_equal(m->msgs[0], "READY=1\nSTATUS=no leader, term 1, 3 members");

    /* the line polled many times, sent once per change */
    struct until five = {m, "WATCHDOG=1", 5};
    assert_int_equal(tl_run_until(&f->l, seen, &five, 2000), 0);
    assert_true(f->polls >= 5);
    assert_int_equal(count(m, "STATUS=no leader, term 1, 3 members"), 0);
    snprintf(status_line, sizeof status_line, "leader, term 2, 3 members");
    struct until led = {m, "STATUS=leader, term 2, 3 members", 1};
    assert_int_equal(tl_run_until(&f->l, seen, &led, 2000), 0);
    int at = f->polls;
    struct until more = {m, "WATCHDOG=1", count(m, "WATCHDOG=1") + 3};
    assert_int_equal(tl_run_until(&f->l, seen, &more, 2000), 0);
    assert_true(f->polls > at);
    assert_int_equal(count(m, "STATUS=leader, term 2, 3 members"), 1);

    dw_sdnotify_stopping(f->s);
    take(m);
    assert_string_equal(m->msgs[m->n - 1], "STOPPING=1\nSTATUS=stopping");
    int n = m->n;
    snprintf(status_line, sizeof status_line, "follower of n2, term 3, 3 members");
    tl_run_for(&f->l, 100); /* five ping intervals, twenty polls: nothing more may come */
    take(m);
    assert_int_equal(m->n, n);
    end(f);
}

static void test_watchdog_of_another_pid_is_off(void **state)
{
    (void)state;
    struct fixture *f = begin("20000", "1");
    assert_int_equal(dw_sdnotify_watchdog_usec(f->s), 0);
    dw_sdnotify_ready(f->s);
    tl_run_for(&f->l, 60); /* six intervals of a watchdog that must not run */
    take(&f->m);
    assert_int_equal(count(&f->m, "WATCHDOG=1"), 0);
    assert_int_equal(f->m.n, 1);
    end(f);
}

struct stall {
    struct manager *m;
    int before, during;
    uv_timer_t t;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Blocks the loop for 100 ms (ten ping intervals): whatever was sent before is drained first,
 * and nothing may arrive while it blocks. */
static void stall_cb(uv_timer_t *t)
{
    struct stall *st = t->data;
    take(st->m);
    st->before = count(st->m, "WATCHDOG=1");
    uint64_t end = mono_ms() + 100;
    while (mono_ms() < end)
        ;
    take(st->m);
    st->during = count(st->m, "WATCHDOG=1") - st->before;
}

static void test_stalled_loop_sends_no_ping(void **state)
{
    (void)state;
    struct fixture *f = begin("20000", NULL);
    assert_int_equal(dw_sdnotify_watchdog_usec(f->s), 20000);
    struct until some = {&f->m, "WATCHDOG=1", 3};
    assert_int_equal(tl_run_until(&f->l, seen, &some, 2000), 0);
    struct stall st = {.m = &f->m, .before = -1};
    uv_timer_init(&f->l.loop, &st.t);
    st.t.data = &st;
    uv_timer_start(&st.t, stall_cb, 0, 0);
    while (st.before < 0)
        assert_int_equal(tl_run_until(&f->l, NULL, NULL, 10), -1);
    assert_true(st.before >= 3);
    assert_int_equal(st.during, 0);
    struct until after = {&f->m, "WATCHDOG=1", st.before + 2}; /* and pings again after it */
    assert_int_equal(tl_run_until(&f->l, seen, &after, 2000), 0);
    uv_close((uv_handle_t *)&st.t, NULL);
    end(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket_is_a_noop),
        cmocka_unit_test(test_ready_status_watchdog_stopping),
        cmocka_unit_test(test_watchdog_of_another_pid_is_off),
        cmocka_unit_test(test_stalled_loop_sends_no_ping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
