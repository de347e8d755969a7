/* One drwatchd node: the start-up ladder, the glue between probes, peer channel, raft, FSM,
 * actuator and admin socket, and the shutdown chain. */
#ifndef DRWATCHD_NODE_H
#define DRWATCHD_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>
#include <uv.h>

#include "drwatch/config.h"

struct dw_node;

/* Starts every component on loop; on failure everything started is stopped again and errmsg
 * names the step that failed. */
/* cfg and file_doc: the node's file, parsed and as JSON (copied); cfg must outlive the node. The
 * node runs by the cluster config the log commits, with the file's node-local settings. */
int dw_node_start(struct dw_node **out, uv_loop_t *loop, const struct dw_config *cfg,
                  const cJSON *file_doc, char *errmsg, size_t errlen);
/* SIGHUP (docs/logging.md): applies what the re-read file (valid, parsed) may change without a
 * restart: the notifications section (the notifier restarts and re-reads its secrets), the
 * Genesys client secret, peer secrets still missing. file need not outlive the call. -1 with
 * errmsg (nothing changed) when a secret cannot be read. */
struct dw_node_reloaded {
    bool notifications;  /* the section differs from the one the notifier ran by */
    bool genesys_secret; /* the client secret file holds another secret */
    bool peer_secrets;   /* the missing peer secrets are in place now */
};
int dw_node_reload(struct dw_node *n, const struct dw_config *file, cJSON *file_doc,
                   struct dw_node_reloaded *out, char *errmsg, size_t errlen);
/* SIGTERM on the leader: hand leadership over first (dw_raft_hand_over). */
int dw_node_hand_over(struct dw_node *n, void (*cb)(void *data, bool moved), void *data,
                      uint64_t *target, char *errmsg, size_t errlen);
/* Begins the shutdown chain; the loop runs dry once it is complete. */
void dw_node_stop(struct dw_node *n);

#endif
