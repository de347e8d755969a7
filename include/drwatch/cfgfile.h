/* Configuration on disk: reads the config and secret files, answers the parser's file checks. */
#ifndef DRWATCH_CFGFILE_H
#define DRWATCH_CFGFILE_H

#include "drwatch/config.h"

/* The real filesystem, for dw_config_parse_with and dw_config_peer_secrets_with. */
extern const struct dw_config_files dw_config_files_posix;

/* dw_config_parse_with checking the files the document names on this host. */
int dw_config_parse(const char *json, size_t len, struct dw_config *cfg,
                    struct dw_config_errors *errs);

/* Reads FILE and calls dw_config_parse; an unreadable file is one error naming the path. */
int dw_config_load(const char *path, struct dw_config *cfg, struct dw_config_errors *errs);
/* The same, also handing back the document as parsed JSON (*doc, cJSON_Delete) when valid. */
int dw_config_load_doc(const char *path, struct dw_config *cfg, struct dw_config_errors *errs,
                       cJSON **doc);

/* Where a node's configuration comes from (docs/config.md, "One shared file"). */
struct dw_config_source {
    const char *config;    /* the shared cluster file; may hold a node object */
    const char *node_file; /* NULL, or a file holding only {"node": {...}}, key by key over it */
    uint64_t node_id;      /* 0, or node.id over both (--node-id) */
};
/* Reads and merges the sources, resolves relative secret paths (CREDENTIALS_DIRECTORY, else the
 * config file's directory) and parses the result as dw_config_parse. With a node file or id,
 * node.data_dir and node.admin_socket default to /var/lib/drwatch and /run/drwatch/admin.sock
 * and every error starts with the source it came from ("node.json: node.id: ..."). *doc (may be
 * NULL): the merged document, when valid. */
int dw_config_load_source(const struct dw_config_source *src, struct dw_config *cfg,
                          struct dw_config_errors *errs, cJSON **doc);

/* Checks this host has the node's places: the admin socket's directory, a writable data_dir (or
 * one start-up can create). Appends one error per problem, with the fix; returns their number. */
int dw_config_check_places(const struct dw_config *cfg, struct dw_config_errors *errs);

/* Reads a secret file, trims trailing whitespace. Returns 0 or -1 with errmsg. */
int dw_config_read_secret(const char *path, char *out, size_t out_len, char *errmsg, size_t errlen);

/* dw_config_peer_secrets_with the real files. Wipe out with explicit_bzero when done. */
int dw_config_read_peer_secrets(const struct dw_config *cfg, struct dw_peer_secrets *out,
                                char *errmsg, size_t errlen);

#endif
