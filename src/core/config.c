/* Public config API: parse (walk the schema, then check), free, lookups, secret paths. */
#include "drwatch/config.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_internal.h"

cJSON *dw_config_parse_json(const char *json, size_t len, char *msg, size_t msglen)
{
    const char *end = NULL;
    cJSON *root = NULL;

    if (!json) {
        snprintf(msg, msglen, "no input");
        return NULL;
    }
    /* return_parse_end carries the same position as cJSON_GetErrorPtr(), without the global */
    root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (root && end) {
        while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
        if (end < json + len) { /* trailing garbage after the document */
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        const char *at = end && end >= json && end <= json + len ? end : json;
        int line = 1, col = 1;
        for (const char *p = json; p < at; p++, col++)
            if (*p == '\n') {
                line++;
                col = 0;
            }
        snprintf(msg, msglen, "not valid JSON (line %d, column %d)", line, col);
    }
    return root;
}

static int parse(const char *json, size_t len, const struct dw_config_files *files,
                 bool cluster_only, struct dw_config *cfg, struct dw_config_errors *errs)
{
    struct ctx c = { .cfg = cfg, .errs = errs, .files = files, .cluster_only = cluster_only };
    char msg[64];
    cJSON *root;

    memset(cfg, 0, sizeof *cfg);
    if (errs)
        errs->n = 0;
    if (!(root = dw_config_parse_json(json, len, msg, sizeof msg))) {
        cfg_err(&c, "%s", msg);
        return -1;
    }

    cfg_parse_object(&c, root, &cfg_top_table, cfg);
    cJSON_Delete(root);
    cfg_check_document(&c);
    if (!c.total)
        return 0;
    /* nothing to free for a caller that only reports the errors */
    dw_config_free(cfg);
    return -1;
}

int dw_config_parse_with(const char *json, size_t len, const struct dw_config_files *files,
                         struct dw_config *cfg, struct dw_config_errors *errs)
{
    return parse(json, len, files, false, cfg, errs);
}

int dw_config_parse_cluster(const char *json, size_t len, struct dw_config *cfg,
                            struct dw_config_errors *errs)
{
    return parse(json, len, NULL, true, cfg, errs);
}

void dw_config_free(struct dw_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; cfg->sites && i < cfg->n_sites; i++) {
        for (int j = 0; cfg->sites[i].edges && j < cfg->sites[i].n_edges; j++)
            free(cfg->sites[i].edges[j].probes);
        free(cfg->sites[i].edges);
    }
    free(cfg->sites);
    cfg->sites = NULL;
    cfg->n_sites = 0;
    free(cfg->overrides);
    cfg->overrides = NULL;
    cfg->n_overrides = 0;
    cfg->override_unmatched = NULL;
}

int dw_config_peer_secret_path(const struct dw_config *cfg, uint64_t member_id, char *out,
                               size_t len)
{
    const char *dir = cfg->cluster.peer_secret_dir;
    size_t n = strlen(dir);
    const char *sep = n && dir[n - 1] == '/' ? "" : "/";
    int w = snprintf(out, len, "%s%s%llu.secret", dir, sep, (unsigned long long)member_id);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

int dw_config_peer_secrets_with(const struct dw_config *cfg, const struct dw_config_files *files,
                                struct dw_peer_secrets *out, char *errmsg, size_t errlen)
{
    struct dw_config_errors *errs = calloc(1, sizeof *errs);
    if (!errs) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    /* cfg_check_peer_secrets only reads the configuration */
    struct ctx c = { .cfg = (struct dw_config *)cfg, .errs = errs, .files = files };
    cfg_check_peer_secrets(&c, out);
    if (!dw_config_member(cfg, cfg->node_id) && !c.total)
        cfg_err_at(&c, "node.id", "%llu is not the id of any cluster.members entry",
                   (unsigned long long)cfg->node_id);
    int rc = c.total ? -1 : 0;
    if (rc != 0) {
        snprintf(errmsg, errlen, "%s", errs->msg[0]);
        explicit_bzero(out, sizeof *out);
    }
    free(errs);
    return rc;
}

const struct dw_member *dw_config_member(const struct dw_config *cfg, uint64_t id)
{
    for (int i = 0; cfg && i < cfg->n_members; i++)
        if (cfg->members[i].id == id)
            return &cfg->members[i];
    return NULL;
}

int dw_config_site_index(const struct dw_config *cfg, const char *site_id)
{
    for (int i = 0; cfg && site_id && i < cfg->n_sites; i++)
        if (strcmp(cfg->sites[i].id, site_id) == 0)
            return i;
    return -1;
}

int dw_config_group_index(const struct dw_config *cfg, const char *group_id)
{
    for (int i = 0; cfg && group_id && i < cfg->n_groups; i++)
        if (strcmp(cfg->groups[i].id, group_id) == 0)
            return i;
    return -1;
}

