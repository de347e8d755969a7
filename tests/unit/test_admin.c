/* The admin socket is created with its final mode: uv_pipe_bind is wrapped (-Wl,--wrap) to see
 * the socket's mode the moment it exists, whatever the process umask, and the umask comes back
 * unchanged. The socket then answers a request. */
#include <poll.h>
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

static void handler(void *data, const cJSON *req, cJSON *reply)
{
    (void)data;
    (void)req;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_mode),
    };

    tl_main_begin();
    return tl_main_end(cmocka_run_group_tests(tests, NULL, NULL));
}
