/* Config on disk: reads the config and secret files, answers the parser's file checks. */
#include "drwatch/cfgfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (16u << 20)  /* room for DW_MAX_EDGES_TOTAL Edges with probes */

static int check_readable(const char *path, char *msg, size_t len)
{
    struct stat st;
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st) != 0)
        snprintf(msg, len, "cannot read \"%s\": %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        snprintf(msg, len, "cannot read \"%s\": not a regular file", path);
    else
        rc = 0;
    if (fd >= 0)
        close(fd);
    return rc;
}

static int check_directory(const char *path, char *msg, size_t len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(msg, len, "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(msg, len, "\"%s\" is not a directory", path);
        return -1;
    }
    return 0;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

const struct dw_config_files dw_config_files_posix = {
    .readable = check_readable,
    .directory = check_directory,
    .exists = exists,
    .read_secret = dw_config_read_secret,
};

int dw_config_parse(const char *json, size_t len, struct dw_config *cfg,
                    struct dw_config_errors *errs)
{
    return dw_config_parse_with(json, len, &dw_config_files_posix, cfg, errs);
}

/* The one error of a file that could not be read, worded as the parser words its own. */
__attribute__((format(printf, 2, 3)))
static void load_error(struct dw_config_errors *errs, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    if (!errs)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (snprintf(errs->msg[0], sizeof errs->msg[0], "$: %s", text) < 0)
        errs->msg[0][0] = '\0';
    errs->n = 1;
}

int dw_config_load(const char *path, struct dw_config *cfg, struct dw_config_errors *errs)
{
    return dw_config_load_doc(path, cfg, errs, NULL);
}

int dw_config_load_doc(const char *path, struct dw_config *cfg, struct dw_config_errors *errs,
                       cJSON **doc)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    memset(cfg, 0, sizeof *cfg);
    if (errs)
        errs->n = 0;
    if (fd < 0 || fstat(fd, &st) != 0) {
        load_error(errs, "cannot read \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > CONFIG_FILE_MAX) {
        load_error(errs, "cannot read \"%s\": %s", path,
                   S_ISREG(st.st_mode) ? "larger than 16 MiB" : "not a regular file");
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        load_error(errs, "out of memory");
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            load_error(errs, "cannot read \"%s\": %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    rc = dw_config_parse(buf, n, cfg, errs);
    if (rc == 0 && doc && !(*doc = cJSON_ParseWithLength(buf, n))) {
        load_error(errs, "out of memory");
        dw_config_free(cfg);
        rc = -1;
    }
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int dw_config_read_secret(const char *path, char *out, size_t out_len, char *errmsg,
                          size_t errlen)
{
    size_t n = 0;
    bool too_long = false;
    int fd;

    if (!out || out_len < 2) {
        snprintf(errmsg, errlen, "no room for the secret of \"%s\"", path);
        return -1;
    }
    out[0] = '\0';
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        goto fail_errno;
    for (;;) {
        char extra[256];
        bool full = n == out_len - 1;
        ssize_t r = full ? read(fd, extra, sizeof extra) : read(fd, out + n, out_len - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail_errno;
        if (r == 0)
            break;
        if (!full)
            n += (size_t)r;
        /* trailing whitespace past the buffer is fine; anything else would be cut off */
        for (ssize_t i = 0; full && i < r; i++)
            too_long |= !is_space(extra[i]);
        explicit_bzero(extra, sizeof extra);
    }
    close(fd);
    while (n > 0 && is_space(out[n - 1]))
        n--;
    out[n] = '\0';
    if (too_long) {
        snprintf(errmsg, errlen, "\"%s\" is longer than %zu bytes", path, out_len - 1);
        explicit_bzero(out, out_len);
        return -1;
    }
    if (n == 0) {
        snprintf(errmsg, errlen, "\"%s\" is empty", path);
        return -1;
    }
    return 0;

fail_errno:
    snprintf(errmsg, errlen, "cannot read \"%s\": %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    explicit_bzero(out, out_len);
    return -1;
}


int dw_config_read_peer_secrets(const struct dw_config *cfg, struct dw_peer_secrets *out,
                                char *errmsg, size_t errlen)
{
    return dw_config_peer_secrets_with(cfg, &dw_config_files_posix, out, errmsg, errlen);
}
