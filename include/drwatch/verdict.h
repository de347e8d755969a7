/* Quorum verdict: a site is DOWN for the cluster when a strict majority of the
 * voting members hold a fresh DOWN observation, UP for a fresh UP majority, UNKNOWN when fewer
 * than a strict majority hold a fresh UP or DOWN at all, else unchanged. */
#ifndef DRWATCH_VERDICT_H
#define DRWATCH_VERDICT_H

#include <stdbool.h>
#include <stdint.h>

#include "drwatch/health.h"

struct dw_observation {
    bool present;           /* this voter has ever observed the site */
    enum dw_health state;
    int64_t refreshed_ms;   /* entry timestamp of the voter's last refresh */
    bool tilt;              /* voter abstains */
};

/* True when the voter's last refresh is within ttl_ms of now_ms, before or after it (now_ms is
 * the timestamp of the entry being applied, never a clock). */
bool dw_observation_fresh(const struct dw_observation *o, int64_t now_ms, int64_t ttl_ms);

/* obs has one slot per voting member (n_voters of them). */
enum dw_health dw_quorum_verdict(enum dw_health current, const struct dw_observation *obs,
                                 int n_voters, int64_t now_ms, int64_t ttl_ms);

#endif
