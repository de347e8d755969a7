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

static void usage(FILE *f)
{
    fprintf(f, "usage: drwatchd --config FILE [--node FILE] [--node-id N] [--join] [--check-config]\n"
               "                [--log-level debug|info|warn|error]\n"
               "       drwatchd --version\n"
               "  --config   the cluster file (shared by every node; may hold a node object)\n"
               "  --node     this node's file, {\"node\": {...}}: its keys win over the\n"
               "             shared file's node object\n"
               "  --node-id  this node's id (node.id), over both files\n"
               "  --join  with an empty data_dir: wait to be added to a running cluster\n"
               "          (drctl members add) instead of bootstrapping a new one\n");
}

static void on_signal(uv_signal_t *s, int signum)
{
    dw_log(DW_LOG_INFO, "main", "received %s", strsignal(signum));
    if (node)
        dw_node_stop(node);
    /* The signal handles would keep the loop alive after the shutdown chain completes. */
    if (!uv_is_closing((uv_handle_t *)&sigterm_h))
        uv_close((uv_handle_t *)&sigterm_h, NULL);
    if (!uv_is_closing((uv_handle_t *)&sigint_h))
        uv_close((uv_handle_t *)&sigint_h, NULL);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    struct dw_config_source src = { .config = NULL };
    int check_only = 0;
    bool join = false;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"node", required_argument, NULL, 'n'},
        {"node-id", required_argument, NULL, 'i'},
        {"check-config", no_argument, NULL, 'C'},
        {"join", no_argument, NULL, 'j'},
        {"log-level", required_argument, NULL, 'l'},
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
        case 'l':
            if (strcmp(optarg, "debug") == 0)
                dw_log_set_level(DW_LOG_DEBUG);
            else if (strcmp(optarg, "info") == 0)
                dw_log_set_level(DW_LOG_INFO);
            else if (strcmp(optarg, "warn") == 0)
                dw_log_set_level(DW_LOG_WARN);
            else if (strcmp(optarg, "error") == 0)
                dw_log_set_level(DW_LOG_ERROR);
            else {
                fprintf(stderr, "drwatchd: --log-level: expected debug, info, warn or error\n");
                return 2;
            }
            break;
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
        fprintf(stderr, "drwatchd: %s: %d configuration error%s:\n", config_path, errs.n,
                errs.n == 1 ? "" : "s");
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
        uv_signal_start(&sigterm_h, on_signal, SIGTERM);
        uv_signal_start(&sigint_h, on_signal, SIGINT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        dw_log(DW_LOG_ERROR, "main", "handles still open at exit");
        rc = rc ? rc : 1;
    }
    dw_config_free(&cfg);
    cJSON_Delete(doc);
    return rc;
}
