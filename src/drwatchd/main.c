#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "drwatch/cfgfile.h"
#include "drwatch/config.h"
#include "drwatch/log.h"

#include "node.h"

#ifndef DRWATCH_VERSION
#define DRWATCH_VERSION "0.1.0"
#endif

static struct dw_node *node;
static uv_signal_t sigterm_h, sigint_h;
/* SIGHUP is not a uv_signal_t: closing one restores the default action, which ends the
 * process, so a reload sent while the node stops could cut the shutdown short. Our own handler
 * wakes the loop; stopping switches to SIG_IGN in one step. */
static uv_async_t hup_async;

/* Stopping: a leader hands leadership over first (docs/logging.md); a second signal meanwhile
 * stops at once. */
static enum { RUNNING, HANDING_OVER, STOPPING } phase = RUNNING;
static uv_timer_t handover_timer;
static bool handover_ended;
static unsigned handover_ms;

/* What SIGHUP re-reads; a command-line flag wins over the file's setting. */
static const char *config_path;
static struct dw_config_source src; /* the files and --node-id, as at start */
static bool level_flag, format_flag;

/* With a node file or --node-id, every configuration error names the file it is in. */
static bool split_source(void)
{
    return src.node_file != NULL || src.node_id != 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: drwatchd --config FILE [--node FILE] [--node-id N] [--join] [--check-config]\n"
               "                [--log-level debug|info|warn|error]\n"
               "                [--log-format auto|logfmt|journal]\n"
               "       drwatchd --version\n"
               "  --config   the cluster file (shared by every node; may hold a node object)\n"
               "  --node     this node's file, {\"node\": {...}}: its keys win over the\n"
               "             shared file's node object\n"
               "  --node-id  this node's id (node.id), over both files\n"
               "  --join  with an empty data_dir: wait to be added to a running cluster\n"
               "          (drctl members add) instead of bootstrapping a new one\n");
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_hup_signal(int signum)
{
    int saved = errno;

    (void)signum;
    uv_async_send(&hup_async);
    errno = saved;
}

static void hup_set(void (*handler)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
}

static void stop_now(void)
{
    if (phase == STOPPING)
        return;
    phase = STOPPING;
    if (node)
        dw_node_stop(node);
    /* The signal handles would keep the loop alive after the shutdown chain completes. */
    close_handle((uv_handle_t *)&sigterm_h);
    close_handle((uv_handle_t *)&sigint_h);
    hup_set(SIG_IGN);
    /* closed after the loop ends, when no handler can still be running */
    uv_unref((uv_handle_t *)&hup_async);
    close_handle((uv_handle_t *)&handover_timer);
}

static void on_handover_timer(uv_timer_t *t)
{
    (void)t;
    if (phase != HANDING_OVER)
        return;
    if (!handover_ended)
        dw_log_kv(DW_LOG_WARN, "main", DW_LOG_FIELDS(DW_LI("timeout_ms", handover_ms)),
                  "leadership hand-over did not finish in time; stopping anyway");
    stop_now();
}

static void handed_over(void *data, bool moved)
{
    (void)data;
    if (phase != HANDING_OVER)
        return;
    handover_ended = true;
    if (moved)
        dw_log(DW_LOG_INFO, "main", "leadership handed over; stopping");
    else
        dw_log(DW_LOG_WARN, "main", "leadership hand-over failed (no voter took over); "
               "stopping anyway");
    /* inside raft's callback: stop from the loop */
    uv_timer_start(&handover_timer, on_handover_timer, 0, 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    const char *name = signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "?";
    uint64_t target = 0;
    char err[256];

    (void)s;
    dw_log_kv(DW_LOG_INFO, "main", DW_LOG_FIELDS(DW_LS("signal", name)), "received %s",
              strsignal(signum));
    if (phase == HANDING_OVER) {
        dw_log(DW_LOG_WARN, "main", "second signal during the leadership hand-over: stopping now");
        stop_now();
        return;
    }
    if (phase == STOPPING)
        return;
    if (node != NULL &&
        dw_node_hand_over(node, handed_over, NULL, &target, err, sizeof err) == 0) {
        phase = HANDING_OVER;
        dw_log_kv(DW_LOG_INFO, "main",
                  DW_LOG_FIELDS(DW_LI("target", target), DW_LI("timeout_ms", handover_ms)),
                  "handing leadership over to %llu before stopping", (unsigned long long)target);
        uv_timer_start(&handover_timer, on_handover_timer, handover_ms, 0);
        return;
    }
    dw_log(DW_LOG_INFO, "main", "stopping without a leadership hand-over: %s", err);
    stop_now();
}

/* Fields naming what a reload changed, at most 6 + the end. */
static void reloaded_field(struct dw_log_field *f, int *n, struct dw_log_field add)
{
    f[(*n)++] = add;
    f[*n] = DW_LOG_END;
}

static void on_hup(uv_async_t *a)
{
    struct dw_config *nc = calloc(1, sizeof *nc);
    struct dw_config_errors *errs = calloc(1, sizeof *errs);
    struct dw_node_reloaded rel;
    cJSON *doc = NULL;
    char err[512];

    (void)a;
    if (phase != RUNNING || nc == NULL || errs == NULL) {
        dw_log_kv(DW_LOG_WARN, "main", DW_LOG_FIELDS(DW_LS("signal", "SIGHUP")),
                  "reload ignored: %s", phase != RUNNING ? "stopping" : "out of memory");
        free(nc);
        free(errs);
        return;
    }
    dw_log_kv(DW_LOG_INFO, "main", DW_LOG_FIELDS(DW_LS("signal", "SIGHUP"), DW_LS("file",
              config_path)), "received SIGHUP: reloading");
    if (dw_config_load_source(&src, nc, errs, &doc) != 0) {
        /* split: every error starts with its source, "FILE: path: ..." */
        bool split = split_source();
        for (int i = 0; i < errs->n; i++) {
            char file[256] = "", path[128] = "";
            const char *m = errs->msg[i], *colon = strstr(m, ": ");
            if (split && colon != NULL && (size_t)(colon - m) < sizeof file) {
                snprintf(file, sizeof file, "%.*s", (int)(colon - m), m);
                m = colon + 2;
                colon = strstr(m, ": ");
            }
            if (colon != NULL && (size_t)(colon - m) < sizeof path)
                snprintf(path, sizeof path, "%.*s", (int)(colon - m), m);
            dw_log_kv(DW_LOG_WARN, "main",
                      DW_LOG_FIELDS(DW_LS("file", file[0] ? file : config_path),
                                    DW_LS("path", path[0] ? path : NULL)),
                      "reload: %s", errs->msg[i]);
        }
        dw_log_kv(DW_LOG_WARN, "main",
                  DW_LOG_FIELDS(DW_LS("file", config_path), DW_LI("errors", errs->n)),
                  "reload refused: %d configuration error%s; running settings kept", errs->n,
                  errs->n == 1 ? "" : "s");
        goto out;
    }
    if (dw_node_reload(node, nc, doc, &rel, err, sizeof err) != 0) {
        dw_log_kv(DW_LOG_WARN, "main", DW_LOG_FIELDS(DW_LS("file", config_path)),
                  "reload refused: %s; running settings kept", err);
        goto out;
    }

    struct dw_log_field f[8] = {DW_LOG_END};
    int n = 0;
    enum dw_log_level old = dw_log_level(),
                      lvl = level_flag ? old : (enum dw_log_level)nc->log_level;
    enum dw_log_format fmt = format_flag ? dw_log_format() : (enum dw_log_format)nc->log_format;
    if (lvl != old)
        reloaded_field(f, &n, DW_LS("log_level", dw_log_level_name(lvl)));
    if (fmt != dw_log_format()) {
        reloaded_field(f, &n, DW_LS("log_format", dw_log_format_name(fmt)));
        dw_log_set_format(fmt);
    }
    if (rel.notifications)
        reloaded_field(f, &n, DW_LS("notifications", "changed"));
    if (rel.genesys_secret)
        reloaded_field(f, &n, DW_LS("genesys_secret", "changed"));
    if (rel.peer_secrets)
        reloaded_field(f, &n, DW_LS("peer_secrets", "in_place"));
    /* the line is seen whichever way the level moves */
    dw_log_set_level(lvl < old ? lvl : old);
    dw_log_kv(DW_LOG_INFO, "main", f, n > 0 ? "reloaded" : "reloaded: nothing changed");
    dw_log_set_level(lvl);
out:
    dw_config_free(nc);
    free(nc);
    free(errs);
    cJSON_Delete(doc);
}

int main(int argc, char **argv)
{
    int check_only = 0;
    bool join = false;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"node", required_argument, NULL, 'n'},
        {"node-id", required_argument, NULL, 'i'},
        {"check-config", no_argument, NULL, 'C'},
        {"join", no_argument, NULL, 'j'},
        {"log-level", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, 'f'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'n':
            src.node_file = optarg;
            break;
        case 'i': {
            char *end = NULL;
            unsigned long long id = strtoull(optarg, &end, 10);
            if (!optarg[0] || *end || optarg[0] == '-' || id < 1 || id > 2147483647ull) {
                fprintf(stderr, "drwatchd: --node-id: expected a member id, 1 to 2147483647\n");
                return 2;
            }
            src.node_id = id;
            break;
        }
        case 'C':
            check_only = 1;
            break;
        case 'j':
            join = true;
            break;
        case 'l': {
            enum dw_log_level lvl;
            if (dw_log_parse_level(optarg, &lvl) != 0) {
                fprintf(stderr, "drwatchd: --log-level: expected debug, info, warn or error\n");
                return 2;
            }
            dw_log_set_level(lvl);
            level_flag = true;
            break;
        }
        case 'f': {
            enum dw_log_format fmt;
            if (dw_log_parse_format(optarg, &fmt) != 0) {
                fprintf(stderr, "drwatchd: --log-format: expected auto, logfmt or journal\n");
                return 2;
            }
            dw_log_set_format(fmt);
            format_flag = true;
            break;
        }
        case 'V':
            printf("drwatchd %s\n", DRWATCH_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    static struct dw_config cfg;
    static struct dw_config_errors errs;
    cJSON *doc = NULL;
    src.config = config_path;
    if (dw_config_load_source(&src, &cfg, &errs, &doc) != 0) {
        bool split = split_source();
        fprintf(stderr, "drwatchd: %s%s%d configuration error%s:\n", split ? "" : config_path,
                split ? "" : ": ", errs.n, errs.n == 1 ? "" : "s");
        for (int i = 0; i < errs.n; i++)
            fprintf(stderr, "  %s\n", errs.msg[i]);
        return 2;
    }
    /* only a warning: the committed config, not this file's sites, may have the Edge */
    if (cfg.override_unmatched)
        fprintf(stderr, "drwatchd: %s: warning: node.probe_overrides.%s: no Edge with this id in "
                "this file's sites (a typo, or an Edge only the committed config has)\n",
                config_path, cfg.override_unmatched);
    /* A check may run before systemd made the runtime and state directories: only a warning. */
    errs.n = 0;
    if (dw_config_check_places(&cfg, &errs) > 0) {
        for (int i = 0; i < errs.n; i++)
            fprintf(stderr, "drwatchd: %s%s\n", check_only ? "warning: " : "", errs.msg[i]);
        if (!check_only) {
            dw_config_free(&cfg);
            cJSON_Delete(doc);
            return 2;
        }
    }
    if (!level_flag)
        dw_log_set_level((enum dw_log_level)cfg.log_level);
    if (!format_flag)
        dw_log_set_format((enum dw_log_format)cfg.log_format);
    handover_ms = 2 * cfg.cluster.election_timeout_ms;
    if (check_only) {
        printf("%s: configuration is valid\n", config_path);
        dw_config_free(&cfg);
        cJSON_Delete(doc);
        return 0;
    }

    /* A peer that disconnects mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[512];
    int rc = 0;
    cfg.join = join;
    if (dw_node_start(&node, &loop, &cfg, doc, err, sizeof err) != 0) {
        dw_log(DW_LOG_ERROR, "main", "start-up failed: %s", err);
        rc = 1;
    } else {
        dw_log(DW_LOG_INFO, "main", "drwatchd %s node %llu started", DRWATCH_VERSION,
               (unsigned long long)cfg.node_id);
        uv_signal_init(&loop, &sigterm_h);
        uv_signal_init(&loop, &sigint_h);
        uv_async_init(&loop, &hup_async, on_hup);
        uv_timer_init(&loop, &handover_timer);
        uv_signal_start(&sigterm_h, on_signal, SIGTERM);
        uv_signal_start(&sigint_h, on_signal, SIGINT);
        hup_set(on_hup_signal);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (rc == 0) {
        close_handle((uv_handle_t *)&hup_async);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    if (uv_loop_close(&loop) != 0) {
        dw_log(DW_LOG_ERROR, "main", "handles still open at exit");
        rc = rc ? rc : 1;
    }
    dw_config_free(&cfg);
    cJSON_Delete(doc);
    return rc;
}
