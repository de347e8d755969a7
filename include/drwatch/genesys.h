/* Asynchronous Genesys Cloud Platform API client: OAuth client
 * credentials with a cached token (refreshed 60 s before expiry and once on 401), trunk base
 * switching through trunkbasesettings trunk_enabled (GET, skip if already so, PUT with the version
 * read, re-read and retry on 409), verification through GET trunks?trunkBase.id=.
 * Retries 429 (honouring Retry-After, 3 s when absent, giving up above 180 s), 502/503/504 with
 * 3/9/27 s backoff, at most 5 retries. Never sends PATCH. */
#ifndef DRWATCH_GENESYS_H
#define DRWATCH_GENESYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/genesys_parse.h"
#include "drwatch/http.h"

struct dw_genesys;

enum dw_gresult {
    DW_G_OK = 0,        /* done (PUT accepted, or verification passed) */
    DW_G_UNCHANGED,     /* trunk_enabled already had the wanted value: no PUT sent */
    DW_G_NOT_YET,       /* verify only: trunks exist but not all inService+connected yet */
    DW_G_FAIL,          /* permanent failure (4xx, a bad answer); detail says why */
    DW_G_TRANSIENT,     /* retries exhausted on an error that may pass (429, 502/503/504,
                           transport); the caller may try again later */
    DW_G_FENCED,        /* write only: not sent (further), its fencing token is no longer valid */
};

/* A fencing token: every write carries one, and the client asks valid() immediately before each
 * request it sends for that write (the read-first GET, the PUT, retries, 409 re-reads, and
 * requests parked behind a token refresh or a Retry-After wait). valid() returning false ends
 * the call with DW_G_FENCED and nothing more is sent for it. The token is copied. Every request
 * of a write carries it as "X-Drwatch-Fence: node=N term=T op=O step=S", so a log on the API side
 * (the chaos trials' simulator, a proxy) can tell which leader and step sent it. */
struct dw_fence {
    uint64_t node;  /* node.id of the writer, only reported in the header */
    uint64_t term;  /* raft term of the barrier the writer's leadership rests on */
    int64_t op;     /* operation and step the write belongs to */
    int seq;
    bool (*valid)(void *data, const struct dw_fence *fence, char *why, size_t whylen);
    void *data;
};

/* detail: short human text ("PUT trunkbasesettings/tbB -> 200 version 4", "HTTP 400: ..."),
 * valid only during the callback; never contains the secret or the token. */
typedef void (*dw_genesys_cb)(void *data, enum dw_gresult result, const char *detail);

/* secret is copied. */
int dw_genesys_init(struct dw_genesys **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_genesys_cfg *cfg, const char *client_secret,
                    char *errmsg, size_t errlen);
/* Pending calls complete with DW_G_FAIL "client closed" before this returns. */
void dw_genesys_close(struct dw_genesys *g);
/* A re-read client secret (SIGHUP): 1 when it differs from the one in use, 0 when not, -1 out of
 * memory. */
int dw_genesys_set_secret(struct dw_genesys *g, const char *secret);

/* Returns 0, or -1 if the call could not start (cb never called then; also without a fence). */
int dw_genesys_set_trunk_base_enabled(struct dw_genesys *g, const char *trunk_base_id,
                                      bool enabled, const struct dw_fence *fence,
                                      dw_genesys_cb cb, void *data);
/* Ends every unfinished write now with DW_G_FENCED (leadership lost): their callbacks run before
 * this returns, and no further request is sent for them; a response still in flight is ignored. */
void dw_genesys_cancel_writes(struct dw_genesys *g, const char *why);
/* One check (no polling): OK when the base has at least one trunk and every trunk of it reports
 * inService:true and connectedStatus.connected:true; NOT_YET otherwise. */
int dw_genesys_check_trunks(struct dw_genesys *g, const char *trunk_base_id,
                            dw_genesys_cb cb, void *data);

/* Listing: entities is a JSON array of every page's entities, in page order, owned by the
 * callback (free it with cJSON_Delete); NULL unless result is DW_G_OK. requests is the number of
 * API requests the listing sent (pages, retries and 401 re-sends; the shared token fetch is not
 * counted), for rate accounting; it is set whatever the result. */
typedef void (*dw_genesys_list_cb)(void *data, enum dw_gresult result, cJSON *entities,
                                   unsigned requests, const char *detail);
/* Read-only listing, what = "edges" (GET /api/v2/telephony/providers/edges itself: the Edge
 * list has no path of its own) or "trunks" (GET .../edges/trunks), with pageSize=100 and
 * pageNumber=1..pageCount (more than 200 pages fail rather than give a partial view). Same
 * token, retry and backoff machinery as the other calls; no fence (nothing is written).
 * Returns 0, or -1 if the call could not start (bad what, client closing; cb never called). */
int dw_genesys_list(struct dw_genesys *g, const char *what, dw_genesys_list_cb cb, void *data);

struct dw_genesys_stats {
    uint64_t requests, responses_4xx, responses_5xx, responses_429, conflicts_409,
        token_fetches, bad_responses, transport_errors, retries,
        paced,  /* list requests held back by the rate budget */
        fenced, /* write requests not sent because their fencing token was no longer valid */
        server_held,    /* requests held back because the server's rate window (its
                           inin-ratelimit-* headers, or a 429's Retry-After) was nearly spent */
        in_flight_peak; /* most API requests in flight at once so far */
    unsigned in_flight;       /* API requests in flight now */
    long ratelimit_allowed;   /* the last answer's inin-ratelimit-allowed, -1 none seen yet */
    long ratelimit_remaining; /* and allowed - count then, -1 none seen yet */
};
void dw_genesys_stats(const struct dw_genesys *g, struct dw_genesys_stats *out);

/* Multiplies every retry wait (Retry-After and the 3/9/27 s backoff); 1.0 is real time, tests
 * use e.g. 0.01. dw_genesys_init reads DRWATCH_GENESYS_BACKOFF_SCALE from the environment. */
void dw_genesys_set_backoff_scale(struct dw_genesys *g, double scale);

/* Takes the committed request timeout, rate budget and max_concurrent_requests (the connection
 * settings are the node's own and stay). Requests beyond max_concurrent_requests wait in a queue
 * where writes and trunk checks go before listings; every request also waits while the server's
 * inin-ratelimit-* headers say its window is nearly spent, or a 429's Retry-After runs. */
void dw_genesys_set_policy(struct dw_genesys *g, const struct dw_genesys_cfg *cfg);

/* ---- actions (docs/config.md, "What a step does to Genesys") ----
 * Each is one fenced write like dw_genesys_set_trunk_base_enabled (same fence, retries, 409
 * re-read, cancel_writes): read, skip when already so (DW_G_UNCHANGED, nothing written), write
 * with what was read, read back: DW_G_OK only when the read back shows the change, DW_G_FAIL
 * when it does not. Each returns 0, or -1 if the call could not start (cb never called then). */

/* dw_genesys_set_trunk_base_enabled, then, after a PUT, GET trunkbasesettings/{id} again. */
int dw_genesys_switch_trunk_base(struct dw_genesys *g, const char *trunk_base_id, bool enabled,
                                 const struct dw_fence *fence, dw_genesys_cb cb, void *data);

/* GET|PUT sites/{site_id}/outboundroutes/{route_id} (dw_route_change, drwatch/actions.h):
 * mode order puts tbs[0..n_tbs) first when activating and changes nothing when deactivating;
 * mode enabled sets enabled = activate. The route goes back as read, version included. */
int dw_genesys_set_route(struct dw_genesys *g, const char *site_id, const char *route_id,
                         enum dw_route_mode mode, bool activate, const char (*tbs)[DW_ID_MAX],
                         int n_tbs, const struct dw_fence *fence, dw_genesys_cb cb, void *data);

/* GET /{edge_id}; POST /{edge_id}/statuscode {"inService":false,"callDrainingWaitTimeSeconds":
 * drain_wait_s} (or {"inService":true}) unless callDrainingState already says so ("NONE" = in
 * service); GET again: the drain counts as accepted once callDrainingState is not "NONE". */
int dw_genesys_set_edge_service(struct dw_genesys *g, const char *edge_id, bool in_service,
                                unsigned drain_wait_s, const struct dw_fence *fence,
                                dw_genesys_cb cb, void *data);

#endif
