#include <stddef.h>

#include "drwatch/verdict.h"

bool dw_observation_fresh(const struct dw_observation *o, int64_t now_ms, int64_t ttl_ms)
{
    if (o == NULL || !o->present || ttl_ms < 0)
        return false;
    /* Symmetric: a refresh stamped after now (a leader whose clock ran ahead) is fresh only
     * within the ttl, so a stamp far in the future cannot keep a silent node's vote alive. */
    uint64_t age = o->refreshed_ms <= now_ms ? (uint64_t)now_ms - (uint64_t)o->refreshed_ms
                                             : (uint64_t)o->refreshed_ms - (uint64_t)now_ms;
    return age <= (uint64_t)ttl_ms;
}

enum dw_health dw_quorum_verdict(enum dw_health current, const struct dw_observation *obs,
                                 int n_voters, int64_t now_ms, int64_t ttl_ms)
{
    int up = 0, down = 0;
    int majority = n_voters / 2 + 1;

    if (obs == NULL || n_voters <= 0)
        return current;
    for (int i = 0; i < n_voters; i++) {
        const struct dw_observation *o = &obs[i];

        /* a tilted or silent voter abstains: it can tip the verdict neither way */
        if (o->tilt || !dw_observation_fresh(o, now_ms, ttl_ms))
            continue;
        if (o->state == DW_DOWN)
            down++;
        else if (o->state == DW_UP)
            up++;
    }
    if (down >= majority)
        return DW_DOWN;
    if (up >= majority)
        return DW_UP;
    /* Sticky only while a majority still vouches for the site and merely disagrees; with fewer
     * voices (a full-cluster restart, most watchdogs silent) nobody knows. */
    if (up + down < majority)
        return DW_UNKNOWN;
    return current;
}
