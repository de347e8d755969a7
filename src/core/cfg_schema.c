/* The drwatch schema: one table of keys per JSON object, and its custom value parsers. */
#include "cfg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_MAX 86400000u          /* one day: beyond that a setting is a typo */
#define THRESHOLD_MAX 100u
#define SNAPSHOT_MAX 100000000u

typedef struct dw_config cfg_t;

static const char *const probe_kinds[] = { "http", "sip", "tcp", NULL };
static const char *const sip_transports[] = { "udp", "tcp", "tls", NULL };
static const char *const combines[] = { "probes", "probes_and_genesys", "probes_or_genesys", NULL };
static const char *const site_rules[] = { "any", "all", NULL };
static const char *const failbacks[] = { "auto", "manual", NULL };
static const char *const route_modes[] = { "order", "enabled", NULL };

unsigned cfg_probe_variant(const cJSON *obj)
{
    const cJSON *t;
    int i;
    switch (cfg_name_index(cfg_get(obj, "kind"), probe_kinds)) {
    case DW_PROBE_HTTP:
        return V_HTTP;
    case DW_PROBE_TCP:
        return V_TCP;
    case DW_PROBE_SIP:
        t = cfg_get(obj, "transport");
        i = t ? cfg_name_index(t, sip_transports) : DW_SIP_UDP;
        /* an invalid transport is reported on its own: meanwhile every SIP key is fine */
        return i == DW_SIP_UDP ? V_SIP_UDP : i == DW_SIP_TCP ? V_SIP_TCP
                                         : i == DW_SIP_TLS ? V_SIP_TLS : V_SIP;
    default:
        return 0; /* kind missing or invalid: reported on "kind" */
    }
}

const char *cfg_probe_variant_name(unsigned variant, unsigned only)
{
    if (variant == V_HTTP)
        return "an http probe";
    if (variant == V_TCP)
        return "a tcp probe";
    if (!(only & V_SIP))
        return "a sip probe";
    return variant == V_SIP_UDP ? "a sip probe over udp (only with \"transport\": \"tls\")"
                                : "a sip probe over tcp (only with \"transport\": \"tls\")";
}

/* Status codes: integers lo..hi, or with classes also "2xx".."6xx" stored as 2..6. */
static void parse_codes(struct ctx *c, const cJSON *v, int *out, int *count, int lo, int hi,
                        bool classes)
{
    if (!v)
        return;
    if (!cJSON_IsArray(v)) {
        cfg_err(c, "expected an array");
        return;
    }
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > DW_MAX_CODES)
        cfg_err(c, "needs 1 to %d entries (has %d)", DW_MAX_CODES, n);
    int i = 0;
    for (const cJSON *it = v->child; it && i < DW_MAX_CODES; it = it->next, i++) {
        size_t old = cfg_push_index(c, i);
        long long code = 0;
        if (classes && cJSON_IsString(it)) {
            const char *t = it->valuestring;
            if (t[0] >= '2' && t[0] <= '6' && (t[1] == 'x' || t[1] == 'X') &&
                (t[2] == 'x' || t[2] == 'X') && !t[3])
                code = t[0] - '0';
            else
                cfg_err(c, "invalid class \"%.16s\" (expected \"2xx\" to \"6xx\")", t);
        } else if (classes && !cJSON_IsNumber(it)) {
            cfg_err(c, "expected an integer %d to %d or a class \"2xx\" to \"6xx\"", lo, hi);
        } else {
            cfg_parse_int(c, it, lo, hi, &code);
        }
        for (int k = 0; code && k < *count; k++)
            if (out[k] == code) {
                if (code < 10)
                    cfg_err(c, "duplicate class \"%lldxx\"", code);
                else
                    cfg_err(c, "duplicate code %lld", code);
                code = 0;
            }
        if (code)
            out[(*count)++] = (int)code;
        cfg_pop(c, old);
    }
}

static void parse_expect_status(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_probe_spec *p = base;
    parse_codes(c, v, p->expect_status, &p->n_expect_status, 100, 599, false);
}

static void parse_alive_codes(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_probe_spec *p = base;
    parse_codes(c, v, p->alive_codes, &p->n_alive_codes, 100, 699, true);
}

static const struct field at_least_f[] = {
    { .key = "at_least", .kind = K_UINT, .required = true, .off = offsetof(struct dw_site, at_least),
      .min = 1, .max = DW_MAX_EDGES },
};
static const struct table at_least_t = TABLE(at_least_f);

/* "any" | "all" | {"at_least": k}; absent means "any". */
static void parse_rule(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_site *s = base;
    int i;
    if (!v)
        return;
    if (cJSON_IsObject(v)) {
        s->rule = DW_RULE_AT_LEAST;
        cfg_parse_object(c, v, &at_least_t, s);
    } else if ((i = cfg_name_index(v, site_rules)) >= 0) {
        s->rule = (enum dw_site_rule)i;
    } else {
        cfg_err(c, "must be \"any\", \"all\" or {\"at_least\": k}");
    }
}

/* {"<edge id>": {"health_url": URL}, ...}: stored in cfg, applied once sites are parsed. */
static void parse_overrides(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_config *cfg = base;
    if (!v)
        return;
    if (!cJSON_IsObject(v)) {
        cfg_err(c, "expected an object of Edge ids");
        return;
    }
    int n = cJSON_GetArraySize(v);
    if (n > DW_MAX_EDGES_TOTAL) {
        cfg_err(c, "more than %d Edges", DW_MAX_EDGES_TOTAL);
        return;
    }
    cfg->overrides = calloc(n > 0 ? (size_t)n : 1, sizeof *cfg->overrides);
    if (!cfg->overrides) {
        cfg_err(c, "out of memory");
        return;
    }
    for (const cJSON *o = v->child; o; o = o->next) {
        size_t old = cfg_push_key(c, o->string);
        struct dw_probe_override *po = &cfg->overrides[cfg->n_overrides];
        const cJSON *url = cfg_get(o, "health_url");
        if (strlen(o->string) >= sizeof po->edge || !cJSON_IsObject(o) ||
            cJSON_GetArraySize(o) != 1 || !url) {
            cfg_err(c, "expected an Edge id with {\"health_url\": URL}");
        } else {
            size_t k = cfg_push_key(c, "health_url");
            if (cfg_parse_str(c, url, po->health_url, sizeof po->health_url, F_URL)) {
                snprintf(po->edge, sizeof po->edge, "%s", o->string);
                cfg->n_overrides++;
            }
            cfg_pop(c, k);
        }
        cfg_pop(c, old);
    }
}

static const struct field node_f[] = {
    { .key = "id", .kind = K_RAFTID, .required = true, .off = offsetof(cfg_t, node_id) },
    STR("data_dir", true, cfg_t, data_dir, F_PATH),
    { .key = "admin_socket", .kind = K_STR, .off = offsetof(cfg_t, admin_socket),
      .size = DW_PATH_MAX, .fmt = F_PATH, .seen = SEEN_ADMIN_SOCKET },
    { .key = "debug", .kind = K_BOOL, .off = offsetof(cfg_t, debug) },
    STR("metrics_address", false, cfg_t, metrics_address, F_ADDR),
    /* the order of enum dw_log_level and dw_log_format (log.h); re-read on SIGHUP */
    { .key = "log_level", .kind = K_ENUM, .off = offsetof(cfg_t, log_level), .def = 1,
      .names = (const char *const[]){ "debug", "info", "warn", "error", NULL } },
    { .key = "log_format", .kind = K_ENUM, .off = offsetof(cfg_t, log_format),
      .names = (const char *const[]){ "auto", "logfmt", "journal", NULL } },
    { .key = "probe_overrides", .kind = K_FUNC, .fn = parse_overrides },
};

/* Stored inverted so a member built in C (zeroed) is a voter. */
static void parse_voter(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_member *m = base;
    if (v && !cJSON_IsBool(v))
        cfg_err(c, "expected a boolean");
    m->non_voter = v && cJSON_IsFalse(v);
}

static const struct field member_f[] = {
    { .key = "id", .kind = K_RAFTID, .required = true, .off = offsetof(struct dw_member, id) },
    STR("name", false, struct dw_member, name, F_ID),
    STR("raft_address", true, struct dw_member, raft_address, F_ADDR),
    STR("peer_address", true, struct dw_member, peer_address, F_ADDR),
    { .key = "voter", .kind = K_FUNC, .fn = parse_voter },
};
static const struct table member_t = TABLE(member_f);

/* One secret shared by every member let any holder speak for every node: refused by name so
 * the operator learns what replaced it. */
static void refuse_shared_secret(struct ctx *c, const cJSON *v, void *base)
{
    (void)base;
    if (v)
        cfg_err(c, "no longer supported: a secret shared by all members lets any of them speak for "
               "the others; use cluster.peer_secret_dir (see docs/config.md)");
}

static const struct field cluster_f[] = {
    ARR("members", cfg_t, members, n_members, 1, DW_MAX_MEMBERS, &member_t, F_ID),
    { .key = "peer_secret_dir", .kind = K_STR, .required = true, .local = true,
      .off = offsetof(cfg_t, cluster.peer_secret_dir), .size = DW_PATH_MAX, .fmt = F_PATH },
    { .key = "peer_secret_file", .kind = K_FUNC, .fn = refuse_shared_secret },
    NUM("election_timeout_ms", cfg_t, cluster.election_timeout_ms, 1000, 1, MS_MAX),
    NUM("heartbeat_ms", cfg_t, cluster.heartbeat_ms, 100, 1, MS_MAX),
    NUM("observation_ttl_ms", cfg_t, cluster.observation_ttl_ms, 15000, 1, MS_MAX),
    NUM("refresh_interval_ms", cfg_t, cluster.refresh_interval_ms, 5000, 1, MS_MAX),
    NUM("snapshot_threshold", cfg_t, cluster.snapshot_threshold, 1024, 1, SNAPSHOT_MAX),
    NUM("snapshot_trailing", cfg_t, cluster.snapshot_trailing, 256, 1, SNAPSHOT_MAX),
    NUM("min_submit_interval_ms", cfg_t, cluster.min_submit_interval_ms, 250, 1, MS_MAX),
    NUM("history_retention_days", cfg_t, cluster.history_retention_days, 90, 1, 3650),
    NUM("history_max_rows", cfg_t, cluster.history_max_rows, 100000, 1000, 10000000),
};

static const struct field genesys_f[] = {
    { .key = "region", .kind = K_STR, .local = true, .off = offsetof(cfg_t, genesys.region), .size = DW_ID_MAX,
      .fmt = F_TEXT, .seen = SEEN_REGION },
    { .key = "api_base_url", .kind = K_STR, .local = true, .off = offsetof(cfg_t, genesys.api_base_url),
      .size = DW_URL_MAX, .fmt = F_URL, .seen = SEEN_API_URL },
    { .key = "login_base_url", .kind = K_STR, .local = true, .off = offsetof(cfg_t, genesys.login_base_url),
      .size = DW_URL_MAX, .fmt = F_URL, .seen = SEEN_LOGIN_URL },
    { .key = "client_id", .kind = K_STR, .required = true, .local = true,
      .off = offsetof(cfg_t, genesys.client_id), .size = 128, .fmt = F_TEXT },
    { .key = "client_secret_file", .kind = K_STR, .required = true, .local = true,
      .off = offsetof(cfg_t, genesys.client_secret_file), .size = DW_PATH_MAX, .fmt = F_PATH },
    NUM("request_timeout_ms", cfg_t, genesys.request_timeout_ms, 10000, 1, MS_MAX),
    NUM("verify_timeout_ms", cfg_t, genesys.verify_timeout_ms, 60000, 1, MS_MAX),
    NUM("verify_interval_ms", cfg_t, genesys.verify_interval_ms, 2000, 1, MS_MAX),
    NUM("step_timeout_ms", cfg_t, genesys.step_timeout_ms, 180000, 1, MS_MAX),
    NUM("poll_interval_ms", cfg_t, genesys.poll_interval_ms, 10000, 1, MS_MAX),
    NUM("cloud_ttl_ms", cfg_t, genesys.cloud_ttl_ms, 35000, 1, MS_MAX),
    NUM("cloud_grace_ms", cfg_t, genesys.cloud_grace_ms, 60000, 0, MS_MAX),
    NUM("rate_budget_per_min", cfg_t, genesys.rate_budget_per_min, 120, 1, 300),
    NUM("max_concurrent_requests", cfg_t, genesys.max_concurrent_requests, 4, 1, 32),
};

static const struct field tilt_f[] = {
    NUM("stall_ms", cfg_t, tilt.stall_ms, 2000, 1, MS_MAX),
    NUM("clock_jump_ms", cfg_t, tilt.clock_jump_ms, 2000, 1, MS_MAX),
    NUM("abstain_ms", cfg_t, tilt.abstain_ms, 30000, 1, MS_MAX),
};

static const struct field probe_f[] = {
    NUM("interval_ms", cfg_t, probe.interval_ms, 1000, 1, MS_MAX),
    NUM("timeout_ms", cfg_t, probe.timeout_ms, 800, 1, MS_MAX),
    NUM("fail_threshold", cfg_t, probe.fail_threshold, 3, 1, THRESHOLD_MAX),
    NUM("recover_threshold", cfg_t, probe.recover_threshold, 2, 1, THRESHOLD_MAX),
};

typedef struct dw_probe_spec spec_t;
#define PSTR(k, m, f, o) \
    { .key = k, .kind = K_STR, .off = offsetof(spec_t, m), .size = sizeof(((spec_t *)0)->m), \
      .fmt = f, .only = o }

/* All keys of all kinds: .only refuses a key by name where its kind has no use for it. */
static const struct field spec_f[] = {
    { .key = "kind", .kind = K_ENUM, .required = true, .off = offsetof(spec_t, kind),
      .names = probe_kinds },
    /* 0 until cfg_probe_check applies probe.timeout_ms */
    { .key = "timeout_ms", .kind = K_UINT, .off = offsetof(spec_t, timeout_ms), .min = 1,
      .max = MS_MAX },
    PSTR("url", url, F_URL, V_HTTP),
    { .key = "expect_status", .kind = K_FUNC, .fn = parse_expect_status, .only = V_HTTP },
    PSTR("body_match", body_match, F_TEXT, V_HTTP),
    PSTR("ca_file", ca_file, F_PATH, V_TLS),
    PSTR("client_cert", client_cert, F_PATH, V_TLS),
    PSTR("client_key", client_key, F_PATH, V_TLS),
    { .key = "verify_tls", .kind = K_BOOL, .off = offsetof(spec_t, verify_tls), .def = 1,
      .only = V_TLS },
    PSTR("address", address, F_ADDR, V_SIP | V_TCP),
    { .key = "transport", .kind = K_ENUM, .off = offsetof(spec_t, transport),
      .names = sip_transports, .only = V_SIP },
    PSTR("request_uri", request_uri, F_SIPURI, V_SIP),
    PSTR("tls_server_name", tls_server_name, F_TEXT, V_SIP_TLS),
    { .key = "alive_codes", .kind = K_FUNC, .fn = parse_alive_codes, .only = V_SIP },
};
static const struct table spec_t_table = {
    .f = spec_f, .n = sizeof spec_f / sizeof spec_f[0], .variant = cfg_probe_variant,
    .variant_name = cfg_probe_variant_name, .check = cfg_probe_check,
};

static const struct field edge_f[] = {
    STR("id", true, struct dw_edge, id, F_ID),
    STR("genesys_edge_id", false, struct dw_edge, genesys_edge_id, F_ID),
    STR("health_url", false, struct dw_edge, health_url, F_URL),
    { .key = "probes", .kind = K_ARRAY, .off = offsetof(struct dw_edge, probes),
      .size = sizeof(spec_t), .count_off = offsetof(struct dw_edge, n_probes), .min = 1,
      .max = DW_MAX_PROBES, .sub = &spec_t_table, .alloc = true },
};
static const struct table edge_t = { .f = edge_f, .n = sizeof edge_f / sizeof edge_f[0],
                                     .check = cfg_edge_check };

static const struct field site_f[] = {
    STR("id", true, struct dw_site, id, F_ID),
    { .key = "rule", .kind = K_FUNC, .fn = parse_rule },
    { .key = "combine", .kind = K_ENUM, .off = offsetof(struct dw_site, combine),
      .names = combines },
    ARR_ALLOC("edges", struct dw_site, edges, n_edges, 1, DW_MAX_EDGES, &edge_t),
};
static const struct table site_t = { .f = site_f, .n = sizeof site_f / sizeof site_f[0],
                                     .check = cfg_site_check };

static const struct field route_f[] = {
    STR("site_id", true, struct dw_route_action, site_id, F_ID),
    STR("route_id", true, struct dw_route_action, route_id, F_ID),
    { .key = "mode", .kind = K_ENUM, .required = true, .off = offsetof(struct dw_route_action, mode),
      .names = route_modes },
};
static const struct table route_t = TABLE(route_f);

/* site comes before drain_edges: cfg_target_check needs the resolved site */
static const struct field target_f[] = {
    STR("id", true, struct dw_target, id, F_ID),
    { .key = "site", .kind = K_FUNC, .fn = cfg_parse_target_site },
    ARR("trunk_base_ids", struct dw_target, trunk_base_ids, n_trunk_bases, 1,
        DW_MAX_TRUNK_BASES, NULL, F_ID),
    { .key = "outbound_routes", .kind = K_ARRAY, .off = offsetof(struct dw_target, routes),
      .size = sizeof(struct dw_route_action), .count_off = offsetof(struct dw_target, n_routes),
      .min = 1, .max = DW_MAX_ROUTES, .sub = &route_t },
    { .key = "drain_edges", .kind = K_BOOL, .off = offsetof(struct dw_target, drain_edges) },
    NUM("drain_wait_s", struct dw_target, drain_wait_s, 300, 0, DW_DRAIN_WAIT_MAX_S),
};
static const struct table target_t = { .f = target_f, .n = sizeof target_f / sizeof target_f[0],
                                       .check = cfg_target_check };

static const struct field group_f[] = {
    STR("id", true, struct dw_group, id, F_ID),
    ARR("targets", struct dw_group, targets, n_targets, 2, DW_MAX_TARGETS, &target_t, F_ID),
    { .key = "failback", .kind = K_ENUM, .off = offsetof(struct dw_group, failback),
      .names = failbacks },
    NUM("stable_for_ms", struct dw_group, stable_for_ms, 300000, 0, MS_MAX),
    NUM("failback_retry_ms", struct dw_group, failback_retry_ms, 60000, 1000, MS_MAX),
    NUM("failback_retry_max_ms", struct dw_group, failback_retry_max_ms, 3600000, 1000, MS_MAX),
    NUM("max_auto_operations", struct dw_group, max_auto_operations, 3, 1, THRESHOLD_MAX),
    NUM("flap_window_ms", struct dw_group, flap_window_ms, 3600000, 1000, MS_MAX),
};
static const struct table group_t = TABLE(group_f);

static const struct table node_t = TABLE(node_f), cluster_t = TABLE(cluster_f),
                          genesys_t = TABLE(genesys_f), probe_t = TABLE(probe_f),
                          tilt_t = TABLE(tilt_f);

/* Sections share the dw_config base (offsets are from cfg), so OBJ rows have off 0. Sites come
 * before groups: a target's site is resolved against the sites already parsed; probe comes
 * before sites: its values are the defaults and limits of each Edge's probes. */
static const struct field top_f[] = {
    { .key = "node", .kind = K_OBJ, .required = true, .local = true, .sub = &node_t },
    OBJ("cluster", true, &cluster_t),
    { .key = "genesys", .kind = K_OBJ, .required = true, .sub = &genesys_t, .seen = SEEN_GENESYS },
    OBJ("probe", false, &probe_t),
    OBJ("tilt", false, &tilt_t),
    ARR_ALLOC("sites", cfg_t, sites, n_sites, 1, DW_MAX_SITES, &site_t),
    ARR("failover_groups", cfg_t, groups, n_groups, 1, DW_MAX_GROUPS, &group_t, F_ID),
    { .key = "notifications", .kind = K_OBJ, .local = true, .off = offsetof(cfg_t, notify),
      .sub = &cfg_notify_table },
};
const struct table cfg_top_table = TABLE(top_f);
