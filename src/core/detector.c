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
    return dw_site_verdict(edges, n, DW_RULE_ANY, 1);
}

enum dw_health dw_site_verdict(const enum dw_health *edges, int n, enum dw_site_rule rule,
                               int at_least)
{
    int up = 0, unknown = 0, k;

    if (n <= 0)
        return DW_UNKNOWN;
    for (int i = 0; i < n; i++) {
        up += edges[i] == DW_UP;
        unknown += edges[i] == DW_UNKNOWN;
    }
    k = rule == DW_RULE_ANY ? 1 : rule == DW_RULE_ALL ? n : at_least;
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    if (up >= k)
        return DW_UP;
    if (up + unknown < k)
        return DW_DOWN;
    return DW_UNKNOWN;
}
