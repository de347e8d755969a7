/* canonical/raft on its libuv TCP backend, wired to the FSM. Only accessor functions of the raft
 * API are used, plus two public fields no version has an accessor for, read only and alike in
 * all three (current_term, configuration: see raftnode.c); builds against 0.15, 0.18 and
 * cowsql/raft. */
#ifndef DRWATCH_RAFTNODE_H
#define DRWATCH_RAFTNODE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/fsm.h"

struct dw_raft;

/* status 0: committed and applied locally; otherwise a message (RAFT_LEADERSHIPLOST means the
 * outcome is unknown: the entry may still commit). */
typedef void (*dw_raft_done_cb)(void *data, int status, const char *errmsg);

/* Called after every applied entry (on every node). */
typedef void (*dw_raft_applied_cb)(void *data);

/* Bootstraps the configured membership on first start (data_dir empty), then starts raft. With
 * cfg->join an empty data_dir bootstraps nothing: the node starts with an empty configuration,
 * never stands for election, and waits for a leader to add it (dw_raft_add_voter), which then
 * sends it the log. With state in data_dir, join makes no difference. cfg must list this node.
 * Takes an exclusive flock on data_dir. fsm must outlive the node. */
int dw_raft_start(struct dw_raft **out, uv_loop_t *loop, const struct dw_config *cfg,
                  struct dw_fsm *fsm, dw_raft_applied_cb applied_cb, void *applied_data,
                  char *errmsg, size_t errlen);
/* cb runs once raft has closed and memory is freed. */
void dw_raft_close(struct dw_raft *r, void (*cb)(void *data), void *data);

/* Leading, ready (its barrier done) and not in TILT: the node that may stamp and act. */
bool dw_raft_is_leader(struct dw_raft *r);
uint64_t dw_raft_leader_id(struct dw_raft *r);        /* 0 when unknown */
uint64_t dw_raft_term(struct dw_raft *r);
const char *dw_raft_state_name(struct dw_raft *r);    /* "follower", "candidate", "leader", "unavailable" */
uint64_t dw_raft_last_applied(struct dw_raft *r);
uint64_t dw_raft_last_index(struct dw_raft *r);

/* TILT on or off (tilt.h). In TILT the node proposes nothing (dw_raft_is_leader says no) and, when
 * it leads, hands leadership to another voter (raft_transfer), retrying another one on each poll
 * until someone takes over. */
void dw_raft_set_tilt(struct dw_raft *r, bool tilt);
/* Hands leadership to the voter with the most up-to-date log (before a clean stop): cb runs
 * once the transfer ends, moved telling whether this node is no longer the leader (raft gives
 * up after an election timeout). *target: the voter asked. -1 with errmsg when this node does
 * not lead or raft refuses (no other voter). */
int dw_raft_hand_over(struct dw_raft *r, void (*cb)(void *data, bool moved), void *data,
                      uint64_t *target, char *errmsg, size_t errlen);
/* Leadership transfers started because of TILT. */
uint64_t dw_raft_tilt_handovers(struct dw_raft *r);
/* Stamps whose wall clock was ahead of the measured time and were held back (stamp.h). */
uint64_t dw_raft_stamps_clamped(struct dw_raft *r);
/* Replaces the wall clock read for stamps (tests); NULL restores the real one. */
void dw_raft_set_wall_clock(struct dw_raft *r, int64_t (*wall)(void *data), void *data);

/* Leader only: stamps ts/by (dw_entry_stamp, the time per stamp.h) and applies. Returns 0, or -1 with errmsg when not
 * leader or the entry is invalid (cb never called then). */
int dw_raft_propose(struct dw_raft *r, const char *entry_json, dw_raft_done_cb cb, void *data,
                    char *errmsg, size_t errlen);
/* Leader only: completes once every entry of earlier terms is applied. */
int dw_raft_barrier(struct dw_raft *r, dw_raft_done_cb cb, void *data);

/* ---- membership (raft's configuration) ---- */

struct dw_raft_server {
    uint64_t id;
    char address[DW_ADDR_MAX];
    int role; /* RAFT_VOTER / RAFT_STANDBY / RAFT_SPARE */
};
/* This node's latest configuration, committed or not (the one raft acts on): copies up to max
 * servers into out and returns how many there are (may exceed max). 0 before a joining node
 * has received one. */
int dw_raft_configuration(struct dw_raft *r, struct dw_raft_server *out, int max);
/* "voter", "standby", "spare" ("unknown" otherwise). */
const char *dw_raft_role_name(int role);

/* Changes: leader only; raft runs one configuration change at a time, so a second one while
 * another is under way is refused (-1). Both are idempotent so that an operator can run them
 * again after a crash half-way. On -1 (with errmsg) cb is never called; otherwise cb runs
 * exactly once, never before the function returns. */

/* Makes id a voter at raft_address: added as a spare first, then promoted once raft has caught
 * it up (a failed catch-up leaves it a spare: run again). Already a voter at that address:
 * cb(0). Known at another address: -1. */
int dw_raft_add_voter(struct dw_raft *r, uint64_t id, const char *raft_address,
                      dw_raft_done_cb cb, void *data, char *errmsg, size_t errlen);
/* Removes id from raft's configuration; cb(0) when it is not there. Refuses this node (hand
 * leadership over first) and the last voter. The removed node is not told (the leader stops
 * sending to it): stop it. */
int dw_raft_remove_member(struct dw_raft *r, uint64_t id, dw_raft_done_cb cb, void *data,
                          char *errmsg, size_t errlen);

#endif
