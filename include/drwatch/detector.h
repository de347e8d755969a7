/* Per-Edge detector: turns probe results into UP/DOWN with consecutive fail/recover
 * thresholds, and a site's local verdict from its Edges. Pure: no clock, no I/O. */
#ifndef DRWATCH_DETECTOR_H
#define DRWATCH_DETECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "drwatch/config.h"
#include "drwatch/health.h"

struct dw_detector {
    enum dw_health state;       /* starts UNKNOWN */
    unsigned fail_threshold;
    unsigned recover_threshold;
    unsigned consecutive_fail;
    unsigned consecutive_ok;
    uint64_t probes;
    uint64_t failures;
};

void dw_detector_init(struct dw_detector *d, unsigned fail_threshold, unsigned recover_threshold);

/* Feeds one probe result. From UNKNOWN or UP, fail_threshold consecutive failures give DOWN;
 * from UNKNOWN or DOWN, recover_threshold consecutive successes give UP. Returns true when
 * the state changed. */
bool dw_detector_feed(struct dw_detector *d, bool ok);

/* Site rule "any" (HA pair): UP while any Edge is UP, DOWN when every Edge is DOWN,
 * UNKNOWN otherwise (some Edge not yet decided and none UP). n == 0 gives UNKNOWN. */
enum dw_health dw_site_local_verdict(const enum dw_health *edges, int n);

/* A site's verdict from its Edges under the site's rule: "any" (up while one Edge is up), "all"
 * (down as soon as one Edge is down) or "at least k" (up while k Edges are up, down once fewer
 * than k can be). States not yet known count as neither. "any" is at_least 1, "all" at_least n. */
enum dw_health dw_site_verdict(const enum dw_health *edges, int n, enum dw_site_rule rule,
                               int at_least);

#endif
