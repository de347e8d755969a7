/* The Genesys signal: while this node is the acting leader, poll Genesys' own view of the Edges
 * (edge and trunk lists) within a request budget, and share it through the Raft log as "cloud"
 * entries, which the FSM combines per site with the probe quorum (docs/detection.md).
 * Idle when no site combines its probes with Genesys. */
#ifndef DRWATCH_CLOUD_H
#define DRWATCH_CLOUD_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/genesys.h"
#include "drwatch/raftnode.h"

struct dw_cloud;

/* Where the view goes. dw_cloud_start wires it to raft (dw_raft_is_leader, dw_raft_propose);
 * tests plug in their own. propose has dw_raft_propose's contract: 0 and cb later, or -1 with
 * errmsg and cb never called. */
struct dw_cloud_sink {
    bool (*is_leader)(void *data);
    int (*propose)(void *data, const char *entry_json, dw_raft_done_cb cb, void *cb_data,
                   char *errmsg, size_t errlen);
    void *data;
};

/* cfg, genesys and raft must outlive the poller (close it before them). Returns 0 (also when
 * idle), or -1 with errmsg. */
int dw_cloud_start(struct dw_cloud **out, uv_loop_t *loop, const struct dw_config *cfg,
                   struct dw_genesys *genesys, struct dw_raft *raft, char *errmsg, size_t errlen);
int dw_cloud_start_sink(struct dw_cloud **out, uv_loop_t *loop, const struct dw_config *cfg,
                        struct dw_genesys *genesys, const struct dw_cloud_sink *sink,
                        char *errmsg, size_t errlen);
/* Stops polling; memory goes once the listing and proposals in flight have called back (close
 * the Genesys client and raft afterwards, as the shutdown chain does). Accepts NULL. */
void dw_cloud_close(struct dw_cloud *c);

struct dw_cloud_stats {
    bool active;                /* some site combines the Genesys signal */
    bool polling;               /* leader and polling now */
    int edges;                  /* Edges in the cloud view */
    int up, down, unknown;      /* the last derived view */
    uint64_t polls;             /* cycles that read both lists */
    uint64_t poll_failures;     /* cycles that failed (a listing failed or was garbage) */
    uint64_t requests;          /* API requests sent by all cycles */
    uint64_t changes;           /* Edge state changes seen */
    uint64_t proposals;         /* cloud entries committed */
    uint64_t proposal_failures; /* cloud entries refused or not committed */
    uint64_t ignored;           /* listed entities skipped as garbage */
    unsigned last_requests;     /* API requests of the last cycle */
    unsigned interval_ms;       /* current cycle interval (poll interval, or longer for the budget) */
};
void dw_cloud_stats(const struct dw_cloud *c, struct dw_cloud_stats *out);

/* Cycle interval that keeps a cycle of `requests` API requests within rate_budget_per_min:
 * max(poll_interval_ms, requests * 60000 / rate_budget_per_min). */
unsigned dw_cloud_interval_ms(const struct dw_genesys_cfg *g, unsigned requests);

#endif
