/* Edge probing on the libuv loop: a jittered timer per probe fires an HTTP(S) (libcurl multi),
 * TCP connect or SIP OPTIONS probe, feeds the probe's detector and recomputes its Edge's state
 * and the site's local verdict. */
#ifndef DRWATCH_PROBE_H
#define DRWATCH_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/health.h"
#include "drwatch/http.h"

struct dw_prober;

/* Called when a site's local verdict changes (also the first time it leaves UNKNOWN). */
typedef void (*dw_site_change_cb)(void *data, int site, enum dw_health old_state,
                                  enum dw_health new_state);

/* cfg must stay alive while the prober may still be passed as prev to dw_prober_start_from. */
int dw_prober_start(struct dw_prober **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_config *cfg, dw_site_change_cb cb, void *data);
/* Like dw_prober_start for cfg, carrying over from prev (may be NULL) the state of every probe
 * whose site id, Edge id, position in its Edge's probe list and whole spec (struct
 * dw_probe_spec, every field) are unchanged: detector state and counts (judged from then on by
 * cfg's thresholds), counters, last error; prober-wide counters carry over too. Edge and site
 * states are recomputed from them, so a config change does not drop a known verdict back to
 * UNKNOWN. cb fires only for sites whose verdict differs from prev's for the same site id (a
 * site new in cfg starts UNKNOWN); that call may come before this returns, with *out already
 * set and site indexes in cfg, so the caller's own view should already be cfg. A carried
 * probe's next run is due when it was in prev, or sooner when cfg's interval is shorter.
 * prev and its config are only read and must still be alive; prev keeps running (a run in
 * flight finishes into it) until the caller closes it with dw_prober_close. */
int dw_prober_start_from(struct dw_prober **out, uv_loop_t *loop, struct dw_curlm *curlm,
                         const struct dw_config *cfg, dw_site_change_cb cb, void *data,
                         const struct dw_prober *prev);
void dw_prober_close(struct dw_prober *p); /* accepts NULL; frees after handles closed */

enum dw_health dw_prober_site(const struct dw_prober *p, int site);
enum dw_health dw_prober_edge(const struct dw_prober *p, int site, int edge);

struct dw_probe_stats {
    uint64_t probes, failures, errors_bad_response;
    uint64_t skipped_busy;   /* runs skipped because the previous one was still in flight */
    uint64_t sip_malformed;  /* SIP datagrams that did not parse (also in errors_bad_response) */
    uint64_t late_runs;      /* runs that started more than the lateness bound after they were due */
    uint64_t overload_discarded; /* failed runs not counted: the node could not keep up */
    uint64_t overloads;      /* times the prober entered overload */
};
void dw_prober_stats(const struct dw_prober *p, struct dw_probe_stats *out);

/* Each Edge has its own probes (config sites[].edges[].probes[]), each with its own detector and
 * timer; an Edge is UP while any of its probes is UP, and the site's verdict follows its rule.
 * dw_prober_start also opens the SIP client the sip probes share (on 0.0.0.0, an ephemeral
 * port of its own, so two probers can be open at once). */

/* Number of probes of an Edge, 0 when out of range. */
int dw_prober_n_probes(const struct dw_prober *p, int site, int edge);

/* One probe, for metrics. Returns 0, or -1 when out of range (outputs untouched). Any output
 * pointer may be NULL. */
int dw_prober_probe_state(const struct dw_prober *p, int site, int edge, int probe,
                          enum dw_health *state, enum dw_probe_kind *kind, uint64_t *probes,
                          uint64_t *failures);

struct dw_probe_info {
    enum dw_probe_kind kind;
    enum dw_health state;
    uint64_t probes, failures, bad_responses;
    const char *target;      /* URL or address, valid while the prober lives */
    const char *last_error;  /* "" when the last run succeeded */
};
int dw_prober_probe_info(const struct dw_prober *p, int site, int edge, int probe,
                         struct dw_probe_info *out);

/* Overload (docs/detection.md): a run starting more than max(DW_PROBE_LATE_MIN_MS,
 * interval/4) after it was due is late. Over a window of at least DW_PROBE_OVERLOAD_WINDOW_MS and
 * DW_PROBE_OVERLOAD_MIN_RUNS runs, 20% late puts the prober in overload; three windows under 2% end it. In overload, and for any run that began
 * late or whose answer was handled long past its timeout, failures are not fed to the detector:
 * a node that cannot keep its schedule abstains rather than call Edges DOWN. */
#define DW_PROBE_LATE_MIN_MS 100
#define DW_PROBE_OVERLOAD_WINDOW_MS 1000
#define DW_PROBE_OVERLOAD_MIN_RUNS 10
/* Called for every overloaded window with the reason (to extend an abstention). */
typedef void (*dw_overload_cb)(void *data, const char *why);
void dw_prober_set_overload_cb(struct dw_prober *p, dw_overload_cb cb, void *data);
bool dw_prober_overloaded(const struct dw_prober *p);

#endif
