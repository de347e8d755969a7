/* The actuator runs the FSM's pending operation steps against Genesys, on the leader only.
 * Each step is journaled: STARTED is committed before the first Genesys call and DONE/FAILED
 * after the last, so a new leader resumes at the first unfinished step. Steps are idempotent
 * (read, skip when already so), so a resumed STARTED step never acts twice.
 * Fencing (docs/architecture.md): every write carries a token {barrier term, operation, step};
 * the Genesys client checks it immediately before each request it sends. The token holds while
 * this node leads in that term, holds a lease (a barrier acknowledged by a majority less than
 * 3/4 of an election timeout ago, so no other leader can have been elected since), and the step
 * is still its operation's next one. Steps of different operations run independently. */
#ifndef DRWATCH_ACTUATOR_H
#define DRWATCH_ACTUATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drwatch/clock.h"
#include "drwatch/config.h"
#include "drwatch/fsm.h"
#include "drwatch/genesys.h"
#include "drwatch/opsm.h"
#include "drwatch/raftnode.h"

struct dw_actuator;

/* Everything the actuator needs of raft and Genesys, so a simulated cluster can drive it. */
struct dw_actuator_ops {
    void *raft;
    bool (*is_leader)(void *raft);
    uint64_t (*term)(void *raft);
    int (*barrier)(void *raft, dw_raft_done_cb cb, void *data);
    int (*propose)(void *raft, const char *entry_json, dw_raft_done_cb cb, void *data,
                   char *errmsg, size_t errlen);
    void *genesys;
    int (*set_trunk_base)(void *genesys, const char *trunk_base_id, bool enabled,
                          const struct dw_fence *fence, dw_genesys_cb cb, void *data);
    int (*check_trunks)(void *genesys, const char *trunk_base_id, dw_genesys_cb cb, void *data);
    void (*cancel_writes)(void *genesys, const char *why);
    /* A target's outbound routes and Edge drain (drwatch/genesys.h); NULL where the client has
     * none: a step that needs one then fails, saying so, before it changes anything. */
    int (*set_route)(void *genesys, const char *site_id, const char *route_id,
                     enum dw_route_mode mode, bool activate, const char (*tbs)[DW_ID_MAX],
                     int n_tbs, const struct dw_fence *fence, dw_genesys_cb cb, void *data);
    int (*set_edge_service)(void *genesys, const char *edge_id, bool in_service,
                            unsigned drain_wait_s, const struct dw_fence *fence, dw_genesys_cb cb,
                            void *data);
};

/* A running node's ops: raftnode and the Genesys client. */
void dw_actuator_live_ops(struct dw_actuator_ops *ops, struct dw_raft *raft,
                          struct dw_genesys *genesys);

/* ops and clock are copied. */
int dw_actuator_init(struct dw_actuator **out, const struct dw_clock *clock,
                     const struct dw_config *cfg, struct dw_fsm *fsm,
                     const struct dw_actuator_ops *ops);
/* Call after entries were applied; cheap when there is nothing to do. */
void dw_actuator_kick(struct dw_actuator *a);
void dw_actuator_close(struct dw_actuator *a); /* accepts NULL */

/* Debug knob (admin "debug" command, node.debug only): the process kills itself with SIGKILL
 * just before it would start a step with this action ("activate", "verify", "deactivate"),
 * i.e. after every earlier step's DONE is committed; only in the process that ran the
 * operation's first step, except for that first step ("activate") itself, where any armed leader
 * about to start it dies before journaling it (arm only one node for that). "" disarms. */
void dw_actuator_crash_before(struct dw_actuator *a, const char *action);

/* Short description of the steps in flight ("; "-separated), "" when idle. */
const char *dw_actuator_current(struct dw_actuator *a);

/* Step durations (start of this leader's attempt to its DONE or FAILED being proposed), per
 * action and result, in buckets with these upper bounds in seconds plus one above them all. */
#define DW_STEP_BUCKETS 12
extern const double dw_step_bucket_bounds[DW_STEP_BUCKETS];
struct dw_step_hist {
    uint64_t counts[DW_STEP_BUCKETS + 1];
    double sum;           /* seconds */
};

struct dw_actuator_stats {
    uint64_t lease_renewals; /* barriers that extended the write lease */
    uint64_t fenced_steps;   /* steps stopped because their fencing token lapsed */
    uint64_t resume_waits;   /* resumed steps that first waited out an earlier leader's request */
    struct dw_step_hist steps[DW_ACT_COUNT][2]; /* [action][0 done, 1 failed] */
};
void dw_actuator_stats(const struct dw_actuator *a, struct dw_actuator_stats *out);

#endif
