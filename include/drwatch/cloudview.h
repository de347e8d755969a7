/* The cloud's own view of Edge health (the Genesys signal), derived from Genesys' edge and trunk
 * lists. Pure: the lists come in as JSON, the states go out; no clock, no I/O. */
#ifndef DRWATCH_CLOUDVIEW_H
#define DRWATCH_CLOUDVIEW_H

#include <stdbool.h>

#include <cJSON.h>

#include "drwatch/config.h"
#include "drwatch/health.h"

/* Why an Edge got its state. */
enum dw_cloud_why {
    DW_CLOUD_ABSENT = 0,    /* not in the edge list: UNKNOWN */
    DW_CLOUD_OFFLINE,       /* onlineStatus OFFLINE: DOWN */
    DW_CLOUD_DISCONNECTED,  /* in-service trunks, none connected: DOWN */
    DW_CLOUD_ONLINE,        /* ONLINE, and no in-service trunk or one connected: UP */
    DW_CLOUD_NO_STATUS,     /* listed without a usable onlineStatus, trunks fine: UNKNOWN */
};
const char *dw_cloud_why_name(enum dw_cloud_why w); /* "absent", "offline", ... */

struct dw_cloud_edge {
    enum dw_health state;
    enum dw_cloud_why why;
    int trunks_in_service;  /* carrier (EXTERNAL or untyped) trunks with inService:true */
    int trunks_connected;   /* of those, connectedStatus.connected:true */
};

/* For each of the n Genesys Edge ids (duplicates allowed), derives:
 *   DOWN    when onlineStatus is OFFLINE, or when the Edge has >= 1 in-service trunk and none of
 *           them is connected;
 *   UP      when ONLINE and (no in-service trunk, or one connected);
 *   UNKNOWN when the Edge is absent (or listed with state "deleted"), or its status is unusable.
 * Trunks count when they name the Edge in edge.id, are not "deleted" and are carrier trunks
 * (trunkType EXTERNAL or absent; PHONE and EDGE trunks say nothing about the carrier path).
 * edges and trunks are the arrays of listed entities; entities that are not objects or lack an
 * id are skipped and counted in *ignored (may be NULL). Returns 0, or -1 when edges or trunks is
 * not an array or memory runs out (out is then all UNKNOWN/ABSENT). */
int dw_cloudview_derive(const cJSON *edges, const cJSON *trunks, const char *const *ids, int n,
                        struct dw_cloud_edge *out, int *ignored);

/* A cloud entry reports each Edge as "up", "unknown", "down" (OFFLINE) or "disconnected" (DOWN
 * only because its in-service carrier trunks are not connected: trunks that are still connecting
 * after an activation look the same, see the FSM's grace). Parses one into its state and
 * *disconnected (may be NULL); -1 when it is none of these. */
#define DW_CLOUD_REPORT_DISCONNECTED "disconnected"
int dw_cloud_report_parse(const char *s, enum dw_health *state, bool *disconnected);

/* An Edge is part of the cloud view when it has a genesys_edge_id and its site combines the
 * probes with Genesys. */
bool dw_cloudview_watched(const struct dw_site *site, const struct dw_edge *edge);

#endif
