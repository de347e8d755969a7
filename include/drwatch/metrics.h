/* Prometheus metrics: modules register collector callbacks that write their current samples at
 * scrape time; the registry renders the text exposition format (version 0.0.4) and serves it at
 * GET /metrics through dw_httpd on the node's loop. Nothing is stored between scrapes, so a
 * module's numbers live in the module and cannot drift from what it reports elsewhere. */
#ifndef DRWATCH_METRICS_H
#define DRWATCH_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/httpd.h"

#define DW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct dw_metrics;
struct dw_metrics_writer;

enum dw_metric_type { DW_METRIC_COUNTER, DW_METRIC_GAUGE, DW_METRIC_HISTOGRAM };

/* Writes one sample. Samples of one family (name) may come from several collectors and in any
 * order: the writer groups them, so each family is emitted contiguously with its HELP and TYPE
 * once (the first help and type win; a sample whose type disagrees is dropped, as is one with an
 * invalid metric or label name, each logged once per registry).
 * labels: NULL, or a NULL-terminated list of name/value pairs, e.g.
 *   (const char *const[]){"site", site_id, "edge", edge_id, NULL}
 * Label values are escaped here (backslash, double quote, newline). Counters should be named
 * *_total. The caller keeps each label set unique within a family. */
void dw_metrics_write(struct dw_metrics_writer *w, const char *name, enum dw_metric_type type,
                      const char *help, const char *const *labels, double value);

/* Writes one histogram (family type DW_METRIC_HISTOGRAM): name_bucket{...,le} cumulative over
 * the n_bounds ascending upper bounds plus +Inf, name_sum and name_count. counts holds
 * n_bounds + 1 per-bucket (not cumulative) counts, the last one for values above every bound.
 * labels as for dw_metrics_write, without "le". */
void dw_metrics_write_histogram(struct dw_metrics_writer *w, const char *name, const char *help,
                                const char *const *labels, const double *bounds,
                                const uint64_t *counts, int n_bounds, double sum);

/* Called at every scrape, on the loop thread; must not block. */
typedef void (*dw_metrics_collect_fn)(void *data, struct dw_metrics_writer *w);

/* What GET /health and GET /leader answer, filled at each request (on the loop thread; must be
 * cheap and must not block: load balancers poll these). */
struct dw_metrics_status {
    bool healthy;            /* /health: 200, else 503 */
    bool leader;             /* /leader: 200, else 503 */
    const char *role;        /* "leader", "follower", "candidate", ... */
    const char *reason;      /* why not healthy ("" when healthy) */
    uint64_t node_id, leader_id, term; /* leader_id 0: none known */
    const char *node_name, *leader_name;
};
typedef void (*dw_metrics_status_fn)(void *data, struct dw_metrics_status *out);
/* Serves /health and /leader from fn (without it they answer 404). */
void dw_metrics_set_status(struct dw_metrics *m, dw_metrics_status_fn fn, void *data);
/* The JSON body both endpoints answer with (malloc'd), NULL when out of memory. */
char *dw_metrics_status_json(const struct dw_metrics_status *st);

/* Creates the registry and, when addr ("a.b.c.d:port") is neither NULL nor "", serves it at
 * GET /metrics, plus /health and /leader (dw_metrics_set_status); other paths 404, methods
 * other than GET and HEAD 405. Returns 0, or -1 with errmsg. */
int dw_metrics_start(struct dw_metrics **out, uv_loop_t *loop, const char *addr, char *errmsg,
                     size_t errlen);
/* Stops serving and frees the registry (collectors are not called again). Accepts NULL. */
void dw_metrics_close(struct dw_metrics *m);

/* Collectors run in registration order. Returns 0, or -1 when out of memory. */
int dw_metrics_add(struct dw_metrics *m, dw_metrics_collect_fn fn, void *data);
/* Unregisters fn/data (a module closing before the registry must call it). */
void dw_metrics_remove(struct dw_metrics *m, dw_metrics_collect_fn fn, void *data);

/* Runs every collector and returns the exposition text (malloc'd, NUL-terminated, *len set), or
 * NULL when out of memory. */
char *dw_metrics_render(struct dw_metrics *m, size_t *len);

/* A dw_httpd_handler (data = the registry) serving /metrics, /health and /leader as above, so another dw_httpd (the
 * peer channel's extra handler) can expose the same registry. */
void dw_metrics_http_handler(void *data, struct dw_httpd_req *req, const char *method,
                             const char *path, const char *body, size_t body_len);

#endif
