/* Admin commands that change the cluster: "config" (show, diff, apply) and "members" (list, add,
 * remove). Changes are validated with the config validator and committed through the leader. */
#ifndef DRWATCHD_CFGADMIN_H
#define DRWATCHD_CFGADMIN_H

#include <stdbool.h>

#include <cJSON.h>
#include <uv.h>

#include "drwatch/admin.h"
#include "drwatch/fsm.h"
#include "drwatch/raftnode.h"

struct dw_cfgadmin;

/* local_doc: this node's file (its node-local settings fill in what a document lacks); all must
 * outlive the cfgadmin. */
int dw_cfgadmin_init(struct dw_cfgadmin **out, uv_loop_t *loop, struct dw_fsm *fsm,
                     struct dw_raft *raft, const cJSON *local_doc);
/* Answers what is in flight with an error; memory goes once raft has called back. */
void dw_cfgadmin_close(struct dw_cfgadmin *c);
/* Handles {"cmd":"config"|"members",...}; false when req is another command. */
bool dw_cfgadmin_handle(struct dw_cfgadmin *c, const cJSON *req, cJSON *reply,
                        struct dw_admin_call *call);

#endif
