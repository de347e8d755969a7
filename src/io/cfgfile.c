/* Config on disk: reads the config and secret files, answers the parser's file checks. */
#include "drwatch/cfgfile.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
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
    if (!errs || errs->n >= DW_CFG_MAX_ERRORS)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (snprintf(errs->msg[errs->n], sizeof errs->msg[0], "%s", text) < 0)
        errs->msg[errs->n][0] = '\0';
    errs->n++;
}

/* The whole file as a NUL-terminated string (free), or NULL with the reason in why. */
static char *read_text(const char *path, size_t *len, char *why, size_t whylen)
{
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whylen, "cannot read \"%s\": %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > CONFIG_FILE_MAX) {
        snprintf(why, whylen, "cannot read \"%s\": %s", path,
                 S_ISREG(st.st_mode) ? "larger than 16 MiB" : "not a regular file");
        goto fail;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "cannot read \"%s\": %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    close(fd);
    return buf;
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* One file parsed as JSON; NULL after adding "FILE: $: why" (or "$: why" for the only file). */
static cJSON *load_json(const char *path, bool name_file, struct dw_config_errors *errs)
{
    char why[256];
    size_t len = 0;
    char *text = read_text(path, &len, why, sizeof why);
    cJSON *doc = text ? dw_config_parse_json(text, len, why, sizeof why) : NULL;
    free(text);
    if (!doc) {
        if (name_file)
            load_error(errs, "%s: $: %s", path, why);
        else
            load_error(errs, "$: %s", why);
    }
    return doc;
}

/* Relative secret paths: $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) when the file is
 * there, else the directory of the file that names them. */
static void resolve(cJSON *obj, const char *key, const char *base, bool credential)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[DW_PATH_MAX * 2 + 2];
    const char *cred = credential ? getenv("CREDENTIALS_DIRECTORY") : NULL;

    if (!cJSON_IsString(v) || !v->valuestring[0] || v->valuestring[0] == '/')
        return;
    if (cred && cred[0]) {
        snprintf(path, sizeof path, "%s/%s", cred, v->valuestring);
        if (access(path, F_OK) == 0) {
            cJSON_SetValuestring(v, path);
            return;
        }
    }
    if (!base)
        return;
    snprintf(path, sizeof path, "%s/%s", base, v->valuestring);
    cJSON_SetValuestring(v, path);
}

static void resolve_secrets(cJSON *doc, const char *config_path)
{
    char *real = realpath(config_path, NULL), *slash;
    const char *base = NULL;
    cJSON *ch;

    if (real && (slash = strrchr(real, '/'))) {
        slash[slash == real] = '\0'; /* "/x.json" keeps "/" */
        base = real;
    }
    resolve(cJSON_GetObjectItemCaseSensitive(doc, "genesys"), "client_secret_file", base, true);
    resolve(cJSON_GetObjectItemCaseSensitive(doc, "cluster"), "peer_secret_dir", base, false);
    cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(
                               cJSON_GetObjectItemCaseSensitive(doc, "notifications"), "channels")) {
        resolve(ch, "webhook_url_file", base, true);
        resolve(ch, "routing_key_file", base, true);
        resolve(ch, "secret_file", base, true);
    }
    free(real);
}

/* Which source each node-local setting of the merged document came from ("node.id",
 * "cluster.peer_secret_dir", ...), for naming the file in errors. */
struct origin {
    char key[48][64];
    const char *from[48];
    int n;
};

static void set_origin(struct origin *o, const char *top, const char *key, const char *from)
{
    char path[sizeof o->key[0]];
    if (snprintf(path, sizeof path, "%s%s%s", top, top[0] ? "." : "", key) >= (int)sizeof path)
        return;
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->key[i], path) == 0) {
            o->from[i] = from;
            return;
        }
    if (o->n < (int)(sizeof o->key / sizeof o->key[0])) {
        memcpy(o->key[o->n], path, sizeof path);
        o->from[o->n++] = from;
    }
}

/* Sets obj[key] to v (replacing), recording where it came from. */
static int put(cJSON *obj, const char *top, const char *key, cJSON *v, struct origin *o,
               const char *from)
{
    if (!v)
        return -1;
    set_origin(o, top, key, from);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddItemToObject(obj, key, v);
    return 0;
}

/* The source an error message ("PATH: text") belongs to. */
static const char *origin_of(const char *msg, const char *config, const struct origin *o)
{
    for (int i = 0; i < o->n; i++) {
        size_t n = strlen(o->key[i]);
        if (strncmp(msg, o->key[i], n) == 0 && msg[n] && strchr(".:[", msg[n]))
            return o->from[i];
    }
    return config;
}

/* Merges the node file's settings into root: node key by key, the others as a whole. */
static int merge_local(cJSON *root, const cJSON *local, const char *from, struct origin *o)
{
    for (const cJSON *sec = local->child; sec; sec = sec->next) {
        cJSON *into = cJSON_GetObjectItemCaseSensitive(root, sec->string);
        if (!cJSON_IsObject(sec) || !strcmp(sec->string, "notifications")) {
            for (const cJSON *k = cJSON_IsObject(sec) ? sec->child : NULL; k; k = k->next)
                set_origin(o, sec->string, k->string, from);
            if (put(root, "", sec->string, cJSON_Duplicate(sec, true), o, from) != 0)
                return -1;
            continue;
        }
        if (!cJSON_IsObject(into)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, sec->string);
            if (!(into = cJSON_AddObjectToObject(root, sec->string)))
                return -1;
        }
        for (const cJSON *k = sec->child; k; k = k->next)
            if (put(into, sec->string, k->string, cJSON_Duplicate(k, true), o, from) != 0)
                return -1;
    }
    return 0;
}

#define DEFAULT_DATA_DIR "/var/lib/drwatch"
#define DEFAULT_ADMIN_SOCKET "/run/drwatch/admin.sock"

/* The node file: an object of node-local settings only. */
static bool local_ok(const cJSON *local, const struct dw_config_source *src,
                     struct dw_config_errors *errs)
{
    char bad[160];
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(local, "node");
    if (!cJSON_IsObject(local)) {
        load_error(errs, "%s: $: expected an object: {\"node\": {...}}", src->node_file);
        return false;
    }
    if (node && !cJSON_IsObject(node))
        load_error(errs, "%s: node: expected an object", src->node_file);
    else if (dw_config_nonlocal_key(local, bad, sizeof bad) != 0)
        load_error(errs, "%s: %s: not a node-local setting; it belongs in the shared file %s",
                   src->node_file, bad, src->config);
    else
        return true;
    return false;
}

int dw_config_load_source(const struct dw_config_source *src, struct dw_config *cfg,
                          struct dw_config_errors *errs, cJSON **doc)
{
    static struct dw_config_errors scratch;
    bool split = src->node_file || src->node_id;
    struct origin *origin = calloc(1, sizeof *origin);
    cJSON *root, *node, *local = NULL;
    char *text = NULL;
    int rc = -1;

    memset(cfg, 0, sizeof *cfg);
    if (!errs)
        errs = &scratch;
    errs->n = 0;
    root = load_json(src->config, split, errs);
    if (src->node_file)
        local = load_json(src->node_file, true, errs);
    if (!origin)
        goto oom;
    if (!root || (src->node_file && (!local || !local_ok(local, src, errs))))
        goto out;
    if (!cJSON_IsObject(root)) /* the parser words it */
        goto parse;

    /* each file's relative secret paths against its own directory */
    resolve_secrets(root, src->config);
    node = cJSON_GetObjectItemCaseSensitive(root, "node");
    if (split && !node)
        node = cJSON_AddObjectToObject(root, "node");
    if (local) {
        resolve_secrets(local, src->node_file);
        if (merge_local(root, local, src->node_file, origin) != 0)
            goto oom;
        node = cJSON_GetObjectItemCaseSensitive(root, "node");
    }
    if (src->node_id && cJSON_IsObject(node) &&
        put(node, "node", "id", cJSON_CreateNumber((double)src->node_id), origin,
            "--node-id") != 0)
        goto oom;
    if (split && cJSON_IsObject(node)) {
        if (!cJSON_HasObjectItem(node, "data_dir") &&
            put(node, "node", "data_dir", cJSON_CreateString(DEFAULT_DATA_DIR), origin,
                "the default") != 0)
            goto oom;
        if (!cJSON_HasObjectItem(node, "admin_socket") &&
            put(node, "node", "admin_socket", cJSON_CreateString(DEFAULT_ADMIN_SOCKET), origin,
                "the default") != 0)
            goto oom;
    }
parse:
    if (!(text = cJSON_PrintUnformatted(root)))
        goto oom;
    rc = dw_config_parse(text, strlen(text), cfg, errs);
    if (rc != 0 && split)
        for (int i = 0; i < errs->n; i++) {
            char msg[sizeof errs->msg[0] + DW_PATH_MAX + 4];
            snprintf(msg, sizeof msg, "%s: %s", origin_of(errs->msg[i], src->config, origin),
                     errs->msg[i]);
            memcpy(errs->msg[i], msg, sizeof errs->msg[i] - 1); /* cut, as the parser cuts */
            errs->msg[i][sizeof errs->msg[i] - 1] = '\0';
        }
    if (rc == 0 && doc) {
        *doc = root;
        root = NULL;
    }
    goto out;
oom:
    load_error(errs, "out of memory");
out:
    free(origin);
    free(text);
    cJSON_Delete(root);
    cJSON_Delete(local);
    return rc;
}

int dw_config_load(const char *path, struct dw_config *cfg, struct dw_config_errors *errs)
{
    return dw_config_load_doc(path, cfg, errs, NULL);
}

int dw_config_load_doc(const char *path, struct dw_config *cfg, struct dw_config_errors *errs,
                       cJSON **doc)
{
    const struct dw_config_source src = { .config = path };
    return dw_config_load_source(&src, cfg, errs, doc);
}

/* The user the daemon runs as, for hints ("drwatch (uid 998)"). */
static const char *pw_name(void)
{
    struct passwd *pw = getpwuid(geteuid());
    return pw ? pw->pw_name : "drwatch";
}

static const char *user_name(void)
{
    static char name[96];
    struct passwd *pw = getpwuid(geteuid());
    snprintf(name, sizeof name, "%s (uid %u)", pw ? pw->pw_name : "?", (unsigned)geteuid());
    return name;
}

/* The directory part of path ("." for none, "/" for the root). */
static void dir_of(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, len, ".");
    else if (slash == path)
        snprintf(out, len, "/");
    else
        snprintf(out, len, "%.*s", (int)(slash - path), path);
}

int dw_config_check_places(const struct dw_config *cfg, struct dw_config_errors *errs)
{
    char dir[DW_PATH_MAX], parent[DW_PATH_MAX];
    struct stat st;
    int before = errs->n;

    dir_of(cfg->admin_socket, dir, sizeof dir);
    if (stat(dir, &st) != 0 && errno == ENOENT)
        load_error(errs, "node.admin_socket: directory %s does not exist; create it (mkdir -m 0750 "
                   "%s) or, under systemd, RuntimeDirectory=drwatch creates it", dir, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        load_error(errs, "node.admin_socket: user %s cannot create the socket in %s; run: chown "
                   "%s %s, or under systemd RuntimeDirectory=drwatch creates it", user_name(), dir,
                   pw_name(), dir);

    snprintf(dir, sizeof dir, "%s", cfg->data_dir);
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            load_error(errs, "node.data_dir: %s is not a directory", dir);
        else if (access(dir, R_OK | W_OK | X_OK) != 0)
            load_error(errs, "node.data_dir: %s is not writable by user %s; run: chown -R %s %s, "
                       "or under systemd StateDirectory=drwatch creates it", dir, user_name(),
                       pw_name(), dir);
        return errs->n - before;
    }
    /* created at start-up (with its parents): the nearest existing parent must let us */
    snprintf(parent, sizeof parent, "%s", dir);
    do
        dir_of(parent, parent, sizeof parent);
    while (stat(parent, &st) != 0 && strcmp(parent, "/") != 0 && strcmp(parent, ".") != 0);
    if (access(parent, W_OK | X_OK) != 0)
        load_error(errs, "node.data_dir: %s does not exist and user %s cannot create it in %s; "
                   "run: install -d -o %s -m 0750 %s, or under systemd StateDirectory=drwatch "
                   "creates it", dir, user_name(), parent, pw_name(), dir);
    return errs->n - before;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int dw_config_read_secret(const char *path, char *out, size_t out_len, char *errmsg,
                          size_t errlen)
{
    struct stat st;
    size_t n = 0;
    bool too_long = false;
    int fd;

    if (!out || out_len < 2) {
        snprintf(errmsg, errlen, "no room for the secret of \"%s\"", path);
        return -1;
    }
    out[0] = '\0';
    /* O_NONBLOCK: a FIFO in the secret's place must not block start-up or a reload */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 && errno == EACCES) {
        snprintf(errmsg, errlen, "cannot read \"%s\": permission denied for user %s; chgrp "
                 "drwatch and chmod 0640 it, or pass it with systemd's LoadCredential=", path,
                 user_name());
        return -1;
    }
    if (fd < 0 || fstat(fd, &st) != 0)
        goto fail_errno;
    if (!S_ISREG(st.st_mode)) {
        snprintf(errmsg, errlen, "\"%s\" is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & 0007) {
        snprintf(errmsg, errlen, "%s is %s by other users (mode %04o); run: chmod %04o %s", path,
                 st.st_mode & 0004 ? "readable" : "accessible", (unsigned)(st.st_mode & 07777),
                 (unsigned)(st.st_mode & 07770), path);
        close(fd);
        return -1;
    }
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
