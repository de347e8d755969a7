/* What a step does to Genesys for its target (docs/config.md, "What a step does to Genesys"):
 * the ordered list of changes, the bodies the client sends for routes and Edges, and the dry
 * run that lists every request a step would make. Pure: no I/O. */
#ifndef DRWATCH_ACTIONS_H
#define DRWATCH_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "drwatch/config.h"

#define DW_GENESYS_PREFIX "/api/v2/telephony/providers/edges"

enum dw_item_kind {
    DW_ITEM_EDGE,       /* an Edge's service status (drain_edges) */
    DW_ITEM_TRUNK_BASE, /* a trunk base's trunk_enabled */
    DW_ITEM_ROUTE,      /* an outbound route (order or enabled) */
};

/* One change of an activate or deactivate step; copies, so a config change cannot move it. */
struct dw_action_item {
    enum dw_item_kind kind;
    enum dw_route_mode mode;      /* routes */
    char id[DW_ID_MAX];           /* Genesys Edge id, trunk base id, or route id */
    char site_id[DW_ID_MAX];      /* routes: the Genesys site */
};

/* Most items one step can have. */
#define DW_MAX_ACTION_ITEMS (DW_MAX_EDGES + DW_MAX_TRUNK_BASES + DW_MAX_ROUTES)

/* The changes of activating (true) or deactivating target t of cfg, in the order they run:
 * activate = Edges back in service (drain_edges), trunk bases on, routes; deactivate = routes
 * of mode "enabled" off, trunk bases off, Edges drained. Writes at most max; returns how many
 * there are (which may be more than max). */
int dw_action_items(const struct dw_config *cfg, const struct dw_target *t, bool activate,
                    struct dw_action_item *out, int max);

enum dw_change_rc {
    DW_CHANGE_OK = 0,
    DW_CHANGE_BAD,     /* garbage from Genesys; why says what */
    DW_CHANGE_REFUSED, /* the answer is sane but the change cannot be made as configured */
    DW_CHANGE_NOMEM,
};

/* A GET sites/{site}/outboundroutes/{id} 2xx body: *put_body is NULL when the route already is
 * as activating (true) or deactivating the target wants, else the whole route as read with the
 * change made, for the PUT (the caller frees it). Mode "order": the target's trunk bases tbs[0..
 * n_tbs) first in that order, the others after them in theirs; every one must be in the route
 * (REFUSED otherwise: drwatch reorders, it never adds). Deactivating leaves the order alone.
 * Mode "enabled": enabled = activate. *version is the version read. */
enum dw_change_rc dw_route_change(const char *body, size_t len, enum dw_route_mode mode,
                                  bool activate, const char (*tbs)[DW_ID_MAX], int n_tbs,
                                  char **put_body, long long *version, char *why, size_t whylen);

/* A GET /{edgeId} 2xx body: whether the Edge is in service, i.e. callDrainingState is "NONE"
 * (or absent); any other state ("ACTIVE", "COMPLETE") means it was taken out with draining.
 * state gets the callDrainingState read ("NONE" when absent). */
enum dw_change_rc dw_edge_service(const char *body, size_t len, bool *in_service, char *state,
                                  size_t statelen, char *why, size_t whylen);

/* The POST /{edgeId}/statuscode body: {"inService":true}, or {"inService":false,
 * "callDrainingWaitTimeSeconds":wait_s}. The caller frees it; NULL on OOM. */
char *dw_edge_statuscode_body(bool in_service, unsigned wait_s);

/* Dry run: appends to out (a cJSON array) every Genesys request the step action ("activate",
 * "verify" or "deactivate") of target of group would make, in order, as objects {"method",
 * "path", "body", "note"}: body null for a GET, the change for a PUT (the rest of the object
 * goes back as read; the note says so and when the write is skipped), the exact body of a POST.
 * Returns 0, or -1 with err set (unknown group, target or action; OOM). */
int dw_actions_plan(const struct dw_config *cfg, int group, int target, const char *action,
                    cJSON *out, char *err, size_t errlen);

#endif
