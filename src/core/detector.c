#include <stddef.h>

#include "drwatch/detector.h"

void dw_detector_init(struct dw_detector *d, unsigned fail_threshold, unsigned recover_threshold)
{
    d->state = DW_UNKNOWN;
    /* a zero threshold would mean "change without evidence"; treat it as one probe */
    d->fail_threshold = fail_threshold ? fail_threshold : 1;
    d->recover_threshold = recover_threshold ? recover_threshold : 1;
    d->consecutive_fail = 0;
    d->consecutive_ok = 0;
    d->probes = 0;
    d->failures = 0;
}

bool dw_detector_feed(struct dw_detector *d, bool ok)
{
    enum dw_health before = d->state;

    d->probes++;
    if (ok) {
        d->consecutive_fail = 0;
        if (d->consecutive_ok < d->recover_threshold)
            d->consecutive_ok++;
        if (d->state != DW_UP && d->consecutive_ok >= d->recover_threshold)
            d->state = DW_UP;
    } else {
        d->failures++;
        d->consecutive_ok = 0;
        if (d->consecutive_fail < d->fail_threshold)
            d->consecutive_fail++;
        if (d->state != DW_DOWN && d->consecutive_fail >= d->fail_threshold)
            d->state = DW_DOWN;
    }
    return d->state != before;
}

enum dw_health dw_site_local_verdict(const enum dw_health *edges, int n)
{
    int down = 0;

    if (edges == NULL || n <= 0)
        return DW_UNKNOWN;
    for (int i = 0; i < n; i++) {
        if (edges[i] == DW_UP)
            return DW_UP;
        if (edges[i] == DW_DOWN)
            down++;
    }
    return down == n ? DW_DOWN : DW_UNKNOWN;
}
