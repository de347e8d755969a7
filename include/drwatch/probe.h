/* Edge probing on the libuv loop: a jittered timer per Edge fires an HTTP(S) health probe
 * (libcurl multi), feeds the Edge's detector and recomputes the site's local verdict. */
#ifndef DRWATCH_PROBE_H
#define DRWATCH_PROBE_H

#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/health.h"
#include "drwatch/http.h"

struct dw_prober;

/* Called when a site's local verdict changes (also the first time it leaves UNKNOWN). */
typedef void (*dw_site_change_cb)(void *data, int site, enum dw_health old_state,
                                  enum dw_health new_state);

int dw_prober_start(struct dw_prober **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_config *cfg, dw_site_change_cb cb, void *data);
void dw_prober_close(struct dw_prober *p); /* accepts NULL; frees after handles closed */

enum dw_health dw_prober_site(const struct dw_prober *p, int site);
enum dw_health dw_prober_edge(const struct dw_prober *p, int site, int edge);

struct dw_probe_stats {
    uint64_t probes, failures, errors_bad_response;
};
void dw_prober_stats(const struct dw_prober *p, struct dw_probe_stats *out);

#endif
