/* One drwatchd node: the start-up ladder, the glue between probes, peer channel, raft, FSM,
 * actuator and admin socket, and the shutdown chain. */
#ifndef DRWATCHD_NODE_H
#define DRWATCHD_NODE_H

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
/* Begins the shutdown chain; the loop runs dry once it is complete. */
void dw_node_stop(struct dw_node *n);

#endif
