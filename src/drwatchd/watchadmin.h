/* The admin socket's read-only cluster views: history with filters, held open as a long poll
 * for drctl watch, and the daemon's version. */
#ifndef DRWATCHD_WATCHADMIN_H
#define DRWATCHD_WATCHADMIN_H

#include <stdbool.h>

#include <cJSON.h>
#include <uv.h>

#include "drwatch/admin.h"
#include "drwatch/fsm.h"

/* Longest a history request may wait for a new row (wait_ms). */
#define DW_WATCH_WAIT_MAX_MS 60000

struct dw_watchadmin;

int dw_watchadmin_init(struct dw_watchadmin **out, uv_loop_t *loop, struct dw_fsm *fsm);
/* Answers every waiting request (with what there is) and frees w once its timer has closed. */
void dw_watchadmin_close(struct dw_watchadmin *w);

/* {"cmd":"history"[,"limit":N][,"after":ID][,"since":MS][,"group":G][,"wait_ms":MS]}: rows
 * newest first, or oldest first with after (a cursor); with wait_ms and no row yet, the reply
 * waits until a row is applied or wait_ms passes. Every reply has "cursor", the newest row id.
 * {"cmd":"version"} is answered by the caller. Returns false for other commands. */
bool dw_watchadmin_handle(struct dw_watchadmin *w, const cJSON *req, cJSON *reply,
                          struct dw_admin_call *call);

/* After every applied entry: answers the waiting requests that now have rows. */
void dw_watchadmin_applied(struct dw_watchadmin *w);

#endif
