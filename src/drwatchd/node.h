/* One drwatchd node: the start-up ladder, the glue between probes, peer channel, raft, FSM,
 * actuator and admin socket, and the shutdown chain. */
#ifndef DRWATCHD_NODE_H
#define DRWATCHD_NODE_H

#include <uv.h>

#include "drwatch/config.h"

struct dw_node;

/* Starts every component on loop; on failure everything started is stopped again and errmsg
 * names the step that failed. */
int dw_node_start(struct dw_node **out, uv_loop_t *loop, const struct dw_config *cfg,
                  char *errmsg, size_t errlen);
/* Begins the shutdown chain; the loop runs dry once it is complete. */
void dw_node_stop(struct dw_node *n);

#endif
