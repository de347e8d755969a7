/* Configuration model and its validation: JSON text in, a checked dw_config out. */
#ifndef DRWATCH_CONFIG_H
#define DRWATCH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DW_ID_MAX 64        /* ids: [A-Za-z0-9._-]{1,63} */
#define DW_ADDR_MAX 64      /* "a.b.c.d:port" */
#define DW_URL_MAX 512
#define DW_PATH_MAX 256
#define DW_MAX_MEMBERS 9
#define DW_MAX_SITES 64
#define DW_MAX_EDGES 16     /* per site */
#define DW_MAX_GROUPS 32
#define DW_MAX_TARGETS 8    /* per group */
#define DW_MAX_TRUNK_BASES 8 /* per target */

struct dw_member {
    uint64_t id;                      /* raft id, >= 1 */
    char name[DW_ID_MAX];             /* optional label, defaults to "n<id>" */
    char raft_address[DW_ADDR_MAX];   /* IPv4 dotted quad:port (raft 0.15 limit) */
    char peer_address[DW_ADDR_MAX];   /* IPv4 dotted quad:port, HTTP peer channel */
};

struct dw_edge {
    char id[DW_ID_MAX];
    char genesys_edge_id[DW_ID_MAX];  /* optional, "" when absent */
    char health_url[DW_URL_MAX];      /* http:// or https:// */
};

struct dw_site {
    char id[DW_ID_MAX];
    int n_edges;
    struct dw_edge edges[DW_MAX_EDGES];
};

struct dw_target {
    char id[DW_ID_MAX];
    int site;                         /* index into cfg->sites, -1 = no site (BYOC Cloud: always up) */
    int n_trunk_bases;
    char trunk_base_ids[DW_MAX_TRUNK_BASES][DW_ID_MAX];
};

struct dw_group {
    char id[DW_ID_MAX];
    int n_targets;
    struct dw_target targets[DW_MAX_TARGETS]; /* priority order: [0] is the primary */
};

struct dw_probe_cfg {
    unsigned interval_ms;       /* default 1000 */
    unsigned timeout_ms;        /* default 800, must be <= interval_ms */
    unsigned fail_threshold;    /* consecutive failures to go DOWN, default 3 */
    unsigned recover_threshold; /* consecutive successes to go UP, default 2 */
};

struct dw_cluster_cfg {
    unsigned election_timeout_ms;  /* default 1000 */
    unsigned heartbeat_ms;         /* default 100 */
    unsigned observation_ttl_ms;   /* default 15000 */
    unsigned refresh_interval_ms;  /* default 5000, must be < observation_ttl_ms */
    unsigned snapshot_threshold;   /* default 1024 */
    unsigned snapshot_trailing;    /* default 256 */
    char peer_secret_file[DW_PATH_MAX]; /* shared secret authenticating the peer channel */
};

struct dw_genesys_cfg {
    char region[DW_ID_MAX];            /* "" when explicit base URLs are given */
    char api_base_url[DW_URL_MAX];     /* derived from region when absent: https://api.<domain> */
    char login_base_url[DW_URL_MAX];   /* derived from region when absent: https://login.<domain> */
    char client_id[128];
    char client_secret_file[DW_PATH_MAX];
    unsigned request_timeout_ms;       /* default 10000 */
    unsigned verify_timeout_ms;        /* how long verify polls for in-service trunks, default 60000 */
    unsigned verify_interval_ms;       /* default 2000 */
};

struct dw_config {
    uint64_t node_id;                  /* node.id: must name a member */
    char data_dir[DW_PATH_MAX];        /* node.data_dir */
    char admin_socket[DW_PATH_MAX];    /* node.admin_socket, default <data_dir>/admin.sock */
    int n_members;
    struct dw_member members[DW_MAX_MEMBERS];
    struct dw_cluster_cfg cluster;
    struct dw_genesys_cfg genesys;
    struct dw_probe_cfg probe;
    int n_sites;
    struct dw_site sites[DW_MAX_SITES];
    int n_groups;
    struct dw_group groups[DW_MAX_GROUPS];
    bool debug;                        /* node.debug: enables the admin "debug" command */
};

/* Validation errors: every problem found, each "json.path: message". */
#define DW_CFG_MAX_ERRORS 64
struct dw_config_errors {
    int n;
    char msg[DW_CFG_MAX_ERRORS][256];
};

/* Parses and validates a whole config document. Returns 0 when valid; otherwise -1 with every
 * error found in errs (never only the first). Secret files are checked for readability here
 * (their content is not kept in cfg). */
int dw_config_parse(const char *json, size_t len, struct dw_config *cfg, struct dw_config_errors *errs);

/* Reads FILE and calls dw_config_parse; an unreadable file is one error naming the path. */
int dw_config_load(const char *path, struct dw_config *cfg, struct dw_config_errors *errs);

/* Reads a secret file, trims trailing whitespace. Returns 0 or -1 with errmsg. */
int dw_config_read_secret(const char *path, char *out, size_t out_len, char *errmsg, size_t errlen);

const struct dw_member *dw_config_member(const struct dw_config *cfg, uint64_t id);
int dw_config_site_index(const struct dw_config *cfg, const char *site_id);

/* 64-bit FNV-1a digest of the parts every node must agree on (members, sites, groups,
 * observation_ttl); stamped into observations so a node with a different topology is ignored. */
uint64_t dw_config_topology_digest(const struct dw_config *cfg);

#endif
