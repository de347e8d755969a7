/* Peer channel between watchdog nodes: HTTP/JSON on each member's peer_address (dw_httpd on the
 * server side, dw_http on the client side). A request carries "X-Drwatch-Node: <sender id>" and
 * "Authorization: Bearer <secret>", the secret the sender shares with the receiver alone (one
 * per pair of members, compared in constant time): unknown secrets get 401, a secret of one
 * member naming another, or an observation of another node, 403.
 *   POST /v1/propose   body: an unstamped entry. The leader stamps and applies it and answers
 *                      200 {"ok":true} once committed; a follower answers 421
 *                      {"ok":false,"error":"not leader","leader":ID}; bad entries 400.
 * Forwarded entries are idempotent (observations are full views, steps are checked against the
 * journal), so a retry after an unknown outcome is harmless. */
#ifndef DRWATCH_PEER_H
#define DRWATCH_PEER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/http.h"
#include "drwatch/httpd.h"
#include "drwatch/raftnode.h"

struct dw_peer;

/* Serves this node's peer_address; proposals are handed to raft (leader) or refused (follower).
 * Other paths can be served by extra_handler (NULL: 404), e.g. /metrics later.
 * curlm and raft must outlive the peer: close the peer first. */
int dw_peer_start(struct dw_peer **out, uv_loop_t *loop, struct dw_curlm *curlm,
                  const struct dw_config *cfg, const struct dw_peer_secrets *secrets,
                  struct dw_raft *raft, char *errmsg, size_t errlen);
/* Switches to another member list (a committed config change) and its secrets; the listener
 * keeps this node's address until a restart. On error nothing changes. cfg must outlive the
 * peer or the next reconfigure. */
int dw_peer_reconfigure(struct dw_peer *p, const struct dw_config *cfg,
                        const struct dw_peer_secrets *secrets, char *errmsg, size_t errlen);
/* Submissions still pending complete with an error before dw_peer_close returns. */
void dw_peer_close(struct dw_peer *p);

/* Serves paths other than /v1/propose and /v1/ping (after the same checks); NULL: 404. */
void dw_peer_set_extra_handler(struct dw_peer *p, dw_httpd_handler h, void *data);

/* Sends an unstamped entry to the current leader (or proposes locally when this node leads).
 * cb: status 0 when committed; non-zero with a message otherwise (no leader, unreachable, 4xx):
 * the leader's HTTP status when it answered, a raft error code for a local proposal, -1 else.
 * Returns -1 only for NULL arguments or a closing peer; every other failure, "no leader"
 * included, goes through cb, and cb never runs before dw_peer_submit returns. */
int dw_peer_submit(struct dw_peer *p, const char *entry_json, dw_raft_done_cb cb, void *data);

/* What the leader makes of a POST /v1/propose body from an authenticated member. */
struct dw_peer_verdict {
    unsigned status; /* 0: may be proposed; else 400 (not a valid entry) or 403 */
    bool identity;   /* a 403 for speaking for another node (counted and logged apart) */
    char reason[256];
};
/* Pure (the fuzzer calls it too): the body must pass dw_entry_stamp (self: this node's id) and
 * be an observe entry whose "node" is sender. */
void dw_peer_check_proposal(const char *body, size_t body_len, uint64_t sender, uint64_t self,
                            struct dw_peer_verdict *out);

/* forwarded: entries sent to another node's /v1/propose; forward_failures: those not answered
 * 200; received: authenticated proposals served; rejected_auth: 401s; rejected_bad: 400s and
 * entries of a type peers may not send; rejected_identity: 403s for speaking for another node. */
struct dw_peer_stats {
    uint64_t forwarded, forward_failures, received, rejected_auth, rejected_bad, rejected_identity;
};
void dw_peer_stats(const struct dw_peer *p, struct dw_peer_stats *out);

#endif
