/* The simulated cluster: drwatch's real FSM, planner and actuator on canonical/raft's
 * raft_fixture, with simulated probes, Edges and Genesys on one virtual clock, driven by a
 * scenario drawn from a seed (docs/reliability.md). */
#ifndef DRWATCH_SIM_H
#define DRWATCH_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <raft.h>
#include <raft/fixture.h>

#include "drwatch/actuator.h"
#include "drwatch/clock.h"
#include "drwatch/detector.h"
#include "drwatch/fsm.h"
#include "drwatch/stamp.h"

#define SIM_NODES_MAX 5
#define SIM_SITES 2
#define SIM_TBS 5
#define SIM_WALL0 1800000000000LL /* virtual wall clock at time 0 */
#define SIM_LIVENESS 10           /* "invariant" number of a liveness failure */

struct sim;

/* ---- events on the virtual clock (sim.c) ---- */
typedef void (*sim_fn)(struct sim *s, void *p, int64_t x);
void sim_at(struct sim *s, uint64_t delay_ms, sim_fn fn, void *p, int64_t x);
/* The event owns p: drop(p) frees it when the world ends first (fn frees it otherwise). */
void sim_at_owned(struct sim *s, uint64_t delay_ms, sim_fn fn, void *p, int64_t x,
                  void (*drop)(void *p));
uint64_t sim_now(const struct sim *s);
uint32_t sim_rand(struct sim *s);                 /* the seed's stream */
unsigned sim_between(struct sim *s, unsigned lo, unsigned hi); /* inclusive */
bool sim_chance(struct sim *s, unsigned percent);
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An invariant broke: remembered (first one wins), traced, and the run stops. */
void sim_violation(struct sim *s, int invariant, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim_clock(struct sim *s, struct dw_clock *out);

/* ---- a simulated Genesys and each node's client of it (gsim.c) ---- */
struct gsim_write { /* one PUT that reached Genesys */
    uint64_t sent, arrived;
    int node;
    struct dw_fence fence;
    int tb;
    bool value, changed;
    bool strands;      /* as the writer saw it when sending: this target is UP and every other
                          enabled one DOWN (rollbacks excepted) */
    uint64_t in_service_from; /* its trunks' inService time before the write */
};
struct gsim_tb {
    char id[16];
    int site;          /* -1: BYOC Cloud, always connected */
    bool enabled;
    int version;
    uint64_t in_service_at; /* trunks report inService from then on while enabled */
};
struct gsim {
    struct gsim_tb tb[SIM_TBS];
    int n_tb;
    unsigned fault_pct;     /* chance that a request draws a fault (429, 503, lost, slow) */
    bool cut[SIM_NODES_MAX]; /* node cannot reach Genesys */
    unsigned max_arrival_ms; /* a request reaches Genesys within this, or never */
    struct gsim_write *writes;
    int n_writes, cap_writes;
    struct gsim_client **clients; /* kept until the world ends: queued events name them */
    int n_clients, cap_clients;
};
struct gsim_client;
int gsim_tb_index(const struct gsim *g, const char *id);
struct gsim_client *gsim_client_new(struct sim *s, int node);
void gsim_free_all(struct sim *s); /* every client and call, when the world ends */
/* Ends the client's calls with DW_G_FAIL "client closed"; requests on the wire still arrive. */
void gsim_client_free(struct gsim_client *c);
void gsim_actuator_ops(struct gsim_client *c, struct dw_actuator_ops *ops);

/* ---- invariant checks (check.c) ---- */
void check_write(struct sim *s, const struct gsim_write *w);
bool check_strands(struct sim *s, int node, int tb, int64_t op); /* see gsim_write.strands */
void check_applied(struct sim *s, int node, const void *buf, size_t len);
void check_step(struct sim *s); /* after every raft step */
/* 1 when the cluster has settled as it must once faults stop, 0 not yet; why says what is
 * missing. */
int check_settled(struct sim *s, char *why, size_t whylen);
void check_final(struct sim *s);

/* ---- nodes (node.c) ---- */
struct sim_node {
    struct sim *s;
    int i;            /* fixture index; member id i + 1 */
    struct raft *raft;
    struct raft_fsm rfsm;
    struct dw_fsm *fsm;
    bool alive;
    bool tilt_overload; /* overloaded: probes fail; the prober abstains (TILT) */
    uint64_t tilt_until;
    int64_t wall_offset;  /* clock jump on this node */
    struct dw_stamp_clock stamps;
    uint64_t ready_term;  /* leader barrier done in this term */
    bool barrier_out;
    bool transferring;    /* a raft_transfer is under way: it acts no more (raftnode.c) */
    int raft_state;       /* as last seen */
    uint64_t seen_term, seen_vote;
    bool bootstrapping;
    struct dw_detector det[SIM_SITES];
    enum dw_health site_state[SIM_SITES];
    bool dirty, submitting;
    uint64_t last_submit;
    uint64_t submit_id;   /* which submission a late answer belongs to */
    enum dw_health verdict_seen[SIM_SITES]; /* after its last apply */
    /* when its log turned the site UP (its entry's time), if this process saw that happen */
    int64_t up_since[SIM_SITES];
    bool up_known[SIM_SITES];
    int64_t released_op[2]; /* per group: the newest operation a hold release covered */
    int64_t ops_seen_max; /* the newest operation checked */
    struct dw_actuator *act;
    struct gsim_client *gc;
    uint64_t epoch;       /* bumped at each crash: timers of a dead process never fire */
};
void node_init(struct sim *s, int i);
void node_start(struct sim_node *n);  /* process start (first or after a crash) */
void node_crash(struct sim_node *n);
void node_poll(struct sim_node *n);   /* after every raft step: leadership */
void node_close(struct sim_node *n);
bool node_is_leader(const struct sim_node *n);
int64_t node_wall(const struct sim_node *n);
/* The leader proposes; 0 or -1. */
void node_hand_over(struct sim_node *n);
/* Sometimes a fault aimed at a moment: the node crashes, hands over or is cut off, and the site
 * (>= 0) being switched may die too; true when it struck (a request in flight is then held back
 * until about the caller's timeout). */
bool sim_strike(struct sim *s, int node, const char *when, int site);
int node_propose(struct sim_node *n, const char *entry, void (*cb)(struct sim_node *, int, void *),
                 void *data);

/* ---- the world ---- */
struct sim_opts {
    uint64_t seed;
    bool trace;
    int nodes;          /* 3 or 5 */
    bool install_snapshots; /* let leaders send snapshots (hits a raft_fixture bug) */
    unsigned strike_pct;    /* chance of a strike at each step boundary and PUT */
    /* faults left out (minimising): fault k is bit k of drop, strike k bit k of drop_strike */
    uint64_t drop[4], drop_strike[4];
};

struct sim {
    struct sim_opts o;
    uint64_t rng;
    struct raft_fixture f;
    int n;
    struct sim_node node[SIM_NODES_MAX];
    struct dw_config *cfg;  /* the cluster config every node bootstraps from */
    char *cfg_doc;          /* its cluster document (JSON) */
    struct gsim g;
    /* truth */
    bool site_up[SIM_SITES];
    bool link_site[SIM_NODES_MAX][SIM_SITES]; /* node can probe the site */
    bool link[SIM_NODES_MAX][SIM_NODES_MAX];  /* i's messages reach j */
    uint64_t unreach_end[SIM_NODES_MAX][SIM_SITES]; /* when it last became reachable again */
    uint64_t minority_since[SIM_NODES_MAX];   /* 0: with a majority */
    /* what the checks remember */
    uint64_t elected_at[4096];  /* by term: first seen leading, 0 not yet */
    uint64_t max_term;
    struct {                    /* the applied sequence every node must follow */
        uint64_t *hash;
        size_t n, cap;
    } seq;
    struct step_fin { int64_t op; int seq; uint64_t at; } *fin;
    int n_fin, cap_fin;
    bool faults_over;
    int n_faults, n_strikes;   /* drawn so far */
    uint64_t heal_at;
    /* outcome */
    int violated;              /* invariant number, 0 none */
    char raft_fault[160];      /* raft itself broke (docs/reliability.md), "" none */
    char why[1024];
    bool stop;
    /* statistics */
    uint64_t writes_total, ops_seen, leader_changes, events;
    /* events */
    struct ev { uint64_t at, seq; sim_fn fn; void *p; int64_t x; void (*drop)(void *); } *heap;
    size_t n_ev, cap_ev;
    uint64_t ev_seq;
    struct dw_timer **timers;
    size_t n_timers, cap_timers;
};

#endif
