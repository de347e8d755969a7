/* Configuration model and its validation: JSON text in, a checked dw_config out. */
#ifndef DRWATCH_CONFIG_H
#define DRWATCH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define DW_ID_MAX 64        /* ids: [A-Za-z0-9._-]{1,63} */
#define DW_ADDR_MAX 64      /* "a.b.c.d:port" */
#define DW_URL_MAX 512
#define DW_PATH_MAX 256
#define DW_MAX_MEMBERS 9
#define DW_MAX_SITES 1024
#define DW_MAX_EDGES 256    /* per site; arrays are allocated to the configured size */
#define DW_MAX_EDGES_TOTAL 20000
#define DW_MAX_PROBES 4     /* per Edge */
#define DW_MAX_CODES 16
#define DW_MAX_GROUPS 32
#define DW_MAX_TARGETS 8    /* per group */
#define DW_MAX_TRUNK_BASES 64 /* per target */
#define DW_MAX_ROUTES 4     /* outbound routes per target */
#define DW_DRAIN_WAIT_MAX_S 3600

/* node.probe_overrides: how this node reaches an Edge whose health URL differs from where it sits
 * (NAT, a VPN, another region's address). Node-local, never committed. */
struct dw_probe_override {
    char edge[DW_ID_MAX];
    char health_url[DW_URL_MAX];
};

struct dw_member {
    uint64_t id;                      /* raft id, >= 1 */
    char name[DW_ID_MAX];             /* optional label, defaults to "n<id>" */
    char raft_address[DW_ADDR_MAX];   /* IPv4 dotted quad:port (raft 0.15 limit) */
    char peer_address[DW_ADDR_MAX];   /* IPv4 dotted quad:port, HTTP peer channel */
    bool non_voter;                   /* "voter": false while the member is being added or
                                         removed: it counts in no majority */
};

enum dw_probe_kind { DW_PROBE_HTTP = 0, DW_PROBE_SIP, DW_PROBE_TCP };
enum dw_sip_transport { DW_SIP_UDP = 0, DW_SIP_TCP, DW_SIP_TLS };

/* One probe of an Edge: sites[i].edges[j].probes[k] in JSON. */
struct dw_probe_spec {
    enum dw_probe_kind kind;          /* "kind": "http" | "sip" | "tcp" */
    unsigned timeout_ms;              /* default probe.timeout_ms */
    /* http */
    char url[DW_URL_MAX];             /* http:// or https:// */
    int n_expect_status;              /* 0 = any 2xx */
    int expect_status[DW_MAX_CODES];  /* 100..599 */
    char body_match[128];             /* substring the body must contain, "" = no check */
    char ca_file[DW_PATH_MAX];        /* "" = system CAs */
    char client_cert[DW_PATH_MAX];    /* PEM; client_key required with it */
    char client_key[DW_PATH_MAX];
    bool verify_tls;                  /* default true */
    /* sip and tcp */
    char address[DW_ADDR_MAX];        /* "a.b.c.d:port" */
    /* sip */
    enum dw_sip_transport transport;  /* "udp" (default) | "tcp" | "tls" */
    char request_uri[DW_URL_MAX];     /* default "sip:<address>" ("sips:" for tls) */
    char tls_server_name[128];        /* name checked in the certificate, "" = no name check */
    int n_alive_codes;                /* 0 = any final response (200..699) counts as alive */
    int alive_codes[DW_MAX_CODES];    /* exact codes 100..699, or 1..6 meaning the class 1xx..6xx */
};

struct dw_edge {
    char id[DW_ID_MAX];
    char genesys_edge_id[DW_ID_MAX];  /* optional, "" when absent: needed for the Genesys signal */
    char health_url[DW_URL_MAX];      /* shorthand for one http probe; "" when probes are given */
    int n_probes;                     /* 1..DW_MAX_PROBES: health_url and/or "probes" */
    /* an Edge is UP while any of its probes is UP; allocated to n_probes (a spec is ~2 KB and
     * most Edges have one or two), freed by dw_config_free */
    struct dw_probe_spec *probes;
};

/* How a site's Edges make the site's verdict (see docs/detection.md). */
enum dw_site_rule { DW_RULE_ANY = 0, DW_RULE_ALL, DW_RULE_AT_LEAST };
/* How the watchdogs' probe quorum and the Genesys cloud view combine into the site's verdict. */
enum dw_combine {
    DW_COMBINE_PROBES = 0,     /* "probes": probes only (default) */
    DW_COMBINE_AND_GENESYS,    /* "probes_and_genesys": DOWN only when both say DOWN */
    DW_COMBINE_OR_GENESYS,     /* "probes_or_genesys": DOWN when either says DOWN */
};

struct dw_site {
    char id[DW_ID_MAX];
    enum dw_site_rule rule;           /* "rule": "any" (default) | "all" | {"at_least": k} */
    int at_least;                     /* k for DW_RULE_AT_LEAST, 1..n_edges */
    enum dw_combine combine;          /* "combine" */
    int n_edges;
    struct dw_edge *edges;            /* n_edges, allocated; freed by dw_config_free */
};

/* What a target's outbound route does when the target changes (docs/config.md). */
enum dw_route_mode {
    DW_ROUTE_ORDER = 0, /* "order": activate puts the target's trunk bases first; deactivate
                           leaves the order alone */
    DW_ROUTE_ENABLED,   /* "enabled": activate sets enabled true, deactivate false */
};

struct dw_route_action {
    char site_id[DW_ID_MAX];          /* Genesys site id (not a drwatch site) */
    char route_id[DW_ID_MAX];
    enum dw_route_mode mode;
};

struct dw_target {
    char id[DW_ID_MAX];
    int site;                         /* index into cfg->sites, -1 = no site (BYOC Cloud: always up) */
    int n_trunk_bases;
    char trunk_base_ids[DW_MAX_TRUNK_BASES][DW_ID_MAX];
    int n_routes;                     /* "outbound_routes", 0 when absent */
    struct dw_route_action routes[DW_MAX_ROUTES];
    bool drain_edges;                 /* deactivate drains the site's Edges with a
                                         genesys_edge_id; activate puts them back first */
    unsigned drain_wait_s;            /* callDrainingWaitTimeSeconds, default 300 */
};

/* When calls go back to a higher-priority target that is UP again. */
enum dw_failback { DW_FAILBACK_AUTO = 0, DW_FAILBACK_MANUAL };

struct dw_group {
    char id[DW_ID_MAX];
    int n_targets;
    struct dw_target targets[DW_MAX_TARGETS]; /* priority order: [0] is the primary */
    enum dw_failback failback;        /* "failback": "auto" (default) | "manual" (drctl only) */
    unsigned stable_for_ms;           /* continuous quorum UP before an automatic failback,
                                         default 300000 */
    unsigned failback_retry_ms;       /* back-off after a failed failback, doubled per failure,
                                         default 60000 */
    unsigned failback_retry_max_ms;   /* its ceiling, default 3600000 */
    unsigned max_auto_operations;     /* automatic failovers and failbacks per window before the
                                         group is held as flapping, default 3 */
    unsigned flap_window_ms;          /* default 3600000 */
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
    unsigned min_submit_interval_ms; /* floor between two observations from one node, default 250 */
    unsigned history_retention_days; /* history rows older than this are pruned, default 90 */
    unsigned history_max_rows;       /* and only this many newest are kept, default 100000 */
    /* one file per other member, "<id>.secret", holding the secret this node shares with it */
    char peer_secret_dir[DW_PATH_MAX];
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
    unsigned step_timeout_ms;          /* how long a switch keeps retrying errors that may pass
                                          (429, 5xx, timeouts) before it fails, default 180000 */
    unsigned poll_interval_ms;         /* cloud view (edges, trunks) polled by the leader, default 10000 */
    unsigned cloud_ttl_ms;             /* a cloud view older than this counts as unknown, default 35000 */
    unsigned cloud_grace_ms;           /* after an activate starts, its site's unconnected trunks
                                          are not a DOWN, default 60000 */
    unsigned rate_budget_per_min;      /* requests/min drwatch allows itself, default 120 (of 300) */
    unsigned max_concurrent_requests;  /* API requests in flight at once, default 4 */
};

/* Self-distrust: a node whose loop stalled or whose wall clock jumped abstains. */
struct dw_tilt_cfg {
    unsigned stall_ms;                 /* loop lag that trips TILT, default 2000 */
    unsigned clock_jump_ms;            /* wall vs monotonic disagreement that trips TILT, default 2000 */
    unsigned abstain_ms;               /* how long a tilted node abstains, default 30000 */
};

/* Notification channels (node-local section "notifications", docs/notifications.md). */
#define DW_MAX_CHANNELS 8
#define DW_HOOK_ARGS_MAX 16
enum dw_notify_kind { DW_NOTIFY_SLACK, DW_NOTIFY_PAGERDUTY, DW_NOTIFY_WEBHOOK, DW_NOTIFY_HOOK };
struct dw_notify_channel {
    char name[DW_ID_MAX];              /* its key: what deliveries record */
    enum dw_notify_kind kind;          /* "kind", or the name when it is a kind's name */
    char webhook_url_file[DW_PATH_MAX]; /* slack: the incoming-webhook URL is a secret */
    char routing_key_file[DW_PATH_MAX]; /* pagerduty */
    char secret_file[DW_PATH_MAX];     /* webhook: HMAC-SHA256 key, "" = unsigned */
    char url[DW_URL_MAX];              /* webhook; pagerduty, default the Events API v2 */
    int n_command;                     /* hook: argv, command[0] an absolute path */
    char command[DW_HOOK_ARGS_MAX][DW_PATH_MAX];
    unsigned timeout_ms;               /* per attempt, default 10000 */
};
struct dw_notify_cfg {
    char cluster[DW_ID_MAX];           /* the label payloads carry, default "drwatch" */
    unsigned max_age_ms;               /* older events are skipped, default 3600000 */
    int n_channels;
    struct dw_notify_channel channels[DW_MAX_CHANNELS];
};

struct dw_config {
    uint64_t node_id;                  /* node.id: must name a member */
    char data_dir[DW_PATH_MAX];        /* node.data_dir */
    char admin_socket[DW_PATH_MAX];    /* node.admin_socket, default <data_dir>/admin.sock */
    char metrics_address[DW_ADDR_MAX]; /* node.metrics_address "a.b.c.d:port", "" = no /metrics */
    int n_members;
    struct dw_member members[DW_MAX_MEMBERS];
    struct dw_cluster_cfg cluster;
    struct dw_genesys_cfg genesys;
    struct dw_probe_cfg probe;
    struct dw_tilt_cfg tilt;
    int n_sites;
    struct dw_site *sites;             /* n_sites, allocated; freed by dw_config_free */
    int n_groups;
    struct dw_group groups[DW_MAX_GROUPS];
    bool debug;                        /* node.debug: enables the admin "debug" command */
    int log_level;                     /* node.log_level: enum dw_log_level, default info */
    int log_format;                    /* node.log_format: enum dw_log_format, default auto */
    struct dw_notify_cfg notify;       /* notifications: node-local */
    int n_overrides;
    struct dw_probe_override *overrides; /* allocated; freed by dw_config_free */
    const char *override_unmatched;    /* the first override naming no Edge, NULL when none */
    bool join;                         /* drwatchd --join: an empty data_dir waits to be added to
                                          a running cluster instead of bootstrapping one */
    int64_t version;                   /* the committed config version this was built from; 0 =
                                          not committed (a local file before bootstrap) */
};

/* Validation errors: every problem found, each "json.path: message". */
#define DW_CFG_MAX_ERRORS 64
struct dw_config_errors {
    int n;
    char msg[DW_CFG_MAX_ERRORS][256];
};

/* Frees what parse/load allocated (sites, edges); cfg may be reused afterwards. Accepts NULL. */
void dw_config_free(struct dw_config *cfg);

/* The filesystem questions validation asks. src/core does no I/O, so the caller answers them:
 * dw_config_files_posix (drwatch/cfgfile.h) on a real host. Each returns 0, or -1 with why in
 * msg, worded for "json.path: msg". */
struct dw_config_files {
    /* path opens as a regular file (TLS material the prober reads later) */
    int (*readable)(const char *path, char *msg, size_t len);
    /* path is a directory */
    int (*directory)(const char *path, char *msg, size_t len);
    /* anything is at path (no msg: its absence is no error) */
    bool (*exists)(const char *path);
    /* as dw_config_read_secret */
    int (*read_secret)(const char *path, char *out, size_t out_len, char *msg, size_t len);
};

/* Parses and validates a whole config document. Returns 0 when valid; otherwise -1 with every
 * error found in errs (never only the first). Secret, TLS and peer secret files are checked
 * through files at their place in the walk (their content is not kept in cfg); files NULL skips
 * every file check. dw_config_parse (drwatch/cfgfile.h) checks the real files. */
int dw_config_parse_with(const char *json, size_t len, const struct dw_config_files *files,
                         struct dw_config *cfg, struct dw_config_errors *errs);

/* The committed cluster configuration (docs/config.md): everything every node must agree on.
 * A node's file adds the node-local settings: node.*, cluster.peer_secret_dir and the Genesys
 * connection (genesys.region, api_base_url, login_base_url, client_id, client_secret_file). */
/* The cluster part of a full document: a copy without the node-local settings, object keys
 * sorted, and cluster.members, sites, each site's edges and failover_groups sorted by id, so files
 * that differ only in order give the same document. NULL when doc is no object or out of memory. */
cJSON *dw_config_cluster_doc(const cJSON *doc);
/* A full document: the cluster document with local's node-local settings. NULL on OOM. */
cJSON *dw_config_with_local(const cJSON *cluster, const cJSON *local);
/* Parses text as one JSON document; NULL with "not valid JSON (line L, column C)" in msg. */
cJSON *dw_config_parse_json(const char *json, size_t len, char *msg, size_t msglen);
/* 0 when every key of local is a node-local setting, else -1 with the first other key's path. */
int dw_config_nonlocal_key(const cJSON *local, char *path, size_t len);
/* Parses a cluster document (node-local settings absent) as the replicated state holds it; no
 * file checks, no node checks. Same error contract as dw_config_parse_with. */
int dw_config_parse_cluster(const char *json, size_t len, struct dw_config *cfg,
                            struct dw_config_errors *errs);

/* Peer channel secrets: one per pair of members, so a node holds only the secrets it shares with
 * each other member and cannot authenticate as a third one. */
#define DW_PEER_SECRET_MIN 16
#define DW_PEER_SECRET_MAX 256
struct dw_peer_secrets {
    char s[DW_MAX_MEMBERS][DW_PEER_SECRET_MAX + 1]; /* s[i] for cfg->members[i]; "" for self */
};

/* Writes "<peer_secret_dir>/<member_id>.secret" into out; -1 when it does not fit. */
int dw_config_peer_secret_path(const struct dw_config *cfg, uint64_t member_id, char *out,
                               size_t len);

/* Reads through files (not NULL) and checks every secret this node needs from
 * cluster.peer_secret_dir. Returns 0, or -1 with the first problem in errmsg and out wiped.
 * dw_config_read_peer_secrets (drwatch/cfgfile.h) reads the real files. */
int dw_config_peer_secrets_with(const struct dw_config *cfg, const struct dw_config_files *files,
                                struct dw_peer_secrets *out, char *errmsg, size_t errlen);

const struct dw_member *dw_config_member(const struct dw_config *cfg, uint64_t id);
int dw_config_site_index(const struct dw_config *cfg, const char *site_id);
int dw_config_group_index(const struct dw_config *cfg, const char *group_id); /* -1 none */

#endif
